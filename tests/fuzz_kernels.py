"""Fuzzing the kernels with bounds checking on (run by tests/test_fuzz.py in a
child process with EGRESS_DETECTOR_BOUNDSCHECK=1; not collected on its own).

Real captures from the corpus are mutated — bytes flipped, length fields
overwritten, cut anywhere, garbage spliced in — and read through both paths
(decode to batches, then count; and the fused decode-and-count). Any index
outside an array raises IndexError under bounds checking; the only exceptions
allowed are the reader's own CaptureError for files it refuses.
"""

from __future__ import annotations

import contextlib
import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector import _jit
from detector.capture import CaptureReader
from detector.errors import CaptureError
from detector.flows import FlowTable
from detector.flows.link import Inspectors, LinkInspector
from detector.flows.payload import PayloadInspector
from detector.networks import NetworkSet

from corpus import PCAPS, corpus_files

assert _jit.BOUNDSCHECK, "run through tests/test_fuzz.py (EGRESS_DETECTOR_BOUNDSCHECK=1)"

# A spread of formats and link types, kept small so each example is quick.
SEEDS = [
    p
    for p in corpus_files()
    if p.stat().st_size < 200_000
    and any(
        k in p.name
        for k in (
            "http",
            "dns",
            "vlan",
            "mpls",
            "ipv6",
            "frag",
            "sll",
            "pcapng",
            "nflog",
            "ppp",
            "gre",
            "tcp",
            "big_endian",
            "null",
            "loop",
            "raw",
            "torrent",
            "tls",
            "smtp",
            "wechat",
            "line",
            "dhcp",
            "QinQ",
        )
    )
][:48]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


@st.composite
def mutated_capture(draw):
    seed = draw(st.sampled_from(SEEDS))
    data = bytearray(seed.read_bytes())
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "u32", "cut", "splice", "zero"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "u32" and len(data) >= 4:
            at = min(at, len(data) - 4)
            value = draw(
                st.sampled_from(
                    [
                        0,
                        1,
                        3,
                        7,
                        12,
                        0xFFFF,
                        0x10000,
                        0x7FFFFFFF,
                        0xFFFFFFFF,
                        draw(st.integers(0, 2**32 - 1)),
                    ]
                )
            )
            data[at : at + 4] = struct.pack("<I", value)
        elif kind == "cut":
            del data[at:]
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "zero":
            data[at : at + draw(st.integers(1, 64))] = b"\x00" * 8
    return seed.name, bytes(data)


def _read_both_ways(path):
    table = FlowTable(max_flows=16, idle_timeout=1.0, active_timeout=5.0)
    # Payload inspection on every packet, every byte: DNS, TLS, HTTP, P2P and ID
    # number parsers all meet the damaged bytes.
    payload = PayloadInspector(max_packets=255, max_bytes=65535)
    # The link pass with every address isolated: device and forwarder facts from
    # every packet, and ARP, DHCP and router advertisement parsers on damaged frames.
    link = LinkInspector(NetworkSet(["0.0.0.0/0", "::/0"]))
    inspector = Inspectors(payload, link)
    for batch in CaptureReader(path, batch_packets=7, inspector=inspector):  # many restarts
        table.ingest(batch)
    payload.frame()
    link.frame()
    table.flush()
    fused = FlowTable(max_flows=16, idle_timeout=1.0, active_timeout=5.0)
    for _ in CaptureReader(path, counter=fused, batch_packets=5):
        pass
    fused.flush()
    # Both paths count the same packets into the same flows.
    assert fused.packets == table.packets
    assert len(fused.exported_rows()) == len(table.exported_rows())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_capture())
def test_mutated_captures_never_read_out_of_bounds(tmp_path_factory, case):
    name, data = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    # Refused as a whole (not a capture, header cut short) is a fine answer.
    with contextlib.suppress(CaptureError):
        _read_both_ways(path)


def test_seeds_were_found():
    assert PCAPS.is_dir() and len(SEEDS) >= 10
