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
import socket
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


_V16 = np.dtype([("hi", ">u8"), ("lo", ">u8")])  # big-endian: compares as 128-bit numbers
# Beyond this many networks, str() names the first ones and counts the rest.
_SHOWN = 20

Triple = tuple[int, int, int]  # (IP version, network address as an int, prefix length)


def network_triple(text: str) -> Triple:
    """A network written as CIDR text, checked as strictly as
    ``ipaddress.ip_network(text)`` (ValueError for what it refuses, host bits
    included), without making an object: a site's allowlist may hold a million.
    Dotted-quad IPv4 takes a fast path through the C library (whose inet_pton
    refuses what ipaddress refuses: leading zeros, short forms, spaces); all
    else goes through ``ipaddress`` and gets its answer."""
    address, slash, length = text.partition("/")
    if ":" not in address and (not slash or (length.isascii() and length.isdigit())):
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
        except OSError:
            value = -1
        prefix = int(length) if slash else 32
        exact = value >= 0 and prefix <= 32 and (not slash or length == str(prefix))
        if exact and not value & ((1 << (32 - prefix)) - 1):
            return 4, value, prefix
    net = ipaddress.ip_network(text)  # raises ValueError as ip_network does
    return net.version, int(net.network_address), net.prefixlen


def _triple(item: IPNetwork | str | Triple) -> Triple:
    if isinstance(item, tuple):
        return item
    if isinstance(item, str):
        return network_triple(item)
    return item.version, int(item.network_address), item.prefixlen


def _network(triple: Triple) -> IPNetwork:
    version, value, prefix = triple
    if version == 4:
        return ipaddress.IPv4Network((value, prefix))
    return ipaddress.IPv6Network((value, prefix))


