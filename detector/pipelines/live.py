"""Live detection: packet sources → flow and activity tables → rules, on the clock.

Each source (a ring socket of a fanout group, a stdin stream, scapy) has a
worker thread that decodes its packets into a batch and counts the batch into
the worker's own :class:`FlowTable` and :class:`ActivityTable`; the kernels
release the GIL, so workers run on separate cores. The fanout spreads address
pairs (capture/live.py): both directions of a flow, and every fragment of a
datagram, reach the same worker, so each flow lives in one table.

The main thread keeps the clock. Workers close idle flows on the clock even
when no packet comes. At the end of every feature window (local time, a few
seconds of grace for the ring's last blocks), or every ``report_every``
seconds, the workers' activity tables are merged and analysed as a scan
analyses a file (:func:`pipelines.scan.scan_activity`); alerts not raised before
(no earlier alert of the same rule, host and other side overlaps them in
time) are emitted at once, so output is incremental; an alert raised before
whose figures grew is emitted again as an update (same event id). At the
end, open flows are closed and a final pass emits what is left: the same
alerts, with the same totals, a scan of a capture of the same packets
raises. Per-minute activity older than ``history_hours`` is dropped after
each analysis, but not when each host first reached each outside address.

Every few seconds the kernel's drop counters are read. A stretch in which
packets were dropped raises ``sensor-drops``, and alerts overlapping it carry
``egress.sensor_dropped_packets``; drops outside business hours when the
policy has isolated networks raise ``sensor-blind``: the sensor cannot vouch
that nothing left the isolated segment then.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..alerts.record import ALERT_RAISED, ALERT_UPDATED, Alert, incident_id
from ..capture.batch import PacketBatch
from ..detect.packets import PacketContext, RunningTotals
from ..detect.rules import BY_ID, DETECTIONS, sensor
from ..features.hosts import MINUTE_NS
from ..flows.activity import DEFAULT_MAX_ROWS, ActivityTable
from ..flows.layout import FLOW_COLUMNS
from ..flows.link import Inspectors, LinkInspector, merge_link_frames
from ..flows.payload import FactOverflow, PayloadInspector
from ..flows.table import (
    DEFAULT_ACTIVE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FLOWS,
    FlowTable,
)
from ..networks import address_text
from ..policy.suppress import split_suppressed
from .before import Before
from .scan import ScanResult, first_contacts, foldable, scan_activity

if TYPE_CHECKING:
    import pandas as pd

    from ..capture.live import SourceStats
    from ..detect.model import EgressModel
    from ..policy import Policy

NS = 1_000_000_000
REPORT_GRACE_S = 2.0  # after a window ends, wait this long for the ring's last blocks
EXPIRE_EVERY_S = 1.0
EXPIRE_SLACK_NS = 2 * 1_000_000_000  # > the ring's block retire time (50 ms) and a read
STATS_EVERY_S = 2.0
READ_TIMEOUT_S = 0.2  # how long a worker waits for packets before looking at the clock
# An analysis asked for by a sighting (a rule's look on the packet) starts at least this
# long after the last one ended: a host sweeping addresses (a sighting each) does not keep
# the main thread analysing without a pause.
URGENT_GAP_S = 0.5
# An analysis asked for by sightings reads only the sighted hosts' traffic (all of it
# the sensor keeps) and writes only the sighted rules' alerts of them: over 26 hours of
# a busy link, a whole analysis takes seconds (benchmarks/README.md). More hosts than
# this at once (a sweep): the whole analysis.
URGENT_MAX_HOSTS = 64

SENSOR_DROPS = sensor.DROPS.rule_id
SENSOR_BLIND = sensor.BLIND.rule_id


class PacketSource(Protocol):
    name: str
    batch_rows: int

    def read(
        self, batch: PacketBatch, timeout: float, inspector: PayloadInspector | None = None
    ) -> int: ...

    def wait(self, timeout: float) -> None: ...

    def stats(self) -> SourceStats: ...

    def close(self) -> None: ...


@dataclass
class LiveOptions:
    report_every: float | None = None  # seconds; None: at the end of each feature window
    duration: float | None = None  # seconds; None: until stopped
    max_packets: int | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    active_timeout: float = DEFAULT_ACTIVE_TIMEOUT
    max_flows: int = DEFAULT_MAX_FLOWS
    keep_flows: bool = False  # keep closed flow records (for --flows-out)
    history_hours: float = 26.0  # per-minute activity kept for the rules; 0: all
    interface: str = ""  # named in sensor alerts
    stats_every: float = STATS_EVERY_S


@dataclass
class DropSpan:
    start_ns: int
    end_ns: int
    dropped: int


@dataclass
class LiveStatus:
    """What the status line shows."""

    packets: int
    packets_per_second: float
    dropped: int
    live_flows: int
    alerts: int
    # Seconds since the capture worker that went round its loop least recently
    # last did (a stuck worker's grows; finished workers are left out).
    worker_silence: float = 0.0
    suppressed: int = 0  # incidents a [[suppress]] of the policy held back (not written)


@dataclass
class _Raised:
    """An alert written before: its span so far, its id, the figures it was
    last written with, and whether it named the other side's domain."""

    start_ns: int
    end_ns: int
    event_id: str
    figures: tuple[int, ...]
    updates: int = 0
    named: bool = False


