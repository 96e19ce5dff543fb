#!/usr/bin/env python3
"""The distributed scan against the single-process scan: speed-up and overhead.

    python benchmarks/bench_distributed.py [CAPTURE]   # default: benchmarks/data/cap2m.pcap

The capture is scanned as one file and as 8 rotated files (cut on record
boundaries, written once to benchmarks/data/split8-<name>/), each way:
single-process (scan_captures, one thread), and on a local Dask cluster of 1
and of 2 worker processes (scan_captures_distributed; the one file is cut into
8 byte ranges). The clusters are started and warmed (kernels loaded in each
worker) before timing; their start-up is printed apart. Wall time is the
median of --runs; CPU seconds are this process's plus every worker's
(resource.getrusage), because on a shared machine wall time alone says
little. Every distributed result is checked against the single-process one
(flows, alerts).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dask.distributed import Client, LocalCluster  # noqa: E402

from detector.detect.scan import scan_captures  # noqa: E402
from detector.distributed import scan_captures_distributed  # noqa: E402
from detector.distributed.parts import plan_parts  # noqa: E402
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


def cpu_workers(client: Client | None) -> float:
    if client is None:
        return 0.0
    return sum(client.run(cpu_self).values())


def timed(run, client: Client | None, runs: int):
    walls, cpus, result = [], [], None
    for _ in range(runs):
        c0, w0 = cpu_self(), cpu_workers(client)
        t0 = time.perf_counter()
        result = run()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_self() - c0 + cpu_workers(client) - w0)
    return statistics.median(walls), statistics.median(cpus), result


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(HERE / "data" / "cap2m.pcap"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="cluster sizes to measure")
    args = ap.parse_args()
    path = Path(args.capture)
    if not path.exists():
        sys.exit(f"{path}: missing (python benchmarks/gen_capture.py makes benchmark captures)")
    policy = default_policy()
    inputs = {"1 file": [path], "8 files": split8(path)}
    size = path.stat().st_size
    part_bytes = max(size // 8 + 1, 1 << 16)  # the one file in 8 ranges, as the 8 files
    print(f"# {path} ({size / 1e9:.2f} GB), medians of {args.runs} runs; "
          f"{os.cpu_count()} cores, SHARED with other work: read CPU s beside wall s")  # fmt: skip
    scan_captures([inputs["8 files"][0]], policy)  # load the kernels, warm the page cache
    rows = []
    singles = {}
    for name, paths in inputs.items():
        wall, cpu, result = timed(lambda p=paths: scan_captures(p, policy), None, args.runs)
        singles[name] = (wall, result)
        rows.append((name, "single process", wall, cpu, 1.0, "-", True))
    for n in (int(x) for x in args.workers.split(",")):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0")  # fmt: skip
        client = Client(cluster)
        scan_captures_distributed(
            inputs["8 files"][:1], policy, client=client, part_bytes=part_bytes
        )  # fmt: skip  (warm-up)
        start_up = time.perf_counter() - t0
        print(f"# cluster of {n} worker(s): start-up and warm-up {start_up:.1f} s (not counted)")
        for name, paths in inputs.items():
            wall, cpu, result = timed(
                lambda p=paths, c=client: scan_captures_distributed(
                    p, policy, client=c, part_bytes=part_bytes
                ),  # fmt: skip
                client,
                args.runs,
            )
            base_wall, base = singles[name]
            rows.append((name, f"dask, {n} worker(s)", wall, cpu, base_wall / wall,
                         f"{(wall - base_wall) / base_wall:+.0%}" if n == 1 else "-",
                         same(base, result)))  # fmt: skip
        client.close()
        cluster.close()
    print(f"{'input':8} {'how':20} {'wall s':>7} {'CPU s':>7} {'speed-up':>8} "
          f"{'overhead':>8}  same result")  # fmt: skip
    for name, how, wall, cpu, speed, overhead, ok in rows:
        print(f"{name:8} {how:20} {wall:7.2f} {cpu:7.2f} {speed:7.2f}x {overhead:>8}  {ok}")


if __name__ == "__main__":
    main()
