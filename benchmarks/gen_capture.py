#!/usr/bin/env python3
"""Generate large, realistic classic pcap files quickly, with an exact truth sidecar.

    python benchmarks/gen_capture.py OUT.pcap --packets 2000000 --flows 100000 \
        --snaplen 128 [--full-payload] [--seed 1]

The capture looks like an egress link: a few thousand internal clients talk to a
Zipf-popular set of external servers. Flow sizes are heavy tailed (Lomax/Pareto);
about 75 % of flows are TCP and 25 % UDP, about 4 % IPv6 and 5 % 802.1Q tagged.
TCP flows open with SYN / SYN-ACK / ACK (40-byte option headers on the handshake)
and carry mostly full-MSS data frames (1514 bytes untagged) one way and 66-byte
timestamped ACKs the other; the last two packets of longer flows are FIN-ACKs.
Flows are interleaved over `--span` seconds and records are written in
non-decreasing timestamp order.

Everything is built with numpy, never per packet in Python: per-flow and
per-packet fields are arrays; for each block of `--block` packets the record and
frame headers are built column-wise per header shape, the ragged records are cut
from a zeroed matrix with one boolean mask (the zeros are the payload), and each
block goes out in large sequential writes. 2 M packets take ~6 s; 20 M ~1.5 min.

`OUT.pcap.json` records the exact truth: packet and byte totals, the number of
distinct bidirectional (VLAN, protocol, addresses, ports) keys, and the number of
flows under docs/flows.md's idle/active timeout rules.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

GENERATOR_VERSION = 1

PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
# 2024-03-01T00:00:00Z: a fixed, recent epoch so files are reproducible.
EPOCH_START_US = 1_709_251_200 * 1_000_000

TCP = 6
UDP = 17
UNTAGGED = 0xFFFF  # docs/flows.md: outermost VLAN id, 0xFFFF when untagged

# TCP flags
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10

# IP packet sizes: a 1500-byte MTU, so an untagged full data frame is 1514 bytes and
# a pure IPv4 ACK with the timestamp option (20 + 32) is a 66-byte frame.
MTU = 1500
TCP_HDR = 32  # 20 + NOP NOP TS(10)
TCP_SYN_HDR = 40  # 20 + MSS(4) SACK_PERM(2) TS(10) NOP(1) WS(3), as Linux sends
UDP_HDR = 8
# pcap record header + Ethernet + 802.1Q + IPv6 + TCP with SYN options
RECORD_HDR_MAX = 16 + 14 + 4 + 40 + TCP_SYN_HDR

# Flow kinds drive the direction and size of TCP segments.
DOWNLOAD, UPLOAD, INTERACTIVE = 0, 1, 2
GATEWAY_MAC = 0x001B21A1B2C3


@dataclass
class Flows:
    """Per-flow attributes (index = flow id, in generation order)."""

    proto: np.ndarray  # uint8
    v6: np.ndarray  # bool
    vlan: np.ndarray  # uint16, UNTAGGED when untagged
    cli_hi: np.ndarray  # uint64: 128-bit addresses, IPv4 as ::ffff:a.b.c.d
    cli_lo: np.ndarray
    srv_hi: np.ndarray
    srv_lo: np.ndarray
    cli_mac: np.ndarray  # uint64 (48 bits used)
    sport: np.ndarray  # uint16, client port
    dport: np.ndarray  # uint16, server port
    size: np.ndarray  # int64 packets
    kind: np.ndarray  # uint8 DOWNLOAD / UPLOAD / INTERACTIVE
    ttl_srv: np.ndarray  # uint8 TTL / hop limit seen on server->client packets
    win_cli: np.ndarray  # uint16
    win_srv: np.ndarray
    isn_cli: np.ndarray  # int64 (used mod 2**32)
    isn_srv: np.ndarray
    ipid_cli: np.ndarray  # int64 base of the IPv4 identification counter
    ipid_srv: np.ndarray
    flow_label: np.ndarray  # uint32 (IPv6)
    tsoff_cli: np.ndarray  # int64 TCP timestamp clock offsets
    tsoff_srv: np.ndarray


@dataclass
class Packets:
    """Per-packet fields in flow order (flow 0's packets, then flow 1's, ...)."""

    flow: np.ndarray  # int32
    ts_us: np.ndarray  # int64, absolute, microseconds since the epoch
    s2c: np.ndarray  # bool: server -> client
    l4_hdr: np.ndarray  # uint8: 32 / 40 (TCP) or 8 (UDP)
    payload: np.ndarray  # int32
    flags: np.ndarray  # uint8 TCP flags (0 for UDP)
    seq: np.ndarray  # int64 (mod 2**32)
    ack: np.ndarray
    pos: np.ndarray  # int64 position of the packet in its flow
    wire: np.ndarray  # int64 frame length on the wire


# --------------------------------------------------------------------------- flows


def _zipf_choice(rng: np.random.Generator, n_items: int, size: int, a: float) -> np.ndarray:
    """Draw indices in [0, n_items) with Zipf-like popularity p(k) ~ 1 / (k+1)**a."""
    weights = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** a
    weights /= weights.sum()
    return rng.choice(n_items, size=size, p=weights)


def _public_v4(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random unicast IPv4 addresses outside the private / special /8s."""
    excluded = np.array([0, 10, 100, 127, 169, 172, 192], dtype=np.int64)
    first = rng.integers(1, 224, size=n)
    bad = np.isin(first, excluded)
    while bad.any():
        first[bad] = rng.integers(1, 224, size=int(bad.sum()))
        bad = np.isin(first, excluded)
    rest = rng.integers(1, 1 << 24, size=n)
    return ((first << 24) | rest).astype(np.uint64)


