"""Compare versions of the capture core side by side, in one process.

On this 2-core virtual machine, runs minutes apart differ by up to 2× (other
processes, the page cache being reclaimed), so two versions timed one after the
other cannot be compared. This loads each version's ``detector`` package under
its own name (det_<name>: the package's imports are all relative) and times
them in interleaved rounds, alternating the order, so that whatever slows the
machine slows every version alike; medians are compared.

    git worktree add /tmp/try-x main        # then edit /tmp/try-x
    python benchmarks/ab_kernels.py base=. x=/tmp/try-x --rounds 25
    python benchmarks/ab_kernels.py base=. x=/tmp/try-x --mode whole

On a loaded machine use ``--clock cpu`` (kernel mode): each run's thread CPU time,
which leaves out the time other processes held the core; wall-clock medians then
moved by 20-40 % between runs minutes apart, CPU-time medians by 2-3 %. Each
version's line also gives ``paired``, the median of its per-round ratios to the
base. Version names pick the folders in data/ab-kernels/, shared by everyone
on the machine: choose names of your own.

``--mode kernel`` (default) times the fused decode + count kernel over an
in-memory copy of the capture (no file reading, no flow records);
``--mode whole`` times ``count_flows`` over the file, as the in-process row of
bench_core.py does; ``--mode decode`` times ``read_packets`` over it (decoding into
batches, no flow table), as the decode row does; ``--mode payload`` times reading
the capture (or every capture in a folder, such as the shared corpus's real
application traffic) with the payload inspector. Each version compiles its kernels
once; the copies live in data/ab-kernels/ so the next comparison finds them compiled.
"""

from __future__ import annotations

import argparse
import importlib
import mmap
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def load(name: str, tree: Path, into: Path) -> dict[str, Any]:
    target = into / f"det_{name}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(tree / "detector", target, ignore=shutil.ignore_patterns("__pycache__"))
    return {
        "records": importlib.import_module(f"det_{name}._kernels.records"),
        "table": importlib.import_module(f"det_{name}.flows.table"),
        "batch": importlib.import_module(f"det_{name}.capture.batch"),
        "flows": importlib.import_module(f"det_{name}.flows"),
        "capture": importlib.import_module(f"det_{name}.capture"),
    }


# --clock: wall (perf_counter) or this thread's CPU time (thread_time), which
# leaves out the time other processes held the core (kernel mode runs on one thread).
CLOCK = time.perf_counter


def kernel_run(mod: dict[str, Any], data: np.ndarray) -> float:
    rk = mod["records"]
    table = mod["table"].FlowTable(idle_timeout=120, active_timeout=1800)
    batch = mod["batch"].PacketBatch.empty(1)
    counters = np.zeros(64, np.int64)
    counters[rk.COUNT_FIRST_TS] = np.iinfo(np.int64).max
    counters[rk.COUNT_LAST_TS] = np.iinfo(np.int64).min
    pos = 24
    start = CLOCK()
    while True:
        _n, pos, why, detail, table.n_export = rk.walk_pcap(
            data, pos, len(data), False, False, 1, 0, 0, 1 << 40, counters, batch.arrays(),
            False, True, table.kernel_table, table.kernel_params, table.export_buffer,
            table.n_export,
        )  # fmt: skip
        if why == rk.WALK_COUNT_STOPPED:
            table.handle(int(detail))
            continue
        break
    return CLOCK() - start


def whole_run(mod: dict[str, Any], capture: Path) -> float:
    start = time.perf_counter()
    mod["flows"].count_flows([str(capture)])
    return time.perf_counter() - start


def decode_run(mod: dict[str, Any], capture: Path) -> float:
    start = time.perf_counter()
    for _batch in mod["capture"].read_packets([capture], reuse_batch=True):
        pass
    return time.perf_counter() - start


def payload_run(mod: dict[str, Any], captures: list[Path]) -> float:
    inspector = importlib.import_module(mod["flows"].__name__ + ".payload").PayloadInspector()
    start = time.perf_counter()
    for path in captures:
        for _batch in mod["capture"].read_packets([path], inspector=inspector,
                                                  on_problem=lambda problem: None):  # fmt: skip
            pass
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "versions",
        nargs="+",
        help="NAME=CHECKOUT (a directory holding detector/); the first is the base",
    )
    ap.add_argument(
        "--capture",
        type=Path,
        default=DATA / "cap2m.pcap",
        help="a little-endian microsecond classic pcap of Ethernet (default: data/cap2m.pcap); "
        "for --mode payload also a folder of captures (e.g. ../shared/corpus/pcaps)",
    )
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--mode", choices=("kernel", "whole", "decode", "payload"), default="kernel")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="kernel mode: cpu times the thread's CPU time, not counting the time "
        "other processes held the core (a loaded machine)",
    )
    args = ap.parse_args()  # fmt: skip
    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.thread_time

    # A fixed place per version name, so numba's cache (keyed by file path and
    # the kernels' sources) is reused by the next comparison.
    into = DATA / "ab-kernels"
    into.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(into))
    mods = {}
    for spec in args.versions:
        name, _, tree = spec.partition("=")
        if not tree or not (Path(tree) / "detector").is_dir():
            raise SystemExit(f"ab_kernels: {spec!r}: expected NAME=CHECKOUT with CHECKOUT/detector")
        mods[name] = load(name, Path(tree), into)

    data = np.zeros(0, np.uint8)
    if args.mode == "kernel":
        with open(args.capture, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            data = np.frombuffer(mapped, np.uint8).copy()  # anonymous memory: no page cache
        data.flags.writeable = False
    names = list(mods)

    # --mode payload: the capture, or every file of a folder (the shared corpus).
    if args.capture.is_dir():
        captures = sorted(p for p in args.capture.iterdir() if p.is_file())
    else:
        captures = [args.capture]

    def run(name: str) -> float:
        if args.mode == "kernel":
            return kernel_run(mods[name], data)
        if args.mode == "decode":
            return decode_run(mods[name], args.capture)
        if args.mode == "payload":
            return payload_run(mods[name], captures)
        return whole_run(mods[name], args.capture)

    for name in names:  # compile (or load the cache) and warm up
        run(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(run(name))
    base = statistics.median(times[names[0]])
    load_average = os.getloadavg()[0]
    print(f"# {args.capture.name}, mode {args.mode}, {args.rounds} interleaved rounds, "
          f"clock {args.clock if args.mode == 'kernel' else 'wall'}, "
          f"load average {load_average:.1f}")  # fmt: skip
    for name in names:
        values = sorted(times[name])
        med = statistics.median(values)
        # Each round's time over the base's in the same round: the machine's
        # load drifts over seconds, and a pair timed back to back shares it.
        paired = statistics.median(t / b for t, b in zip(times[name], times[names[0]], strict=True))
        print(f"{name:12s} median {med * 1e3:8.1f} ms  fastest {values[0] * 1e3:8.1f} ms  "
              f"median vs {names[0]}: {med / base:.3f}  paired: {paired:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
