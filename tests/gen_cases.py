"""Small generated captures, one edge case each, with the expected results worked
out by hand (in each docstring, and asserted in tests/test_naive.py).

Packets are built with scapy; the capture files are written with ``struct`` so
that every record / block header is exactly what the case needs.  Every
``case_*`` function takes a directory, writes its file(s) there and returns the
list of paths, in stream order.  :data:`CASES` maps a short name to each.

Conventions: ``T0`` = 1_700_000_000 s (2023-11-14 22:13:20 UTC); frame lengths
are given without Ethernet padding (scapy's ``raw`` does not pad), so an
Ethernet/IPv4/TCP frame without options or payload is 54 bytes, Ethernet/IPv4/UDP
with n bytes of payload is 42 + n, Ethernet/IPv6/UDP 62 + n.
"""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

from scapy.compat import raw
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE

NS = 1_000_000_000
T0 = 1_700_000_000  # seconds
T0_NS = T0 * NS

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


# --------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------


def pcap_bytes(
    linktype: int, packets, *, endian: str = "<", nano: bool = False, snaplen: int = 65535
) -> bytes:
    """Classic pcap.  ``packets``: iterable of (ts_ns, frame bytes[, wire_len]).
    Frames longer than ``snaplen`` are cut to it; wire_len defaults to the full
    frame length."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for item in packets:
        ts_ns, frame = item[0], bytes(item[1])
        wire = item[2] if len(item) > 2 else len(frame)
        data = frame[:snaplen]
        sec, rem = divmod(ts_ns, NS)
        frac = rem if nano else rem // 1000
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), wire) + data)
    return b"".join(out)


def write_pcap(path, linktype: int, packets, **kw) -> Path:
    path = Path(path)
    path.write_bytes(pcap_bytes(linktype, packets, **kw))
    return path


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


class Pcapng:
    """pcapng writer, one block at a time; ``endian`` may change at each shb()."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.e = "<"

    def _block(self, btype: int, body: bytes) -> int:
        body = _pad4(body)
        n = 12 + len(body)
        offset = sum(len(p) for p in self.parts)
        self.parts.append(
            struct.pack(self.e + "II", btype, n) + body + struct.pack(self.e + "I", n)
        )
        return offset

    def _opts(self, opts) -> bytes:
        out = b""
        for code, value in opts:
            out += struct.pack(self.e + "HH", code, len(value)) + _pad4(value)
        if opts:
            out += struct.pack(self.e + "HH", 0, 0)
        return out

    def shb(self, endian: str = "<") -> int:
        self.e = endian
        body = struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1)
        return self._block(0x0A0D0D0A, body)

    def idb(
        self,
        linktype: int,
        snaplen: int = 0,
        tsresol: int | None = None,
        tsoffset: int | None = None,
    ) -> int:
        opts = [(2, b"eth-test\0\0")]  # if_name, something to skip
        if tsresol is not None:
            opts.append((9, bytes([tsresol])))
        if tsoffset is not None:
            opts.append((14, struct.pack(self.e + "q", tsoffset)))
        return self._block(1, struct.pack(self.e + "HHI", linktype, 0, snaplen) + self._opts(opts))

    def epb(self, iface: int, ticks: int, data: bytes, orig_len: int | None = None) -> int:
        data = bytes(data)
        hdr = struct.pack(
            self.e + "IIIII",
            iface,
            ticks >> 32,
            ticks & 0xFFFFFFFF,
            len(data),
            len(data) if orig_len is None else orig_len,
        )
        return self._block(6, hdr + _pad4(data) + self._opts([(1, b"comment")]))

    def pb(self, iface: int, ticks: int, data: bytes, orig_len: int | None = None) -> int:
        data = bytes(data)
        hdr = struct.pack(
            self.e + "HHIIII",
            iface,
            0,
            ticks >> 32,
            ticks & 0xFFFFFFFF,
            len(data),
            len(data) if orig_len is None else orig_len,
        )
        return self._block(2, hdr + data)

    def spb(self, stored: bytes, orig_len: int) -> int:
        return self._block(3, struct.pack(self.e + "I", orig_len) + bytes(stored))

    def other(self, btype: int, body: bytes) -> int:
        return self._block(btype, body)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


# --------------------------------------------------------------------------
# frame helpers
# --------------------------------------------------------------------------


def eth(pkt, src=MAC_A, dst=MAC_B) -> bytes:
    return raw(Ether(src=src, dst=dst) / pkt)


def udp4(src, dst, sport, dport, n=10, **ip) -> bytes:
    return eth(IP(src=src, dst=dst, **ip) / UDP(sport=sport, dport=dport) / (b"u" * n))


def tcp4(src, dst, sport, dport, flags, n=0) -> bytes:
    return eth(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / (b"t" * n))


def _ts(seconds: float) -> int:
    """T0 + seconds, in ns, exactly for decimal seconds with up to 6 digits."""
    return T0_NS + round(seconds * 1_000_000) * 1000


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------


def case_icmp_echo(d) -> list[Path]:
    """ICMP echo/reply pair plus a one-way ICMP message (Ethernet, LE us pcap).

    10.0.0.1 -> 10.0.0.2 echo request (type 8), reply back, twice; each frame
    42 + 32 = 74 bytes.  Then 10.0.0.2 -> 10.0.0.1 port unreachable (3/3) quoting
    a UDP header: 14 + 20 + 8 + 28 = 70 bytes.

    Expected flows (2):
      * 10.0.0.1:8 -> 10.0.0.2:0, icmp, 2+2 packets, 148+148 bytes, end;
      * 10.0.0.2:3 -> 10.0.0.1:3, icmp, 1+0 packets, 70 bytes, end.
    """
    a, b = "10.0.0.1", "10.0.0.2"
    pl = b"p" * 32
    pk = [
        (_ts(0.0), eth(IP(src=a, dst=b) / ICMP(type=8, id=7, seq=1) / pl)),
        (_ts(0.001), eth(IP(src=b, dst=a) / ICMP(type=0, id=7, seq=1) / pl, MAC_B, MAC_A)),
        (_ts(1.0), eth(IP(src=a, dst=b) / ICMP(type=8, id=7, seq=2) / pl)),
        (_ts(1.001), eth(IP(src=b, dst=a) / ICMP(type=0, id=7, seq=2) / pl, MAC_B, MAC_A)),
        (
            _ts(2.0),
            eth(
                IP(src=b, dst=a)
                / ICMP(type=3, code=3)
                / IPerror(src=a, dst=b)
                / UDPerror(sport=5000, dport=9),
                MAC_B,
                MAC_A,
            ),
        ),
    ]
    return [write_pcap(Path(d) / "icmp_echo.pcap", 1, pk)]


def case_tcp_synack_first(d) -> list[Path]:
    """A TCP flow whose first captured packet is the SYN+ACK, and one that starts
    with a bare ACK (Ethernet, LE us pcap).

      t=0     192.0.2.10:443 -> 198.51.100.7:51000  SA   54 bytes
      t=0.01  198.51.100.7:51000 -> 192.0.2.10:443  A    54
      t=0.02  198.51.100.7:51000 -> 192.0.2.10:443  PA   154 (100 bytes payload)
      t=0.03  192.0.2.10:443 -> 198.51.100.7:51000  A    54
      t=0.5   198.51.100.7:51001 -> 192.0.2.10:443  A    54

    Expected flows (2):
      * initiator 198.51.100.7:51000 (the SYN+ACK's receiver) -> 192.0.2.10:443:
        src2dst 2 packets 208 bytes flags 0x018, first t=0.01;
        dst2src 2 packets 108 bytes flags 0x012, first t=0; flow first t=0;
      * 198.51.100.7:51001 -> 192.0.2.10:443 (sender of the first packet),
        1+0 packets, 54 bytes, flags 0x010.
    """
    s, c = "192.0.2.10", "198.51.100.7"
    pk = [
        (_ts(0.0), tcp4(s, c, 443, 51000, "SA")),
        (_ts(0.01), tcp4(c, s, 51000, 443, "A")),
        (_ts(0.02), tcp4(c, s, 51000, 443, "PA", 100)),
        (_ts(0.03), tcp4(s, c, 443, 51000, "A")),
        (_ts(0.5), tcp4(c, s, 51001, 443, "A")),
    ]
    return [write_pcap(Path(d) / "tcp_synack_first.pcap", 1, pk)]


