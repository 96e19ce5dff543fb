"""The link-layer pass of isolated segments (detector/_kernels/link.py,
detector/flows/link.py): hand-built frames with the facts worked out by hand,
the shared corpus against tshark, and the OUI table."""

from __future__ import annotations

import csv
import functools
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import DHCP6_Advertise
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_RA, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import mac2str

from detector import oui
from detector.capture import read_packets
from detector.flows.link import LinkInspector
from detector.networks import NetworkSet

from corpus import CORPUS, PCAPS, TRUTH, load_truth, needs_corpus
from gen_cases import Pcapng, write_pcap

S = 1_000_000_000
ISO_MAC = "00:1b:21:00:00:01"  # Intel's OUI
PI_MAC = "b8:27:eb:00:00:99"  # Raspberry Pi Foundation's
GW_MAC = "00:0c:29:00:00:09"  # VMware's


def _facts(path: Path, isolated: list[str]) -> list[tuple]:
    inspector = LinkInspector(NetworkSet(isolated))
    for _batch in read_packets([str(path)], inspector=inspector):
        pass
    frame = inspector.frame()
    rows = []
    for r in frame.itertuples(index=False):
        rows.append((r.kind, oui.mac_text(r.mac), _v4(r.a_lo) if r.a_hi == 0 else hex(r.a_lo),
                     _v4(r.b_lo), _v4(r.c_lo), _v4(r.d_lo), int(r.code),
                     oui.mac_text(r.other_mac), int(r.vlan), int(r.first_ns), int(r.last_ns),
                     int(r.count)))  # fmt: skip
    return rows


def _v4(lo: int) -> str:
    lo = int(lo) & 0xFFFF_FFFF
    return ".".join(str((lo >> s) & 0xFF) for s in (24, 16, 8, 0))


def _arp(src: str, op: int, sender: str, target: str, **kw) -> bytes:
    return raw(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(op=op, hwsrc=src, psrc=sender,
                                                             pdst=target, **kw))  # fmt: skip


def _offer(message: str = "offer", options: bool = True) -> bytes:
    opts = [("message-type", message), ("server_id", "10.8.40.99"), ("router", "10.8.40.1"),
            "end"] if options else ["end"]  # fmt: skip
    return raw(
        Ether(src=PI_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="10.8.40.99", dst="255.255.255.255")
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, yiaddr="10.8.40.150", chaddr=mac2str(ISO_MAC))
        / DHCP(options=opts)
    )


