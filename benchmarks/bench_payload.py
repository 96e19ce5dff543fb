#!/usr/bin/env python3
"""What payload inspection costs: decode + flow table with and without it.

    python benchmarks/bench_payload.py [CAPTURE]   # default: benchmarks/data/cap2m-full.pcap

Issue budget: inspection may cost at most 30% of decode + flow throughput on a
full-payload capture. Prints packets/s both ways (median of --runs after a
warm-up, in-process, one thread, the two alternating) and the facts found, by wall
time and by the process's CPU time; the cost as the median of each pair's ratio
(``paired``), which holds up best when other processes share the cores; and the
load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from detector.capture import read_packets  # noqa: E402
from detector.flows.payload import PayloadInspector  # noqa: E402
from detector.flows.table import FlowTable  # noqa: E402


def once(path: Path, inspect: bool) -> tuple[float, int, int, float]:
    """(wall seconds, packets, facts, CPU seconds) of one pass."""
    table = FlowTable()
    inspector = PayloadInspector() if inspect else None
    packets = 0
    start = time.perf_counter()
    cpu = time.process_time()
    for batch in read_packets([path], reuse_batch=True, inspector=inspector):
        table.ingest(batch)
        packets += len(batch)
    table.flush()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    facts = len(inspector.frame()) if inspector is not None else 0
    return seconds, packets, facts, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(HERE / "data" / "cap2m-full.pcap"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.capture)
    if not path.exists():
        sys.exit(f"{path}: missing (python benchmarks/gen_capture.py makes benchmark captures)")
    load_before = os.getloadavg()[0]
    once(path, True)  # compile / load the kernels, warm the page cache
    rows = {}
    for inspect in (False, True, False, True):
        rows.setdefault(inspect, []).append(once(path, inspect))
    for _ in range(args.runs - 2):
        for inspect in (False, True):
            rows[inspect].append(once(path, inspect))
    packets = rows[False][0][1]
    print(f"# {path} ({path.stat().st_size / 1e9:.2f} GB, {packets:,} packets), "
          f"medians of {len(rows[False])} runs, one thread; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")  # fmt: skip
    for clock, at in (("wall", 0), ("CPU", 3)):
        base = statistics.median(r[at] for r in rows[False])
        with_payload = statistics.median(r[at] for r in rows[True])
        paired = statistics.median(
            b[at] / a[at] - 1 for a, b in zip(rows[False], rows[True], strict=True)
        )
        print(f"{clock:4s} decode + flow table               {base:7.3f} s  "
              f"{packets / base / 1e6:6.2f} Mpps")  # fmt: skip
        print(f"{clock:4s} decode + flow table + inspection  {with_payload:7.3f} s  "
              f"{packets / with_payload / 1e6:6.2f} Mpps  ({rows[True][0][2]:,} facts)")  # fmt: skip
        print(f"{clock:4s} inspection costs {100 * (with_payload - base) / base:.1f}% of decode"
              f" + flow time (paired: {100 * paired:.1f}%; budget: 30%)")  # fmt: skip


if __name__ == "__main__":
    main()
