#!/usr/bin/env python3
"""Live capture speed: replay a capture at top speed into a veth and count what
each capturer took and what the kernel dropped (and, for ours, its peak memory:
a spoofed-source flood from ``gen_flood.py`` shows the live sensor's bound).

A namespace ``ed-bench`` holds a veth pair; ``tcpreplay --topspeed`` sends the
capture out of ``rp0`` and the capturer listens on ``rp1``. For each capturer
we report tcpreplay's own rate (what was offered), the packets the capturer
processed, the kernel's drop count, and packets/s processed = processed
packets / replay seconds (the capturer keeps up in real time when nothing is
dropped; its ceiling is then above the offered rate). For ours, also the CPU
time the detector used while the replay ran (all its threads): packets per
CPU-second is what one core would sustain doing nothing else.

* ``ours-1``, ``ours-2``: ``egress-detector live -i rp1 --workers 1|2`` (ring,
  flow and activity tables, rules at the end); packets and drops from its
  summary line (``PACKET_STATISTICS``);
* ``nfstream``: nfstream's live mode on the same interface (libpcap, one
  meter by default); processed = its own ``packets_processed`` +
  ``packets_ignored`` (from ``performance_report``), dropped = offered -
  processed (its kernel drop counter is kept in the JSON as ``kernel_dropped``).

Needs root, ``ip netns``, tcpreplay (and nfstream for its row). Run:

    python benchmarks/bench_live.py benchmarks/data/cap2m.pcap --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

NS = "ed-bench"
ROOT = Path(__file__).resolve().parents[1]

NFSTREAM_CHILD = """
import sys
from nfstream import NFStreamer
# performance_report=1: nfstream prints its packet and kernel drop counters
# every second as JSON on stdout; the flows themselves are not needed here.
streamer = NFStreamer(source=sys.argv[1], promiscuous_mode=True, idle_timeout=120,
                      active_timeout=1800, n_meters=int(sys.argv[2]), performance_report=1)
print("ready", file=sys.stderr, flush=True)
for flow in streamer:
    pass
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def setup() -> None:
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    sh("ip", "-n", NS, "link", "add", "rp0", "type", "veth", "peer", "name", "rp1")
    for dev in ("lo", "rp0", "rp1"):
        sh("ip", "-n", NS, "link", "set", dev, "up")
    sh("ip", "-n", NS, "link", "set", "rp0", "mtu", "9000")
    sh("ip", "-n", NS, "link", "set", "rp1", "mtu", "9000")


def teardown() -> None:
    sh("ip", "netns", "del", NS, check=False)


