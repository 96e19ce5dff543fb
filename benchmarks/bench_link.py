"""What the link-layer pass of isolated segments costs a scan (issue 20, item 9).

    python benchmarks/bench_link.py [CAPTURE] [--rounds 7] [--isolated 10.8.40.0/24 ...]
    python benchmarks/bench_link.py --scan [CAPTURE] ...

A scan reads its captures into batches with the payload inspector; with
isolated networks in the policy it also runs the link inspector
(``detector/flows/link.py``) over each batch. This times, in one process and
interleaved rounds (alternating the order, medians compared, as
ab_kernels.py does), reading the capture

* ``payload``: with the payload inspector only (a scan without isolated networks);
* ``payload+link``: with both (a scan with them), for each ``--isolated`` set.

``--scan`` times the whole scan instead (``scan_captures``: flows, per-minute
activity, payload, rules) with a policy whose isolated networks are each
``--isolated`` set (default: the /24 only), with the link pass and without it
(the link inspector replaced by nothing), so the rules' own work on isolated
hosts is the same on both sides.

The default sets: one /24 (a few isolated hosts: the usual case) and 10.0.0.0/8
(every client of the generated capture isolated: every IPv4 packet is about an
isolated segment, the worst case). The IP decoder and flow table are the same
code either way (the link pass is a separate kernel over the decoded batch).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from detector.capture import read_packets
from detector.capture.reading import Reading
from detector.flows.link import Inspectors, LinkInspector
from detector.flows.payload import PayloadInspector
from detector.networks import NetworkSet

DATA = Path(__file__).resolve().parent / "data"


def run(capture: Path, isolated: NetworkSet | None) -> tuple[float, int]:
    payload = PayloadInspector()
    link = LinkInspector(isolated) if isolated is not None else None
    inspector = Inspectors(payload, link) if link is not None else payload
    packets = 0
    start = time.perf_counter()
    for batch in read_packets([capture], inspector=inspector, reuse_batch=True):
        packets += len(batch)
    elapsed = time.perf_counter() - start
    facts = len(link.frame()) if link is not None else 0
    return elapsed, facts if link is not None else packets


def scan(capture: Path, isolated: NetworkSet, link_pass: bool) -> tuple[float, int]:
    import detector.pipelines.scan as scanning
    from detector.policy import parse_policy

    nets = ", ".join(f'"{n}"' for n in isolated.networks)
    policy = parse_policy(
        f'[site]\ntimezone = "UTC"\n[networks]\ninternal = ["10.0.0.0/8"]\nisolated = [{nets}]\n',
        "bench.toml",
    )
    scanning.LinkInspector = LinkInspector if link_pass else (lambda _networks: None)  # type: ignore[assignment]
    stats: list = []
    start = time.perf_counter()
    result = scanning.scan_captures([capture], policy, reading=Reading(stats_out=stats))
    elapsed = time.perf_counter() - start
    scanning.LinkInspector = LinkInspector
    return elapsed, sum(s.packets for s in stats) if result.link is None else len(result.link)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", default=str(DATA / "cap2m.pcap"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--isolated", nargs="*")
    parser.add_argument("--scan", action="store_true", help="time whole scans")
    args = parser.parse_args()
    capture = Path(args.capture)
    if args.scan:
        scan_main(capture, args.rounds, args.isolated or ["10.8.40.0/24"])
        return
    variants: dict[str, NetworkSet | None] = {"payload": None}
    for net in args.isolated or ["10.8.40.0/24", "10.0.0.0/8"]:
        variants[f"payload+link {net}"] = NetworkSet([net])
    for isolated in variants.values():  # compile and warm the page cache
        run(capture, isolated)
    times: dict[str, list[float]] = {name: [] for name in variants}
    counts: dict[str, int] = {}
    names = list(variants)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            elapsed, count = run(capture, variants[name])
            times[name].append(elapsed)
            counts[name] = count
    base = statistics.median(times["payload"])
    packets = counts["payload"]
    print(f"{capture.name}: {packets:,} packets, {args.rounds} interleaved rounds, medians")
    for name in names:
        median = statistics.median(times[name])
        extra = f", {counts[name]:,} link facts" if name != "payload" else ""
        print(
            f"  {name:28} {median:7.3f} s  {packets / median / 1e6:6.2f} M packets/s  "
            f"{median / base:5.3f}x{extra}"
        )


def scan_main(capture: Path, rounds: int, isolated: list[str]) -> None:
    for net in isolated:
        networks = NetworkSet([net])
        for link_pass in (False, True):  # compile and warm the page cache
            scan(capture, networks, link_pass)
        times: dict[bool, list[float]] = {False: [], True: []}
        counts: dict[bool, int] = {}
        for r in range(rounds):
            for link_pass in (False, True) if r % 2 == 0 else (True, False):
                elapsed, count = scan(capture, networks, link_pass)
                times[link_pass].append(elapsed)
                counts[link_pass] = count
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(f"{capture.name}: {counts[False]:,} packets, scan with isolated {net}, "
              f"{rounds} interleaved rounds, medians: without the link pass {off:.3f} s, "
              f"with it {on:.3f} s ({on / off:.3f}x, {counts[True]:,} link facts)")  # fmt: skip


if __name__ == "__main__":
    main()
