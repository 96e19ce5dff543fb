#!/usr/bin/env python3
"""Write a spoofed-source flood as a classic pcap, for memory-bound checks.

    python benchmarks/gen_flood.py OUT.pcap --packets 3000000 [--seconds 60]
        [--targets 4] [--background 0.05] [--seed 1]

Each flood packet is a TCP SYN from a random IPv4 source (anywhere in the
unicast space, as a spoofing tool sends) and a random port to one of
``--targets`` internal servers (10.8.0.10, 10.8.0.11, ... port 443), spread
evenly over ``--seconds``: every packet is a new flow, a new conversation and a
new outside address, the worst case for anything kept per flow or per address.
``--background`` of the packets are an ordinary upload from 10.8.40.31 to
203.0.113.140:443 (full-size frames) that the detector must still see.

``--kind dns``: each flood packet is instead a DNS query for a name never
asked before (``<32 hex digits>.flood.example``) from one of the internal
hosts (random source port) to an outside resolver, 198.51.100.53: a DNS
tunnel at full speed, the worst case for anything kept per name.

``--kind mac``: each flood packet is a SYN from a random Ethernet address and a
random address of the isolated segment 10.8.40.0/24 to 10.8.40.1 (what macof
sends to fill a switch's table): the worst case for anything kept per card.

Built with numpy in blocks, never per packet in Python: 6 M packets in a few
seconds. Timestamps start at 2026-02-04 02:00 local time in Asia/Taipei
(2026-02-03 18:00 UTC), outside business hours.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import numpy as np

START_NS = 1_770_141_600 * 1_000_000_000  # 2026-02-03T18:00:00Z
FRAME = 54  # Ethernet + IPv4 + TCP, no options, no payload (a SYN)
UPLOAD_FRAME = 1514
BLOCK = 1 << 20


def _checksum(words: np.ndarray) -> np.ndarray:
    """IPv4 header checksums of rows of ten 16-bit words (RFC 1071)."""
    total = words.astype(np.uint32).sum(axis=1)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


def _ethernet_ipv4(src: np.ndarray, dst: np.ndarray, size: int, length: int, proto: int,
                   flags: int) -> np.ndarray:  # fmt: skip
    """Rows of ``size`` bytes, each with its Ethernet and IPv4 headers (34
    bytes: an IPv4 total length of ``length - 14``, protocol ``proto``, the
    fragment word ``flags``) filled in; the rest zeros."""
    n = len(src)
    out = np.zeros((n, size), dtype=np.uint8)
    out[:, 0:6] = [0x02, 0, 0, 0, 0, 0x0B]
    out[:, 6:12] = [0x02, 0, 0, 0, 0, 0x0A]
    out[:, 12:14] = [0x08, 0x00]
    ip = np.zeros((n, 10), dtype=">u2")
    ip[:, 0] = 0x4500
    ip[:, 1] = length - 14
    ip[:, 3] = flags
    ip[:, 4] = (64 << 8) | proto  # TTL 64
    ip[:, 6], ip[:, 7] = src >> 16, src & 0xFFFF
    ip[:, 8], ip[:, 9] = dst >> 16, dst & 0xFFFF
    ip[:, 5] = _checksum(ip.astype(np.uint16))
    out[:, 14:34] = ip.view(np.uint8).reshape(n, 20)
    return out


def _frames(src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray,
            flags: int, length: int) -> np.ndarray:  # fmt: skip
    """Ethernet/IPv4/TCP headers (54 bytes a row) for each packet."""
    n = len(src)
    out = _ethernet_ipv4(src, dst, FRAME, length, 6, 0x4000)  # TCP, don't fragment
    tcp = np.zeros((n, 10), dtype=">u2")
    tcp[:, 0], tcp[:, 1] = sport, dport
    tcp[:, 6] = (5 << 12) | flags
    tcp[:, 7] = 64240
    out[:, 34:54] = tcp.view(np.uint8).reshape(n, 20)
    return out


DNS_SUFFIX = b"\x05flood\x07example\x00"
DNS_NAME = 1 + 32 + len(DNS_SUFFIX)
DNS_FRAME = 14 + 20 + 8 + 12 + DNS_NAME + 4
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _dns_queries(src: np.ndarray, dst: np.ndarray, sport: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Ethernet/IPv4/UDP/DNS queries (DNS_FRAME bytes a row), each for a new name."""
    n = len(src)
    out = _ethernet_ipv4(src, dst, DNS_FRAME, DNS_FRAME, 17, 0)  # UDP
    udp = np.zeros((n, 4), dtype=">u2")  # checksum 0: none (IPv4 allows it)
    udp[:, 0], udp[:, 1], udp[:, 2] = sport, 53, DNS_FRAME - 34
    out[:, 34:42] = udp.view(np.uint8).reshape(n, 8)
    dns = np.zeros((n, 6), dtype=">u2")
    dns[:, 0] = rng.integers(0, 65536, n)  # id
    dns[:, 1] = 0x0100  # a query, recursion desired
    dns[:, 2] = 1  # one question
    out[:, 42:54] = dns.view(np.uint8).reshape(n, 12)
    out[:, 54] = 32
    out[:, 55:87] = HEX[rng.integers(0, 16, (n, 32))]
    out[:, 87 : 87 + len(DNS_SUFFIX)] = np.frombuffer(DNS_SUFFIX, dtype=np.uint8)
    out[:, -4:] = [0, 1, 0, 1]  # type A, class IN
    return out