def _figures(alert: Alert) -> tuple[int, ...]:
    """What an update reports when it changes: bytes, packets and the end."""
    return (alert.source_bytes, alert.source_packets, alert.destination_bytes,
            alert.destination_packets, alert.end_ns)  # fmt: skip


def _incident(alert: Alert) -> tuple[object, ...]:
    """Which incident an alert is of: rule, host and what the rule's declaration
    says tells two of that host's incidents apart (by default the other side)."""
    detection = BY_ID.get(alert.rule_id)
    other = detection.incident_key(alert) if detection is not None else alert.destination_ip
    return (alert.rule_id, alert.source_ip, other)


# The rules that look at packets as they are counted, in catalogue order.
WATCHING = tuple(d for d in DETECTIONS if d.on_packets is not None)


def _event_id(alert: Alert) -> str:
    """A stable id for an alert's documents: rule, host, other side and first
    packet's second, as scan and nightly give it (alerts/record.py: incident_id)."""
    return incident_id(alert.rule_id, alert.source_ip, alert.destination_ip, alert.start_ns)


@dataclass
class LiveResult:
    emitted: list[Alert]  # every alert raised, in the order it was emitted (no updates)
    final: ScanResult | None  # the last analysis: what a scan of the same packets gives
    flow_rows: np.ndarray  # closed flows, raw rows (kept only with keep_flows)
    packets: int
    received: int
    dropped: int
    drop_spans: list[DropSpan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    worker_packets: list[int] = field(default_factory=list)  # how the fanout spread them
    updates: list[Alert] = field(default_factory=list)  # alerts written again, grown


class _Worker(threading.Thread):
    """Reads one source and counts its packets into its own tables.

    The sensor's memory budget is the sensor's, whatever the number of
    workers: each of ``shares`` workers gets that share of the open flows and
    of the activity rows held before folding (the fanout spreads flows
    evenly), so a flood costs two workers what it costs one."""

    def __init__(
        self, source: PacketSource, engine: LiveDetector, index: int, shares: int = 1
    ) -> None:
        super().__init__(name=f"egress-detector-capture-{index}", daemon=True)
        self.source = source
        self.engine = engine
        options = engine.options
        self.flows = FlowTable(
            idle_timeout=options.idle_timeout,
            active_timeout=options.active_timeout,
            max_flows=max(options.max_flows // shares, 16),
        )
        self.flow_chunks: list[np.ndarray] = []
        self.flows.on_export = self._closed if options.keep_flows else _discard
        # Under a flood, few-packet outside addresses are counted together
        # (detector/flows/fold.py), under the policy in force at the time.
        self.activity = ActivityTable(
            bin_seconds=60, foldable=self._foldable, max_rows=max(DEFAULT_MAX_ROWS // shares, 1)
        )
        policy = engine.policy
        self.inspector: PayloadInspector | None = None
        if policy.inspect_max_packets > 0 and policy.inspect_max_bytes > 0:
            self.inspector = PayloadInspector(
                max_packets=policy.inspect_max_packets, max_bytes=policy.inspect_max_bytes
            )
            self.inspector.on_facts = self._facts_found
            if self.inspector.budget is not None:  # the sensor's budget, shared
                self.inspector.budget = max(self.inspector.budget // shares, 1)
        # The link layer of isolated segments (the isolated networks at start).
        self.link = LinkInspector(policy.isolated) if policy.isolated else None
        self.reading: Any = Inspectors(self.inspector, self.link) if self.link else self.inspector
        self.new_facts: list[dict[str, np.ndarray]] = []  # of the batch being read
        # Held while the tables (and the inspector) change; ``yielding`` asks
        # the worker to let the main thread have it (a busy worker would
        # otherwise take it back at once).
        self.lock = threading.Lock()
        self.yielding = False
        self.packets = 0
        self.error: BaseException | None = None
        self.finished = False  # the source has no more packets (end of a stream)
        self.beat = time.monotonic()  # when the loop last went round (the watchdog's)

    def _foldable(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return foldable(self.engine.policy)(hi, lo)

    def _closed(self, rows: np.ndarray) -> None:
        self.flow_chunks.append(rows)

    def _facts_found(self, chunk: dict[str, np.ndarray]) -> None:
        self.new_facts.append(chunk)

    def _take_facts(self) -> dict[str, np.ndarray] | None:
        """The payload facts found in the batch just read (None without inspection)."""
        if self.inspector is None:
            return None
        chunks, self.new_facts = self.new_facts, []
        if len(chunks) == 1:
            return chunks[0]
        if not chunks:
            return {"kind": np.empty(0, dtype=object)}
        return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            self.error = exc
        finally:
            self.engine.wake.set()

    def _loop(self) -> None:
        engine = self.engine
        batch = PacketBatch.empty(self.source.batch_rows)
        next_expiry = time.monotonic() + EXPIRE_EVERY_S
        while not engine.stopping.is_set():
            self.beat = time.monotonic()
            while self.yielding:
                time.sleep(0.001)
            with self.lock:
                # Payloads are read while their packets are still in the
                # source's buffer (the ring's blocks are held until then).
                n = self.source.read(batch, 0.0, self.reading)
                facts = self._take_facts()
                if n:
                    n = engine.take_packets(n)
                    part = batch.head(n)
                    self.flows.ingest(part)
                    self.activity.ingest(part)
                    self.packets += n
                    engine.watch(part, facts)
            if n:
                if engine.packets_left == 0:
                    engine.wake.set()
                    return
            elif getattr(self.source, "finished", False):
                self.finished = True
                return
            else:
                self.source.wait(READ_TIMEOUT_S)
            now = time.monotonic()
            if now >= next_expiry:
                next_expiry = now + EXPIRE_EVERY_S
                clock = engine.clock_ns(self.source)
                if clock is not None:
                    with self.lock:
                        # Packets still in a block the kernel has not handed
                        # over (or in a pipe) are older than the clock: a flow
                        # is closed only once none of its packets can be left.
                        self.flows.expire(clock - EXPIRE_SLACK_NS)


def _discard(rows: np.ndarray) -> None:
    """Closed flows are not kept unless asked for: a sensor runs for months."""


class LiveDetector:
    """Run sources until stopped; ``emit`` receives new alerts as they are raised.

    >>> detector = LiveDetector([RingSource("eth1")], policy, LiveOptions(), emit=print)
    >>> result = detector.run()      # until detector.stop(), --duration or --max-packets
    """

    def __init__(
        self,
        sources: Sequence[PacketSource],
        policy: Policy,
        options: LiveOptions,
        *,
        emit: Callable[[list[Alert]], None],
        status: Callable[[LiveStatus], None] | None = None,
        analysed: Callable[[ScanResult], None] | None = None,
        reload_policy: Callable[[], Policy | None] | None = None,
        model: EgressModel | None = None,
        reload_model: Callable[[Policy], EgressModel | None] | None = None,
    ) -> None:
        if not sources:
            raise ValueError("LiveDetector needs at least one packet source")
        self.sources = list(sources)
        self.policy = policy
        self.options = options
        self.emit = emit
        self.status = status
        self.analysed = analysed  # each analysis's result (live --status: top talkers)
        self.reload_policy = reload_policy
        self.model = model
        self.reload_model = reload_model
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.reload_requested = False
        self.stopped = False  # stop() was called (a signal), not a bound reached
        self._budget_lock = threading.Lock()
        self.packets_left: int | None = options.max_packets
        self._raised: dict[tuple[object, ...], list[_Raised]] = {}
        # When each host first reached each outside address: kept when old
        # minutes are dropped, so bulk-upload-new-destination does not take an
        # address reached before the history for new (a scan of the whole
        # span would not). 40 bytes per (host, outside address) pair.
        self.first_contacts: pd.DataFrame | None = None
        self.emitted: list[Alert] = []
        # Incidents (event.id) a [[suppress]] of the policy held back: counted, not written.
        self.suppressed: set[str] = set()
        self.updates: list[Alert] = []
        self.drop_spans: list[DropSpan] = []
        self._reported_drop_spans = 0
        self._received = [0] * len(self.sources)
        self._dropped = [0] * len(self.sources)
        # Sightings of the rules' looks on the packet (watch) already sent for an
        # analysis: (rule id, key); bounded by what the rules alert on (an isolated
        # host's other sides, P2P and messaging hosts, threshold crossings).
        self._watched: set[tuple[str, tuple[Any, ...]]] = set()
        # What the next analysis is asked to look at: rule id → the sighted hosts (hi, lo).
        self._sighted: dict[str, set[tuple[int, int]]] = {}
        self._watch_lock = threading.Lock()
        self._totals = RunningTotals()  # the volume rules' running sums (detect/packets.py)
        self._memo: dict[str, object] = {}  # what the looks build once per policy
        self._memo_policy: Policy | None = None
        self.urgent = False
        shares = len(self.sources)
        self.workers = [_Worker(s, self, i, shares) for i, s in enumerate(self.sources)]

    # -- called from worker threads ----------------------------------------------
    def watch(self, batch: PacketBatch, facts: dict[str, np.ndarray] | None = None) -> None:
        """Look at a batch just counted (and the payload facts found in it) for
        what must not wait for a window: each enabled rule that declares a look
        on the packet (``Detection.on_packets``: an isolated host's packet out,
        mail from it, a P2P signature, a messaging app's name or address, an
        upload crossing its threshold) returns its sightings. One not had before
        asks the main loop for an analysis now, so the alert leaves within a
        second or two of the packet (docs/live.md); the window's analysis then
        updates it."""
        if not len(batch) or not WATCHING:
            return
        policy = self.policy
        fresh: set[tuple[str, tuple[Any, ...]]] = set()
        # One look at a time: the running totals and the sightings are shared by
        # the workers (a host's uploads can reach several of them).
        with self._watch_lock:
            if self._memo_policy is not policy:
                self._memo, self._memo_policy = {}, policy
            packets = PacketContext(policy, batch, facts, self._totals, self._memo)
            for detection in WATCHING:
                assert detection.on_packets is not None
                if not policy.rule(detection.rule_id).enabled:
                    continue
                for key in detection.on_packets(packets):
                    sighting = (detection.rule_id, key)
                    if sighting not in self._watched:
                        fresh.add(sighting)
            self._watched |= fresh
        if fresh:
            with self._budget_lock:
                for rule_id, key in fresh:
                    self._sighted.setdefault(rule_id, set()).add((key[0], key[1]))
                self.urgent = True
            self.wake.set()

    def take_packets(self, n: int) -> int:
        """How many of ``n`` new packets to count (``--max-packets``)."""
        if self.packets_left is None:
            return n
        with self._budget_lock:
            n = min(n, self.packets_left)
            self.packets_left -= n
            return n

    def clock_ns(self, source: PacketSource) -> int | None:
        """The time flows expire against: a stream's own clock (it may replay
        an old capture), else this machine's, which stamps ring packets."""
        stream_clock = getattr(source, "clock_ns", None)
        if stream_clock is not None:
            return stream_clock()  # type: ignore[no-any-return]
        return time.time_ns()

    # -- control -------------------------------------------------------------------
    def stop(self) -> None:
        """Finish: flush open flows and windows, final alerts (signal-safe)."""
        self.stopped = True
        self.stopping.set()
        self.wake.set()

    def request_reload(self) -> None:
        """Reload the policy and the model at the next tick (SIGHUP; signal-safe)."""
        self.reload_requested = True
        self.wake.set()

    # -- the main loop ---------------------------------------------------------------
    def run(self) -> LiveResult:
        started_wall = time.time()
        started = time.monotonic()
        deadline = started + self.options.duration if self.options.duration else None
        next_report = self._next_report(started_wall)
        next_stats = started + self.options.stats_every
        last_stats_ns = time.time_ns()
        last_status = started
        last_packets = 0
        analysed_at = 0.0  # when the last analysis ended (monotonic)
        for worker in self.workers:
            worker.start()
        try:
            while not self.stopping.is_set():
                self.wake.wait(0.25)
                self.wake.clear()
                now = time.monotonic()
                self._raise_worker_errors()
                if self.reload_requested:
                    self.reload_requested = False
                    self._reload()
                if deadline is not None and now >= deadline:
                    break
                if self.packets_left == 0:
                    break
                if all(w.finished or not w.is_alive() for w in self.workers):
                    break
                if now >= next_stats:
                    next_stats = now + self.options.stats_every
                    last_stats_ns = self._read_drops(last_stats_ns)
                if time.time() >= next_report:
                    next_report = self._next_report(time.time())
                    with self._budget_lock:  # this analysis sees what was sighted
                        self.urgent, self._sighted = False, {}
                    self._analyse(final=False)
                    analysed_at = time.monotonic()
                elif self.urgent and now - analysed_at >= URGENT_GAP_S:
                    with self._budget_lock:  # taken and cleared at once: none is lost
                        self.urgent, sighted, self._sighted = False, self._sighted, {}
                    # A rule sighted something new on the packet: analyse now, not at
                    # the window's end (the window's analysis updates the alert).
                    self._analyse(final=False, sighted=sighted)
                    analysed_at = time.monotonic()
                if self.status is not None and now - last_status >= 1.0:
                    packets = self.packets
                    running = [now - w.beat for w in self.workers if not w.finished]
                    self.status(
                        LiveStatus(
                            packets,
                            (packets - last_packets) / (now - last_status),
                            sum(self._dropped),
                            sum(w.flows.live_flows for w in self.workers),
                            len(self.emitted),
                            max(running, default=0.0),
                            len(self.suppressed),
                        )
                    )
                    last_status, last_packets = now, packets
        finally:
            self.stopping.set()
            for worker in self.workers:
                worker.join()
        self._raise_worker_errors()
        self._read_drops(last_stats_ns)
        for worker in self.workers:
            worker.flows.flush()
        final = self._analyse(final=True)
        rows = [chunk for w in self.workers for chunk in w.flow_chunks]
        flow_rows = np.concatenate(rows) if rows else np.empty((0, FLOW_COLUMNS), dtype=np.int64)
        for source in self.sources:
            source.close()  # a stream cut short says so on closing
        problems = [p for s in self.sources if (p := getattr(s, "problem", None))]
        return LiveResult(
            emitted=self.emitted,
            final=final,
            flow_rows=flow_rows,
            packets=self.packets,
            received=sum(self._received),
            dropped=sum(self._dropped),
            drop_spans=self.drop_spans,
            problems=problems,
            worker_packets=[w.packets for w in self.workers],
            updates=self.updates,
        )

    @property
    def packets(self) -> int:
        return sum(w.packets for w in self.workers)

    def _raise_worker_errors(self) -> None:
        for worker in self.workers:
            if worker.error is not None:
                self.stopping.set()
                raise worker.error

    def _reload(self) -> None:
        """SIGHUP: the policy, then the model (checked against that policy).
        What fails to load leaves the old one in place (the callbacks say so)."""
        if self.reload_policy is not None:
            policy = self.reload_policy()
            if policy is not None:
                self.policy = policy
        if self.reload_model is not None and self.model is not None:
            model = self.reload_model(self.policy)
            if model is not None:
                self.model = model

    def _next_report(self, now_s: float) -> float:
        """When to analyse next: every ``report_every`` seconds, else just after
        the end of the current feature window in the site's local time."""
        if self.options.report_every:
            return now_s + self.options.report_every
        window_ns = self.policy.window_minutes * MINUTE_NS
        now_ns = int(now_s * NS)
        offset = int(self.policy.utc_offset_ns(np.array([now_ns], dtype=np.int64))[0])
        local = now_ns + offset
        end_local = (local // window_ns + 1) * window_ns
        return (end_local - offset) / NS + REPORT_GRACE_S

    def _read_drops(self, since_ns: int) -> int:
        now_ns = time.time_ns()
        dropped_now = 0
        for i, source in enumerate(self.sources):
            stats = source.stats()
            dropped_now += stats.kernel_dropped - self._dropped[i]
            self._received[i] = stats.kernel_received
            self._dropped[i] = stats.kernel_dropped
        if dropped_now > 0:
            self.drop_spans.append(DropSpan(since_ns, now_ns, dropped_now))
        return now_ns

    # -- analysis ------------------------------------------------------------------
    def snapshot(
        self, hosts: Sequence[tuple[int, int]] | None = None
    ) -> tuple[ActivityTable, pd.DataFrame | None]:
        """One activity table with every worker's rows so far, and the payload
        facts found so far (None when the policy turns inspection off); with
        ``hosts`` ((hi, lo) pairs), only the rows and facts with one of them at
        either end, picked from each worker's table before they are merged."""
        parts = []
        facts = []
        folded: dict[int, int] = {}  # the workers' outside addresses folded, per minute
        ports: dict[int, int] = {}  # ... and their conversation-minutes without a port
        for worker in self._each_worker_held():
            if hosts:
                parts.append(worker.activity.with_hosts(hosts).merged_columns())
            else:
                parts.append(worker.activity.merged_columns())
            _add_counts(folded, worker.activity.folded_sources)
            _add_counts(ports, worker.activity.folded_conversations)
            if worker.inspector is not None:
                facts.append(worker.inspector.frame())
        merged_facts = None
        if facts:
            import pandas as pd

            merged_facts = facts[0] if len(facts) == 1 else pd.concat(facts, ignore_index=True)
            if hosts and len(merged_facts):
                merged_facts = merged_facts[_with_hosts(merged_facts, hosts)]
        table = ActivityTable.combined(parts, bin_seconds=60)
        table.folded_sources, table.folded_conversations = folded, ports
        return table, merged_facts

    def _each_worker_held(self) -> Iterator[_Worker]:
        """Each worker in turn, its lock held while the caller's loop body runs
        (asked for with ``yielding``: a busy worker would take it back at once)."""
        for worker in self.workers:
            worker.yielding = True
            with worker.lock:
                worker.yielding = False
                yield worker

    def users_of(self, peer_hi: np.ndarray, peer_lo: np.ndarray) -> pd.DataFrame:
        """The internal hosts that exchanged packets with outside addresses
        (``peer_hi``, ``peer_lo``) in every worker's traffic so far: (host_hi,
        host_lo, peer_hi, peer_lo). An analysis asked for by sightings reads only
        the sighted hosts; whether others use an address too (a meeting server
        the office shares: the bulk rules' call exemption) needs theirs."""
        from ..features.hosts import host_traffic

        peers = list(zip(peer_hi.tolist(), peer_lo.tolist(), strict=True))
        parts = [w.activity.with_hosts(peers).merged_columns() for w in self._each_worker_held()]
        table = ActivityTable.combined(parts, bin_seconds=60)
        pairs = host_traffic(table.columns(), self.policy).external_pairs()
        return pairs[["host_hi", "host_lo", "peer_hi", "peer_lo"]]

    def fact_overflow(self) -> FactOverflow | None:
        """What the workers' payload inspectors counted past their budget (a
        flood of names) within the history; None without inspection."""
        total = None
        for worker in self._each_worker_held():
            if worker.inspector is not None:
                mine = worker.inspector.overflow
                total = mine if total is None else total.plus(mine)
        return total

    def folded_cards(self) -> dict[int, int]:
        """Minute → fleeting cards the workers' link inspectors dropped (a flood
        of forged cards), within the history."""
        total: dict[int, int] = {}
        for worker in self._each_worker_held():
            if worker.link is not None:
                _add_counts(total, worker.link.folded_cards)
        return total

    def link_facts(self) -> pd.DataFrame | None:
        """The link facts of isolated segments every worker found so far (None
        without isolated networks)."""
        frames = [w.link.frame() for w in self._each_worker_held() if w.link is not None]
        return merge_link_frames(frames) if frames else None

    def _analyse(
        self, *, final: bool, sighted: dict[str, set[tuple[int, int]]] | None = None
    ) -> ScanResult | None:
        """Analyse what the workers counted and write what is new. ``sighted``
        (rule id → hosts, from the rules' looks on the packet): only those hosts'
        traffic is read and only those rules' alerts of them written (the window's
        analysis writes the rest; URGENT_MAX_HOSTS)."""
        hosts = sorted(set().union(*sighted.values())) if sighted else []
        if len(hosts) > URGENT_MAX_HOSTS:
            sighted, hosts = None, []
        activity, facts = self.snapshot(hosts)
        policy = self.policy
        result = scan_activity(
            activity, self.workers[0].flows, policy, model=self.model, facts=facts,
            link=None if sighted else self.link_facts(),
            before=Before(first_contacts=self.first_contacts,
                          other_users=self.users_of if sighted else None),
            fact_overflow=None if sighted else self.fact_overflow(),
            folded_cards=None if sighted else self.folded_cards(),
        )  # fmt: skip
        self.first_contacts = first_contacts(result.traffic, self.first_contacts)
        found = list(result.alerts)
        if sighted:
            wanted = {(rule_id, address_text(hi, lo)) for rule_id, of in sighted.items()
                      for hi, lo in of}  # fmt: skip
            found = [a for a in found if (a.rule_id, a.source_ip) in wanted]
        elif self.analysed is not None:
            self.analysed(result)
        alerts, held = split_suppressed(
            found + self._sensor_alerts(policy), policy.suppressions, policy.zone
        )
        self.suppressed.update(h.alert.ecs_id for h in held)
        new: list[Alert] = []
        grown: list[Alert] = []
        for alert in alerts:
            dropped = sum(
                span.dropped
                for span in self.drop_spans
                if span.start_ns <= alert.end_ns and span.end_ns >= alert.start_ns
            )
            if dropped and alert.rule_id not in (SENSOR_DROPS, SENSOR_BLIND):
                alert = alert.with_evidence(sensor_dropped_packets=dropped)
            written = self._as_written(alert)
            if written is not None:
                (new if written.event_action == ALERT_RAISED else grown).append(written)
        new.sort(key=lambda a: a.sort_key)
        grown.sort(key=lambda a: a.sort_key)
        if new:
            self.emitted.extend(new)
        self.updates.extend(grown)
        if new or grown:
            self.emit(new + grown)
        if not final and not sighted and self.options.history_hours:
            # Memory stays bounded: rows older than the history are dropped
            # (rules look back at most a day; docs/live.md).
            history = int(self.options.history_hours * 3600 * NS)
            clock = self.clock_ns(self.workers[0].source)
            if clock is not None:
                with self._watch_lock:
                    self._totals.forget_before(clock - history)
            for worker in self.workers:
                clock = self.clock_ns(worker.source)  # a replayed stream's own time
                if clock is None:
                    continue
                worker.yielding = True
                with worker.lock:
                    worker.yielding = False
                    worker.activity.forget_before(clock - history)
                    if worker.inspector is not None:  # the facts too: a sensor runs for months
                        worker.inspector.forget_before(clock - history)
                    if worker.link is not None:
                        worker.link.forget_folded_before(clock - history)
        return result if final else None

    def _raised_before(self, alert: Alert) -> _Raised | None:
        """The earlier alert of the same incident (rule, host, other side or what
        the rule's ``incident`` says) that overlaps
        this one in time, if one was written (its span is stretched to cover
        this one); else None, and this one is recorded as raised."""
        records = self._raised.setdefault(_incident(alert), [])
        for raised in records:
            if alert.start_ns <= raised.end_ns and alert.end_ns >= raised.start_ns:
                raised.end_ns = max(raised.end_ns, alert.end_ns)
                return raised
        records.append(_Raised(alert.start_ns, alert.end_ns, _event_id(alert), _figures(alert),
                               named=alert.destination_domain is not None))  # fmt: skip
        return None

    def _as_written(self, alert: Alert) -> Alert | None:
        """``alert`` as the sensor writes it: newly raised (its own event id,
        sequence 0), an update of an earlier one whose figures grew (that one's
        id, the next sequence), or None when there is nothing new to write."""
        raised = self._raised_before(alert)
        if raised is None:
            event_id, action, sequence = _event_id(alert), ALERT_RAISED, 0
        elif self._grown(alert, raised):
            event_id, action, sequence = raised.event_id, ALERT_UPDATED, raised.updates
        else:
            return None
        return replace(alert, event_id=event_id, event_action=action, event_sequence=sequence)

    @staticmethod
    def _grown(alert: Alert, raised: _Raised) -> bool:
        """Whether ``alert`` is an update of ``raised`` worth writing: the same
        incident with grown figures (a transfer that went on), to be written
        with the first document's id, or one that names the other side's domain
        the first did not (an alert raised on a connection's first packets,
        before its TLS or HTTP name was read). One whose first minutes left the
        history (a later start, smaller sums) is not: its figures would be too low."""
        figures = _figures(alert)
        named = alert.destination_domain is not None and not raised.named
        if alert.start_ns > raised.start_ns or (figures == raised.figures and not named):
            return False
        if any(now < before for now, before in zip(figures, raised.figures, strict=True)):
            return False
        raised.figures = figures
        raised.named = raised.named or alert.destination_domain is not None
        raised.updates += 1
        return True

    def _sensor_alerts(self, policy: Policy) -> list[Alert]:
        alerts = []
        spans = self.drop_spans[self._reported_drop_spans :]
        self._reported_drop_spans = len(self.drop_spans)
        interface = self.options.interface or "the capture interface"
        hostname = socket.gethostname() or None
        # ECS observer.ingress.interface.name: an interface, never "standard input".
        capture_interface = getattr(self.sources[0], "iface", None)
        # About the sensor, not a host: no source.* in ECS; observer.* says which sensor.
        observer = {"observer_hostname": hostname, "observer_interface": capture_interface}
        for span in spans:
            dropped = {"sensor_dropped_packets": span.dropped, "interface": interface}
            text = (
                f"the sensor dropped {span.dropped:,} packets on {interface} (its ring was full): "
                "traffic in this window is under-counted; raise --block-count or --workers"
            )
            alerts.append(sensor.DROPS.alert(sensor.DROPS.severity, span.start_ns, span.end_ns, "",
                                             text, evidence=dropped, **observer))  # fmt: skip
            if not policy.isolated:
                continue
            ends = np.array([span.start_ns, span.end_ns], dtype=np.int64)
            if bool(policy.is_business_time(ends).all()):
                continue
            text = (
                f"the sensor dropped {span.dropped:,} packets on {interface} outside business "
                f"hours: it cannot vouch that the isolated networks ({policy.isolated}) sent "
                "nothing outside in that time"
            )
            evidence = {**dropped, "isolated_networks": policy.isolated.canonical()}
            alerts.append(sensor.BLIND.alert(sensor.BLIND.severity, span.start_ns, span.end_ns, "",
                                             text, evidence=evidence, **observer))  # fmt: skip
        return alerts


def _with_hosts(facts: pd.DataFrame, hosts: Sequence[tuple[int, int]]) -> np.ndarray:
    """Which payload facts have one of ``hosts`` at either end."""
    keep = np.zeros(len(facts), dtype=bool)
    for side in ("src", "dst"):
        his = facts[f"{side}_hi"].to_numpy(dtype=np.uint64)
        los = facts[f"{side}_lo"].to_numpy(dtype=np.uint64)
        for hi, lo in hosts:
            keep |= (los == np.uint64(lo)) & (his == np.uint64(hi))
    return keep


def warm_up(policy: Policy) -> None:
    """Compile every kernel live capture runs (the sources', the flow and
    activity tables', the payload inspector's) and run the analysis once, on a
    few made-up packets, so compiling (first run) or loading them from the
    cache happens before the ring opens, not while packets pile up in it, and
    before privileges drop: after --user drops root, a kernel compiled later
    could not be written to root's cache."""
    from ..capture.live import warm_up as warm_up_sources

    warm_up_sources()
    flows = FlowTable.warm_up()
    activity = ActivityTable.warm_up()
    inspector = PayloadInspector.warm_up()
    link = LinkInspector.warm_up(policy.isolated).frame() if policy.isolated else None
    scan_activity(ActivityTable.combined([activity.merged_columns()]), flows, policy,
                  facts=inspector.frame(), link=link)  # fmt: skip


def _add_counts(total: dict[int, int], counts: Mapping[int, int]) -> None:
    """Add ``counts`` (minute → how many) into ``total``."""
    for minute, n in counts.items():
        total[minute] = total.get(minute, 0) + n
