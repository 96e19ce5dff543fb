#!/usr/bin/env python3
"""What the first run costs: compiling the kernels, kernel by kernel.

    python benchmarks/bench_compile.py                 # scan of the bundled sample
    python benchmarks/bench_compile.py --command flows # egress-detector flows instead
    python benchmarks/bench_compile.py --command train # or train a model on it
    python benchmarks/bench_compile.py --runs 3

Each run is a fresh process with an empty numba cache (a temporary
EGRESS_DETECTOR_CACHE_DIR), so every kernel it needs compiles, as on a user's
first run. Prints the command's wall time and the kernels that took longest to
compile (numba's compile events; a kernel's time includes the helpers compiled
inside it, so the column does not add up to the wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run inside the child: record numba's compile events, run the command, print JSON.
CHILD = r"""
import json, sys, time
from numba.core import event

starts, done = {}, []


class Listener(event.Listener):
    def on_start(self, ev):
        starts[id(ev.data["dispatcher"])] = time.perf_counter()

    def on_end(self, ev):
        dispatcher = ev.data["dispatcher"]
        func = dispatcher.py_func
        name = func.__module__.rsplit(".", 1)[-1] + "." + func.__qualname__
        done.append((time.perf_counter() - starts.pop(id(dispatcher)), name))


event.register("numba:compile", Listener())
from detector.cli.main import main

start = time.perf_counter()
status = main(sys.argv[1:])
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "status": status, "kernels": sorted(done, reverse=True)}))
"""


def once(argv: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="egress-compile-") as cache:
        env = dict(os.environ, EGRESS_DETECTOR_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", CHILD, *argv],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"bench_compile: the command failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--command", choices=("scan", "flows", "train"), default="scan")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--top", type=int, default=8, help="kernels listed (default 8)")
    args = ap.parse_args()

    sample = str(ROOT / "captures" / "sample-incident.pcap.gz")
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "scan":
            argv = ["scan", "--policy", str(ROOT / "captures" / "sample-policy.toml"), sample,
                    "--format", "jsonl", "-o", str(Path(tmp) / "alerts.jsonl")]  # fmt: skip
        elif args.command == "train":
            argv = ["train", "--policy", str(ROOT / "captures" / "sample-policy.toml"), sample,
                    "-o", str(Path(tmp) / "site.model")]  # fmt: skip
        else:
            argv = ["flows", sample, "-o", str(Path(tmp) / "flows.parquet")]
        results = [once(argv) for _ in range(args.runs)]

    walls = [r["wall"] for r in results]
    print(f"# egress-detector {args.command} of the bundled sample, empty numba cache, "
          f"{args.runs} run(s)")  # fmt: skip
    print(f"wall: median {statistics.median(walls):.1f} s "
          f"(runs: {', '.join(f'{w:.1f}' for w in walls)})")  # fmt: skip
    per_kernel: dict[str, list[float]] = {}
    for r in results:
        for seconds, name in r["kernels"]:
            per_kernel.setdefault(name, []).append(seconds)
    ranked = sorted(per_kernel.items(), key=lambda kv: -statistics.median(kv[1]))
    print(f"{'kernel':40s} {'compile s (median)':>18s}")
    for name, values in ranked[: args.top]:
        print(f"{name:40s} {statistics.median(values):18.1f}")


if __name__ == "__main__":
    main()
