#!/usr/bin/env python3
"""Counting at the flow cap against counting below it, on a spoofed flood.

    python benchmarks/bench_evict.py [FLOOD.pcap] [--packets 3000000] [--rounds 5]
        [--max-flows 1000000] [--spill]

Every packet of the flood (``gen_flood.py``; made in a temporary directory when
no capture is given) is a new flow, so once ``--max-flows`` flows are open each
new one waits for an eviction. The capture is decoded once into batches kept in
memory; each round then counts them into a fresh table (no file reading) and
times the packets before the table first reached its cap and those after:
``at cap / below`` is the time per packet after over the time per packet
before (closed flows kept in memory; ``--spill``: beyond the table's budget
written to disk, as in the commands), by the wall clock and by the counting
thread's CPU clock (on a shared machine the CPU clock leaves out the time other
processes held the core, and the time spent waiting for the spill file's own
thread). Rounds alternate with a table whose cap
is never reached (the same packets, every flow kept open: ``uncapped``), so a
machine that slows down slows both alike; ``at cap / the same packets never
evicting`` is the time of the packets after the cap over the time of those
same packets counted into that table: what evicting costs over counting them
without it (the filling phase of ``at cap / below`` runs on a table that is
still small, so more of it sits in the caches). Medians are printed, and the
time spent in eviction (``evict_cut`` and ``evict_oldest``) with its number of
calls.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from detector._kernels import flowtable as fk  # noqa: E402
from detector.capture import PacketBatch, read_packets  # noqa: E402
from detector.flows import table as flow_table  # noqa: E402


class _Timed:
    """Wraps the eviction kernels as the table calls them, adding up their time."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.cut = getattr(fk, "evict_cut", None)  # None: the code before 2026-12-06
        self.oldest = fk.evict_oldest

    def evict_cut(self, *args: object) -> int:
        started = time.perf_counter()
        try:
            return self.cut(*args)  # type: ignore[no-any-return,misc]
        finally:
            self.seconds += time.perf_counter() - started

    def evict_oldest(self, *args: object) -> object:
        started = time.perf_counter()
        try:
            return self.oldest(*args)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def _batches(path: Path) -> list[PacketBatch]:
    return list(read_packets([path]))  # fresh arrays per batch (reuse_batch off)


def _count(
    batches: list[PacketBatch],
    max_flows: int,
    clock: Callable[[], float],
    spill: bool,
    split: int | None = None,
) -> tuple[float, float, int, int, int]:
    """(seconds before the cap, seconds after, packets before, packets after,
    flows evicted) of counting ``batches`` into a fresh table, by ``clock``;
    with ``split``, "the cap" is the batch at which ``split`` packets were
    counted (to time a table that never fills over the same packets)."""
    options: dict[str, object] = {} if spill else {"spill_rows": None}
    if "spill_rows" not in inspect.signature(flow_table.FlowTable).parameters:
        options = {}  # the code before 2026-12-06 kept every closed flow in memory
    table = flow_table.FlowTable(max_flows=max_flows, **options)
    started = clock()
    full_at = None
    packets_before = 0
    for batch in batches:
        table.ingest(batch)
        if full_at is None:
            packets_before += len(batch)
            if split is not None:
                if packets_before >= split:
                    full_at = clock()
            elif table.live_flows >= max_flows or table.evicted_flows:
                full_at = clock()
    ended = clock()
    total = sum(len(b) for b in batches)
    if full_at is None:
        full_at = ended
    getattr(table, "close", lambda: None)()  # no spill file before 2026-12-06
    return (
        full_at - started,
        ended - full_at,
        packets_before,
        total - packets_before,
        table.evicted_flows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", nargs="?", type=Path)
    parser.add_argument("--packets", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-flows", type=int, default=flow_table.DEFAULT_MAX_FLOWS)
    parser.add_argument("--spill", action="store_true",
                        help="closed flows beyond the table's budget go to disk, as they do in "
                        "the commands (default: all kept in memory, to time eviction alone)")  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.capture
        if path is None:
            path = Path(tmp) / "flood.pcap"
            subprocess.run([sys.executable, str(HERE / "gen_flood.py"), str(path),
                            "--packets", str(args.packets)], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
        batches = _batches(path)
    timed = _Timed()
    if timed.cut is not None:
        flow_table.fk.evict_cut = timed.evict_cut  # type: ignore[assignment]
    flow_table.fk.evict_oldest = timed.evict_oldest  # type: ignore[assignment]
    flow_table.FlowTable.warm_up()
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    same: dict[str, list[float]] = {"wall": [], "cpu": []}
    capped, uncapped, evict = [], [], []
    calls = evicted = 0
    for _ in range(args.rounds):
        for name, clock in (("wall", time.perf_counter), ("cpu", time.thread_time)):
            timed.seconds, timed.calls = 0.0, 0
            before, after, n_before, n_after, evicted = _count(
                batches, args.max_flows, clock, args.spill
            )
            if name == "wall":
                calls = timed.calls
                evict.append(timed.seconds)
                capped.append(before + after)
            if n_after:
                ratios[name].append((after / n_after) / (before / n_before))
            # The same packets into a table that never fills: what counting
            # them costs without any eviction.
            whole, rest, n_whole, _, _ = _count(batches, 1 << 30, clock, args.spill, n_before)
            if name == "wall":
                uncapped.append(whole + rest)
            if n_after and n_whole == n_before:
                same[name].append(after / rest)
    packets = sum(len(b) for b in batches)
    print(f"{packets:,} packets, max_flows {args.max_flows:,}: {evicted:,} flows evicted "
          f"in {calls} calls; closed flows {'spilled to disk' if args.spill else 'in memory'}")  # fmt: skip
    print(f"capped   {statistics.median(capped):.2f} s (eviction "
          f"{statistics.median(evict):.2f} s)")  # fmt: skip
    print(f"uncapped {statistics.median(uncapped):.2f} s")
    for name, values in ratios.items():
        if values:
            print(f"at cap / below, time per packet ({name} clock): "
                  f"{statistics.median(values):.2f} "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in values)})")  # fmt: skip
    for name, values in same.items():
        if values:
            print(f"at cap / the same packets never evicting ({name} clock): "
                  f"{statistics.median(values):.2f} "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in values)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
