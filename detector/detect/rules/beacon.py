"""beacon: regular connections from an internal host to one outside address over
hours (malware calling home, or a scheduled job sending data out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...alerts.record import Alert
from ...flows.records import initiator_columns
from ...networks import address_text
from ...units import human_bytes
from ..declare import COUNT, HOURS, PAYLOAD, PERCENT, Boolean, Detection, Ports, Rule, Setting
from .common import ids, when

if TYPE_CHECKING:
    from ..context import ScanContext


DETECTION = Detection(
    rule_id="beacon",
    title="Periodic connections to one outside address (a beacon)",
    severity=2,
    catches="regular connections to one outside address over an hour or more",
    why_it_matters=(
        "Connections at a regular beat to one outside address are how malware calls "
        "home, or how a scheduled job sends data out. Find the program that makes them."
    ),
    description="""\
Malware calling home, or a scheduled exfiltration, connects at regular
intervals with similar sizes. For each (internal host, non-allowlisted outside
address) with at least `min_connections` (20) connections spread over at least
`min_hours` (1), the score is the mean of four regularity scores in the spirit
of RITA's beacon analysis: the skew of the intervals and of the bytes sent
(Bowley skew: 1 when symmetric), and their median absolute deviation against
half the median (1 when every interval, or size, is the same). Fires at
`min_score` (80%) and says it in plain words: "every 60 s ± 0.5 s, 120 times,
3.0 kB each". DNS and NTP ports are left out (`ignore_ports`): they poll by
design. Connections are flows (docs/flows.md): a beacon that reuses one
connection, or one UDP port pair more often than the idle timeout (120 s), is
one flow and not seen as a series. With `scan --model`, a host's beat to an
address the model's baseline saw that host use (`habits`) is its habit, not
reported: a push or update channel held every night, which the idle timeout
cuts into a flow per heartbeat. In the nightly (docs/nightly.md), a beat to
an address the host beat to (by these thresholds) on one of the 28 days
before is its habit: the first day of a beat is reported, the days after are
not; days of other traffic to the address (a few connections, an upload)
make no habit. A beacon to an address new to the host is still reported,
however common the beat.""",
    settings=(
        Setting("min_connections", COUNT, 20, "Connections from one host to one outside address."),
        Setting("min_hours", HOURS, 1, "Hours from the first of them to the last."),
        Setting(
            "min_score", PERCENT, 80, "How regular intervals and sizes must be (docs/rules.md)."
        ),
        # Periodic by design: DNS (RFC 1035) and NTP (RFC 5905) clients poll.
        Setting("ignore_ports", Ports(), (53, 123), "Services that poll by design (DNS, NTP)."),
        Setting(
            "habits",
            Boolean(),
            True,
            "Leave out a host's beats to addresses it used in a trained model's baseline, "
            "or beat to on the nightly's earlier days.",
        ),
    ),  # fmt: skip
)


def _bowley_score(values: np.ndarray) -> float:
    """1 for a symmetric distribution, 0 for a fully skewed one (RITA's skew score)."""
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    if q3 - q1 <= 0:
        return 1.0
    return float(1.0 - abs((q3 + q1 - 2 * q2) / (q3 - q1)))


def _madm(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values))))


def beacon_score(starts_ns: np.ndarray, sizes: np.ndarray) -> tuple[float, float, float]:
    """(score 0–1, median interval s, interval MADM s) for connection start
    times and bytes sent, after RITA: the mean of the interval and size
    regularity scores (skew and median absolute deviation)."""
    intervals = np.diff(np.sort(starts_ns)) / 1e9
    if len(intervals) < 2:
        return 0.0, 0.0, 0.0
    median = float(np.median(intervals))
    madm = _madm(intervals)
    ts_skew = _bowley_score(intervals)
    # Jitter judged against the period: ±10% of a 60 s period is still a beacon.
    ts_madm = max(0.0, 1.0 - madm / max(median * 0.5, 1e-9)) if median > 0 else 0.0
    size_skew = _bowley_score(sizes.astype(np.float64))
    size_median = float(np.median(sizes))
    size_madm = max(0.0, 1.0 - _madm(sizes.astype(np.float64)) / max(size_median * 0.5, 1.0))
    score = (ts_skew + ts_madm + size_skew + size_madm) / 4
    return score, median, madm


