#!/usr/bin/env python3
"""What payload inspection costs: decode + flow table with and without it.

    python benchmarks/bench_payload.py [CAPTURE]   # default: benchmarks/data/cap2m-full.pcap

Issue budget: inspection may cost at most 30% of decode + flow throughput on a
full-payload capture. Prints packets/s both ways (median of --runs after a
warm-up, in-process, one thread) and the facts found.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from detector.capture import read_packets  # noqa: E402
from detector.flows.payload import PayloadInspector  # noqa: E402
from detector.flows.table import FlowTable  # noqa: E402


def once(path: Path, inspect: bool) -> tuple[float, int, int]:
    table = FlowTable()
    inspector = PayloadInspector() if inspect else None
    packets = 0
    start = time.perf_counter()
    for batch in read_packets([path], reuse_batch=True, inspector=inspector):
        table.ingest(batch)
        packets += len(batch)
    table.flush()
    seconds = time.perf_counter() - start
    facts = len(inspector.frame()) if inspector is not None else 0
    return seconds, packets, facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(HERE / "data" / "cap2m-full.pcap"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.capture)
    if not path.exists():
        sys.exit(f"{path}: missing (python benchmarks/gen_capture.py makes benchmark captures)")
    once(path, True)  # compile / load the kernels, warm the page cache
    rows = {}
    for inspect in (False, True, False, True):
        rows.setdefault(inspect, []).append(once(path, inspect))
    for _ in range(args.runs - 2):
        for inspect in (False, True):
            rows[inspect].append(once(path, inspect))
    base = statistics.median(r[0] for r in rows[False])
    with_payload = statistics.median(r[0] for r in rows[True])
    packets = rows[False][0][1]
    print(f"# {path} ({path.stat().st_size / 1e9:.2f} GB, {packets:,} packets), "
          f"medians of {len(rows[False])} runs, one thread")  # fmt: skip
    print(f"decode + flow table               {base:7.3f} s  {packets / base / 1e6:6.2f} Mpps")
    print(f"decode + flow table + inspection  {with_payload:7.3f} s  "
          f"{packets / with_payload / 1e6:6.2f} Mpps  ({rows[True][0][2]:,} facts)")  # fmt: skip
    print(f"inspection costs {100 * (with_payload - base) / base:.1f}% of decode + flow time "
          "(budget: 30%)")  # fmt: skip


if __name__ == "__main__":
    main()
