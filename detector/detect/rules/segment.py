"""What the side-channel rules share: the link facts of isolated segments
(``detector/flows/link.py``), which of them happened on an isolated segment,
and MAC addresses in words and in the policy.

A fact is **on an isolated segment** when one of its addresses (source,
ARP target, DHCP server, offered address or router) is in an isolated network,
when its MAC (or the DHCP client's, or the ARP sender's) belongs to a device
seen with an isolated address in the same scan or declared in
``known_devices``, or when it came tagged with a VLAN on which isolated
devices were seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...networks import NetworkSet, address_text
from ...oui import mac_text, parse_mac, vendor
from ..declare import Kind, Reader, Rule

if TYPE_CHECKING:
    import pandas as pd

    from ...alerts.record import Alert
    from ...policy import Policy
    from ..context import ScanContext

NO_VLAN = 0xFFFF
ARP_REQUEST, ARP_REPLY = 1, 2  # RFC 826
DHCP_OFFER, DHCP_ACK = 2, 5  # RFC 2132 option 53
DHCP6_ADVERTISE, DHCP6_REPLY = 2, 7  # RFC 8415
DHCP_TYPE_NAMES = {DHCP_OFFER: "offer", DHCP_ACK: "ack"}
DHCP6_TYPE_NAMES = {DHCP6_ADVERTISE: "advertise", DHCP6_REPLY: "reply"}


class Macs(Kind):
    """An array of MAC addresses, "00:1b:21:3a:4f:10" or "00-1B-21-3A-4F-10"."""

    type_name = "array of MAC addresses"

    def read(self, reader: Reader, path: str, value: object) -> tuple[str, ...]:
        macs: dict[str, None] = {}
        for index, entry in enumerate(reader.array(path, value)):
            entry_path = f"{path}[{index}]"
            mac = parse_mac(reader.string(entry_path, entry))
            if mac is None:
                reader.fail(
                    entry_path, f"{entry!r} is not a MAC address (write it as 00:1b:21:3a:4f:10)"
                )
            text = mac_text(mac)
            if text in macs:
                reader.fail(entry_path, f"{text} is listed twice")
            macs[text] = None
        return tuple(macs)


def listed(items: list[str], most: int) -> str:
    """'a, b, c and 4 more'."""
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def mac_values(texts: tuple[str, ...]) -> set[int]:
    return {m for m in (parse_mac(t) for t in texts) if m is not None}


def mac_phrase(mac: int) -> str:
    """'00:1b:21:3a:4f:10 (Intel Corporate)'."""
    return f"{mac_text(mac)} ({vendor(mac)})"


def address(hi: Any, lo: Any) -> str:
    return address_text(int(hi), int(lo))


def addresses(rows: pd.DataFrame, side: str) -> list[str]:
    """The distinct ``side`` addresses of ``rows`` ("a" or "b"), in row order."""
    pairs = zip(rows[f"{side}_hi"], rows[f"{side}_lo"], strict=True)
    return list(dict.fromkeys(address(hi, lo) for hi, lo in pairs))


def span(rows: pd.DataFrame) -> tuple[int, int]:
    """The first and last sighting of ``rows`` (link facts), UTC ns."""
    return int(rows["first_ns"].min()), int(rows["last_ns"].max())


def v4(lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IPv4 low halves (the kernel's) as (hi, lo) arrays; 0 stays 0.0.0.0."""
    lo = np.asarray(lo, dtype=np.uint64)
    return np.zeros(len(lo), dtype=np.uint64), lo | np.uint64(0x0000FFFF00000000)


