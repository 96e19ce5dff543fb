"""Slow, obvious reference implementation of the capture core (docs/flows.md).

Pure Python, ``struct`` only: no numba, no numpy.  Written to be read, not to be
fast.  The numba kernels are compared against it; where the two disagree,
docs/flows.md decides which one is wrong.

Three layers, each usable on its own:

* :func:`read_records` -- classic pcap / pcapng / gzip of either, to
  :class:`Record` (timestamp, interface, link type, captured bytes, wire length,
  byte offset of the record in the decompressed file);
* :func:`decode` -- one :class:`Record` to one :class:`Packet` (the packet-batch
  fields of docs/flows.md, addresses as Python ints);
* :func:`naive_flows` -- files (one stream) to a list of flow dicts.

Choices made where docs/flows.md is silent or ambiguous (each is one place in
the code, marked ``CHOICE``):

1.  ``status != 0`` means no usable IP header: ``ip_version`` 0, addresses,
    ``proto``, ports, flags and fragment fields 0.  Such packets are not counted
    in flows.  Status 3 covers IPv4 options and IPv6 extension headers that are
    cut short (they are part of the IP header); status 4 covers a version nibble
    that contradicts the link layer (ethertype 0x0800 with version 6, ...) and an
    IPv4 IHL below 5.  The IPv4 total length and IPv6 payload length are never
    used (TSO / BIG TCP frames report 0).
2.  Link types 101/12/14 *and* 228/229 take the IP version from the first nibble
    (as tshark does: a LINKTYPE_IPV4 file carrying IPv6 decodes as IPv6); a
    nibble other than 4/6 there is status 4.  After an MPLS stack a nibble other
    than 4/6 is "not IP" (status 1: pseudowires).  A frame too short for its
    link header is status 1.
3.  "Transport header cut short" is judged per field: ports are read when the 4
    bytes holding them are captured (2 bytes of type/code for ICMP/ICMPv6), TCP
    flags when bytes 12-13 of the TCP header are captured.  Otherwise 0.  See
    ``_PORT_BYTES`` / ``_TCP_FLAGS_BYTES``.
4.  802.3 + LLC/SNAP: AA AA 03 with OUI 00-00-00 or 00-00-F8 (the encapsulated
    ethertype OUIs, as tshark); any other OUI is not IP.  Link types 113/276: a
    protocol value below 0x0600 is not IP.  The ethertype after SNAP, SLL and
    SLL2 goes through the same dispatcher as Ethernet's (VLAN/MPLS/PPPoE).
5.  Classic pcap link type = the low 16 bits of the header's link-type field (the
    upper bits are FCS length / reserved).  Microsecond/nanosecond fractions
    outside their range are added as they are (tshark shows the same instant).
6.  pcapng ``interface`` is the interface id as written in the EPB/PB, i.e.
    counted from 0 in every section.  ``if_tsresol`` 2^-v is converted with floor
    division: ``ticks * 10**9 // 2**v`` (10^-v with v > 9 likewise floors).  A
    packet whose interface id has no IDB gets link type -1 (status 2).
7.  A record or block running past the end of the file ends the reading (the
    partial record is dropped); so does a block length < 12 or not a multiple of
    4.  Unknown magic, a pcap major version other than 2 and an SHB major
    version other than 1 raise ``ValueError``.
8.  ICMP flow-key ports: exactly the pairs of docs/flows.md (ICMPv6 includes
    146/147, which Community ID does *not* pair; Community ID pairs 139/140, which
    docs/flows.md does not).  The flow key uses the doc's table; ``community_id``
    uses the Community ID v1 spec's table, from the first packet's raw type and
    code.  The mapping is applied to the ports a packet has after fragment
    attribution, so an unattributed ICMP non-first fragment (type 0, code 0)
    lands in the flow key of "echo reply" ports (0, 8).
9.  SYN+ACK means ``flags & 0x012 == 0x012`` (other bits may be set).
10. Per direction ``*_first_ns`` is the minimum and ``*_last_ns`` the maximum of
    the timestamps seen (same as first/last packet when time does not go
    backwards).  The idle test is ``ts - last_ns > idle``, the active test
    ``ts - first_ns > active``; idle is tested first.
11. End of input: a flow still open is closed ``idle`` when the stream clock (the
    largest timestamp of any record read, IP or not) is more than
    ``idle_timeout`` after its last packet -- a periodic sweep would have closed
    it as idle -- and ``end`` otherwise.  This makes the result independent of
    when sweeps run, which the doc promises.
12. Fragment map (src, dst, proto, frag_id) -> ports, filled by first fragments,
    never expires here (a new first fragment with the same key overwrites), and
    it is shared across files.  VLAN is not part of its key.
13. SCTP and other protocols get no ports (the doc names TCP/UDP/ICMP only), but
    Community ID still hashes ports 0/0 for the port protocols (1, 6, 17, 58,
    132); other protocols are hashed without ports.
14. ``transport`` names come from a small table of IANA keywords, else
    ``str(protocol)``.

Flow dicts use the column names of docs/flows.md except that the timestamps are
integer nanoseconds and are named ``first_ns``, ``last_ns``,
``src2dst_first_ns``, ``src2dst_last_ns``, ``dst2src_first_ns``,
``dst2src_last_ns`` (``None`` where docs/flows.md says NaT).  ``src_ip`` /
``dst_ip`` are strings (dotted quad for IPv4).
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    ts_ns: int
    interface: int
    linktype: int
    data: bytes
    wire_len: int
    offset: int

    @property
    def cap_len(self) -> int:
        return len(self.data)


PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_PB = 2
PCAPNG_SPB = 3
PCAPNG_EPB = 6


def load_bytes(path) -> bytes:
    """The file's bytes, gunzipped when it starts with 1f 8b (a truncated gzip
    stream yields what could be decompressed)."""
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error):
        d = zlib.decompressobj(wbits=31)
        try:
            return d.decompress(raw)
        except zlib.error:
            return b""


def read_records(path) -> list[Record]:
    buf = load_bytes(path)
    if buf[:4] == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(buf)
    return _read_pcap(buf)


_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),  # big-endian, microseconds
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),  # big-endian, nanoseconds
}


def _read_pcap(buf: bytes) -> list[Record]:
    if buf[:4] not in _PCAP_MAGICS or len(buf) < 24:
        raise ValueError("not a pcap/pcapng file")
    e, frac_to_ns = _PCAP_MAGICS[buf[:4]]
    major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack(e + "HHiIII", buf[4:24])
    if major != 2:
        raise ValueError("unsupported pcap version %d" % major)
    linktype = network & 0xFFFF  # CHOICE 5
    out = []
    pos = 24
    while pos + 16 <= len(buf):
        sec, frac, incl, orig = struct.unpack(e + "IIII", buf[pos:pos + 16])
        if pos + 16 + incl > len(buf):
            break  # CHOICE 7: partial last record dropped
        data = buf[pos + 16:pos + 16 + incl]
        out.append(Record(sec * 1_000_000_000 + frac * frac_to_ns, 0, linktype, data, orig, pos))
        pos += 16 + incl
    return out


def _ticks_to_ns(ticks: int, tsresol: int) -> int:
    if tsresol & 0x80:
        return ticks * 1_000_000_000 // (2 ** (tsresol & 0x7F))
    if tsresol <= 9:
        return ticks * 10 ** (9 - tsresol)
    return ticks // 10 ** (tsresol - 9)


def _options(body: bytes, e: str) -> dict[int, bytes]:
    """pcapng options (code -> first value)."""
    opts = {}
    pos = 0
    while pos + 4 <= len(body):
        code, length = struct.unpack(e + "HH", body[pos:pos + 4])
        if code == 0:
            break
        opts.setdefault(code, body[pos + 4:pos + 4 + length])
        pos += 4 + (length + 3) // 4 * 4
    return opts


@dataclass
class _Iface:
    linktype: int
    snaplen: int
    tsresol: int = 6
    tsoffset: int = 0


def _read_pcapng(buf: bytes) -> list[Record]:
    out: list[Record] = []
    e = "<"
    ifaces: list[_Iface] = []
    last_ts = 0
    pos = 0
    while pos + 12 <= len(buf):
        if buf[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
            bom = buf[pos + 8:pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                e = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                e = ">"
            else:
                raise ValueError("bad pcapng byte-order magic")
            ifaces = []
            btype = PCAPNG_SHB
            blen = struct.unpack(e + "I", buf[pos + 4:pos + 8])[0]
        else:
            if pos == 0:
                raise ValueError("pcapng must start with an SHB")
            btype, blen = struct.unpack(e + "II", buf[pos:pos + 8])
        if blen < 12 or blen % 4 or pos + blen > len(buf):
            break  # CHOICE 7
        body = buf[pos + 8:pos + blen - 4]
        if btype == PCAPNG_SHB:
            major = struct.unpack(e + "H", body[4:6])[0]
            if major != 1:
                raise ValueError("unsupported pcapng version %d" % major)
        elif btype == PCAPNG_IDB:
            linktype, _res, snaplen = struct.unpack(e + "HHI", body[:8])
            iface = _Iface(linktype, snaplen)
            opts = _options(body[8:], e)
            if 9 in opts and len(opts[9]) >= 1:
                iface.tsresol = opts[9][0]
            if 14 in opts and len(opts[14]) >= 8:
                iface.tsoffset = struct.unpack(e + "q", opts[14][:8])[0]
            ifaces.append(iface)
        elif btype in (PCAPNG_EPB, PCAPNG_PB):
            if btype == PCAPNG_EPB:
                iface_id, hi, lo, caplen, origlen = struct.unpack(e + "IIIII", body[:20])
            else:
                iface_id, _drops, hi, lo, caplen, origlen = struct.unpack(e + "HHIIII", body[:20])
            data = body[20:20 + caplen]
            if iface_id < len(ifaces):
                ifc = ifaces[iface_id]
                ts = _ticks_to_ns((hi << 32) | lo, ifc.tsresol) + ifc.tsoffset * 1_000_000_000
                lt = ifc.linktype
            else:  # CHOICE 6
                ts = _ticks_to_ns((hi << 32) | lo, 6)
                lt = -1
            out.append(Record(ts, iface_id, lt, data, origlen, pos))
            last_ts = ts
        elif btype == PCAPNG_SPB:
            origlen = struct.unpack(e + "I", body[:4])[0]
            caplen = min(origlen, len(body) - 4)
            lt = -1
            if ifaces:
                lt = ifaces[0].linktype
                if ifaces[0].snaplen:
                    caplen = min(caplen, ifaces[0].snaplen)
            out.append(Record(last_ts, 0, lt, body[4:4 + caplen], origlen, pos))
        # every other block type is skipped by its length
        pos += blen
    return out


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

ST_OK, ST_NOT_IP, ST_UNKNOWN_LINK, ST_CUT_SHORT, ST_MALFORMED = 0, 1, 2, 3, 4
NO_VLAN = 0xFFFF
V4_MAPPED = 0xFFFF << 32

# CHOICE 3: bytes of transport header needed for the ports / the TCP flags
_PORT_BYTES = {6: 4, 17: 4, 1: 2, 58: 2}
_TCP_FLAGS_BYTES = 14

IPV6_EXT_GENERIC = (0, 43, 60, 135, 139, 140)  # length (x + 1) * 8
IPV6_EXT_FRAG = 44
IPV6_EXT_AH = 51  # length (x + 2) * 4

VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
NULL_AF_INET = (2,)
NULL_AF_INET6 = (10, 24, 28, 30)


@dataclass
class Packet:
    ts_ns: int
    interface: int
    wire_len: int
    cap_len: int
    offset: int
    src: int = 0
    dst: int = 0
    sport: int = 0
    dport: int = 0
    proto: int = 0
    ip_version: int = 0
    tcp_flags: int = 0
    vlan: int = NO_VLAN
    frag: int = 0
    frag_id: int = 0
    status: int = ST_OK

    # the packet-batch halves of docs/flows.md
    @property
    def src_hi(self) -> int:
        return self.src >> 64

    @property
    def src_lo(self) -> int:
        return self.src & 0xFFFFFFFFFFFFFFFF

    @property
    def dst_hi(self) -> int:
        return self.dst >> 64

    @property
    def dst_lo(self) -> int:
        return self.dst & 0xFFFFFFFFFFFFFFFF

    @property
    def src_str(self) -> str:
        return addr_str(self.src, self.ip_version)

    @property
    def dst_str(self) -> str:
        return addr_str(self.dst, self.ip_version)


def addr_str(addr: int, ip_version: int) -> str:
    """'a.b.c.d' for IPv4 (stored as ::ffff:a.b.c.d), compressed IPv6 otherwise."""
    if ip_version == 4:
        return str(ipaddress.IPv4Address(addr & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(addr))


def addr_int(text: str) -> int:
    """Inverse of addr_str: IPv4 text -> ::ffff:a.b.c.d as int."""
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return V4_MAPPED | int(a)
    return int(a)


def _u16(d: bytes, i: int) -> int:
    return (d[i] << 8) | d[i + 1]


# link-layer results
L3_NONE, L3_V4, L3_V6, L3_ANY, L3_MPLS = "none", "v4", "v6", "any", "mpls"


def _ethertype(d: bytes, off: int, etype: int, vlan: int):
    """Follow an ethertype chain. Returns (l3 kind, offset of l3, vlan)."""
    while True:
        if etype in VLAN_TPIDS:
            if off + 4 > len(d):
                return L3_NONE, off, vlan
            if vlan == NO_VLAN:
                vlan = _u16(d, off) & 0x0FFF
            etype = _u16(d, off + 2)
            off += 4
        elif etype == 0x0800:
            return L3_V4, off, vlan
        elif etype == 0x86DD:
            return L3_V6, off, vlan
        elif etype in (0x8847, 0x8848):
            while True:
                if off + 4 > len(d):
                    return L3_NONE, off, vlan
                bottom = d[off + 2] & 1
                off += 4
                if bottom:
                    return L3_MPLS, off, vlan
        elif etype == 0x8864:
            if off + 8 > len(d):
                return L3_NONE, off, vlan
            ppp = _u16(d, off + 6)
            off += 8
            if ppp == 0x0021:
                return L3_V4, off, vlan
            if ppp == 0x0057:
                return L3_V6, off, vlan
            return L3_NONE, off, vlan
        else:
            return L3_NONE, off, vlan


def _link(d: bytes, lt: int):
    """(l3 kind, offset, vlan) or None for an unknown link type."""
    if lt == 1:
        if len(d) < 14:
            return L3_NONE, 0, NO_VLAN
        etype = _u16(d, 12)
        if etype <= 1500:  # 802.3 length field: LLC/SNAP
            if len(d) < 22:
                return L3_NONE, 0, NO_VLAN
            if d[14] == 0xAA and d[15] == 0xAA and d[16] == 0x03 and d[17:20] in (b"\0\0\0", b"\0\0\xf8"):
                return _ethertype(d, 22, _u16(d, 20), NO_VLAN)
            return L3_NONE, 0, NO_VLAN
        return _ethertype(d, 14, etype, NO_VLAN)
    if lt == 113:
        if len(d) < 16:
            return L3_NONE, 0, NO_VLAN
        proto = _u16(d, 14)
        if proto < 0x0600:
            return L3_NONE, 0, NO_VLAN
        return _ethertype(d, 16, proto, NO_VLAN)
    if lt == 276:
        if len(d) < 20:
            return L3_NONE, 0, NO_VLAN
        proto = _u16(d, 0)
        if proto < 0x0600:
            return L3_NONE, 0, NO_VLAN
        return _ethertype(d, 20, proto, NO_VLAN)
    if lt in (101, 12, 14, 228, 229):  # CHOICE 2
        return L3_ANY, 0, NO_VLAN
    if lt in (0, 108):
        if len(d) < 4:
            return L3_NONE, 0, NO_VLAN
        candidates = [struct.unpack(">I", d[:4])[0]]
        if lt == 0:  # host order of an unknown writer: try both
            candidates.append(struct.unpack("<I", d[:4])[0])
        if any(af in NULL_AF_INET for af in candidates):
            return L3_V4, 4, NO_VLAN
        if any(af in NULL_AF_INET6 for af in candidates):
            return L3_V6, 4, NO_VLAN
        return L3_NONE, 4, NO_VLAN
    return None


def _transport(p: Packet, d: bytes, pos: int) -> None:
    need = _PORT_BYTES.get(p.proto)
    if need is not None and pos + need <= len(d):
        if p.proto in (6, 17):
            p.sport, p.dport = _u16(d, pos), _u16(d, pos + 2)
        else:
            p.sport, p.dport = d[pos], d[pos + 1]
    if p.proto == 6 and pos + _TCP_FLAGS_BYTES <= len(d):
        p.tcp_flags = _u16(d, pos + 12) & 0x0FFF


def _fail(p: Packet, status: int) -> Packet:
    # CHOICE 1: nothing of the IP layer survives a bad status
    p.status = status
    p.ip_version = 0
    p.src = p.dst = p.sport = p.dport = p.proto = p.tcp_flags = p.frag = p.frag_id = 0
    return p


def _ipv4(p: Packet, d: bytes, off: int) -> Packet:
    if off + 1 > len(d):
        return _fail(p, ST_CUT_SHORT)
    if d[off] >> 4 != 4:
        return _fail(p, ST_MALFORMED)
    ihl = (d[off] & 0x0F) * 4
    if ihl < 20:
        return _fail(p, ST_MALFORMED)
    if off + ihl > len(d):
        return _fail(p, ST_CUT_SHORT)
    p.ip_version = 4
    p.frag_id = _u16(d, off + 4)
    flags_off = _u16(d, off + 6)
    more = bool(flags_off & 0x2000)
    frag_off = flags_off & 0x1FFF
    p.proto = d[off + 9]
    p.src = V4_MAPPED | struct.unpack(">I", d[off + 12:off + 16])[0]
    p.dst = V4_MAPPED | struct.unpack(">I", d[off + 16:off + 20])[0]
    if more or frag_off > 0:
        p.frag |= 1
    if frag_off == 0 and more:
        p.frag |= 2
    if frag_off == 0:
        _transport(p, d, off + ihl)
    return p


def _ipv6(p: Packet, d: bytes, off: int) -> Packet:
    if off + 1 > len(d):
        return _fail(p, ST_CUT_SHORT)
    if d[off] >> 4 != 6:
        return _fail(p, ST_MALFORMED)
    if off + 40 > len(d):
        return _fail(p, ST_CUT_SHORT)
    p.ip_version = 6
    nxt = d[off + 6]
    p.src = int.from_bytes(d[off + 8:off + 24], "big")
    p.dst = int.from_bytes(d[off + 24:off + 40], "big")
    pos = off + 40
    first_or_unfragmented = True
    while nxt in IPV6_EXT_GENERIC or nxt == IPV6_EXT_FRAG or nxt == IPV6_EXT_AH:
        if pos + 2 > len(d):
            return _fail(p, ST_CUT_SHORT)
        if nxt == IPV6_EXT_FRAG:
            hlen = 8
        elif nxt == IPV6_EXT_AH:
            hlen = (d[pos + 1] + 2) * 4
        else:
            hlen = (d[pos + 1] + 1) * 8
        if pos + hlen > len(d):
            return _fail(p, ST_CUT_SHORT)  # CHOICE 1: ext headers are IP header
        if nxt == IPV6_EXT_FRAG:
            w = _u16(d, pos + 2)
            frag_off, more = w >> 3, w & 1
            p.frag_id = struct.unpack(">I", d[pos + 4:pos + 8])[0]
            if more or frag_off > 0:
                p.frag |= 1
            if frag_off == 0 and more:
                p.frag |= 2
            if frag_off > 0:
                first_or_unfragmented = False
        nxt = d[pos]
        pos += hlen
        if not first_or_unfragmented:
            break  # what follows is the middle of the fragmentable part
    p.proto = nxt
    if first_or_unfragmented:
        _transport(p, d, pos)
    return p


def decode(rec: Record) -> Packet:
    p = Packet(ts_ns=rec.ts_ns, interface=rec.interface, wire_len=rec.wire_len,
               cap_len=len(rec.data), offset=rec.offset)
    d = rec.data
    link = _link(d, rec.linktype)
    if link is None:
        return _fail(p, ST_UNKNOWN_LINK)
    kind, off, vlan = link
    p.vlan = vlan
    if kind == L3_NONE:
        return _fail(p, ST_NOT_IP)
    if kind in (L3_ANY, L3_MPLS):
        if off >= len(d):
            return _fail(p, ST_CUT_SHORT if kind == L3_ANY else ST_NOT_IP)
        version = d[off] >> 4
        if version == 4:
            kind = L3_V4
        elif version == 6:
            kind = L3_V6
        else:
            return _fail(p, ST_MALFORMED if kind == L3_ANY else ST_NOT_IP)
    if kind == L3_V4:
        return _ipv4(p, d, off)
    return _ipv6(p, d, off)


def naive_packets(paths) -> list[Packet]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [decode(r) for path in paths for r in read_records(path)]


# --------------------------------------------------------------------------
# Community ID v1
# --------------------------------------------------------------------------

# Community ID v1 / Zeek counterpart types (bidirectional request/reply)
CID_ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
CID_ICMP6 = {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
             135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144}
CID_PORT_PROTOS = (1, 6, 17, 58, 132)


def _addr_bytes(addr: int, ip_version: int) -> bytes:
    if ip_version == 4:
        return (addr & 0xFFFFFFFF).to_bytes(4, "big")
    return addr.to_bytes(16, "big")


def community_id(src: int, dst: int, ip_version: int, proto: int,
                 sport: int = 0, dport: int = 0, seed: int = 0) -> str:
    """Community ID v1 of a packet or flow seen from ``src``.

    For ICMP/ICMPv6, ``sport``/``dport`` are the message type and code."""
    s, d = _addr_bytes(src, ip_version), _addr_bytes(dst, ip_version)
    has_ports = proto in CID_PORT_PROTOS
    one_way = False
    if proto == 1 or proto == 58:
        table = CID_ICMP4 if proto == 1 else CID_ICMP6
        if sport in table:
            dport = table[sport]
        else:
            one_way = True
    if not one_way:
        ordered = s < d or (s == d and has_ports and sport < dport)
        if not ordered:
            s, d, sport, dport = d, s, dport, sport
    data = struct.pack(">H", seed) + s + d + bytes([proto, 0])
    if has_ports:
        data += struct.pack(">HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


# --------------------------------------------------------------------------
# Flows
# --------------------------------------------------------------------------

# docs/flows.md counterpart types for the flow key (CHOICE 8)
FLOW_ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10}
FLOW_ICMP6 = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
              130: 131, 131: 130, 144: 145, 145: 144, 146: 147, 147: 146}

TRANSPORT_NAMES = {1: "icmp", 2: "igmp", 4: "ipv4", 6: "tcp", 17: "udp", 41: "ipv6",
                   47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 59: "ipv6-nonxt",
                   89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp", 136: "udplite"}

NS = 1_000_000_000


def flow_ports(proto: int, sport: int, dport: int) -> tuple[int, int]:
    """Ports as the flow key sees them (ICMP: type and counterpart, or code)."""
    if proto == 1 and sport in FLOW_ICMP4:
        return sport, FLOW_ICMP4[sport]
    if proto == 58 and sport in FLOW_ICMP6:
        return sport, FLOW_ICMP6[sport]
    return sport, dport


@dataclass
class _Flow:
    key: tuple
    init: tuple  # (addr, port) of the initiator
    resp: tuple
    proto: int
    ip_version: int
    vlan: int
    cid_ports: tuple  # raw ports of the first packet, from the initiator
    first_ns: int
    last_ns: int
    n: list = field(default_factory=lambda: [0, 0])
    b: list = field(default_factory=lambda: [0, 0])
    f_first: list = field(default_factory=lambda: [None, None])
    f_last: list = field(default_factory=lambda: [None, None])
    flags: list = field(default_factory=lambda: [0, 0])

    def add(self, direction: int, p: Packet) -> None:
        self.n[direction] += 1
        self.b[direction] += p.wire_len
        self.flags[direction] |= p.tcp_flags
        ff, fl = self.f_first[direction], self.f_last[direction]
        self.f_first[direction] = p.ts_ns if ff is None else min(ff, p.ts_ns)
        self.f_last[direction] = p.ts_ns if fl is None else max(fl, p.ts_ns)
        self.first_ns = min(self.first_ns, p.ts_ns)
        self.last_ns = max(self.last_ns, p.ts_ns)

    def row(self, reason: str) -> dict:
        src, sport = self.init
        dst, dport = self.resp
        return {
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "src_ip": addr_str(src, self.ip_version),
            "src_port": sport,
            "dst_ip": addr_str(dst, self.ip_version),
            "dst_port": dport,
            "protocol": self.proto,
            "transport": TRANSPORT_NAMES.get(self.proto, str(self.proto)),
            "ip_version": self.ip_version,
            "vlan_id": -1 if self.vlan == NO_VLAN else self.vlan,
            "src2dst_packets": self.n[0],
            "src2dst_bytes": self.b[0],
            "dst2src_packets": self.n[1],
            "dst2src_bytes": self.b[1],
            "bidirectional_packets": self.n[0] + self.n[1],
            "bidirectional_bytes": self.b[0] + self.b[1],
            "src2dst_first_ns": self.f_first[0],
            "src2dst_last_ns": self.f_last[0],
            "dst2src_first_ns": self.f_first[1],
            "dst2src_last_ns": self.f_last[1],
            "src2dst_tcp_flags": self.flags[0],
            "dst2src_tcp_flags": self.flags[1],
            "duration_ms": (self.last_ns - self.first_ns) / 1e6,
            "expiry_reason": reason,
            "community_id": community_id(src, dst, self.ip_version, self.proto, *self.cid_ports),
        }


def flows_from_packets(packets, idle_timeout: float = 120.0, active_timeout: float = 1800.0) -> list[dict]:
    """The flow table over packets in the given (stream) order."""
    idle_ns = round(idle_timeout * NS)
    active_ns = round(active_timeout * NS)
    table: dict[tuple, _Flow] = {}
    frag_ports: dict[tuple, tuple] = {}
    closed: list[dict] = []
    clock = None
    for p in packets:
        clock = p.ts_ns if clock is None else max(clock, p.ts_ns)
        if p.ip_version == 0:
            continue
        sport, dport = p.sport, p.dport
        if p.frag & 2:  # first fragment: remember its ports
            frag_ports[(p.src, p.dst, p.proto, p.frag_id)] = (sport, dport)
        elif p.frag & 1:  # later fragment: ports of its first fragment, or 0
            sport, dport = frag_ports.get((p.src, p.dst, p.proto, p.frag_id), (0, 0))
        ksport, kdport = flow_ports(p.proto, sport, dport)
        a, b = (p.src, ksport), (p.dst, kdport)
        key = (p.vlan, p.proto) + ((a, b) if a <= b else (b, a))

        flow = table.get(key)
        if flow is not None:
            if p.ts_ns - flow.last_ns > idle_ns:
                closed.append(flow.row("idle"))
                flow = None
            elif p.ts_ns - flow.first_ns > active_ns:
                closed.append(flow.row("active"))
                flow = None
        if flow is None:
            synack = p.proto == 6 and (p.tcp_flags & 0x012) == 0x012  # CHOICE 9
            if synack:
                init, resp, cid_ports = b, a, (dport, sport)
            else:
                init, resp, cid_ports = a, b, (sport, dport)
            flow = _Flow(key, init, resp, p.proto, p.ip_version, p.vlan, cid_ports, p.ts_ns, p.ts_ns)
            table[key] = flow
        direction = 0 if a == flow.init else 1
        flow.add(direction, p)

    for flow in table.values():  # CHOICE 11
        reason = "idle" if clock - flow.last_ns > idle_ns else "end"
        closed.append(flow.row(reason))
    closed.sort(key=flow_sort_key)
    return closed


def flow_sort_key(row: dict):
    return (row["first_ns"], row["last_ns"], row["vlan_id"], row["protocol"],
            addr_int(row["src_ip"]), row["src_port"], addr_int(row["dst_ip"]), row["dst_port"])


def naive_flows(paths, idle_timeout: float = 120.0, active_timeout: float = 1800.0) -> list[dict]:
    """Flows of the files given together (one stream, in the order given).

    The clock of CHOICE 11 is the largest timestamp of all records read,
    including non-IP ones."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return flows_from_packets(naive_packets(paths), idle_timeout, active_timeout)