def replay(capture: Path) -> dict[str, float]:
    proc = sh("ip", "netns", "exec", NS, "tcpreplay", "--topspeed", "-i", "rp0", str(capture),
              check=False)  # fmt: skip
    text = proc.stdout + proc.stderr
    sent = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", text)
    rated = re.search(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps, ([\d.]+) pps", text)
    failed = re.search(r"Failed packets:\s+(\d+)", text)
    if not sent or not rated:
        raise SystemExit(f"tcpreplay said:\n{text}")
    return {
        "sent": int(sent.group(1)),
        "seconds": float(sent.group(3)),
        "pps": float(rated.group(2)),
        "mbps": float(rated.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
    }


def _wait_line(proc: subprocess.Popen[str], text: str, timeout: float = 300) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            raise SystemExit(f"capturer exited before it was ready (code {proc.returncode})")
    raise SystemExit(f"capturer not ready after {timeout} s")


def run_ours(capture: Path, workers: int, extra: list[str]) -> dict[str, float]:
    live = subprocess.Popen(
        ["ip", "netns", "exec", NS, sys.executable, "-m", "detector", "live", "-i", "rp1",
         "--workers", str(workers), "--report-every", "3600", "--format", "jsonl", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    _wait_line(live, "capturing on")
    peak = _PeakMemory(live.pid)
    time.sleep(0.5)
    cpu_before = _cpu_seconds(live.pid)
    rep = replay(capture)
    time.sleep(2.0)  # the last blocks retire after 50 ms; the status read every 2 s
    cpu = _cpu_seconds(live.pid) - cpu_before
    stopping = time.monotonic()
    live.send_signal(signal.SIGINT)
    _out, err = live.communicate(timeout=600)
    shutdown = time.monotonic() - stopping
    peak.stop()
    summary = re.search(r"([\d,]+) packets in .*kernel: ([\d,]+) received, ([\d,]+) dropped", err)
    if not summary:
        raise SystemExit(f"no summary from egress-detector live:\n{err}")
    processed, received, dropped = (int(g.replace(",", "")) for g in summary.groups())
    return {
        **_rates(rep, processed),
        "kernel_received": received,
        "dropped": dropped,
        "cpu_seconds": cpu,
        "cpu_capacity_pps": processed / cpu if cpu > 0 else 0.0,
        "shutdown_seconds": shutdown,
        "peak_rss_mib": peak.mib,
    }


class _PeakMemory:
    """The sensor's peak resident memory (VmHWM, which the kernel keeps), read
    every 0.1 s until it exits: the last reading is the peak up to its last
    0.1 s, the end-of-capture analysis included."""

    def __init__(self, pid: int) -> None:
        self.mib = 0.0
        self._status = Path(f"/proc/{pid}/status")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._done.wait(0.1):
            try:
                text = self._status.read_text()
            except OSError:
                return
            found = re.search(r"VmHWM:\s+(\d+) kB", text)
            if found:
                self.mib = max(self.mib, int(found.group(1)) / 1024)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (``ip netns exec`` execs
    the command, so the pid is the detector's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_nfstream(capture: Path, meters: int) -> dict[str, float]:
    child = subprocess.Popen(
        ["ip", "netns", "exec", NS, sys.executable, "-c", NFSTREAM_CHILD, "rp1", str(meters)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    _wait_line(child, "ready")
    time.sleep(10.0)  # nfstream starts its meter processes some seconds after the streamer
    latest: list[dict[str, int]] = [{}]

    def follow() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("{"):
                latest[0] = json.loads(line)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    rep = replay(capture)
    # Its counters come once a second: wait until they have not moved for 4 s.
    seen: dict[str, int] = {}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 4.0:
        time.sleep(0.5)
        if latest[0] != seen:
            seen, quiet_since = latest[0], time.monotonic()
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    counted = seen.get("packets_processed", 0) + seen.get("packets_ignored", 0)
    return {
        **_rates(rep, counted),
        "kernel_dropped": seen.get("packets_dropped_filtered_by_kernel", 0),
        "dropped": max(rep["sent"] - counted, 0),
    }


def _rates(rep: dict[str, float], processed: int) -> dict[str, float]:
    return {
        "offered_pps": rep["pps"],
        "replay_seconds": rep["seconds"],
        "sent": rep["sent"],
        "processed": processed,
        "processed_pps": processed / rep["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", default="ours-1,ours-2,nfstream")
    parser.add_argument("--nfstream-meters", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args()
    setup()
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for row in args.rows.split(","):
            for _ in range(args.runs):
                if row.startswith("ours-"):
                    run = run_ours(args.capture, int(row.split("-")[1]), [])
                elif row == "nfstream":
                    run = run_nfstream(args.capture, args.nfstream_meters)
                else:
                    raise SystemExit(f"unknown row {row}")
                results.setdefault(row, []).append(run)
                print(row, json.dumps(run), file=sys.stderr, flush=True)
    finally:
        teardown()
    print(f"\n{args.capture.name}: medians of {args.runs} run(s)\n")
    print("| capturer | tcpreplay offered (pps) | processed | dropped | drop rate "
          "| processed packets/s | packets per CPU-second | peak memory MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row, runs in results.items():

        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        sent = med("sent")
        capacity = f"{med('cpu_capacity_pps'):,.0f}" if "cpu_capacity_pps" in runs[0] else "–"
        memory = f"{med('peak_rss_mib'):,.0f}" if "peak_rss_mib" in runs[0] else "–"
        print(f"| {row} | {med('offered_pps'):,.0f} | {med('processed'):,.0f} | "
              f"{med('dropped'):,.0f} | {med('dropped') / sent:.2%} | "
              f"{med('processed_pps'):,.0f} | {capacity} | {memory} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
