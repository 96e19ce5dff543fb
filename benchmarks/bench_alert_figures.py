#!/usr/bin/env python3
"""What filling payload-rule alerts' bytes costs (detector/detect/figures.py).

A synthetic day of per-minute host traffic (ROWS rows over HOSTS hosts and
PEERS outside addresses) and ALERTS payload alerts with no bytes; prints the
seconds `with_traffic_figures` takes, and the same with the first version's
per-alert scan of the whole frame, and checks both give the same figures.

    python benchmarks/bench_alert_figures.py [--rows 5000000] [--alerts 2000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from detector.alerts.record import Alert
from detector.detect.figures import with_traffic_figures
from detector.features.hosts import HostTraffic
from detector.networks import address_pair, address_text
from detector.units import MINUTE_NS


def per_alert_scan(alerts: list[Alert], traffic: HostTraffic) -> list[Alert]:
    """The first version: a mask over the whole frame for each alert."""
    frame = traffic.frame
    host_col, peer_col = frame["host_id"].to_numpy(), frame["peer_id"].to_numpy()
    minute = frame["minute_ns"].to_numpy()
    ids = {(int(h), int(lo)): i for i, (h, lo) in enumerate(zip(traffic.address_hi,
                                                                traffic.address_lo, strict=True))}  # fmt: skip
    out = []
    for a in alerts:
        host, peer = ids[address_pair(a.source_ip)], ids[address_pair(a.destination_ip or "")]
        first = a.start_ns - a.start_ns % MINUTE_NS
        rows = (host_col == host) & (peer_col == peer) & (minute >= first) & (minute <= a.end_ns)
        out.append(replace(a, source_bytes=int(frame["bytes_out"].to_numpy()[rows].sum()),
                           destination_bytes=int(frame["bytes_in"].to_numpy()[rows].sum()),
                           destination_packets=int(frame["packets_in"].to_numpy()[rows].sum())))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--alerts", type=int, default=2000)
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--peers", type=int, default=50_000)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    n_addr = args.hosts + args.peers
    lo = np.array([(0xFFFF << 32) | (0x0A000000 + i) if i < args.hosts
                   else (0xFFFF << 32) | (0xCB007100 + i) for i in range(n_addr)], np.uint64)  # fmt: skip
    hi = np.zeros(n_addr, np.uint64)
    day = 1_770_000_000 * 10**9
    frame = pd.DataFrame({
        "host_id": rng.integers(0, args.hosts, args.rows),
        "peer_id": rng.integers(args.hosts, n_addr, args.rows),
        "minute_ns": day + rng.integers(0, 1440, args.rows) * MINUTE_NS,
        "bytes_out": rng.integers(60, 100_000, args.rows),
        "bytes_in": rng.integers(60, 100_000, args.rows),
        "packets_in": rng.integers(1, 100, args.rows),
    })  # fmt: skip
    traffic = HostTraffic(frame, hi, lo, day, day + 1440 * MINUTE_NS)
    picked = frame.sample(args.alerts, random_state=1)
    alerts = [
        Alert("p2p", "P2P", 3, int(m), int(m) + 30 * MINUTE_NS,
              address_text(0, int(lo[h])), "x", destination_ip=address_text(0, int(lo[p])))
        for h, p, m in zip(picked["host_id"], picked["peer_id"], picked["minute_ns"], strict=True)
    ]  # fmt: skip
    started = time.perf_counter()
    grouped = with_traffic_figures(alerts, traffic)
    new_s = time.perf_counter() - started
    started = time.perf_counter()
    scanned = per_alert_scan(alerts, traffic)
    old_s = time.perf_counter() - started
    same = [(a.source_bytes, a.destination_bytes) for a in grouped] == [
        (a.source_bytes, a.destination_bytes) for a in scanned]  # fmt: skip
    print(f"{args.rows:,} rows, {args.alerts:,} alerts: by pair {new_s:.2f} s, "
          f"per-alert scan {old_s:.2f} s; same figures: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