def case_idle_timeout(d) -> list[Path]:
    """Idle timeout boundaries (Ethernet, LE *nanosecond* pcap).  UDP
    10.1.0.1:<port> -> 10.1.0.2:53, 52-byte frames (10 bytes payload).

      port 1000: t=0 and t=121 s            -> split: (1 pkt, idle), (1 pkt, end)
      port 1001: t=0 and t=120 s exactly    -> one flow of 2 packets, end
      port 1002: t=0 and t=120 s + 1 ns     -> split: (1, idle), (1, end)
      port 1003: t=0.5 only                 -> clock at end is t=121: 120.5 s idle,
                                               closed "idle" (naive CHOICE 11)
      port 1004: t=1 only                   -> 120 s before the clock exactly: "end"

    Expected: 7 flows, 8 packets, 416 bytes.
    """
    a, b = "10.1.0.1", "10.1.0.2"
    f = lambda port: udp4(a, b, port, 53)  # noqa: E731
    pk = [
        (T0_NS, f(1000)),
        (T0_NS, f(1001)),
        (T0_NS, f(1002)),
        (T0_NS + NS // 2, f(1003)),
        (T0_NS + NS, f(1004)),
        (T0_NS + 120 * NS, f(1001)),
        (T0_NS + 120 * NS + 1, f(1002)),
        (T0_NS + 121 * NS, f(1000)),
    ]
    return [write_pcap(Path(d) / "idle_timeout.pcap", 1, pk, nano=True)]


def case_active_timeout(d) -> list[Path]:
    """Active timeout (Ethernet, LE us pcap).  UDP 10.2.0.1:5000 <-> 10.2.0.2:5001,
    one 52-byte packet every 60 s from t=0 to t=1860 (32 packets), directions
    alternating, starting with 10.2.0.1 -> 10.2.0.2.

    The packet at t=1800 is exactly active_timeout after the first: kept.  The
    one at t=1860 (sent by 10.2.0.2) starts a new flow.

    Expected flows (2):
      * 10.2.0.1:5000 -> 10.2.0.2:5001, 16 + 15 packets, 832 + 780 bytes,
        first t=0, last t=1800, active;
      * 10.2.0.2:5001 -> 10.2.0.1:5000, 1 packet, 52 bytes, t=1860, end.
    """
    a, b = "10.2.0.1", "10.2.0.2"
    pk = []
    for i in range(32):
        frame = udp4(a, b, 5000, 5001) if i % 2 == 0 else udp4(b, a, 5001, 5000)
        pk.append((T0_NS + 60 * i * NS, frame))
    return [write_pcap(Path(d) / "active_timeout.pcap", 1, pk)]


def case_ipv4_fragments(d) -> list[Path]:
    """IPv4 fragments (Ethernet, LE us pcap).  A 2400-byte UDP datagram
    10.3.0.1:40000 -> 10.3.0.2:53 (id 0x1234) in three fragments of 800 bytes of
    IP payload (offsets 0, 100, 200 in 8-byte units; MF on the first two), each
    frame 834 bytes; then a lone non-first fragment (id 0x9999, offset 50, no
    MF, 100 bytes of payload, 134-byte frame) whose first fragment never comes.

    Expected decode: frag = 3, 1, 1, 1; ports (40000, 53) on the first only.
    Expected flows (2):
      * 10.3.0.1:40000 -> 10.3.0.2:53 udp, 3 packets, 2502 bytes;
      * 10.3.0.1:0 -> 10.3.0.2:0 udp, 1 packet, 134 bytes.
    """
    a, b = "10.3.0.1", "10.3.0.2"
    dgram = raw(UDP(sport=40000, dport=53, len=2400) / (b"f" * 2392))
    assert len(dgram) == 2400
    pk = []
    for i, (off, mf) in enumerate([(0, 1), (100, 1), (200, 0)]):
        ip = IP(src=a, dst=b, id=0x1234, proto=17, flags="MF" if mf else 0, frag=off)
        pk.append((_ts(i * 0.001), eth(ip / dgram[off * 8 : off * 8 + 800])))
    pk.append((_ts(0.01), eth(IP(src=a, dst=b, id=0x9999, proto=17, frag=50) / (b"x" * 100))))
    return [write_pcap(Path(d) / "ipv4_fragments.pcap", 1, pk)]


def _ah(nh: int) -> bytes:
    # next header, payload len = 24/4 - 2 = 4, reserved, SPI, seq, 12-byte ICV
    return struct.pack(">BBHII", nh, 4, 0, 0x1000, 1) + b"\xab" * 12


def case_ipv6_ext(d) -> list[Path]:
    """IPv6 extension headers (Ethernet, LE us pcap).

    1. 2001:db8::1 -> 2001:db8::2, hop-by-hop (8) + destination options (8) +
       fragment (offset 0, M, id 0xdeadbeef) + the first 104 bytes of a 208-byte
       UDP datagram 1234 -> 53: 14 + 40 + 24 + 104 = 182 bytes.
    2. same headers, fragment offset 13 (104 bytes), no M: 182 bytes.
    3. 2001:db8::1:1111 -> 2001:db8::2:22, AH (24 bytes) + TCP SYN: 14+40+24+20 = 98.
    4. 2001:db8::1 -> 2001:db8::2, hop-by-hop + routing (8) + destination options
       + ICMPv6 echo request (8 bytes): 14 + 40 + 24 + 8 = 86.

    Expected decode: proto 17, 17, 6, 58; frag 3, 1, 0, 0; frag_id 0xdeadbeef on
    1 and 2; ports (1234, 53), (0, 0), (1111, 22), (128, 0).
    Expected flows (3): udp 1234->53 2 packets 364 bytes; tcp 1111->22 1 packet
    98 bytes flags 0x002; ipv6-icmp 128->129 1 packet 86 bytes.
    """
    a, b = "2001:db8::1", "2001:db8::2"
    dgram = raw(UDP(sport=1234, dport=53, len=208) / (b"g" * 200))
    pk = []
    for i, (off, m) in enumerate([(0, 1), (13, 0)]):
        p = (
            IPv6(src=a, dst=b)
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrFragment(nh=17, offset=off, m=m, id=0xDEADBEEF)
            / dgram[off * 8 : off * 8 + 104]
        )
        pk.append((_ts(i * 0.001), eth(p)))
    tcp = raw(TCP(sport=1111, dport=22, flags="S"))
    pk.append((_ts(0.01), eth(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=51) / (_ah(6) + tcp))))
    icmp6 = (
        IPv6(src=a, dst=b)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / ICMPv6EchoRequest(id=1, seq=1)
    )
    pk.append((_ts(0.02), eth(icmp6)))
    return [write_pcap(Path(d) / "ipv6_ext.pcap", 1, pk)]


def case_vlan_mpls(d) -> list[Path]:
    """VLAN tags and MPLS (Ethernet, LE us pcap).

    1. 0x88a8 vid 100 / 0x8100 vid 200 / 10.4.0.1:1000 -> 10.4.0.2:80 TCP S (62 bytes)
    2. same tags, the SYN+ACK back (62)
    3. 0x8100 vid 101 / the same TCP S as 1 (58): another VLAN, another flow
    4. MPLS label 16 + label 17 (bottom) / 10.5.0.1:2000 -> 10.5.0.2:2001 UDP,
       10 bytes payload (14 + 8 + 38 = 60)
    5. 0x9100 vid 7 / 0x8100 vid 8 / 0x8100 vid 9 / 2001:db8::7:1 -> 2001:db8::7:2
       UDP 3000 -> 3001, 10 bytes payload (14 + 12 + 58 = 84)

    Expected flows (4): vlan 100 tcp 2 packets 124 bytes (1+1); vlan 101 tcp 1
    packet 58; vlan -1 udp 60; vlan 7 udp 84.
    """
    a, b = "10.4.0.1", "10.4.0.2"
    syn = IP(src=a, dst=b) / TCP(sport=1000, dport=80, flags="S")
    synack = IP(src=b, dst=a) / TCP(sport=80, dport=1000, flags="SA")
    v6 = IPv6(src="2001:db8::7:1", dst="2001:db8::7:2") / UDP(sport=3000, dport=3001) / (b"u" * 10)
    pk = [
        (_ts(0), eth(Dot1AD(vlan=100) / Dot1Q(vlan=200) / syn)),
        (_ts(0.001), eth(Dot1AD(vlan=100) / Dot1Q(vlan=200) / synack, MAC_B, MAC_A)),
        (_ts(0.002), eth(Dot1Q(vlan=101) / syn)),
        (
            _ts(0.003),
            eth(
                MPLS(label=16, s=0)
                / MPLS(label=17, s=1)
                / IP(src="10.5.0.1", dst="10.5.0.2")
                / UDP(sport=2000, dport=2001)
                / (b"u" * 10)
            ),
        ),
        (
            _ts(0.004),
            raw(
                Ether(src=MAC_A, dst=MAC_B, type=0x9100)
                / Dot1Q(vlan=7, type=0x8100)
                / Dot1Q(vlan=8)
                / Dot1Q(vlan=9)
                / v6
            ),
        ),
    ]
    return [write_pcap(Path(d) / "vlan_mpls.pcap", 1, pk)]


