"""The numba decoder against tshark's ground truth, packet by packet, on every
real capture of the shared corpus."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from detector.capture import CaptureReader, concat

from corpus import comparable, corpus_files, load_truth, needs_corpus

# Captures where we differ from tshark, and why. Every other field of every
# other packet must match exactly.
KNOWN_DIFFERENCES = {
    # Link types we do not decode (counted as "unknown link type", skipped).
    "ndpi__someip_sd_sample.pcap": "PPI (192) link type",
    "tcpdump__LINKTYPE_PKTAP.pcap": "Apple PKTAP link type",
    "tcpdump__LINKTYPE_USER2_PKTAP.pcap": "Apple PKTAP in a USER link type",
    "tcpdump__OSPFv3_NBMA_adjacencies.pcap": "Frame Relay (107) link type",
    "tcpdump__arcnet-rfc1201-arp-icmp-http.pcap": "ARCNET link type",
    "tcpdump__bgp-aigp.pcap": "Juniper Ethernet link type",
    "tcpdump__e1000g.pcap": "Solaris IPNET link type",
    "tcpdump__ipoib.pcap": "IP over InfiniBand link type",
    "zeek__llc.pcap": "FDDI link type",
    "tcpdump__atm-oam-loopback-print-overrun.pcap": "SunATM: wiretap strips a 4-byte pseudo-header from the lengths",
    # tshark's vlan.id leaves out 802.1ad S-tags; we report the outermost tag.
    "tcpdump__802.1ad_QinQ.pcap": "outer 802.1ad tag 200 (tshark lists only the 802.1Q tag 2001)",
    # tshark reports the VLAN of the packet inside the ERSPAN tunnel.
    "tcpdump__erspan-type-ii-3.pcap": "VLAN tag inside the ERSPAN tunnel",
    # Out-of-range fractions: tshark wraps them in 32 bits; we add them as they are.
    "tcpdump__timestamp_invalid_micro.pcap": "microsecond field >= 10^6",
    "tcpdump__timestamp_invalid_nano.pcap": "nanosecond field >= 10^9",
    "nfstream__dhcp_big_endian.pcapng": "timestamps past the year 2262 wrap in int64 ns",
    # Fuzzed files.
    "ndpi__fuzz-2006-06-26-2594.pcap": "one frame: ethertype IPv6, version nibble 8 (malformed)",
    "ndpi__fuzz-2021-10-13.pcap": "record length 524501 > 256 KiB: reported as damage at offset 24",
    # tshark stops at a header it finds inconsistent; we read the bytes that are there.
    "zeek__ipv4-internally-truncated-header.pcap": "IPv4 total length shorter than its header",
    "zeek__ipv6-mobility-dst-opts.pcap": "a malformed option inside a destination-options header",
}


def _packets(path):
    reader = CaptureReader(path)
    batch = concat([b.copy() for b in reader])
    return batch, reader.stats


def _as_packet(batch, i):
    ip_version = int(batch.ip_version[i])
    src = (int(batch.src_hi[i]) << 64) | int(batch.src_lo[i])
    dst = (int(batch.dst_hi[i]) << 64) | int(batch.dst_lo[i])
    return SimpleNamespace(
        ts_ns=int(batch.ts_ns[i]),
        wire_len=int(batch.wire_len[i]),
        cap_len=int(batch.cap_len[i]),
        vlan=int(batch.vlan[i]),
        ip_version=ip_version,
        src=src,
        dst=dst,
        proto=int(batch.proto[i]),
        frag=int(batch.frag[i]),
        sport=int(batch.sport[i]),
        dport=int(batch.dport[i]),
        tcp_flags=int(batch.tcp_flags[i]),
    )


def _mismatches(path):
    from corpus import actual

    truth = load_truth(path.name)
    batch, stats = _packets(path)
    problems = []
    if len(batch) != len(truth):
        problems.append(f"{len(batch)} packets, tshark {len(truth)}")
    for i, t in enumerate(truth[: len(batch)]):
        p = _as_packet(batch, i)
        expected = comparable(t, p)
        got = actual(p, expected)
        for field, value in expected.items():
            if got[field] != value:
                problems.append(f"frame {t.number} {field}: tshark {value!r}, ours {got[field]!r}")
    return problems


@needs_corpus
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_decode_matches_tshark(path):
    problems = _mismatches(path)
    if path.name in KNOWN_DIFFERENCES:
        assert problems, f"{path.name} now matches tshark: drop it from KNOWN_DIFFERENCES"
    else:
        assert not problems, "\n".join(problems[:10])


@needs_corpus
def test_known_differences_are_corpus_files():
    names = {p.name for p in corpus_files()}
    assert set(KNOWN_DIFFERENCES) <= names


@needs_corpus
def test_most_of_the_corpus_matches():
    # 175 of 194 at the time of writing; a regression shows here first.
    assert len(corpus_files()) - len(KNOWN_DIFFERENCES) >= 175
