"""spread-egress: one upload split over many outside addresses the host had
never used, in a short span, so that no destination alone looks large
(issue 20, behaviour 2)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ...units import human_bytes
from ..declare import BYTES, COUNT, HOURS, MINUTES, TRAFFIC, Detection, Rule, Setting
from .common import (
    Conversation,
    groups_reaching,
    ids,
    new_destination_rows,
    outside_rows,
    threshold_phrase,
)

if TYPE_CHECKING:
    from ..context import ScanContext


DETECTION = Detection(
    rule_id="spread-egress",
    title="Upload spread over many new outside addresses",
    severity=3,
    catches="≥ 10 MB to ≥ 4 outside addresses new to the host (≥ 500 kB each) within 30 minutes",
    why_it_matters=(
        "One upload was split over many outside addresses the computer had never used, "
        "so that no single destination looks large: someone avoiding per-destination "
        "thresholds. Check what the computer sent and to whom."
    ),
    description="""\
Thresholds per destination are stepped around by sending to many: the same
volume to eight new addresses (or eight addresses of one provider's /24) in
twenty minutes. Fires when a host sends, within any `span_minutes` (default
30), at least `min_bytes` (default 10 000 000) in all to at least
`min_destinations` (default 4) **non-allowlisted outside** addresses that are
**new** to it, that each received at least `min_bytes_each` (default
500 000) and more than they sent back (uploads, not a video call's servers).
New means as in `bulk-upload-new-destination`: first reached less than
`new_for_hours` (default 24) before, and, with `scan --model`, not in the
model's baseline.

The alert gives the total, the destinations (`egress.destinations`, the ten
largest) and the networks they are in (`egress.networks`, /24 for IPv4, /48
for IPv6): all in one network is the mark of one service behind many
addresses. Consecutive spans are one alert.

Measured (`benchmarks/eval_adversary.py`, seeds 1 and 2, 16 test weeks each, 2,644 benign
host-days, 2026-12-06): 10 MB and 20 MB over 4 or 8 new addresses in 10–20
minutes, by day or by night, half of them in one /24: 15 or 16 of 16 each,
one alert each; 5 MB is under `min_bytes` (the model caught 10–16 of 16).
One false alert: 13.4 MB to five cloud-storage addresses new to the host in
20 minutes of a working day.""",
    false_positives=(
        "a first upload to a new cloud service whose servers rotate addresses (video "
        "calls, photo sync): after the first day the addresses are known; a sanctioned "
        "service belongs in `allowlist.domains` or `allowlist.destinations`."
    ),
    settings=(
        Setting(
            "min_bytes",
            BYTES,
            10_000_000,
            "Bytes a host must send in all to new outside addresses …",
        ),
        Setting("min_destinations", COUNT, 4, "… spread over at least this many of them …"),
        Setting(
            "min_bytes_each", BYTES, 500_000, "… each of which received at least this many bytes …"
        ),
        Setting("span_minutes", MINUTES, 30, "… within this many minutes."),
        Setting(
            "new_for_hours",
            HOURS,
            24,
            "An outside address is new to a host for this many hours after the first "
            "packet between them.",
        ),
    ),
    policy_example="""\
[rules.spread-egress]
min_bytes = 5_000_000
min_destinations = 3""",
)


def _network_of(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) holding an address: one provider's block."""
    prefix = 48 if ":" in address else 24
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_spread_egress(ctx: ScanContext, rule: Rule) -> list[Alert]:
    span_minutes, span_ns = int(rule["span_minutes"]), rule.ns("span_minutes")
    threshold = int(rule["min_bytes"])
    each = int(rule["min_bytes_each"])
    wanted = int(rule["min_destinations"])
    sel = new_destination_rows(ctx, outside_rows(ctx, sending=True), rule.ns("new_for_hours"))
    # Uploads only: a destination that sent back as much as it received is a
    # call or a stream (a video meeting's servers are new to a host too).
    pair = ["host_id", "peer_id"]
    grouped = sel.groupby(pair, sort=False)
    upload = (
        grouped["bytes_out"].transform("sum").to_numpy()
        > grouped["bytes_in"].transform("sum").to_numpy()
    )
    sel = sel[upload]
    sel = groups_reaching(sel, ["host_id"], "bytes_out", span_ns, threshold)
    alerts: list[Alert] = []
    for host_key, rows in sel.groupby("host_id", sort=False):
        host = ids([host_key])[0]
        per = rows.groupby(["minute_ns", "peer_id"], sort=True)["bytes_out"].sum()
        minute = per.index.get_level_values(0).to_numpy()
        peer_codes, peers = np.unique(per.index.get_level_values(1).to_numpy(), return_inverse=True)
        peers = peers.reshape(-1)
        sent = per.to_numpy()
        ends = np.unique(minute)
        firing: list[tuple[int, int]] = []  # (first minute, last minute) of each firing span
        for end in ends.tolist():
            inside = (minute > end - span_ns) & (minute <= end)
            by_peer = np.bincount(peers[inside], weights=sent[inside], minlength=len(peer_codes))
            large = by_peer >= each
            if large.sum() >= wanted and by_peer[large].sum() >= threshold:
                first = int(minute[inside].min())
                if firing and first - firing[-1][1] <= ctx.gap_ns:
                    firing[-1] = (firing[-1][0], end)
                else:
                    firing.append((first, end))
        for lo, hi in firing:
            inside = (minute >= lo) & (minute <= hi)
            by_peer = np.bincount(peers[inside], weights=sent[inside], minlength=len(peer_codes))
            order = np.argsort(-by_peer, kind="stable")
            chosen = [int(i) for i in order if by_peer[i] >= each]
            texts = [ctx.traffic.text(int(peer_codes[i])) for i in chosen]
            networks = sorted({_network_of(t) for t in texts})
            m = rows["minute_ns"].to_numpy()
            episode = rows[(m >= lo) & (m <= hi) & np.isin(rows["peer_id"].to_numpy(),
                                                           peer_codes[chosen])]  # fmt: skip
            total = int(episode["bytes_out"].sum())
            conv = Conversation(
                source_ip=ctx.traffic.text(host),
                start_ns=int(episode["first_ns"].min()),
                end_ns=int(episode["last_ns"].max()),
                source_bytes=total,
                source_packets=int(episode["packets_out"].sum()),
                destination_ip=texts[0],
                destination_bytes=int(episode["bytes_in"].sum()),
                destination_packets=int(episode["packets_in"].sum()),
            )
            where = (
                f"all in {networks[0]}" if len(networks) == 1 else f"in {len(networks)} networks"
            )
            text = (
                f"{conv.source_ip} sent {human_bytes(total)} to {len(texts)} outside addresses "
                f"it had not used before ({where}; most to {texts[0]}, "
                f"{human_bytes(int(by_peer[chosen[0]]))}) {conv.when_and_hours(ctx.policy)}: "
                f"one upload split so that no destination looks large "
                + threshold_phrase(threshold, span_minutes)
            )
            evidence = {
                "threshold_bytes": threshold,
                "span_minutes": span_minutes,
                "destination_count": len(texts),
                "networks": networks,
                "destinations": [
                    {"ip": t, "bytes": int(by_peer[i])} for t, i in zip(texts, chosen, strict=True)
                ][:10],
            }
            alerts.append(conv.alert(rule, text, "egress", evidence))
    return alerts
