"""Write flow records: a readable table, CSV, JSON lines or Parquet.

Works on the numpy columns of ``flow_columns`` so the command line never needs
pandas (0.7 s of start-up); Parquet goes through pyarrow directly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._kernels import timefmt
from ..errors import DetectorError
from ..units import human_bytes

# An output file's format by its extension, when none is given.
FLOW_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                 ".json": "jsonl", ".ndjson": "jsonl"}  # fmt: skip

TABLE_COLUMNS = ["first_seen", "src_ip", "src_port", "dst_ip", "dst_port", "transport",
                 "src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes",
                 "duration_ms", "expiry_reason"]  # fmt: skip


def _timestamp_bytes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 UTC text as fixed-width bytes (``S27``, or ``S30`` when some value
    needs nanoseconds) and the mask of present (not NaT) values."""
    ns = values.view(np.int64)
    present = ~np.isnat(values)
    digits = 6 if not np.any(ns[present] % 1000) else 9
    out = np.zeros((len(ns), 21 + digits), dtype=np.uint8)
    timefmt.iso_utc(np.where(present, ns, 0), digits, out)
    return out.view(f"S{21 + digits}").ravel(), present


def _timestamp_texts(values: np.ndarray) -> np.ndarray:
    """ISO 8601 in UTC as Python strings (None for NaT)."""
    text, present = _timestamp_bytes(values)
    texts = text.astype(str).astype(object)
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


def arrow_column(values: Any) -> Any:
    """A pyarrow array of a numpy column (or the pyarrow array itself), built
    from its buffers: ``pyarrow.array`` on numpy input imports pandas to look
    for pandas types, a second of a command that otherwise never needs it."""
    import pyarrow as pa

    if isinstance(values, pa.Array):
        return values
    if values.dtype.kind == "M":
        present = ~np.isnat(values)
        return pa.Array.from_buffers(
            pa.timestamp("ns", tz="UTC"),
            len(values),
            [_validity(present), pa.py_buffer(np.ascontiguousarray(values.view(np.int64)))],
            null_count=len(values) - int(np.count_nonzero(present)),
        )
    if values.dtype == object:
        return string_array(values.tolist())
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)]
    )


def _validity(present: np.ndarray) -> Any:
    import pyarrow as pa

    if present.all():
        return None
    return pa.py_buffer(np.packbits(present, bitorder="little"))


