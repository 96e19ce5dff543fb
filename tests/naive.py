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
    ``proto``, ports, flags and fragment fields 0 (the outermost VLAN id found on
    the way is kept).  Such packets are not counted in flows.  Status 3 means the
    fixed IP header (20 bytes IPv4, 40 bytes IPv6) is not all captured; status 4
    covers a version nibble that contradicts the link layer (ethertype 0x0800
    with version 6, ...; checked once the fixed header is there) and an IPv4 IHL
    below 5.  IPv4 options and IPv6 extension headers cut short are *not* status
    3 (docs/flows.md): the packet keeps its addresses, ``proto`` is the last
    next-header value reached, ports are 0.  An extension header is followed
    when its first 2 bytes (all 8 for a fragment header) are captured, even if
    its length runs past the capture.  The IPv4 total length and IPv6 payload
    length are never used to decode (TSO / BIG TCP frames report 0), only for
    the payload length (CHOICE 19).  A frame cut before
    the IP header could be found (link header, VLAN tag, MPLS label, PPPoE, PBB,
    VN-Tag, or an LLC/SNAP header whose captured bytes could still be
    AA AA 03 00 00 00/F8, not all captured) is status 3 too: "not IP" cannot be
    known.  Captured LLC bytes that already rule SNAP + IP out are status 1.  ``frag_id`` is 0 unless the packet
    is a fragment (``frag != 0``); an IPv6 atomic fragment (offset 0, no M) is
    not a fragment; with several fragment headers the last one decides.
2.  Link types 101/12/14 *and* 228/229, and the NFLOG payload, take the IP
    version from the first nibble (as tshark does: a LINKTYPE_IPV4 file carrying
    IPv6 decodes as IPv6); a nibble other than 4/6 there is status 4.  After an
    MPLS stack a nibble other than 4/6 is "not IP" (status 1: pseudowires).
3.  "Transport header cut short" is judged per field: ports are read when the 4
    bytes holding them are captured (TCP, UDP, SCTP, UDP-Lite; 2 bytes of
    type/code for ICMP/ICMPv6, whatever the IP version), TCP flags when bytes
    12-13 of the TCP header are captured.  Otherwise 0.  See ``_PORT_BYTES`` /
    ``_TCP_FLAGS_BYTES``.
4.  An ethertype below 0x0600 anywhere in the chain (after Ethernet, SLL, SLL2,
    Cisco HDLC, a VLAN tag, ...) is an 802.3 length: IP only behind LLC/SNAP
    AA AA 03 with OUI 00-00-00 or 00-00-F8 (the encapsulated-ethertype OUIs, as
    tshark); anything else is not IP.  The ethertype after SNAP goes through the
    same chain (VLAN, MPLS, PPPoE, PBB, VN-Tag).  PPP and PPPoE carry IPv4
    (0x0021), IPv6 (0x0057) and MPLS (0x0281, 0x0283); other PPP protocols are
    not IP.
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
8.  ICMP flow-key ports: the request/reply pairs of docs/flows.md, which are
    Community ID v1's (ICMPv6 128/129, 130/131, 133/134, 135/136, 139/140,
    144/145; 146/147 are *not* paired).  ``community_id`` is computed from the
    first packet's type and code.  The mapping is applied to the ports a packet
    has after fragment attribution, so an unattributed ICMP non-first fragment
    (type 0, code 0) lands in the flow key of "echo reply" ports (0, 8).
9.  SYN+ACK means ``flags & 0x012 == 0x012`` (other bits may be set).
10. Per direction ``*_first_ns`` is the minimum and ``*_last_ns`` the maximum of
    the timestamps seen (same as first/last packet when time does not go
    backwards).  The idle test is ``ts - last_ns > idle``, the active test
    ``ts - first_ns > active``; idle is tested first.  Timeouts in seconds are
    converted to ns with ``round``.