@DETECTION.checks(over=PAYLOAD)
def check_beacon(ctx: ScanContext, rule: Rule) -> list[Alert]:
    """Regular connections from an internal host to one outside address over hours."""
    flows, policy = ctx.flows, ctx.policy
    if flows is None or ctx.facts is None:
        return []
    ignored = np.array(sorted(rule["ignore_ports"]), dtype=np.int64)

    def outbound(flow: dict[str, np.ndarray]) -> np.ndarray:
        dst_hi, dst_lo = flow["dst_hi"], flow["dst_lo"]
        return (policy.internal.contains(flow["src_hi"], flow["src_lo"])
                & policy.is_external(dst_hi, dst_lo)
                & ~policy.allowlist_destinations.contains(dst_hi, dst_lo)
                & ~np.isin(flow["dst_port"], ignored))  # fmt: skip

    # Only internal-to-outside flows are kept, read a chunk at a time: the
    # flows of a flood (on disk, detector/flows/spill.py) are never all in memory.
    flow = flows.columns_where(initiator_columns, outbound)
    table = pd.DataFrame({"src_hi": flow["src_hi"], "src_lo": flow["src_lo"],
                          "dst_hi": flow["dst_hi"], "dst_lo": flow["dst_lo"],
                          "start": flow["first_ns"], "sent": flow["sent"]})  # fmt: skip
    if table.empty:
        return []
    keys = ["src_hi", "src_lo", "dst_hi", "dst_lo"]
    if rule["habits"]:
        table = table[~_habitual(ctx, table, keys)]
    counts = table.groupby(keys, sort=False)["start"].transform("size").to_numpy()
    table = table[counts >= int(rule["min_connections"])]
    alerts: list[Alert] = []
    min_span = float(rule["min_hours"]) * 3600e9
    for key, group in table.groupby(keys, sort=True):
        s_hi, s_lo, d_hi, d_lo = ids(key)
        starts = np.sort(group["start"].to_numpy())
        if starts[-1] - starts[0] < min_span:
            continue
        score, period, jitter = beacon_score(starts, group["sent"].to_numpy())
        if score * 100 < float(rule["min_score"]):
            continue
        host = address_text(s_hi, s_lo)
        peer = address_text(d_hi, d_lo)
        size = float(np.median(group["sent"].to_numpy()))
        first, last = int(starts[0]), int(starts[-1])
        alerts.append(
            rule.alert(
                first,
                last,
                host,
                source_bytes=int(group["sent"].sum()),
                destination_ip=peer,
                direction="egress",
                text=(
                    f"{host} connects to {peer} every {_seconds(period)} ± {_seconds(jitter)}, "
                    f"{len(starts):,} times, {human_bytes(size)} each "
                    f"{when(first, last, policy)} (beacon score {score:.2f})"
                ),
                evidence={
                    "beacon_score": round(score, 3),
                    "period_seconds": round(period, 3),
                    "jitter_seconds": round(jitter, 3),
                    "connections": len(starts),
                },
            )  # fmt: skip
        )
    return alerts


def _habitual(ctx: ScanContext, table: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Which rows' (host, address) pairs a trained model's baseline knows."""
    known = ctx.known_destinations
    if known is None or not len(known):
        return np.zeros(len(table), dtype=bool)
    traffic = ctx.traffic
    host = known.get_level_values(0).to_numpy(dtype=np.int64)
    peer = known.get_level_values(1).to_numpy(dtype=np.int64)
    pairs = pd.MultiIndex.from_arrays(
        [traffic.address_hi[host], traffic.address_lo[host], traffic.address_hi[peer],
         traffic.address_lo[peer]]
    )  # fmt: skip
    rows = pd.MultiIndex.from_arrays([table[key].to_numpy(dtype=np.uint64) for key in keys])
    return np.asarray(rows.isin(pairs), dtype=bool)


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.0f} min"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