def case_ethernet_misc(d) -> list[Path]:
    """PPPoE session, 802.3 + LLC/SNAP, and non-IP frames (Ethernet, LE us pcap).

    1. PPPoE session (0x8864) + PPP 0x0021 + 10.6.0.1:100 -> 10.6.0.2:200 UDP,
       10 bytes payload: 14 + 8 + 38 = 60
    2. PPPoE + PPP 0x0057 + 2001:db8::6:1:300 -> 2001:db8::6:2:400 TCP S: 14+8+60 = 82
    3. 802.3 (length field) + AA AA 03 00 00 00 08 00 + 10.6.0.3:500 -> 10.6.0.4:600
       UDP, 10 bytes payload: 14 + 8 + 38 = 60
    4. 802.3 + LLC 42 42 03 (STP), not IP: status 1
    5. ARP: status 1
    6. PPPoE session carrying PPP LCP (0xc021): status 1

    Expected flows (3), one packet each: udp 60, tcp 82, udp 60.
    """
    ppp4 = IP(src="10.6.0.1", dst="10.6.0.2") / UDP(sport=100, dport=200) / (b"u" * 10)
    ppp6 = IPv6(src="2001:db8::6:1", dst="2001:db8::6:2") / TCP(sport=300, dport=400, flags="S")
    snap_ip = raw(IP(src="10.6.0.3", dst="10.6.0.4") / UDP(sport=500, dport=600) / (b"u" * 10))
    llc_snap = b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + snap_ip
    macs = bytes.fromhex("02000000000b02000000000a")
    stp = b"\x42\x42\x03" + b"\0" * 35
    pk = [
        (_ts(0), eth(PPPoE(sessionid=1) / PPP(proto=0x0021) / ppp4)),
        (_ts(0.001), eth(PPPoE(sessionid=1) / PPP(proto=0x0057) / ppp6)),
        (_ts(0.002), macs + struct.pack(">H", len(llc_snap)) + llc_snap),
        (_ts(0.003), macs + struct.pack(">H", len(stp)) + stp),
        (_ts(0.004), eth(ARP(psrc="10.6.0.1", pdst="10.6.0.2", hwsrc=MAC_A))),
        (_ts(0.005), eth(PPPoE(sessionid=1) / PPP(proto=0xC021) / (b"\x01\x01\x00\x04"))),
    ]
    return [write_pcap(Path(d) / "ethernet_misc.pcap", 1, pk)]


def _sll(proto: int) -> bytes:
    # packet type 0 (to us), ARPHRD_ETHER, address length 6, address (8), protocol
    return struct.pack(">HHH8sH", 0, 1, 6, bytes.fromhex("02000000000a"), proto)


def _sll2(proto: int) -> bytes:
    # protocol, reserved, ifindex, ARPHRD_ETHER, packet type, addr len, addr (8)
    return struct.pack(">HHIHBB8s", proto, 0, 2, 1, 4, 6, bytes.fromhex("02000000000a"))


def case_sll(d) -> list[Path]:
    """Linux cooked captures: two files, given separately.

    sll.pcap (113): 16-byte header + 10.7.0.1:1234 -> 10.7.0.2:80 TCP S (56),
    the SYN+ACK back (56), and an ARP frame (16 + 28 = 44; status 1).
    sll2.pcap (276): 20-byte header + 2001:db8::7 -> 2001:db8::8 UDP 5000 -> 6000,
    10 bytes payload (20 + 58 = 78), twice, t = 0 and 1.

    Expected: sll: 1 flow tcp 1+1 packets 112 bytes; sll2: 1 flow udp 2 packets
    156 bytes.
    """
    a, b = "10.7.0.1", "10.7.0.2"
    sll = [
        (_ts(0), _sll(0x0800) + raw(IP(src=a, dst=b) / TCP(sport=1234, dport=80, flags="S"))),
        (_ts(0.001), _sll(0x0800) + raw(IP(src=b, dst=a) / TCP(sport=80, dport=1234, flags="SA"))),
        (_ts(0.002), _sll(0x0806) + raw(ARP(psrc=a, pdst=b, hwsrc=MAC_A))),
    ]
    v6 = raw(IPv6(src="2001:db8::7", dst="2001:db8::8") / UDP(sport=5000, dport=6000) / (b"u" * 10))
    sll2 = [(_ts(0), _sll2(0x86DD) + v6), (_ts(1), _sll2(0x86DD) + v6)]
    return [
        write_pcap(Path(d) / "sll.pcap", 113, sll),
        write_pcap(Path(d) / "sll2.pcap", 276, sll2),
    ]


def case_raw_null_loop(d) -> list[Path]:
    """Raw and BSD null/loopback link types: four files, given separately.

    raw228.pcap (228): 10.8.0.1:1 -> 10.8.0.2:2 UDP, 10 bytes payload (38).
    raw101.pcap (101): 10.8.1.1:3 -> 10.8.1.2:4 TCP S (40) and
        2001:db8::81:1 -> 2001:db8::81:2 UDP 5 -> 6, 10 bytes payload (58).
    null0.pcap (0): AF as little-endian u32 2 + IPv4 ICMP echo 10.8.2.1 -> 10.8.2.2
        (4 + 28 = 32); AF big-endian 30 + IPv6 UDP 7 -> 8 (4 + 58 = 62); AF
        little-endian 24 + the same IPv6 UDP (62); AF 7 (status 1, 8 bytes).
    loop108.pcap (108): AF big-endian 2 + IPv4 UDP 10.8.3.1:9 -> 10.8.3.2:10 (42);
        AF big-endian 28 + IPv6 UDP 11 -> 12 (62); AF 2 written little-endian
        (loop is network order only: status 1).

    Expected flows: raw228 1; raw101 2; null0 2 (icmp 32 bytes; udp 2 packets
    124 bytes); loop108 2 (udp 42; udp 62).
    """
    v6 = lambda s, dd, sp, dp: raw(IPv6(src=s, dst=dd) / UDP(sport=sp, dport=dp) / (b"u" * 10))  # noqa
    d = Path(d)
    paths = [
        write_pcap(
            d / "raw228.pcap",
            228,
            [
                (
                    _ts(0),
                    raw(IP(src="10.8.0.1", dst="10.8.0.2") / UDP(sport=1, dport=2) / (b"u" * 10)),
                )
            ],
        ),
        write_pcap(
            d / "raw101.pcap",
            101,
            [
                (
                    _ts(0),
                    raw(IP(src="10.8.1.1", dst="10.8.1.2") / TCP(sport=3, dport=4, flags="S")),
                ),
                (_ts(1), v6("2001:db8::81:1", "2001:db8::81:2", 5, 6)),
            ],
        ),
        write_pcap(
            d / "null0.pcap",
            0,
            [
                (_ts(0), struct.pack("<I", 2) + raw(IP(src="10.8.2.1", dst="10.8.2.2") / ICMP())),
                (_ts(1), struct.pack(">I", 30) + v6("2001:db8::82:1", "2001:db8::82:2", 7, 8)),
                (_ts(2), struct.pack("<I", 24) + v6("2001:db8::82:1", "2001:db8::82:2", 7, 8)),
                (_ts(3), struct.pack("<I", 7) + b"\x45\0\0\0"),
            ],
        ),
        write_pcap(
            d / "loop108.pcap",
            108,
            [
                (
                    _ts(0),
                    struct.pack(">I", 2)
                    + raw(
                        IP(src="10.8.3.1", dst="10.8.3.2") / UDP(sport=9, dport=10) / (b"u" * 10)
                    ),
                ),
                (_ts(1), struct.pack(">I", 28) + v6("2001:db8::83:1", "2001:db8::83:2", 11, 12)),
                (
                    _ts(2),
                    struct.pack("<I", 2)
                    + raw(IP(src="10.8.3.1", dst="10.8.3.2") / UDP(sport=9, dport=10)),
                ),
            ],
        ),
    ]
    return paths


