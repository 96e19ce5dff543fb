"""A scan spread over Dask workers: parts counted in parallel, then each
worker folds and analyses a share of the hosts with the single-process scan's
own functions; the client combines alerts and features (docs/distributed.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ..capture import CaptureProblem, CaptureStats
from ..capture.reading import ONE_THREAD, Reading
from ..detect.names import Names
from ..errors import DecodeError, DetectorError
from ..flows import layout
from ..flows.activity import ActivityTable
from ..flows.table import FlowTable
from ..pipelines.before import NOTHING_BEFORE, Before
from ..pipelines.scan import ScanResult, scan_activity
from .count import FACT_COLUMNS, PartResult, Settings
from .merge import in_stream_order, link_in_stream_order
from .parts import Part, plan_parts
from .shares import (
    ShareResult,
    combined_alerts,
    combined_features,
    count_part_dealt,
    finish_share,
    fold_share,
    merge_users,
    no_facts,
    pick,
    piece_of,
    users_bucket,
)

if TYPE_CHECKING:
    from ..detect.model import EgressModel
    from ..policy import Policy

DEFAULT_PART_BYTES = 256 << 20  # big enough that a task's start-up is noise, small enough to spread
MIN_AUTO_PART_BYTES = 32 << 20  # below this a task's overhead is no longer noise
PARTS_PER_WORKER = 4  # so a slow part does not leave the other workers idle at the end
TASK_RETRIES = 2  # a task that raised runs again this many times (a dead worker's task always does)
INSTALL_HINT = "pip install 'egress-detector[distributed]'"


class DistributedUnavailable(DetectorError):
    """Dask distributed is not installed (or the scheduler cannot be reached)."""


def _dask() -> Any:
    try:
        import dask.distributed
    except ImportError:
        raise DistributedUnavailable(
            f"--workers and --scheduler need Dask distributed: {INSTALL_HINT}"
        ) from None
    return dask.distributed


def _client(workers: int | None, scheduler: str | None) -> tuple[Any, Any]:
    """A Dask client (and the local cluster it owns, if any)."""
    dd = _dask()
    if scheduler:
        try:
            return dd.Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise DistributedUnavailable(
                f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})"
            ) from None
    cluster = local_cluster(workers)
    return dd.Client(cluster), cluster


# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, so that
# glibc hands freed memory back at once; it also stops glibc from raising its
# mmap threshold, and then every large array is fresh pages: the analysis of
# the 20M capture took 8.0-8.3 CPU s with it against 5.0 without, in one
# process (counting slowed more). The scan's workers keep glibc's default.
TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def local_cluster(workers: int | None = None) -> Any:
    """A local Dask cluster of ``workers`` processes (default: one per core)
    as the scan starts its own: one thread each, the kernels being
    single-threaded, without the workers' statistical profiler, which
    samples the counting thread's stack every 10 ms: 10–15 % of a task's CPU,
    and with glibc's own memory trimming (``TRIM``; benchmarks/bench_distributed.py;
    docs/distributed.md says how to set both on workers of a cluster of machines)."""
    dd = _dask()
    import dask

    with dask.config.set({"distributed.worker.profile.enabled": False, TRIM: None}):
        return dd.LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        )


class _Starting:
    """A cluster (and its client) coming up in the background: a local
    cluster takes seconds to start (a process per worker, each importing
    Dask, numpy and the kernels), during which this process counts the first
    parts itself rather than wait."""

    def __init__(self, workers: int | None, scheduler: str | None) -> None:
        _dask()  # not installed: say so now, in this thread
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dask-start")
        self._future = self._pool.submit(_client, workers, scheduler)
        self._pool.shutdown(wait=False)

    def ready(self) -> bool:
        return self._future.done()

    def result(self) -> tuple[Any, Any]:
        return self._future.result()


class DaskSession:
    """One Dask client for several scans (``nightly``'s days): the local
    cluster starts once, at the first scan that needs it, and closes with
    the session. ``client()`` is what ``scan_captures_distributed(...,
    client=)`` takes."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        self.workers = workers
        self.scheduler = scheduler
        self._client: Any = None
        self._cluster: Any = None

    def client(self) -> Any:
        if self._client is None:
            self._client, self._cluster = _client(self.workers, self.scheduler)
        return self._client

    def close(self) -> None:
        _close(None, self._client, self._cluster)
        self._client = self._cluster = None

    def __enter__(self) -> DaskSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scan_captures_distributed(
    paths: Iterable[str | os.PathLike[str]],
    policy: Policy,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    part_bytes: int | None = None,
    reading: Reading = ONE_THREAD,
    window_minutes: int | None = None,
    model: EgressModel | None = None,
    phases: dict[str, float] | None = None,
    tables: bool = True,
    before: Before = NOTHING_BEFORE,
) -> ScanResult:
    """:func:`detector.pipelines.scan.scan_captures` on a Dask cluster: a local one
    of ``workers`` processes, the one at ``scheduler`` (``tcp://host:8786``), or
    an existing ``client``. Files (and ranges of big pcap files, about
    ``part_bytes`` each; default: the input shared into about 4 parts per
    worker, 32–256 MB each) are counted in parallel, then each worker folds
    the flows of a share of the internal hosts and analyses those hosts
    (detector/distributed/shares.py); flows, features and alerts are those of
    the single-process scan (docs/distributed.md says where payload facts may
    differ; the link layer of isolated segments is looked at where the parts
    are counted, its facts merged here, and the side-channel rules run here
    over them: ``before.learned_devices`` as for one process). ``tables``: False
    leaves the flows, activity and host traffic on the workers (the result's
    are then empty): the alerts and features are all a scan without
    ``--parquet-dir`` writes. ``before``: what days before taught (the
    nightly's history), as for one process: sent once to the cluster, every
    share's analysis reads it (and the count of an address's users across
    shares leaves out the hosts it already names). ``reading.threads`` is
    not used: each task reads with one thread. ``phases``, if
    given, gets where the time went: wall and CPU seconds of this process per
    phase (``<phase>_s``, ``<phase>_cpu_s``: cluster (connecting to a
    scheduler), plan, count, cluster_wait (for a local cluster still starting
    once this process has counted what it could meanwhile), shares (waiting
    for the share tasks), combine, analysis (here: only with a model or
    payload facts), cluster_close), the tasks' own wall and CPU seconds where
    they ran (``tasks_s``, ``tasks_cpu_s`` for counting, ``share_s``,
    ``share_cpu_s``, ``share_fold_cpu_s``, ``share_analysis_cpu_s``), how many
    parts, how many of them counted here while the cluster started
    (``parts_here``), the shares, the recounts, the bytes of partial
    tables the counting made (``result_bytes``), and what counting each
    address's users across shares cost: the shares' count (``users_cpu_s``),
    the merges (``users_merge_cpu_s``), the bytes of counts sent to the
    merges and back (``users_bytes``) and the addresses given back
    (``users_elsewhere``)."""
    on_problem, stats_out, progress = reading.on_problem, reading.stats_out, reading.progress
    clock = _Phases(phases)
    path_list = [str(p) for p in paths]
    if "-" in path_list:
        raise DistributedUnavailable(
            "standard input (-) cannot be shared between workers; scan it without "
            "--workers or --scheduler"
        )
    settings = Settings.for_policy(policy)
    owned = client is None
    # Our own local cluster starts in the background while this process plans
    # and counts the first parts (an existing scheduler is connected to first).
    starting = None
    cluster = None
    if owned and not scheduler:
        starting = _Starting(workers, None)
    elif owned:
        with clock("cluster"):
            client, cluster = _client(workers, scheduler)
    try:
        with clock("plan"):
            n_workers = (
                workers or os.cpu_count() or 1
                if starting is not None
                else max(len(client.scheduler_info()["workers"]), 1)
            )
            if part_bytes is None:
                part_bytes = _auto_part_bytes(path_list, n_workers)
            parts = plan_parts(path_list, part_bytes)
        clock.count("parts", len(parts))
        clock.count("shares", n_workers)

        def connect() -> Any:
            nonlocal client, cluster
            if starting is not None and client is None:
                with clock("cluster_wait"):
                    client, cluster = starting.result()
            return client

        with clock("count"):
            counted = _count_parts(
                connect, parts, settings, policy.internal, n_workers, progress,
                starting.ready if starting else None,
            )  # fmt: skip
        clock.count("parts_here", counted.here)
        kept, problems = _in_stream_order(counted.summaries)
        for s in kept:
            clock.count("tasks_s", s.wall_s)
            clock.count("tasks_cpu_s", s.cpu_s)
            clock.count("result_bytes", s.nbytes)
        span = _span(kept)
        facts = None
        analyse = model is None and not any(s.facts_count for s in kept)
        if not analyse and settings.inspects:
            with_facts = [counted.futures[s.part.index] for s in kept
                          if s.part.index in counted.futures]  # fmt: skip
            facts = _facts(client.gather([client.submit(_facts_of, f) for f in with_facts]))
        with clock("shares"):
            shares = _analysed_shares(
                client, counted.futures, kept, n_workers, settings, policy, span,
                window_minutes=window_minutes, analyse=analyse, tables=tables or not analyse,
                before=before,
            )  # fmt: skip
        for share in shares:
            clock.count("share_s", share.wall_s)
            clock.count("share_cpu_s", share.cpu_s)
            clock.count("share_fold_cpu_s", share.fold_cpu_s)
            clock.count("share_analysis_cpu_s", share.analysis_cpu_s)
            clock.count("recounts", share.recounts)
            clock.count("users_cpu_s", share.users_cpu_s)
            clock.count("users_merge_cpu_s", share.users_merge_cpu_s)
            clock.count("users_bytes", share.users_sent_bytes + share.users_got_bytes)
            clock.count("users_elsewhere", share.users_elsewhere)
    finally:
        if owned:
            with clock("cluster_close"):
                _close(starting, client, cluster)
    for problem in problems:
        if on_problem is not None:
            on_problem(problem)
    if on_problem is None:
        for problem in problems:
            if problem.fatal:
                raise DecodeError(str(problem))
    if stats_out is not None:
        stats_out.extend(_file_stats(path_list, kept))
    link = link_in_stream_order(kept)
    return _result(shares, settings, policy, clock, span, facts, window_minutes=window_minutes,
                   model=model, analysed=analyse, tables=tables, link=link,
                   before=before)  # fmt: skip


def _result(
    shares: list[ShareResult],
    settings: Settings,
    policy: Policy,
    clock: _Phases,
    span: tuple[int | None, int | None],
    facts: Any,
    *,
    window_minutes: int | None,
    model: EgressModel | None,
    analysed: bool,
    tables: bool,
    link: Any,
    before: Before,
) -> ScanResult:
    """The shares' alerts and features combined, with the side-channel rules'
    over ``link`` (or, with a model or payload facts, the shares' flows and
    activity analysed here, as one process does)."""
    from ..features.hosts import host_traffic

    with clock("combine"):
        rows = np.empty((0, layout.FLOW_COLUMNS), dtype=np.int64)
        activity = ActivityTable.combined([], bin_seconds=settings.bin_seconds)
        if tables or not analysed:
            rows = np.concatenate([s.rows for s in shares if s.rows is not None])
            rows = rows[in_stream_order(rows)]
            activity = ActivityTable.combined(
                [s.activity for s in shares if s.activity is not None],
                bin_seconds=settings.bin_seconds,
            )
        flows = FlowTable.of_rows(
            rows,
            idle_timeout=settings.idle_timeout,
            active_timeout=settings.active_timeout,
            max_flows=settings.max_flows,
        )
        flows.facts = facts  # each flow's service and server name, as one process gives
    if not analysed:
        with clock("analysis"):
            return scan_activity(activity, flows, policy, window_minutes=window_minutes,
                                 model=model, facts=facts, link=link, before=before)  # fmt: skip
    with clock("combine"):
        traffic = host_traffic(activity.columns(), policy)
        minutes = window_minutes or policy.window_minutes
        alerts = combined_alerts(shares, policy, minutes, span, traffic, link,
                                 before.learned_devices)  # fmt: skip
        features = combined_features(shares)
        facts = no_facts() if settings.inspects else None
    return ScanResult(alerts, features, traffic, flows, activity, facts, Names(), link)


def _close(starting: _Starting | None, client: Any, cluster: Any) -> None:
    if starting is not None and client is None:
        try:
            client, cluster = starting.result()
        except Exception:  # noqa: BLE001  (it failed to start: the scan said so already)
            return
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


@dataclasses.dataclass
class _Counted:
    summaries: list[PartResult]  # every part's, in stream order
    futures: dict[int, Any]  # by part index: the counted tables, on the cluster
    here: int  # parts counted in this process while the cluster started


def _in_stream_order(
    summaries: list[PartResult],
) -> tuple[list[PartResult], list[CaptureProblem]]:
    """The parts taken in stream order, as one reader reads them: a file's
    parts after its damage are dropped; each problem is located in its file;
    a part earlier than the latest packet before it is said once per file."""
    problems: list[CaptureProblem] = []
    damaged_files: set[int] = set()
    unordered_files: set[int] = set()
    packets_before: dict[int, int] = {}  # per file: packets of its parts taken so far
    kept: list[PartResult] = []
    latest: int | None = None
    for result in summaries:
        part = result.part
        if part.file_index in damaged_files:
            continue  # a reader stops at a file's damage: so do the parts after it
        before = packets_before.get(part.file_index, 0)
        packets_before[part.file_index] = before + result.stats.packets
        problems.extend(_counted_from_file_start(p, result, before) for p in result.problems)
        if result.fatal:
            damaged_files.add(part.file_index)
        kept.append(result)
        if result.latest_ns is None:
            continue
        first = result.stats.first_ns
        unordered = latest is not None and first is not None and first < latest
        if unordered and part.file_index not in unordered_files:
            unordered_files.add(part.file_index)  # said once per file
            problems.append(
                CaptureProblem(
                    part.path,
                    None if part.whole else part.start,
                    "packets earlier than the latest packet before them (input out of "
                    "time order): flows may be split differently than by a single-process "
                    "scan; give rotated files in time order",
                    False,
                )
            )
        latest = result.latest_ns if latest is None else max(latest, result.latest_ns)
    return kept, problems


def _span(kept: list[PartResult]) -> tuple[int | None, int | None]:
    """The first and last packet of the scan's activity (any host)."""
    firsts = [s.activity_span[0] for s in kept if s.activity_span[0] is not None]
    lasts = [s.activity_span[1] for s in kept if s.activity_span[1] is not None]
    return (min(firsts) if firsts else None, max(lasts) if lasts else None)


def _facts_of(result: PartResult) -> PartResult:
    return dataclasses.replace(result, rows=result.rows[:0], activity=result.activity[:, :0],
                               shares=None)  # fmt: skip


def _analysed_shares(
    client: Any,
    futures: dict[int, Any],
    kept: list[PartResult],
    count: int,
    settings: Settings,
    policy: Policy,
    span: tuple[int | None, int | None],
    *,
    window_minutes: int | None,
    analyse: bool,
    tables: bool,
    before: Before,
) -> list[ShareResult]:
    """One task per share of hosts, each on its own worker where it can: its
    rows of every part (taken where each part was counted), folded and analysed.

    Analysed in two phases, for the rules that count an address's users
    across hosts (``site_users``: a call to a meeting server whose other
    callers are in other shares): phase 1 folds each share and counts its
    hosts of each address, dealt by the address into one bucket per share;
    one merge per bucket (on that share's worker) sums the shares' counts of
    its addresses and gives each share the other shares' count of the
    addresses it used too; phase 2 analyses each share with them. Only those
    counts move: 20 bytes an address, and only addresses of several shares
    come back."""
    addresses = sorted(client.scheduler_info()["workers"])
    run = os.getpid(), id(kept)
    exchange = analyse and count > 1  # one share has no one else to count
    # What days before taught: once to the cluster, not once a task.
    recorded = client.scatter(before, broadcast=True, hash=False) if analyse and before else None

    def where(k: int) -> dict[str, Any]:
        return {"workers": [addresses[k % len(addresses)]] if addresses else None,
                "allow_other_workers": True}  # fmt: skip

    folded = []
    for k in range(count):
        pieces = [
            client.submit(piece_of, futures[s.part.index], k, key=f"piece-{k}-{s.part.index}-{run}")
            for s in kept
            if s.part.index in futures
        ]
        folded.append(client.submit(fold_share, k, count, pieces, settings, policy,
                                    users=exchange, before=recorded, key=f"fold-{k}-{run}",
                                    pure=False,
                                    retries=TASK_RETRIES, **where(k)))  # fmt: skip
    elsewhere: list[list[Any]] = [[] for _ in range(count)]
    if exchange:
        for b in range(count):
            buckets = [client.submit(users_bucket, folded[k], b, key=f"users-{k}-{b}-{run}")
                       for k in range(count)]  # fmt: skip
            merged = client.submit(merge_users, buckets, key=f"merge-users-{b}-{run}",
                                   retries=TASK_RETRIES, **where(b))  # fmt: skip
            for k in range(count):
                elsewhere[k].append(client.submit(pick, merged, k, key=f"elsewhere-{b}-{k}-{run}"))
    shares = [
        client.submit(
            finish_share,
            folded[k],
            elsewhere[k],
            settings,
            policy,
            span,
            window_minutes=window_minutes,
            analyse=analyse,
            tables=tables,
            before=recorded,
            key=f"share-{k}-{run}",
            pure=False,
            retries=TASK_RETRIES,
        )  # fmt: skip
        for k in range(count)
    ]
    results: list[ShareResult] = client.gather(shares)
    for future in futures.values():
        future.release()
    return results


def _auto_part_bytes(paths: list[str], workers: int) -> int:
    total = 0
    for path in paths:
        # A file that cannot be sized is reported, located, by the task that reads it.
        with contextlib.suppress(OSError):
            total += os.path.getsize(path)
    share = total // max(workers * PARTS_PER_WORKER, 1)
    return min(max(share, MIN_AUTO_PART_BYTES), DEFAULT_PART_BYTES)


def _count_parts(
    connect: Callable[[], Any],
    parts: list[Part],
    settings: Settings,
    internal: Any,
    shares: int,
    progress: Callable[[Iterator[int]], Iterator[int]] | None,
    ready: Callable[[], bool] | None = None,
) -> _Counted:
    """Count every part, its rows dealt into ``shares`` shares of hosts. A
    part whose task failed for good comes as a failure naming the part and
    the error. ``ready``: whether the cluster is up yet; until it is, parts
    are counted here, from the front, and handed to the cluster once it is
    (``connect`` gives the client, waiting for it if need be)."""
    summaries: list[PartResult | None] = [None] * len(parts)
    futures: dict[int, Any] = {}
    here: list[PartResult] = []

    def steps() -> Iterator[int]:
        while ready is not None and len(here) < len(parts) and not ready():
            part = parts[len(here)]
            try:
                result = count_part_dealt(part, settings, internal, shares)
            except Exception as exc:  # noqa: BLE001  (reported as the part's problem, as a task's)
                result = PartResult.failure(part, _failed(part, exc))
            here.append(result)
            summaries[part.index] = result.summary()
            yield part.size
        client = connect()
        for result in here:
            if not result.failed:
                futures[result.part.index] = client.scatter(result, hash=False)
        if len(here) < len(parts):
            yield from _on_cluster(client, parts[len(here):], settings, internal, shares,
                                   summaries, futures)  # fmt: skip

    for _ in progress(steps()) if progress else steps():
        pass
    done = [s for s in summaries if s is not None]
    return _Counted(done, futures, len(here))


def _failed(part: Part, exc: BaseException) -> str:
    return (
        f"the task counting this part failed ({type(exc).__name__}: {exc}); the rest of "
        f"the scan went on without {part.describe()}"
    )


def _on_cluster(
    client: Any,
    parts: list[Part],
    settings: Settings,
    internal: Any,
    shares: int,
    summaries: list[PartResult | None],
    futures: dict[int, Any],
) -> Iterator[int]:
    from dask.distributed import as_completed

    run = f"{os.getpid()}-{id(parts)}"
    counting = {
        part.index: client.submit(
            count_part_dealt,
            part,
            settings,
            internal,
            shares,
            key=f"count-part-{part.index}-{run}",
            pure=False,
            retries=TASK_RETRIES,
        )  # fmt: skip
        for part in parts
    }
    of_key = {}
    waiting = []
    for index, future in counting.items():
        s = client.submit(PartResult.summary, future, key=f"summary-{index}-{run}")
        of_key[s.key] = index
        waiting.append(s)
    by_index = {p.index: p for p in parts}
    for done in as_completed(waiting):
        index = of_key[done.key]
        part = by_index[index]
        try:
            summaries[index] = done.result()
            futures[index] = counting[index]
        except Exception as exc:  # noqa: BLE001  (reported as the part's problem)
            summaries[index] = PartResult.failure(part, _failed(part, exc))
        done.release()
        yield part.size


class _Phases:
    """Wall and CPU seconds of this process per phase, into ``out`` (None: not
    measured). Phases nest: ``count`` includes the ``fold`` of parts as they
    arrive, ``fold`` includes its ``recount``s."""

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.out is None:
            yield
            return
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.count(f"{name}_s", time.perf_counter() - wall)
            self.count(f"{name}_cpu_s", time.process_time() - cpu)

    def count(self, name: str, value: float) -> None:
        if self.out is not None:
            self.out[name] = self.out.get(name, 0) + value


def _counted_from_file_start(
    problem: CaptureProblem, result: PartResult, before: int
) -> CaptureProblem:
    """The reader says how many packets it read before a problem: of the whole
    file, as a single reader says, not of the part."""
    if not before:
        return problem
    part_count = f"{result.stats.packets} packets before it were read"
    file_count = f"{before + result.stats.packets} packets before it were read"
    return dataclasses.replace(problem, message=problem.message.replace(part_count, file_count))


def _file_stats(paths: list[str], results: list[PartResult]) -> list[CaptureStats]:
    """One CaptureStats per input file, summed over its parts."""
    by_file: dict[int, CaptureStats] = {}
    for r in results:
        s = r.stats
        total = by_file.get(r.part.file_index)
        if total is None:
            total = CaptureStats(path=paths[r.part.file_index], format=s.format,
                                 compressed=s.compressed)  # fmt: skip
            by_file[r.part.file_index] = total
        total.packets += s.packets
        total.wire_bytes += s.wire_bytes
        if s.first_ns is not None:
            earlier = total.first_ns if total.first_ns is not None else s.first_ns
            total.first_ns = min(s.first_ns, earlier)
        if s.last_ns is not None:
            later = total.last_ns if total.last_ns is not None else s.last_ns
            total.last_ns = max(s.last_ns, later)
        total.linktypes |= s.linktypes
        total.status_counts = total.status_counts + s.status_counts
        total.problems.extend(r.problems)
        total.bytes_consumed += s.bytes_consumed
        total.disk_position += r.part.size
    return [by_file[i] for i in sorted(by_file)]


def _facts(results: list[PartResult]) -> Any:
    import pandas as pd

    chunks = [r.facts for r in results if r.facts is not None and len(r.facts["ts_ns"])]
    if not chunks:
        return pd.DataFrame({c: [] for c in FACT_COLUMNS})
    return pd.DataFrame({c: np.concatenate([chunk[c] for chunk in chunks]) for c in FACT_COLUMNS})


__all__ = [
    "DEFAULT_PART_BYTES",
    "DaskSession",
    "DistributedUnavailable",
    "scan_captures_distributed",
]
