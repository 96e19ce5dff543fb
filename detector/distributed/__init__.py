"""Scans spread over Dask distributed workers: many files, big files cut into
byte ranges, merged into exactly the single-process scan's flows, features and
alerts (docs/distributed.md). Dask is an optional extra:
``pip install 'egress-detector[distributed]'``."""

from .scan import (
    DEFAULT_PART_BYTES,
    DaskSession,
    DistributedUnavailable,
    scan_captures_distributed,
)

__all__ = [
    "DEFAULT_PART_BYTES",
    "DaskSession",
    "DistributedUnavailable",
    "scan_captures_distributed",
]
