#!/usr/bin/env python3
"""Render the daily report of the bundled demo capture, and its screenshot.

Scans ``captures/sample-incident.pcap.gz`` with ``captures/sample-policy.toml``
(the night of bulletin No. 3 at the mission, Wednesday 2026-02-04, Asia/Taipei)
and writes the day's report as ``egress-detector nightly`` does: one
self-contained HTML file. With ``--screenshot``, headless Chromium (Debian's
``chromium``) takes a PNG of the top of the page: docs/report.png in README.

    python captures/make_sample_report.py                       # docs/report-sample.html
    python captures/make_sample_report.py --screenshot docs/report.png

The hosts of the site's inventory (captures/README.md) count as known, so "first
seen today" lists only a host outside it. Processing time is measured, so two
runs differ in that figure only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # render with this tree's code

from detector.capture import CaptureStats  # noqa: E402
from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import load_policy  # noqa: E402
from detector.report import CaptureFile, build_day_report, write_report  # noqa: E402

CAPTURE = HERE / "sample-incident.pcap.gz"
POLICY = HERE / "sample-policy.toml"
DAY = dt.date(2026, 2, 4)
# The mission's computers (captures/README.md, "The site").
INVENTORY = ["10.8.0.1", "10.8.10.44", "10.8.40.5", "10.8.40.31", "10.8.40.32"] + [
    f"10.8.10.{n}" for n in range(11, 22)
]


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit(
            "make_sample_report: no chromium on PATH (Debian: apt-get install chromium)"
        )
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}",
                page.resolve().as_uri(),
            ],  # fmt: skip
            check=True,
            capture_output=True,
            timeout=120,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "report-sample.html")
    ap.add_argument("--screenshot", type=Path, help="also write a PNG of the page's top")
    ap.add_argument("--size", default="1000x1500", help="screenshot WIDTHxHEIGHT (1000x1500)")
    args = ap.parse_args(argv)

    policy = load_policy(POLICY)
    stats: list[CaptureStats] = []
    began = time.perf_counter()
    result = scan_captures([CAPTURE], policy, stats_out=stats)
    seconds = time.perf_counter() - began
    files = [
        CaptureFile(
            path=Path(s.path).name,
            bytes=Path(s.path).stat().st_size,
            first_ns=int(s.first_ns or 0),
            last_ns=int(s.last_ns or 0),
            packets=int(s.packets),
        )
        for s in stats
    ]
    report = build_day_report(result, policy, day=DAY, files=files, processing_seconds=seconds,
                              known_hosts=INVENTORY, sensor="mirror port")  # fmt: skip
    write_report(report, args.output)
    counts = ", ".join(f"{n} {name}" for name, n in report.severity_counts) or "none"
    print(f"{args.output}: {len(report.alerts)} alerts ({counts}), scan {seconds:.2f} s")
    if args.screenshot:
        width, height = (int(v) for v in args.size.lower().split("x"))
        screenshot(args.output, args.screenshot, width, height)
        print(f"{args.screenshot}: {args.screenshot.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
