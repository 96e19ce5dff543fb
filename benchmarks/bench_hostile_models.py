#!/usr/bin/env python3
"""Every crafted model file of ``tests/gen_models.py`` through a fresh ``scan``
process: its exit status, its peak resident memory and what it printed.

    python benchmarks/bench_hostile_models.py [--keep DIR] [--cases a,b,...]

The bar (issue "Hostile input"): each is refused with exit 2 and one line that
names the file and the member, and the process stays under 600 MB while it
refuses. The tests (tests/test_model_files.py) check the same in forks of one
warm process; this runs each as an administrator would, one command each, so
the figures include the interpreter's start-up and imports. Prints one row per
file and the largest peak.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gen_models import CASES, write_all  # noqa: E402

SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
POLICY = ROOT / "captures" / "sample-policy.toml"
PEAK_MB = 600
# The command in a child of a small process, so ru_maxrss is the command's own.
MEASURE = """import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc, file=sys.stderr)
"""


def egress_detector() -> list[str]:
    script = Path(sys.executable).with_name("egress-detector")
    return [str(script)] if script.exists() else [sys.executable, "-m", "detector"]


def refuse(path: Path) -> tuple[int, float, float, list[str]]:
    """(exit status, peak MiB, seconds, stderr lines) of ``scan --model path``."""
    args = [*egress_detector(), "scan", "--policy", str(POLICY), "--model", str(path), str(SAMPLE)]
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)  # fmt: skip
    seconds = time.perf_counter() - started
    *lines, last = proc.stderr.splitlines()
    kib, rc = (int(v) for v in last.split())
    return rc, kib / 1024, seconds, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep", type=Path, help="write the model files here (default: a temporary directory)"
    )
    parser.add_argument("--cases", help="comma-separated case names (default: every one)")
    args = parser.parse_args(argv)
    wanted = args.cases.split(",") if args.cases else sorted(CASES)
    unknown = [c for c in wanted if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(sorted(CASES))}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        models = write_all(folder)
        print(f"{'case':20} {'bytes':>12} {'exit':>4} {'peak MiB':>9} {'s':>5}  first line")
        worst = 0.0
        failures = 0
        for case in wanted:
            path = models[case]
            rc, peak, seconds, lines = refuse(path)
            one_line = len(lines) == 1 and str(path) in lines[0] and CASES[case].member in lines[0]
            ok = rc == 2 and one_line and peak < PEAK_MB and "Traceback" not in "\n".join(lines)
            failures += not ok
            worst = max(worst, peak)
            shown = (lines[0] if lines else "").replace(str(path), "FILE")
            print(f"{case:20} {path.stat().st_size:>12,} {rc:>4} {peak:>9.0f} {seconds:>5.1f}  "
                  f"{'' if ok else 'FAILS THE BAR: '}{shown[:110]}")  # fmt: skip
    print(f"\n{len(wanted)} files, largest peak {worst:.0f} MiB (bar {PEAK_MB} MB); "
          f"{failures} not refused as the bar says; this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