def test_hand_built_frames(tmp_path: Path) -> None:
    """Each kind of fact from frames built by scapy; what each must give is
    written beside it. Isolated network: 10.8.40.0/24."""
    frames = [
        # 0 s: an ARP request of the isolated host for 8.8.8.8 (op 1).
        _arp(ISO_MAC, 1, "10.8.40.31", "8.8.8.8"),
        # 1 s: the same request again: one fact, count 2, last seen 1 s.
        _arp(ISO_MAC, 1, "10.8.40.31", "8.8.8.8"),
        # 2 s: a DHCP OFFER (type 2) of 10.8.40.150, router 10.8.40.1, server id
        # 10.8.40.99, to the isolated host's card; its source 10.8.40.99 is
        # isolated, so the Pi is also a device.
        _offer(),
        # 3 s: a DHCP reply with no options at all: type 0, no server id, no router.
        _offer(options=False),
        # 4 s: a router advertisement, lifetime 1800 s (the Pi again).
        raw(
            Ether(src=PI_MAC, dst="33:33:00:00:00:01")
            / IPv6(src="fe80::1", dst="ff02::1")
            / ICMPv6ND_RA(routerlifetime=1800)
        ),  # fmt: skip
        # 5 s: a DHCPv6 ADVERTISE (type 2) from port 547 to 546.
        raw(
            Ether(src=PI_MAC, dst="33:33:00:01:00:02")
            / IPv6(src="fe80::1", dst="fe80::2")
            / UDP(sport=547, dport=546)
            / DHCP6_Advertise()
        ),  # fmt: skip
        # 6 s and 6.5 s: two SYNs of the isolated host: one device fact a minute.
        raw(Ether(src=ISO_MAC, dst=GW_MAC) / IP(src="10.8.40.31", dst="10.8.40.5") / TCP()),
        raw(Ether(src=ISO_MAC, dst=GW_MAC) / IP(src="10.8.40.31", dst="10.8.40.5") / TCP()),
        # 7 s: an answer from outside through the gateway's card: a forwarder.
        raw(Ether(src=GW_MAC, dst=ISO_MAC) / IP(src="203.0.113.5", dst="10.8.40.31") / TCP()),
        # 8 s: a gratuitous ARP reply (op 2) for 10.8.40.1, tagged VLAN 40.
        raw(
            Ether(src=GW_MAC, dst="ff:ff:ff:ff:ff:ff")
            / Dot1Q(vlan=40)
            / ARP(op=2, hwsrc=GW_MAC, psrc="10.8.40.1", pdst="10.8.40.1")
        ),  # fmt: skip
        # 9 s: ARP for another protocol (hardware size 8): not read.
        _arp(ISO_MAC, 1, "10.8.40.31", "10.8.40.2", hwlen=8),
        # 10 s: an ARP request cut to 30 bytes: not read.
        _arp(ISO_MAC, 1, "10.8.40.31", "10.8.40.3")[:30],
        # 11 s: a multicast frame from a link-local source to an isolated address:
        # local scope, not from beyond the segment.
        raw(Ether(src=GW_MAC, dst=ISO_MAC) / IP(src="169.254.1.1", dst="10.8.40.31") / UDP()),
        # 12 s: an office computer's ARP (nothing isolated): still an ARP fact.
        _arp("02:00:00:00:0a:2c", 1, "10.8.10.44", "10.8.10.1"),
    ]
    times = [0, 1, 2, 3, 4, 5, 6, 6.5, 7, 8, 9, 10, 11, 12]
    path = write_pcap(tmp_path / "link.pcap", 1, [(int(t * S), f) for t, f in zip(times, frames,
                                                                                  strict=True)])  # fmt: skip
    no = "0.0.0.0"
    zero = "00:00:00:00:00:00"
    v6 = hex(1)  # fe80::1's low half
    assert _facts(path, ["10.8.40.0/24"]) == [
        ("arp", ISO_MAC, "10.8.40.31", "8.8.8.8", no, no, 1, ISO_MAC, 0xFFFF, 0, 1 * S, 2),
        ("device", PI_MAC, "10.8.40.99", no, no, no, 0, zero, 0xFFFF, 2 * S, 2 * S, 1),
        ("dhcp-server", PI_MAC, "10.8.40.99", "10.8.40.99", "10.8.40.150", "10.8.40.1", 2,
         ISO_MAC, 0xFFFF, 2 * S, 2 * S, 1),
        ("dhcp-server", PI_MAC, "10.8.40.99", no, "10.8.40.150", no, 0, ISO_MAC, 0xFFFF,
         3 * S, 3 * S, 1),
        ("router-advert", PI_MAC, v6, no, no, no, 1800, zero, 0xFFFF, 4 * S, 4 * S, 1),
        ("dhcp6-server", PI_MAC, v6, no, no, no, 2, zero, 0xFFFF, 5 * S, 5 * S, 1),
        ("device", ISO_MAC, "10.8.40.31", no, no, no, 0, zero, 0xFFFF, 6 * S, 6 * S, 1),
        ("forwarder", GW_MAC, "203.0.113.5", no, no, no, 0, zero, 0xFFFF, 7 * S, 7 * S, 1),
        ("arp", GW_MAC, "10.8.40.1", "10.8.40.1", no, no, 2, GW_MAC, 40, 8 * S, 8 * S, 1),
        ("arp", "02:00:00:00:0a:2c", "10.8.10.44", "10.8.10.1", no, no, 1, "02:00:00:00:0a:2c",
         0xFFFF, 12 * S, 12 * S, 1),
    ]  # fmt: skip