def case_pcapng_multi(d) -> list[Path]:
    """pcapng: two sections, several interfaces, tsresol/tsoffset, EPB/SPB/PB and
    blocks to skip.

    Section 1, little-endian:
      IDB 0: Ethernet, snaplen 128, no tsresol (10^-6)
      IDB 1: raw IP (101), snaplen 0, if_tsresol 9 (10^-9)
      IDB 2: Ethernet, snaplen 0, if_tsresol 0x8A (2^-10), if_tsoffset T0
      custom block 0x00000BAD and unknown block type 0x0000ABCD: skipped
      a. EPB if 0, ticks T0*10^6 + 123456 -> ts T0 + 0.123456 s;
         Ethernet UDP 10.9.0.1:1 -> 10.9.0.2:2, 10 bytes payload (52)
      b. EPB if 1, ticks T0*10^9 + 987654321 -> ts T0 + 0.987654321 s;
         raw IPv6 UDP 2001:db8::9:1:3 -> 2001:db8::9:2:4 (58)
      c. EPB if 2, ticks 5*1024 + 1 -> 5 s + floor(10^9/1024) = 976562 ns, plus
         tsoffset T0 -> ts T0 + 5.000976562 s; the UDP of (a), reversed (52)
      d. SPB (interface 0: Ethernet, snaplen 128): orig_len 300, 128 bytes stored
         (as the spec says: min(snaplen, orig_len)): cap_len = min(300, 128,
         128) = 128; no timestamp: that of (c); the Ethernet UDP of (a) with 258
         bytes of payload, cut.
      d2. SPB: orig_len 53, 53 bytes stored (body padded to 56): cap_len =
         min(53, 128, 56) = 53; ts of (c); 10.9.0.1:1 -> 10.9.0.2:2 with 11 bytes
         of payload.
      e. PB (obsolete, type 2) if 1, ticks T0*10^9 + 6*10^9 -> T0 + 6 s; the raw
         IPv6 UDP of (b) (58)
    Section 2, big-endian:
      IDB 0: raw IPv4 (228), if_tsresol 3 (ms)
      f. EPB if 0, ticks T0*1000 + 7005 -> T0 + 7.005 s; 10.9.0.3:5 -> 10.9.0.4:6
         UDP, 10 bytes payload (38)

    Expected records (ts, interface, linktype, cap_len, wire_len):
      a (T0+0.123456, 0, 1, 52, 52); b (T0+0.987654321, 1, 101, 58, 58);
      c (T0+5.000976562, 2, 1, 52, 52); d (T0+5.000976562, 0, 1, 128, 300);
      d2 (T0+5.000976562, 0, 1, 53, 53);
      e (T0+6, 1, 101, 58, 58); f (T0+7.005, 0, 228, 38, 38).
    Expected flows (3): udp 10.9.0.1:1 <-> 10.9.0.2:2, 4 packets (a, d, d2 from
    10.9.0.1; c back), 52+300+53 / 52 bytes; udp v6 2 packets 116 bytes; udp 38.
    (tshark 4.0 shows the custom block as an extra frame of 12 bytes.)
    """
    w = Pcapng()
    w.shb("<")
    w.idb(1, snaplen=128)
    w.idb(101, tsresol=9)
    w.idb(1, tsresol=0x8A, tsoffset=T0)
    w.other(0x00000BAD, struct.pack("<I", 32473) + b"custom data")
    w.other(0x0000ABCD, b"unknown block")
    e_udp = eth(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=2) / (b"u" * 10))
    e_udp_back = eth(
        IP(src="10.9.0.2", dst="10.9.0.1") / UDP(sport=2, dport=1) / (b"u" * 10), MAC_B, MAC_A
    )
    r_v6 = raw(IPv6(src="2001:db8::9:1", dst="2001:db8::9:2") / UDP(sport=3, dport=4) / (b"u" * 10))
    big = eth(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=2) / (b"u" * 258))
    assert len(big) == 300
    w.epb(0, T0 * 10**6 + 123456, e_udp)
    w.epb(1, T0 * 10**9 + 987654321, r_v6)
    w.epb(2, 5 * 1024 + 1, e_udp_back)
    w.spb(big[:128], 300)
    w.spb(eth(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=2) / (b"u" * 11)), 53)
    w.pb(1, T0 * 10**9 + 6 * 10**9, r_v6)
    w.shb(">")
    w.idb(228, tsresol=3)
    w.epb(
        0,
        T0 * 1000 + 7005,
        raw(IP(src="10.9.0.3", dst="10.9.0.4") / UDP(sport=5, dport=6) / (b"u" * 10)),
    )
    path = Path(d) / "multi.pcapng"
    path.write_bytes(w.bytes())
    return [path]


def case_big_endian_pcap(d) -> list[Path]:
    """Big-endian microsecond pcap (magic a1 b2 c3 d4 as written): a TCP
    handshake 10.10.0.1:4000 <-> 10.10.0.2:25 at t = 0.000001, 0.25, 0.500002.

    Expected records: ts T0 + 0.000001 / 0.25 / 0.500002 s, 54 bytes each.
    Expected flow (1): 10.10.0.1:4000 -> 10.10.0.2:25, 2+1 packets, 108+54 bytes,
    flags 0x012 | ... : src2dst 0x012 (S, A), dst2src 0x012 (SA).
    """
    a, b = "10.10.0.1", "10.10.0.2"
    pk = [
        (_ts(0.000001), tcp4(a, b, 4000, 25, "S")),
        (_ts(0.25), tcp4(b, a, 25, 4000, "SA")),
        (_ts(0.500002), tcp4(a, b, 4000, 25, "A")),
    ]
    return [write_pcap(Path(d) / "big_endian.pcap", 1, pk, endian=">")]


def case_nanosecond_pcap(d) -> list[Path]:
    """Nanosecond pcaps, little- and big-endian (two files, given separately), each
    two UDP packets 10.11.0.1:7 -> 10.11.0.2:7 (52 bytes) at T0 + 0.000000001 s
    and T0 + 59.999999999 s.

    Expected: ts exact to the ns; 1 flow of 2 packets, 104 bytes, duration_ms
    59999.999998.
    """
    pk = [
        (T0_NS + 1, udp4("10.11.0.1", "10.11.0.2", 7, 7)),
        (T0_NS + 59_999_999_999, udp4("10.11.0.1", "10.11.0.2", 7, 7)),
    ]
    return [
        write_pcap(Path(d) / "nano_le.pcap", 1, pk, nano=True),
        write_pcap(Path(d) / "nano_be.pcap", 1, pk, nano=True, endian=">"),
    ]


def case_headers_only(d) -> list[Path]:
    """Snap length 64 (Ethernet, LE us pcap): wire_len > cap_len.

    IPv6 TCP 2001:db8::a:1:40000 <-> 2001:db8::a:2:443; Ethernet + IPv6 = 54
    bytes, so 10 bytes of the TCP header are captured: the ports (bytes 0-3)
    but not the flags (bytes 12-13), see naive CHOICE 3:
      S (74 wire, 64 captured), SA (74/64), PA with 1000 bytes (1074/64).
    IPv4 TCP 10.12.0.1:40001 -> 10.12.0.2:443 PA with 1000 bytes: 1054 wire,
    64 captured, whole header captured: flags 0x018.

    Expected flows (2):
      * v6: 2001:db8::a:1:40000 -> 2001:db8::a:2:443, 2+1 packets, 1148 + 74
        bytes, flags 0 and 0;
      * v4: 1 packet, 1054 bytes, flags 0x018.
    """
    a, b = "2001:db8::a:1", "2001:db8::a:2"

    def t(s, dd, sp, dp, fl, n=0):
        return eth(IPv6(src=s, dst=dd) / TCP(sport=sp, dport=dp, flags=fl) / (b"h" * n))

    pk = [
        (_ts(0), t(a, b, 40000, 443, "S")),
        (_ts(0.01), t(b, a, 443, 40000, "SA")),
        (_ts(0.02), t(a, b, 40000, 443, "PA", 1000)),
        (_ts(0.03), tcp4("10.12.0.1", "10.12.0.2", 40001, 443, "PA", 1000)),
    ]
    return [write_pcap(Path(d) / "headers_only.pcap", 1, pk, snaplen=64)]