11. End of input: a flow still open is closed ``idle`` when the stream clock (the
    largest timestamp of any record read, IP or not: "the latest packet of the
    input") is more than ``idle_timeout`` after its last packet -- a periodic
    sweep would have closed it as idle -- and ``end`` otherwise.  This makes the
    result independent of when sweeps run, which the doc promises.
12. Fragment map (src, dst, proto, frag_id) -> ports, filled by first fragments,
    never expires here (a new first fragment with the same key overwrites), and
    it is shared across files.  VLAN is not part of its key.
13. Community ID hashes ports (0/0 when none were read) for its port protocols
    (1, 6, 17, 58, 132); other protocols, UDP-Lite included, are hashed without
    ports, as the Community ID spec says.
14. ``transport`` names: the IANA keywords in lower case of
    ``TRANSPORT_NAMES`` (the same set as detector/flows/table.py), else
    ``str(protocol)``.
15. ``ts_ns`` is int64 nanoseconds: an exact time beyond the int64 range wraps
    (two's complement), as docs/flows.md says (a broken pcapng writer in the
    corpus stamps packets in the year ~150000).  Times before 1970 are negative.
16. Tags and shims between link and network layer (VLAN tags, MPLS label
    stacks, PPPoE, PBB, VN-Tag, LLC/SNAP) are followed at most 8 *in all*
    (docs/flows.md says "a depth of 8 each"; the kernel counts them together,
    and so do we); what is still a tag after 8 is not IP (status 1).  An MPLS
    stack without bottom-of-stack within 8 labels is status 4.  IPv6 extension
    headers are followed 12 deep (then ``proto`` is the next-header value
    reached, ports 0 unless it is a transport).
17. NFLOG: 4-byte header, then TLVs with little-endian length and type, at most
    32 looked at; the packet is the value of the first NFULA_PAYLOAD (type 9)
    TLV, up to the end of the captured bytes.  A record whose captured TLVs hold
    no payload (or a TLV length below 4) is not IP (status 1): NFLOG records
    need not carry a packet.
18. A flow whose two end points are the same (address and port) cannot tell its
    directions apart: every packet goes the way the first one went (dst2src when
    that was a SYN+ACK, else src2dst).
19. ``payload_len``: see ``_TRANSPORT_HEADER``.  ``tcp_seq``: the TCP sequence
    number when its 4 bytes were captured, else 0.  ``tcp_zero_window``: 1
    when the TCP window's 2 bytes were captured and are 0.
20. ``conn_state`` and ``history`` follow Zeek's TCP analyzer
    (src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc: update_history,
    UpdateStateMachine; base/protocols/conn/main.zeek: conn_state), replayed
    per packet with Zeek's relative sequence numbers (``_ZeekTcp``), with the
    flow's initiator as Zeek's originator.  Zero windows (w) as Zeek's
    update_window has them, repeated at the 10th, 100th ... (its
    ScaledHistoryEntry); retransmissions (t) as update_last_seq has them, but
    only with TRACK_RETRANSMISSIONS (the kernel leaves them out).  Not
    modelled: checksums (c), content gaps (g), Zeek's own
    role flips (a "^" is written when the first packet was the responder's
    SYN+ACK, as Zeek does once it flips such a connection), and sequence
    wrap-around.  A repeated FIN or RST is told from the last one by its
    sequence number as sent, where Zeek takes it relative to the side's start
    (the two differ only when a side's first packet was a RST and it later
    sent a SYN, which moves Zeek's start).  At most 24 letters are kept.  UDP: "D"/"d" for each side's first packet, SF or S0; other
    protocols: no history, OTH.  A TCP flow closed ``idle`` or ``end`` says
    ``rst`` when either side is reset, ``fin`` when both are closed.

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
import re
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
        sec, frac, incl, orig = struct.unpack(e + "IIII", buf[pos : pos + 16])
        if pos + 16 + incl > len(buf):
            break  # CHOICE 7: partial last record dropped
        data = buf[pos + 16 : pos + 16 + incl]
        out.append(Record(sec * 1_000_000_000 + frac * frac_to_ns, 0, linktype, data, orig, pos))
        pos += 16 + incl
    return out


def _ticks_to_ns(ticks: int, tsresol: int) -> int:
    if tsresol & 0x80:
        return ticks * 1_000_000_000 // (2 ** (tsresol & 0x7F))
    if tsresol <= 9:
        return ticks * 10 ** (9 - tsresol)
    return ticks // 10 ** (tsresol - 9)


def _int64(ns: int) -> int:
    """CHOICE 15: docs/flows.md: times are int64 ns; later dates wrap (two's complement)."""
    return (ns + (1 << 63)) % (1 << 64) - (1 << 63)


def _options(body: bytes, e: str) -> dict[int, bytes]:
    """pcapng options (code -> first value)."""
    opts = {}
    pos = 0
    while pos + 4 <= len(body):
        code, length = struct.unpack(e + "HH", body[pos : pos + 4])
        if code == 0:
            break
        opts.setdefault(code, body[pos + 4 : pos + 4 + length])
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
        if buf[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            bom = buf[pos + 8 : pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                e = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                e = ">"
            else:
                raise ValueError("bad pcapng byte-order magic")
            ifaces = []
            btype = PCAPNG_SHB
            blen = struct.unpack(e + "I", buf[pos + 4 : pos + 8])[0]
        else:
            if pos == 0:
                raise ValueError("pcapng must start with an SHB")
            btype, blen = struct.unpack(e + "II", buf[pos : pos + 8])
        if blen < 12 or blen % 4 or pos + blen > len(buf):
            break  # CHOICE 7
        body = buf[pos + 8 : pos + blen - 4]
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
            data = body[20 : 20 + caplen]
            if iface_id < len(ifaces):
                ifc = ifaces[iface_id]
                ts = _int64(
                    _ticks_to_ns((hi << 32) | lo, ifc.tsresol) + ifc.tsoffset * 1_000_000_000
                )
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
            out.append(Record(last_ts, 0, lt, body[4 : 4 + caplen], origlen, pos))
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
# (TCP, UDP, SCTP, UDP-Lite: the two ports; ICMP, ICMPv6: type and code)
_PORT_BYTES = {6: 4, 17: 4, 132: 4, 136: 4, 1: 2, 58: 2}
_TCP_FLAGS_BYTES = 14

IPV6_EXT_GENERIC = (0, 43, 60, 135, 139, 140)  # length (x + 1) * 8
IPV6_EXT_FRAG = 44
IPV6_EXT_AH = 51  # length (x + 2) * 4

# Ethertypes and the like
ET_IPV4 = 0x0800
ET_IPV6 = 0x86DD
ET_ANY = -1  # the IP version is the first nibble (raw IP, after MPLS, NFLOG payload)
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
ET_MPLS = (0x8847, 0x8848)
ET_PPPOE = 0x8864
ET_PBB = 0x88E7  # 4-byte I-tag, then a 14-byte customer Ethernet header
ET_VNTAG = 0x8926  # 6 bytes, the ethertype in the last two
SNAP_PREFIXES = (b"\xaa\xaa\x03\x00\x00\x00", b"\xaa\xaa\x03\x00\x00\xf8")  # CHOICE 4
PPP_PROTOCOLS = {0x0021: ET_IPV4, 0x0057: ET_IPV6, 0x0281: 0x8847, 0x0283: 0x8848}

NULL_AF_INET = (2,)
NULL_AF_INET6 = (10, 24, 28, 30)

# CHOICE 16: bounds on hostile stacks, counted as the kernel counts them
MAX_SHIMS = 8  # VLAN tags + MPLS stacks + PPPoE + PBB + VN-Tag + LLC/SNAP, together
MAX_MPLS_LABELS = 8  # per MPLS stack
MAX_EXT_HEADERS = 12  # IPv6 extension headers
MAX_NFLOG_TLVS = 32  # NFLOG TLVs looked at before the payload one


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
    payload_len: int = 0  # transport payload bytes, from the IP length fields (CHOICE 19)
    tcp_seq: int = 0
    tcp_zero_window: int = 0  # 1 when the TCP window's 2 bytes were captured and are 0

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


def _u16le(d: bytes, i: int) -> int:
    return d[i] | (d[i + 1] << 8)


class _Stop(Exception):
    """Decoding ends early with a status (raised inside decode only)."""

    def __init__(self, status: int):
        self.status = status


def _need(d: bytes, end: int) -> None:
    """CHOICE 1: a header the frame does not hold entirely is "cut short"."""
    if end > len(d):
        raise _Stop(ST_CUT_SHORT)


def _link(d: bytes, lt: int) -> tuple[int, int]:
    """(ethertype, offset of what follows the link header); raises _Stop."""
    if lt == 1:  # Ethernet
        _need(d, 14)
        return _u16(d, 12), 14
    if lt == 113:  # Linux cooked v1
        _need(d, 16)
        return _u16(d, 14), 16
    if lt == 276:  # Linux cooked v2
        _need(d, 20)
        return _u16(d, 0), 20
    if lt in (101, 12, 14, 228, 229):  # raw IP, IPv4, IPv6: CHOICE 2
        return ET_ANY, 0
    if lt in (0, 108):  # BSD null (host order) / OpenBSD loopback (network order)
        _need(d, 4)
        candidates = [struct.unpack(">I", d[:4])[0]]
        if lt == 0:  # host order of an unknown writer: try both
            candidates.append(struct.unpack("<I", d[:4])[0])
        if any(af in NULL_AF_INET for af in candidates):
            return ET_IPV4, 4
        if any(af in NULL_AF_INET6 for af in candidates):
            return ET_IPV6, 4
        raise _Stop(ST_NOT_IP)
    if lt in (9, 50):  # PPP: optional FF 03, protocol of 1 byte (odd first byte) or 2
        pos = 2 if d[:2] == b"\xff\x03" else 0
        _need(d, pos + 1)
        if d[pos] & 1:
            proto, pos = d[pos], pos + 1
        else:
            _need(d, pos + 2)
            proto, pos = _u16(d, pos), pos + 2
        if proto not in PPP_PROTOCOLS:
            raise _Stop(ST_NOT_IP)
        return PPP_PROTOCOLS[proto], pos
    if lt == 104:  # Cisco HDLC: address, control, ethertype
        _need(d, 4)
        return _u16(d, 2), 4
    if lt == 239:  # NFLOG: 4-byte header, then little-endian TLVs (CHOICE 17)
        pos = 4
        for _ in range(MAX_NFLOG_TLVS):
            if pos + 4 > len(d):
                break
            length, tlv_type = _u16le(d, pos), _u16le(d, pos + 2)
            if length < 4:
                break
            if tlv_type == 9:  # NFULA_PAYLOAD
                return ET_ANY, pos + 4
            pos += (length + 3) // 4 * 4
        raise _Stop(ST_NOT_IP)
    raise _Stop(ST_UNKNOWN_LINK)


def _shims(p: Packet, d: bytes, etype: int, off: int) -> tuple[int, int]:
    """Follow VLAN tags, MPLS stacks, PPPoE, PBB, VN-Tag and LLC/SNAP headers
    (at most MAX_SHIMS of them in all).  Sets ``p.vlan`` to the outermost VLAN id;
    returns (ethertype, offset) of what follows; raises _Stop."""
    for _ in range(MAX_SHIMS):
        if etype in VLAN_TPIDS:
            _need(d, off + 4)
            if p.vlan == NO_VLAN:
                p.vlan = _u16(d, off) & 0x0FFF
            etype, off = _u16(d, off + 2), off + 4
        elif etype in ET_MPLS:
            for _label in range(MAX_MPLS_LABELS):
                _need(d, off + 4)
                bottom = d[off + 2] & 1
                off += 4
                if bottom:
                    break
            else:
                raise _Stop(ST_MALFORMED)  # no bottom of stack within MAX_MPLS_LABELS
            etype = ET_ANY
        elif etype == ET_PPPOE:
            _need(d, off + 8)
            ppp = _u16(d, off + 6)
            if ppp not in PPP_PROTOCOLS:
                raise _Stop(ST_NOT_IP)
            etype, off = PPP_PROTOCOLS[ppp], off + 8
        elif etype == ET_PBB:
            _need(d, off + 18)
            etype, off = _u16(d, off + 16), off + 18
        elif etype == ET_VNTAG:
            _need(d, off + 6)
            etype, off = _u16(d, off + 4), off + 6
        elif 0 <= etype < 0x0600:  # CHOICE 4: an 802.3 length field, then LLC
            head = d[off : off + 8]
            if not any(prefix.startswith(head[:6]) for prefix in SNAP_PREFIXES):
                raise _Stop(ST_NOT_IP)  # plain LLC (STP, NetBIOS, ...), vendor SNAP
            _need(d, off + 8)  # CHOICE 1: what was captured could still be SNAP + IP
            etype, off = _u16(d, off + 6), off + 8
        else:
            break
    return etype, off


# CHOICE 19: payload = what the IP length fields say follows the IP header
# (IPv4 total length minus the header; IPv6 payload length minus the extension
# headers walked), minus the transport header: TCP's data offset when its byte
# was captured (the same 14 bytes as the flags), else 20; UDP and UDP-Lite 8,
# SCTP 12, ICMP and ICMPv6 8, other protocols nothing. A length field below the
# header (IPv4) or 0 (IPv6 jumbogram) counts the bytes captured instead. A later
# fragment is all payload. Never below 0.
_TRANSPORT_HEADER = {6: 20, 17: 8, 136: 8, 132: 12, 1: 8, 58: 8}


def _transport(p: Packet, d: bytes, pos: int, ip_payload: int) -> None:
    header = _TRANSPORT_HEADER.get(p.proto, 0)
    if p.proto == 6 and pos + _TCP_FLAGS_BYTES <= len(d):
        header = max(20, (d[pos + 12] >> 4) * 4)
    if p.proto == 6 and pos + 8 <= len(d):
        p.tcp_seq = struct.unpack(">I", d[pos + 4 : pos + 8])[0]
    if p.proto == 6 and pos + 16 <= len(d):
        p.tcp_zero_window = int(_u16(d, pos + 14) == 0)
    p.payload_len = max(0, ip_payload - header)
    need = _PORT_BYTES.get(p.proto)
    if need is not None and pos + need <= len(d):
        if need == 4:
            p.sport, p.dport = _u16(d, pos), _u16(d, pos + 2)
        else:
            p.sport, p.dport = d[pos], d[pos + 1]
    if p.proto == 6 and pos + _TCP_FLAGS_BYTES <= len(d):
        p.tcp_flags = _u16(d, pos + 12) & 0x0FFF


def _ipv4(p: Packet, d: bytes, off: int) -> None:
    _need(d, off + 20)  # CHOICE 1: the fixed header is the IP header
    ihl = (d[off] & 0x0F) * 4
    if d[off] >> 4 != 4 or ihl < 20:
        raise _Stop(ST_MALFORMED)
    p.ip_version = 4
    p.proto = d[off + 9]
    p.src = V4_MAPPED | struct.unpack(">I", d[off + 12 : off + 16])[0]
    p.dst = V4_MAPPED | struct.unpack(">I", d[off + 16 : off + 20])[0]
    flags_off = _u16(d, off + 6)
    more = bool(flags_off & 0x2000)
    frag_off = flags_off & 0x1FFF
    if more or frag_off > 0:
        p.frag = 1 if frag_off else 3
        p.frag_id = _u16(d, off + 4)
    total = _u16(d, off + 2)
    ip_payload = total - ihl if total >= ihl else len(d) - off - ihl
    if frag_off == 0:
        # options cut short: off + ihl lies past the captured bytes, so ports 0
        _transport(p, d, off + ihl, ip_payload)
    else:
        p.payload_len = max(0, ip_payload)


def _ipv6(p: Packet, d: bytes, off: int) -> None:
    _need(d, off + 40)
    if d[off] >> 4 != 6:
        raise _Stop(ST_MALFORMED)
    p.ip_version = 6
    p.src = int.from_bytes(d[off + 8 : off + 24], "big")
    p.dst = int.from_bytes(d[off + 24 : off + 40], "big")
    nxt = d[off + 6]
    pos = off + 40
    ip_payload = _u16(d, off + 4) or len(d) - off - 40
    # Extension headers (CHOICE 1): each needs its next-header and length bytes
    # (the whole 8 bytes for a fragment header); one cut before that ends the
    # chain with proto = its own type, status 0, ports 0.  A header whose length
    # runs past the captured bytes still gives its next header.
    for _ in range(MAX_EXT_HEADERS):
        if nxt in IPV6_EXT_GENERIC or nxt == IPV6_EXT_AH:
            if pos + 2 > len(d):
                p.proto = nxt
                p.payload_len = max(0, ip_payload - (pos - off - 40))
                return
            hlen = (d[pos + 1] + 2) * 4 if nxt == IPV6_EXT_AH else (d[pos + 1] + 1) * 8
            nxt, pos = d[pos], pos + hlen
        elif nxt == IPV6_EXT_FRAG:
            if pos + 8 > len(d):
                p.proto = nxt
                p.payload_len = max(0, ip_payload - (pos - off - 40))
                return
            w = _u16(d, pos + 2)
            frag_off, more = w >> 3, w & 1
            nxt = d[pos]
            if more or frag_off > 0:  # else an atomic fragment (RFC 6946): a whole packet
                p.frag = 1 if frag_off else 3
                p.frag_id = struct.unpack(">I", d[pos + 4 : pos + 8])[0]
                if frag_off:
                    p.proto = nxt  # what follows is the middle of the fragmentable part
                    p.payload_len = max(0, ip_payload - (pos + 8 - off - 40))
                    return
            pos += 8
        else:
            break
    p.proto = nxt
    _transport(p, d, pos, ip_payload - (pos - off - 40))


def _fail(p: Packet, status: int) -> Packet:
    # CHOICE 1: nothing of the IP layer survives a bad status (the VLAN id found
    # on the way does)
    p.status = status
    p.ip_version = 0
    p.src = p.dst = p.sport = p.dport = p.proto = p.tcp_flags = p.frag = p.frag_id = 0
    p.payload_len = p.tcp_seq = 0
    p.tcp_zero_window = 0
    return p


def decode(rec: Record) -> Packet:
    p = Packet(
        ts_ns=rec.ts_ns,
        interface=rec.interface,
        wire_len=rec.wire_len,
        cap_len=len(rec.data),
        offset=rec.offset,
    )
    d = rec.data
    try:
        etype, off = _link(d, rec.linktype)
        ip_link = etype == ET_ANY  # raw IP / IPv4 / IPv6 link type, NFLOG payload
        etype, off = _shims(p, d, etype, off)
        if etype == ET_ANY:
            _need(d, off + 1)
            version = d[off] >> 4
            if version == 4:
                etype = ET_IPV4
            elif version == 6:
                etype = ET_IPV6
            else:  # CHOICE 2: the link said IP; after MPLS it may be a pseudowire
                raise _Stop(ST_MALFORMED if ip_link else ST_NOT_IP)
        if etype == ET_IPV4:
            _ipv4(p, d, off)
        elif etype == ET_IPV6:
            _ipv6(p, d, off)
        else:
            raise _Stop(ST_NOT_IP)
    except _Stop as stop:
        return _fail(p, stop.status)
    return p


def naive_packets(paths) -> list[Packet]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [decode(r) for path in paths for r in read_records(path)]


# --------------------------------------------------------------------------
# Zeek's TCP connection model (CHOICE 20)
# --------------------------------------------------------------------------

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
HISTORY_LETTERS = 24  # letters kept (after a "^"); later ones are dropped
# "t" (retransmissions) is left out by the kernel (docs/flows.md: it would cost
# the counting kernel about 20 %); the reference knows how, for tests that ask.
TRACK_RETRANSMISSIONS = False
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


def _seq_delta(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, as a signed 32-bit number."""
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


class _Endpoint:
    def __init__(self, is_orig: bool):
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start_seq = 0
        self.last_seq = 0  # after the last byte sent (32-bit)
        self.hist_last = {"S": 0, "F": 0, "R": 0}
        self.seen: set[str] = set()
        # Zeek's ScaledHistoryEntry counters and thresholds: "T" retransmissions, "W" zero windows
        self.count = {"T": 0, "W": 0}
        self.threshold = {"T": 1, "W": 1}

    def set_state(self, new: int) -> None:
        if new != self.state:
            self.prev_state, self.state = self.state, new

    def rel(self, seq: int) -> int:
        # Zeek's get_relative_seq without wrap-around: a negative delta is
        # kept as the unsigned 64-bit number it becomes there.
        return _seq_delta(seq, self.start_seq) & 0xFFFFFFFFFFFFFFFF


class _ZeekTcp:
    """One TCP connection as Zeek's analyzer follows it."""

    def __init__(self, flipped: bool):
        self.orig = _Endpoint(True)
        self.resp = _Endpoint(False)
        self.history = "^" if flipped else ""

    def _letter(self, ep: _Endpoint, code: str) -> None:
        if len(self.history.lstrip("^")) < HISTORY_LETTERS:
            self.history += code if ep.is_orig else code.lower()

    def _check(self, ep: _Endpoint, kind: str, code: str) -> bool:
        """Zeek's CheckHistory: add the letter the first time; True if seen before."""
        if kind in ep.seen:
            return True
        ep.seen.add(kind)
        self._letter(ep, code)
        return False

    def _scaled(self, ep: _Endpoint, code: str) -> None:
        """Zeek's ScaledHistoryEntry: the letter at the 1st, 10th, 100th ... event."""
        ep.count[code] += 1
        if ep.count[code] == ep.threshold[code]:
            self._letter(ep, code)
            ep.threshold[code] *= 10

    def packet(self, is_orig: bool, flags: int, length: int, seq: int, window: int = 0xFFFF) -> None:
        ep = self.orig if is_orig else self.resp
        peer = self.resp if is_orig else self.orig
        syn, fin, rst, ack = (
            bool(flags & SYN),
            bool(flags & FIN),
            bool(flags & RST),
            bool(flags & ACK),
        )

        # get_segment_len: a RST's payload takes no sequence space; SYN and FIN one each
        seg_len = (0 if rst else length) + syn + fin
        last = (seq + seg_len) & 0xFFFFFFFF

        # init_endpoint: where the relative sequence numbers start
        if ep.state == INACTIVE:
            ep.start_seq = seq if syn else seq - 1
            ep.last_seq = last if syn else seq
        elif syn and (
            (ep.state in (SYN_SENT, SYN_ACK_SENT) and seq != ep.start_seq)
            or ep.state in (ESTABLISHED, PARTIAL)
            or (ep.state == RESET and ep.prev_state == INACTIVE)
        ):
            ep.start_seq = seq
            ep.last_seq = last
        rel_seq = ep.rel(seq)

        # update_history
        bits = syn + fin + rst
        if bits > 1:
            if fin and rst:
                self._check(ep, "I", "I")
            else:
                self._check(ep, "Q", "Q")
        elif bits == 1:
            if syn:
                code = "H" if ack else "S"
                if self._check(ep, "S", code) and rel_seq != ep.hist_last["S"]:
                    self._letter(ep, code)
                ep.hist_last["S"] = rel_seq
            # FIN and RST numbers are compared as sent (see CHOICE 20)
            if fin:
                end = (seq + length) & 0xFFFFFFFF
                if self._check(ep, "F", "F") and end != ep.hist_last["F"]:
                    self._letter(ep, "F")
                ep.hist_last["F"] = end
            if rst:
                if self._check(ep, "R", "R") and seq != ep.hist_last["R"]:
                    self._letter(ep, "R")
                ep.hist_last["R"] = seq
        elif length:
            self._check(ep, "D", "D")
        elif ack:
            self._check(ep, "A", "A")

        # (init_peer, which starts an inactive peer's numbers from this ACK,
        # is left out: the peer's first packet starts them again.)

        # update_window: a zero window, unless with or after a RST of this
        # side, or after the peer's FIN
        if window == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            self._scaled(ep, "W")

        # update_last_seq: payload that ends no later than the side's last
        # sequence number is a retransmission
        delta = _seq_delta(last, ep.last_seq)
        if (syn or rst) and abs(delta) > 1048576:  # TOO_LARGE_SEQ_DELTA
            pass
        elif fin and ep.last_seq == (ep.start_seq + 1) & 0xFFFFFFFF:
            ep.last_seq = last
        elif ep.state == RESET:
            pass
        elif delta > 0:
            ep.last_seq = last
        elif length > 0 and TRACK_RETRANSMISSIONS:
            self._scaled(ep, "T")

        # UpdateStateMachine
        if ep.state == INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(SYN_ACK_SENT if ack else SYN_SENT)
                else:
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    ep.set_state(ESTABLISHED)
            if fin:
                ep.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
            if ep.state == INACTIVE:
                if not is_orig and length == 0 and self.orig.state == SYN_SENT:
                    pass
                elif ack and peer.state == ESTABLISHED:
                    ep.set_state(ESTABLISHED)
                else:
                    ep.set_state(PARTIAL)
        elif ep.state in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                ep.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
        elif ep.state in (ESTABLISHED, PARTIAL):
            if syn and ep.state == PARTIAL and peer.state == INACTIVE and not ack:
                ep.set_state(SYN_SENT)
            if fin and not rst:
                ep.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
        elif ep.state == CLOSED and rst and peer.state != CLOSED:
            ep.set_state(RESET)

    def conn_state(self, orig_size: int, resp_size: int) -> str:
        os, rs = self.orig.state, self.resp.state
        o_inactive = os in (INACTIVE, PARTIAL)
        r_inactive = rs in (INACTIVE, PARTIAL)
        if rs == RESET:
            if os in (SYN_SENT, SYN_ACK_SENT) or (
                os == RESET and orig_size == 0 and resp_size == 0
            ):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os == RESET:
            if r_inactive:
                return "RSTOS0" if re.fullmatch(r"\^?S[^HAFGIQ]*R.*", self.history) else "OTH"
            return "RSTO"
        if rs == CLOSED and os == CLOSED:
            return "SF"
        if os == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"


# --------------------------------------------------------------------------
# Community ID v1
# --------------------------------------------------------------------------

# Community ID v1 / Zeek counterpart types (bidirectional request/reply)
CID_ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
CID_ICMP6 = {
    128: 129,
    129: 128,
    130: 131,
    131: 130,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}
CID_PORT_PROTOS = (1, 6, 17, 58, 132)  # CHOICE 13


def _addr_bytes(addr: int, ip_version: int) -> bytes:
    if ip_version == 4:
        return (addr & 0xFFFFFFFF).to_bytes(4, "big")
    return addr.to_bytes(16, "big")


def community_id(
    src: int, dst: int, ip_version: int, proto: int, sport: int = 0, dport: int = 0, seed: int = 0
) -> str:
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

# docs/flows.md counterpart types for the flow key: the Community ID v1 pairs
FLOW_ICMP4 = CID_ICMP4
FLOW_ICMP6 = CID_ICMP6

# CHOICE 14: IANA keywords in lower case (the set detector/flows/table.py names)
TRANSPORT_NAMES = {
    0: "hopopt",
    1: "icmp",
    2: "igmp",
    4: "ipv4",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    43: "ipv6-route",
    44: "ipv6-frag",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "ipv6-icmp",
    59: "ipv6-nonxt",
    60: "ipv6-opts",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    132: "sctp",
    136: "udplite",
}

NS = 1_000_000_000


def flow_ports(proto: int, sport: int, dport: int) -> tuple[int, int]:
    """Ports as the flow key sees them (ICMP: type and counterpart, or code; CHOICE 8)."""
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
    first_dir: int  # direction of the first packet (1: a SYN+ACK from the responder)
    first_ns: int
    last_ns: int
    n: list = field(default_factory=lambda: [0, 0])
    b: list = field(default_factory=lambda: [0, 0])
    f_first: list = field(default_factory=lambda: [None, None])
    f_last: list = field(default_factory=lambda: [None, None])
    flags: list = field(default_factory=lambda: [0, 0])
    payload: list = field(default_factory=lambda: [0, 0])
    tcp: _ZeekTcp | None = None

    def add(self, direction: int, p: Packet) -> None:
        self.n[direction] += 1
        self.b[direction] += p.wire_len
        self.payload[direction] += p.payload_len
        if self.proto == 6 and p.frag != 1:  # a later fragment has no TCP header
            if self.tcp is None:
                self.tcp = _ZeekTcp(flipped=self.first_dir == 1)
            self.tcp.packet(direction == 0, p.tcp_flags, p.payload_len, p.tcp_seq, 0 if p.tcp_zero_window else 0xFFFF)
        self.flags[direction] |= p.tcp_flags
        ff, fl = self.f_first[direction], self.f_last[direction]
        self.f_first[direction] = p.ts_ns if ff is None else min(ff, p.ts_ns)
        self.f_last[direction] = p.ts_ns if fl is None else max(fl, p.ts_ns)
        self.first_ns = min(self.first_ns, p.ts_ns)
        self.last_ns = max(self.last_ns, p.ts_ns)

    def zeek(self) -> tuple[str, str]:
        """(conn_state, history)"""
        if self.proto == 6:
            tcp = self.tcp or _ZeekTcp(flipped=self.first_dir == 1)
            return tcp.conn_state(self.payload[0], self.payload[1]), tcp.history
        if self.proto == 17:
            return ("SF", "Dd") if self.n[1] else ("S0", "D")
        return "OTH", ""

    def row(self, reason: str) -> dict:
        src, sport = self.init
        dst, dport = self.resp
        conn_state, history = self.zeek()
        if self.proto == 6 and reason in ("idle", "end") and self.tcp is not None:
            states = (self.tcp.orig.state, self.tcp.resp.state)
            if RESET in states:
                reason = "rst"
            elif states == (CLOSED, CLOSED):
                reason = "fin"
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
            "src2dst_payload_bytes": self.payload[0],
            "dst2src_payload_bytes": self.payload[1],
            "conn_state": conn_state,
            "history": history,
            # payload facts are not modelled: the kernel's flows without an
            # inspector leave these empty too
            "service": "",
            "server_name": "",
        }


def flows_from_packets(
    packets, idle_timeout: float = 120.0, active_timeout: float = 1800.0
) -> list[dict]:
    """The flow table over packets in the given (stream) order."""
    idle_ns = round(idle_timeout * NS)  # CHOICE 10
    active_ns = round(active_timeout * NS)
    table: dict[tuple, _Flow] = {}
    frag_ports: dict[tuple, tuple] = {}  # CHOICE 12
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
            flow = _Flow(
                key,
                init,
                resp,
                p.proto,
                p.ip_version,
                p.vlan,
                cid_ports,
                int(synack),
                p.ts_ns,
                p.ts_ns,
            )
            table[key] = flow
        if a == b:  # CHOICE 18
            direction = flow.first_dir
        else:
            direction = 0 if a == flow.init else 1
        flow.add(direction, p)

    for flow in table.values():  # CHOICE 11
        reason = "idle" if clock - flow.last_ns > idle_ns else "end"
        closed.append(flow.row(reason))
    closed.sort(key=flow_sort_key)
    return closed


def flow_sort_key(row: dict):
    return (
        row["first_ns"],
        row["last_ns"],
        row["vlan_id"],
        row["protocol"],
        addr_int(row["src_ip"]),
        row["src_port"],
        addr_int(row["dst_ip"]),
        row["dst_port"],
    )


def naive_flows(paths, idle_timeout: float = 120.0, active_timeout: float = 1800.0) -> list[dict]:
    """Flows of the files given together (one stream, in the order given).

    The clock of CHOICE 11 is the largest timestamp of all records read,
    including non-IP ones."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return flows_from_packets(naive_packets(paths), idle_timeout, active_timeout)
