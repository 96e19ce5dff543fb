"""FlowTable: feed packet batches in, get flow records out (docs/flows.md)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._kernels import flowtable as fk
from ..capture import CaptureProblem, CaptureStats, PacketBatch, read_packets
from ..capture.files import PayloadInspector
from ..errors import DecodeError
from . import payload as fp
from . import spill as sp
from .naming import FlowNames
from .records import columns_to_frame, flow_columns, iter_flow_columns, row_slices

if TYPE_CHECKING:  # pandas is imported only when a DataFrame is asked for (start-up time)
    import pandas as pd

NS = 1_000_000_000
DEFAULT_IDLE_TIMEOUT = 120.0  # seconds, as nfstream
DEFAULT_ACTIVE_TIMEOUT = 1800.0
DEFAULT_MAX_FLOWS = 1_000_000
# Small to start: the table doubles when it must, and while it is small its
# slot table and rows stay in the core's caches (a 2M-packet capture with 100k
# flows has under 5,000 open at once; starting at 65,536 rows put a 1 MB slot
# table and 12 MB of rows in the way of every look-up).
INITIAL_FLOWS = 1 << 12
EXPORT_ROWS = 1 << 16
FRAG_SLOTS = 1 << 14  # recent first fragments remembered for their followers
# One live row (128 B), its extra line (64 B: first times, TCP state and
# history), two slots (16 B) and a free-list entry (8 B).
BYTES_PER_FLOW = fk.LIVE_COLUMNS * 8 + fk.EXTRA_COLUMNS * 8 + 2 * 8 + 8


class FlowTable:
    """Bidirectional flow table driven by packet time.

    >>> table = FlowTable(idle_timeout=120, active_timeout=1800)
    >>> for batch in read_packets(["a.pcap", "b.pcap"]):
    ...     table.ingest(batch)
    >>> table.flush()
    >>> flows = table.to_frame()

    Closed flows beyond ``spill_rows`` (default 64 MiB of rows) are written
    to a nameless file in ``spill_dir`` (default ``$TMPDIR``; see
    ``detector.flows.spill``) and read back in order by ``column_slices``;
    ``spill_rows=None`` keeps them all in memory.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        active_timeout: float = DEFAULT_ACTIVE_TIMEOUT,
        max_flows: int = DEFAULT_MAX_FLOWS,
        spill_rows: int | None = sp.SPILL_ROWS,
        spill_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if idle_timeout <= 0 or active_timeout <= 0:
            raise ValueError(
                f"timeouts must be positive seconds (idle_timeout={idle_timeout}, "
                f"active_timeout={active_timeout})"
            )
        if max_flows < 16:
            raise ValueError(f"max_flows must be at least 16 (got {max_flows})")
        if spill_rows is not None and spill_rows < 1:
            raise ValueError(f"spill_rows must be at least 1, or None (got {spill_rows})")
        # round, not int: 1.001 s is 1001000000 ns, not 1000999999.
        self.idle_ns = round(idle_timeout * NS)
        self.active_ns = round(active_timeout * NS)
        # Sweeping more often than a quarter of the idle timeout frees memory no
        # sooner in practice and costs a scan of the table each time.
        self.sweep_ns = max(self.idle_ns // 4, NS)
        self.max_flows = max_flows
        capacity = min(INITIAL_FLOWS, max_flows)
        self._flows = self._new_rows(capacity)
        self._extra = self._new_extra(capacity)
        self._slots = np.zeros(self._slot_count(capacity), dtype=np.int64)
        self._free = np.empty(capacity, dtype=np.int64)
        self._state = np.zeros(fk.S_FIELDS, dtype=np.int64)
        self._state[fk.S_NEXT_SWEEP] = fk.NO_TIME
        self._state[fk.S_LATEST] = fk.NO_TIME
        self._frag_keys = np.zeros(FRAG_SLOTS, dtype=np.uint64)
        self._frag_ports = np.zeros(FRAG_SLOTS, dtype=np.int64)
        self._icmp = fk.icmp_counterparts()
        self.export_buffer = np.empty((EXPORT_ROWS, fk.FLOW_COLUMNS), dtype=np.int64)
        self.n_export = 0
        self.kernel_params = np.array([self.idle_ns, self.active_ns, self.sweep_ns], dtype=np.int64)
        self._done: list[np.ndarray] = []  # closed rows in memory, in the order closed
        self._done_rows = 0
        self.spill_rows = spill_rows
        self.spill_dir = spill_dir
        self._spill: sp.SpillFile | None = None  # closed rows before those of _done
        self._spare: list[np.ndarray] = []  # export buffers written out, for reuse
        self.on_export: Callable[[np.ndarray], None] | None = None
        # The payload inspector that saw the same packets (count_flows sets it),
        # or its facts (``PayloadInspector.frame()``, for rows counted
        # elsewhere): flow records take their service and server name from them.
        self.inspector: Any = None
        self.facts: pd.DataFrame | None = None

    @staticmethod
    def _new_rows(capacity: int) -> np.ndarray:
        # Rows start on a 128-byte boundary, so each row is exactly two lines.
        spare = fk.ROW_ALIGN // 8
        raw = np.empty(capacity * fk.LIVE_COLUMNS + spare, dtype=np.int64)
        skip = (-raw.ctypes.data % fk.ROW_ALIGN) // 8
        rows = raw[skip : skip + capacity * fk.LIVE_COLUMNS].reshape(capacity, fk.LIVE_COLUMNS)
        rows[:, fk.C_SLOT] = -1
        return rows

    @staticmethod
    def _new_extra(capacity: int) -> np.ndarray:
        # One line each, on a line boundary (written when a flow opens).
        spare = 64 // 8
        raw = np.empty(capacity * fk.EXTRA_COLUMNS + spare, dtype=np.int64)
        skip = (-raw.ctypes.data % 64) // 8
        return raw[skip : skip + capacity * fk.EXTRA_COLUMNS].reshape(capacity, fk.EXTRA_COLUMNS)

    @property
    def kernel_table(self) -> tuple[np.ndarray, ...]:
        """The arrays the counting kernels take (``flowtable.FlowTableArrays``)."""
        return fk.FlowTableArrays(  # type: ignore[no-any-return]
            self._flows,
            self._slots,
            self._free,
            self._state,
            self._frag_keys,
            self._frag_ports,
            self._icmp,
            self._extra,
        )

    @staticmethod
    def _slot_count(capacity: int) -> int:
        return 1 << int(2 * capacity - 1).bit_length()  # a power of two ≥ 2 × capacity

    # -- counters ----------------------------------------------------------------
    @property
    def live_flows(self) -> int:
        return int(self._state[fk.S_LIVE])

    @property
    def evicted_flows(self) -> int:
        return int(self._state[fk.S_EVICTED])

    @property
    def packets(self) -> int:
        """IP packets counted into flows."""
        return int(self._state[fk.S_PACKETS])

    @property
    def latest_ns(self) -> int | None:
        """The latest packet time seen, IP or not (None before any packet)."""
        latest = int(self._state[fk.S_LATEST])
        return None if latest == fk.NO_TIME else latest

    @property
    def fragments_attributed(self) -> int:
        return int(self._state[fk.S_FRAG_HITS])

    @property
    def memory_bytes(self) -> int:
        return int(self._flows.nbytes + self._extra.nbytes + self._slots.nbytes + self._free.nbytes)

    @property
    def closed_flows(self) -> int:
        """Closed flow records kept (in memory and on disk), not counting
        those still in the export buffer."""
        return self._done_rows + (self._spill.rows if self._spill is not None else 0)

    @property
    def spilled_flows(self) -> int:
        """Closed flow records written to disk."""
        return self._spill.rows if self._spill is not None else 0

    # -- carrying state over ------------------------------------------------------
    def resume(self, rows: np.ndarray, latest_ns: int | None) -> None:
        """Take ``rows`` (flow rows closed as ``end`` by another table that read
        the input before this one) as live flows, and ``latest_ns`` as the
        latest packet time seen (None: none): the table then counts on as the
        other one would have (detector/distributed: a part read after the parts
        before it)."""
        if self.live_flows or self.n_export or self.closed_flows:
            raise RuntimeError("resume: the table has already counted packets")
        n = len(rows)
        if n > self.max_flows:
            raise ValueError(f"resume: {n} flows do not fit max_flows={self.max_flows}")
        capacity = self._flows.shape[0]
        while capacity < n:
            capacity = min(capacity * 2, self.max_flows)
        if capacity != self._flows.shape[0]:
            self._flows = self._new_rows(capacity)
            self._extra = self._new_extra(capacity)
            self._free = np.empty(capacity, dtype=np.int64)
            self._slots = np.zeros(self._slot_count(capacity), dtype=np.int64)
        fk.import_rows(np.ascontiguousarray(rows, dtype=np.int64), self._flows, self._extra)
        self._state[fk.S_HIGH_WATER] = n
        self._state[fk.S_LIVE] = n
        self._state[fk.S_N_FREE] = 0
        self._state[fk.S_LATEST] = fk.NO_TIME if latest_ns is None else latest_ns
        fk.rebuild_slots(self._flows, n, self._slots)

    @classmethod
    def of_rows(cls, rows: np.ndarray, **options: Any) -> FlowTable:
        """A table holding ``rows`` as its closed flows (flows counted elsewhere:
        ``columns()``, ``to_frame()`` and writers work on it as usual)."""
        table = cls(**options)
        table._done = [np.ascontiguousarray(rows, dtype=np.int64)]
        table._done_rows = len(rows)
        return table

    @classmethod
    def warm_up(cls) -> FlowTable:
        """Compile the counting kernels (counting, the idle sweep, the end of the
        input, eviction when full, the slot table rebuilt on growth) on a few
        made-up packets; returns the table, its flows closed."""
        from ..capture.live import sample_records

        _, batch = sample_records(40)
        table = cls(max_flows=16)  # 40 flows: it fills up and evicts
        table.ingest(batch)
        table._grow(len(table._flows))  # rebuilds the slot table, as growing does
        table.expire(int(batch.ts_ns[-1]))
        table.flush()
        return table

    # -- feeding -----------------------------------------------------------------
    def ingest(self, batch: PacketBatch) -> None:
        """Count a batch of packets into the table."""
        n = len(batch)
        i = 0
        while i < n:
            i, self.n_export, why = fk.aggregate(
                batch.arrays(), i, n, self.kernel_table, self.kernel_params, self.export_buffer,
                self.n_export,
            )  # fmt: skip
            self.handle(why)

    def handle(self, why: int) -> None:
        """Do what a counting kernel that stopped with ``why`` asks for."""
        if why == fk.COUNT_EXPORT_FULL:
            self._drain()
        elif why == fk.COUNT_TABLE_FULL:
            self._make_room()

    def expire(self, now_ns: int) -> None:
        """Close flows idle at ``now_ns`` (live capture: the clock moves on
        when packets stop)."""
        while True:
            self.n_export = fk.sweep_idle(
                self.kernel_table, now_ns, self.idle_ns, self.export_buffer, self.n_export
            )
            if self.n_export < self.export_buffer.shape[0]:
                break
            self._drain()

    def flush(self) -> None:
        """Close every open flow (end of input)."""
        while self.live_flows:
            self.n_export = fk.flush_all(
                self.kernel_table, self.idle_ns, self.export_buffer, self.n_export
            )
            self._drain()
        self._drain()
        # Nothing is open: give back the table's memory (216 MB at the default
        # cap) before the closed flows are written out.
        capacity = min(INITIAL_FLOWS, self.max_flows)
        if self._flows.shape[0] > capacity:
            self._flows = self._new_rows(capacity)
            self._extra = self._new_extra(capacity)
            self._slots = np.zeros(self._slot_count(capacity), dtype=np.int64)
            self._free = np.empty(capacity, dtype=np.int64)
            self._state[fk.S_HIGH_WATER] = 0
            self._state[fk.S_N_FREE] = 0
        if len(self.export_buffer) > EXPORT_ROWS:
            self.export_buffer = np.empty((EXPORT_ROWS, fk.FLOW_COLUMNS), dtype=np.int64)

    def _make_room(self) -> None:
        capacity = self._flows.shape[0]
        if capacity < self.max_flows:
            self._grow(min(capacity * 2, self.max_flows))
            return
        # An eighth a call, in one pass over the rows (evict_oldest), and an
        # export buffer with room for all of it: a 3M-packet flood then takes 15
        # calls, not 29 stopped half-way by the buffer.
        share = max(capacity // 8, 1)
        if self.export_buffer.shape[0] - self.n_export < share:
            self._drain()
            if self.export_buffer.shape[0] < share:
                self.export_buffer = np.empty((share, fk.FLOW_COLUMNS), dtype=np.int64)
        table = self.kernel_table
        self.n_export, _ = fk.evict_oldest(
            table, fk.evict_cut(table), share, self.export_buffer, self.n_export
        )
        self._drain()

    def _grow(self, capacity: int) -> None:
        rows = self._new_rows(capacity)
        high = int(self._state[fk.S_HIGH_WATER])
        rows[:high] = self._flows[:high]
        extra = self._new_extra(capacity)
        extra[:high] = self._extra[:high]
        free = np.empty(capacity, dtype=np.int64)
        n_free = int(self._state[fk.S_N_FREE])
        free[:n_free] = self._free[:n_free]
        slots = np.zeros(self._slot_count(capacity), dtype=np.int64)
        fk.rebuild_slots(rows, high, slots)
        self._flows, self._extra, self._free, self._slots = rows, extra, free, slots

    def _drain(self) -> None:
        if self.n_export:
            if self.n_export * 2 >= len(self.export_buffer):
                # Mostly full (a big capture): hand the buffer over and take a
                # new one, rather than copy 12 MB of rows and write them twice.
                done = self.export_buffer[: self.n_export]
                self.export_buffer = self._fresh_buffer()
            else:
                done = self.export_buffer[: self.n_export].copy()
            if self.on_export is not None:
                self.on_export(done)
            else:
                self._done.append(done)
                self._done_rows += len(done)
            self.n_export = 0
            if self.spill_rows is not None and self._done_rows >= self.spill_rows:
                self._write_out()

    def _fresh_buffer(self) -> np.ndarray:
        """An export buffer like the current one: one the spill file has
        written out and handed back, else a new one. New pages cost a fault
        each: 10-20 ms for the 24 MB buffer of an eviction, as much as the
        eviction itself."""
        while self._spare:
            try:
                buffer = self._spare.pop()  # the spill file's thread appends
            except IndexError:
                break
            if buffer.shape == self.export_buffer.shape:
                return buffer
        return np.empty_like(self.export_buffer)

    def _recycle(self, chunk: np.ndarray) -> None:
        """Take back a chunk of closed rows once written out: a whole export
        buffer handed over by _drain is kept for reuse (two at most)."""
        buffer = chunk.base if isinstance(chunk.base, np.ndarray) else chunk
        if buffer.shape == self.export_buffer.shape and len(self._spare) < 2:
            self._spare.append(buffer)

    def _write_out(self) -> None:
        """Write the closed rows in memory to the spill file as one run."""
        if self._spill is None:
            self._spill = sp.SpillFile(self.spill_dir)
        done, self._done, self._done_rows = self._done, [], 0
        self._spill.write_run(done, self._spill.rows, recycle=self._recycle)

    def _take_done(self) -> np.ndarray:
        """The closed rows in memory as one array, in the order closed; the
        chunks are let go as they are copied (np.concatenate would hold every
        chunk and the result at once: twice the memory of the flows)."""
        done, self._done, self._done_rows = self._done, [], 0
        if len(done) == 1:
            return done[0]
        rows = np.empty((sum(len(chunk) for chunk in done), fk.FLOW_COLUMNS), dtype=np.int64)
        at = 0
        done.reverse()
        while done:
            chunk = done.pop()
            rows[at : at + len(chunk)] = chunk
            at += len(chunk)
            del chunk
        return rows

    def close(self) -> None:
        """Let go of the closed rows on disk (the file has no name: closing it,
        or the end of the process, frees its space)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    # -- output ------------------------------------------------------------------
    def exported_rows(self) -> np.ndarray:
        """Closed flows as raw rows (columns of ``detector._kernels.flowtable``),
        in the order they were closed, all in memory: for small uses and tests.
        Readers of a whole capture's flows use ``row_chunks``, ``column_slices``
        or ``largest_rows``, which hold a bounded part of them at a time."""
        self._drain()
        if self._spill is not None:
            rows = np.empty((self.closed_flows, fk.FLOW_COLUMNS), dtype=np.int64)
            for index, chunk in self.indexed_row_chunks():
                rows[index] = chunk
            self.close()
            self._done, self._done_rows = [rows], len(rows)
        if not self._done:
            return np.empty((0, fk.FLOW_COLUMNS), dtype=np.int64)
        if len(self._done) > 1:
            rows = self._take_done()
            self._done, self._done_rows = [rows], len(rows)
        return self._done[0]

    def indexed_row_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Closed flows a bounded chunk at a time, in no particular order, each
        with its export index (the row's place in ``exported_rows``)."""
        self._drain()
        at = 0
        if self._spill is not None:
            spill = self._spill
            for run in spill.written_runs():
                for rows, index in spill.blocks(run, sp.WRITE_ROWS):
                    yield index, rows
            at = spill.rows
        for chunk in self._done:
            yield np.arange(at, at + len(chunk), dtype=np.int64), chunk
            at += len(chunk)

    def row_chunks(self) -> Iterator[np.ndarray]:
        """Closed flows as raw rows, a bounded chunk at a time, in no particular
        order: for readers that keep only some (a rule's internal-to-outside
        flows, a report's evidence)."""
        for _, rows in self.indexed_row_chunks():
            yield rows

    def rows_where(self, keep: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The closed flows whose rows ``keep`` (rows → bool mask) selects, in
        the order closed (as in ``exported_rows``), read a chunk at a time."""
        return self.columns_where(lambda rows: {"rows": rows}, lambda c: keep(c["rows"]))["rows"]

    def columns_where(
        self,
        columns: Callable[[np.ndarray], dict[str, np.ndarray]],
        keep: Callable[[dict[str, np.ndarray]], np.ndarray],
    ) -> dict[str, np.ndarray]:
        """``columns`` (rows -> named columns, e.g. ``records.initiator_columns``)
        of the closed flows that ``keep`` (columns -> bool mask) selects, in the
        order closed, a chunk at a time: a rule that reads a few columns of a
        million flows copies those, not the flows' whole rows (``rows_where``
        copied 256 bytes a flow three times: 6 of beacon's 9 s on cap20m)."""
        indexes: list[np.ndarray] = []
        parts: list[dict[str, np.ndarray]] = []
        for index, rows in self.indexed_row_chunks():
            chunk = columns(rows)
            mask = keep(chunk)
            if mask.any():
                indexes.append(index[mask])
                parts.append({name: values[mask] for name, values in chunk.items()})
        if not parts:
            empty = columns(np.empty((0, fk.FLOW_COLUMNS), dtype=np.int64))
            return {name: values.copy() for name, values in empty.items()}
        index = np.concatenate(indexes)
        order = None if _ascending(index) else np.argsort(index, kind="stable")
        joined = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        return joined if order is None else {name: v[order] for name, v in joined.items()}

    def count_where(self, keep: Callable[[np.ndarray], np.ndarray]) -> int:
        """How many closed flows ``keep`` (rows → bool mask) selects."""
        return sum(int(np.count_nonzero(keep(rows))) for rows in self.row_chunks())

    def rows_with_ends(
        self, addresses: Iterable[tuple[int, int]], *, most: int | None = None
    ) -> np.ndarray:
        """The closed flows with one of ``addresses`` ((hi, lo) pairs,
        ``networks.address_pair``) at either end, in the order closed. With
        ``most``, the addresses are taken fewest flows first while their flows
        come to at most ``most`` (a flood's target has millions): see
        :meth:`ends_within`."""
        wanted = sorted(set(addresses))
        if most is not None:
            wanted = sorted(self.ends_within(wanted, most))
        if not wanted:
            return np.empty((0, fk.FLOW_COLUMNS), dtype=np.int64)
        targets = np.array(wanted, dtype=_PAIR)
        return self.rows_where(lambda rows: _end_index(rows, targets)[0] >= 0)

    def ends_within(self, addresses: Iterable[tuple[int, int]], most: int) -> set[tuple[int, int]]:
        """Of ``addresses``, those whose closed flows (counted a chunk at a
        time) come to at most ``most`` in all, taken fewest flows first: what a
        reader of their whole rows can hold."""
        wanted = sorted(set(addresses))
        if not wanted:
            return set()
        targets = np.array(wanted, dtype=_PAIR)
        counts = np.zeros(len(wanted), dtype=np.int64)
        for rows in self.row_chunks():
            for at in _end_index(rows, targets)[1]:
                counts += np.bincount(at, minlength=len(wanted))
        kept: set[tuple[int, int]] = set()
        total = 0
        for k in np.argsort(counts, kind="stable").tolist():
            total += int(counts[k])
            if total > most:
                break
            kept.add(wanted[k])
        return kept

    def largest_rows(self, n: int) -> np.ndarray:
        """The ``n`` closed flows with the most bytes (both directions), largest
        first, ties in the order closed: ``records.largest_rows`` of
        ``exported_rows``, kept as a running top ``n`` over the chunks."""
        top_index = np.empty(0, dtype=np.int64)
        top = np.empty((0, fk.FLOW_COLUMNS), dtype=np.int64)
        for index, rows in self.indexed_row_chunks():
            index = np.concatenate([top_index, index])
            rows = np.concatenate([top, rows])
            size = rows[:, fk.C_DIR + fk.D_BYTES] + rows[:, fk.C_DIR + fk.DIR_WIDTH + fk.D_BYTES]
            order = np.lexsort((index, -size))[: max(n, 0)]
            top_index, top = index[order], rows[order]
        return top

    def sorted_row_blocks(self) -> Iterator[np.ndarray]:
        """Closed flows as raw rows in order of first packet (ties: in the order
        closed), a bounded block at a time."""
        self._drain()
        if self._spill is None:
            rows = self.exported_rows()
            yield rows[np.argsort(rows[:, fk.C_FIRST], kind="stable")]
            return
        memory = None
        if self._done:
            rows = self._take_done()
            self._done, self._done_rows = [rows], len(rows)
            order = np.argsort(rows[:, fk.C_FIRST], kind="stable")
            memory = (rows[order], order.astype(np.int64) + self._spill.rows)
        yield from sp.merge(self._spill, self._spill.written_runs(), memory)

    def flow_names(self) -> FlowNames | None:
        """Service and server names from ``facts``, or the facts of
        ``inspector`` (None without either)."""
        if self.facts is not None:
            return FlowNames(self.facts)
        inspectors = getattr(self.inspector, "inspectors", [self.inspector])
        for inspector in inspectors:
            if isinstance(inspector, fp.PayloadInspector):
                return FlowNames(inspector.fact_columns())
        return None

    def columns(self, *, community_id: bool = True) -> dict[str, np.ndarray]:
        """Closed flows as numpy columns (``FLOW_COLUMNS_DOC``), in order of first
        packet; timestamps are ``datetime64[ns]`` in UTC, NaT where none."""
        return flow_columns(
            self.exported_rows(), community_id=community_id, flow_names=self.flow_names()
        )

    def column_slices(
        self, *, slice_flows: int = 1 << 17, community_id: bool = True, arrow_text: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The same columns, in order of first packet, a slice at a time: what
        writers use, so memory holds the flow rows in memory (or a bounded part
        of those on disk) plus one slice of columns. ``arrow_text``: text
        columns as pyarrow arrays (``records.flow_columns``)."""
        options: dict[str, Any] = {
            "slice_flows": slice_flows,
            "community_id": community_id,
            "arrow_text": arrow_text,
            "flow_names": self.flow_names(),
        }
        if self._spill is None:
            # Sorted a slice at a time: no sorted copy of every row beside them.
            return iter_flow_columns(self.exported_rows(), **options)
        return row_slices(self.sorted_row_blocks(), **options)

    def to_frame(self, *, community_id: bool = True) -> pd.DataFrame:
        """Closed flows as a pandas DataFrame (``FLOW_COLUMNS_DOC``), in order of
        first packet; timestamps are timezone-aware UTC."""
        return columns_to_frame(self.columns(community_id=community_id))


def flows_from_captures(
    paths: Iterable[str | os.PathLike[str]], **options: Any
) -> tuple[pd.DataFrame, FlowTable]:
    """Read captures (one stream, in the order given) and return their flows as
    a DataFrame, and the table (for its counters). Options as for
    :func:`count_flows`."""
    table = count_flows(paths, **options)
    return table.to_frame(), table


def count_flows(
    paths: Iterable[str | os.PathLike[str]],
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    active_timeout: float = DEFAULT_ACTIVE_TIMEOUT,
    max_flows: int = DEFAULT_MAX_FLOWS,
    on_problem: Callable[[CaptureProblem], None] | None = None,
    stats_out: list[CaptureStats] | None = None,
    progress: Callable[[Iterator[int]], Iterator[int]] | None = None,
    threads: int = 1,
    also: Sequence[BatchConsumer] = (),
    inspector: PayloadInspector | None = None,
    spill_rows: int | None = sp.SPILL_ROWS,
    spill_dir: str | os.PathLike[str] | None = None,
) -> FlowTable:
    """Read captures (one stream, in the order given) into a flow table and close
    every flow; ``table.columns()`` or ``table.to_frame()`` give the records.

    One thread decodes and counts in a single pass. Two threads split the work
    into a pipeline: one decodes the next batch while the other counts this one
    (both kernels release the GIL); the flows are identical either way.

    ``also`` are more consumers (e.g. the per-minute activity table of a scan)
    fed every decoded batch after the flow table, so a capture is read once.
    ``inspector`` sees each batch's payload bytes as it is decoded (in the
    decoding thread). ``spill_rows``/``spill_dir``: as for :class:`FlowTable`.
    """
    table = FlowTable(
        idle_timeout=idle_timeout,
        active_timeout=active_timeout,
        max_flows=max_flows,
        spill_rows=spill_rows,
        spill_dir=spill_dir,
    )
    table.inspector = inspector
    consumers: list[BatchConsumer] = [table, *also]
    reading = _Reading(paths, on_problem, stats_out if stats_out is not None else [], inspector)
    if threads >= 2:
        steps = _decode_in_background(consumers, reading)
    elif also or inspector is not None:
        steps = _feed(consumers, reading)
    else:
        # The fused kernel: decode and count without writing a batch at all.
        steps = reading.batches(counter=table)
    for _ in progress(steps) if progress else steps:
        pass
    table.flush()
    return table


PIPELINE_BATCH = 1 << 15  # packets per batch between the two threads: fits in L2
PIPELINE_DEPTH = 4  # batches in flight


class BatchConsumer(Protocol):
    def ingest(self, batch: PacketBatch) -> None: ...


@dataclass
class _Reading:
    """What :func:`count_flows` reads (captures, one stream) and where their
    problems, statistics and payloads go."""

    paths: Iterable[str | os.PathLike[str]]
    on_problem: Callable[[CaptureProblem], None] | None
    stats: list[CaptureStats]
    inspector: PayloadInspector | None

    def batches(self, **how: Any) -> Iterator[Any]:
        """:func:`read_packets` of the captures (``how``: more of its options):
        decoded batches, or bytes read with a ``counter``."""
        how.setdefault("on_problem", self.on_problem)
        return read_packets(self.paths, stats_out=self.stats, inspector=self.inspector, **how)

    def position(self) -> int:
        """Bytes of the files on disk read so far."""
        return sum(s.disk_position for s in self.stats)


def _feed(consumers: Sequence[BatchConsumer], reading: _Reading) -> Iterator[int]:
    """Decode batches and hand each to every consumer; yields bytes-on-disk progress."""
    done = 0
    for batch in reading.batches(reuse_batch=True):
        for consumer in consumers:
            consumer.ingest(batch)
        position = reading.position()
        yield position - done
        done = position


def _decode_in_background(consumers: Sequence[BatchConsumer], reading: _Reading) -> Iterator[int]:
    """Count batches decoded by a second thread; yields bytes-on-disk progress.

    Batches circulate between a free list and a ready queue, so their arrays are
    reused (no fresh pages per batch) and at most PIPELINE_DEPTH are alive.
    """
    problems: list[CaptureProblem] = []
    free: queue.Queue[PacketBatch] = queue.Queue()
    for _ in range(PIPELINE_DEPTH):
        free.put(PacketBatch.empty(PIPELINE_BATCH))
    ready: queue.Queue[tuple[PacketBatch | None, int, int, BaseException | None]] = queue.Queue()
    stop = threading.Event()

    # The reader takes the batch to fill next as soon as it has yielded one; at the
    # end of a file that batch is never filled. Unless it is handed out again, each
    # file keeps one batch of the pool, and the fifth file waits forever.
    unfilled: list[PacketBatch] = []  # handed to the reader, not yielded back yet

    def take_free() -> PacketBatch:
        if unfilled:
            return unfilled[0]
        slot = free.get()
        if stop.is_set():
            raise _Stopped
        unfilled.append(slot)
        return slot

    def produce() -> None:
        done = 0
        try:
            # The reader fills batches taken from the pool, so nothing is copied;
            # problems are collected here and reported from the caller's thread.
            for batch in reading.batches(batch_supply=take_free, on_problem=problems.append):
                unfilled.clear()  # the batch handed out last is this one: filled
                position = reading.position()
                ready.put((batch, len(batch), position - done, None))
                done = position
            ready.put((None, 0, 0, None))
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            ready.put((None, 0, 0, exc))

    worker = threading.Thread(target=produce, name="egress-detector-decode", daemon=True)
    worker.start()
    reported = 0
    try:
        while True:
            slot, n, advanced, error = ready.get()
            while reported < len(problems):
                _report(problems[reported], reading.on_problem)
                reported += 1
            if error is not None:
                raise error
            if slot is None:
                break
            for consumer in consumers:
                consumer.ingest(slot)
            free.put(_whole(slot))
            yield advanced
    finally:
        stop.set()
        free.put(PacketBatch.empty(1))  # wake the producer if it waits for a slot
        worker.join()
    for problem in problems[reported:]:
        _report(problem, reading.on_problem)


class _Stopped(Exception):
    """The consumer has gone: the decoding thread stops."""


def _whole(batch: PacketBatch) -> PacketBatch:
    """The full-size batch behind a view returned by ``head``."""
    return PacketBatch(*(a.base if a.base is not None else a for a in batch.arrays()))


def _report(problem: CaptureProblem, on_problem: Callable[[CaptureProblem], None] | None) -> None:
    if on_problem is not None:
        on_problem(problem)
    elif problem.fatal:
        raise DecodeError(str(problem))


_PAIR = np.dtype([("hi", np.uint64), ("lo", np.uint64)])


def _end_index(rows: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """For each row, the index in ``targets`` (sorted (hi, lo) pairs) of an
    address at one of its ends (-1: none); and for each end, the indexes of
    the targets found there."""
    u = rows.view(np.uint64)
    found = np.full(len(rows), -1, dtype=np.int64)
    per_end = []
    for hi_column, lo_column in ((fk.C_A_HI, fk.C_A_LO), (fk.C_B_HI, fk.C_B_LO)):
        # By the low half first (cheap), then the pair.
        at = np.flatnonzero(np.isin(u[:, lo_column], targets["lo"]))
        ends = np.empty(len(at), dtype=_PAIR)
        ends["hi"], ends["lo"] = u[at, hi_column], u[at, lo_column]
        where = np.minimum(np.searchsorted(targets, ends), len(targets) - 1)
        hit = targets[where] == ends
        found[at[hit]] = where[hit]
        per_end.append(where[hit])
    return found, per_end


def _ascending(index: np.ndarray) -> bool:
    """Whether export indexes are already in the order closed (no spill)."""
    return bool(len(index) < 2 or (index[1:] > index[:-1]).all())