def case_rotated(d) -> list[Path]:
    """A flow split over two files (rotated capture, given in time order).

    part1.pcap: 10.13.0.1:5555 -> 10.13.0.2:80 S at t=0, SA back at t=0.1,
        A at t=0.2 (54 bytes each).
    part2.pcap: PA with 100 bytes at t=60 (154), A back at t=60.1 (54), and a new
        UDP flow 10.13.0.3:1 -> 10.13.0.4:2 at t=61 (52).

    Expected flows (2): the TCP flow once, 3+2 packets, 262+108 bytes, first
    t=0, last t=60.1; the UDP flow 1 packet.  Each file alone gives 1 and 2 flows.
    """
    a, b = "10.13.0.1", "10.13.0.2"
    p1 = [
        (_ts(0), tcp4(a, b, 5555, 80, "S")),
        (_ts(0.1), tcp4(b, a, 80, 5555, "SA")),
        (_ts(0.2), tcp4(a, b, 5555, 80, "A")),
    ]
    p2 = [
        (_ts(60), tcp4(a, b, 5555, 80, "PA", 100)),
        (_ts(60.1), tcp4(b, a, 80, 5555, "A")),
        (_ts(61), udp4("10.13.0.3", "10.13.0.4", 1, 2)),
    ]
    return [write_pcap(Path(d) / "part1.pcap", 1, p1), write_pcap(Path(d) / "part2.pcap", 1, p2)]


def case_gzip_pcapng(d) -> list[Path]:
    """gzip-compressed pcapng (the name says nothing: ``capture.bin``).

    SHB (28 bytes: no options) + IDB (Ethernet, default resolution, an if_name
    option: 16 + 16 + 4 + 4 = 40 bytes) + two EPBs, 10.14.0.1:1000 ->
    10.14.0.2:2000 UDP, 10 bytes payload (52; the EPB is 28 + 52 + 12 (comment
    option) + 4 (end of options) + 4 = 100 bytes), at T0 + 1 s and T0 + 2 s.

    Expected records: offsets 68 and 168 (in the decompressed bytes), 52 bytes.
    Expected flow (1): 2 packets, 104 bytes.
    """
    w = Pcapng()
    w.shb("<")
    w.idb(1)
    f = udp4("10.14.0.1", "10.14.0.2", 1000, 2000)
    w.epb(0, (T0 + 1) * 10**6, f)
    w.epb(0, (T0 + 2) * 10**6, f)
    path = Path(d) / "capture.bin"
    path.write_bytes(gzip.compress(w.bytes()))
    return [path]


def case_ppp_hdlc(d) -> list[Path]:
    """PPP (9 and 50) and Cisco HDLC (104): three files, given separately.

    ppp9.pcap (9):
      1. FF 03 00 21 + IPv4 UDP 10.15.0.1:1 -> 10.15.0.2:2, 10 bytes payload (4 + 38 = 42)
      2. 00 57 (no address/control) + IPv6 TCP S 2001:db8::f:1:3 -> 2001:db8::f:2:4 (2 + 60 = 62)
      3. FF 03 21 (protocol compressed to one byte) + the UDP of 1 reversed (3 + 38 = 41)
      4. FF 03 C0 21 + LCP echo request (4 + 8 = 12): status 1
      5. FF 03 02 81 + MPLS label 100 (bottom) + ICMP echo 10.15.0.3 -> 10.15.0.4
         (4 + 4 + 28 = 36)
    ppp50.pcap (50): FF 03 00 21 + IPv4 TCP SA 10.15.1.1:5 -> 10.15.1.2:6 (4 + 40 = 44).
    chdlc104.pcap (104): 0F 00 08 00 + IPv4 UDP 10.15.2.1:7 -> 10.15.2.2:8, 10 bytes
      payload (42); 8F 00 86 DD + IPv6 UDP 2001:db8::f:3:9 -> 2001:db8::f:4:10 (62);
      8F 00 80 35 + an 18-byte SLARP body (22): status 1.

    Expected flows: ppp9 3: udp 10.15.0.1:1 -> 10.15.0.2:2 1+1 packets 42+41
    bytes; tcp v6 1 packet 62 bytes flags 0x002; icmp 10.15.0.3:8 -> 10.15.0.4:0
    36 bytes.  ppp50 1: tcp 10.15.1.2:6 -> 10.15.1.1:5 (the SYN+ACK's receiver),
    0+1 packets, 44 bytes, dst2src flags 0x012.  chdlc104 2: udp 42; udp v6 62.
    """
    d = Path(d)
    u = raw(IP(src="10.15.0.1", dst="10.15.0.2") / UDP(sport=1, dport=2) / (b"u" * 10))
    u_back = raw(IP(src="10.15.0.2", dst="10.15.0.1") / UDP(sport=2, dport=1) / (b"u" * 10))
    t6 = raw(IPv6(src="2001:db8::f:1", dst="2001:db8::f:2") / TCP(sport=3, dport=4, flags="S"))
    icmp = raw(IP(src="10.15.0.3", dst="10.15.0.4") / ICMP(type=8))
    mpls = struct.pack(">I", (100 << 12) | (1 << 8) | 64)
    ppp9 = [
        (_ts(0), b"\xff\x03\x00\x21" + u),
        (_ts(0.1), b"\x00\x57" + t6),
        (_ts(0.2), b"\xff\x03\x21" + u_back),
        (_ts(0.3), b"\xff\x03\xc0\x21" + b"\x09\x01\x00\x08\x00\x00\x00\x00"),
        (_ts(0.4), b"\xff\x03\x02\x81" + mpls + icmp),
    ]
    ppp50 = [
        (
            _ts(0),
            b"\xff\x03\x00\x21"
            + raw(IP(src="10.15.1.1", dst="10.15.1.2") / TCP(sport=5, dport=6, flags="SA")),
        )
    ]
    chdlc = [
        (
            _ts(0),
            b"\x0f\x00\x08\x00"
            + raw(IP(src="10.15.2.1", dst="10.15.2.2") / UDP(sport=7, dport=8) / (b"u" * 10)),
        ),
        (
            _ts(1),
            b"\x8f\x00\x86\xdd"
            + raw(
                IPv6(src="2001:db8::f:3", dst="2001:db8::f:4")
                / UDP(sport=9, dport=10)
                / (b"u" * 10)
            ),
        ),
        (_ts(2), b"\x8f\x00\x80\x35" + bytes(18)),
    ]
    return [
        write_pcap(d / "ppp9.pcap", 9, ppp9),
        write_pcap(d / "ppp50.pcap", 50, ppp50),
        write_pcap(d / "chdlc104.pcap", 104, chdlc),
    ]


def _tlv(tlv_type: int, value: bytes) -> bytes:
    # NFLOG TLV: length (header included) and type little-endian, value padded to 4
    return _pad4(struct.pack("<HH", 4 + len(value), tlv_type) + value)


def case_nflog(d) -> list[Path]:
    """Linux NFLOG (239): header (family, version, resource id), then TLVs.

      1. family 2; NFULA_PACKET_HDR (type 1, 8 bytes), NFULA_PREFIX (type 10,
         "test\\0\\0": length 10, padded to 12), NFULA_PAYLOAD (type 9) with IPv4
         TCP S 10.16.0.1:1000 -> 10.16.0.2:80: 4 + 8 + 12 + 4 + 40 = 68 bytes
      2. family 10; NFULA_PACKET_HDR, NFULA_PAYLOAD with IPv6 UDP
         2001:db8::10:1:53 -> 2001:db8::10:2:5353, 10 bytes payload, the TLV
         padded to a multiple of 4: 4 + 8 + (4 + 58 + 2) = 76
      3. header, NFULA_PACKET_HDR, NFULA_PREFIX, no payload TLV (24 bytes): status 1
      4. header, a TLV of length 2 (impossible), then a payload TLV (4+4+4+40 = 52):
         status 1 (the walk stops at the bad TLV)

    Expected flows (2): tcp 1 packet 68 bytes flags 0x002; udp v6 1 packet 76.
    """
    hdr4 = struct.pack(">BBH", 2, 0, 1)
    hdr6 = struct.pack(">BBH", 10, 0, 1)
    phdr = _tlv(1, struct.pack(">HBB", 0x0800, 3, 0))
    prefix = _tlv(10, b"test\0\0")
    syn = raw(IP(src="10.16.0.1", dst="10.16.0.2") / TCP(sport=1000, dport=80, flags="S"))
    v6 = raw(
        IPv6(src="2001:db8::10:1", dst="2001:db8::10:2") / UDP(sport=53, dport=5353) / (b"u" * 10)
    )
    pk = [
        (_ts(0), hdr4 + phdr + prefix + _tlv(9, syn)),
        (_ts(1), hdr6 + phdr + _tlv(9, v6)),
        (_ts(2), hdr4 + phdr + prefix),
        (_ts(3), hdr4 + struct.pack("<HH", 2, 10) + _tlv(9, syn)),
    ]
    return [write_pcap(Path(d) / "nflog.pcap", 239, pk)]


