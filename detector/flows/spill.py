"""Closed flow records kept on disk while a table counts, so that a capture of any
length (a spoofed flood: every packet a new flow) holds a bounded amount of
memory.

A table hands its closed rows here in runs: each run sorted by the output order
(first packet, then the order the flows were closed in: their *export index*)
and written, with its export indexes, to a file that has no name. The file is
made with ``O_TMPFILE`` where the system has it, else created and unlinked at
once (``tempfile.TemporaryFile``), and read by its descriptor: flow records are
personal data, and no file of them outlives the process, however it ends.

Reading back: :func:`merge` gives the rows of any runs (and rows still in
memory) in output order, holding a bounded block of each run at a time;
:meth:`SpillFile.blocks` gives a run a block at a time, unordered.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .._kernels import flowtable as fk
from ..errors import DetectorError

ROW_BYTES = fk.FLOW_COLUMNS * 8  # 256
# Closed rows a table keeps in memory before it writes them out as a run.
SPILL_BYTES = 64 << 20
SPILL_ROWS = SPILL_BYTES // ROW_BYTES  # 262,144
# Rows a merge holds over all its runs at once (a block of each run).
MERGE_BYTES = 32 << 20
MIN_BLOCK = 1024  # rows of a run read at once, however many runs there are
WRITE_ROWS = 1 << 16  # rows gathered into sorted order at a time when writing


@dataclass(frozen=True)
class Run:
    """Rows ``n`` of a spill file from byte ``offset``, then their export indexes."""

    offset: int
    n: int

    @property
    def index_offset(self) -> int:
        return self.offset + self.n * ROW_BYTES


class SpillFile:
    """Runs of closed flow rows in one nameless file in ``directory`` (default:
    the system's temporary directory, ``$TMPDIR``).

    A run is sorted and written by a thread of its own while the table counts
    on (writing 64 MiB took 0.2-0.3 s on the test machine's disk: a sixth of
    counting a 3M-packet flood when done in line); one run at most is being
    written while the next fills, and readers wait for it."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = os.fspath(directory) if directory is not None else tempfile.gettempdir()
        try:
            # Kept open for the table's life; closed by close() or with the table.
            self._file = tempfile.TemporaryFile(dir=self.directory, buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise self._error("cannot make a file", exc) from None
        self.size = 0
        self.runs: list[Run] = []
        self.rows = 0  # rows handed over (written, or being written)
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def _error(self, what: str, exc: OSError) -> DetectorError:
        return DetectorError(
            f"{self.directory}: {what} for the flow records kept on disk: "
            f"{exc.strerror or exc} (set TMPDIR to a directory with room)"
        )

    def write_run(
        self,
        chunks: list[np.ndarray],
        first_index: int,
        *,
        wait: bool = False,
        recycle: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        """Write the rows of ``chunks`` (closed in this order, export indexes
        from ``first_index``) as a run sorted by output order; in the
        background unless ``wait``. The chunks are the file's to let go of,
        each handed to ``recycle`` once written."""
        self.wait()
        self.rows += sum(len(chunk) for chunk in chunks)
        if wait:
            self._write_run(chunks, first_index, recycle)
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(
                1, thread_name_prefix="flow-spill", initializer=_yield_to_counting
            )
        self._pending = self._writer.submit(self._write_run, chunks, first_index, recycle)

    def wait(self) -> None:
        """Wait for the run being written; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write_run(
        self,
        chunks: list[np.ndarray],
        first_index: int,
        recycle: Callable[[np.ndarray], None] | None,
    ) -> None:
        # Sorted straight from the chunks, a piece at a time, not through one
        # concatenated copy of them all (64 MiB more memory, and new pages).
        starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
        n = int(starts[-1])
        firsts = np.concatenate([chunk[:, fk.C_FIRST] for chunk in chunks])
        order = np.argsort(firsts, kind="stable")
        piece = np.empty((min(WRITE_ROWS, n), fk.FLOW_COLUMNS), dtype=np.int64)
        run = Run(self.size, n)
        try:
            for start in range(0, n, WRITE_ROWS):
                wanted = order[start : start + WRITE_ROWS]
                out = piece[: len(wanted)]
                source = np.searchsorted(starts, wanted, side="right") - 1
                for c, chunk in enumerate(chunks):
                    mine = source == c
                    out[mine] = chunk[wanted[mine] - starts[c]]
                self._write(out)
            self._write(order.astype(np.int64) + first_index)
        except OSError as exc:
            raise self._error("cannot write", exc) from None
        self.runs.append(run)
        if recycle is not None:
            for chunk in chunks:
                recycle(chunk)
        chunks.clear()

    def _write(self, values: np.ndarray) -> None:
        view = np.ascontiguousarray(values).data.cast("B")
        while view:
            done = os.pwrite(self._file.fileno(), view, self.size)
            self.size += done
            view = view[done:]

    def read(self, run: Run, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of ``run`` and their export indexes."""
        self.wait()
        n = stop - start
        rows = np.empty((n, fk.FLOW_COLUMNS), dtype=np.int64)
        index = np.empty(n, dtype=np.int64)
        self._read(rows, run.offset + start * ROW_BYTES)
        self._read(index, run.index_offset + start * 8)
        return rows, index

    def _read(self, into: np.ndarray, offset: int) -> None:
        view = into.data.cast("B")
        while view:
            try:
                got = os.preadv(self._file.fileno(), [view], offset)
            except OSError as exc:
                raise self._error("cannot read back", exc) from None
            if got == 0:
                raise DetectorError(f"{self.directory}: flow records kept on disk cut short")
            offset += got
            view = view[got:]

    def written_runs(self) -> list[Run]:
        """Every run, once the one being written is done."""
        self.wait()
        return list(self.runs)

    def blocks(self, run: Run, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``run`` ``block`` rows at a time (rows, export indexes), in output order."""
        for start in range(0, run.n, block):
            yield self.read(run, start, min(start + block, run.n))

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown()
            self._file.close()


def _yield_to_counting() -> None:
    """The writer's thread gives way to the counting thread when both want a
    core (Linux: a thread's own nice value); when it falls behind, counting
    waits for it anyway."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class _Cursor:
    """Where a merge stands in one sorted source: the block in memory (rows,
    export indexes) and what is left to read."""

    def __init__(self, blocks: Iterator[tuple[np.ndarray, np.ndarray]], last: bool) -> None:
        self._blocks = blocks
        self.rows = np.empty((0, fk.FLOW_COLUMNS), dtype=np.int64)
        self.index = np.empty(0, dtype=np.int64)
        self.more = True
        self.refill()
        if last:  # the whole source is in memory: nothing left to read
            self.more = False

    def refill(self) -> None:
        if len(self.rows) == 0 and self.more:
            got = next(self._blocks, None)
            if got is None:
                self.more = False
            else:
                self.rows, self.index = got
                self.more = True

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows, index = self.rows[:n], self.index[:n]
        self.rows, self.index = self.rows[n:], self.index[n:]
        return rows, index

    def count_through(self, first: int, index: int) -> int:
        """Rows of the block at or before (``first``, ``index``) in output order."""
        firsts = self.rows[:, fk.C_FIRST]
        lo = int(np.searchsorted(firsts, first, side="left"))
        hi = int(np.searchsorted(firsts, first, side="right"))
        return lo + int(np.searchsorted(self.index[lo:hi], index, side="right"))


def merge(
    spill: SpillFile | None,
    runs: Sequence[Run],
    memory: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """Rows of ``runs`` of ``spill`` and of ``memory`` (rows and their export
    indexes, sorted by output order), together in output order: by first packet,
    then export index, exactly as a stable sort by first packet of all the rows
    in the order they were closed. Yields blocks of rows; holds about
    ``MERGE_BYTES`` of rows read back at once, whatever the number of runs.

    Each step emits every row held that is no later than the earliest of the
    last rows held from runs with more to read: nothing not yet read can come
    before it, and that run's block is used up, so each step reads on."""
    if spill is not None:
        spill.wait()
    block = max(MERGE_BYTES // ROW_BYTES // max(len(runs), 1), MIN_BLOCK)
    cursors = [_Cursor(spill.blocks(run, block), last=False) for run in runs] if spill else []
    if memory is not None and len(memory[0]):
        cursors.append(_Cursor(iter([(memory[0], memory[1])]), last=True))
    while True:
        cursors = [c for c in cursors if len(c.rows)]
        if not cursors:
            return
        bounds = [(int(c.rows[-1, fk.C_FIRST]), int(c.index[-1])) for c in cursors if c.more]
        if bounds:
            first, index = min(bounds)
            parts = [c.take(c.count_through(first, index)) for c in cursors]
        else:
            parts = [c.take(len(c.rows)) for c in cursors]
        parts = [p for p in parts if len(p[0])]
        if len(parts) == 1:
            rows = parts[0][0]
        else:
            rows = np.concatenate([p[0] for p in parts])
            indexes = np.concatenate([p[1] for p in parts])
            rows = rows[np.lexsort((indexes, rows[:, fk.C_FIRST]))]
        yield rows
        for cursor in cursors:
            cursor.refill()
