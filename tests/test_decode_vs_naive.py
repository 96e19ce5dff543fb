"""The numba record walkers and decoder against tests/naive.py, every field of
every packet (docs/flows.md, "Per packet").

``detector.capture.read_packets`` must give exactly the packets naive.py gives:
same count, same order, and equal ``ts_ns``, ``interface``, the four address
halves, ports, ``proto``, ``ip_version``, ``wire_len``, ``cap_len``,
``tcp_flags``, ``vlan``, ``frag``, ``frag_id``, ``offset`` and ``status``.
"""

from __future__ import annotations

import struct
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.capture import BATCH_DTYPES, concat, read_packets

import corpus
import gen_cases as gc
import naive

FIELDS = list(BATCH_DTYPES)


def kernel_columns(paths) -> dict[str, list[int]]:
    problems: list = []  # damage is naive's business too: compare what both read
    batch = concat(list(read_packets([str(p) for p in paths], on_problem=problems.append)))
    return {f: getattr(batch, f).tolist() for f in FIELDS}


def naive_columns(paths) -> dict[str, list[int]]:
    packets = naive.naive_packets(list(paths))
    return {f: [getattr(p, f) for p in packets] for f in FIELDS}


def disagreements(paths) -> tuple[int, list[str]]:
    """(packets, descriptions of the first disagreements) between the two."""
    k, n = kernel_columns(paths), naive_columns(paths)
    out = []
    if len(k["ts_ns"]) != len(n["ts_ns"]):
        out.append(f"packet count: kernel {len(k['ts_ns'])}, naive {len(n['ts_ns'])}")
    by_field: Counter = Counter()
    for f in FIELDS:
        for i, (a, b) in enumerate(zip(k[f], n[f], strict=False)):
            if a != b:
                by_field[f] += 1
                if by_field[f] <= 3:
                    out.append(f"packet {i} {f}: kernel {a!r}, naive {b!r}")
    if by_field:
        out.append(f"disagreeing packets per field: {dict(by_field)}")
    return len(n["ts_ns"]), out


def assert_same_packets(paths) -> int:
    n, diffs = disagreements(paths)
    assert not diffs, "\n".join([f"{[Path(p).name for p in paths]}:"] + diffs)
    return n


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return gc.write_all(tmp_path_factory.mktemp("cases"))


# --------------------------------------------------------------------------
# generated cases (tests/gen_cases.py)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(gc.CASES))
def test_generated_case(cases, name):
    for group in gc.stream_groups(name, cases[name]):
        assert assert_same_packets(group) > 0


# --------------------------------------------------------------------------
# random captures
# --------------------------------------------------------------------------

RANDOM = [
    # (format, seed, snap length): a few thousand packets each
    ("pcap", 101, None),
    ("pcapng", 102, None),
    ("pcap-ns", 103, 62),  # cut in the middle of IPv6 and VLAN-tagged transport headers
]


@pytest.mark.parametrize("fmt,seed,snaplen", RANDOM)
def test_random_capture(tmp_path, fmt, seed, snaplen):
    path = gc.random_capture(tmp_path / f"r.{fmt}", 3000, 40, seed, fmt=fmt, snaplen=snaplen)
    assert assert_same_packets([path]) == 3000
    pk = naive.naive_packets(path)
    # the capture exercises what it should: tags, both IP versions, ICMP,
    # fragments, non-IP frames, cut headers when asked
    assert {p.ip_version for p in pk} == {0, 4, 6}
    assert {1, 6, 17, 58} <= {p.proto for p in pk}
    assert {p.frag for p in pk} == {0, 1, 3} and len({p.vlan for p in pk}) >= 3
    assert {p.status for p in pk} == {0, 1}
    if snaplen:
        cut = [p for p in pk if p.cap_len < p.wire_len and p.ip_version and p.proto == 6]
        assert any(p.sport == 0 for p in cut) and any(p.sport and not p.tcp_flags for p in cut)


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    fmt=st.sampled_from(["pcap", "pcap-ns", "pcap-be", "pcapng"]),
    snaplen=st.sampled_from([None, 38, 54, 58, 64, 66, 80]),
)
def test_random_capture_property(seed, fmt, snaplen):
    with tempfile.TemporaryDirectory() as d:
        path = gc.random_capture(Path(d) / "r.cap", 400, 12, seed, fmt=fmt, snaplen=snaplen)
        assert assert_same_packets([path]) == 400


# --------------------------------------------------------------------------
# hand-made frames: corners of docs/flows.md, one packet each
# --------------------------------------------------------------------------