def _tags(*vids: int, tpid: int = 0x8100) -> bytes:
    """VLAN tags without the final ethertype: each tag is (TCI, next TPID)."""
    out = b""
    for i, vid in enumerate(vids):
        out += struct.pack(">H", vid) + (struct.pack(">H", tpid) if i + 1 < len(vids) else b"")
    return out


def _labels(n: int) -> bytes:
    return b"".join(
        struct.pack(">I", ((16 + i) << 12) | ((i == n - 1) << 8) | 64) for i in range(n)
    )


def case_shims(d) -> list[Path]:
    """PBB, VN-Tag, LLC/SNAP after a tag, and the depth limits (Ethernet, LE us
    pcap; MACs 02..0b / 02..0a as in case_ethernet_misc).  Payloads: IPv4 UDP
    with 10 bytes of payload (38 bytes) unless said otherwise.

      1. 0x88a8 vid 300 / 0x88e7 I-tag (4 bytes) + customer MACs (12) + 0x8100
         vid 5 + 0x0800 / TCP S 10.17.0.1:1 -> 10.17.0.2:2 (40): 14+4+18+4+40 = 80,
         vlan 300 (the outermost)
      2. 0x88e7 / customer MACs + 0x0800 / UDP 10.17.0.3:3 -> 10.17.0.4:4: 14+18+38 = 70
      3. 0x8926 VN-Tag (4 bytes + 0x0800) / UDP 10.17.1.1:5 -> 10.17.1.2:6: 14+6+38 = 58
      4. VN-Tag (+ 0x8100) / vid 11 + 0x0800 / UDP 10.17.1.2:6 -> 10.17.1.1:5: 62
      5. 0x8100 vid 12 + 802.3 length / AA AA 03 00 00 F8 08 00 / UDP 10.17.2.1:7 ->
         10.17.2.2:8: 14+4+8+38 = 64
      6. 802.3 length / AA AA 03 00 00 0C 08 00 (a Cisco OUI) / IPv4 UDP: status 1
      7. 8 VLAN tags (vids 1-8) / UDP 10.17.3.1:9 -> 10.17.3.2:10: 14+32+38 = 84
      8. 9 VLAN tags / UDP: status 1 (deeper than 8), vlan 1
      9. 8 MPLS labels (bottom of stack on the 8th) / UDP 10.17.4.1:11 -> 10.17.4.2:12: 84
     10. 9 MPLS labels: status 4 (no bottom of stack within 8 labels)
     11. 4 tags (vids 21-24) / PBB / 3 tags (25-27) / UDP 10.17.5.1:13 -> 10.17.5.2:14:
         8 shims in all, decoded: 14+16+18+12+38 = 98, vlan 21
     12. 4 tags / PBB / 4 tags / the same UDP: 9 shims, status 1 (the kernel counts
         tags, stacks and shims together)

    Expected flows (8): tcp vlan 300 80; udp 70; udp vlan -1 58; udp vlan 11 62;
    udp vlan 12 64; udp vlan 1 84; udp (MPLS) 84; udp vlan 21 98.
    """
    macs = bytes.fromhex("02000000000b02000000000a")
    u = lambda a, b, sp, dp: raw(IP(src=a, dst=b) / UDP(sport=sp, dport=dp) / (b"u" * 10))  # noqa: E731
    be = lambda x: struct.pack(">H", x)  # noqa: E731
    syn = raw(IP(src="10.17.0.1", dst="10.17.0.2") / TCP(sport=1, dport=2, flags="S"))
    itag = bytes.fromhex("00010203")
    snap_ip = b"\xaa\xaa\x03\x00\x00\xf8\x08\x00" + u("10.17.2.1", "10.17.2.2", 7, 8)
    cisco = b"\xaa\xaa\x03\x00\x00\x0c\x08\x00" + u("10.17.2.1", "10.17.2.2", 7, 8)
    deep = u("10.17.3.1", "10.17.3.2", 9, 10)
    mixed = u("10.17.5.1", "10.17.5.2", 13, 14)
    pk = [
        macs
        + be(0x88A8)
        + be(300)
        + be(0x88E7)
        + itag
        + macs
        + be(0x8100)
        + be(5)
        + be(0x0800)
        + syn,
        macs + be(0x88E7) + itag + macs + be(0x0800) + u("10.17.0.3", "10.17.0.4", 3, 4),
        macs
        + be(0x8926)
        + bytes.fromhex("80010000")
        + be(0x0800)
        + u("10.17.1.1", "10.17.1.2", 5, 6),
        macs
        + be(0x8926)
        + bytes.fromhex("80010000")
        + be(0x8100)
        + be(11)
        + be(0x0800)
        + u("10.17.1.2", "10.17.1.1", 6, 5),
        macs + be(0x8100) + be(12) + be(len(snap_ip)) + snap_ip,
        macs + be(len(cisco)) + cisco,
        macs + be(0x8100) + _tags(*range(1, 9)) + be(0x0800) + deep,
        macs + be(0x8100) + _tags(*range(1, 10)) + be(0x0800) + deep,
        macs + be(0x8847) + _labels(8) + u("10.17.4.1", "10.17.4.2", 11, 12),
        macs + be(0x8847) + _labels(9) + u("10.17.4.1", "10.17.4.2", 11, 12),
        macs
        + be(0x8100)
        + _tags(21, 22, 23, 24)
        + be(0x88E7)
        + itag
        + macs
        + be(0x8100)
        + _tags(25, 26, 27)
        + be(0x0800)
        + mixed,
        macs
        + be(0x8100)
        + _tags(21, 22, 23, 24)
        + be(0x88E7)
        + itag
        + macs
        + be(0x8100)
        + _tags(25, 26, 27, 28)
        + be(0x0800)
        + mixed,
    ]
    return [write_pcap(Path(d) / "shims.pcap", 1, [(_ts(i * 0.001), f) for i, f in enumerate(pk)])]


def case_sctp_udplite(d) -> list[Path]:
    """SCTP and UDP-Lite ports; a protocol without ports (Ethernet, LE us pcap).

      1. IPv4 SCTP 10.18.0.1:2905 -> 10.18.0.2:2944: common header (12) + a
         16-byte chunk: 14 + 20 + 28 = 62
      2. the same back, 2944 -> 2905 (62)
      3. IPv6 UDP-Lite (136) 2001:db8::12:1:4000 -> 2001:db8::12:2:5000, 8-byte
         header + 10 bytes: 14 + 40 + 18 = 72
      4. the SCTP packet of 1 cut to 2 bytes of SCTP header: 36 captured, 62 on
         the wire: ports 0
      5. IPv4 GRE (47) 10.18.1.1 -> 10.18.1.2, 4-byte GRE header + 20 bytes: 58

    Expected flows (4): sctp 10.18.0.1:2905 -> 10.18.0.2:2944 1+1 packets 62+62;
    udplite 1 packet 72; sctp 10.18.0.1:0 -> 10.18.0.2:0 62 bytes; gre 58.
    """

    def sctp(sp, dp):
        return (
            struct.pack(">HHII", sp, dp, 0x1234, 0) + bytes.fromhex("0100001000000000") + bytes(8)
        )

    a, b = "10.18.0.1", "10.18.0.2"
    s1 = eth(IP(src=a, dst=b, proto=132) / sctp(2905, 2944))
    pk = [
        (_ts(0), s1),
        (_ts(0.1), eth(IP(src=b, dst=a, proto=132) / sctp(2944, 2905), MAC_B, MAC_A)),
        (
            _ts(0.2),
            eth(
                IPv6(src="2001:db8::12:1", dst="2001:db8::12:2", nh=136)
                / (struct.pack(">HHHH", 4000, 5000, 8, 0) + b"l" * 10)
            ),
        ),
        (_ts(0.3), s1[:36], len(s1)),
        (
            _ts(0.4),
            eth(IP(src="10.18.1.1", dst="10.18.1.2", proto=47) / (b"\x00\x00\x08\x00" + bytes(20))),
        ),
    ]
    return [write_pcap(Path(d) / "sctp_udplite.pcap", 1, pk)]


