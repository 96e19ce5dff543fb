"""Decode one captured frame: link layer → IP → transport ports and flags.

``decode_frame`` is a pure function of the buffer and a record's position. It
never reads at or past ``off + caplen`` (the callers guarantee that lies inside
the buffer) and never raises: a frame that is not IP, cut short or malformed is
reported through its status code. Field meanings are in docs/flows.md.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from .._jit import INLINE, LEAF

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0  # BSD loopback, address family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_BSD_A = 12  # DLT_RAW on some BSDs
LINKTYPE_RAW_BSD_B = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108  # OpenBSD loopback, address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_PPP = 9  # RFC 1661, optional HDLC-like address/control bytes
LINKTYPE_PPP_HDLC = 50  # RFC 1662 framing
LINKTYPE_C_HDLC = 104  # Cisco HDLC: address, control, ethertype
LINKTYPE_NFLOG = 239  # Linux netfilter log: TLVs, the packet in NFULA_PAYLOAD

# Ethertypes
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_8021Q = 0x8100  # IEEE 802.1Q C-tag
ETHERTYPE_8021AD = 0x88A8  # IEEE 802.1ad S-tag (QinQ)
ETHERTYPE_QINQ_OLD = 0x9100  # pre-standard QinQ
ETHERTYPE_MPLS = 0x8847
ETHERTYPE_MPLS_MCAST = 0x8848
ETHERTYPE_PPPOE_SESSION = 0x8864  # RFC 2516
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
PPP_MPLS_UNICAST = 0x0281
PPP_MPLS_MULTICAST = 0x0283
ETHERTYPE_PBB = 0x88E7  # IEEE 802.1ah backbone I-tag, then a whole customer Ethernet header
ETHERTYPE_VNTAG = 0x8926  # Cisco VN-Tag
NFULA_PAYLOAD = 9
ETHERTYPE_UNKNOWN_VERSION = -1  # look at the IP version nibble (raw IP, MPLS payload)
ETHERTYPE_NOT_IP = -2  # a protocol we know carries no IP (not an 802.3 length field)

# Address families seen in the 4-byte loopback header (Linux, BSDs, macOS).
AF_INET = 2
AF_INET6_LINUX = 10
AF_INET6_NETBSD = 24
AF_INET6_FREEBSD = 28
AF_INET6_DARWIN = 30

# IP protocol numbers
IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
IPPROTO_MOBILITY = 135
IPPROTO_HIP = 139
IPPROTO_SHIM6 = 140
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136

# Packet status codes (docs/flows.md)
STATUS_OK = 0
STATUS_NOT_IP = 1
STATUS_UNKNOWN_LINKTYPE = 2
STATUS_TRUNCATED = 3
STATUS_MALFORMED = 4
STATUS_NAMES = ("decoded", "not IP", "unknown link type", "IP header cut short", "malformed IP")

NO_VLAN = 0xFFFF
IPV4_MAPPED_PREFIX = np.uint64(0x0000FFFF00000000)  # ::ffff:0:0/96, low half

MAX_TAGS = 8  # VLAN tags / MPLS labels followed before giving up: hostile stacks cost bounded work
MAX_EXT_HEADERS = 12


@njit(**LEAF)
def u8(buf, i):
    """The byte at ``i`` (0 <= i < len(buf), which every caller guarantees).

    Every read from a capture buffer goes through an unsigned index: numba
    wraps a negative signed index round to the end of the array, a compare and
    a select per byte that also keep LLVM from merging the byte reads of
    u16be/u32be/u64be into one load (``movbe``). A negative index still fails
    the bounds check of the fuzz tests' checked build.
    """
    return np.int64(buf[np.uint64(i)])


@njit(**LEAF)
def u16be(buf, i):
    j = np.uint64(i)
    return (np.int64(buf[j]) << 8) | np.int64(buf[j + np.uint64(1)])


@njit(**LEAF)
def u16le(buf, i):
    j = np.uint64(i)
    return (np.int64(buf[j + np.uint64(1)]) << 8) | np.int64(buf[j])


@njit(**LEAF)
def u32be(buf, i):
    j = np.uint64(i)
    return (
        (np.int64(buf[j]) << 24)
        | (np.int64(buf[j + np.uint64(1)]) << 16)
        | (np.int64(buf[j + np.uint64(2)]) << 8)
        | np.int64(buf[j + np.uint64(3)])
    )


@njit(**LEAF)
def u32le(buf, i):
    j = np.uint64(i)
    return (
        (np.int64(buf[j + np.uint64(3)]) << 24)
        | (np.int64(buf[j + np.uint64(2)]) << 16)
        | (np.int64(buf[j + np.uint64(1)]) << 8)
        | np.int64(buf[j])
    )


@njit(**LEAF)
def u64be(buf, i):
    j = np.uint64(i)
    return (
        (np.uint64(buf[j]) << np.uint64(56))
        | (np.uint64(buf[j + np.uint64(1)]) << np.uint64(48))
        | (np.uint64(buf[j + np.uint64(2)]) << np.uint64(40))
        | (np.uint64(buf[j + np.uint64(3)]) << np.uint64(32))
        | (np.uint64(buf[j + np.uint64(4)]) << np.uint64(24))
        | (np.uint64(buf[j + np.uint64(5)]) << np.uint64(16))
        | (np.uint64(buf[j + np.uint64(6)]) << np.uint64(8))
        | np.uint64(buf[j + np.uint64(7)])
    )


@njit(**LEAF)
def _loopback_ethertype(af):
    if af == AF_INET:
        return ETHERTYPE_IPV4
    if af == AF_INET6_LINUX or af == AF_INET6_NETBSD or af == AF_INET6_FREEBSD:
        return ETHERTYPE_IPV6
    if af == AF_INET6_DARWIN:
        return ETHERTYPE_IPV6
    return ETHERTYPE_NOT_IP


@njit(**LEAF)
def _ppp_ethertype(ppp):
    if ppp == PPP_IPV4:
        return ETHERTYPE_IPV4
    if ppp == PPP_IPV6:
        return ETHERTYPE_IPV6
    if ppp == PPP_MPLS_UNICAST or ppp == PPP_MPLS_MULTICAST:
        return ETHERTYPE_MPLS
    return ETHERTYPE_NOT_IP


# Headers of a fixed length that hold the ethertype of what follows: link
# layers (where the ethertype sits) and tags (all end in it).
ETHERNET_HEADER = 14  # destination, source, ethertype
SLL_HEADER = 16  # Linux cooked v1: the protocol in its last two bytes
SLL2_HEADER = 20  # Linux cooked v2: the protocol in its first two bytes
C_HDLC_HEADER = 4  # address, control, ethertype
VLAN_TAG = 4  # IEEE 802.1Q: tag control, ethertype
PPPOE_SESSION_HEADER = 8  # RFC 2516: version/type, code, session, length; then PPP's protocol
PBB_TAG = 18  # IEEE 802.1ah: I-tag, customer destination and source, ethertype
VNTAG_TAG = 6
LLC_SNAP_HEADER = 8  # AA AA 03, OUI, ethertype (RFC 1042)


@njit(**LEAF)
def _link_header(linktype):
    """The header length of a link type whose header has a fixed length and
    holds the ethertype, and where the ethertype sits in it; (0, 0) for others.
    A function of the capture's link type only: the compiler takes it out of
    the per-packet loops."""
    if linktype == LINKTYPE_ETHERNET:
        return ETHERNET_HEADER, ETHERNET_HEADER - 2
    if linktype == LINKTYPE_LINUX_SLL:
        return SLL_HEADER, SLL_HEADER - 2
    if linktype == LINKTYPE_LINUX_SLL2:
        return SLL2_HEADER, 0
    if linktype == LINKTYPE_C_HDLC:
        return C_HDLC_HEADER, C_HDLC_HEADER - 2
    return 0, 0


@njit(**LEAF)
def _tag_length(et):
    """The length of the tag or shim of ethertype ``et`` when it has a fixed
    length and ends in the next ethertype (PPPoE: in PPP's protocol number); 0
    for any other ethertype."""
    if et == ETHERTYPE_8021Q or et == ETHERTYPE_8021AD or et == ETHERTYPE_QINQ_OLD:
        return VLAN_TAG
    if et == ETHERTYPE_PPPOE_SESSION:
        return PPPOE_SESSION_HEADER
    if et == ETHERTYPE_PBB:
        return PBB_TAG
    if et == ETHERTYPE_VNTAG:
        return VNTAG_TAG
    return 0


# What decoding one frame finds: a batch row's header fields (docs/flows.md),
# where the transport header starts in the buffer (payload inspection needs it;
# -1 when there is none: not IP, or a later fragment), the transport payload's
# length (from the IP length fields) and the TCP sequence number (Zeek's
# history repeats a SYN, FIN or RST letter only for a new sequence number).
# ``tcp_flags`` carries TCP_ZERO_WINDOW beside the 12 flag bits when the TCP
# window is 0 (Zeek's "w"): a bit the flow table tests with SYN, FIN and RST.
# Every field is an int64 but the addresses (uint64 halves), so every way out
# of the decoder, and a packet read back from a batch (``packet_at``), has the
# one numba type.
Packet = namedtuple(
    "Packet",
    ["status", "ip_version", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport",
     "tcp_flags", "vlan", "frag", "frag_id", "transport_at", "payload_len", "tcp_seq"],
)  # fmt: skip

# Not a TCP flag: set in a Packet's tcp_flags when its TCP window (2 bytes at
# offset 14, captured) is 0. A batch keeps it in ``tcp_zero_window``.
TCP_ZERO_WINDOW = 0x8000
ZERO_WINDOW_SHIFT = 15

# Transport header bytes before the payload (TCP's own length is in its header).
UDP_HEADER = 8  # RFC 768; UDP-Lite's is the same size (RFC 3828)
SCTP_COMMON_HEADER = 12  # RFC 9260 section 3.1
ICMP_HEADER = 8  # type, code, checksum and the 4-byte rest of header (RFC 792, RFC 4443)
TCP_MIN_HEADER = 20  # RFC 9293; used when the data offset was not captured


@njit(**LEAF)
def _no_ip(status, vlan):
    zero = np.uint64(0)
    z = np.int64(0)
    return Packet(status, z, z, zero, zero, zero, zero, z, z, z, vlan, z, z, z - 1, z, z)


@njit(**LEAF)
def _no_ports(ip_version, proto, src_hi, src_lo, dst_hi, dst_lo, vlan, frag, frag_id, payload):
    """An IP packet whose transport header is not there (a later fragment) or
    cut short: addresses and protocol, ports and flags 0."""
    z = np.int64(0)
    return Packet(np.int64(STATUS_OK), ip_version, proto, src_hi, src_lo, dst_hi, dst_lo, z, z, z,
                  vlan, frag, frag_id, z - 1, payload, z)  # fmt: skip


@njit(**LEAF)
def transport_header_len(proto):
    """The fixed transport header length of ``proto`` (TCP: its minimum)."""
    if proto == IPPROTO_TCP:
        return TCP_MIN_HEADER
    if proto == IPPROTO_UDP or proto == IPPROTO_UDPLITE:
        return UDP_HEADER
    if proto == IPPROTO_SCTP:
        return SCTP_COMMON_HEADER
    if proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
        return ICMP_HEADER
    return 0


@njit(**INLINE)
def packet_at(batch, i):
    """Row ``i`` of a batch (``records.Batch`` arrays) as a :data:`Packet`."""
    return Packet(
        np.int64(batch.status[i]),
        np.int64(batch.ip_version[i]),
        np.int64(batch.proto[i]),
        batch.src_hi[i],
        batch.src_lo[i],
        batch.dst_hi[i],
        batch.dst_lo[i],
        np.int64(batch.sport[i]),
        np.int64(batch.dport[i]),
        np.int64(batch.tcp_flags[i]) | (np.int64(batch.tcp_zero_window[i]) << ZERO_WINDOW_SHIFT),
        np.int64(batch.vlan[i]),
        np.int64(batch.frag[i]),
        np.int64(batch.frag_id[i]),
        np.int64(-1),
        np.int64(batch.payload_len[i]),
        np.int64(batch.tcp_seq[i]),
    )


@njit(**INLINE)
def decode_frame(buf, off, caplen, linktype):
    """Decode the frame at ``buf[off:off+caplen]`` into a :data:`Packet`.

    Its ``transport_at`` may lie past the captured bytes: callers check before
    reading there.
    """
    end = off + caplen
    p = off
    vlan = NO_VLAN
    after_mpls = False
    src_hi = np.uint64(0)
    src_lo = np.uint64(0)
    dst_hi = np.uint64(0)
    dst_lo = np.uint64(0)
    z = np.int64(0)

    # ---- link layer: find where the network layer starts and its ethertype
    header, ethertype_at = _link_header(linktype)
    if header:
        if p + header > end:
            return _no_ip(STATUS_TRUNCATED, vlan)
        et = u16be(buf, p + ethertype_at)
        p += header
    elif (
        linktype == LINKTYPE_RAW or linktype == LINKTYPE_RAW_BSD_A or linktype == LINKTYPE_RAW_BSD_B
    ):
        et = ETHERTYPE_UNKNOWN_VERSION
    elif linktype == LINKTYPE_IPV4 or linktype == LINKTYPE_IPV6:
        # Trust the version nibble over the link type, as Wireshark does.
        et = ETHERTYPE_UNKNOWN_VERSION
    elif linktype == LINKTYPE_PPP or linktype == LINKTYPE_PPP_HDLC:
        if p + 2 <= end and u8(buf, p) == 0xFF and u8(buf, p + 1) == 0x03:
            p += 2
        if p + 1 > end:
            return _no_ip(STATUS_TRUNCATED, vlan)
        if u8(buf, p) & 1:  # RFC 1661 protocol-field compression: one byte
            et = _ppp_ethertype(u8(buf, p))
            p += 1
        else:
            if p + 2 > end:
                return _no_ip(STATUS_TRUNCATED, vlan)
            et = _ppp_ethertype(u16be(buf, p))
            p += 2
    elif linktype == LINKTYPE_NFLOG:
        # 4-byte header, then TLVs whose length and type are in the capturing
        # host's byte order (little-endian on every Linux seen in practice).
        et = ETHERTYPE_NOT_IP
        q = p + 4
        for _ in range(32):
            if q + 4 > end:
                break
            tlv_len = u16le(buf, q)
            tlv_type = u16le(buf, q + 2)
            if tlv_len < 4:
                break
            if tlv_type == NFULA_PAYLOAD:
                p = q + 4
                et = ETHERTYPE_UNKNOWN_VERSION
                break
            q += (tlv_len + 3) & ~3
        if et == ETHERTYPE_NOT_IP:
            return _no_ip(STATUS_NOT_IP, vlan)
    elif linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        if p + 4 > end:
            return _no_ip(STATUS_TRUNCATED, vlan)
        if linktype == LINKTYPE_LOOP:
            et = _loopback_ethertype(u32be(buf, p))
        else:
            # Host byte order of the machine that captured: try both, as
            # libpcap's readers do (a family value always fits in 16 bits).
            af = u32le(buf, p)
            if af > 0xFFFF:
                af = u32be(buf, p)
            et = _loopback_ethertype(af)
        p += 4
    else:
        return _no_ip(STATUS_UNKNOWN_LINKTYPE, vlan)

    # ---- tags and shims between link and network layer, bounded in count
    for _ in range(MAX_TAGS):
        tag = _tag_length(et)
        if tag == 0 and 0 <= et < 0x0600:
            # IEEE 802.3 length field: only LLC/SNAP (AA AA 03) with an
            # encapsulated-Ethernet OUI (00-00-00, or 00-00-F8 for 802.1H)
            # carries an ethertype.
            # Plain LLC (STP, NetBIOS...) carries no IP, even when cut short.
            if (
                (p < end and u8(buf, p) != 0xAA)
                or (p + 1 < end and u8(buf, p + 1) != 0xAA)
                or (p + 2 < end and u8(buf, p + 2) != 0x03)
            ):
                return _no_ip(STATUS_NOT_IP, vlan)
            # SNAP with a vendor OUI carries a vendor protocol, not an ethertype.
            if (
                (p + 3 < end and u8(buf, p + 3) != 0)
                or (p + 4 < end and u8(buf, p + 4) != 0)
                or (p + 5 < end and u8(buf, p + 5) != 0 and u8(buf, p + 5) != 0xF8)
            ):
                return _no_ip(STATUS_NOT_IP, vlan)
            tag = LLC_SNAP_HEADER
        if tag:
            if p + tag > end:
                return _no_ip(STATUS_TRUNCATED, vlan)
            if tag == VLAN_TAG and vlan == NO_VLAN:
                vlan = u16be(buf, p) & 0x0FFF
            inner = u16be(buf, p + tag - 2)
            et = _ppp_ethertype(inner) if et == ETHERTYPE_PPPOE_SESSION else inner
            p += tag
        elif et == ETHERTYPE_MPLS or et == ETHERTYPE_MPLS_MCAST:
            bottom = False
            for _label in range(MAX_TAGS):
                if p + 4 > end:
                    return _no_ip(STATUS_TRUNCATED, vlan)
                bottom = (u8(buf, p + 2) & 1) == 1
                p += 4
                if bottom:
                    break
            if not bottom:
                return _no_ip(STATUS_MALFORMED, vlan)
            et = ETHERTYPE_UNKNOWN_VERSION
            after_mpls = True
        else:
            break

    if et == ETHERTYPE_UNKNOWN_VERSION:
        if p >= end:
            return _no_ip(STATUS_TRUNCATED, vlan)
        version = u8(buf, p) >> 4
        if version == 4:
            et = ETHERTYPE_IPV4
        elif version == 6:
            et = ETHERTYPE_IPV6
        else:
            # Where only IP can follow, another version is a damaged header;
            # an MPLS label stack may also carry Ethernet pseudowires.
            return _no_ip(STATUS_NOT_IP if after_mpls else STATUS_MALFORMED, vlan)

    # ---- network layer
    frag = z
    frag_id = z
    no_transport = False  # a later fragment (the flow table finds its ports), or cut short
    if et == ETHERTYPE_IPV4:
        if p + 20 > end:
            return _no_ip(STATUS_TRUNCATED, vlan)
        ihl = (u8(buf, p) & 0x0F) * 4
        if (u8(buf, p) >> 4) != 4 or ihl < 20:
            return _no_ip(STATUS_MALFORMED, vlan)
        ip_version = 4
        proto = u8(buf, p + 9)
        # The IP payload from the total length; a total length below the header
        # (0 from TCP segmentation offload) falls back on the bytes captured.
        total_len = u16be(buf, p + 2)
        ip_payload = total_len - ihl if total_len >= ihl else end - (p + ihl)
        src_lo = IPV4_MAPPED_PREFIX | np.uint64(u32be(buf, p + 12))
        dst_lo = IPV4_MAPPED_PREFIX | np.uint64(u32be(buf, p + 16))
        frag_word = u16be(buf, p + 6)
        frag_offset = frag_word & 0x1FFF
        more_fragments = (frag_word & 0x2000) != 0
        if frag_offset != 0 or more_fragments:
            frag = 1 if frag_offset != 0 else 3
            frag_id = u16be(buf, p + 4)
            no_transport = frag_offset != 0
        p += ihl
    elif et == ETHERTYPE_IPV6:
        if p + 40 > end:
            return _no_ip(STATUS_TRUNCATED, vlan)
        if (u8(buf, p) >> 4) != 6:
            return _no_ip(STATUS_MALFORMED, vlan)
        ip_version = 6
        proto = u8(buf, p + 6)
        # Payload length 0: a jumbogram (RFC 2675) or offload; use the bytes captured.
        ip_payload = u16be(buf, p + 4)
        if ip_payload == 0:
            ip_payload = end - (p + 40)
        src_hi = u64be(buf, p + 8)
        src_lo = u64be(buf, p + 16)
        dst_hi = u64be(buf, p + 24)
        dst_lo = u64be(buf, p + 32)
        p += 40
        after_fixed = p
        for _ in range(MAX_EXT_HEADERS):
            fragment = proto == IPPROTO_FRAGMENT
            if not (
                fragment
                or proto == IPPROTO_AH
                or proto == IPPROTO_HOPOPTS
                or proto == IPPROTO_ROUTING
                or proto == IPPROTO_DSTOPTS
                or proto == IPPROTO_MOBILITY
                or proto == IPPROTO_HIP
                or proto == IPPROTO_SHIM6
            ):
                break
            if p + (8 if fragment else 2) > end:
                no_transport = True  # the protocol stays the extension header's
                break
            nxt = u8(buf, p)
            if fragment:
                frag_word = u16be(buf, p + 2)
                frag_offset = frag_word >> 3
                more_fragments = (frag_word & 1) != 0
                # RFC 6946: offset 0 without M is an "atomic fragment": a whole packet.
                if frag_offset != 0 or more_fragments:
                    frag = 1 if frag_offset != 0 else 3
                    frag_id = u32be(buf, p + 4)
                    no_transport = frag_offset != 0
                p += 8
            elif proto == IPPROTO_AH:
                p += (u8(buf, p + 1) + 2) * 4
            else:
                p += (u8(buf, p + 1) + 1) * 8
            proto = nxt
            if no_transport:
                break
        ip_payload -= p - after_fixed  # the extension headers are not payload
    else:
        return _no_ip(STATUS_NOT_IP, vlan)
    if no_transport:
        # A later fragment carries only payload; a cut-short header, its fixed size.
        payload = (
            ip_payload if frag & 1 and not frag & 2 else ip_payload - transport_header_len(proto)
        )
        return _no_ports(ip_version, proto, src_hi, src_lo, dst_hi, dst_lo, vlan, frag, frag_id,
                         max(payload, z))  # fmt: skip

    # ---- transport: ports when their bytes were captured, flags when theirs were
    sport = z
    dport = z
    flags = z
    seq = z
    header = transport_header_len(proto)
    if proto == IPPROTO_TCP:
        if p + 4 <= end:
            sport = u16be(buf, p)
            dport = u16be(buf, p + 2)
            if p + 8 <= end:
                seq = u32be(buf, p + 4)
            if p + 14 <= end:
                flags = u16be(buf, p + 12) & 0x0FFF
                header = max((u8(buf, p + 12) >> 4) * 4, TCP_MIN_HEADER)
                if p + 16 <= end and u16be(buf, p + 14) == 0:
                    flags |= TCP_ZERO_WINDOW
    elif proto == IPPROTO_UDP or proto == IPPROTO_SCTP or proto == IPPROTO_UDPLITE:
        if p + 4 <= end:
            sport = u16be(buf, p)
            dport = u16be(buf, p + 2)
    elif proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
        if p + 2 <= end:
            sport = u8(buf, p)
            dport = u8(buf, p + 1)
    payload = max(ip_payload - header, z)
    return Packet(
        np.int64(STATUS_OK), ip_version, proto, src_hi, src_lo, dst_hi, dst_lo, sport, dport,
        flags, vlan, frag, frag_id, p, payload, seq,
    )  # fmt: skip
