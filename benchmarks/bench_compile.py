#!/usr/bin/env python3
"""What the first run costs: from a fresh kernel cache to the first packet read, and to the end.

    python benchmarks/bench_compile.py                           # scan, flows, live, train; 1 run
    python benchmarks/bench_compile.py --runs 3 --cache both     # with and without a shipped cache
    python benchmarks/bench_compile.py --commands flows --cache none --top 8
    python benchmarks/bench_compile.py --install --runs 3        # pip install a clean clone first

Each run is a fresh process with an empty numba cache (a temporary
EGRESS_DETECTOR_CACHE_DIR), as on a user's first run after an install:

* ``--cache none``: no shipped kernels (EGRESS_DETECTOR_SHIPPED_CACHE points at
  nothing), so every kernel a command needs compiles: the first run before
  detector/_jit_build.py, and today's fallback on another numba or machine;
* ``--cache shipped``: the kernels a built package ships (``--shipped DIR``, else
  built once here with ``python -m detector._jit_build``, timed);
* ``--cache both`` (default): the two alternate, run by run.

``--install`` measures as a new user would: a clean clone of HEAD installed with
``pip install`` into a new virtual environment (site packages of this Python
visible, so numba and the rest are not downloaded again), the wheel build's
kernel compile timed as part of the install; each command then runs from that
install's console script environment with an empty cache.

The commands (the bundled sample; live reads it with -r): scan, flows, live, train.
"first packet" is when the first pcap/pcapng record walker starts running over
the capture (its compile or cache load done; live's warm-up on made-up packets
does not count), from the moment the process was started. Prints medians, each
run's figures, and the kernels compiled (numba's compile events: a cache hit
compiles nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
POLICY = ROOT / "captures" / "sample-policy.toml"
COMMANDS = ("scan", "flows", "live", "train")

# Run inside the child: note when the first record walker starts over the
# capture, record numba's compile events, run the command, print JSON.
CHILD = r"""
import json, sys, time
from numba.core import event

compiled, starts, first = [], {}, []


class Listener(event.Listener):
    def on_start(self, ev):
        starts[id(ev.data["dispatcher"])] = time.perf_counter()

    def on_end(self, ev):
        dispatcher = ev.data["dispatcher"]
        func = dispatcher.py_func
        name = func.__module__.rsplit(".", 1)[-1] + "." + func.__qualname__
        compiled.append((time.perf_counter() - starts.pop(id(dispatcher)), name))


event.register("numba:compile", Listener())
from detector._kernels import records as rk
from detector import _jit


def watched(dispatcher):
    def walk(*args):
        if not first and sys._getframe(1).f_code.co_name != "decode_records":
            # Compile (or load) for these arguments now, so the time noted is when
            # the walker starts reading, not when it was asked to.
            dispatcher.compile(tuple(dispatcher.typeof_pyval(a) for a in args))
            first.append(time.time())
        return dispatcher(*args)
    return walk


rk.walk_pcap, rk.walk_pcapng = watched(rk.walk_pcap), watched(rk.walk_pcapng)
from detector.cli.main import main

status = main(sys.argv[1:])
print(json.dumps({"end": time.time(), "first": first[0] if first else None, "status": status,
                  "cpu": _jit.CPU_NAME, "shipped": _jit.SHIPPED is not None,
                  "reason": _jit.SHIPPED_REASON, "kernels": sorted(compiled, reverse=True)}))
