"""The flows command's work: count the flows of captures and write them to one
output, which replaces an earlier file only when complete."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..capture import CaptureStats
from ..capture.reading import ONE_THREAD, Reading
from ..outputs import replacing
from . import write
from .payload import PayloadInspector
from .records import iter_flow_columns
from .table import FlowTable, count_flows


@dataclass
class FlowExport:
    table: FlowTable  # its counters: IP packets, flows closed early
    flows: int  # flows counted (all of them, also with ``top``)
    seconds: float  # reading and counting, not writing
    stats: list[CaptureStats] = field(default_factory=list)  # one per capture file read


def export_flows(
    captures: Sequence[str],
    fmt: str,
    output: str | None,
    *,
    top: int | None = None,
    payload: bool = True,
    reading: Reading = ONE_THREAD,
    **count_options: Any,
) -> FlowExport:
    """Count the flows of ``captures`` (read as ``reading`` says, with
    :func:`count_flows`'s other ``count_options``) and write them as ``fmt``
    to ``output`` (stdout when None); ``top``: only the ``top`` flows with the
    most bytes, largest first; ``payload``: run the payload inspector, for
    each flow's service and server name. An unwritable ``output`` is reported
    before the captures are read."""
    stats: list[CaptureStats] = []
    if payload:
        # Every flow's own facts are kept (its service and server name): no
        # fold, which drops a name's repeats on other flows.
        count_options.setdefault("inspector", PayloadInspector(fold=False))
    counting = replace(reading, stats_out=stats).counting(list(captures))
    with replacing(output, fsync=False) as path:  # checked now, in place when complete
        started = time.perf_counter()
        table = count_flows(captures, **counting, **count_options)
        seconds = time.perf_counter() - started
        flows = table.closed_flows
        try:
            _write_table(table, fmt, path, top)
        finally:
            table.close()
    return FlowExport(table, flows, seconds, stats)


def _write_table(table: FlowTable, fmt: str, path: str | None, top: int | None) -> None:
    # Text straight into Arrow arrays for the Arrow-based writers.
    arrow_text = fmt in ("parquet", "csv")
    if top is not None:
        slices = iter_flow_columns(table.largest_rows(top), arrow_text=arrow_text)
    else:
        slices = table.column_slices(arrow_text=arrow_text)
    write.write_flows(slices, fmt, path, by_bytes=top is not None)
