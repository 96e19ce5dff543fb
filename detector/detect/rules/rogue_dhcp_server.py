"""rogue-dhcp-server: a DHCP server answering on an isolated segment that the
policy does not name (issue 20, item 9: a plugged-in router or a bridging laptop
hands out addresses, and its own address as the way out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ...networks import NetworkSet
from ...oui import mac_text
from ..declare import TRAFFIC, Detection, Networks, Rule, Setting
from .common import when
from .segment import (
    DHCP6_TYPE_NAMES,
    DHCP_TYPE_NAMES,
    Segments,
    address,
    card,
    in_networks,
    mac_phrase,
    network_of,
    over_segments,
    span,
    v4,
)

if TYPE_CHECKING:
    from ..context import ScanContext

DETECTION = Detection(
    rule_id="rogue-dhcp-server",
    title="DHCP server on an isolated segment",
    severity=4,
    catches="a DHCP offer or acknowledgement on an isolated segment from a server not named",
    why_it_matters=(
        "A DHCP server hands computers their address and their way out (the router). One "
        "that the site did not set up on an isolated segment is a wireless router, a "
        "phone's hotspot or a laptop sharing its connection: it can route the isolated "
        "computers to the internet."
    ),
    description="""\
Fires for each DHCP server, by its MAC and address, that sent a DHCPOFFER or
DHCPACK (RFC 2131, option 53; DHCPv6 ADVERTISE or REPLY, RFC 8415) on an
isolated segment, unless its address (the server identifier, option 54, or the
packet's source) is in `servers`. A reply is on an isolated segment when the
server's address, the address it offers or the router it names is isolated,
when the client it answers is a card seen on the segment, or when it came on a
VLAN isolated computers use. The alert names the server's MAC and vendor, the
addresses it handed out and the router it named.

A reply is read only when the capture holds at least its first 282 bytes
(Ethernet, IP and UDP headers and BOOTP's fixed 240 bytes) and its options:
a headers-only capture (a snap length of 96 or 128) loses DHCP replies.

Measured (`benchmarks/eval_sidechannels.py`, 2026-12-06, seeds 1 and 2 through the
nightly: 56 baseline days and 811 isolated host-days of boots (RFC 5227
probes, DHCP from the segment's server), ARP refreshes, file-server work,
computers left on, server restarts, with an office VLAN beside it (its own
DHCP server, IPv6 router advertisements every 200 s)):
16 of 16 small routers caught from a single OFFER (of
192.168.0.x or of 10.8.40.x); the segment's own server (in `servers`) and the
office VLAN's never alerted.""",
    false_positives=("the segment's own DHCP server (or relay) missing from `servers`: add it."),
    settings=(
        Setting(
            "servers",
            Networks(),
            (),
            "The DHCP servers (or relays) that may answer on isolated segments.",
        ),
    ),
    policy_example="""\
[rules.rogue-dhcp-server]
servers = ["10.8.40.2"]   # the isolated segment's own DHCP server""",
)


@DETECTION.checks(over=TRAFFIC)
@over_segments
def check_rogue_dhcp_server(ctx: ScanContext, rule: Rule, seen: Segments) -> list[Alert]:
    policy = ctx.policy
    v4_reply = seen.kind_is("dhcp-server", DHCP_TYPE_NAMES)
    rows = seen.facts[v4_reply | seen.kind_is("dhcp6-server", DHCP6_TYPE_NAMES)]
    rows = rows[seen.on_segment(policy, rows)]
    if not len(rows):
        return []
    # The server's address: its identifier (option 54) when it gave one, else the source.
    has_id = rows["b_lo"].to_numpy(np.uint64) != 0
    server_hi = np.where(has_id, rows["b_hi"], rows["a_hi"]).astype(np.uint64)
    server_lo = np.where(has_id, rows["b_lo"], rows["a_lo"]).astype(np.uint64)
    allowed = NetworkSet(rule["servers"])
    sanctioned = in_networks(allowed, server_hi, server_lo) | in_networks(
        allowed, rows["a_hi"], rows["a_lo"]
    )
    rows = rows.assign(server_hi=server_hi, server_lo=server_lo)[~sanctioned]
    alerts: list[Alert] = []
    for (mac, hi, lo), group in rows.groupby(["mac", "server_hi", "server_lo"], sort=True):
        server = address(hi, lo)
        start, end = span(group)
        frames = int(group["count"].sum())
        counts = []
        for kind, names in (("dhcp-server", DHCP_TYPE_NAMES), ("dhcp6-server", DHCP6_TYPE_NAMES)):
            for code, name in names.items():
                n = int(group["count"][(group["kind"] == kind) & (group["code"] == code)].sum())
                if n:
                    counts.append(f"{n:,} {name}{'s' if n != 1 else ''}")
        offered_lo = group["c_lo"].to_numpy(np.uint64)
        offered = sorted({address(*a) for a in zip(*v4(offered_lo[offered_lo != 0]), strict=True)})
        router_lo = group["d_lo"].to_numpy(np.uint64)
        routers = sorted({address(*a) for a in zip(*v4(router_lo[router_lo != 0]), strict=True)})
        clients = sorted({mac_text(int(m)) for m in group["other_mac"] if int(m)})
        hands = f", handing out {', '.join(offered[:5])}" if offered else ""
        via = f" with router {', '.join(routers[:3])}" if routers else ""
        where = network_of(policy, offered[0]) if offered and policy.isolated.contains_text(
            offered[0]) else "an isolated segment"  # fmt: skip
        text = (
            f"a DHCP server the policy does not name answered on {where}: {server}, MAC "
            f"{mac_phrase(int(mac))}, sent {', '.join(counts)}{hands}{via}, "
            f"{when(start, end, policy)}; a router or a laptop sharing its connection "
            "can route the isolated computers out"
        )
        alerts.append(
            rule.alert(
                start, end, server, text, source_packets=frames,
                transport="udp", source_port=67 if (group["kind"] == "dhcp-server").any() else 547,
                direction="internal",
                evidence={**card(int(mac)),
                          "offered": offered[:20], "routers": routers, "clients": clients[:20]},
            )
        )  # fmt: skip
    return alerts
