"""pivot-chain: an isolated computer hands data to an internal host, which
sends the like volume outside soon after: one incident across two hosts
(issue 20, behaviour 4: the bridge of bulletin No. 3 as a chain)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ...alerts.record import Alert
from ...units import human_bytes
from ..declare import BYTES, MINUTES, PERCENT, TRAFFIC, Detection, Rule, Setting
from . import isolated_egress
from .common import (
    Conversation,
    endpoint,
    local_datetime,
    minute_runs,
    when,
)

if TYPE_CHECKING:
    from ..context import ScanContext


DETECTION = Detection(
    rule_id="pivot-chain",
    title="Isolated data relayed outside through an internal host",
    severity=4,
    catches="an isolated host sends ≥ 1 MB to an internal host that sends ≥ 50 % of it "
    "outside within 60 minutes",
    why_it_matters=(
        "Data left the isolated segment for an ordinary computer, and that computer then "
        "sent the like volume outside: the bridge of bulletin No. 3, the isolated "
        "network's contents reaching the internet in two hops. Disconnect both "
        "computers from the network and call security."
    ),
    description="""\
A careful insider does not connect the isolated computer to the internet;
they copy through a computer that has both. Fires when an **isolated** host
sends at least `min_bytes` (default 1 000 000) to an **internal host outside
the isolated zone** (the bridge; one episode: minutes closer than a feature
window), and the bridge sends at least `min_percent` (default 50) % of that
volume to **non-allowlisted outside** addresses between the first leg's start
and `within_minutes` (default 60) after its end.

One alert for the chain, from the isolated host (`source.ip`) to the outside
address that received most (`destination.ip`), with both legs in
`egress.chain` (isolated, bridge, outside), `egress.first_leg` and
`egress.second_leg` (bytes, packets, local start and end, destinations). The
first leg's `isolated-egress` alert, and any other rule's alert about the
second leg (the bridge and one of those outside addresses, say
`low-and-slow-egress`), are folded into it as notes (one incident, one
alert); the chain takes the highest severity. With `scan --model`, the
model's verdict on the bridge host's upload is attached to the chain.

