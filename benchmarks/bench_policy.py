#!/usr/bin/env python3
"""What long policy lists cost: loading them, and what they add to a scan.

    python benchmarks/bench_policy.py [--sizes 2000,20000,200000,1000000] [--runs 5]

Prints, for allowlists of random IPv4 /32s (the hardest case: nothing merges),
the time to read and check the policy file, to match a million addresses
against the list, and, interleaved run by run, the bundled sample's scan with
the sample policy against the same policy plus a 20,000-entry allowlist (the
issue's bar: under 1 s added). Same machine, same process, medians.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.pipelines.scan import scan_captures  # noqa: E402
from detector.policy import load_policy  # noqa: E402

SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
SAMPLE_POLICY = ROOT / "captures" / "sample-policy.toml"


def _policy_with(entries: int, directory: Path) -> Path:
    rng = random.Random(entries)
    # Outside the sample's addresses, so the scan's alerts stay the same.
    nets = (f'"{ipaddress.IPv4Address(a)}/32"' for a in rng.sample(range(1 << 24, 3 << 30), entries))
    text = SAMPLE_POLICY.read_text()
    marker = "[allowlist]"
    assert marker in text, "the sample policy has an [allowlist] section"
    listed = "destinations = [" + ", ".join(nets) + "]"
    head, _, tail = text.partition(marker)
    lines = tail.splitlines()
    kept = [line for line in lines if not line.strip().startswith("destinations")]
    path = directory / f"allow-{entries}.toml"
    path.write_text(head + marker + "\n" + listed + "\n" + "\n".join(kept) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000,200000,1000000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"{'entries':>10} {'file':>9} {'load s':>8} {'1M look-ups s':>14}")
        rng = np.random.default_rng(1)
        queries = rng.integers(0, 1 << 32, 1_000_000, dtype=np.uint64) | np.uint64(0xFFFF << 32)
        for size in sizes:
            path = _policy_with(size, directory)
            start = time.perf_counter()
            policy = load_policy(path)
            loaded = time.perf_counter() - start
            start = time.perf_counter()
            policy.allowlist_destinations.contains(np.zeros_like(queries), queries)
            matched = time.perf_counter() - start
            mb = path.stat().st_size / 1e6
            print(f"{size:>10,} {mb:>7.1f}MB {loaded:>8.2f} {matched:>14.3f}")

        plain = load_policy(SAMPLE_POLICY)
        long_path = _policy_with(20_000, directory)
        scan_captures([SAMPLE], plain)  # compile and warm the caches first
        plain_times, long_times = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            scan_captures([SAMPLE], plain)
            plain_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            scan_captures([SAMPLE], load_policy(long_path))  # loading counts too
            long_times.append(time.perf_counter() - start)
        a, b = statistics.median(plain_times), statistics.median(long_times)
        print(f"\nscan of the bundled sample, median of {args.runs} interleaved runs:")
        print(f"  sample policy                     {a:.3f} s")
        print(f"  + 20,000-entry allowlist (loaded)  {b:.3f} s   adds {b - a:+.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
