"""Throughput of `egress-detector nightly` on a day of hourly rotated captures.

Generates (once) a day-long capture with gen_capture.py (default 20 M packets,
1 M flows, 2.4 GB headers-only, spread over 24 hours), splits it into 24 hourly
files as `tcpdump -G 3600` writes them, and times one nightly run over the
directory from a fresh state: wall time, the run's CPU seconds (user + system
of the child process) and its peak RSS. Prints GB/hour and the projection for
a busy site's 50 GB a day. The machine may be shared: CPU seconds say what
the run itself cost.

    python benchmarks/bench_nightly.py                     # 20 M packets, 24 files
    python benchmarks/bench_nightly.py --packets 2000000   # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
DAY_SECONDS = 86_400
PCAP_HEADER = 24

POLICY = """
[site]
name = "benchmark-site"
timezone = "UTC"

[networks]
internal = ["10.0.0.0/8", "fd00::/8"]
"""


@njit(cache=False)
def _hour_starts(buf: np.ndarray, t0_s: int, hours: int) -> np.ndarray:
    """Byte offset of the first record of each hour (little-endian pcap)."""
    starts = np.full(hours + 1, len(buf), dtype=np.int64)
    pos = PCAP_HEADER
    current = -1
    n = len(buf)
    while pos + 16 <= n:
        sec = (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
               | (np.int64(buf[pos + 2]) << 16) | (np.int64(buf[pos + 3]) << 24))  # fmt: skip
        cap = (np.int64(buf[pos + 8]) | (np.int64(buf[pos + 9]) << 8)
               | (np.int64(buf[pos + 10]) << 16) | (np.int64(buf[pos + 11]) << 24))  # fmt: skip
        hour = min((sec - t0_s) // 3600, hours - 1)
        while current < hour:
            current += 1
            starts[current] = pos
        pos += 16 + cap
    while current < hours - 1:
        current += 1
        starts[current] = pos
    starts[hours] = pos
    return starts


def split_hourly(capture: Path, folder: Path, hours: int = 24) -> list[Path]:
    """Hourly files (by packet time) as a rotating tcpdump writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = np.memmap(capture, dtype=np.uint8, mode="r")
    header = bytes(raw[:PCAP_HEADER])
    first_sec = int(np.frombuffer(bytes(raw[24:28]), dtype="<u4")[0])
    t0 = first_sec - first_sec % DAY_SECONDS
    starts = _hour_starts(raw, t0, hours)
    paths = []
    for h in range(hours):
        stamp = dt.datetime.fromtimestamp(t0 + 3600 * h, tz=dt.UTC).strftime("%Y%m%d-%H%M")
        path = folder / f"{stamp}.pcap"
        with open(path, "wb") as out:
            out.write(header)
            out.write(memoryview(raw[starts[h] : starts[h + 1]]))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=20_000_000)
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the hourly files and outputs")
    args = ap.parse_args(argv)

    capture = DATA / f"cap{args.packets // 1_000_000}m-day.pcap"
    generated = not capture.exists()
    if generated:
        subprocess.run([sys.executable, str(HERE / "gen_capture.py"), str(capture),
                        "--packets", str(args.packets), "--flows", str(args.flows),
                        "--span", str(DAY_SECONDS)], check=True)  # fmt: skip
    work = DATA / "nightly-bench"
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "captures"
    started = time.perf_counter()
    files = split_hourly(capture, folder)
    print(f"split {capture.name} into {len(files)} hourly files in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
    total = sum(p.stat().st_size for p in files)
    (work / "policy.toml").write_text(POLICY)
    # Warm the page cache and the kernels' cache as a nightly at 01:30 would find them
    # (the files were just written); a cold disk adds its read time.
    command = [sys.executable, "-m", "detector", "nightly", "--captures", str(folder),
               "--policy", str(work / "policy.toml"), "--state", str(work / "state.db"),
               "--report-dir", str(work / "reports"), "--jsonl", str(work / "alerts.jsonl"),
               "--settle", "0"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stderr.write(proc.stderr)
    if proc.returncode not in (0, 1):
        print(f"nightly failed with exit code {proc.returncode}", file=sys.stderr)
        return 1
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of children is the largest of any child so far: the generator's
    # if it ran in this process.
    peak = (
        "n/a (the generator ran first: run again)"
        if generated
        else (f"{after.ru_maxrss / 1024:,.0f} MiB")
    )
    gb = total / 1e9
    per_hour = gb / (wall / 3600)
    per_cpu_hour = gb / (cpu / 3600)
    print(f"{len(files)} files, {gb:.2f} GB, {args.packets:,} packets: "
          f"{wall:.1f} s wall, {cpu:.1f} CPU s, peak RSS {peak}")  # fmt: skip
    print(f"throughput: {per_hour:,.0f} GB/hour wall-clock, {per_cpu_hour:,.0f} GB per CPU-hour")
    print(f"50 GB/day at this rate: {50 / per_hour * 60:.0f} min wall-clock "
          f"({50 / per_cpu_hour * 60:.0f} CPU-minutes)")  # fmt: skip
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
