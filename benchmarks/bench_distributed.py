#!/usr/bin/env python3
"""The distributed scan against the single-process scan: CPU seconds per role, wall time.

    python benchmarks/bench_distributed.py [CAPTURE]   # default: benchmarks/data/cap20m.pcap

The capture is scanned as one file (and with --files8 also as 8 rotated files,
cut on record boundaries, written once to split8-<name>/ beside the capture):
single-process (scan_captures, one thread; and two as `scan` does by itself on
2 cores), and on local Dask clusters of 1 and 2 worker processes, as `scan
--workers N` runs it (the analysis on the workers, flows and activity left
there: tables=False): "warm" on a local cluster started and warmed before
timing (its scheduler runs in this process, as `scan --workers N`'s does);
"machines": a scheduler and N workers started as processes of their own,
worker k pinned to core k with taskset (N one-core machines; the scheduler
shares the first core), as on a cluster of machines; "cold" (--cold) starting
and stopping its own cluster. For every row: wall time (median of --runs), CPU
seconds of the client (this process), of the scheduler (when it is a process
of its own) and of each worker (resource.getrusage in each), and the
client's share of the single process's CPU. Every
distributed result is checked against the single-process one (alerts and
features; flows and activity too, from one run with tables=True). The
single-process reference counts every conversation-minute
(activity_rows=4 M): under a flood (over 1 M conversation-minutes, which the
20M capture is) it would fold few-packet outside addresses, which the
distributed scan does not (docs/distributed.md). The last lines account for
the CPU by role and say what more cores would give.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from dask.distributed import Client  # noqa: E402

from detector.capture.reading import Reading  # noqa: E402
from detector.distributed import scan_captures_distributed  # noqa: E402
from detector.distributed.parts import plan_parts  # noqa: E402
from detector.distributed.scan import local_cluster  # noqa: E402
from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import default_policy  # noqa: E402


def split8(path: Path) -> list[Path]:
    """The capture as 8 files of about equal size, cut on record boundaries."""
    out = path.parent / f"split8-{path.stem}"  # beside the capture (git-ignored data)
    size = path.stat().st_size
    parts = plan_parts([str(path)], max(size // 8 + 1, 1 << 16))
    files = [out / f"{path.stem}-{k}.pcap" for k in range(len(parts))]
    if all(f.exists() for f in files) and sum(f.stat().st_size for f in files) == (
        size + 24 * (len(parts) - 1)
    ):
        return files
    out.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as src:
        header = src.read(24)
        for part, f in zip(parts, files, strict=True):
            src.seek(part.start)
            length = (part.end if part.end is not None else size) - part.start
            with open(f, "wb") as dst:
                dst.write(header)
                while length:
                    chunk = src.read(min(length, 64 << 20))
                    dst.write(chunk)
                    length -= len(chunk)
    return files


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    """CPU of this process's children that have ended (a closed local cluster's workers)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_scheduler(client: Client | None) -> float:
    """CPU of the scheduler's process, when it is not this one."""
    if client is None or getattr(client, "cluster", None) is not None:
        return 0.0  # none, or a LocalCluster's scheduler: in this process
    return float(client.run_on_scheduler(cpu_self))


def cpu_workers(client: Client | None) -> dict[str, float]:
    if client is None:
        return {}
    return dict(client.run(cpu_self))


