"""arp-outside-segment: an isolated computer asking in ARP for an address beyond
the isolated networks (issue 20, item 9: it believes that address is on its wire,
or someone set it up to reach one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ...networks import NetworkSet
from ..declare import TRAFFIC, Detection, Networks, Rule, Setting
from .common import when
from .segment import (
    ARP_REQUEST,
    Segments,
    address,
    addresses,
    card,
    listed,
    mac_phrase,
    network_of,
    over_segments,
    span,
)

if TYPE_CHECKING:
    from ..context import ScanContext

# Local-scope IPv4 targets (RFC 3927 link-local, RFC 5227 "this network"): not another segment.
_LOCAL_SCOPE = NetworkSet(["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3"])

DETECTION = Detection(
    rule_id="arp-outside-segment",
    title="Isolated computer looked for an address beyond its segment",
    severity=3,
    catches="an isolated host asking in ARP for an address outside the isolated networks",
    why_it_matters=(
        "A computer asks in ARP only for addresses it believes are on its own wire. An "
        "isolated computer asking for an address beyond the isolated networks was given "
        "another network or gateway (a second address, a changed netmask, a cable to "
        "another switch): the first step of a bridge, before any packet leaves."
    ),
    description="""\
Fires for each isolated computer (by address and card) that sent an ARP request
(RFC 826) whose sender address is in `networks.isolated` and whose target is in
no isolated network, not in `networks.isolated_peers`, not in `allowed_targets`
and not local scope (link-local, loopback, multicast, "this network").
Announcements (sender and target the same) are not requests for another
address. The alert lists the addresses asked for, how many requests, and when.

Measured (`benchmarks/eval_sidechannels.py`, 2026-12-06, seeds 1 and 2 through the
nightly: 56 baseline days and 811 isolated host-days of boots (RFC 5227
probes, DHCP from the segment's server), ARP refreshes, file-server work,
computers left on, server restarts, with an office VLAN beside it (its own
DHCP server, IPv6 router advertisements every 200 s)):
16 of 16 computers given an on-link route caught from one
request for one address of 198.51.100.0/24; boots' probes and announcements
and lookups of the gateway and the file server never alerted.""",
    false_positives=(
        "an isolated computer whose netmask is wider than its isolated network (it asks "
        "for neighbours that are not there): fix the netmask, or list the range in "
        "`allowed_targets`."
    ),
    settings=(
        Setting(
            "allowed_targets",
            Networks(),
            (),
            "Addresses isolated computers may ask for in ARP besides the isolated networks "
            "and `isolated_peers`.",
        ),
    ),
    policy_example="""\
[rules.arp-outside-segment]
allowed_targets = ["10.8.40.254/32"]   # the old gateway address the images still ask for""",
)


@DETECTION.checks(over=TRAFFIC)
@over_segments
def check_arp_outside_segment(ctx: ScanContext, rule: Rule, seen: Segments) -> list[Alert]:
    policy = ctx.policy
    rows = seen.of("arp", (ARP_REQUEST,))
    s_hi, s_lo = rows["a_hi"].to_numpy(np.uint64), rows["a_lo"].to_numpy(np.uint64)
    t_hi, t_lo = rows["b_hi"].to_numpy(np.uint64), rows["b_lo"].to_numpy(np.uint64)
    allowed = NetworkSet(rule["allowed_targets"])
    outside = (
        policy.isolated.contains(s_hi, s_lo)
        & (s_lo != t_lo)
        & ~policy.isolated.contains(t_hi, t_lo)
        & ~policy.isolated_peers.contains(t_hi, t_lo)
        & ~allowed.contains(t_hi, t_lo)
        & ~_LOCAL_SCOPE.contains(t_hi, t_lo)
    )
    rows = rows[outside]
    alerts: list[Alert] = []
    for (hi, lo, mac), group in rows.groupby(["a_hi", "a_lo", "other_mac"], sort=True):
        host = address(hi, lo)
        group = group.sort_values("first_ns", kind="stable")
        targets = addresses(group, "b")
        start, end = span(group)
        requests = int(group["count"].sum())
        shown = listed(targets, 5)
        text = (
            f"{host} (isolated), card {mac_phrase(int(mac))}, asked in ARP for {shown}, "
            f"beyond the isolated networks ({network_of(policy, host)} is its own): "
            f"{requests:,} request{'s' if requests != 1 else ''} {when(start, end, policy)}"
        )
        alerts.append(rule.alert(
            start, end, host, text, source_packets=requests,
            destination_ip=targets[0], direction="internal",
            evidence={**card(int(mac)),
                      "targets": targets[:20], "requests": requests},
        ))  # fmt: skip
    return alerts
