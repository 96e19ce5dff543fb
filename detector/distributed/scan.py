"""A scan spread over Dask workers: parts counted in parallel, merged in order,
then the same analysis as a single-process scan (docs/distributed.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ..capture import CaptureProblem, CaptureStats
from ..errors import DecodeError, DetectorError
from ..flows.activity import ActivityTable
from ..flows.table import FlowTable
from ..pipelines.scan import ScanResult, scan_activity
from .count import FACT_COLUMNS, PartResult, Settings, count_part, count_part_handed_over
from .merge import FlowFold
from .parts import Part, plan_parts

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


def local_cluster(workers: int | None = None) -> Any:
    """A local Dask cluster of ``workers`` processes (default: one per core)
    as the scan starts its own: one thread each, the kernels being
    single-threaded, and without the workers' statistical profiler, which
    samples the counting thread's stack every 10 ms: 10–15 % of a task's CPU
    (benchmarks/bench_distributed.py; docs/distributed.md says how to turn it
    off on workers of a cluster of machines)."""
    dd = _dask()
    import dask

    with dask.config.set({"distributed.worker.profile.enabled": False}):
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
    window_minutes: int | None = None,
    threads: int = 1,
    on_problem: Callable[[CaptureProblem], None] | None = None,
    stats_out: list[CaptureStats] | None = None,
    progress: Callable[[Iterator[int]], Iterator[int]] | None = None,
    model: EgressModel | None = None,
    phases: dict[str, float] | None = None,
) -> ScanResult:
    """:func:`detector.pipelines.scan.scan_captures` on a Dask cluster: a local one
    of ``workers`` processes, the one at ``scheduler`` (``tcp://host:8786``), or
    an existing ``client``. Files (and ranges of big pcap files, about
    ``part_bytes`` each; default: the input shared into about 4 parts per
    worker, 32–256 MB each) are counted in parallel; flows, features and alerts
    are those of the single-process scan (docs/distributed.md says where
    payload facts may differ). ``threads`` is accepted for the same call
    signature; each task reads with one thread. ``phases``, if given, gets
    where the time went: wall and CPU seconds of this process per phase
    (``<phase>_s``, ``<phase>_cpu_s``: cluster (connecting to a scheduler),
    plan, count, cluster_wait (for a local cluster still starting once this
    process has counted what it could meanwhile), fold, recount, finish,
    cluster_close, combine, analysis), the tasks' own wall and CPU seconds
    where they ran (``tasks_s``, ``tasks_cpu_s``), how many parts, how many
    of them counted here while the cluster started (``parts_here``), how many
    recounts, and the bytes of partial tables sent back (``result_bytes``)."""
    del threads
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
    closing: threading.Thread | None = None
    handover_dir: str | None = None
    if owned and not scheduler:
        starting = _Starting(workers, None)
    elif owned:
        with clock("cluster"):
            client, cluster = _client(workers, scheduler)
    try:
        with clock("plan"):
            if part_bytes is None:
                n_workers = (
                    workers or os.cpu_count() or 1
                    if starting is not None
                    else len(client.scheduler_info()["workers"])
                )
                part_bytes = _auto_part_bytes(path_list, n_workers)
            parts = plan_parts(path_list, part_bytes)
        clock.count("parts", len(parts))
        fold = FlowFold(
            round(settings.idle_timeout * 1e9),
            round(settings.active_timeout * 1e9),
            settings.max_flows,
        )
        problems: list[CaptureProblem] = []
        damaged_files: set[int] = set()
        unordered_files: set[int] = set()
        packets_before: dict[int, int] = {}  # per file: packets of its parts taken so far
        kept: list[PartResult] = []

        def take(result: PartResult) -> None:
            """Fold the next part in stream order (while later parts still count)."""
            part = result.part
            if part.file_index in damaged_files:
                return  # a reader stops at a file's damage: so do the parts after it
            before = packets_before.get(part.file_index, 0)
            packets_before[part.file_index] = before + result.stats.packets
            problems.extend(_counted_from_file_start(p, result, before) for p in result.problems)
            if result.fatal:
                damaged_files.add(part.file_index)
            kept.append(result)
            clock.count("tasks_s", result.wall_s)
            clock.count("tasks_cpu_s", result.cpu_s)
            clock.count("result_bytes", _nbytes(result))

            def recount(open_rows: np.ndarray, latest: int | None) -> PartResult:
                # Here, not on a worker: it waits on the parts before it anyway, and
                # the open flows need not travel. (The client sees the files: it
                # planned the cuts.)
                with clock("recount"):
                    clock.count("recounts", 1)
                    return count_part(part, settings, open_rows, latest)

            out_of_order = fold.out_of_order
            with clock("fold"):
                fold.add(result, recount, result.stats.first_ns)
            result.rows = result.rows[:0]  # folded: only activity, facts and stats stay
            if fold.out_of_order > out_of_order and part.file_index not in unordered_files:
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

        def connect() -> Any:
            nonlocal client, cluster
            if starting is not None and client is None:
                with clock("cluster_wait"):
                    client, cluster = starting.result()
            return client

        def handover(client: Any) -> str | None:
            """Workers on this machine hand their rows over in a RAM-backed
            directory rather than through Dask's connection."""
            nonlocal handover_dir
            if starting is None and not _is_local(client):
                return None
            handover_dir = _handover_dir()
            return handover_dir

        with clock("count"):
            here = _count_parts(
                connect, parts, settings, progress, take, starting.ready if starting else None,
                handover,
            )  # fmt: skip
        clock.count("parts_here", here)
        if owned:
            # Every part is in: our own cluster closes (its processes take
            # seconds to exit) while this process merges and analyses.
            closing = threading.Thread(
                target=_close, args=(starting, client, cluster), name="dask-close"
            )
            closing.start()
        with clock("finish"):
            rows = fold.finish()
    finally:
        if handover_dir is not None:
            shutil.rmtree(handover_dir, ignore_errors=True)  # a failed task's leftovers too
        if owned and closing is None:
            with clock("cluster_close"):
                _close(starting, client, cluster)
    try:
        return _analysed(
            rows, kept, problems, path_list, settings, policy, clock,
            on_problem=on_problem, stats_out=stats_out, window_minutes=window_minutes,
            model=model,
        )  # fmt: skip
    finally:
        if closing is not None:
            with clock("cluster_close"):
                closing.join()


def _is_local(client: Any) -> bool:
    """Whether the client's workers are this machine's (a local cluster)."""
    try:
        from dask.distributed import LocalCluster
    except ImportError:
        return False
    return isinstance(getattr(client, "cluster", None), LocalCluster)


def _handover_dir() -> str:
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="egress-detector-", dir=where)


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