def _ext(nh: int, length_units: int = 0, kind: str = "opts") -> bytes:
    if kind == "frag":
        return struct.pack(">BBHI", nh, 0, 0, 0)
    if kind == "ah":
        return _ah(nh)
    return bytes([nh, length_units]) + bytes(6 + 8 * length_units)


def case_cut_chains(d) -> list[Path]:
    """Extension-header chains and IPv4 options cut by the snap length, and the
    extension-header limit (Ethernet, LE us pcap; each frame cut as said, wire
    length 200).  IPv6 2001:db8::13:1 -> 2001:db8::13:2, IPv4 10.19.0.1 -> 10.19.0.2.

      1. IPv6, next header 0 (hop-by-hop), 1 byte of it: 55 captured: proto 0
      2. hop-by-hop (8, next 43) + 1 byte of a routing header: 63: proto 43
      3. hop-by-hop (8, next 44) + 4 bytes of a fragment header (needs 8): 66: proto 44
      4. hop-by-hop of 16 bytes (length 1, next 6) of which 2 are captured: 56:
         proto 6, ports 0 (the header's length runs past the capture)
      5. AH (next 17), 1 byte of it: 55: proto 51
      6. IPv4 IHL 15 (40 bytes of options) TCP 1234 -> 80, 14 + 34 = 48 captured:
         status 0, proto 6, ports 0
      7. IPv4, 19 bytes of its header: 33 captured: status 3
      8. IPv6, 39 bytes of its header: 53 captured: status 3
      9. IPv4 IHL 6 UDP 1234 -> 53, 14 + 24 + 4 = 42 captured: ports read
     10. 13 extension headers (hop-by-hop, then 12 destination options) + UDP 7 -> 8,
         uncut: the chain is followed 12 deep: proto 60, ports 0
     11. 12 extension headers + UDP 7 -> 8, uncut: proto 17, ports (7, 8)

    Expected flows (10), one packet each, 200 bytes: v6 protos 0, 43, 44, 6
    (ports 0), 51, 60, 17 (7 -> 8); v4 tcp ports 0, udp 1234 -> 53.
    """
    a6 = IPv6(src="2001:db8::13:1", dst="2001:db8::13:2")
    a4 = dict(src="10.19.0.1", dst="10.19.0.2")

    def v6(nh, body, cut=None):
        f = eth(IPv6(src="2001:db8::13:1", dst="2001:db8::13:2", nh=nh) / body)
        return f[:cut] if cut else f

    chain13 = b"".join(_ext(60 if i < 12 else 17) for i in range(13))
    chain12 = b"".join(_ext(60 if i < 11 else 17) for i in range(12))
    udp78 = raw(UDP(sport=7, dport=8) / (b"u" * 10))
    opts40 = IP(proto=6, ihl=15, options=b"\x01" * 40, **a4) / TCP(sport=1234, dport=80)
    opts4 = IP(proto=17, ihl=6, options=b"\x01" * 4, **a4) / UDP(sport=1234, dport=53)
    frames = [
        v6(0, _ext(17) + bytes(10), 55),
        v6(0, _ext(43) + bytes(16), 63),
        v6(0, _ext(44) + bytes(16), 66),
        v6(0, _ext(6, 1) + bytes(20), 56),
        v6(51, _ah(17) + bytes(10), 55),
        eth(opts40)[:48],
        eth(IP(**a4) / UDP())[:33],
        eth(a6 / UDP())[:53],
        eth(opts4)[:42],
        v6(0, chain13 + udp78),
        v6(0, chain12 + udp78),
    ]
    pk = [(_ts(i * 0.001), f, 200) for i, f in enumerate(frames)]
    return [write_pcap(Path(d) / "cut_chains.pcap", 1, pk)]


def _icmp6(t: int, code: int = 0) -> bytes:
    return struct.pack(">BBHI", t, code, 0, 0) + bytes(16)


def case_icmp_pairs(d) -> list[Path]:
    """ICMPv6 and ICMPv4 request/reply pairs of the flow key (Ethernet, LE us pcap).
    IPv6 2001:db8::14:1 (A) and 2001:db8::14:2 (B): each ICMPv6 frame is 14 + 40 +
    24 = 78 bytes.  IPv4 10.20.0.1 (C) / 10.20.0.2 (D): 14 + 20 + 8 + 12 = 54.

      A->B 130 (MLD query), B->A 131 (report)         -> one flow 130/131
      A->B 139 (node information query), B->A 140      -> one flow 139/140
      A->B 144 (home agent discovery), B->A 145        -> one flow 144/145
      A->B 146 (mobile prefix solicitation), B->A 147  -> two flows (146, 0), (147, 0)
      B->A 1 code 4 (port unreachable)                 -> one flow (1, 4)
      C->D 13 (timestamp), D->C 14                     -> one flow 13/14
      D->C 11 code 0 (time exceeded)                   -> one flow (11, 0)

    Expected flows (8): ipv6-icmp A:130 -> B:131 1+1; A:139 -> B:140 1+1;
    A:144 -> B:145 1+1; A:146 -> B:0; B:147 -> A:0; B:1 -> A:4; icmp C:13 -> D:14
    1+1; D:11 -> C:0.
    """
    a, b = "2001:db8::14:1", "2001:db8::14:2"
    c, dd = "10.20.0.1", "10.20.0.2"
    six = lambda s, t, ty, code=0: eth(IPv6(src=s, dst=t, nh=58) / _icmp6(ty, code))  # noqa: E731

    def four(s, t, ty):
        return eth(IP(src=s, dst=t, proto=1) / (struct.pack(">BBHI", ty, 0, 0, 0) + bytes(12)))

    frames = [
        six(a, b, 130),
        six(b, a, 131),
        six(a, b, 139),
        six(b, a, 140),
        six(a, b, 144),
        six(b, a, 145),
        six(a, b, 146),
        six(b, a, 147),
        six(b, a, 1, 4),
        four(c, dd, 13),
        four(dd, c, 14),
        four(dd, c, 11),
    ]
    return [
        write_pcap(
            Path(d) / "icmp_pairs.pcap", 1, [(_ts(i * 0.01), f) for i, f in enumerate(frames)]
        )
    ]


def case_end_clock_non_ip(d) -> list[Path]:
    """The end-of-input clock counts every packet, IP or not (docs/flows.md:
    "the latest packet of the input").  Ethernet, LE us pcap:

      t=0     UDP 10.21.0.1:1 -> 10.21.0.2:2 (52)
      t=100   UDP 10.21.0.3:3 -> 10.21.0.4:4 (52)
      t=200   ARP (42): status 1

    Expected flows (2): the first is 200 s before the latest packet: idle; the
    second 100 s: end.
    """
    pk = [
        (_ts(0), udp4("10.21.0.1", "10.21.0.2", 1, 2)),
        (_ts(100), udp4("10.21.0.3", "10.21.0.4", 3, 4)),
        (_ts(200), eth(ARP(psrc="10.21.0.1", pdst="10.21.0.2", hwsrc=MAC_A))),
    ]
    return [write_pcap(Path(d) / "end_clock_non_ip.pcap", 1, pk)]


