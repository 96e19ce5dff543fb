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

import os
import re
import uuid
from typing import TYPE_CHECKING

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
    flows = result.flows.to_frame()
    if len(flows):
        days = flows["first_seen"].dt.tz_convert(policy.zone).dt.strftime("%Y-%m-%d")
        _write(flows, site, days, os.path.join(root, "flows"))
        written.append("flows")
    features = result.features
    if len(features):
        days = features["window_start"].dt.tz_convert(policy.zone).dt.strftime("%Y-%m-%d")
        _write(features, site, days, os.path.join(root, "features"))
        written.append("features")
    return written


def _write(frame: pd.DataFrame, site: str, days: pd.Series, where: str) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column("site", pa.array([site] * len(frame), pa.string()))
    table = table.append_column("day", pa.array(days.to_numpy(dtype=object), pa.string()))
    ds.write_dataset(
        table,
        where,
        format="parquet",
        partitioning=ds.partitioning(
            pa.schema([("site", pa.string()), ("day", pa.string())]), flavor="hive"
        ),
        basename_template=f"{uuid.uuid4().hex[:12]}-{{i}}.parquet",
        existing_data_behavior="delete_matching",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
    )
