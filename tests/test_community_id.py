"""Community ID v1: the numba kernel and the one-flow Python version against the
reference ``communityid`` package, on random flows of every kind."""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import pytest

from detector.flows.community_id import ICMP4_PAIRS, ICMP6_PAIRS, community_id_v1
from detector.flows.records import _community_ids

communityid = pytest.importorskip("communityid", reason="the reference package (test extra)")

MAPPED = 0xFFFF << 32


def _random_flows(n: int, seed: int):
    rng = random.Random(seed)
    flows = []
    for _ in range(n):
        v4 = rng.random() < 0.6
        proto = rng.choice([6, 17, 132, 1, 58, 47, 50])
        if proto == 1 and not v4:
            proto = 58
        if proto == 58 and v4:
            proto = 1
        if v4:
            a, b = (MAPPED | rng.getrandbits(32) for _ in range(2))
        else:
            a, b = (rng.getrandbits(128) for _ in range(2))
        if rng.random() < 0.05:
            b = a  # a host talking to itself
        if proto in (1, 58):
            pairs = ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS
            t = rng.choice(list(pairs) + [3, 11, 5, 1, 2, 4, 135])
            sport, dport = (t, pairs[t]) if t in pairs else (t, rng.randrange(16))
        elif proto in (6, 17, 132):
            sport, dport = rng.randrange(65536), rng.randrange(65536)
            if rng.random() < 0.05:
                dport = sport
        else:
            sport = dport = 0
        flows.append((a, b, proto, sport, dport, v4))
    return flows


def _reference(a, b, proto, sport, dport, v4):
    text = (
        (lambda x: str(ipaddress.IPv4Address(x & 0xFFFFFFFF)))
        if v4
        else (lambda x: str(ipaddress.IPv6Address(x)))
    )
    cid = communityid.CommunityID(seed=0)
    if proto in (1, 58, 6, 17, 132):
        tpl = communityid.FlowTuple(proto, text(a), text(b), sport, dport)
    else:
        tpl = communityid.FlowTuple(proto, text(a), text(b))
    return cid.calc(tpl)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernel_and_python_match_the_reference_package(seed):
    flows = _random_flows(2000, seed)
    expected = [_reference(*f) for f in flows]
    hi = lambda x: np.uint64(x >> 64)  # noqa: E731
    lo = lambda x: np.uint64(x & (2**64 - 1))  # noqa: E731
    got = _community_ids(
        np.array([hi(f[0]) for f in flows], np.uint64),
        np.array([lo(f[0]) for f in flows], np.uint64),
        np.array([hi(f[1]) for f in flows], np.uint64),
        np.array([lo(f[1]) for f in flows], np.uint64),
        np.array([f[2] for f in flows], np.uint8),
        np.array([f[3] for f in flows], np.int64),
        np.array([f[4] for f in flows], np.int64),
        np.array([f[5] for f in flows], bool),
    )
    assert list(got) == expected
    for (a, b, proto, sport, dport, v4), want in zip(flows[:300], expected[:300], strict=True):
        size = 4 if v4 else 16
        mask = 0xFFFFFFFF if v4 else 2**128 - 1
        one = community_id_v1(
            (a & mask).to_bytes(size, "big"), (b & mask).to_bytes(size, "big"), proto, sport, dport
        )
        assert one == want


def test_ipv6_flow_with_ipv4_mapped_addresses_hashes_16_bytes():
    a, b = MAPPED | 0x0A000001, MAPPED | 0x0A000002
    got = _community_ids(
        np.array([0], np.uint64),
        np.array([a], np.uint64),
        np.array([0], np.uint64),
        np.array([b], np.uint64),
        np.array([17], np.uint8),
        np.array([1]),
        np.array([2]),
        np.array([False]),
    )
    assert got[0] == _reference(a, b, 17, 1, 2, False)


def test_spec_example():
    # The Community ID specification's own example (TCP 128.232.110.120:34855 → 66.35.250.204:80).
    a, b = (
        MAPPED | int(ipaddress.IPv4Address("128.232.110.120")),
        MAPPED | int(ipaddress.IPv4Address("66.35.250.204")),
    )
    got = _community_ids(
        np.array([0], np.uint64),
        np.array([a], np.uint64),
        np.array([0], np.uint64),
        np.array([b], np.uint64),
        np.array([6], np.uint8),
        np.array([34855]),
        np.array([80]),
        np.array([True]),
    )
    assert got[0] == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
