#!/usr/bin/env python3
"""What each rule's check costs in a scan: CPU seconds per rule over one capture.

    python benchmarks/bench_rules.py [CAPTURE] [--runs 3] [--policy FILE]
    # default: benchmarks/data/cap20m.pcap (python benchmarks/gen_capture.py
    # benchmarks/data/cap20m.pcap --packets 20000000 --flows 1000000)

Counts the capture once (as ``scan`` does), then runs every declared rule's
check on the same context ``--runs`` times and prints the best CPU time of
each (process time: the machine is shared, wall time follows the load), the
sum, and the load average. The rules are the part of ``scan`` after counting
(issue 23, goal 4): which one to make faster first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.detect.context import ScanContext  # noqa: E402
from detector.detect.declare import TRAFFIC  # noqa: E402
from detector.detect.rules import DETECTIONS  # noqa: E402
from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import load_policy  # noqa: E402
from detector.policy.site import default_policy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", default=str(ROOT / "benchmarks/data/cap20m.pcap"))
    ap.add_argument("--runs", type=int, default=3, help="runs of each check (best kept)")
    ap.add_argument("--policy", help="site policy (default: the built-in defaults)")
    args = ap.parse_args()
    policy = load_policy(args.policy) if args.policy else default_policy()
    load = os.getloadavg()[0]
    t = time.process_time()
    result = scan_captures([args.capture], policy)
    print(f"{args.capture}: scan {time.process_time() - t:.2f} CPU s (first run compiles), "
          f"{len(result.alerts)} alerts")  # fmt: skip
    traffic = ScanContext(policy, result.traffic, 10, link=result.link)
    payload = ScanContext(policy, result.traffic, 10, facts=result.facts, names=result.names,
                          flows=result.flows)  # fmt: skip
    rows = []
    for detection in DETECTIONS:
        if detection.check is None:
            continue
        ctx = traffic if detection.stage == TRAFFIC else payload
        best = float("inf")
        for _ in range(args.runs):
            t = time.process_time()
            detection.run(ctx)  # the check with the site's settings, as a scan runs it
            best = min(best, time.process_time() - t)
        rows.append((best, detection.rule_id))
    print(f"{'rule':32s} {'CPU s':>7s}")
    for best, rule_id in sorted(rows, reverse=True):
        print(f"{rule_id:32s} {best:7.2f}")
    print(f"{'all rules':32s} {sum(b for b, _ in rows):7.2f}")
    print(f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
