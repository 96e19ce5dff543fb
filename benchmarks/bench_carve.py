#!/usr/bin/env python3
"""Carving against the flows command's rate, on one capture, in one process.

    python benchmarks/bench_carve.py [CAPTURE] [--runs 3]

Rows (medians of --runs, after one warm-up each): ``flows`` (count_flows, what
`egress-detector flows` does before writing; then the command's whole work,
counting and writing CSV), ``carve host`` (every flow of the
busiest internal source), ``carve community-id`` (the flow with most bytes),
``carve --bpf`` (count_flows of the packets passing 'tcp'). Each prints
seconds, input packets per second and how many packets were written; the
carved counts are checked against the flow table's own.
Default capture: benchmarks/data/cap2m.pcap (gen_capture.py, 2 M packets).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from detector.capture.bpf import FilteredPath  # noqa: E402
from detector.flows.export import export_flows  # noqa: E402
from detector.flows.table import count_flows  # noqa: E402
from detector.forensics.carve import Selection, carve  # noqa: E402


def timed(runs: int, work):  # type: ignore[no-untyped-def]
    work()  # warm-up: compile, page cache
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", default=str(HERE / "data" / "cap2m.pcap"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = args.capture
    if not Path(path).exists():
        print(f"{path}: missing; python benchmarks/gen_capture.py {path} --packets 2000000 "
              "--flows 100000 --snaplen 128", file=sys.stderr)  # fmt: skip
        return 2
    seconds, table = timed(args.runs, lambda: count_flows([path]))
    flows = table.to_frame()
    packets = int(table.packets)
    rows = [("flows (count)", seconds, len(flows))]
    with tempfile.TemporaryDirectory() as tmp:
        csv_out = str(Path(tmp) / "flows.csv")
        seconds, _ = timed(args.runs, lambda: export_flows([path], "csv", csv_out))
    rows.append(("flows command (count, write CSV)", seconds, len(flows)))
    busiest = flows["src_ip"].value_counts().index[0]
    biggest = flows.sort_values("bidirectional_bytes").iloc[-1]
    want_host = int(flows.loc[(flows.src_ip == busiest) | (flows.dst_ip == busiest),
                              "bidirectional_packets"].sum())  # fmt: skip
    want_flow = int(flows.loc[flows.community_id == biggest.community_id,
                              "bidirectional_packets"].sum())  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "carved.pcap")
        for name, selection, want in (
            (f"carve --host {busiest}", Selection(host=busiest), want_host),
            (f"carve --community-id {biggest.community_id}",
             Selection(community_id=biggest.community_id), want_flow),
        ):  # fmt: skip
            seconds, done = timed(args.runs, lambda s=selection: carve([path], s, out))
            assert done.packets == want, (name, done.packets, want)
            rows.append((name, seconds, done.packets))
    seconds, filtered = timed(args.runs, lambda: count_flows([FilteredPath(path, "tcp")]))
    rows.append(("flows --bpf tcp", seconds, len(filtered.to_frame())))
    print(f"{path}: {packets:,} IP packets")
    print(f"{'what':58} {'s':>7} {'M pkt/s':>8} {'out':>10}")
    for name, seconds, out_count in rows:
        print(f"{name:58} {seconds:7.3f} {packets / seconds / 1e6:8.2f} {out_count:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