"""


def command_argv(command: str, tmp: Path) -> list[str]:
    sample, policy = str(SAMPLE), str(POLICY)
    if command == "scan":
        return ["scan", "--policy", policy, sample, "--format", "jsonl", "-o", str(tmp / "a.jsonl")]
    if command == "flows":
        return ["flows", sample, "-o", str(tmp / "flows.parquet")]
    if command == "live":
        return ["live", "--policy", policy, "-r", sample, "--format", "jsonl", "-o", str(tmp / "l.jsonl")]
    return ["train", "--policy", policy, sample, "-o", str(tmp / "site.model")]


def once(python: str, argv: list[str], shipped: str, pythonpath: str | None, cwd: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="egress-compile-") as cache:
        env = dict(os.environ, EGRESS_DETECTOR_CACHE_DIR=cache, EGRESS_DETECTOR_SHIPPED_CACHE=shipped)
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        started = time.time()
        out = subprocess.run([python, "-c", CHILD, *argv], env=env, cwd=cwd,
                             capture_output=True, text=True, check=False)  # fmt: skip
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"bench_compile: {argv[0]} failed:\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["wall"] = result["end"] - started
    result["to_first"] = None if result["first"] is None else result["first"] - started
    return result


def build_shipped(python: str, into: Path, pythonpath: str | None) -> float:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    subprocess.run([python, "-m", "detector._jit_build", str(into)], env=env, check=True, cwd=into.parent)
    return time.perf_counter() - start


def install(into: Path) -> tuple[str, float]:
    """A clean clone of HEAD pip-installed into a new venv; its python and the install's seconds."""
    clone = into / "clone"
    subprocess.run(["git", "clone", "-q", "--local", str(ROOT), str(clone)], check=True)
    venv = into / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    start = time.perf_counter()
    subprocess.run([python, "-m", "pip", "install", "-q", str(clone)], check=True, cwd=into)
    return python, time.perf_counter() - start


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated, of: " + ", ".join(COMMANDS))
    ap.add_argument("--command", choices=COMMANDS, help=argparse.SUPPRESS)  # before --commands
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--cache", choices=("none", "shipped", "both"), default="both")
    ap.add_argument("--shipped", metavar="DIR", help="a shipped cache made by python -m detector._jit_build DIR (default: build one)")
    ap.add_argument("--install", action="store_true", help="pip install a clean clone of HEAD into a new venv and run that")
    ap.add_argument("--top", type=int, default=5, help="kernels compiled listed per command and mode (default 5)")
    args = ap.parse_args()
    commands = [args.command] if args.command else [c for c in args.commands.split(",") if c]
    if unknown := set(commands) - set(COMMANDS):
        ap.error(f"--commands: unknown {', '.join(sorted(unknown))}")
    modes = ["none", "shipped"] if args.cache == "both" else [args.cache]

    with tempfile.TemporaryDirectory(prefix="egress-bench-compile-") as tmp_name:
        tmp = Path(tmp_name)
        python, pythonpath, cwd = sys.executable, str(ROOT), ROOT
        print(f"# bench_compile {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"load average {os.getloadavg()[0]:.1f}, {args.runs} run(s) per command and mode")  # fmt: skip
        if args.install:
            python, seconds = install(tmp)
            pythonpath, cwd = None, tmp
            print(f"pip install of a clean clone (the wheel's kernel build included): {seconds:.1f} s")
        shipped = str(tmp / "no-shipped-cache")
        if "shipped" in modes:
            if args.install:
                found = subprocess.run([python, "-c", "from detector import _jit; print(_jit.SHIPPED_DIR)"],
                                       cwd=cwd, capture_output=True, text=True, check=True)  # fmt: skip
                shipped = found.stdout.strip()
            elif args.shipped:
                shipped = str(Path(args.shipped).resolve())
            else:
                shipped = str(tmp / "shipped")
                seconds = build_shipped(python, Path(shipped), pythonpath)
                print(f"python -m detector._jit_build (the wheel's build step): {seconds:.1f} s")
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.runs):
            for command in commands:
                for mode in modes:
                    argv = command_argv(command, tmp)
                    where = shipped if mode == "shipped" else str(tmp / "no-shipped-cache")
                    runs.setdefault((command, mode), []).append(once(python, argv, where, pythonpath, cwd))

    print(f"{'command':8s} {'shipped cache':14s} {'to first packet s':>18s} {'to the end s':>13s}  "
          f"{'kernels compiled':>16s}  runs (first packet / end)")  # fmt: skip
    for (command, mode), results in runs.items():
        firsts = [r["to_first"] for r in results if r["to_first"] is not None]
        ends = [r["wall"] for r in results]
        count = statistics.median([len(r["kernels"]) for r in results])
        each = ", ".join(f"{'-' if r['to_first'] is None else format(r['to_first'], '.1f')}/{r['wall']:.1f}" for r in results)
        label = "yes" if mode == "shipped" else "no"
        if mode == "shipped" and not all(r["shipped"] for r in results):
            label = "unused"
        print(f"{command:8s} {label:14s} {median(firsts):>18s} {median(ends):>13s}  {count:16.0f}  {each}")
    for (command, mode), results in runs.items():
        reasons = {r["reason"] for r in results if r["reason"]}
        if mode == "shipped" and reasons:
            print(f"# {command}: shipped cache not used: {'; '.join(sorted(reasons))}")
        per_kernel: dict[str, list[float]] = {}
        for r in results:
            for seconds, name in r["kernels"]:
                per_kernel.setdefault(name, []).append(seconds)
        ranked = sorted(per_kernel.items(), key=lambda kv: -statistics.median(kv[1]))[: args.top]
        if ranked:
            listed = ", ".join(f"{name} {statistics.median(v):.1f} s" for name, v in ranked)
            print(f"# {command}, shipped cache {mode}: longest compiles: {listed}")


if __name__ == "__main__":
    main()
