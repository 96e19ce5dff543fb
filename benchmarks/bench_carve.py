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

``--state``: the capture made a day (times stretched 24-fold) in 24 hourly
pcap files under $TMPDIR, taken in by a nightly state (the take-in timed with
and without carve's index); then the busiest host's flows in ten minutes at
noon carved through the state, reading the whole files within an hour (as
before the index) and reading the index's byte ranges: seconds, bytes read,
packets written (the same both ways).
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
    parser.add_argument("--state", action="store_true", help="the nightly-state rows only")
    args = parser.parse_args()
    path = args.capture
    if not Path(path).exists():
        print(f"{path}: missing; python benchmarks/gen_capture.py {path} --packets 2000000 "
              "--flows 100000 --snaplen 128", file=sys.stderr)  # fmt: skip
        return 2
    if args.state:
        return state_rows(path, args.runs)
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


def state_rows(path: str, runs: int) -> int:
    import os
    import struct

    import numpy as np

    from detector.capture import read_packets
    from detector.forensics import carve as carve_module
    from detector.nightly import discover
    from detector.nightly.state import NightlyState

    data = np.memmap(path, dtype=np.uint8, mode="r")
    offsets, stamps = [], []
    for batch in read_packets([path]):
        offsets.append(batch.offset.copy())
        stamps.append(batch.ts_ns.copy())
    offset, ts = np.concatenate(offsets), np.concatenate(stamps)
    t0 = int(ts.min())
    day_ts = t0 + (ts - t0) * 24  # the hour becomes a day
    hour = ((day_ts - t0) // (3600 * 10**9)).clip(0, 23)
    ends = np.append(offset[1:], len(data))
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for h in range(24):
            rows = np.flatnonzero(hour == h)
            name = os.path.join(tmp, f"hour{h:02}.pcap")
            with open(name, "wb") as out:
                out.write(data[:24].tobytes())
                for i in rows.tolist():
                    record = bytearray(data[offset[i] : ends[i]].tobytes())
                    seconds, micros = divmod(int(day_ts[i]) // 1000, 1_000_000)
                    struct.pack_into("<II", record, 0, seconds, micros)
                    out.write(record)
            files.append(name)
        size = sum(os.path.getsize(f) for f in files)
        take_in = {}
        real_add = discover._BlockIndex.add
        for label, add in (("without index", lambda self, o, t: None), ("with index", real_add)):
            discover._BlockIndex.add = add  # type: ignore[method-assign]
            started = time.perf_counter()
            found = [discover.fingerprint(f) for f in files]
            take_in[label] = time.perf_counter() - started
        state_path = os.path.join(tmp, "nightly.db")
        state = NightlyState(state_path)
        for f in found:
            state.take_file(f, 0)
        state.close()
        noon = t0 + 12 * 3600 * 10**9
        near = (day_ts >= noon) & (day_ts < noon + 600 * 10**9)
        frame = count_flows([files[12]]).to_frame()
        busiest = frame["src_ip"].value_counts().index[0]
        selection = carve_module.Selection(host=busiest, start_ns=noon, end_ns=noon + 600 * 10**9)
        # What the nightly records for an alert of that host in those ten minutes.
        import datetime as dt

        def iso(ns: int) -> str:
            return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")

        doc = {"event": {"id": "noon", "start": iso(noon), "end": iso(noon + 600 * 10**9)},
               "source": {"ip": busiest}}  # fmt: skip
        day_table = count_flows(files[10:15])
        state = NightlyState(state_path)
        state.record_alert_spans(carve_module.alert_flow_spans([doc], day_table))
        span = state.alert_span("noon")
        state.close()
        out = os.path.join(tmp, "carved.pcap")
        read = {"n": 0}
        real_open = carve_module.open_capture

        class Counting:
            """The ranges' file, counting the bytes read."""

            def __init__(self, name: str, mode: str) -> None:
                self._f = real_open(name, mode)

            def __getattr__(self, attr: str):  # type: ignore[no-untyped-def]
                return getattr(self._f, attr)

            def read(self, n: int = -1) -> bytes:
                got = self._f.read(n)
                read["n"] += len(got)
                return got  # type: ignore[no-any-return]

            def readinto(self, view) -> int:  # type: ignore[no-untyped-def]
                got = self._f.readinto(view)
                read["n"] += got
                return got  # type: ignore[no-any-return]

            def __enter__(self):  # type: ignore[no-untyped-def]
                return self

            def __exit__(self, *exc: object) -> None:
                self._f.close()

        carve_module.open_capture = Counting  # type: ignore[assignment]
        table = []
        for label, parts in (
            ("whole files within an hour", carve_module.files_from_state(state_path, selection)),
            ("the index's byte ranges, an hour either side",
             carve_module.parts_from_state(state_path, selection)),
            ("the index's byte ranges, the alert's flows",
             carve_module.parts_from_state(state_path, selection, event_id="noon")),
        ):  # fmt: skip
            whole = sum(os.path.getsize(p) for p in parts if isinstance(p, str))
            read["n"] = 0
            seconds, done = timed(runs, lambda p=parts: carve_module.carve(p, selection, out))
            table.append((label, seconds, whole + read["n"] // (runs + 1), done.packets))
            counts[label] = done.packets
    print(
        f"{path} as a day in 24 files: {size:,} bytes; {int(near.sum()):,} packets in "
        f"the ten minutes at noon; host {busiest}"
    )
    for label, seconds in take_in.items():
        print(f"take-in (fingerprint) of the 24 files, {label:14} {seconds:7.3f} s")
    if span is not None:
        print(
            f"the alert's flows: {(span[1] - span[0]) / 1e9:.0f} s from "
            f"{(span[0] - noon) / 1e9:+.0f} s of noon"
        )
    print(f"{'carve --state: the host, noon + 10 min':46} {'s':>7} {'bytes read':>13} {'out':>8}")
    for label, seconds, nbytes, written in table:
        print(f"{label:46} {seconds:7.3f} {nbytes:13,} {written:8,}")
    assert len(set(counts.values())) == 1, counts
    return 0


if __name__ == "__main__":
    sys.exit(main())