def _merged(starts: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
    """Inclusive integer ranges merged where they overlap or touch, sorted."""
    order = sorted(range(len(starts)), key=starts.__getitem__)
    out_starts: list[int] = []
    out_ends: list[int] = []
    for index in order:
        start, end = starts[index], ends[index]
        if out_ends and start <= out_ends[-1] + 1:
            out_ends[-1] = max(out_ends[-1], end)
        else:
            out_starts.append(start)
            out_ends.append(end)
    return out_starts, out_ends


def _merged_v4(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_merged`` for IPv4 ranges (32-bit values in int64), vectorised."""
    if not len(starts):
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1] + 1
    first = np.flatnonzero(new)
    return starts[first], np.maximum.reduceat(ends, first)


def _outermost(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranges (_V16 arrays) sorted by start, without those inside an earlier one:
    an IPv6 network may cover IPv4-mapped space. Ranges of networks nest or part,
    never overlap in part, so what is left is disjoint."""
    order = np.lexsort((~ends["lo"], ~ends["hi"], starts["lo"], starts["hi"]))
    starts, ends = starts[order], ends[order]
    kept = []
    reach = None
    for k in range(len(starts)):
        end = (int(ends["hi"][k]), int(ends["lo"][k]))
        if reach is not None and end <= reach:
            continue
        kept.append(k)
        reach = end
    return starts[kept], ends[kept]


class NetworkSet:
    """An immutable set of IPv4 and IPv6 networks.

    ``contains`` tests (hi, lo) address arrays: IPv4 networks match IPv4-mapped
    addresses, IPv6 networks native ones (an IPv6 network that covers
    ``::ffff:0:0/96`` therefore matches IPv4 addresses too, as the addresses are
    stored that way). Each network is an inclusive range of 128-bit values; the
    ranges are merged into disjoint sorted ones once, and any number of
    addresses is looked up in one vectorised binary search, so a list of a
    million networks costs what a list of ten does per address.
    """

    __slots__ = ("_triples", "_v4", "_v6", "_starts", "_ends_hi", "_ends_lo", "_built")

    _triples: tuple[Triple, ...]
    _v4: tuple[np.ndarray, np.ndarray]  # IPv4 ranges merged: (starts, ends), int64
    _v6: tuple[tuple[int, int], ...]  # IPv6 ranges merged: (start, end)
    _starts: np.ndarray  # disjoint lookup ranges' starts (_V16)
    _ends_hi: np.ndarray
    _ends_lo: np.ndarray
    _built: dict[str, object]  # what is made on first use (the networks as objects)

    def __init__(self, networks: Iterable[IPNetwork | str | Triple] = ()) -> None:
        triples = tuple(dict.fromkeys(map(_triple, networks)))
        v4_values = np.array([v for ver, v, _ in triples if ver == 4], dtype=np.int64)
        v4_prefixes = np.array([p for ver, _, p in triples if ver == 4], dtype=np.int64)
        v4_starts, v4_ends = _merged_v4(v4_values, (1 << (32 - v4_prefixes)) - 1 + v4_values)
        v6_starts, v6_ends = _merged(
            [v for ver, v, _ in triples if ver == 6],
            [v | ((1 << (128 - p)) - 1) for ver, v, p in triples if ver == 6],
        )
        # Lookup ranges as (hi, lo) pairs: IPv4 becomes IPv4-mapped, in one hi (0).
        starts = np.zeros(len(v4_starts) + len(v6_starts), dtype=_V16)
        ends = np.zeros(len(starts), dtype=_V16)
        mapped = np.uint64(_IPV4_MAPPED)
        starts["lo"][: len(v4_starts)] = v4_starts.astype(np.uint64) | mapped
        ends["lo"][: len(v4_starts)] = v4_ends.astype(np.uint64) | mapped
        for k, (start, end) in enumerate(zip(v6_starts, v6_ends, strict=True), len(v4_starts)):
            starts[k] = (start >> 64, start & _UINT64_MASK)
            ends[k] = (end >> 64, end & _UINT64_MASK)
        if v6_starts:
            starts, ends = _outermost(starts, ends)
        set_attribute = object.__setattr__  # the set is immutable once built
        set_attribute(self, "_triples", triples)
        set_attribute(self, "_v4", (v4_starts, v4_ends))
        set_attribute(self, "_v6", tuple(zip(v6_starts, v6_ends, strict=True)))
        set_attribute(self, "_starts", starts.view("V16"))
        set_attribute(self, "_ends_hi", ends["hi"].astype(np.uint64))
        set_attribute(self, "_ends_lo", ends["lo"].astype(np.uint64))
        set_attribute(self, "_built", {})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"NetworkSet is immutable (cannot set {name!r})")

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        """The networks as given (duplicates once), as ``ipaddress`` objects."""
        if "networks" not in self._built:
            self._built["networks"] = tuple(_network(t) for t in self._triples)
        return self._built["networks"]  # type: ignore[return-value]

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """True where the address (hi[i], lo[i]) is in one of the networks."""
        hi = np.asarray(hi, dtype=np.uint64)
        lo = np.asarray(lo, dtype=np.uint64)
        if hi.shape != lo.shape:
            hi, lo = np.broadcast_arrays(hi, lo)
        if not len(self._starts) or hi.size == 0:
            return np.zeros(hi.shape, dtype=bool)
        flat_hi, flat_lo = hi.reshape(-1), lo.reshape(-1)
        query = np.empty(len(flat_hi), dtype=_V16)
        query["hi"], query["lo"] = flat_hi, flat_lo
        # The last range starting at or before each address; inside if it ends after it.
        index = np.searchsorted(self._starts, query.view("V16"), side="right") - 1
        found = np.maximum(index, 0)
        end_hi, end_lo = self._ends_hi[found], self._ends_lo[found]
        inside = (index >= 0) & ((flat_hi < end_hi) | ((flat_hi == end_hi) & (flat_lo <= end_lo)))
        return inside.reshape(hi.shape)

    def contains_text(self, address: str) -> bool:
        """Whether one address written as text is in the set (``::ffff:a.b.c.d``
        counts as the IPv4 address it maps). Raises ValueError for non-addresses."""
        hi, lo = address_pair(address)
        found = self.contains(np.array([hi], dtype=np.uint64), np.array([lo], dtype=np.uint64))
        return bool(found[0])

    def canonical(self) -> list[str]:
        """The networks merged and sorted (IPv4 first): what the set really covers."""
        if "canonical" not in self._built:
            texts: list[str] = []
            ranges = [(4, int(a), int(b)) for a, b in zip(*self._v4, strict=True)]
            for version, start, end in ranges + [(6, a, b) for a, b in self._v6]:
                size = end - start + 1
                if version == 4 and size & (size - 1) == 0 and start % size == 0:
                    # One network, the usual case: written without making objects.
                    text = socket.inet_ntop(socket.AF_INET, start.to_bytes(4, "big"))
                    texts.append(f"{text}/{33 - size.bit_length()}")
                    continue
                cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
                networks = ipaddress.summarize_address_range(cls(start), cls(end))
                texts.extend(str(net) for net in networks)
            self._built["canonical"] = texts
        return list(self._built["canonical"])  # type: ignore[call-overload]

    def __bool__(self) -> bool:
        return bool(self._triples)

    def __len__(self) -> int:
        return len(self._triples)

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self.networks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkSet):
            return NotImplemented
        # The same merged ranges per family is the same canonical() list.
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[bytes, bytes, tuple[tuple[int, int], ...]]:
        return self._v4[0].tobytes(), self._v4[1].tobytes(), self._v6

    def __str__(self) -> str:
        shown = ", ".join(str(_network(t)) for t in self._triples[:_SHOWN])
        if len(self._triples) > _SHOWN:
            shown += f", … ({len(self._triples):,} networks)"
        return shown

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
# The stand-in for outside addresses a scan under a flood counts together
# (detector/flows/fold.py): 100::, in RFC 6666's discard-only prefix 100::/64,
# which no real traffic uses. Always outside, whatever the policy says.
FOLDED_HI = 0x0100_0000_0000_0000
FOLDED_LO = 0
FOLDED_ADDRESS = "100::"


def address_ids(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ids for 128-bit addresses (ids in order of first appearance), and
    each id's (hi, lo).

    Hash factorisation (pandas) rather than np.unique on (hi, lo) records: the
    latter sorts, 8 s for the 2.8 million addresses of a 20M-packet scan.
    """
    import pandas as pd

    lo_codes, lo_values = pd.factorize(lo)
    if not hi.any():  # IPv4 only (IPv4-mapped): the low half is the address
        codes, hi_of, lo_of = lo_codes, np.zeros(len(lo_values), np.uint64), lo_values
    else:
        hi_codes, hi_values = pd.factorize(hi)
        pair = hi_codes.astype(np.int64) * len(lo_values) + lo_codes
        codes, pairs = pd.factorize(pair)
        hi_of = hi_values[pairs // len(lo_values)]
        lo_of = lo_values[pairs % len(lo_values)]
    return (
        codes.astype(np.int64),
        np.asarray(hi_of, dtype=np.uint64),
        np.asarray(lo_of, dtype=np.uint64),
    )


def is_folded(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """True where (hi, lo) is the stand-in of folded outside addresses."""
    return (np.asarray(hi, dtype=np.uint64) == np.uint64(FOLDED_HI)) & (
        np.asarray(lo, dtype=np.uint64) == np.uint64(FOLDED_LO)
    )


# RFC 1918 private IPv4 and RFC 4193 unique local IPv6.
DEFAULT_INTERNAL = NetworkSet(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])