def case_before_1970(d) -> list[Path]:
    """Timestamps before 1970 (negative int64 ns): pcapng with if_tsoffset -2000 s,
    if_tsresol 9.  UDP 10.22.0.1:1 -> 10.22.0.2:2 (52 bytes) at ticks 1 s and
    1.5 s -> ts -1999 s and -1998.5 s; the reply at 2 s -> -1998 s.  Then a UDP
    10.22.0.3:3 -> 10.22.0.4:4 at 1900 s -> -100 s.

    Expected flows (2): 10.22.0.1:1 -> 10.22.0.2:2 2+1 packets, first -1999 s,
    last -1998 s, src2dst last -1998.5 s, dst2src first = last = -1998 s,
    reason idle (1898 s before the latest packet); the other 1 packet, end.
    """
    w = Pcapng()
    w.shb("<")
    w.idb(1, tsresol=9, tsoffset=-2000)
    f = udp4("10.22.0.1", "10.22.0.2", 1, 2)
    w.epb(0, 1 * NS, f)
    w.epb(0, 1 * NS + NS // 2, f)
    w.epb(0, 2 * NS, udp4("10.22.0.2", "10.22.0.1", 2, 1))
    w.epb(0, 1900 * NS, udp4("10.22.0.3", "10.22.0.4", 3, 4))
    path = Path(d) / "before_1970.pcapng"
    path.write_bytes(w.bytes())
    return [path]


CASES = {
    "icmp_echo": case_icmp_echo,
    "tcp_synack_first": case_tcp_synack_first,
    "idle_timeout": case_idle_timeout,
    "active_timeout": case_active_timeout,
    "ipv4_fragments": case_ipv4_fragments,
    "ipv6_ext": case_ipv6_ext,
    "vlan_mpls": case_vlan_mpls,
    "ethernet_misc": case_ethernet_misc,
    "sll": case_sll,
    "raw_null_loop": case_raw_null_loop,
    "pcapng_multi": case_pcapng_multi,
    "big_endian_pcap": case_big_endian_pcap,
    "nanosecond_pcap": case_nanosecond_pcap,
    "headers_only": case_headers_only,
    "rotated": case_rotated,
    "gzip_pcapng": case_gzip_pcapng,
    "ppp_hdlc": case_ppp_hdlc,
    "nflog": case_nflog,
    "shims": case_shims,
    "sctp_udplite": case_sctp_udplite,
    "cut_chains": case_cut_chains,
    "icmp_pairs": case_icmp_pairs,
    "end_clock_non_ip": case_end_clock_non_ip,
    "before_1970": case_before_1970,
}

# Cases whose files are independent captures (each is its own stream); the
# others are one stream, their files in the order given.
SEPARATE_FILES = {"sll", "raw_null_loop", "nanosecond_pcap", "ppp_hdlc"}


def stream_groups(name: str, paths: list[Path]) -> list[list[Path]]:
    """The streams of a case: each file alone for SEPARATE_FILES, else all together."""
    return [[p] for p in paths] if name in SEPARATE_FILES else [list(paths)]


def write_all(d) -> dict[str, list[Path]]:
    d = Path(d)
    out = {}
    for name, fn in CASES.items():
        sub = d / name
        sub.mkdir(parents=True, exist_ok=True)
        out[name] = fn(sub)
    return out


# --------------------------------------------------------------------------
# random captures for property tests
# --------------------------------------------------------------------------


def random_capture(
    path,
    n_packets: int,
    n_flows: int,
    seed: int,
    *,
    fmt: str = "pcap",
    long_gap_p: float = 0.03,
    exact_gap_p: float = 0.01,
    mean_gap_s: float = 0.05,
    snaplen: int | None = None,
) -> Path:
    """A mixed random capture: IPv4/IPv6, TCP/UDP/ICMP(v6) echo, some VLAN-tagged
    (0x8100, sometimes inside 0x88a8), a few IPv4 fragment trains, a few non-IP
    frames; non-decreasing timestamps whose gaps are mostly sub-second, with
    probability ``long_gap_p`` 100-400 s (so > 120 s splits happen) and with
    probability ``exact_gap_p`` exactly 120 s; the other gaps are exponential with
    mean ``mean_gap_s``.  ``fmt``: "pcap" (LE us), "pcap-ns", "pcap-be" or "pcapng".
    ``snaplen`` cuts every frame to that many bytes (wire length kept).

    Deterministic for a given seed (and a prefix of a longer capture with the
    same seed).  IPv4 identification = the flow's index, except in fragment
    trains (0x8001, 0x8002, ...).  No expected values: compare implementations.
    """
    rnd = random.Random(seed)
    flows = []
    for _ in range(max(1, n_flows)):
        v6 = rnd.random() < 0.3
        proto = rnd.choice([6, 6, 17, 17, 1])
        if v6:
            a = "2001:db8::%x" % rnd.randrange(1, 8)
            b = "2001:db8:1::%x" % rnd.randrange(1, 8)
        else:
            a = "10.20.0.%d" % rnd.randrange(1, 8)
            b = "10.20.1.%d" % rnd.randrange(1, 8)
        vlan = rnd.choice([None, None, None, 10, 20, (30, 40)])
        flows.append(
            dict(
                v6=v6,
                proto=proto,
                a=a,
                b=b,
                sp=rnd.randrange(1024, 1040),
                dp=rnd.choice([53, 80, 443]),
                vlan=vlan,
            )
        )
    t = T0_NS + rnd.randrange(NS)
    ip_id = 0x8000  # fragment trains; other IPv4 packets carry their flow's index as id
    cache: dict[tuple, bytes] = {}  # scapy is slow: a frame is built once per variant

    def l2(f):
        if f["vlan"] is None:
            return Ether(src=MAC_A, dst=MAC_B)
        if isinstance(f["vlan"], tuple):
            return (
                Ether(src=MAC_A, dst=MAC_B) / Dot1AD(vlan=f["vlan"][0]) / Dot1Q(vlan=f["vlan"][1])
            )
        return Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=f["vlan"])

    def frame(i, fwd, flags, n):
        key = (i, fwd, flags, n)
        if key not in cache:
            f = flows[i]
            src, dst = (f["a"], f["b"]) if fwd else (f["b"], f["a"])
            sp, dp = (f["sp"], f["dp"]) if fwd else (f["dp"], f["sp"])
            if f["proto"] == 6:
                l4 = TCP(sport=sp, dport=dp, flags=flags) / (b"d" * n)
            elif f["proto"] == 17:
                l4 = UDP(sport=sp, dport=dp) / (b"d" * n)
            elif f["v6"]:
                l4 = (ICMPv6EchoRequest() if fwd else ICMPv6EchoReply()) / (b"d" * n)
            else:
                l4 = ICMP(type=8 if fwd else 0) / (b"d" * n)
            l3 = IPv6(src=src, dst=dst) if f["v6"] else IP(src=src, dst=dst, id=i)
            cache[key] = raw(l2(f) / l3 / l4)
        return cache[key]

    pk = []
    while len(pk) < n_packets:
        r = rnd.random()
        if r < long_gap_p:
            t += rnd.randrange(100 * NS, 400 * NS)
        elif r < long_gap_p + exact_gap_p:
            t += 120 * NS
        else:
            t += int(rnd.expovariate(1 / mean_gap_s) * NS)
        if rnd.random() < 0.02:
            pk.append((t, eth(ARP(psrc="10.20.0.1", pdst="10.20.0.2", hwsrc=MAC_A))))
            continue
        i = rnd.randrange(len(flows))
        f = flows[i]
        fwd = rnd.random() < 0.6
        n = rnd.choice([0, 0, 10, 100, 1000])
        flags = rnd.choice(["S", "SA", "A", "PA", "FA", "R"]) if f["proto"] == 6 else ""
        if not f["v6"] and f["proto"] == 17 and n == 1000 and rnd.random() < 0.5:
            # an IPv4 fragment train: 3 fragments, sometimes the first is missing
            src, dst = (f["a"], f["b"]) if fwd else (f["b"], f["a"])
            sp, dp = (f["sp"], f["dp"]) if fwd else (f["dp"], f["sp"])
            dgram = raw(UDP(sport=sp, dport=dp) / (b"d" * n))
            frags = [(0, dgram[:504], 1), (63, dgram[504:1000], 1), (125, dgram[1000:], 0)]
            skip_first = rnd.random() < 0.2
            ip_id += 1
            for k, (off, chunk, mf) in enumerate(frags):
                if k == 0 and skip_first:
                    continue
                ip = IP(
                    src=src, dst=dst, id=ip_id & 0xFFFF, proto=17, flags="MF" if mf else 0, frag=off
                )
                pk.append((t + k * 1000, raw(l2(f) / ip / chunk)))
            t += 3000
            continue
        pk.append((t, frame(i, fwd, flags, n)))
    pk = pk[:n_packets]
    if snaplen is not None:
        pk = [(ts, fr[:snaplen], len(fr)) for ts, fr in pk]
    path = Path(path)
    if fmt == "pcapng":
        w = Pcapng()
        w.shb("<")
        w.idb(1, tsresol=9)
        for ts, frame, *wire in pk:
            w.epb(0, ts, frame, *wire)
        path.write_bytes(w.bytes())
    else:
        kw = {"pcap": {}, "pcap-ns": {"nano": True}, "pcap-be": {"endian": ">"}}[fmt]
        if not kw.get("nano"):
            pk = [(ts // 1000 * 1000, *rest) for ts, *rest in pk]
        write_pcap(path, 1, pk, **kw)
    return path
