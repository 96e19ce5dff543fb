"""The careful adversary (issue 20) on real network stacks: a few of its
behaviours replayed between network namespaces, recorded by tcpdump on a
mirror port and scanned. The rules must see what the kernel really sent.

The lab (built per module, torn down after), all on one bridge in
``ea-mon-PID`` (tests/netlab.py): the isolated computer 10.8.40.31 (``ea-iso-PID``), the
internet computer 10.8.10.44 it hands data to (``ea-pc-PID``), another
internet computer 10.8.10.45 (``ea-pc2-PID``) and the outside host
203.0.113.140 with 203.0.113.141-144 (``ea-out-PID``). Every frame entering
the bridge from a host port is mirrored once (tc mirred on each port's
ingress) to the port tcpdump records.

The lab's policy makes every day of the run a holiday (off-hours) and lowers
two thresholds so the replay stays short: low-and-slow-egress 5 MB in one
transfer. The figures the alerts must carry are read from the capture by
scapy, an independent reader. Root, ``ip netns`` and tcpdump are needed;
elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netlab import bridge_lab, in_ns, missing_tools, recording, sh

from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy

ISO_NS, PC_NS, PC2_NS, OUT_NS, MON = (
    f"ea-{role}-{os.getpid()}" for role in ("iso", "pc", "pc2", "out", "mon")
)
ISO, PC, PC2, OUT = "10.8.40.31", "10.8.10.44", "10.8.10.45", "203.0.113.140"
SPREAD_TO = [f"203.0.113.{i}" for i in range(141, 145)]
HOSTS = {ISO_NS: ISO, PC_NS: PC, PC2_NS: PC2, OUT_NS: OUT}

pytestmark = pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))


@pytest.fixture(scope="module")
def lab():
    addresses = {ns: [a] + (SPREAD_TO if ns == OUT_NS else []) for ns, a in HOSTS.items()}
    with bridge_lab(addresses, MON, ["203.0.113.0/24", "10.8.0.0/16"]):
        yield


def policy_text() -> str:
    today = dt.datetime.now(dt.UTC).date()
    days = ", ".join(f'"{today + dt.timedelta(days=d)}"' for d in (-1, 0, 1))
    return f"""
[site]
name = "adversary-lab"
timezone = "UTC"

[business_hours]
holidays = [{days}]

[networks]
internal = ["10.8.0.0/16"]
isolated = ["10.8.40.0/24"]

[rules.low-and-slow-egress]
min_bytes = 5_000_000
min_transfers = 1
"""


SERVER = """
import socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", int(sys.argv[1])))
listener.listen(8)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    conn, _ = listener.accept()
    while conn.recv(1 << 16):
        pass
    conn.close()
"""

UPLOAD = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
conn.sendall(b"u" * int(sys.argv[3]))
conn.shutdown(socket.SHUT_WR)
while conn.recv(1 << 16):
    pass
"""

# Echo requests with 1,400 bytes of payload (one frame each: 14 + 20 + 8 + 1,400).
PING = """
import socket, struct, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
payload = b"p" * 1400
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
for seq in range(int(sys.argv[2])):
    header = struct.pack("!BBHHH", 8, 0, 0, 7, seq)
    header = struct.pack("!BBHHH", 8, 0, checksum(header + payload), 7, seq)
    sock.sendto(header + payload, (sys.argv[1], 0))
    time.sleep(0.002)
"""

# Datagrams of 1,200 bytes to udp/443 (QUIC-sized), paced so none is dropped.
DATAGRAMS = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    sock.sendto(b"q" * 1200, (sys.argv[1], 443))
    if i % 50 == 49:
        time.sleep(0.002)