Measured (`benchmarks/eval_adversary.py`, seeds 1 and 2, 16 test weeks each, 2,644 benign
host-days, 2026-12-06): relays of 5 and 30 MB with the second leg 10–50
minutes after the first and 80–110 % of its size: 16/16 each, one chain
alert each (rules alone). At 1 MB, exactly `min_bytes`, some generated
first legs fell a few bytes short: those were caught as the first leg's
`isolated-egress` alert alone, the chain unseen. No false alert.""",
    false_positives=(
        "an internal server that both serves the isolated segment (say, updates) and "
        "uploads to the internet at the same hours: allowlist its outside destination."
    ),
    settings=(
        Setting(
            "min_bytes",
            BYTES,
            1_000_000,
            "Bytes the isolated host must send to the bridge host (first leg) …",
        ),
        Setting(
            "min_percent",
            PERCENT,
            50,
            "… of which the bridge must send at least this share outside …",
        ),
        Setting("within_minutes", MINUTES, 60, "… by this many minutes after the first leg ends."),
    ),  # fmt: skip
)


def _leg(ctx: ScanContext, rows: Any) -> dict[str, Any]:
    return {
        "bytes": int(rows["bytes_out"].sum()),
        "packets": int(rows["packets_out"].sum()),
        "start": f"{local_datetime(int(rows['first_ns'].min()), ctx.policy):%Y-%m-%d %H:%M:%S}",
        "end": f"{local_datetime(int(rows['last_ns'].max()), ctx.policy):%Y-%m-%d %H:%M:%S}",
    }


@DETECTION.checks(over=TRAFFIC, capped_per_host=True)
def check_pivot_chain(ctx: ScanContext, rule: Rule) -> list[Alert]:
    floor = int(rule["min_bytes"])
    within_ns = rule.ns("within_minutes")
    share = int(rule["min_percent"]) / 100
    f = ctx.traffic.frame
    sent = f["bytes_out"].to_numpy() > 0
    # Leg 1: isolated host -> internal host outside the isolated zone.
    first = f[
        sent
        & f["host_isolated"].to_numpy()
        & ~f["peer_external"].to_numpy()
        & ~f["peer_isolated"].to_numpy()
        & ~f["peer_isolated_peer"].to_numpy()
        & ~f["peer_local_scope"].to_numpy()
    ]
    if first.empty:
        return []
    # Leg 2: what any host sent to non-allowlisted outside addresses.
    outward = f[sent & f["peer_external"].to_numpy() & ~f["peer_allowlisted"].to_numpy()]
    alerts: list[Alert] = []
    for (host, bridge), rows in first.groupby(["host_id", "peer_id"], sort=False):
        rows = rows.sort_values("minute_ns", kind="stable")
        runs = minute_runs(rows["minute_ns"].to_numpy(), ctx.gap_ns)
        for run in np.unique(runs).tolist():
            leg1 = rows[runs == run]
            handed = int(leg1["bytes_out"].sum())
            if handed < floor:
                continue
            start = int(leg1["first_ns"].min())
            until = int(leg1["last_ns"].max()) + within_ns
            # By packet times, not minute bins: both legs may fall in one minute.
            leg2 = outward[
                (outward["host_id"].to_numpy() == bridge)
                & (outward["last_ns"].to_numpy() >= start)
                & (outward["first_ns"].to_numpy() <= until)
            ]
            out = int(leg2["bytes_out"].sum())
            if out < share * handed:
                continue
            by_peer = leg2.groupby("peer_id", sort=False)["bytes_out"].sum()
            top = int(by_peer.idxmax())
            iso, hop = ctx.traffic.text(int(host)), ctx.traffic.text(int(bridge))
            outside = ctx.traffic.text(top)
            conv = Conversation(
                source_ip=iso,
                start_ns=start,
                end_ns=int(leg2["last_ns"].max()),
                source_bytes=handed,
                source_packets=int(leg1["packets_out"].sum()),
                destination_ip=outside,
                destination_bytes=int(leg2["bytes_out"].sum()),
                destination_packets=int(leg2["packets_out"].sum()),
            )
            second = _leg(ctx, leg2)
            second["destinations"] = [
                {"ip": ctx.traffic.text(int(p)), "bytes": int(b)}
                for p, b in by_peer.sort_values(ascending=False).head(5).items()
            ]
            evidence = {
                "chain": [iso, hop, outside],
                "first_leg": _leg(ctx, leg1),
                "second_leg": second,
                "within_minutes": int(rule["within_minutes"]),
            }
            others = len(by_peer) - 1
            more = f" and {others} more outside addresses" if others else ""
            handed_until = int(leg1["last_ns"].max())
            text = (
                f"chain {iso} (isolated) -> {hop} -> {endpoint(conv)}: {iso} sent "
                f"{human_bytes(handed)} to {hop} {when(start, handed_until, ctx.policy)}, "
                f"then {hop} sent {human_bytes(out)} to {outside}{more} "
                f"{when(int(leg2['first_ns'].min()), conv.end_ns, ctx.policy)}: "
                "the isolated computer's data may have left through the bridge host"
            )
            alerts.append(conv.alert(rule, text, "egress", evidence))
    return alerts


def fold_legs(alerts: list[Alert]) -> list[Alert]:
    """One incident, one alert: another rule's alert about a leg of a chain
    (the isolated host and the bridge, as ``isolated-egress`` reports the
    first leg; the bridge and an outside address of the second leg, as a
    volume rule may report it), overlapping the chain in time, becomes a note
    on the chain's alert instead of an alert of its own."""
    chains = [a for a in alerts if a.rule_id == DETECTION.rule_id]
    if not chains:
        return alerts
    kept: list[Alert] = []
    notes: dict[int, list[Alert]] = {}
    for alert in alerts:
        if alert.rule_id == DETECTION.rule_id:
            continue
        for k, chain in enumerate(chains):
            if _is_leg(alert, chain):
                notes.setdefault(k, []).append(alert)
                break
        else:
            kept.append(alert)
    for k, chain in enumerate(chains):
        for leg in notes.get(k, []):
            chain = chain.with_note(f"as {leg.rule_id}: {leg.message}")
            chain = replace(chain, severity=max(chain.severity, leg.severity))
        kept.append(chain)
    return kept


def _is_leg(alert: Alert, chain: Alert) -> bool:
    if alert.start_ns > chain.end_ns or alert.end_ns < chain.start_ns:
        return False
    isolated, bridge, _ = chain.evidence["chain"]
    # isolated-egress names the side that opened the connection as source.
    if {alert.source_ip, alert.destination_ip} == {isolated, bridge}:
        return alert.rule_id == isolated_egress.DETECTION.rule_id
    outside = {d["ip"] for d in chain.evidence["second_leg"]["destinations"]}
    return alert.source_ip == bridge and alert.destination_ip in outside