class Machines:
    """A scheduler and ``n`` workers as processes of their own, worker k pinned
    to core k (``taskset``): ``n`` one-core "machines" (the scheduler shares
    the first), as on a cluster, where the scheduler is not in the client's
    process. ``client`` connects to them; ``close`` ends them."""

    def __init__(self, n: int) -> None:
        cores = sorted(os.sched_getaffinity(0))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # As docs/distributed.md tells a cluster's operators: no profiler, and
        # glibc's own memory trimming (not the nanny's MALLOC_TRIM_THRESHOLD_).
        self.config = tempfile.TemporaryDirectory(prefix="bench-dask-")
        Path(self.config.name, "egress-detector.yaml").write_text(DASK_YAML)
        env = {**os.environ, "DASK_CONFIG": self.config.name, "PYTHONPATH": str(HERE.parent)}
        address = f"tcp://127.0.0.1:{port}"

        def pinned(core: int, *args: str) -> subprocess.Popen:
            return subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-m", *args],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip

        self.processes = [pinned(cores[0], "distributed.cli.dask_scheduler", "--host",
                                 "127.0.0.1", "--port", str(port), "--no-dashboard")]  # fmt: skip
        for k in range(n):
            self.processes.append(pinned(cores[k % len(cores)], "distributed.cli.dask_worker",
                                         address, "--nworkers", "1", "--nthreads", "1",
                                         "--no-dashboard", "--name", f"machine-{k}"))  # fmt: skip
        self.client = Client(address, timeout="60s")
        self.client.wait_for_workers(n, timeout=120)

    def close(self) -> None:
        self.client.close()
        for p in reversed(self.processes):
            p.terminate()
        for p in self.processes:
            p.wait(timeout=30)
        self.config.cleanup()


DASK_YAML = """\
distributed:
  worker:
    profile:
      enabled: false
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
"""