def string_array(texts: list[str | None]) -> Any:
    """A pyarrow string array of Python strings (None: null), from buffers."""
    import pyarrow as pa

    encoded = [b"" if t is None else t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    present = np.array([t is not None for t in texts], dtype=bool)
    # 32-bit offsets when the text fits them: the cast from large_string would
    # import pyarrow.compute, 0.2 s of every command's start.
    small = int(offsets[-1]) < 2**31
    array = pa.Array.from_buffers(
        pa.string() if small else pa.large_string(),
        len(encoded),
        [
            _validity(present),
            pa.py_buffer(offsets.astype(np.int32) if small else offsets),
            pa.py_buffer(b"".join(encoded)),
        ],
        null_count=len(encoded) - int(np.count_nonzero(present)),
    )
    return array if small else array.cast(pa.string())


def dictionary_array(codes: np.ndarray, names: Sequence[str], index_type: Any) -> Any:
    """Codes into ``names`` as a pyarrow dictionary array holding only the names
    used (what Parquet stores for a column of few distinct values)."""
    import pyarrow as pa

    used = np.flatnonzero(np.bincount(codes.astype(np.int64), minlength=len(names)))
    remap = np.full(max(len(names), 1), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    dtype = np.int16 if index_type.bit_width == 16 else np.int8
    indices = remap[codes.astype(np.int64)].astype(dtype)
    return pa.DictionaryArray.from_arrays(
        pa.Array.from_buffers(index_type, len(indices), [None, pa.py_buffer(indices)]),
        string_array([names[u] for u in used.tolist()]),
    )


def _text_table(columns: dict[str, Any]):  # type: ignore[no-untyped-def]
    """A pyarrow table with timestamps as ISO 8601 text (CSV and JSON have no
    time type; ISO text is what Zeek, Suricata and ECS users expect)."""
    import pyarrow as pa

    arrays = {}
    for name, values in columns.items():
        if isinstance(values, pa.DictionaryArray):
            arrays[name] = values.cast(pa.string())
        elif not isinstance(values, pa.Array) and values.dtype.kind == "M":
            text, present = _timestamp_bytes(values)
            lengths = np.where(present, text.dtype.itemsize, 0)
            offsets = np.zeros(len(text) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            arrays[name] = pa.Array.from_buffers(
                pa.string(),
                len(text),
                [_validity(present), pa.py_buffer(offsets), pa.py_buffer(text[present].tobytes())],
                null_count=len(text) - int(np.count_nonzero(present)),
            )
        else:
            arrays[name] = arrow_column(values)
    if "server_name" in arrays:
        arrays["server_name"] = _not_a_formula(arrays["server_name"])
    return pa.table(arrays)


def _not_a_formula(texts: Any) -> Any:
    """A name from the traffic as a CSV cell: a leading ``'`` where it starts with
    ``=``, ``+``, ``-`` or ``@``, so a spreadsheet shows it rather than runs it
    (alerts' CSV does the same: alerts.mask.csv_cell). The first bytes are read
    from the arrow buffers with numpy: pyarrow's compute functions import pandas,
    which costs the flows command a second of start-up."""
    import pyarrow as pa

    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        return texts
    n = len(texts)
    width = "<i8" if pa.types.is_large_string(texts.type) else "<i4"
    _validity, offset_buffer, data_buffer = texts.buffers()
    window = np.frombuffer(offset_buffer, dtype=width)[texts.offset : texts.offset + n + 1]
    offsets: np.ndarray[Any, np.dtype[np.int64]] = window.astype(np.int64)
    if data_buffer is None or not n:
        return texts
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    starts = offsets[:-1]
    present = offsets[1:] > starts
    first = np.zeros(n, dtype=np.uint8)
    first[present] = data[starts[present]]
    formula = np.isin(first, np.frombuffer(b"=+-@", dtype=np.uint8))
    if not formula.any():
        return texts
    values = texts.to_pylist()
    for i in np.flatnonzero(formula).tolist():
        values[i] = "'" + values[i]
    return pa.array(values, type=texts.type)


def _write_csv(slices: Iterable[dict[str, np.ndarray]], stream: IO[bytes]) -> None:
    # pyarrow's C++ writer: a million flows in about a second, where the csv
    # module takes ten.
    import pyarrow.csv as pacsv

    for i, columns in enumerate(_ahead(slices)):
        options = pacsv.WriteOptions(include_header=i == 0, quoting_style="needed")
        pacsv.write_csv(_text_table(columns), stream, write_options=options)


def _write_jsonl(slices: Iterable[dict[str, np.ndarray]], stream: IO[bytes]) -> None:
    # pandas' C JSON writer; per-row json.dumps is ten times slower.
    import pandas as pd

    for columns in slices:
        frame = pd.DataFrame(
            {
                name: _timestamp_texts(values) if values.dtype.kind == "M" else values
                for name, values in columns.items()
            }
        )
        if len(frame):
            text = frame.to_json(orient="records", lines=True, force_ascii=False)
            stream.write((text if text.endswith("\n") else text + "\n").encode("utf-8"))


def _ahead(slices: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """The slices, each made in a second thread while the caller writes the one
    before: making columns (numba kernels, numpy) and pyarrow's writers both
    release the GIL, so on two cores the two overlap."""
    from concurrent.futures import ThreadPoolExecutor

    iterator = iter(slices)
    with ThreadPoolExecutor(1, thread_name_prefix="flow-columns") as pool:
        pending = pool.submit(next, iterator, None)
        while True:
            columns = pending.result()
            if columns is None:
                return
            pending = pool.submit(next, iterator, None)
            yield columns


def _write_parquet(slices: Iterable[dict[str, np.ndarray]], path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for columns in _ahead(slices):
            table = pa.table({name: arrow_column(values) for name, values in columns.items()})
            for name, index_type in (
                ("transport", pa.int16()),
                ("expiry_reason", pa.int8()),
                ("conn_state", pa.int8()),
            ):
                index = table.schema.get_field_index(name)
                if not pa.types.is_dictionary(table.schema.field(index).type):
                    table = table.set_column(
                        index, name, table.column(name).cast(pa.dictionary(index_type, pa.string()))
                    )
            if writer is None:
                # Dictionaries only where values repeat (a unique-per-flow
                # Community ID gains nothing and costs half the write time);
                # zstd (level 1): two thirds of snappy's size (71 against 106 MB
                # for 1M flows); with snappy the 20M command took 0.88 of its time
                # (8 interleaved pairs, 2026-11-29). Kept for smaller archives.
                writer = pq.ParquetWriter(
                    path,
                    table.schema,
                    compression="zstd",
                    use_dictionary=[
                        "src_ip",
                        "dst_ip",
                        "transport",
                        "expiry_reason",
                        "conn_state",
                        "history",
                    ],  # fmt: skip
                )
            writer.write_table(table)  # one row group per slice
    finally:
        if writer is not None:
            writer.close()


def _write_table(
    slices: Iterable[dict[str, np.ndarray]], stream: IO[bytes], by_bytes: bool
) -> None:
    wrote = False
    for columns in slices:
        if len(columns["first_seen"]):
            _write_table_slice(columns, stream, by_bytes, header=not wrote)
            wrote = True
    if not wrote:
        stream.write(b"(no flows)\n")


def _write_table_slice(
    columns: dict[str, np.ndarray], stream: IO[bytes], by_bytes: bool, header: bool
) -> None:
    order = np.arange(len(columns["first_seen"]))
    if by_bytes:
        order = np.argsort(-columns["bidirectional_bytes"], kind="stable")
    shown = {name: columns[name][order] for name in TABLE_COLUMNS}
    first = np.datetime_as_string(shown["first_seen"], unit="ms", timezone="UTC")
    rows = [[
        f.replace("T", " "), src, str(sp), dst, str(dp), str(tr), f"{a:,}", human_bytes(b),
        f"{c:,}", human_bytes(d), f"{ms / 1000:.1f}", reason,
    ] for f, src, sp, dst, dp, tr, a, b, c, d, ms, reason in zip(
        first.tolist(), *(shown[n].tolist() for n in TABLE_COLUMNS[1:]), strict=True
    )]  # fmt: skip
    titles = ["first packet (UTC)", "source", "port", "destination", "port", "proto",
              "packets out", "bytes out", "packets in", "bytes in", "seconds", "ended"]  # fmt: skip
    # Widths fit the values; a long listing is written a slice at a time and
    # each slice is aligned on its own.
    widths = [max(len(titles[i]), *(len(r[i]) for r in rows)) for i in range(len(titles))]
    right = {2, 4, 6, 7, 8, 9, 10}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    text = [line(titles)] if header else []
    text.extend(line(r) for r in rows)
    stream.write(("\n".join(text) + "\n").encode("utf-8"))


def write_flows(
    slices: Iterable[dict[str, np.ndarray]], fmt: str, path: str | None, *, by_bytes: bool = False
) -> None:
    """Write flow column slices (``FlowTable.column_slices``) as ``table``,
    ``csv``, ``jsonl`` or ``parquet`` to ``path`` (stdout when None; Parquet
    needs a path). ``by_bytes`` orders a table by bytes, largest first."""
    try:
        if fmt == "parquet":
            if path is None:
                raise DetectorError("Parquet output needs a file: add -o FILE.parquet")
            _write_parquet(slices, path)
            return
        writer = {"csv": _write_csv, "jsonl": _write_jsonl}.get(
            fmt, lambda c, s: _write_table(c, s, by_bytes)
        )
        if path:
            with open(path, "wb") as stream:
                writer(slices, stream)
        else:
            sys.stdout.flush()
            writer(slices, sys.stdout.buffer)
            sys.stdout.buffer.flush()
    except OSError as exc:
        raise DetectorError(f"cannot write {path or 'stdout'}: {exc.strerror or exc}") from None


def flow_format(fmt: str | None, output: str | None) -> str:
    """The format to write flows in: ``fmt`` when given, else the one of
    ``output``'s extension (``FLOW_SUFFIXES``), else a table."""
    if fmt:
        return fmt
    if output:
        return FLOW_SUFFIXES.get(Path(output).suffix.lower(), "table")
    return "table"