def test_device_facts_once_a_minute(tmp_path: Path) -> None:
    """A busy host's frames are one device fact a minute: 90 frames a second
    apart from 00:00:30 make minutes 0 (30 frames) and 1 (60 frames): count 2,
    first 30 s, last 60 s (the first frame of the last minute)."""
    syn = raw(Ether(src=ISO_MAC) / IP(src="10.8.40.31", dst="10.8.40.5") / TCP())
    path = write_pcap(tmp_path / "busy.pcap", 1, [((30 + i) * S, syn) for i in range(90)])
    (fact,) = _facts(path, ["10.8.40.0/24"])
    assert fact[0] == "device" and fact[-3:] == (30 * S, 60 * S, 2)


def test_pcapng_and_other_link_types(tmp_path: Path) -> None:
    """pcapng records are found by their block; a raw-IP capture has no MACs,
    so no facts (nothing raised)."""
    frame = _arp(ISO_MAC, 1, "10.8.40.31", "8.8.8.8")
    ng = Pcapng()
    ng.shb()
    ng.idb(1)
    ng.epb(0, 5_000_000, frame)  # microsecond ticks: 5 s
    path = tmp_path / "arp.pcapng"
    path.write_bytes(b"".join(ng.parts))
    assert [f[0] for f in _facts(path, ["10.8.40.0/24"])] == ["arp"]
    ip = raw(IP(src="10.8.40.31", dst="10.8.40.5") / TCP())
    assert _facts(write_pcap(tmp_path / "raw.pcap", 101, [(S, ip)]), ["10.8.40.0/24"]) == []


def test_oui_vendors() -> None:
    """Vendors from the IEEE registry (as Wireshark's manuf names them), legal
    suffixes dropped; a locally administered address has none."""
    assert oui.vendor(oui.parse_mac("00:1B:21:3A:4F:10")) == "Intel Corporate"
    assert oui.vendor(oui.parse_mac("b8-27-eb-00-00-01")) == "Raspberry Pi Foundation"
    assert oui.vendor(oui.parse_mac("3c:22:fb:00:00:01")) == "Apple"
    assert oui.vendor(oui.parse_mac("02:42:ac:11:00:02")) == oui.LOCAL
    assert oui.parse_mac("00:1b:21:3a:4f") is None
    assert oui.parse_mac("00:1b:21-3a:4f:10") is None
    assert oui.short_name("Hon Hai Precision Ind. Co.,Ltd.") == "Hon Hai Precision Ind"
    assert oui.short_name("Cisco Systems, Inc") == "Cisco Systems"
    assert "oui.csv" in oui.table_source()


MANUF = Path("/usr/share/wireshark/manuf")


@pytest.mark.skipif(not MANUF.exists(), reason="no Wireshark manuf file (wireshark-common)")
def test_oui_table_is_built_from_manuf(tmp_path: Path) -> None:
    """The shipped table is what the committed script makes of this machine's
    manuf file, when it is the same release."""
    built = oui.build(str(MANUF))
    shipped = (Path(oui.__file__).parent / "data" / oui.TABLE).read_bytes()
    import gzip

    head = gzip.decompress(built).split(b"\n", 1)[0]
    if head != gzip.decompress(shipped).split(b"\n", 1)[0]:
        pytest.skip("this machine's manuf is another release than the shipped table's")
    assert built == shipped


# -- the corpus against tshark --------------------------------------------------------------

TSHARK = shutil.which("tshark")
FIELDS = ["frame.protocols", "eth.src", "arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4",
          "arp.dst.proto_ipv4", "dhcp.option.dhcp", "dhcp.option.dhcp_server_id", "dhcp.ip.your",
          "dhcp.option.router", "dhcp.hw.mac_addr", "icmpv6.nd.ra.router_lifetime",
          "dhcpv6.msgtype", "vlan.id", "ieee8021ad.id", "arp.hw.type", "arp.proto.type",
          "arp.hw.size", "arp.proto.size", "dhcp.type", "udp.srcport"]  # fmt: skip


