"""Write flow records: a readable table, CSV, JSON lines or Parquet.

Works on the numpy columns of ``flow_columns`` so the command line never needs
pandas (0.7 s of start-up); Parquet goes through pyarrow directly.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from typing import IO, Literal

import numpy as np

from ..errors import DetectorError

TABLE_COLUMNS = ["first_seen", "src_ip", "src_port", "dst_ip", "dst_port", "transport",
                 "src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes",
                 "duration_ms", "expiry_reason"]  # fmt: skip


def _timestamp_texts(values: np.ndarray) -> np.ndarray:
    """ISO 8601 in UTC, to the microsecond unless some value needs nanoseconds."""
    ns = values.view(np.int64)
    present = ~np.isnat(values)
    unit: Literal["us", "ns"] = "us" if not np.any(ns[present] % 1000) else "ns"
    texts = np.datetime_as_string(values, unit=unit, timezone="UTC").astype(object)
    texts[~present] = None
    return texts


def _text_columns(columns: dict[str, np.ndarray]) -> dict[str, list]:
    out: dict[str, list] = {}
    for name, values in columns.items():
        if values.dtype.kind == "M":
            out[name] = _timestamp_texts(values).tolist()
        else:
            out[name] = values.tolist()
    return out


def _rows(columns: dict[str, np.ndarray]) -> Iterator[tuple]:
    texts = _text_columns(columns)
    return zip(*texts.values(), strict=True)


def _write_csv(columns: dict[str, np.ndarray], stream: IO[str]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(_rows(columns))


def _write_jsonl(columns: dict[str, np.ndarray], stream: IO[str]) -> None:
    names = list(columns)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for row in _rows(columns):
        stream.write(dumps(dict(zip(names, row, strict=True))))
        stream.write("\n")


def _write_parquet(columns: dict[str, np.ndarray], path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        if values.dtype.kind == "M":
            arrays[name] = pa.array(values, type=pa.timestamp("ns", tz="UTC"))
        elif values.dtype == object:
            arrays[name] = pa.array(values.tolist(), type=pa.string())
        else:
            arrays[name] = pa.array(values)
    table = pa.table(arrays)
    for name in ("transport", "expiry_reason"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).dictionary_encode())
    pq.write_table(table, path)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _write_table(columns: dict[str, np.ndarray], stream: IO[str], top: int | None) -> None:
    order = np.arange(len(columns["first_seen"]))
    if top is not None:
        order = np.argsort(-columns["bidirectional_bytes"], kind="stable")[:top]
    if not len(order):
        stream.write("(no flows)\n")
        return
    shown = {name: columns[name][order] for name in TABLE_COLUMNS}
    first = np.datetime_as_string(shown["first_seen"], unit="ms", timezone="UTC")
    rows = [[
        f.replace("T", " "), src, str(sp), dst, str(dp), str(tr), f"{a:,}", human_bytes(b),
        f"{c:,}", human_bytes(d), f"{ms / 1000:.1f}", reason,
    ] for f, src, sp, dst, dp, tr, a, b, c, d, ms, reason in zip(
        first.tolist(), *(shown[n].tolist() for n in TABLE_COLUMNS[1:]), strict=True
    )]  # fmt: skip
    header = ["first packet (UTC)", "source", "port", "destination", "port", "proto",
              "packets out", "bytes out", "packets in", "bytes in", "seconds", "ended"]  # fmt: skip
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    right = {2, 4, 6, 7, 8, 9, 10}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    stream.write(line(header) + "\n")
    for r in rows:
        stream.write(line(r) + "\n")


def write_flows(
    columns: dict[str, np.ndarray], fmt: str, path: str | None, *, top: int | None = None
) -> None:
    """Write flows as ``table``, ``csv``, ``jsonl`` or ``parquet`` to ``path``
    (stdout when None; Parquet needs a path)."""
    try:
        if fmt == "parquet":
            if path is None:
                raise DetectorError("Parquet output needs a file: add -o FILE.parquet")
            _write_parquet(columns, path)
            return
        writer = {"csv": _write_csv, "jsonl": _write_jsonl}.get(
            fmt, lambda c, s: _write_table(c, s, top)
        )
        if path:
            with open(path, "w", newline="", encoding="utf-8") as stream:
                writer(columns, stream)
        else:
            # UTF-8 whatever the locale; detached afterwards so sys.stdout stays usable.
            out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
            try:
                writer(columns, out)
            finally:
                out.flush()
                out.detach()
    except OSError as exc:
        raise DetectorError(f"cannot write {path or 'stdout'}: {exc.strerror or exc}") from None