def write_flood(path: Path, packets: int, seconds: float, targets: int, background: float,
                seed: int, kind: str = "syn") -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    step = seconds * 1e9 / max(packets, 1)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for first in range(0, packets, BLOCK):
            n = min(BLOCK, packets - first)
            ts = START_NS + ((np.arange(first, first + n) * step).astype(np.int64))
            upload = rng.random(n) < background
            src = rng.integers(0x0100_0000, 0xE000_0000, n, dtype=np.uint32)  # 1.0.0.0-223.x
            dst = (0x0A08_000A + rng.integers(0, targets, n)).astype(np.uint32)
            sport = rng.integers(1024, 65536, n, dtype=np.uint32)
            dport = np.full(n, 443, dtype=np.uint32)
            src[upload], dst[upload] = 0x0A08_281F, 0xCB00_718C  # 10.8.40.31 -> 203.0.113.140
            sport[upload] = 51000
            if kind == "dns":
                # The internal hosts ask an outside resolver; the upload as before.
                src = np.where(upload, src, dst).astype(np.uint32)
                dst = np.where(upload, dst, 0xC633_6435).astype(np.uint32)  # 198.51.100.53
                size = DNS_FRAME
                frames = np.zeros((n, size), dtype=np.uint8)
                flood = ~upload
                frames[flood] = _dns_queries(src[flood], dst[flood], sport[flood], rng)
            else:
                size = FRAME
                if kind == "mac":  # forged cards on the isolated segment
                    flood = ~upload
                    src[flood] = 0x0A08_2800 + rng.integers(2, 255, int(flood.sum()))
                    dst[flood] = 0x0A08_2801
                frames = _frames(src, dst, sport, dport, 0x02, FRAME)
                if kind == "mac":
                    macs = rng.integers(0, 1 << 48, n, dtype=np.uint64) & ~np.uint64(1 << 40)
                    card = (macs[:, None] >> np.arange(40, -8, -8, dtype=np.uint64)) & 0xFF
                    frames[~upload, 6:12] = card[~upload].astype(np.uint8)
            wire = np.where(upload, UPLOAD_FRAME, size).astype(np.uint32)
            if upload.any():  # a full-size ACK/PSH data frame, captured headers only
                frames[upload, :FRAME] = _frames(src[upload], dst[upload], sport[upload],
                                                 dport[upload], 0x18, UPLOAD_FRAME)  # fmt: skip
            caplen = np.where(upload, FRAME, size).astype(np.uint32)
            header = np.zeros((n, 4), dtype="<u4")
            header[:, 0] = ts // 1_000_000_000
            header[:, 1] = ts % 1_000_000_000
            header[:, 2] = caplen
            header[:, 3] = wire
            if kind != "dns":
                records = np.zeros((n, 16 + FRAME), dtype=np.uint8)
                records[:, :16] = header.view(np.uint8).reshape(n, 16)
                records[:, 16:] = frames
                out.write(records.tobytes())
                continue
            # Records of two lengths: written in order, each its own length.
            heads = header.view(np.uint8).reshape(n, 16)
            for i in range(n):
                out.write(heads[i].tobytes())
                out.write(frames[i, : caplen[i]].tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--packets", type=int, default=3_000_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--background", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kind", choices=["syn", "dns", "mac"], default="syn",
                        help="spoofed SYNs (default), DNS queries for new names, or SYNs from "
                        "forged cards on the isolated segment")  # fmt: skip
    args = parser.parse_args(argv)
    write_flood(args.output, args.packets, args.seconds, args.targets, args.background, args.seed,
                args.kind)  # fmt: skip
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes, {args.packets:,} packets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
