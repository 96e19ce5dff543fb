"""Addresses and networks as the detector stores them.

Addresses are 128-bit pairs of uint64 (``hi``, ``lo``); IPv4 is IPv4-mapped IPv6
(``::ffff:a.b.c.d``: ``hi == 0``, ``lo == 0x0000FFFF00000000 | ipv4``), so one
column holds both families. ``NetworkSet`` tests whole arrays of them at once;
``address_pair`` and ``address_text`` convert one address to and from text.

This module imports numpy only: the policy, the features, the rules and the
report all use it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

import numpy as np

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_UINT64_MASK = (1 << 64) - 1
_IPV4_MAPPED = 0x0000_FFFF_0000_0000  # ::ffff:0:0/96, low half (RFC 4291 §2.5.5.2)


def address_pair(address: str) -> tuple[int, int]:
    """The (hi, lo) pair of an address written as text ("10.8.40.31", "2001:db8::1")."""
    ip = ipaddress.ip_address(address)
    return _address_pair(int(ip), ip.version)


def address_text(hi: int, lo: int) -> str:
    """Text form of a 128-bit address; IPv4-mapped addresses print as IPv4."""
    value = (hi << 64) | lo
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


def _address_pair(address: int, version: int) -> tuple[int, int]:
    """An address as the project's (hi, lo) pair; IPv4 becomes IPv4-mapped."""
    if version == 4:
        return 0, _IPV4_MAPPED | address
    return address >> 64, address & _UINT64_MASK


# Up to this many ranges sharing one hi value are compared one by one; more are
# looked up with searchsorted (one pass over the addresses either way per group).
_DIRECT_RANGES = 8


class NetworkSet:
    """An immutable set of IPv4 and IPv6 networks.

    ``contains`` tests (hi, lo) address arrays: IPv4 networks match IPv4-mapped
    addresses, IPv6 networks native ones (an IPv6 network that covers
    ``::ffff:0:0/96`` therefore matches IPv4 addresses too, as the addresses are
    stored that way). Each network is an inclusive range of 128-bit values
    compared as (hi, lo) pairs; ranges inside one ``hi`` value (every IPv4
    network, IPv6 /64 and longer) are grouped by that value, wider ranges are
    compared one by one.
    """

    __slots__ = ("networks", "_collapsed", "_narrow", "_wide")

    networks: tuple[IPNetwork, ...]
    _collapsed: tuple[IPNetwork, ...]
    _narrow: tuple[tuple[np.uint64, np.ndarray, np.ndarray], ...]
    _wide: tuple[tuple[np.uint64, np.uint64, np.uint64, np.uint64], ...]

    def __init__(self, networks: Iterable[IPNetwork | str] = ()) -> None:
        parsed = list(
            dict.fromkeys(
                item if isinstance(item, IPNetwork) else ipaddress.ip_network(item)
                for item in networks
            )
        )
        v4 = [n for n in parsed if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in parsed if isinstance(n, ipaddress.IPv6Network)]
        collapsed: list[IPNetwork] = [
            *ipaddress.collapse_addresses(v4),
            *ipaddress.collapse_addresses(v6),
        ]
        # Inclusive (hi, lo) ranges. Collapsed networks are disjoint, so ranges
        # sharing one hi value can be searched as sorted starts.
        narrow: dict[int, list[tuple[int, int]]] = {}
        wide: list[tuple[np.uint64, np.uint64, np.uint64, np.uint64]] = []
        for net in collapsed:
            start_hi, start_lo = _address_pair(int(net.network_address), net.version)
            end_hi, end_lo = _address_pair(int(net.broadcast_address), net.version)
            if start_hi == end_hi:
                narrow.setdefault(start_hi, []).append((start_lo, end_lo))
            else:
                wide.append(
                    (np.uint64(start_hi), np.uint64(start_lo), np.uint64(end_hi), np.uint64(end_lo))
                )
        narrow_groups = tuple(
            (
                np.uint64(hi),
                np.array(sorted(s for s, _ in spans), dtype=np.uint64),
                np.array([e for _, e in sorted(spans)], dtype=np.uint64),
            )
            for hi, spans in sorted(narrow.items())
        )
        set_attribute = object.__setattr__  # the set is immutable once built
        set_attribute(self, "networks", tuple(parsed))
        set_attribute(self, "_collapsed", tuple(collapsed))
        set_attribute(self, "_narrow", narrow_groups)
        set_attribute(self, "_wide", tuple(wide))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"NetworkSet is immutable (cannot set {name!r})")

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """True where the address (hi[i], lo[i]) is in one of the networks."""
        hi = np.asarray(hi, dtype=np.uint64)
        lo = np.asarray(lo, dtype=np.uint64)
        if hi.shape != lo.shape:
            hi, lo = np.broadcast_arrays(hi, lo)
        inside = np.zeros(hi.shape, dtype=bool)
        for range_hi, starts, ends in self._narrow:
            same_hi = hi == range_hi
            if len(starts) <= _DIRECT_RANGES:
                # start ≤ lo ≤ end as one unsigned compare: below start, lo - start
                # wraps to more than end - start.
                for start, end in zip(starts, ends, strict=True):
                    inside |= same_hi & ((lo - start) <= (end - start))
            else:
                index = np.searchsorted(starts, lo, side="right") - 1
                below_end = lo <= ends[np.maximum(index, 0)]
                inside |= same_hi & (index >= 0) & below_end
        for start_hi, start_lo, end_hi, end_lo in self._wide:
            after_start = (hi > start_hi) | ((hi == start_hi) & (lo >= start_lo))
            before_end = (hi < end_hi) | ((hi == end_hi) & (lo <= end_lo))
            inside |= after_start & before_end
        return inside

    def contains_text(self, address: str) -> bool:
        """Whether one address written as text is in the set (``::ffff:a.b.c.d``
        counts as the IPv4 address it maps). Raises ValueError for non-addresses."""
        ip = ipaddress.ip_address(address)
        hi, lo = _address_pair(int(ip), ip.version)
        found = self.contains(np.array([hi], dtype=np.uint64), np.array([lo], dtype=np.uint64))
        return bool(found[0])

    def canonical(self) -> list[str]:
        """The networks merged and sorted (IPv4 first): what the set really covers."""
        return [str(net) for net in self._collapsed]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        return len(self.networks)

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self.networks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkSet):
            return NotImplemented
        return self._collapsed == other._collapsed

    def __hash__(self) -> int:
        return hash(self._collapsed)

    def __str__(self) -> str:
        return ", ".join(str(net) for net in self.networks)

    def __repr__(self) -> str:
        return f"NetworkSet([{', '.join(repr(str(net)) for net in self.networks)}])"


# Addresses that are not "another host" (RFC 6890 special-purpose registries):
# this network, loopback, link-local, multicast, reserved + limited broadcast.
LOCAL_SCOPE = NetworkSet(
    [
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",  # includes 255.255.255.255, the limited broadcast
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
    ]
)
# RFC 1918 private IPv4 and RFC 4193 unique local IPv6.
DEFAULT_INTERNAL = NetworkSet(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])
