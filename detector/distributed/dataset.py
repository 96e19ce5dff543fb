"""Flows and host-window features as a partitioned Parquet dataset, laid out
the way Dask, DuckDB, Spark and pyarrow read directly (hive-style):

    ROOT/flows/site=taipei-mission/day=2026-02-04/<scan>-0.parquet
    ROOT/features/site=taipei-mission/day=2026-02-04/<scan>-0.parquet

``day`` is the site-local calendar day (the policy's time zone) of a flow's
first packet or a window's start: the day an administrator means. Writing a
day again replaces what was there for that site and day (a nightly rescan does
not double it); other days and sites are left alone.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..flows.records import columns_to_frame

if TYPE_CHECKING:
    import pandas as pd

    from ..pipelines.scan import ScanResult
    from ..policy import Policy

TABLES = ("flows", "features")


def site_label(name: str) -> str:
    """A site name fit for a directory name (``site=...``)."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return label or "site"


def write_dataset(result: ScanResult, policy: Policy, root: str | os.PathLike[str]) -> list[str]:
    """Write the scan's flows and features under ``root``; returns the tables
    written (those with rows)."""
    site = site_label(policy.site_name)
    written = []
    # The flows a slice at a time, in order of first packet: a flood's millions
    # of flows are never one frame (nor all in memory: detector/flows/spill.py).
    flows = (
        columns_to_frame(columns)
        for columns in result.flows.column_slices()
        if len(columns["first_seen"])
    )
    if _write(flows, "first_seen", site, policy, os.path.join(root, "flows")):
        written.append("flows")
    features = result.features
    if _write(iter([features]), "window_start", site, policy, os.path.join(root, "features")):
        written.append("features")
    return written


def _write(
    frames: Iterator[pd.DataFrame], time_column: str, site: str, policy: Policy, where: str
) -> bool:
    """Write ``frames`` (one table, in parts) under ``where`` by site and the
    local day of ``time_column``; False when there are no rows."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    def tables() -> Iterator[pa.Table]:
        for frame in frames:
            if not len(frame):
                continue
            days = frame[time_column].dt.tz_convert(policy.zone).dt.strftime("%Y-%m-%d")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.append_column("site", pa.array([site] * len(frame), pa.string()))
            yield table.append_column("day", pa.array(days.to_numpy(dtype=object), pa.string()))

    parts = tables()
    first = next(parts, None)
    if first is None:
        return False
    batches = (batch for table in itertools.chain([first], parts) for batch in table.to_batches())
    ds.write_dataset(
        batches,
        where,
        schema=first.schema,
        preserve_order=True,
        format="parquet",
        partitioning=ds.partitioning(
            pa.schema([("site", pa.string()), ("day", pa.string())]), flavor="hive"
        ),
        basename_template=f"{uuid.uuid4().hex[:12]}-{{i}}.parquet",
        existing_data_behavior="delete_matching",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
    )
    return True
