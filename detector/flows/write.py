"""Write flow records: a readable table, CSV, JSON lines or Parquet."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from ..errors import DetectorError

TABLE_COLUMNS = [
    "first_seen",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "transport",
    "src2dst_packets",
    "src2dst_bytes",
    "dst2src_packets",
    "dst2src_bytes",
    "duration_ms",
    "expiry_reason",
]


def _for_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as ISO 8601 strings: readable, and exact to the nanosecond."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = (
                out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").where(out[column].notna(), None)
            )
    return out


def write_flows(frame: pd.DataFrame, fmt: str, path: str | None, *, top: int | None = None) -> None:
    try:
        if fmt == "parquet":
            assert path is not None
            frame.to_parquet(path, index=False)
        elif fmt == "csv":
            _for_text(frame).to_csv(path or sys.stdout, index=False)
        elif fmt == "jsonl":
            _for_text(frame).to_json(path or sys.stdout, orient="records", lines=True)
            if path is None:
                sys.stdout.write("\n")
        else:
            shown = frame
            if top is not None:
                shown = frame.nlargest(top, "bidirectional_bytes")
            text = shown[TABLE_COLUMNS].to_string(index=False) if len(shown) else "(no flows)"
            if path:
                Path(path).write_text(text + "\n")
            else:
                sys.stdout.write(text + "\n")
    except OSError as exc:
        raise DetectorError(f"cannot write {path or 'stdout'}: {exc.strerror or exc}") from None
