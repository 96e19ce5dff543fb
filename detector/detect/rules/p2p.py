"""p2p: a P2P client on an internal host (bulletin No. 3 bans P2P software)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...alerts.record import Alert
from ...flows.payload import P2P_NAMES, P2P_SIGNATURE
from ...flows.records import TRANSPORT_NAMES
from ...networks import address_text
from ..declare import PAYLOAD, Detection, Rule
from .common import internal_side, over_facts, when

if TYPE_CHECKING:
    from ..context import ScanContext
    from ..packets import PacketContext


DETECTION = Detection(
    rule_id="p2p",
    title="P2P client on an internal host",
    severity=3,
    catches="a P2P client on an internal host (BitTorrent, DHT, uTP, trackers, eDonkey, Gnutella)",
    why_it_matters=(
        "P2P software is banned (bulletin No. 3): it shares files with strangers and "
        "can publish a whole folder of documents to the internet."
    ),
    description="""\
Bulletin No. 3: no P2P software. Fires for an internal host that sends or
receives a P2P signature, whoever the other side is (outside peers, or the LAN's
multicast for local peer discovery): the BitTorrent handshake
(`\\x13BitTorrent protocol`), DHT queries (bencoded `2:id20:`), a uTP SYN, a
tracker announce (`info_hash=`, or the UDP tracker protocol id), local peer
discovery (`BT-SEARCH *`), an eDonkey/eMule hello, a Gnutella handshake. One
alert per host with the signatures and the number of peers. Known misses:
BitTorrent over TLS or with protocol encryption, which has no signature.""",
    # One incident per host, whoever its busiest peer (that can change as the client runs).
    incident=lambda alert: None,
)


@DETECTION.checks(over=PAYLOAD)
@over_facts("p2p-signature")
def check_p2p(ctx: ScanContext, rule: Rule, p2p: pd.DataFrame) -> list[Alert]:
    policy = ctx.policy
    src_in, dst_in = internal_side(p2p, policy)
    alerts: list[Alert] = []
    # The host is the internal end; a packet between two internal hosts counts for both.
    sides = []
    for mask, h, p in ((src_in, "src", "dst"), (dst_in & ~src_in, "dst", "src")):
        part = p2p[mask]
        sides.append(
            part.assign(
                host_hi=part[f"{h}_hi"], host_lo=part[f"{h}_lo"],
                peer_hi=part[f"{p}_hi"], peer_lo=part[f"{p}_lo"],
                peer_port=part["dport" if h == "src" else "sport"],
            )
        )  # fmt: skip
    oriented = pd.concat(sides, ignore_index=True)
    for (h_hi, h_lo), rows in oriented.groupby(["host_hi", "host_lo"], sort=True):
        host = address_text(int(h_hi), int(h_lo))  # type: ignore[call-overload]
        peers = rows.groupby(["peer_hi", "peer_lo"]).size().sort_values(ascending=False)
        signatures = sorted({P2P_NAMES[int(s)] for s in rows[P2P_SIGNATURE]})
        top_hi, top_lo = peers.index[0]
        top = address_text(int(top_hi), int(top_lo))
        start, end = int(rows["ts_ns"].min()), int(rows["ts_ns"].max())
        alert = rule.alert(
            start, end, host,
            source_packets=len(rows),
            destination_ip=top,
            transport=TRANSPORT_NAMES.get(int(rows["proto"].iloc[0]), None),
            direction="egress" if policy.is_external(np.array([top_hi], np.uint64),
                                                     np.array([top_lo], np.uint64))[0]
            else "internal",
            text=(
                f"{host} runs a P2P client: {', '.join(signatures)} seen with {len(peers):,} "
                f"peer(s) {when(start, end, policy)}; P2P software is banned on "
                "official computers"
            ),
            evidence={"signatures": signatures, "peers": len(peers),
                      "packets_matched": len(rows)},
        )  # fmt: skip
        alerts.append(alert)
    return alerts


@DETECTION.watches
def p2p_packets(packets: PacketContext) -> set[tuple[int, int]]:
    """In a live sensor, at once: each internal host at either end of a packet
    carrying a P2P signature."""
    facts = packets.facts
    if facts is None or not len(facts["kind"]):
        return set()
    found = facts["kind"] == "p2p-signature"
    sightings: set[tuple[int, int]] = set()
    for side in ("src", "dst"):
        hi, lo = facts[f"{side}_hi"][found], facts[f"{side}_lo"][found]
        inside = packets.policy.internal.contains(hi, lo)
        sightings |= set(zip(hi[inside].tolist(), lo[inside].tolist(), strict=True))
    return sightings