def _tshark_facts(path: Path) -> Counter:
    """ARP, DHCP reply and router advertisement facts tshark sees directly on
    Ethernet (after VLAN tags; not inside tunnels), as the kernel reports them."""
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f",
         *[x for f in FIELDS for x in ("-e", f)]],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    facts: Counter = Counter()
    for line in out.splitlines():
        v = dict(zip(FIELDS, line.split("\t"), strict=False))
        stack = v["frame.protocols"].split(":")
        while stack[1:2] == ["ethertype"] and stack[2:3] in (["vlan"], ["ieee8021ad"]):
            stack = stack[:1] + stack[3:]
        if stack[:1] != ["eth"]:
            continue
        # The kernel keeps the first (outer) tag's VLAN, as the decoder does.
        tag = v.get("ieee8021ad.id") or v.get("vlan.id")
        vlan = int(tag) if tag else 0xFFFF
        ethernet_ipv4 = (v["arp.hw.type"], v["arp.proto.type"], v["arp.hw.size"],
                         v["arp.proto.size"]) == ("1", "0x0800", "6", "4")  # fmt: skip
        if stack[1:3] == ["ethertype", "arp"] and v["arp.opcode"] and ethernet_ipv4:
            facts[("arp", v["eth.src"], int(v["arp.opcode"]), v["arp.src.hw_mac"],
                   v["arp.src.proto_ipv4"], v["arp.dst.proto_ipv4"], vlan)] += 1  # fmt: skip
        elif (
            stack[1:5] == ["ethertype", "ip", "udp", "dhcp"]
            and v["dhcp.type"] == "2"  # BOOTREPLY
            and v["udp.srcport"] == "67"
        ):
            facts[("dhcp-server", v["eth.src"], int(v["dhcp.option.dhcp"] or 0),
                   v["dhcp.option.dhcp_server_id"] or "0.0.0.0", v["dhcp.ip.your"],
                   v["dhcp.option.router"] or "0.0.0.0", vlan)] += 1  # fmt: skip
        elif stack[1:4] == ["ethertype", "ipv6", "icmpv6"] and v["icmpv6.nd.ra.router_lifetime"]:
            facts[("router-advert", v["eth.src"], int(v["icmpv6.nd.ra.router_lifetime"]),
                   vlan)] += 1  # fmt: skip
    return facts


def _kernel_facts(path: Path) -> Counter:
    inspector = LinkInspector(NetworkSet(["192.0.2.255/32"]))  # no isolated host
    for _batch in read_packets([str(path)], inspector=inspector, on_problem=lambda p: None):
        pass
    facts: Counter = Counter()
    for r in inspector.frame().itertuples(index=False):
        mac = oui.mac_text(r.mac)
        if r.kind == "arp":
            key = ("arp", mac, int(r.code), oui.mac_text(r.other_mac), _v4(r.a_lo), _v4(r.b_lo),
                   int(r.vlan))  # fmt: skip
        elif r.kind == "dhcp-server":
            key = ("dhcp-server", mac, int(r.code), _v4(r.b_lo), _v4(r.c_lo), _v4(r.d_lo),
                   int(r.vlan))  # fmt: skip
        elif r.kind == "router-advert":
            key = ("router-advert", mac, int(r.code), int(r.vlan))
        else:
            continue
        facts[key] += int(r.count)
    return facts


@functools.cache
def _link_types() -> dict[str, str]:
    """The corpus's MANIFEST.tsv: capture name -> link type (capinfos' words)."""
    with (CORPUS / "MANIFEST.tsv").open(newline="") as manifest:
        return {row["file"]: row["link_type"] for row in csv.DictReader(manifest, delimiter="\t")}


