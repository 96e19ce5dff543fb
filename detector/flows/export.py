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
from . import payload as inspection
from . import write
from .payload import FactOverflow, PayloadInspector
from .records import iter_flow_columns
from .table import FlowTable, count_flows


@dataclass
class FlowExport:
    table: FlowTable  # its counters: IP packets, flows closed early
    flows: int  # flows counted (all of them, also with ``top``)
    seconds: float  # reading and counting, not writing
    stats: list[CaptureStats] = field(default_factory=list)  # one per capture file read
    # Payload facts counted past the inspector's budget, not kept: those flows
    # show no service or server name (None: nothing was cut).
    names_not_kept: FactOverflow | None = None


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
        # Each flow's service and server name come from its own facts: none is
        # dropped as a repeat of another flow's, and the budget is twice a
        # scan's (a million facts, about 200 MB); past it, the hosts with the
        # most facts keep their earliest (a flood of names), and the command
        # says how many flows went unnamed.
        count_options.setdefault(
            "inspector", PayloadInspector(budget=2 * inspection.FACT_BUDGET, drop_repeats=False)
        )
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
    inspector = count_options.get("inspector")
    cut = getattr(inspector, "overflow", None)
    return FlowExport(table, flows, seconds, stats, cut if cut is not None and len(cut) else None)


def _write_table(table: FlowTable, fmt: str, path: str | None, top: int | None) -> None:
    # Text straight into Arrow arrays for the Arrow-based writers.
    arrow_text = fmt in ("parquet", "csv")
    if top is not None:
        slices = iter_flow_columns(table.largest_rows(top), arrow_text=arrow_text)
    else:
        slices = table.column_slices(arrow_text=arrow_text)
    write.write_flows(slices, fmt, path, by_bytes=top is not None)