IP4 = bytes.fromhex("450000280001000040067ccd0a0000010a000002")  # 10.0.0.1 -> 10.0.0.2 TCP
TCP = struct.pack(">HHIIHHHH", 1234, 80, 1, 0, 0x5012, 8192, 0, 0)
UDP4 = bytes.fromhex("4500001c0002000040117cbf0a0000010a000002") + struct.pack(">HHHH", 5, 6, 8, 0)
V6 = bytes.fromhex("6000000000000000") + bytes(15) + b"\x01" + bytes(15) + b"\x02"
SNAP_IP = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
MACS = bytes(12)


def _v6(nh: int, rest: bytes) -> bytes:
    return V6[:6] + bytes([nh]) + V6[7:] + rest


def _eth(etype: int, rest: bytes) -> bytes:
    return MACS + struct.pack(">H", etype) + rest


def _nflog(*tlvs: bytes) -> bytes:
    return b"\x02\x00\x00\x01" + b"".join(tlvs)


def _tlv(t: int, v: bytes) -> bytes:
    return struct.pack("<HH", 4 + len(v), t) + v + bytes(-len(v) % 4)


# (id, link type, frame); pytest.param(..., marks=<xfail>) where the kernel
# disagrees with naive.py / docs/flows.md (reported; the strict xfail turns into
# a failure once the kernel changes: then drop the mark)
FRAMES = [
    ("eth-ipv4-tcp", 1, _eth(0x0800, IP4 + TCP)),
    ("ipv4-options-beyond-capture", 1, _eth(0x0800, b"\x4f" + IP4[1:] + TCP[:4])),
    ("ipv4-19-bytes", 1, _eth(0x0800, IP4[:19])),
    ("ipv4-under-86dd", 1, _eth(0x86DD, IP4 + bytes(20))),
    ("ipv6-under-0800", 1, _eth(0x0800, V6[:20])),
    ("ipv6-hbh-1-byte", 1, _eth(0x86DD, _v6(0, b"\x06"))),
    ("ipv6-frag-header-4-bytes", 1, _eth(0x86DD, _v6(44, b"\x06\x00\x00\x01"))),
    (
        "ipv6-two-fragment-headers",
        1,
        _eth(
            0x86DD,
            _v6(
                44, struct.pack(">BBHI", 44, 0, 1, 7) + struct.pack(">BBHI", 17, 0, 8, 9) + bytes(8)
            ),
        ),
    ),
    (
        "ipv6-atomic-fragment",
        1,
        _eth(0x86DD, _v6(44, struct.pack(">BBHI", 17, 0, 0, 5) + struct.pack(">HHHH", 7, 8, 8, 0))),
    ),
    ("ipv4-carrying-icmpv6", 1, _eth(0x0800, IP4[:9] + b"\x3a" + IP4[10:] + b"\x80\x00")),
    ("sctp-ports", 1, _eth(0x0800, IP4[:9] + b"\x84" + IP4[10:] + b"\x0b\x59\x0b\x80")),
    ("udplite-3-bytes", 1, _eth(0x86DD, _v6(136, b"\x0f\xa0\x13"))),
    ("vlan-then-802.3-snap", 1, _eth(0x8100, b"\x00\x07\x00\x30" + SNAP_IP + UDP4)),
    ("802.3-length-0x5ff-snap", 1, MACS + b"\x05\xff" + SNAP_IP + UDP4),
    ("snap-oui-f8", 1, MACS + b"\x00\x30" + SNAP_IP[:5] + b"\xf8\x08\x00" + UDP4),
    ("snap-oui-cisco", 1, MACS + b"\x00\x30" + SNAP_IP[:5] + b"\x0c\x08\x00" + UDP4),
    ("llc-not-snap-cut", 1, MACS + b"\x00\x30\x42\x42"),
    ("llc-1-byte-of-snap", 1, MACS + b"\x00\x30\xaa"),
    ("snap-7-bytes", 1, MACS + b"\x00\x30" + SNAP_IP[:7]),
    pytest.param(
        "snap-vendor-oui-cut",
        1,
        MACS + b"\x00\x30" + SNAP_IP[:5] + b"\x0c",
        id="snap-vendor-oui-cut",
    ),
    ("pbb-cut", 1, _eth(0x88E7, bytes(17))),
    ("vntag-cut", 1, _eth(0x8926, bytes(5))),
    (
        "pppoe-mpls",
        1,
        _eth(0x8864, b"\x11\x00\x00\x01\x00\x20\x02\x81" + struct.pack(">I", 0x10140) + UDP4),
    ),
    (
        "mpls-9-labels",
        1,
        _eth(0x8847, struct.pack(">I", 0x10040) * 8 + struct.pack(">I", 0x10140) + UDP4),
    ),
    ("mpls-pseudowire", 1, _eth(0x8847, struct.pack(">I", 0x10140) + bytes(20))),
    ("sll-llc-snap", 113, struct.pack(">HHH8sH", 0, 1, 6, bytes(8), 4) + SNAP_IP + UDP4),
    (
        "sll2-vlan",
        276,
        struct.pack(">HHIHBB8s", 0x8100, 0, 2, 1, 4, 6, bytes(8)) + b"\x00\x09\x08\x00" + UDP4,
    ),
    ("chdlc-cut", 104, b"\x0f\x00\x08"),
    ("ppp-1-byte", 9, b"\xff"),
    ("ppp-ff03-only", 50, b"\xff\x03"),
    ("ppp-2-byte-protocol-cut", 9, b"\xff\x03\x00"),
    ("nflog-header-only", 239, b"\x02\x00\x00\x01"),
    ("nflog-empty-payload", 239, _nflog(_tlv(1, bytes(4)), struct.pack("<HH", 4, 9))),
    ("nflog-payload-cut", 239, _nflog(_tlv(9, UDP4))[:20]),
    ("null-af-big-endian", 0, struct.pack(">I", 2) + UDP4),
    ("loop-af-30", 108, struct.pack(">I", 30) + _v6(17, struct.pack(">HHHH", 1, 2, 8, 0))),
    ("raw-empty", 101, b""),
    ("ipv4-linktype-carrying-ipv6", 228, _v6(59, b"")),
    # These three were parsed as LLC/SNAP (hence IP) by decode.py before a6f1b6c:
    # et = 0 meant both "not IP" and "802.3 length 0".
    ("null-unknown-af-then-snap", 0, struct.pack("<I", 7) + SNAP_IP + UDP4),
    ("ppp-lcp-then-snap", 9, b"\xff\x03\xc0\x21" + SNAP_IP + UDP4),
    ("pppoe-lcp-then-snap", 1, _eth(0x8864, b"\x11\x00\x00\x01\x00\x20\xc0\x21") + SNAP_IP + UDP4),
    ("snap-cut", 1, MACS + b"\x00\x30" + SNAP_IP[:6]),
    # raw IP / NFLOG payload with version nibble 5: malformed IP (naive CHOICE 2)
    ("raw-version-5", 101, b"\x55" + IP4[1:]),
    ("nflog-version-5", 239, _nflog(_tlv(9, b"\x55" + IP4[1:]))),
]