"""


def upload(src_ns: str, to: list[str], port: int, size: int) -> None:
    """``size`` bytes from ``src_ns`` to each address of ``to`` (one connection each)."""
    server_ns = next(ns for ns, a in HOSTS.items() if a in to or (to[0] in SPREAD_TO
                                                                  and ns == OUT_NS))  # fmt: skip
    server = subprocess.Popen(in_ns(server_ns, sys.executable, "-c", SERVER, str(port),
                                    str(len(to))), stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    for address in to:
        sh(*in_ns(src_ns, sys.executable, "-c", UPLOAD, address, str(port), str(size)))
    server.wait(timeout=60)


def frames_of(pcap: Path) -> list[tuple[str, str, int, int | None, int]]:
    """(source, destination, IP protocol, TCP or UDP destination port, frame
    bytes) of each IPv4 frame in ``pcap``, as scapy reads tcpdump's capture: one
    pass (each is seconds of scapy's dissection), that every sum below reads."""
    from scapy.all import IP, TCP, UDP, PcapReader

    frames = []
    with PcapReader(str(pcap)) as packets:
        for packet in packets:
            if IP not in packet:
                continue
            layer = TCP if TCP in packet else UDP if UDP in packet else None
            dport = packet[layer].dport if layer is not None else None
            frames.append((packet[IP].src, packet[IP].dst, packet[IP].proto, dport,
                           packet.wirelen))  # fmt: skip
    return frames


def sent_by(frames: list[tuple[str, str, int, int | None, int]], src: str, dst: str | None = None,
            proto: int | None = None, dport: int | None = None) -> tuple[int, int]:  # fmt: skip
    """Frame bytes and frames ``src`` sent (to ``dst``, over ``proto``, to
    ``dport``) among ``frames`` (frames_of)."""
    total = count = 0
    for frame_src, frame_dst, frame_proto, frame_dport, wirelen in frames:
        if frame_src != src:
            continue
        if dst is not None and frame_dst != dst:
            continue
        if proto is not None and frame_proto != proto:
            continue
        if dport is not None and frame_dport != dport:
            continue
        total += wirelen
        count += 1
    return total, count


def test_the_careful_adversary_on_real_stacks(lab, tmp_path):
    """Replayed in turn while tcpdump records the mirror:

    * pivot: 10.8.40.31 (isolated) uploads 2,000,000 bytes to 10.8.10.44:445,
      then 10.8.10.44 uploads 1,500,000 bytes to 203.0.113.140:443;
    * ICMP tunnel: 10.8.10.45 sends 800 echo requests of 1,400 payload bytes to
      203.0.113.140 (which answers each);
    * udp/443: 10.8.10.45 sends 5,000 datagrams of 1,200 bytes to
      203.0.113.140:443 (nothing listens there);
    * spread: 10.8.10.45 uploads 3,000,000 bytes to each of 203.0.113.141-144.

    The scan of the capture raises exactly one alert per behaviour (the first
    leg's isolated-egress folded into the chain; the spread counts
    203.0.113.140 among its new destinations), with the bytes scapy counts in
    the capture."""
    pcap = tmp_path / "mirror.pcap"
    with recording(MON, pcap):
        upload(ISO_NS, [PC], 445, 2_000_000)
        upload(PC_NS, [OUT], 443, 1_500_000)
        sh(*in_ns(PC2_NS, sys.executable, "-c", PING, OUT, "800"))
        sh(*in_ns(PC2_NS, sys.executable, "-c", DATAGRAMS, OUT, "5000"))
        upload(PC2_NS, SPREAD_TO, 8443, 3_000_000)
    alerts = scan_captures([pcap], parse_policy(policy_text(), "lab.toml")).alerts
    found = sorted((a.rule_id, a.source_ip, a.destination_ip) for a in alerts)
    assert found == [
        ("low-and-slow-egress", PC2, OUT),
        ("pivot-chain", ISO, OUT),
        ("quiet-protocol-volume", PC2, OUT),
        ("spread-egress", PC2, OUT),
    ], "\n".join(a.message for a in alerts)
    by_rule = {a.rule_id: a for a in alerts}
    frames = frames_of(pcap)

    chain = by_rule["pivot-chain"]
    assert chain.evidence["chain"] == [ISO, PC, OUT]
    assert chain.source_bytes == sent_by(frames, ISO, PC)[0]
    assert chain.destination_bytes == sent_by(frames, PC, OUT)[0]
    assert any(note.startswith("as isolated-egress:") for note in chain.notes)

    icmp_bytes, icmp_frames = sent_by(frames, PC2, OUT, proto=1)
    assert (icmp_frames, icmp_bytes) == (800, 800 * 1442)
    quiet = by_rule["quiet-protocol-volume"]
    assert quiet.evidence["protocol"] == "ICMP"
    assert (quiet.evidence["protocol_bytes"], quiet.evidence["protocol_packets"]) == (
        icmp_bytes, icmp_frames)  # fmt: skip

    udp_bytes, udp_frames = sent_by(frames, PC2, OUT, proto=17, dport=443)
    assert (udp_frames, udp_bytes) == (5000, 5000 * 1242)
    # Every protocol's bytes to the address count: the datagrams and the echoes;
    # the conversation named is the one that carried most, udp/443.
    slow = by_rule["low-and-slow-egress"]
    assert slow.source_bytes == udp_bytes + icmp_bytes == sent_by(frames, PC2, OUT)[0]
    assert (slow.transport, slow.destination_port) == ("udp", 443)

    # 203.0.113.140 is new to 10.8.10.45 too, and got more than it sent back
    # (the datagrams): five new destinations within 30 minutes, the most to it.
    spread = by_rule["spread-egress"]
    assert spread.evidence["destination_count"] == 5
    assert spread.evidence["networks"] == ["203.0.113.0/24"]
    assert spread.source_bytes == sum(sent_by(frames, PC2, to)[0] for to in [OUT, *SPREAD_TO])
