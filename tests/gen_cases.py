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
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
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

def pcap_bytes(linktype: int, packets, *, endian: str = "<", nano: bool = False,
               snaplen: int = 65535) -> bytes:
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
        self.parts.append(struct.pack(self.e + "II", btype, n) + body + struct.pack(self.e + "I", n))
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

    def idb(self, linktype: int, snaplen: int = 0, tsresol: int | None = None,
            tsoffset: int | None = None) -> int:
        opts = [(2, b"eth-test\0\0")]  # if_name, something to skip
        if tsresol is not None:
            opts.append((9, bytes([tsresol])))
        if tsoffset is not None:
            opts.append((14, struct.pack(self.e + "q", tsoffset)))
        return self._block(1, struct.pack(self.e + "HHI", linktype, 0, snaplen) + self._opts(opts))

    def epb(self, iface: int, ticks: int, data: bytes, orig_len: int | None = None) -> int:
        data = bytes(data)
        hdr = struct.pack(self.e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                          len(data) if orig_len is None else orig_len)
        return self._block(6, hdr + _pad4(data) + self._opts([(1, b"comment")]))

    def pb(self, iface: int, ticks: int, data: bytes, orig_len: int | None = None) -> int:
        data = bytes(data)
        hdr = struct.pack(self.e + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                          len(data) if orig_len is None else orig_len)
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
        (_ts(2.0), eth(IP(src=b, dst=a) / ICMP(type=3, code=3) / IPerror(src=a, dst=b) /
                       UDPerror(sport=5000, dport=9), MAC_B, MAC_A)),
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
        pk.append((_ts(i * 0.001), eth(ip / dgram[off * 8:off * 8 + 800])))
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
        p = (IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
             IPv6ExtHdrFragment(nh=17, offset=off, m=m, id=0xDEADBEEF) / dgram[off * 8:off * 8 + 104])
        pk.append((_ts(i * 0.001), eth(p)))
    tcp = raw(TCP(sport=1111, dport=22, flags="S"))
    pk.append((_ts(0.01), eth(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=51) / (_ah(6) + tcp))))
    icmp6 = IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / \
        ICMPv6EchoRequest(id=1, seq=1)
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
        (_ts(0.003), eth(MPLS(label=16, s=0) / MPLS(label=17, s=1) /
                         IP(src="10.5.0.1", dst="10.5.0.2") / UDP(sport=2000, dport=2001) / (b"u" * 10))),
        (_ts(0.004), raw(Ether(src=MAC_A, dst=MAC_B, type=0x9100) / Dot1Q(vlan=7, type=0x8100) /
                         Dot1Q(vlan=8) / Dot1Q(vlan=9) / v6)),
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
    return [write_pcap(Path(d) / "sll.pcap", 113, sll), write_pcap(Path(d) / "sll2.pcap", 276, sll2)]


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
        write_pcap(d / "raw228.pcap", 228, [
            (_ts(0), raw(IP(src="10.8.0.1", dst="10.8.0.2") / UDP(sport=1, dport=2) / (b"u" * 10)))]),
        write_pcap(d / "raw101.pcap", 101, [
            (_ts(0), raw(IP(src="10.8.1.1", dst="10.8.1.2") / TCP(sport=3, dport=4, flags="S"))),
            (_ts(1), v6("2001:db8::81:1", "2001:db8::81:2", 5, 6))]),
        write_pcap(d / "null0.pcap", 0, [
            (_ts(0), struct.pack("<I", 2) + raw(IP(src="10.8.2.1", dst="10.8.2.2") / ICMP())),
            (_ts(1), struct.pack(">I", 30) + v6("2001:db8::82:1", "2001:db8::82:2", 7, 8)),
            (_ts(2), struct.pack("<I", 24) + v6("2001:db8::82:1", "2001:db8::82:2", 7, 8)),
            (_ts(3), struct.pack("<I", 7) + b"\x45\0\0\0")]),
        write_pcap(d / "loop108.pcap", 108, [
            (_ts(0), struct.pack(">I", 2) + raw(IP(src="10.8.3.1", dst="10.8.3.2") / UDP(sport=9, dport=10)
                                                / (b"u" * 10))),
            (_ts(1), struct.pack(">I", 28) + v6("2001:db8::83:1", "2001:db8::83:2", 11, 12)),
            (_ts(2), struct.pack("<I", 2) + raw(IP(src="10.8.3.1", dst="10.8.3.2") / UDP(sport=9, dport=10)))]),
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
      d. SPB (interface 0: Ethernet, snaplen 128): orig_len 300, 130 bytes stored
         (padded to 132): cap_len = min(300, 128, 132) = 128; no timestamp:
         that of (c); the Ethernet UDP of (a) with 258 bytes of payload, cut.
      e. PB (obsolete, type 2) if 1, ticks T0*10^9 + 6*10^9 -> T0 + 6 s; the raw
         IPv6 UDP of (b) (58)
    Section 2, big-endian:
      IDB 0: raw IPv4 (228), if_tsresol 3 (ms)
      f. EPB if 0, ticks T0*1000 + 7005 -> T0 + 7.005 s; 10.9.0.3:5 -> 10.9.0.4:6
         UDP, 10 bytes payload (38)

    Expected records (ts, interface, linktype, cap_len, wire_len):
      a (T0+0.123456, 0, 1, 52, 52); b (T0+0.987654321, 1, 101, 58, 58);
      c (T0+5.000976562, 2, 1, 52, 52); d (T0+5.000976562, 0, 1, 128, 300);
      e (T0+6, 1, 101, 58, 58); f (T0+7.005, 0, 228, 38, 38).
    Expected flows (3): udp 10.9.0.1:1 <-> 10.9.0.2:2, 3 packets (a, d from
    10.9.0.1; c back), 52+300 / 52 bytes; udp v6 2 packets 116 bytes; udp 38.
    """
    w = Pcapng()
    w.shb("<")
    w.idb(1, snaplen=128)
    w.idb(101, tsresol=9)
    w.idb(1, tsresol=0x8A, tsoffset=T0)
    w.other(0x00000BAD, struct.pack("<I", 32473) + b"custom data")
    w.other(0x0000ABCD, b"unknown block")
    e_udp = eth(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=2) / (b"u" * 10))
    e_udp_back = eth(IP(src="10.9.0.2", dst="10.9.0.1") / UDP(sport=2, dport=1) / (b"u" * 10), MAC_B, MAC_A)
    r_v6 = raw(IPv6(src="2001:db8::9:1", dst="2001:db8::9:2") / UDP(sport=3, dport=4) / (b"u" * 10))
    big = eth(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=2) / (b"u" * 258))
    assert len(big) == 300
    w.epb(0, T0 * 10**6 + 123456, e_udp)
    w.epb(1, T0 * 10**9 + 987654321, r_v6)
    w.epb(2, 5 * 1024 + 1, e_udp_back)
    w.spb(big[:130], 300)
    w.pb(1, T0 * 10**9 + 6 * 10**9, r_v6)
    w.shb(">")
    w.idb(228, tsresol=3)
    w.epb(0, T0 * 1000 + 7005, raw(IP(src="10.9.0.3", dst="10.9.0.4") / UDP(sport=5, dport=6) / (b"u" * 10)))
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
    pk = [(_ts(0.000001), tcp4(a, b, 4000, 25, "S")),
          (_ts(0.25), tcp4(b, a, 25, 4000, "SA")),
          (_ts(0.500002), tcp4(a, b, 4000, 25, "A"))]
    return [write_pcap(Path(d) / "big_endian.pcap", 1, pk, endian=">")]


def case_nanosecond_pcap(d) -> list[Path]:
    """Nanosecond pcaps, little- and big-endian (two files, given separately), each
    two UDP packets 10.11.0.1:7 -> 10.11.0.2:7 (52 bytes) at T0 + 0.000000001 s
    and T0 + 59.999999999 s.

    Expected: ts exact to the ns; 1 flow of 2 packets, 104 bytes, duration_ms
    59999.999998.
    """
    pk = [(T0_NS + 1, udp4("10.11.0.1", "10.11.0.2", 7, 7)),
          (T0_NS + 59_999_999_999, udp4("10.11.0.1", "10.11.0.2", 7, 7))]
    return [write_pcap(Path(d) / "nano_le.pcap", 1, pk, nano=True),
            write_pcap(Path(d) / "nano_be.pcap", 1, pk, nano=True, endian=">")]


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
    t = lambda s, dd, sp, dp, fl, n=0: eth(IPv6(src=s, dst=dd) / TCP(sport=sp, dport=dp, flags=fl) / (b"h" * n))  # noqa
    pk = [(_ts(0), t(a, b, 40000, 443, "S")),
          (_ts(0.01), t(b, a, 443, 40000, "SA")),
          (_ts(0.02), t(a, b, 40000, 443, "PA", 1000)),
          (_ts(0.03), tcp4("10.12.0.1", "10.12.0.2", 40001, 443, "PA", 1000))]
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
    p1 = [(_ts(0), tcp4(a, b, 5555, 80, "S")), (_ts(0.1), tcp4(b, a, 80, 5555, "SA")),
          (_ts(0.2), tcp4(a, b, 5555, 80, "A"))]
    p2 = [(_ts(60), tcp4(a, b, 5555, 80, "PA", 100)), (_ts(60.1), tcp4(b, a, 80, 5555, "A")),
          (_ts(61), udp4("10.13.0.3", "10.13.0.4", 1, 2))]
    return [write_pcap(Path(d) / "part1.pcap", 1, p1), write_pcap(Path(d) / "part2.pcap", 1, p2)]


def case_gzip_pcapng(d) -> list[Path]:
    """gzip-compressed pcapng (the name says nothing: ``capture.bin``).

    SHB (28 bytes: no options) + IDB (Ethernet, default resolution; 36 bytes)
    + two EPBs, 10.14.0.1:1000 -> 10.14.0.2:2000 UDP, 10 bytes payload (52; the
    EPB is 32 + 52 + 12 (comment option) + 4 = 100 bytes), at T0 + 1 s and T0 + 2 s.

    Expected records: offsets 64 and 164 (in the decompressed bytes), 52 bytes.
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
}


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