def _analysed(
    rows: np.ndarray,
    kept: list[PartResult],
    problems: list[CaptureProblem],
    path_list: list[str],
    settings: Settings,
    policy: Policy,
    clock: _Phases,
    *,
    on_problem: Callable[[CaptureProblem], None] | None,
    stats_out: list[CaptureStats] | None,
    window_minutes: int | None,
    model: EgressModel | None,
) -> ScanResult:
    """The merged flows and activity, analysed as a single-process scan's."""
    for problem in problems:
        if on_problem is not None:
            on_problem(problem)
    if on_problem is None:
        for problem in problems:
            if problem.fatal:
                raise DecodeError(str(problem))
    if stats_out is not None:
        stats_out.extend(_file_stats(path_list, kept))

    with clock("combine"):
        flows = FlowTable.of_rows(
            rows,
            idle_timeout=settings.idle_timeout,
            active_timeout=settings.active_timeout,
            max_flows=settings.max_flows,
        )
        activity = ActivityTable.combined(
            [r.activity for r in kept], bin_seconds=settings.bin_seconds
        )
        facts = _facts(kept) if settings.inspects else None
    with clock("analysis"):
        return scan_activity(
            activity, flows, policy, window_minutes=window_minutes, model=model, facts=facts
        )


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


def _nbytes(result: PartResult) -> int:
    """Bytes of a part's partial tables (what its task sent back)."""
    n = result.rows.nbytes + result.activity.nbytes
    if result.facts is not None:
        n += sum(column.nbytes for column in result.facts.values())
    return n


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
    progress: Callable[[Iterator[int]], Iterator[int]] | None,
    take: Callable[[PartResult], None],
    ready: Callable[[], bool] | None = None,
    handover: Callable[[Any], str | None] = lambda client: None,
) -> int:
    """Count every part; ``take`` gets each result in stream order as soon as
    it and the ones before it are in. A part whose task failed for good comes
    as a failure naming the part and the error. ``ready``: whether the
    cluster is up yet; until it is, parts are counted here, from the front
    (``connect`` gives the client, waiting for it if need be). ``handover``:
    the directory a client's workers hand their rows over in, or None.
    Returns how many were counted here."""

    here = 0

    def steps() -> Iterator[int]:
        nonlocal here
        while ready is not None and here < len(parts) and not ready():
            part = parts[here]
            take(_counted_here(part, settings))
            here += 1
            yield part.size
        if here < len(parts):
            client = connect()
            yield from _on_cluster(client, parts[here:], settings, take, handover(client))

    for _ in progress(steps()) if progress else steps():
        pass
    return here


def _counted_here(part: Part, settings: Settings) -> PartResult:
    try:
        return count_part(part, settings)
    except Exception as exc:  # noqa: BLE001  (reported as the part's problem, as a task's)
        return PartResult.failure(part, _failed(part, exc))


def _failed(part: Part, exc: BaseException) -> str:
    return (
        f"the task counting this part failed ({type(exc).__name__}: {exc}); the rest of "
        f"the scan went on without {part.describe()}"
    )


def _on_cluster(
    client: Any,
    parts: list[Part],
    settings: Settings,
    take: Callable[[PartResult], None],
    handover: str | None,
) -> Iterator[int]:
    from dask.distributed import as_completed

    extra = () if handover is None else (handover,)
    futures = [
        client.submit(
            count_part if handover is None else count_part_handed_over,
            part,
            settings,
            *extra,
            key=f"count-part-{part.index}-{os.getpid()}-{id(parts)}",
            pure=False,
            retries=TASK_RETRIES,
        )  # fmt: skip
        for part in parts
    ]
    where = {f.key: i for i, f in enumerate(futures)}
    results: list[PartResult | None] = [None] * len(parts)
    taken = 0
    for future in as_completed(futures):
        i = where[future.key]
        part = parts[i]
        try:
            results[i] = future.result().taken_over()
        except Exception as exc:  # noqa: BLE001  (reported as the part's problem)
            results[i] = PartResult.failure(part, _failed(part, exc))
        future.release()
        while taken < len(parts):
            done = results[taken]
            if done is None:
                break
            results[taken] = None
            take(done)
            taken += 1
        yield part.size


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
