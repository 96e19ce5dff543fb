#!/usr/bin/env python3
"""The distributed scan against the single-process scan: speed-up and overhead.

    python benchmarks/bench_distributed.py [CAPTURE]   # default: benchmarks/data/cap20m.pcap

The capture is scanned as one file and as 8 rotated files (cut on record
boundaries, written once to split8-<name>/ beside the capture), each way:
single-process (scan_captures, one thread), and on a local Dask cluster of 1
and of 2 worker processes (scan_captures_distributed; the one file is cut into
8 byte ranges). "warm": the cluster is started and warmed (kernels loaded in
each worker) before timing, its start-up printed apart; "cold": the scan
starts and stops its own cluster, as `scan --workers N` does (the one file).
Wall time is the median of --runs; CPU seconds are this process's plus every
worker's (resource.getrusage), because on a shared machine wall time alone
says little. Every distributed result is checked against the single-process
one (flows, features, alerts), and each row's phases say where the time went
(scan_captures_distributed(phases=...)).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dask.distributed import Client  # noqa: E402

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


def cpu_workers(client: Client | None) -> float:
    if client is None:
        return 0.0
    return sum(client.run(cpu_self).values())


class Timed:
    """Medians of ``runs`` runs: wall, CPU (this process + workers), the
    workers' share, and the median run's phases."""

    def __init__(self, run, client: Client | None, runs: int, children: bool = False) -> None:
        walls, cpus, workers, phases = [], [], [], []
        for _ in range(runs):
            c0, w0, k0 = cpu_self(), cpu_workers(client), cpu_children()
            ph: dict[str, float] = {}
            t0 = time.perf_counter()
            self.result = run(ph)
            walls.append(time.perf_counter() - t0)
            w = cpu_workers(client) - w0 + (cpu_children() - k0 if children else 0.0)
            cpus.append(cpu_self() - c0 + w)
            workers.append(w)
            phases.append(ph)
        k = sorted(range(runs), key=walls.__getitem__)[runs // 2]
        self.wall, self.cpu, self.workers_cpu, self.phases = (
            walls[k],
            cpus[k],
            workers[k],
            phases[k],
        )


def same(a, b) -> bool:
    fa, fb = a.flows.to_frame(), b.flows.to_frame()
    cols = list(fa.columns)
    return (
        len(fa) == len(fb)
        and fa.sort_values(cols)
        .reset_index(drop=True)
        .equals(fb.sort_values(cols).reset_index(drop=True))
        and a.alerts == b.alerts
        and a.features.equals(b.features)
    )


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
        return scan_captures(paths, policy, threads=threads)
    finally:
        scan_module.scan_activity = analysis


def phase_line(ph: dict[str, float], workers_cpu: float) -> str:
    """Where the time went, this process's CPU seconds unless said."""
    if "parts" not in ph:
        return f"analysis {ph.get('analysis_cpu_s', 0):.2f}"
    counting = ph.get("count_cpu_s", 0) - ph.get("fold_cpu_s", 0)
    fold = ph.get("fold_cpu_s", 0) - ph.get("recount_cpu_s", 0)
    dask = workers_cpu - ph.get("tasks_cpu_s", 0) if workers_cpu else None
    out = [
        f"parts {ph['parts']:.0f} ({ph.get('parts_here', 0):.0f} here)",
        f"tasks {ph.get('tasks_cpu_s', 0):.2f}",
    ]
    if dask is not None:
        out.append(f"workers' Dask {dask:.2f}")
    out += [
        f"client: start {ph.get('cluster_wait_s', 0) + ph.get('cluster_s', 0):.2f} wall",
        f"plan {ph.get('plan_cpu_s', 0):.2f}",
        f"receive+here {counting:.2f}",
        f"fold {fold:.2f}",
        f"recount {ph.get('recount_cpu_s', 0):.2f} ({ph.get('recounts', 0):.0f})",
        f"finish {ph.get('finish_cpu_s', 0):.2f}",
        f"combine {ph.get('combine_cpu_s', 0):.2f}",
        f"analysis {ph.get('analysis_cpu_s', 0):.2f}",
        f"close {ph.get('cluster_close_s', 0):.2f} wall",
        f"{ph.get('result_bytes', 0) / 1e6:.0f} MB back",
    ]
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(HERE / "data" / "cap20m.pcap"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="cluster sizes to measure")
    ap.add_argument("--no-cold", action="store_true",
                    help="skip the runs that start their own cluster (as scan --workers N)")  # fmt: skip
    args = ap.parse_args()
    path = Path(args.capture)
    if not path.exists():
        sys.exit(f"{path}: missing (python benchmarks/gen_capture.py makes benchmark captures)")
    policy = default_policy()
    inputs = {"1 file": [path], "8 files": split8(path)}
    size = path.stat().st_size
    part_bytes = max(size // 8 + 1, 1 << 16)  # the one file in 8 ranges, as the 8 files
    sizes = [int(x) for x in args.workers.split(",")]
    print(f"# {path} ({size / 1e9:.2f} GB), medians of {args.runs} runs; "
          f"{os.cpu_count()} cores, SHARED with other work: read CPU s beside wall s; "
          f"load before: {os.getloadavg()[0]:.1f}")  # fmt: skip
    scan_captures([inputs["8 files"][0]], policy)  # load the kernels, warm the page cache
    rows = []
    singles = {}
    for name, paths in inputs.items():
        t = Timed(lambda ph, p=paths: single_process(p, policy, ph), None, args.runs)
        singles[name] = t
        rows.append((name, "single process", t, None, True))
    # What `scan` does by itself on 2 cores: a second thread reads ahead.
    t = Timed(lambda ph: single_process(inputs["1 file"], policy, ph, 2), None, args.runs)
    rows.append(("1 file", "single, 2 threads", t, None, same(singles["1 file"].result, t.result)))
    warm: dict[tuple[str, int], Timed] = {}
    for n in sizes:
        t0 = time.perf_counter()
        cluster = local_cluster(n)  # as the scan starts its own
        client = Client(cluster)
        scan_captures_distributed(
            inputs["8 files"][:1], policy, client=client, part_bytes=part_bytes
        )  # fmt: skip  (warm-up)
        start_up = time.perf_counter() - t0
        print(f"# cluster of {n} worker(s): start-up and warm-up {start_up:.1f} s (apart)")
        for name, paths in inputs.items():
            t = Timed(
                lambda ph, p=paths, c=client: scan_captures_distributed(
                    p, policy, client=c, part_bytes=part_bytes, phases=ph
                ),  # fmt: skip
                client,
                args.runs,
            )
            warm[(name, n)] = t
            rows.append((name, f"dask, {n} warm", t, n, same(singles[name].result, t.result)))
        client.close()
        cluster.close()
    if not args.no_cold:
        for n in sizes:
            # As `scan --workers N`: the scan starts (and stops) its own cluster.
            t = Timed(
                lambda ph, n=n: scan_captures_distributed(
                    inputs["1 file"], policy, workers=n, part_bytes=part_bytes, phases=ph
                ),  # fmt: skip
                None,
                args.runs,
                children=True,
            )
            warm[("1 file cold", n)] = t
            rows.append(("1 file", f"dask, {n} cold", t, n,
                         same(singles["1 file"].result, t.result)))  # fmt: skip
    print(f"{'input':8} {'how':17} {'wall s':>7} {'CPU s':>7} {'vs 1 worker':>11} "
          f"{'vs single':>9}  same result")  # fmt: skip
    for name, how, t, n, ok in rows:
        base = singles[name].wall
        key = (name + (" cold" if "cold" in how else ""), 1)
        one = warm.get(key)
        vs_one = f"{one.wall / t.wall:10.2f}x" if n and one is not None else f"{'-':>11}"
        vs_single = f"{(t.wall - base) / base:+9.0%}" if n else f"{'-':>9}"
        print(f"{name:8} {how:17} {t.wall:7.2f} {t.cpu:7.2f} {vs_one} {vs_single}  {ok}")
    print("# where the time went (CPU s unless said; median run):")
    for name, how, t, _n, _ok in rows:
        print(f"#   {name:8} {how:17} {phase_line(t.phases, t.workers_cpu)}")
    print(f"# load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
