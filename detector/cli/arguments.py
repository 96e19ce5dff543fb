"""Arguments more than one command takes, defined once."""

from __future__ import annotations

import argparse

from .console import worker_count


def add_reading_arguments(
    parser: argparse.ArgumentParser,
    *,
    inputs: str = "inputs",
    captures: str = "the captures",
    parts: str = "",
    distributed: bool = True,
) -> None:
    """--threads, and with ``distributed`` --workers and --scheduler: how a
    command that reads captures spreads the reading. Their help speaks of
    ``inputs`` (what is over 64 MB), ``captures`` (what is counted) and
    ``parts`` (how the work is cut, before the docs' name)."""
    parser.add_argument(
        "--threads",
        type=int,
        choices=[1, 2],
        metavar="N",
        help=f"1 or 2 threads for reading (default: 2 for {inputs} over 64 MB on 2 or more cores)",
    )
    if not distributed:
        return
    parser.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help=f"count {captures} on a local Dask cluster of N processes ({parts}"
        "docs/distributed.md); 1 or absent: this process",
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:8786",
        help=f"count {captures} on an existing Dask cluster (the workers must see the "
        "capture files at the same paths)",
    )