def random_capture(path, n_packets: int, n_flows: int, seed: int, *, fmt: str = "pcap",
                   long_gap_p: float = 0.03) -> Path:
    """A mixed random capture: IPv4/IPv6, TCP/UDP/ICMP(v6) echo, some VLAN-tagged
    (0x8100, sometimes inside 0x88a8), a few IPv4 fragment trains, a few non-IP
    frames; non-decreasing timestamps whose gaps are mostly sub-second, with
    probability ``long_gap_p`` 100-400 s (so > 120 s splits happen) and sometimes
    exactly 120 s.  ``fmt``: "pcap" (LE us), "pcap-ns", "pcap-be" or "pcapng".

    Deterministic for a given seed.  No expected values: compare implementations.
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
        flows.append(dict(v6=v6, proto=proto, a=a, b=b, sp=rnd.randrange(1024, 1040),
                          dp=rnd.choice([53, 80, 443]), vlan=vlan))
    t = T0_NS + rnd.randrange(NS)
    ip_id = 1
    pk = []
    while len(pk) < n_packets:
        r = rnd.random()
        if r < long_gap_p:
            t += rnd.randrange(100 * NS, 400 * NS)
        elif r < long_gap_p + 0.01:
            t += 120 * NS
        else:
            t += int(rnd.expovariate(1 / 0.05) * NS)
        if rnd.random() < 0.02:
            pk.append((t, eth(ARP(psrc="10.20.0.1", pdst="10.20.0.2", hwsrc=MAC_A))))
            continue
        f = rnd.choice(flows)
        fwd = rnd.random() < 0.6
        src, dst = (f["a"], f["b"]) if fwd else (f["b"], f["a"])
        sp, dp = (f["sp"], f["dp"]) if fwd else (f["dp"], f["sp"])
        n = rnd.choice([0, 0, 10, 100, 1000])
        if f["proto"] == 6:
            l4 = TCP(sport=sp, dport=dp, flags=rnd.choice(["S", "SA", "A", "PA", "FA", "R"])) / (b"d" * n)
        elif f["proto"] == 17:
            l4 = UDP(sport=sp, dport=dp) / (b"d" * n)
        elif f["v6"]:
            l4 = (ICMPv6EchoRequest() if fwd else ICMPv6EchoReply()) / (b"d" * n)
        else:
            l4 = ICMP(type=8 if fwd else 0) / (b"d" * n)
        l3 = IPv6(src=src, dst=dst) if f["v6"] else IP(src=src, dst=dst, id=ip_id & 0xFFFF)
        ip_id += 1
        if f["vlan"] is None:
            l2 = Ether(src=MAC_A, dst=MAC_B)
        elif isinstance(f["vlan"], tuple):
            l2 = Ether(src=MAC_A, dst=MAC_B) / Dot1AD(vlan=f["vlan"][0]) / Dot1Q(vlan=f["vlan"][1])
        else:
            l2 = Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=f["vlan"])
        if not f["v6"] and f["proto"] == 17 and n == 1000 and rnd.random() < 0.5:
            # an IPv4 fragment train: 3 fragments, sometimes the first is missing
            dgram = raw(l4)
            frags = [(0, dgram[:504], 1), (63, dgram[504:1000], 1), (125, dgram[1000:], 0)]
            skip_first = rnd.random() < 0.2
            for i, (off, chunk, mf) in enumerate(frags):
                if i == 0 and skip_first:
                    continue
                ip = IP(src=src, dst=dst, id=ip_id & 0xFFFF, proto=17, flags="MF" if mf else 0, frag=off)
                pk.append((t + i * 1000, raw(l2 / ip / chunk)))
            t += 3000
            continue
        pk.append((t, raw(l2 / l3 / l4)))
    pk = pk[:n_packets]
    path = Path(path)
    if fmt == "pcapng":
        w = Pcapng()
        w.shb("<")
        w.idb(1, tsresol=9)
        for ts, frame in pk:
            w.epb(0, ts, frame)
        path.write_bytes(w.bytes())
    else:
        kw = {"pcap": {}, "pcap-ns": {"nano": True}, "pcap-be": {"endian": ">"}}[fmt]
        if not kw.get("nano"):
            pk = [(ts // 1000 * 1000, fr) for ts, fr in pk]
        write_pcap(path, 1, pk, **kw)
    return path