@dataclass(frozen=True)
class Segments:
    """The isolated segments as one scan saw them."""

    facts: pd.DataFrame  # every link fact (detector/flows/link.py)
    devices: frozenset[int]  # MACs seen with an isolated address, or declared known
    vlans: frozenset[int]  # VLANs isolated devices were seen on

    def isolated(self, policy: Policy, hi: Any, lo: Any) -> np.ndarray:
        return policy.isolated.contains(np.asarray(hi, np.uint64), np.asarray(lo, np.uint64))

    def isolated_at(self, policy: Policy, rows: pd.DataFrame, side: str) -> np.ndarray:
        """Which of ``rows`` have their ``side`` address ("a": source or ARP
        sender, "b": ARP target or DHCP server identifier) in an isolated network."""
        return self.isolated(policy, rows[f"{side}_hi"].to_numpy(), rows[f"{side}_lo"].to_numpy())

    def kind_is(self, kind: str, codes: Any = None) -> np.ndarray:
        """Which facts are of one kind ("arp", "device", "dhcp-server", …), with
        one of ``codes`` (ARP opcode, DHCP message type) when given."""
        chosen = self.facts["kind"].to_numpy() == kind
        if codes is not None:
            chosen &= np.isin(self.facts["code"].to_numpy(np.int64), list(codes))
        return np.asarray(chosen, dtype=bool)

    def of(self, kind: str, codes: Any = None) -> pd.DataFrame:
        return self.facts[self.kind_is(kind, codes)]

    def on_segment(self, policy: Policy, rows: pd.DataFrame) -> np.ndarray:
        """Which of ``rows`` (link facts) happened on an isolated segment."""
        inside = self.isolated(policy, rows["a_hi"], rows["a_lo"])
        inside |= self.isolated(policy, rows["b_hi"], rows["b_lo"])
        for column in ("c_lo", "d_lo"):
            values = rows[column].to_numpy(dtype=np.uint64)
            inside |= (values != 0) & self.isolated(policy, *v4(values))
        known = np.array(sorted(self.devices), dtype=np.int64)
        inside |= np.isin(rows["mac"].to_numpy(np.int64), known)
        inside |= np.isin(rows["other_mac"].to_numpy(np.int64), known)
        vlans = np.array(sorted(self.vlans), dtype=np.int64)
        inside |= np.isin(rows["vlan"].to_numpy(np.int64), vlans)
        return np.asarray(inside, dtype=bool)


def card(mac: int) -> dict[str, str]:
    """A network card as alerts' evidence names it: its MAC and the vendor its OUI gives."""
    return {"mac": mac_text(mac), "vendor": vendor(mac)}


def over_segments(
    check: Callable[[ScanContext, Rule, Segments], list[Alert]],
) -> Callable[[ScanContext, Rule], list[Alert]]:
    """Decorator for a side-channel check: it is given the scan's isolated
    segments too, and runs only when the scan looked at their link layer."""

    def run(ctx: ScanContext, rule: Rule) -> list[Alert]:
        seen = segments(ctx)
        return [] if seen is None else check(ctx, rule, seen)

    return run


def segments(ctx: ScanContext, known: tuple[str, ...] = ()) -> Segments | None:
    """The scan's isolated segments, or None when the scan looked at no link
    layer (no isolated networks, or not a scan of captures)."""
    facts = getattr(ctx, "link", None)
    if facts is None or not ctx.policy.isolated:
        return None
    policy = ctx.policy
    kinds = facts["kind"].to_numpy()
    device = kinds == "device"
    arp = kinds == "arp"
    devices = set(facts["mac"].to_numpy(np.int64)[device].tolist())
    arp_rows = facts[arp]
    senders = policy.isolated.contains(
        arp_rows["a_hi"].to_numpy(np.uint64), arp_rows["a_lo"].to_numpy(np.uint64)
    )
    devices |= set(arp_rows["other_mac"].to_numpy(np.int64)[senders].tolist())
    vlans = set(facts["vlan"].to_numpy(np.int64)[device].tolist()) - {NO_VLAN}
    return Segments(facts, frozenset(devices | mac_values(known)), frozenset(vlans))


def network_of(policy: Policy, text: str) -> str:
    """The isolated network (CIDR) holding address ``text``, most specific first."""
    import ipaddress

    ip = ipaddress.ip_address(text)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    best = None
    for net in policy.isolated.networks:
        if ip.version != net.version or ip not in net:
            continue
        if best is None or net.prefixlen > best.prefixlen:
            best = net
    return str(best) if best is not None else "an isolated network"


def in_networks(networks: NetworkSet, hi: Any, lo: Any) -> np.ndarray:
    return networks.contains(np.asarray(hi, np.uint64), np.asarray(lo, np.uint64))