def _v4_mapped(addr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IPv4 as ::ffff:a.b.c.d, the project's 128-bit representation."""
    hi = np.zeros(addr.shape, dtype=np.uint64)
    lo = np.uint64(0xFFFF_0000_0000) | addr.astype(np.uint64)
    return hi, lo


def _flow_sizes(
    rng: np.random.Generator, minimum: np.ndarray, n_packets: int, alpha: float
) -> np.ndarray:
    """Heavy-tailed flow sizes (minimum + Lomax-proportional share) summing to n_packets.

    numpy's `pareto` is the Lomax distribution (Pareto shifted to start at 0), so most
    flows get little or nothing above their minimum and a few elephants get most of
    the packets. Rounding leftovers go to flows in proportion to their weight, which
    keeps the total exact without flattening the tail.
    """
    spare = n_packets - int(minimum.sum())
    if spare < 0:
        raise SystemExit(
            f"--packets {n_packets} is too small for these flows: they need at least "
            f"{int(minimum.sum())} (3 per TCP flow, 1 per UDP flow)"
        )
    weight = rng.pareto(alpha, size=minimum.size)
    if weight.sum() == 0.0:
        weight[:] = 1.0
    share = weight / weight.sum()
    extra = np.floor(share * spare).astype(np.int64)
    leftover = spare - int(extra.sum())
    if leftover:
        extra += np.bincount(
            rng.choice(minimum.size, size=leftover, p=share), minlength=minimum.size
        )
    return minimum.astype(np.int64) + extra


def plan_flows(rng: np.random.Generator, n_flows: int, n_packets: int, alpha: float) -> Flows:
    """Draw every flow's endpoints, protocol, size and per-direction constants."""
    n = n_flows
    proto = np.where(rng.random(n) < 0.75, TCP, UDP).astype(np.uint8)
    v6 = rng.random(n) < 0.04
    tagged = rng.random(n) < 0.05
    # A handful of VLANs, as a trunk port carries.
    vlan_ids = np.array([10, 20, 30, 100, 200, 300, 1001, 4000], dtype=np.uint16)
    vlan = np.where(tagged, vlan_ids[rng.integers(0, vlan_ids.size, n)], UNTAGGED).astype(np.uint16)

    # Internal clients: each has an IPv4 address in 10/8 and an IPv6 SLAAC-looking
    # address in a ULA /64; a few busy clients open most flows.
    n_clients = max(16, n // 50)
    cli_v4 = (np.uint64(10 << 24) + rng.choice(1 << 24, size=n_clients, replace=False)).astype(
        np.uint64
    )
    cli_v6_lo = rng.integers(0, np.iinfo(np.int64).max, size=n_clients, dtype=np.int64).astype(
        np.uint64
    )
    cli_v6_hi = np.uint64(0xFD12_3456_789A_0001)
    client = _zipf_choice(rng, n_clients, n, 0.8)

    # External servers: Zipf popularity (CDNs and big services get most flows).
    n_servers = max(64, n // 5)
    srv_v4 = _public_v4(rng, n_servers)
    srv_v6_hi = np.uint64(0x2001_0DB8_0000_0000) | rng.integers(
        0, 1 << 32, size=n_servers, dtype=np.int64
    ).astype(np.uint64)
    srv_v6_lo = rng.integers(0, np.iinfo(np.int64).max, size=n_servers, dtype=np.int64).astype(
        np.uint64
    )
    server = _zipf_choice(rng, n_servers, n, 1.0)

    c4_hi, c4_lo = _v4_mapped(cli_v4[client])
    s4_hi, s4_lo = _v4_mapped(srv_v4[server])
    cli_hi = np.where(v6, cli_v6_hi, c4_hi)
    cli_lo = np.where(v6, cli_v6_lo[client], c4_lo)
    srv_hi = np.where(v6, srv_v6_hi[server], s4_hi)
    srv_lo = np.where(v6, srv_v6_lo[server], s4_lo)
    cli_mac = (np.uint64(0x0200_0000_0000) + client.astype(np.uint64)).astype(np.uint64)

    is_tcp = proto == TCP
    size = _flow_sizes(rng, np.where(is_tcp, 3, 1), n_packets, alpha)

    # Server ports: web dominates TCP; small UDP flows are mostly DNS, big ones QUIC.
    tcp_ports = np.array([443, 80, 22, 25, 587, 993, 8080, 8443, 3389, 5222])
    tcp_p = np.array([0.62, 0.18, 0.04, 0.02, 0.02, 0.03, 0.03, 0.02, 0.02, 0.02])
    dport = tcp_ports[rng.choice(tcp_ports.size, size=n, p=tcp_p)]
    small_udp = ~is_tcp & (size <= 4)
    big_udp = ~is_tcp & ~small_udp
    dport = np.where(small_udp, np.where(rng.random(n) < 0.8, 53, 123), dport)
    udp_big_ports = np.array([443, 3478, 51820, 500, 1194])
    dport = np.where(
        big_udp,
        udp_big_ports[rng.choice(udp_big_ports.size, size=n, p=[0.7, 0.1, 0.1, 0.05, 0.05])],
        dport,
    )
    odd = rng.random(n) < 0.03  # some traffic to arbitrary high ports
    dport = np.where(odd, rng.integers(1024, 65536, size=n), dport).astype(np.uint16)
    sport = rng.integers(32768, 61000, size=n).astype(np.uint16)

    flows = Flows(
        proto=proto,
        v6=v6,
        vlan=vlan,
        cli_hi=cli_hi.astype(np.uint64),
        cli_lo=cli_lo.astype(np.uint64),
        srv_hi=srv_hi.astype(np.uint64),
        srv_lo=srv_lo.astype(np.uint64),
        cli_mac=cli_mac,
        sport=sport,
        dport=dport,
        size=size,
        kind=rng.choice(3, size=n, p=[0.7, 0.15, 0.15]).astype(np.uint8),
        ttl_srv=rng.integers(40, 61, size=n).astype(np.uint8),
        win_cli=rng.integers(500, 65536, size=n).astype(np.uint16),
        win_srv=rng.integers(500, 65536, size=n).astype(np.uint16),
        isn_cli=rng.integers(0, 1 << 32, size=n, dtype=np.int64),
        isn_srv=rng.integers(0, 1 << 32, size=n, dtype=np.int64),
        ipid_cli=rng.integers(0, 1 << 16, size=n, dtype=np.int64),
        ipid_srv=rng.integers(0, 1 << 16, size=n, dtype=np.int64),
        flow_label=rng.integers(0, 1 << 20, size=n).astype(np.uint32),
        tsoff_cli=rng.integers(0, 1 << 32, size=n, dtype=np.int64),
        tsoff_srv=rng.integers(0, 1 << 32, size=n, dtype=np.int64),
    )
    _make_keys_unique(rng, flows)
    return flows


def _key_matrix(f: Flows) -> np.ndarray:
    """One row per flow: the bidirectional key in canonical endpoint order."""
    a = np.stack([f.cli_hi, f.cli_lo, f.sport.astype(np.uint64)], axis=1)
    b = np.stack([f.srv_hi, f.srv_lo, f.dport.astype(np.uint64)], axis=1)
    # Lexicographic (hi, lo, port) comparison decides which endpoint goes first.
    a_first = (
        (a[:, 0] < b[:, 0])
        | ((a[:, 0] == b[:, 0]) & (a[:, 1] < b[:, 1]))
        | ((a[:, 0] == b[:, 0]) & (a[:, 1] == b[:, 1]) & (a[:, 2] <= b[:, 2]))
    )
    lo_end = np.where(a_first[:, None], a, b)
    hi_end = np.where(a_first[:, None], b, a)
    head = (f.vlan.astype(np.uint64) << np.uint64(8)) | f.proto.astype(np.uint64)
    return np.column_stack([head, lo_end, hi_end])


def _repeated_rows(mat: np.ndarray) -> np.ndarray:
    """Indices of rows equal to an earlier row (in sorted order) of a 2-D array.

    A lexsort over the columns and a neighbour compare: much faster than
    np.unique(axis=0), which sorts opaque void records (16 s for 1 M flows).
    """
    order = np.lexsort(mat.T[::-1])
    ordered = mat[order]
    same = np.all(ordered[1:] == ordered[:-1], axis=1)
    return order[1:][same]


def count_distinct_keys(f: Flows) -> int:
    return int(f.sport.size - _repeated_rows(_key_matrix(f)).size)


def _make_keys_unique(rng: np.random.Generator, f: Flows) -> None:
    """Redraw client ports of flows that repeat another flow's key.

    Popular clients and servers make 5-tuple collisions likely (birthday problem on
    the ephemeral port); unique keys make the truth exact and simple: one generated
    flow is one key, so timeout splits can be counted per generated flow.
    """
    for _ in range(100):
        dup = np.sort(_repeated_rows(_key_matrix(f)))  # index order: reproducible draws
        if dup.size == 0:
            return
        f.sport[dup] = rng.integers(32768, 61000, size=dup.size).astype(np.uint16)
    raise RuntimeError("could not make flow keys unique; use fewer --flows")


# ------------------------------------------------------------------------- packets


def _segment_exclusive_cumsum(
    values: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> np.ndarray:
    """Per-flow running total of `values` before each packet (flows are contiguous)."""
    incl = np.cumsum(values)
    excl = incl - values
    return excl - np.repeat(excl[starts], sizes)


def plan_packets(rng: np.random.Generator, f: Flows, span_s: float, idle_s: float) -> Packets:
    """Expand flows into packets: direction, sizes, flags, sequence numbers, times."""
    sizes = f.size
    n_flows = sizes.size
    starts = np.zeros(n_flows, dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    flow = np.repeat(np.arange(n_flows, dtype=np.int32), sizes)
    n = flow.size
    pos = np.arange(n, dtype=np.int64) - np.repeat(starts, sizes)
    last = np.repeat(sizes, sizes) - 1 - pos  # 0 for a flow's last packet

    is_tcp = np.repeat(f.proto == TCP, sizes)
    v6 = np.repeat(f.v6, sizes)
    kind = np.repeat(f.kind, sizes)

    # Direction: client->server first; then a per-kind bias (downloads have more
    # server->client data segments than client ACKs, but both are numerous).
    p_s2c = np.array([0.6, 0.4, 0.5])[kind]
    s2c = rng.random(n) < p_s2c
    s2c[pos == 0] = False

    # Segment contents. A segment carries data with a probability that depends on
    # its direction and the flow kind; data is a full MSS most of the time.
    p_data = np.where(s2c, np.array([0.95, 0.05, 0.6])[kind], np.array([0.05, 0.95, 0.6])[kind])
    data = rng.random(n) < p_data
    ip_hdr = np.where(v6, 40, 20)
    mss = MTU - ip_hdr - TCP_HDR
    full = rng.random(n) < 0.85
    partial = rng.integers(1, 1 << 30, size=n) % mss + 1
    tcp_payload = np.where(data, np.where(full & (kind != INTERACTIVE), mss, partial), 0)
    tcp_payload = np.where(kind == INTERACTIVE, np.minimum(tcp_payload, 400), tcp_payload)
    flags = np.where(tcp_payload > 0, np.where(tcp_payload < mss, PSH | ACK, ACK), ACK)

    # Handshake and teardown: SYN, SYN-ACK, ACK; FIN-ACK from each side on flows of
    # 7+ packets (short ones look like resets or still-open connections).
    hs = pos < 3
    s2c = np.where(is_tcp & hs, pos == 1, s2c)
    fin = is_tcp & (np.repeat(sizes, sizes) >= 7) & (last < 2)
    s2c = np.where(fin, last == 0, s2c)
    flags = np.where(fin, FIN | ACK, flags)
    flags = np.where(is_tcp & (pos == 0), SYN, flags)
    flags = np.where(is_tcp & (pos == 1), SYN | ACK, flags)
    flags = np.where(is_tcp & (pos == 2), ACK, flags)
    tcp_payload = np.where(hs | fin, 0, tcp_payload)

    # UDP: DNS/NTP-sized datagrams on small flows, full datagrams or small ones on
    # bulk (QUIC-like) flows.
    udp_full = MTU - ip_hdr - UDP_HDR
    small_flow = np.repeat(f.size <= 4, sizes)
    udp_payload = np.where(
        ~small_flow & (rng.random(n) < 0.6), udp_full, rng.integers(24, 300, size=n)
    )
    udp_payload = np.where(np.repeat(f.dport == 123, sizes), 48, udp_payload)  # NTP
    payload = np.where(is_tcp, tcp_payload, udp_payload).astype(np.int32)
    l4_hdr = np.where(is_tcp, np.where(pos < 2, TCP_SYN_HDR, TCP_HDR), UDP_HDR).astype(np.uint8)
    flags = np.where(is_tcp, flags, 0).astype(np.uint8)
    tagged = np.repeat(f.vlan != UNTAGGED, sizes)
    wire = 14 + 4 * tagged + ip_hdr + l4_hdr + payload.astype(np.int64)

    # Sequence numbers: each side's ISN plus what it sent before (SYNs use the ISN).
    c_sent = _segment_exclusive_cumsum(np.where(s2c, 0, payload).astype(np.int64), starts, sizes)
    s_sent = _segment_exclusive_cumsum(np.where(s2c, payload, 0).astype(np.int64), starts, sizes)
    isn_c = np.repeat(f.isn_cli, sizes)
    isn_s = np.repeat(f.isn_srv, sizes)
    syn = is_tcp & (pos < 2)
    seq = np.where(s2c, isn_s + s_sent, isn_c + c_sent) + np.where(syn, 0, 1)
    ack = np.where(s2c, isn_c + 1 + c_sent, isn_s + 1 + s_sent)
    ack = np.where(is_tcp & (pos == 0), 0, ack)

    ts_us = _timestamps(rng, f, starts, pos, span_s, idle_s)
    return Packets(
        flow=flow,
        ts_us=ts_us,
        s2c=s2c,
        l4_hdr=l4_hdr,
        payload=payload,
        flags=flags,
        seq=seq,
        ack=ack,
        pos=pos,
        wire=wire,
    )


def _timestamps(
    rng: np.random.Generator,
    f: Flows,
    starts: np.ndarray,
    pos: np.ndarray,
    span_s: float,
    idle_s: float,
) -> np.ndarray:
    """Absolute packet times: exponential gaps at a per-flow rate, flows spread over the span.

    Most flows are quick (median gap a few ms); 1 % are slow keep-alive style flows
    whose gaps often exceed the idle timeout, and elephants can outlast the active
    timeout, so the timeout rules have something to do. Times are integer
    microseconds (the pcap resolution), summed exactly, so order within a flow holds.
    """
    sizes = f.size
    n_flows = sizes.size
    mean_gap = rng.lognormal(mean=np.log(0.005), sigma=1.5, size=n_flows)
    slow = rng.random(n_flows) < 0.01
    mean_gap[slow] = rng.uniform(0.3 * idle_s, 2.5 * idle_s, size=int(slow.sum()))
    gaps = rng.exponential(1.0, size=pos.size) * np.repeat(mean_gap, sizes)
    gaps[pos == 0] = 0.0
    # Flows longer than the span are slowed down to fit in it.
    dur = np.add.reduceat(gaps, starts) if n_flows else np.zeros(0)
    limit = 0.98 * span_s
    shrink = limit * rng.uniform(0.5, 1.0, n_flows) / np.maximum(dur, 1e-12)
    scale = np.where(dur > limit, shrink, 1.0)
    gaps_us = np.rint(gaps * np.repeat(scale, sizes) * 1e6).astype(np.int64)
    rel = _segment_exclusive_cumsum(gaps_us, starts, sizes) + gaps_us
    dur_us = rel[starts + sizes - 1]
    span_us = int(span_s * 1e6)
    start_us = (rng.random(n_flows) * np.maximum(span_us - dur_us, 0)).astype(np.int64)
    return EPOCH_START_US + np.repeat(start_us, sizes) + rel


# -------------------------------------------------------------------------- truth


def count_timeout_flows(flow: np.ndarray, ts_us: np.ndarray, idle_us: int, active_us: int) -> int:
    """Flows under docs/flows.md's rules, for packets in flow order (keys are unique).

    A packet more than `idle_us` after its flow's last packet, or more than
    `active_us` after its flow's first packet, starts a new flow (both compare with
    `>`). The idle rule is a vectorised gap test; the active rule is sequential, so it
    is replayed only for the stretches that last longer than `active_us`.
    """
    if flow.size == 0:
        return 0
    new_flow = np.ones(flow.size, dtype=bool)
    same = flow[1:] == flow[:-1]
    new_flow[1:] = ~same | (np.diff(ts_us) > idle_us)
    count = int(new_flow.sum())
    # Segments between idle splits that last longer than the active timeout split
    # again; jump from split to split with a binary search (times are sorted).
    seg_start = np.flatnonzero(new_flow)
    seg_end = np.append(seg_start[1:], flow.size)
    for s in np.flatnonzero(ts_us[seg_end - 1] - ts_us[seg_start] > active_us):
        t = ts_us[seg_start[s] : seg_end[s]]
        i = 0
        while True:
            i = int(np.searchsorted(t, t[i] + active_us, side="right"))
            if i >= t.size:
                break
            count += 1
    return count


# -------------------------------------------------------------------------- writer


def _put(rows: np.ndarray, col: int, values: np.ndarray | int, dtype: str) -> None:
    """Store `values` as `dtype` (e.g. '>u2' big-endian) into byte columns of `rows`."""
    width = np.dtype(dtype).itemsize
    rows[:, col : col + width] = (
        np.ascontiguousarray(values).astype(dtype).view(np.uint8).reshape(-1, width)
    )


def _word_sum(rows: np.ndarray, a: int, b: int) -> np.ndarray:
    """Sum of the big-endian 16-bit words in byte columns [a, b) of each row."""
    return np.ascontiguousarray(rows[:, a:b]).view(">u2").sum(axis=1, dtype=np.uint64)


def _fold_complement(total: np.ndarray) -> np.ndarray:
    """Internet checksum: fold the carries of a word sum, then one's complement."""
    total = total.astype(np.uint64)
    for _ in range(3):
        total = (total & np.uint64(0xFFFF)) + (total >> np.uint64(16))
    return (~total & np.uint64(0xFFFF)).astype(np.uint16)


def _build_rows(
    f: Flows,
    p: Packets,
    idx: np.ndarray,
    cap: np.ndarray,
    tagged: bool,
    v6: bool,
    l4: int,
) -> np.ndarray:
    """Record header + frame headers for packets `idx` of one shape class."""
    fl = p.flow[idx]
    s2c = p.s2c[idx]
    n = idx.size
    eth = 14 + (4 if tagged else 0)
    ip_hdr = 40 if v6 else 20
    width = 16 + eth + ip_hdr + l4
    rows = np.zeros((n, width), dtype=np.uint8)

    # pcap record header (little-endian, microseconds).
    ts = p.ts_us[idx]
    wire = p.wire[idx]
    _put(rows, 0, ts // 1_000_000, "<u4")
    _put(rows, 4, ts % 1_000_000, "<u4")
    _put(rows, 8, cap, "<u4")
    _put(rows, 12, wire, "<u4")

    # Ethernet (+ 802.1Q).
    cli_mac = f.cli_mac[fl]
    gw = np.full(n, GATEWAY_MAC, dtype=np.uint64)
    dst_mac = np.where(s2c, cli_mac, gw)
    src_mac = np.where(s2c, gw, cli_mac)
    rows[:, 16:22] = dst_mac.astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
    rows[:, 22:28] = src_mac.astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
    o = 28
    if tagged:
        _put(rows, o, np.full(n, 0x8100), ">u2")
        _put(rows, o + 2, f.vlan[fl], ">u2")
        o += 4
    _put(rows, o, np.full(n, 0x86DD if v6 else 0x0800), ">u2")
    o += 2

    # IP.
    ip_at = o
    payload = p.payload[idx].astype(np.int64)
    l4_len = l4 + payload
    proto = f.proto[fl]
    ttl = np.where(s2c, f.ttl_srv[fl], 64).astype(np.uint8)
    if v6:
        src_hi = np.where(s2c, f.srv_hi[fl], f.cli_hi[fl])
        src_lo = np.where(s2c, f.srv_lo[fl], f.cli_lo[fl])
        dst_hi = np.where(s2c, f.cli_hi[fl], f.srv_hi[fl])
        dst_lo = np.where(s2c, f.cli_lo[fl], f.srv_lo[fl])
        _put(rows, o, np.uint32(0x6000_0000) | f.flow_label[fl], ">u4")
        _put(rows, o + 4, l4_len, ">u2")
        rows[:, o + 6] = proto
        rows[:, o + 7] = ttl
        _put(rows, o + 8, src_hi, ">u8")
        _put(rows, o + 16, src_lo, ">u8")
        _put(rows, o + 24, dst_hi, ">u8")
        _put(rows, o + 32, dst_lo, ">u8")
    else:
        src = np.where(s2c, f.srv_lo[fl], f.cli_lo[fl]) & np.uint64(0xFFFF_FFFF)
        dst = np.where(s2c, f.cli_lo[fl], f.srv_lo[fl]) & np.uint64(0xFFFF_FFFF)
        total_len = 20 + l4_len
        ipid = (np.where(s2c, f.ipid_srv[fl], f.ipid_cli[fl]) + p.pos[idx]) & 0xFFFF
        rows[:, o] = 0x45
        _put(rows, o + 2, total_len, ">u2")
        _put(rows, o + 4, ipid, ">u2")
        _put(rows, o + 6, np.full(n, 0x4000), ">u2")  # DF
        rows[:, o + 8] = ttl
        rows[:, o + 9] = proto
        _put(rows, o + 12, src, ">u4")
        _put(rows, o + 16, dst, ">u4")
        _put(rows, o + 10, _fold_complement(_word_sum(rows, o, o + 20)), ">u2")
    o += ip_hdr

    # Transport: ports as seen in this direction.
    sport = np.where(s2c, f.dport[fl], f.sport[fl])
    dport = np.where(s2c, f.sport[fl], f.dport[fl])
    _put(rows, o, sport, ">u2")
    _put(rows, o + 2, dport, ">u2")
    if l4 == UDP_HDR:
        _put(rows, o + 4, l4_len, ">u2")
    else:
        _tcp_header(f, p, idx, rows, o, l4, ip_hdr)

    # Transport checksum over the pseudo-header and the header: the payload is all
    # zeros, so it adds nothing and the sum is exact even when the snap length cuts
    # the payload. (IPv6 forbids a zero UDP checksum; tshark flags it.)
    total = (
        _word_sum(rows, ip_at + (8 if v6 else 12), o)
        + proto.astype(np.uint64)
        + l4_len.astype(np.uint64)
        + _word_sum(rows, o, o + l4)
    )
    csum = _fold_complement(total)
    if l4 == UDP_HDR:
        csum[csum == 0] = 0xFFFF
    _put(rows, o + (6 if l4 == UDP_HDR else 16), csum, ">u2")
    return rows


def _tcp_header(
    f: Flows, p: Packets, idx: np.ndarray, rows: np.ndarray, o: int, l4: int, ip_hdr: int
) -> None:
    """TCP header from `o` on (ports already written): numbers, flags, options."""
    fl = p.flow[idx]
    s2c = p.s2c[idx]
    n = idx.size
    ts = p.ts_us[idx]
    _put(rows, o + 4, p.seq[idx] & 0xFFFF_FFFF, ">u4")
    _put(rows, o + 8, p.ack[idx] & 0xFFFF_FFFF, ">u4")
    _put(rows, o + 12, ((l4 // 4) << 12) | p.flags[idx].astype(np.int64), ">u2")
    win = np.where(s2c, f.win_srv[fl], f.win_cli[fl])
    if l4 == TCP_SYN_HDR:
        win = np.full(n, 64240)
    _put(rows, o + 14, win, ">u2")
    ms = ts // 1000
    tsval = (ms + np.where(s2c, f.tsoff_srv[fl], f.tsoff_cli[fl])) & 0xFFFF_FFFF
    tsecr = (ms - 1 + np.where(s2c, f.tsoff_cli[fl], f.tsoff_srv[fl])) & 0xFFFF_FFFF
    opt = o + 20
    if l4 == TCP_SYN_HDR:
        syn_only = p.flags[idx] == SYN
        tsecr = np.where(syn_only, 0, tsecr)
        rows[:, opt : opt + 4] = (2, 4, 0, 0)
        _put(rows, opt + 2, MTU - ip_hdr - 20, ">u2")  # MSS
        rows[:, opt + 4 : opt + 8] = (4, 2, 8, 10)  # SACK permitted, TS kind/len
        _put(rows, opt + 8, tsval, ">u4")
        _put(rows, opt + 12, tsecr, ">u4")
        rows[:, opt + 16 : opt + 20] = (1, 3, 3, 7)  # NOP, window scale 7
    else:
        rows[:, opt : opt + 4] = (1, 1, 8, 10)  # NOP NOP TS
        _put(rows, opt + 4, tsval, ">u4")
        _put(rows, opt + 8, tsecr, ">u4")


def write_pcap(
    path: Path,
    f: Flows,
    p: Packets,
    order: np.ndarray,
    snaplen: int,
    full_payload: bool,
    block: int,
) -> int:
    """Write records in `order` (time order), `block` packets per buffer and write."""
    tagged_flow = f.vlan != UNTAGGED
    file_snaplen = 65535 if full_payload else snaplen
    header = np.array([PCAP_MAGIC_US], dtype="<u4").tobytes()
    header += np.array([2, 4], dtype="<u2").tobytes()
    header += np.array([0, 0, file_snaplen, LINKTYPE_ETHERNET], dtype="<u4").tobytes()
    written = len(header)
    # Unbuffered: every write is a whole block, so Python's buffer would only copy.
    with open(path, "wb", buffering=0) as out:
        out.write(header)
        for lo in range(0, order.size, block):
            idx = order[lo : lo + block]
            wire = p.wire[idx]
            cap = wire if full_payload else np.minimum(wire, snaplen)
            # Every packet's record header + frame headers, left-aligned in one row;
            # whatever follows the headers is zero, which is also the payload.
            hdr = np.zeros((idx.size, RECORD_HDR_MAX), dtype=np.uint8)
            fl = p.flow[idx]
            klass = (
                tagged_flow[fl].astype(np.int64) * 4
                + f.v6[fl].astype(np.int64) * 2
                + np.where(p.l4_hdr[idx] == UDP_HDR, 0, 1)
            ) * 2 + (p.l4_hdr[idx] == TCP_SYN_HDR)
            for k in np.unique(klass):
                sel = np.flatnonzero(klass == k)
                tagged, v6 = bool(k & 8), bool(k & 4)
                l4 = UDP_HDR if not (k & 2) else (TCP_SYN_HDR if k & 1 else TCP_HDR)
                rows = _build_rows(f, p, idx[sel], cap[sel], tagged, v6, l4)
                hdr[sel, : rows.shape[1]] = rows
            written += _write_records(out, hdr, 16 + cap)
    return written


def _write_records(out: BinaryIO, hdr: np.ndarray, rec_len: np.ndarray) -> int:
    """Write record i as hdr[i] cut or zero-padded to rec_len[i] bytes.

    Records are laid out as rows of a zeroed (n, longest record) matrix and the
    ragged records are pulled out with one boolean mask: a sequential copy, far
    faster than scattering header bytes to computed offsets. Rows are processed
    in slices of about 64 MB so full-payload blocks stay bounded in memory.
    """
    longest = int(rec_len.max())
    width = min(hdr.shape[1], longest)
    step = max(1, (64 << 20) // longest)
    columns = np.arange(longest)
    written = 0
    for lo in range(0, rec_len.size, step):
        lens = rec_len[lo : lo + step]
        grid = np.zeros((lens.size, longest), dtype=np.uint8)
        grid[:, :width] = hdr[lo : lo + step, :width]
        records = grid[columns < lens[:, None]]
        out.write(records.data)
        written += records.size
    return written


# ---------------------------------------------------------------------------- main


def generate(
    out: Path,
    packets: int,
    flows: int,
    snaplen: int = 128,
    full_payload: bool = False,
    seed: int = 1,
    span_s: float = 3600.0,
    alpha: float = 1.2,
    block: int = 256 * 1024,
    idle_s: float = 120.0,
    active_s: float = 1800.0,
) -> dict[str, Any]:
    """Write `out` and `out`.json; return the truth summary (also in the sidecar)."""
    if flows < 1 or packets < 1:
        raise SystemExit("--packets and --flows must be positive")
    if snaplen < 16 and not full_payload:
        raise SystemExit("--snaplen must be at least 16")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    f = plan_flows(rng, flows, packets, alpha)
    p = plan_packets(rng, f, span_s, idle_s)
    # Stable sort keeps a flow's packets in order when their microseconds tie.
    order = np.argsort(p.ts_us, kind="stable")
    t_plan = time.perf_counter() - t0
    file_bytes = write_pcap(out, f, p, order, snaplen, full_payload, block)
    t_write = time.perf_counter() - t0 - t_plan

    cap = p.wire if full_payload else np.minimum(p.wire, snaplen)
    pkt_v6 = np.repeat(f.v6, f.size)
    pkt_tcp = np.repeat(f.proto == TCP, f.size)
    truncated = cap < p.wire
    tagged = f.vlan != UNTAGGED
    truth = {
        "generator": f"benchmarks/gen_capture.py v{GENERATOR_VERSION}",
        "args": {
            "packets": packets, "flows": flows, "snaplen": snaplen,
            "full_payload": full_payload, "seed": seed, "span_s": span_s, "alpha": alpha,
        },
        "format": "pcap, little-endian, microseconds, linktype 1 (Ethernet)",
        "file_bytes": file_bytes,
        "packets": int(p.wire.size),
        "wire_bytes": int(p.wire.sum()),
        "cap_bytes": int(cap.sum()),
        "packets_tcp": int(pkt_tcp.sum()),
        "packets_udp": int((~pkt_tcp).sum()),
        "packets_ipv4": int((~pkt_v6).sum()),
        "packets_ipv6": int(pkt_v6.sum()),
        "packets_vlan": int(np.repeat(tagged, f.size).sum()),
        "packets_truncated": int(truncated.sum()),
        "packets_truncated_ipv4": int((truncated & ~pkt_v6).sum()),
        "packets_truncated_ipv6": int((truncated & pkt_v6).sum()),
        "flows": count_distinct_keys(f),
        "flows_tcp": int((f.proto == TCP).sum()),
        "flows_udp": int((f.proto == UDP).sum()),
        "flows_ipv6": int(f.v6.sum()),
        "flows_vlan": int(tagged.sum()),
        "largest_flow_packets": int(f.size.max()),
        "flows_with_timeouts": {
            "idle_timeout_s": idle_s,
            "active_timeout_s": active_s,
            "flows": count_timeout_flows(
                p.flow, p.ts_us, int(idle_s * 1e6), int(active_s * 1e6)
            ),
        },
        "first_ts_ns": int(p.ts_us[order[0]]) * 1000,
        "last_ts_ns": int(p.ts_us[order[-1]]) * 1000,
        "seconds": {"plan": round(t_plan, 3), "write": round(t_write, 3)},
    }  # fmt: skip
    Path(f"{out}.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output .pcap (the truth goes to OUT.json)")
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--snaplen", type=int, default=128, help="headers-only cut (default 128)")
    ap.add_argument("--full-payload", action="store_true", help="write whole frames")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--span", type=float, default=3600.0, help="seconds covered (default 1 h)")
    ap.add_argument("--alpha", type=float, default=1.2, help="Pareto shape of flow sizes")
    ap.add_argument("--block", type=int, default=256 * 1024, help="packets per write")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth = generate(
        args.out, args.packets, args.flows, args.snaplen, args.full_payload, args.seed,
        args.span, args.alpha, args.block,
    )  # fmt: skip
    dt = time.perf_counter() - t0
    print(
        f"{args.out}: {truth['packets']:,} packets, {truth['flows']:,} flows "
        f"({truth['flows_with_timeouts']['flows']:,} with timeouts), "
        f"{truth['file_bytes'] / 1e6:,.1f} MB in {dt:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
