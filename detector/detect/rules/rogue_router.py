"""rogue-router: a way out of an isolated segment that should not be there: an
IPv6 router advertisement, a second gateway, or two cards claiming one address
(issue 20, item 9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...alerts.record import Alert
from ...oui import mac_text, vendor
from ..declare import TRAFFIC, Detection, Setting
from .common import when
from .segment import ARP_REPLY, ARP_REQUEST, Macs, address, listed, mac_phrase, mac_values, segments

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
- **second gateway**: frames addressed to isolated computers from outside
  addresses (external: beyond `networks.internal`) are delivered by the
  gateway's card; more than
  one card doing so, or (with `gateways` given) any card not in `gateways`, is
  a new gateway. With neither `gateways` nor a second card, one gateway is
  taken as the site's;
- **address claimed by two cards**: two or more cards answering ARP for the
  same isolated address (RFC 826 replies and gratuitous announcements), the
  way an impostor takes over the gateway's address (ARP spoofing).""",
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
            "The cards (MAC addresses) that may deliver traffic from outside addresses to "
            "isolated computers. Empty: the first card seen doing so, and only one.",
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


def _advertisements(ctx: ScanContext, rows: pd.DataFrame, allowed: set[int]) -> list[Alert]:
    rule, policy = DETECTION, ctx.policy
    settings = policy.rule(rule.rule_id)
    alerts: list[Alert] = []
    macs = rows["mac"].to_numpy(np.int64)
    for mac in np.unique(macs).tolist():
        if mac in allowed:
            continue
        group = rows[macs == mac]
        first = group.iloc[int(np.argmin(group["first_ns"].to_numpy()))]
        source = address(first["a_hi"], first["a_lo"])
        start, end = int(group["first_ns"].min()), int(group["last_ns"].max())
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
            settings.severity, start, end, source, text, source_packets=frames,
            transport="ipv6-icmp", direction="internal",
            evidence={"sign": "router-advertisement", "mac": mac_text(mac),
                      "vendor": vendor(mac), "router_lifetime_s": lifetime},
        ))  # fmt: skip
    return alerts


def _gateways(ctx: ScanContext, rows: pd.DataFrame, allowed: set[int]) -> list[Alert]:
    rule, policy = DETECTION, ctx.policy
    settings = policy.rule(rule.rule_id)
    if not len(rows):
        return []
    firsts = rows.groupby("mac", sort=False)["first_ns"].min().sort_values(kind="stable")
    macs = firsts.index.to_numpy(np.int64).tolist()
    # Without a list, the first card seen is taken as the site's gateway.
    new = [m for m in macs if m not in allowed] if allowed else macs[1:]
    alerts: list[Alert] = []
    for mac in new:
        group = rows[rows["mac"].to_numpy(np.int64) == mac]
        start, end = int(group["first_ns"].min()), int(group["last_ns"].max())
        sources = list(dict.fromkeys(address(h, lo) for h, lo in zip(group["a_hi"], group["a_lo"],
                                                                     strict=True)))  # fmt: skip
        others = [mac_text(m) for m in macs if m != mac]
        besides = (
            f"besides {', '.join(others[:3])}"
            if others
            else f"not one of the {len(allowed)} gateway card(s) the policy names"
        )
        shown = listed(sources, 3)
        text = (
            f"a second gateway into an isolated segment: MAC {mac_phrase(mac)} delivered "
            f"traffic from outside ({shown}) to isolated computers "
            f"{when(start, end, policy)}, {besides}"
        )
        alerts.append(rule.alert(
            settings.severity, start, end, sources[0], text, direction="inbound",
            evidence={"sign": "second-gateway", "mac": mac_text(mac), "vendor": vendor(mac),
                      "gateways": [mac_text(m) for m in macs], "sources": sources[:20]},
        ))  # fmt: skip
    return alerts


def _claims(ctx: ScanContext, rows: pd.DataFrame) -> list[Alert]:
    rule, policy = DETECTION, ctx.policy
    settings = policy.rule(rule.rule_id)
    alerts: list[Alert] = []
    for (hi, lo), group in rows.groupby(["a_hi", "a_lo"], sort=True):
        firsts = group.groupby("other_mac", sort=False)["first_ns"].min().sort_values(kind="stable")
        if len(firsts) < 2:
            continue
        claimed = address(hi, lo)
        macs = firsts.index.to_numpy(np.int64).tolist()
        start, end = int(group["first_ns"].min()), int(group["last_ns"].max())
        text = (
            f"{len(macs)} network cards claimed the isolated address {claimed} in ARP "
            f"{when(start, end, policy)}: {', '.join(mac_phrase(m) for m in macs[:4])}; "
            "one of them may be impersonating the other (ARP spoofing)"
        )
        alerts.append(rule.alert(
            settings.severity, start, end, claimed, text, source_packets=int(group["count"].sum()),
            direction="internal",
            evidence={"sign": "address-claimed-twice", "macs": [mac_text(m) for m in macs],
                      "vendors": [vendor(m) for m in macs]},
        ))  # fmt: skip
    return alerts


@DETECTION.checks(over=TRAFFIC)
def check_rogue_router(ctx: ScanContext) -> list[Alert]:
    settings = ctx.policy.rule(DETECTION.rule_id)
    seen = segments(ctx)
    if seen is None:
        return []
    policy = ctx.policy
    facts = seen.facts
    kinds = facts["kind"].to_numpy()
    adverts = facts[kinds == "router-advert"]
    adverts = adverts[seen.on_segment(policy, adverts)]
    arp = facts[kinds == "arp"]
    codes = arp["code"].to_numpy(np.int64)
    announce = (codes == ARP_REPLY) | (
        (codes == ARP_REQUEST)
        & (arp["a_lo"].to_numpy(np.uint64) == arp["b_lo"].to_numpy(np.uint64))
    )
    arp = arp[announce]
    arp = arp[policy.isolated.contains(arp["a_hi"].to_numpy(np.uint64),
                                       arp["a_lo"].to_numpy(np.uint64))]  # fmt: skip
    # Traffic from outside the site: an internal computer reaching an isolated one
    # is isolated-egress's (direction internal), and may come from its own card.
    forwarded = facts[kinds == "forwarder"]
    forwarded = forwarded[ctx.policy.is_external(
        forwarded["a_hi"].to_numpy(np.uint64), forwarded["a_lo"].to_numpy(np.uint64))]  # fmt: skip
    return [
        *_advertisements(ctx, adverts, mac_values(settings["routers"])),
        *_gateways(ctx, forwarded, mac_values(settings["gateways"])),
        *_claims(ctx, arp),
    ]
