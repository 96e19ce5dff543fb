#!/usr/bin/env python3
"""How long the daily report takes next to the scan it reports on.

Scans a capture (e.g. one made by gen_capture.py) with a policy that makes the
internal 10.0.0.0/10 isolated, so that a quarter of the clients raise
isolated-egress alerts (a flood day: the worst case for the report's per-alert
parts), then times ``build_day_report`` and ``render_html`` and prints the
figures.

    python benchmarks/bench_report.py benchmarks/data/cap2m.pcap
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from detector.capture import CaptureStats  # noqa: E402
from detector.capture.reading import Reading  # noqa: E402
from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import parse_policy  # noqa: E402
from detector.report import CaptureFile, build_day_report, render_html  # noqa: E402

POLICY = """
[site]
name = "bench"
timezone = "UTC"

[networks]
internal = ["10.0.0.0/8", "fc00::/7"]
isolated = ["10.0.0.0/10"]
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", type=Path)
    args = ap.parse_args(argv)

    policy = parse_policy(POLICY)
    stats: list[CaptureStats] = []
    began = time.perf_counter()
    result = scan_captures([args.capture], policy, reading=Reading(stats_out=stats))
    scan_s = time.perf_counter() - began
    s = stats[0]
    first, last = int(s.first_ns or 0), int(s.last_ns or 0)
    day = dt.datetime.fromtimestamp(first // 10**9, dt.UTC).date()
    files = [CaptureFile(str(args.capture), args.capture.stat().st_size, first, last, s.packets)]

    began = time.perf_counter()
    report = build_day_report(result, policy, day=day, files=files, processing_seconds=scan_s)
    build_s = time.perf_counter() - began
    began = time.perf_counter()
    page = render_html(report)
    render_s = time.perf_counter() - began

    flows = len(result.flows.exported_rows())
    print(f"capture       {args.capture.name}: {s.packets:,} packets, {flows:,} flows, "
          f"{len(result.traffic.frame):,} host-minute rows")  # fmt: skip
    print(f"scan          {scan_s:8.2f} s  ({len(result.alerts):,} alerts)")
    print(f"build report  {build_s:8.2f} s")
    print(f"render HTML   {render_s:8.2f} s  ({len(page.encode()):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