class Timed:
    """Medians of ``runs`` runs: wall, client CPU, each worker's CPU, and the
    median run's phases."""

    def __init__(self, run, client: Client | None, runs: int, children: bool = False) -> None:
        walls, clients, workers, phases, schedulers = [], [], [], [], []
        for _ in range(runs):
            c0, w0, k0 = cpu_self(), cpu_workers(client), cpu_children()
            s0 = cpu_scheduler(client)
            ph: dict[str, float] = {}
            t0 = time.perf_counter()
            self.result = run(ph)
            walls.append(time.perf_counter() - t0)
            w1 = cpu_workers(client)
            each = {a: w1[a] - w0.get(a, 0.0) for a in w1}
            if children:  # a cluster of its own, closed: its workers are ended children
                each = {"workers": cpu_children() - k0}
            clients.append(cpu_self() - c0)
            schedulers.append(cpu_scheduler(client) - s0)
            workers.append(each)
            phases.append(ph)
        k = sorted(range(runs), key=walls.__getitem__)[runs // 2]
        self.wall, self.client_cpu, self.worker_cpu, self.phases = (
            walls[k], clients[k], workers[k], phases[k],
        )  # fmt: skip
        self.scheduler_cpu = schedulers[k]
        self.cpu = self.client_cpu + sum(self.worker_cpu.values()) + self.scheduler_cpu


def differs(a, b, tables: bool = True) -> list[str]:
    """What of two scan results differs (alerts, features; flows, activity)."""
    out = [n for n, ok in (("alerts", a.alerts == b.alerts),
                           ("features", a.features.equals(b.features))) if not ok]  # fmt: skip
    if not tables:
        return out
    fa, fb = a.flows.to_frame(), b.flows.to_frame()
    cols = list(fa.columns)
    fa, fb = (
        fa.sort_values(cols).reset_index(drop=True),
        fb.sort_values(cols).reset_index(drop=True),
    )
    if len(fa) != len(fb):
        out.append(f"flows ({len(fa):,} against {len(fb):,})")
    else:
        out += [f"flows.{c}" for c in cols if not fa[c].equals(fb[c])]
    ca, cb = a.activity.columns(), b.activity.columns()
    if not all(np.array_equal(ca[k], cb[k]) for k in ca):
        out.append("activity")
    return out


def same(a, b, tables: bool = True) -> bool:
    return not differs(a, b, tables)


def single_process(paths, policy, phases: dict[str, float], threads: int = 1):
    """scan_captures, with the time of its analysis (scan_activity) apart."""
    import detector.pipelines.scan as scan_module

    analysis = scan_module.scan_activity

    def timed_analysis(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return analysis(*args, **kwargs)
        finally:
            phases["analysis_s"] = time.perf_counter() - t0
            phases["analysis_cpu_s"] = time.process_time() - c0

    scan_module.scan_activity = timed_analysis
    try:
        return scan_captures(paths, policy, reading=Reading(threads), activity_rows=UNFOLDED)
    finally:
        scan_module.scan_activity = analysis


def phase_line(t: Timed) -> str:
    """Where the CPU went (seconds; the median run)."""
    ph = t.phases
    if "parts" not in ph:
        return f"analysis {ph.get('analysis_cpu_s', 0):.2f} (of {t.cpu:.2f})"
    tasks = ph.get("tasks_cpu_s", 0) + ph.get("share_cpu_s", 0)
    workers = sum(t.worker_cpu.values())
    out = [
        f"parts {ph['parts']:.0f} ({ph.get('parts_here', 0):.0f} here), "
        f"shares {ph.get('shares', 0):.0f}",
        f"workers: counting {ph.get('tasks_cpu_s', 0):.2f}",
        f"share fold {ph.get('share_fold_cpu_s', 0):.2f} ({ph.get('recounts', 0):.0f} recounts)",
        f"share analysis {ph.get('share_analysis_cpu_s', 0):.2f}",
        f"Dask and the rest {workers - tasks:.2f}" if workers else "",
        f"client: {t.client_cpu:.2f} (waiting for parts {ph.get('count_cpu_s', 0):.2f}, "
        f"for shares {ph.get('shares_cpu_s', 0):.2f}, combine {ph.get('combine_cpu_s', 0):.2f})",
        f"{ph.get('result_bytes', 0) / 1e6:.0f} MB of tables on the workers",
        f"users across shares: counting {ph.get('users_cpu_s', 0):.2f}, merges "
        f"{ph.get('users_merge_cpu_s', 0):.2f}, {ph.get('users_bytes', 0) / 1e6:.2f} MB "
        f"moved, {ph.get('users_elsewhere', 0):.0f} addresses given back"
        if "users_bytes" in ph
        else "",
    ]
    return ", ".join(x for x in out if x)


UNFOLDED = 1 << 22  # conversation-minutes a single-process scan holds before folding


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(HERE / "data" / "cap20m.pcap"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="cluster sizes to measure")
    ap.add_argument("--files8", action="store_true", help="also the capture as 8 rotated files")
    ap.add_argument("--cold", action="store_true",
                    help="also runs that start their own cluster (as scan --workers N)")  # fmt: skip
    args = ap.parse_args()
    path = Path(args.capture)
    if not path.exists():
        sys.exit(f"{path}: missing (python benchmarks/gen_capture.py makes benchmark captures)")
    policy = default_policy()
    inputs = {"1 file": [path]}
    if args.files8:
        inputs["8 files"] = split8(path)
    size = path.stat().st_size
    part_bytes = max(size // 8 + 1, 1 << 16)  # the one file in 8 ranges, as the 8 files
    sizes = [int(x) for x in args.workers.split(",")]
    print(f"# {path} ({size / 1e9:.2f} GB), medians of {args.runs} runs; "
          f"{os.cpu_count()} cores, SHARED with other work: read CPU s beside wall s; "
          f"load before: {os.getloadavg()[0]:.1f}")  # fmt: skip
    scan_captures(
        [path.parent / "cap2m.pcap" if (path.parent / "cap2m.pcap").exists() else path], policy
    )  # fmt: skip  (load the kernels)
    rows = []
    singles = {}
    for name, paths in inputs.items():
        t = Timed(lambda ph, p=paths: single_process(p, policy, ph), None, args.runs)
        singles[name] = t
        rows.append((name, "single process", t, None, True))
    # What `scan` does by itself on 2 cores: a second thread reads ahead.
    t = Timed(lambda ph: single_process(inputs["1 file"], policy, ph, 2), None, args.runs)
    rows.append(("1 file", "single, 2 threads", t, None, same(singles["1 file"].result, t.result)))
    for n in sizes:
        t0 = time.perf_counter()
        cluster = local_cluster(n)  # as the scan starts its own
        client = Client(cluster)
        scan_captures_distributed(
            inputs["1 file"][:1], policy, client=client, part_bytes=part_bytes
        )  # fmt: skip  (warm-up, and the whole result checked once: flows and activity too)
        start_up = time.perf_counter() - t0
        whole = scan_captures_distributed(inputs["1 file"], policy, client=client,
                                          part_bytes=part_bytes)  # fmt: skip
        print(f"# cluster of {n} worker(s): start-up and warm-up {start_up:.1f} s (apart); "
              f"flows, activity, features, alerts as one process but: "
              f"{differs(singles['1 file'].result, whole) or 'nothing'}")  # fmt: skip
        del whole
        for name, paths in inputs.items():
            t = Timed(
                lambda ph, p=paths, c=client: scan_captures_distributed(
                    p, policy, client=c, part_bytes=part_bytes, phases=ph, tables=False
                ),  # fmt: skip
                client,
                args.runs,
            )
            ok = same(singles[name].result, t.result, tables=False)
            rows.append((name, f"dask, {n} warm", t, n, ok))
        client.close()
        cluster.close()
    for n in sizes:
        machines = Machines(n)
        try:
            client = machines.client
            scan_captures_distributed(
                inputs["1 file"][:1], policy, client=client, part_bytes=part_bytes, tables=False
            )  # fmt: skip  (warm-up)
            t = Timed(
                lambda ph, c=client: scan_captures_distributed(
                    inputs["1 file"],
                    policy,
                    client=c,
                    part_bytes=part_bytes,
                    phases=ph,
                    tables=False,
                ),  # fmt: skip
                client,
                args.runs,
            )
            ok = same(singles["1 file"].result, t.result, tables=False)
            rows.append(("1 file", f"dask, {n} machines", t, n, ok))
        finally:
            machines.close()
    if args.cold:
        for n in sizes:
            # As `scan --workers N`: the scan starts (and stops) its own cluster.
            t = Timed(
                lambda ph, n=n: scan_captures_distributed(
                    inputs["1 file"],
                    policy,
                    workers=n,
                    part_bytes=part_bytes,
                    phases=ph,
                    tables=False,
                ),  # fmt: skip
                None,
                args.runs,
                children=True,
            )
            rows.append(("1 file", f"dask, {n} cold", t, n,
                         same(singles["1 file"].result, t.result, tables=False)))  # fmt: skip
    base_cpu = singles["1 file"].cpu
    print(f"{'input':8} {'how':17} {'wall s':>7} {'CPU s':>7} {'client':>7} {'client %':>8} "
          f"{'sched.':>6}  {'workers (each)':24} same result")  # fmt: skip
    for name, how, t, n, ok in rows:
        each = "+".join(f"{v:.2f}" for v in t.worker_cpu.values()) if n else "-"
        share = f"{t.client_cpu / base_cpu:8.1%}" if n else f"{'-':>8}"
        client_cpu = f"{t.client_cpu:7.2f}" if n else f"{'-':>7}"
        sched = f"{t.scheduler_cpu:6.2f}" if n and "machines" in how else f"{'-':>6}"
        print(f"{name:8} {how:17} {t.wall:7.2f} {t.cpu:7.2f} {client_cpu} {share} {sched}  "
              f"{each:24} {ok}")  # fmt: skip
    print("# where the CPU went (seconds; median run):")
    for name, how, t, _n, _ok in rows:
        print(f"#   {name:8} {how:17} {phase_line(t)}")
    # What more cores would give, from the CPU accounting: the client's part is
    # serial; counting, analysis and Dask's work share out over the cores; each
    # share's fold recounts the parts it needs itself, so that does not shrink.
    for name, how, t, n, _ok in rows:
        if n and n == max(sizes) and "machines" in how and name == "1 file":
            ph = t.phases
            shares = max(ph.get("shares", 1), 1)
            fold = ph.get("share_fold_cpu_s", 0) / shares
            spread = sum(t.worker_cpu.values()) + t.scheduler_cpu - fold * shares
            guess = ", ".join(f"{c} cores ~{t.client_cpu + fold + spread / c:.1f} s"
                              for c in (2, 4, 8, 16))  # fmt: skip
            print(f"# from '{how}': client {t.client_cpu:.2f} CPU s serial; each share's fold "
                  f"{fold:.2f} (its recounts: does not shrink); the rest {spread:.2f} CPU s "
                  f"shared out. One worker per core: {guess}; single process "
                  f"{base_cpu:.2f} CPU s, {singles['1 file'].wall:.2f} s")  # fmt: skip
    print(f"# load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
