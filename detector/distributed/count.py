"""One task: count one part of the input into compact partial tables.

What a task sends back is plain numpy (flow rows, activity rows, payload
facts) and the reading statistics, never a numba table: a few hundred bytes
per flow, pickled cheaply between processes or machines.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..capture import CaptureProblem, CaptureReader, CaptureStats
from ..capture.ranges import RangeReader
from ..errors import CaptureError
from ..flows import activity as activity_rows
from ..flows import layout
from ..flows.activity import ActivityTable
from ..flows.link import Inspectors, LinkInspector
from ..flows.payload import PayloadInspector
from ..flows.table import DEFAULT_ACTIVE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FLOWS, FlowTable
from .parts import Part

if TYPE_CHECKING:
    import pandas as pd

    from ..networks import NetworkSet
    from ..policy import Policy

FACT_COLUMNS = ("ts_ns", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "proto",
                "kind", "a", "b", "c", "d", "text", "secret")  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What every task of one scan counts with (the single-process scan's values)."""

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    active_timeout: float = DEFAULT_ACTIVE_TIMEOUT
    max_flows: int = DEFAULT_MAX_FLOWS
    bin_seconds: int = 60
    inspect_max_packets: int = 0
    inspect_max_bytes: int = 0
    # The key of the ID-number hashes: one per scan, shared by its tasks, so a
    # number seen in two parts hashes the same (distinct counts stay right).
    secret_key: bytes = b""
    # The isolated networks, whose link layer each task looks at as one
    # process does (detector/flows/link.py); None: none, not looked at.
    isolated: NetworkSet | None = None

    @classmethod
    def for_policy(cls, policy: Policy) -> Settings:
        return cls(
            inspect_max_packets=policy.inspect_max_packets,
            inspect_max_bytes=policy.inspect_max_bytes,
            secret_key=os.urandom(16),
            isolated=policy.isolated if policy.isolated else None,
        )

    @property
    def inspects(self) -> bool:
        return self.inspect_max_packets > 0 and self.inspect_max_bytes > 0


@dataclass
class PartResult:
    """A part's partial tables. ``rows``: its flows as flow-table rows
    (``detector._kernels.flowtable`` columns), those still open at its end
    closed as ``end``; ``latest_ns``: its latest packet time (None: no packet)."""

    part: Part
    rows: np.ndarray
    latest_ns: int | None
    activity: np.ndarray  # ActivityTable.merged_columns()
    facts: dict[str, np.ndarray] | None
    stats: CaptureStats
    problems: list[CaptureProblem] = field(default_factory=list)
    evicted: int = 0
    failed: bool = False  # the task itself failed (problems say why)
    # What counting took where it ran (wall, and CPU of the thread that counted:
    # not the worker's own threads): the scan's phase
    # breakdown (``phases``) sums them to tell work from overhead.
    wall_s: float = 0.0
    cpu_s: float = 0.0
    # The flow and activity rows dealt into shares of hosts (detector/distributed/shares.py).
    shares: list[tuple[np.ndarray, np.ndarray]] | None = None
    # Of the activity: the earliest and latest packet (None: none), and rows.
    activity_span: tuple[int | None, int | None] = (None, None)
    facts_count: int = 0
    nbytes: int = 0  # of the tables sent back or kept on the worker
    # The part's link facts of isolated segments (LinkInspector.frame(); None:
    # not looked at): one row per distinct fact, few, so the summary keeps them.
    link: pd.DataFrame | None = None

    def summary(self) -> PartResult:
        """This result without its tables (what the client takes of a part
        whose tables stay on the worker), with their size and span."""
        first, last = (None, None)
        if self.shares is not None:
            spans = [a for _, a in self.shares if a.shape[1]]
            if spans:
                first = min(int(a[activity_rows.C_FIRST].min()) for a in spans)
                last = max(int(a[activity_rows.C_LAST].max()) for a in spans)
        nbytes = self.rows.nbytes + self.activity.nbytes
        nbytes += sum(r.nbytes + a.nbytes for r, a in self.shares or ())
        if self.facts is not None:
            nbytes += sum(column.nbytes for column in self.facts.values())
        if self.link is not None:
            nbytes += int(self.link.memory_usage(index=False).sum())
        return dataclasses.replace(
            self,
            rows=self.rows[:0],
            activity=self.activity[:, :0],
            facts=None,
            shares=None,
            activity_span=(first, last),
            facts_count=0 if self.facts is None else len(self.facts["ts_ns"]),
            nbytes=nbytes,
        )

    @property
    def fatal(self) -> bool:
        return self.failed or any(p.fatal for p in self.problems)

    @classmethod
    def failure(cls, part: Part, message: str) -> PartResult:
        offset = None if part.whole else part.start
        problem = CaptureProblem(part.path, offset, message, True)
        return cls(
            part,
            np.empty((0, layout.FLOW_COLUMNS), dtype=np.int64),
            None,
            np.empty((12, 0), dtype=np.int64),
            None,
            CaptureStats(path=part.path),
            [problem],
            failed=True,
        )


def count_part(
    part: Part,
    settings: Settings,
    seed: np.ndarray | None = None,
    seed_latest_ns: int | None = None,
) -> PartResult:
    """Count ``part`` into a fresh flow table, activity table and payload
    inspector (and link inspector, with isolated networks). ``seed``: flows
    open before this part (and the latest packet time before it), to count on
    from exactly where a single reader would be; only the flows are counted
    then (the rest does not depend on the seed)."""
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    table = FlowTable(
        idle_timeout=settings.idle_timeout,
        active_timeout=settings.active_timeout,
        max_flows=settings.max_flows,
    )
    if seed is not None:
        table.resume(seed, seed_latest_ns)
    activity = ActivityTable(bin_seconds=settings.bin_seconds)
    inspector = None
    if settings.inspects and seed is None:
        inspector = PayloadInspector(
            max_packets=settings.inspect_max_packets, max_bytes=settings.inspect_max_bytes
        )
        inspector._key = settings.secret_key
    link = None
    if settings.isolated is not None and seed is None:
        link = LinkInspector(settings.isolated)
    both = Inspectors(inspector, link) if link is not None else inspector
    reader: CaptureReader = (
        CaptureReader(part.path, reuse_batch=True, inspector=both)
        if part.whole
        else RangeReader(part.path, part.start, part.end, part.header, inspector=both)
    )
    problems: list[CaptureProblem] = []
    try:
        for batch in reader:
            table.ingest(batch)
            if seed is None:
                activity.ingest(batch)
    except CaptureError as exc:
        message = str(exc).removeprefix(f"{part.path}: ")
        problems.append(CaptureProblem(part.path, None, message, True))
    problems.extend(reader.stats.problems)  # a range's reader gives offsets in the file
    table.flush()
    facts = None
    if inspector is not None:
        frame = inspector.frame()
        facts = {c: frame[c].to_numpy() for c in FACT_COLUMNS}
    stats = dataclasses.replace(reader.stats, problems=[])
    rows = table.exported_rows()
    table.close()  # the rows read back from disk, if any: the file is let go
    if rows.base is not None:  # a view of an export buffer: only the rows, not the buffer
        rows = rows.copy()
    return PartResult(
        part,
        rows,
        table.latest_ns,
        activity.merged_columns().copy(),
        facts,
        stats,
        problems,
        table.evicted_flows,
        wall_s=time.perf_counter() - wall0,
        cpu_s=time.thread_time() - cpu0,
        link=link.frame() if link is not None else None,
    )