def _frame_ids():
    return [f[0] if isinstance(f, tuple) else f.id for f in FRAMES]


@pytest.mark.parametrize("name,linktype,frame", FRAMES, ids=_frame_ids())
def test_hand_made_frame(tmp_path, name, linktype, frame):
    path = gc.write_pcap(tmp_path / f"{name}.pcap", linktype, [(gc.T0_NS, frame, len(frame) + 4)])
    assert assert_same_packets([path]) == 1


# docs/flows.md: a pcapng packet naming an interface with no IDB is kept as a
# status-2 (unknown link type) packet, timed in microseconds.
def test_pcapng_packet_of_undescribed_interface(tmp_path):
    w = gc.Pcapng()
    w.shb("<")
    w.idb(1)
    w.epb(0, 5, _eth(0x0800, UDP4))
    w.epb(3, 6, _eth(0x0800, UDP4))
    path = tmp_path / "if3.pcapng"
    path.write_bytes(w.bytes())
    assert assert_same_packets([path]) == 2


# --------------------------------------------------------------------------
# the shared corpus
# --------------------------------------------------------------------------

# file -> why the kernel's packets differ from naive.py's. Empty: every corpus
# capture agrees on every field of every packet.
KNOWN_DECODE_DIFFS: dict[str, str] = {}

needs_corpus = corpus.needs_corpus


@needs_corpus
@pytest.mark.parametrize("path", corpus.corpus_files(), ids=lambda p: p.name)
def test_corpus_file(path):
    n, diffs = disagreements([path])
    if path.name in KNOWN_DECODE_DIFFS:
        assert diffs, f"{path.name} agrees now: drop it from KNOWN_DECODE_DIFFS"
    else:
        assert not diffs, "\n".join([path.name] + diffs)


@needs_corpus
def test_corpus_allow_list_names_corpus_files():
    files = corpus.corpus_files()
    assert len(files) >= 150
    assert set(KNOWN_DECODE_DIFFS) <= {p.name for p in files}
