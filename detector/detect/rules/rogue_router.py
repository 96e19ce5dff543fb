"""rogue-router: a way out of an isolated segment that should not be there: an
IPv6 router advertisement, a second gateway, or two cards claiming one address
(issue 20, item 9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ...oui import mac_text, vendor
from ..declare import MINUTES, TRAFFIC, Detection, Rule, Setting
from .common import when
from .segment import (
    ARP_REPLY,
    ARP_REQUEST,
    Macs,
    Segments,
    address,
    addresses,
    card,
    listed,
    mac_phrase,
    mac_values,
    over_segments,
    span,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..context import ScanContext

DETECTION = Detection(
    rule_id="rogue-router",
    title="New way out of an isolated segment",
    severity=4,
    catches=(
        "an IPv6 router advertisement, a second gateway, or two cards claiming one "
        "address (ARP) on an isolated segment"
    ),
    why_it_matters=(
        "An isolated segment has at most the gateway the site set up. A router "
        "advertisement, a second card that delivers traffic from beyond the segment, or a "
        "card that answers ARP for another's address is a new way in and out: a bridge, "
        "a laptop routing for the segment, or someone intercepting its traffic."
    ),
    description="""\
Three signs, each its own alert, on isolated segments (as `rogue-dhcp-server`
decides what is on one):

- **router advertisement** (ICMPv6 type 134, RFC 4861) from a card not in
  `routers`: IPv6 hosts take it as a default route at once, even on a segment
  that has no IPv6 of its own;
- **second gateway**: a card that delivers to isolated computers traffic
  from outside addresses (beyond `networks.internal`), from
  `networks.isolated_peers`, or from two or more other internal addresses is
  a gateway into the segment (a computer on the same wire sending its own
  traffic is `isolated-egress`'s). A gateway not in `gateways` and not a card
  the nightly saw on the segment on an earlier day is new; with neither, the
  first card seen is taken as the site's gateway and any other is new;
- **address claimed by two cards**: two or more cards giving one isolated
  address as their own in ARP (the sender of a request, a reply or a
  gratuitous announcement: RFC 826 receivers learn from each) within
  `claim_minutes` of each other, or at any time of the scan when one of them
  is a gateway's card (a card of `gateways`, or one delivering traffic from
  beyond the segment) or when a card the nightly knows from earlier days
  and one it has never seen claim it: the way an impostor takes over the
  gateway's address (ARP spoofing), even at night when the gateway is
  silent.

Measured (`benchmarks/eval_sidechannels.py`, 2026-12-06, seeds 1 and 2 through the
nightly: 56 baseline days and 811 isolated host-days of boots (RFC 5227
probes, DHCP from the segment's server), ARP refreshes, file-server work,
computers left on, server restarts, with an office VLAN beside it (its own
DHCP server, IPv6 router advertisements every 200 s)):
router advertisements 16 of 16 from a single one
(lifetime 0 or 1,800 s), second gateways 16 of 16 from 2 frames, claims of the
gateway's address 16 of 16 from a single gratuitous reply at any hour; the
office VLAN's advertisements never alerted; no false alert.""",
    false_positives=(
        "a second router or a redundant gateway pair (VRRP, HSRP) of the site: list their "
        "cards in `gateways` (and `routers` for IPv6); a computer that changed its "
        "network card keeps its address (two cards claim it in one capture)."
    ),
    settings=(
        Setting(
            "gateways",
            Macs(),
            (),
            "The cards (MAC addresses) that may deliver traffic from beyond the segment to "
            "isolated computers (besides the cards the nightly saw on earlier days). "
            "Empty, and no earlier day: the first card seen doing so, and only one.",
        ),
        Setting(
            "claim_minutes",
            MINUTES,
            60,
            "Two cards claiming one isolated address within this many minutes of each "
            "other conflict (further apart: the address was handed to another card).",
        ),
        Setting(
            "routers",
            Macs(),
            (),
            "The cards that may send IPv6 router advertisements on isolated segments.",
        ),
    ),
    policy_example="""\
[rules.rogue-router]
gateways = ["02:08:0a:08:00:01"]   # the segment's firewall""",
)


def _advertisements(
    ctx: ScanContext, rule: Rule, rows: pd.DataFrame, allowed: set[int]
) -> list[Alert]:
    policy = ctx.policy
    alerts: list[Alert] = []
    macs = rows["mac"].to_numpy(np.int64)
    for mac in np.unique(macs).tolist():
        if mac in allowed:
            continue
        group = rows[macs == mac]
        first = group.iloc[int(np.argmin(group["first_ns"].to_numpy()))]
        source = address(first["a_hi"], first["a_lo"])
        start, end = span(group)
        frames = int(group["count"].sum())
        lifetime = int(group["code"].max())
        default = (
            f"as the default router for {lifetime:,} s"
            if lifetime
            else "(router lifetime 0: not as a default router)"
        )
        text = (
            f"an IPv6 router advertisement on an isolated segment: {source}, MAC "
            f"{mac_phrase(mac)}, announced itself {default} in {frames:,} "
            f"advertisement{'s' if frames != 1 else ''} {when(start, end, policy)}"
        )
        alerts.append(rule.alert(
            start, end, source, text, source_packets=frames,
            transport="ipv6-icmp", direction="internal",
            evidence={"sign": "router-advertisement", **card(mac), "router_lifetime_s": lifetime},
        ))  # fmt: skip
    return alerts


