#!/usr/bin/env python3
"""Regenerate the golden alert files, on purpose only.

    python tests/golden/make_golden.py

Run it after a deliberate change to what the rules find or how alerts are
worded, then read the diff (`git diff tests/golden`) before committing: every
changed line is a change an administrator or a SIEM will see.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent

# capture, policy, golden file
CASES = [
    (
        ROOT / "captures" / "sample-incident.pcap.gz",
        ROOT / "captures" / "sample-policy.toml",
        GOLDEN / "sample-incident.alerts.jsonl",
    ),
]


def command(capture: Path, policy: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "detector", "scan", "-q", "--policy", str(policy),
            "--format", "jsonl", "-o", str(out), str(capture)]  # fmt: skip


def main() -> None:
    for capture, policy, out in CASES:
        proc = subprocess.run(command(capture, policy, out), capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            sys.exit(f"{capture.name}: scan failed ({proc.returncode}): {proc.stderr.strip()}")
        print(f"{out.relative_to(ROOT)}: {len(out.read_text().splitlines())} alert(s)")


if __name__ == "__main__":
    main()
