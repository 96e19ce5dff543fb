#!/usr/bin/env python3
"""Peak memory against capture length, for an ordinary capture and a flood.

    python benchmarks/bench_memory.py [--packets 500000,1000000,2000000,3000000,6000000]
        [--commands scan,flows,live] [--kinds ordinary,flood,names,cards] [--keep DIR]

For each length it writes four captures: an ordinary egress link
(``gen_capture.py``: 20 packets a flow on average), a spoofed-source SYN
flood (``gen_flood.py``: every packet a new flow and a new outside address)
and a flood of names (``gen_flood.py --kind dns``: every packet a DNS question
for a name never asked before, from four internal hosts) and a flood of forged
cards on the isolated segment (``--kind mac``: a new Ethernet source address
and a new port a frame, as macof sends), then runs each command in a fresh process and prints its peak resident memory
(``ru_maxrss`` of the child) and its time. The bound the detector must hold is
a curve that flattens: the same peak whatever the length once the tables are
full. Captures are made once per length in --keep (default: a temporary
directory, removed at the end).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POLICY = ROOT / "captures" / "sample-policy.toml"
# The floods, by gen_flood.py's --kind.
FLOODS = {"flood": "syn", "names": "dns", "cards": "mac"}


def _make(kind: str, packets: int, directory: Path) -> Path:
    path = directory / f"{kind}-{packets}.pcap"
    if path.exists():
        return path
    if kind in FLOODS:
        cmd = [sys.executable, str(HERE / "gen_flood.py"), str(path), "--packets", str(packets),
               "--kind", FLOODS[kind]]  # fmt: skip
    else:
        flows = max(packets // 20, 1)
        cmd = [sys.executable, str(HERE / "gen_capture.py"), str(path), "--packets", str(packets),
               "--flows", str(flows), "--snaplen", "128"]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def _run(command: str, capture: Path, directory: Path) -> tuple[float, float, int]:
    """(peak MiB, seconds, exit code) of one command in a fresh process."""
    args = [sys.executable, "-m", "detector", command, "-q"]
    if command == "scan":
        args += ["--policy", str(POLICY), str(capture), "-o", str(directory / "alerts.jsonl")]
    elif command == "live":  # the live engine replaying the capture as a stream
        args += ["--policy", str(POLICY), "-r", str(capture), "-o", str(directory / "live.jsonl")]
    else:
        args += [str(capture), "-o", str(directory / "flows.parquet")]
    # Each run in its own child of a fresh helper, so ru_maxrss is this run's alone.
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode\n"
        "s = time.perf_counter() - t\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, s, rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    peak, seconds, rc = out.stdout.split()
    return float(peak), float(seconds), int(rc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", default="500000,1000000,2000000,3000000,6000000")
    parser.add_argument("--commands", default="scan,flows,live")
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--kinds", default="ordinary,flood,names,cards",
                        help="captures: ordinary, flood (spoofed SYNs), names (DNS questions for "
                        "new names, gen_flood.py --kind dns), cards (forged cards on the isolated "
                        "segment, --kind mac)")  # fmt: skip
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.packets.split(",")]
    commands = args.commands.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        print(
            f"{'capture':>8} {'packets':>10} "
            + " ".join(f"{c + ' MiB':>10} {c + ' s':>8}" for c in commands)
        )
        for kind in args.kinds.split(","):
            for packets in lengths:
                capture = _make(kind, packets, directory)
                cells = []
                for command in commands:
                    peak, seconds, rc = _run(command, capture, directory)
                    mark = "" if rc in (0, 1) else f" (exit {rc})"
                    cells.append(f"{peak:>10.0f} {seconds:>8.1f}{mark}")
                print(f"{kind:>8} {packets:>10,} " + " ".join(cells), flush=True)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, peak resident memory of each command's process")
    print(
        f"(ru_maxrss); this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