def _tshark_may_see_facts(path: Path) -> bool:
    """Whether tshark can find any fact in ``path``, judged from what the corpus
    already says of it. ``_tshark_facts`` keeps frames whose dissection starts
    with ``eth``: none unless the capture has Ethernet frames (MANIFEST.tsv).
    The committed truth (truth/<file>.fields.tsv: the same tshark, ``-n``, a
    row for every frame) tells the rest: an ARP frame has neither ``ip.src`` nor
    ``ipv6.src``; a DHCP reply has ``udp.srcport`` 67; a router advertisement is
    ICMPv6 right after the IPv6 header (``ipv6.nxt`` 58). A capture with none of
    these gives tshark no fact: 164 of the 194 captures. A capture the manifest
    or the truth does not describe is dissected again."""
    link_type = _link_types().get(path.name)
    if link_type is not None and "Ethernet" not in link_type:
        return False
    if link_type is None or not (TRUTH / (path.name + ".fields.tsv")).exists():
        return True
    return any(
        not (t.ip_src or t.ipv6_src) or 67 in t.udp_sport or 58 in t.ipv6_nxt
        for t in load_truth(path)
    )


@needs_corpus
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_corpus_link_facts_match_tshark() -> None:
    """Every capture of the corpus: the ARP, DHCP reply and router
    advertisement facts of the kernel are exactly tshark's (frames on Ethernet,
    directly or after VLAN tags; ARP of Ethernet and IPv4 only; DHCP BOOTREPLY
    from port 67), and the corpus has some of them. tshark is run again (for
    the ARP, DHCP and RA fields the truth files lack) only on the captures whose
    truth has a frame that could be a fact: each run costs 0.3 s of start-up,
    and on the others tshark's facts are none, so the kernel's must be none."""
    kinds: Counter = Counter()
    differ = []
    for path in sorted(PCAPS.iterdir()):
        if _tshark_may_see_facts(path):
            theirs = _tshark_facts(path)
        else:
            theirs = Counter()
        mine = _kernel_facts(path)
        if mine != theirs:
            differ.append(f"{path.name}: kernel-only {mine - theirs}, tshark-only {theirs - mine}")
        kinds.update(k[0] for k in theirs.elements())
    assert differ == []
    # 437 ARP frames and 5 DHCP replies; no router advertisement (the hand-built
    # frames above have them).
    assert kinds["arp"] >= 100 and kinds["dhcp-server"] >= 1, kinds


# -- a live sensor reads the link layer too ----------------------------------------------


def test_live_replay_raises_what_a_scan_raises(tmp_path: Path) -> None:
    """``live -r`` over a capture of a DHCP OFFER and an ARP request beyond the
    segment raises the scan's side-channel alerts (rule, host)."""
    import json
    import sys

    from detector.pipelines.scan import scan_captures
    from detector.policy import parse_policy

    policy_text = '[site]\ntimezone = "UTC"\n[networks]\ninternal = ["10.0.0.0/8"]\n' \
        'isolated = ["10.8.40.0/24"]\n'  # fmt: skip
    (tmp_path / "p.toml").write_text(policy_text)
    frames = [(S, _offer()), (2 * S, _arp(ISO_MAC, 1, "10.8.40.31", "198.51.100.7"))]
    path = write_pcap(tmp_path / "side.pcap", 1, frames)
    out = subprocess.run(
        [sys.executable, "-m", "detector", "live", "-q", "-r", str(path), "--policy",
         str(tmp_path / "p.toml"), "--format", "jsonl"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    raised = sorted((d["rule"]["id"], d["source"]["ip"])
                    for d in map(json.loads, out.stdout.splitlines()))  # fmt: skip
    scanned = scan_captures([path], parse_policy(policy_text)).alerts
    assert raised == sorted((a.rule_id, a.source_ip) for a in scanned), out.stderr
    assert raised == [("arp-outside-segment", "10.8.40.31"), ("rogue-dhcp-server", "10.8.40.99")]