def _gateways(ctx: ScanContext, rule: Rule, rows: pd.DataFrame, allowed: set[int]) -> list[Alert]:
    policy = ctx.policy
    if not len(rows):
        return []
    firsts = rows.groupby("mac", sort=False)["first_ns"].min().sort_values(kind="stable")
    macs = firsts.index.to_numpy(np.int64).tolist()
    # Without a list, the first card seen is taken as the site's gateway.
    new = [m for m in macs if m not in allowed] if allowed else macs[1:]
    alerts: list[Alert] = []
    for mac in new:
        group = rows[rows["mac"].to_numpy(np.int64) == mac]
        start, end = span(group)
        sources = addresses(group, "a")
        others = [mac_text(m) for m in macs if m != mac]
        besides = (
            f"besides {', '.join(others[:3])}" if others else "not a card known on the segment"
        )
        shown = listed(sources, 3)
        text = (
            f"a new gateway into an isolated segment: MAC {mac_phrase(mac)} delivered "
            f"traffic from {shown} (beyond the segment) to isolated computers "
            f"{when(start, end, policy)}, {besides}"
        )
        alerts.append(rule.alert(
            start, end, sources[0], text, direction="inbound",
            evidence={"sign": "second-gateway", **card(mac),
                      "gateways": [mac_text(m) for m in macs], "sources": sources[:20]},
        ))  # fmt: skip
    return alerts


def _claims(
    ctx: ScanContext, rule: Rule, rows: pd.DataFrame, gateways: set[int], known: set[int]
) -> list[Alert]:
    policy = ctx.policy
    window = rule.ns("claim_minutes")
    alerts: list[Alert] = []
    for (hi, lo), group in rows.groupby(["a_hi", "a_lo"], sort=True):
        spans = (
            group.groupby("other_mac", sort=False)
            .agg(first_ns=("first_ns", "min"), last_ns=("last_ns", "max"))
            .sort_values("first_ns", kind="stable")
        )
        if len(spans) < 2:
            continue
        # Cards whose claims come within the window of another card's: an address
        # handed to another card later (a DHCP lease) is no conflict.
        firsts, lasts = spans["first_ns"].to_numpy(), spans["last_ns"].to_numpy()
        near = (firsts[:, None] <= lasts[None, :] + window) & (
            firsts[None, :] <= lasts[:, None] + window
        )
        np.fill_diagonal(near, False)
        conflicting = np.asarray(near.any(axis=1))
        cards = spans.index.to_numpy(np.int64)
        was_known = np.isin(cards, list(known))
        if np.isin(cards, list(gateways)).any() or (was_known.any() and not was_known.all()):
            # A gateway's address, or a known card's taken by a card never seen
            # before: at any distance in time, the newcomer is an impostor.
            conflicting[:] = True
        if not conflicting.any():
            continue
        claimed = address(hi, lo)
        macs = spans.index.to_numpy(np.int64)[conflicting].tolist()
        group = group[np.isin(group["other_mac"].to_numpy(np.int64), macs)]
        # From the moment a second card claimed it (the first card's is the address's own).
        start = int(spans["first_ns"].to_numpy()[conflicting][1])
        end = int(group["last_ns"].max())
        text = (
            f"{len(macs)} network cards claimed the isolated address {claimed} in ARP "
            f"{when(start, end, policy)}: {', '.join(mac_phrase(m) for m in macs[:4])}; "
            "one of them may be impersonating the other (ARP spoofing)"
        )
        alerts.append(rule.alert(
            start, end, claimed, text, source_packets=int(group["count"].sum()),
            direction="internal",
            evidence={"sign": "address-claimed-twice", "macs": [mac_text(m) for m in macs],
                      "vendors": [vendor(m) for m in macs]},
        ))  # fmt: skip
    return alerts


@DETECTION.checks(over=TRAFFIC)
@over_segments
def check_rogue_router(ctx: ScanContext, rule: Rule, seen: Segments) -> list[Alert]:
    policy = ctx.policy
    adverts = seen.of("router-advert")
    adverts = adverts[seen.on_segment(policy, adverts)]
    # Every ARP frame binds its sender's address to its sender's card (RFC 826).
    arp = seen.of("arp", (ARP_REQUEST, ARP_REPLY))
    arp = arp[seen.isolated_at(policy, arp, "a")]
    known = mac_values(rule["gateways"]) | mac_values(tuple(ctx.learned_devices))
    routing = _gateway_rows(ctx, seen.of("forwarder"))
    gateways = set(routing["mac"].to_numpy(np.int64).tolist()) | mac_values(rule["gateways"])
    return [
        *_advertisements(ctx, rule, adverts, mac_values(rule["routers"])),
        *_gateways(ctx, rule, routing, known),
        *_claims(ctx, rule, arp, gateways, known),
    ]


def _gateway_rows(ctx: ScanContext, rows: pd.DataFrame) -> pd.DataFrame:
    """The forwarder facts of cards that act as gateways: traffic from outside,
    from an isolated peer, or from two or more other internal addresses. A card
    delivering only one internal address's traffic is that computer itself on
    the isolated wire (a bridge isolated-egress reports, direction internal)."""
    policy = ctx.policy
    hi, lo = rows["a_hi"].to_numpy(np.uint64), rows["a_lo"].to_numpy(np.uint64)
    routed = policy.is_external(hi, lo) | policy.isolated_peers.contains(hi, lo)
    macs = rows["mac"].to_numpy(np.int64)
    sources = rows.drop_duplicates(["mac", "a_hi", "a_lo"]).groupby("mac").size()
    many = np.isin(macs, sources.index[sources.to_numpy() >= 2].to_numpy(np.int64))
    return rows[routed | many]
