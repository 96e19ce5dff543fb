#!/usr/bin/env python3
"""What numpy 2.4's hashing ``np.unique`` costs where the scan calls it, against
``detector.arrays.sorted_unique`` (one sort): process CPU seconds.

    python benchmarks/bench_unique.py                  # the call alone, a million values
    python benchmarks/bench_unique.py CAPTURE [--model-from BASELINE] [--rounds 5]

Without a capture: ``np.unique`` against ``sorted_unique`` on a million values of
several dtypes (best of 3). With one: counts it as ``scan`` does, then times each
function that calls ``sorted_unique`` (``host_window_counts``, the im-app check,
with ``--model-from`` a model trained on BASELINE: ``novelty.known_peers`` and
``HostTraffic.users_of``) as committed and with ``np.unique`` put back in its
module ("before"), interleaved, and prints the medians of ``--rounds`` pairs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.arrays import sorted_unique  # noqa: E402


def best_of(f: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.process_time()
        f()
        best = min(best, time.process_time() - t)
    return best


def calls_alone() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    cases = {
        "int64, all distinct": rng.permutation(n).astype(np.int64) * 7919,
        "int64, 1,000 values": rng.integers(0, 1000, n),
        "uint64 >= 2**63": rng.integers(0, 2**63, n, dtype=np.uint64) + np.uint64(2**63),
        "int32": rng.integers(0, 2**31 - 1, n).astype(np.int32),
        "float64 (not hashed)": rng.random(n),
        "strings U12": rng.integers(0, n, n).astype("U12"),
    }
    print(f"{'a million values':24s} {'np.unique':>10s} {'sorted_unique':>14s}")
    for name, values in cases.items():
        slow = best_of(lambda v=values: np.unique(v))
        fast = best_of(lambda v=values: sorted_unique(v))
        print(f"{name:24s} {slow:10.3f} {fast:14.3f}")


def sites(capture: str, baseline: str | None, rounds: int) -> None:
    from detector.detect.context import ScanContext
    from detector.detect.model import novelty
    from detector.detect.rules import DETECTIONS, common, im_app
    from detector.features import hosts
    from detector.pipelines.scan import scan_captures
    from detector.policy.site import default_policy

    modules = [hosts, common, im_app, novelty]
    policy = default_policy()
    result = scan_captures([capture], policy)
    traffic = result.traffic
    ctx = ScanContext(policy, traffic, 10, facts=result.facts, names=result.names,
                      flows=result.flows)  # fmt: skip
    im_app_rule = next(d for d in DETECTIONS if d.rule_id == "im-app")
    work: dict[str, Callable[[], object]] = {
        "host_window_counts (the summary line)": lambda: hosts.host_window_counts(traffic, policy),
        "im-app check": lambda: im_app_rule.run(ctx),
    }
    if baseline:
        from detector.pipelines.train import train_model

        model = train_model([baseline], policy).model
        f = traffic.frame
        outside = f["peer_id"].to_numpy()[f["peer_external"].to_numpy()]
        work["novelty.known_peers (--model)"] = lambda: novelty.known_peers(model, traffic)
        work["users_of every outside peer (--model)"] = lambda: novelty.baseline_users(
            model, traffic
        )(outside)
    print(f"{capture}: load average {os.getloadavg()[0]:.1f}, medians of {rounds} pairs")
    print(f"{'CPU s':40s} {'np.unique':>10s} {'sorted_unique':>14s}")
    for name, f in work.items():
        runs: dict[bool, list[float]] = {True: [], False: []}
        for i in range(rounds):
            for before in (True, False) if i % 2 == 0 else (False, True):
                for module in modules:
                    module.sorted_unique = np.unique if before else sorted_unique  # type: ignore[attr-defined]
                t = time.process_time()
                f()
                runs[before].append(time.process_time() - t)
        for module in modules:
            module.sorted_unique = sorted_unique  # type: ignore[attr-defined]
        print(f"{name:40s} {statistics.median(runs[True]):10.3f} "
              f"{statistics.median(runs[False]):14.3f}")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?")
    ap.add_argument("--model-from", metavar="BASELINE", help="train a model on this capture")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved pairs (median kept)")
    args = ap.parse_args()
    if args.capture is None:
        calls_alone()
    else:
        sites(args.capture, args.model_from, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
