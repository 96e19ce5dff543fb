"""Link-layer facts of isolated segments: who is on the wire, before any packet leaves.

A separate pass over a decoded batch (the flow table's decoder is not touched):
for each Ethernet frame, one event row when it tells something about an
isolated segment (``detector/flows/link.py`` turns them into a table, the
rules in ``detector/detect/rules/`` read it):

=============  =========================================================================
kind           what and why
=============  =========================================================================
DEVICE         a frame whose source address is in an isolated network: its source MAC
               and address (which cards sit on the segment)
FORWARDER      a frame to an isolated address from beyond the isolated networks: the MAC
               that delivered it is a gateway into the segment
ARP            every ARP frame (RFC 826): operation, sender MAC and address, target
               address (who asks for what, who claims an address)
DHCP_SERVER    a DHCPv4 reply from UDP port 67 (RFC 2131 BOOTREPLY): message type
               (option 53), server identifier (option 54), offered address, router
               (option 3), client MAC
DHCP6_SERVER   a DHCPv6 message from port 547 to 546 (RFC 8415): its type
ROUTER_ADVERT  an ICMPv6 router advertisement (RFC 4861 type 134): router lifetime
=============  =========================================================================

Only link type Ethernet carries MAC addresses here; the kernel never raises and
never reads past a record (malformed frames are skipped).
"""

import numpy as np
from numba import njit

from .._jit import HOT_LOOP, LEAF
from .decode import (
    IPPROTO_ICMPV6,
    IPPROTO_UDP,
    LINKTYPE_ETHERNET,
    decode_frame,
    u8,
    u16be,
    u32be,
)
from .records import frame_start

ETHERTYPE_ARP = 0x0806  # RFC 826
ETHERTYPE_8021Q = 0x8100  # IEEE 802.1Q
ETHERTYPE_8021AD = 0x88A8  # IEEE 802.1ad
ARP_HTYPE_ETHERNET = 1
ETHERTYPE_IPV4 = 0x0800
DHCP_SERVER_PORT = 67  # RFC 2131
DHCP_CLIENT_PORT = 68
DHCP6_SERVER_PORT = 547  # RFC 8415
DHCP6_CLIENT_PORT = 546
BOOTREPLY = 2
DHCP_MAGIC = 0x63825363  # RFC 2131 section 3: the options' magic cookie
OPTION_PAD, OPTION_ROUTER, OPTION_MESSAGE_TYPE, OPTION_SERVER_ID, OPTION_END = 0, 3, 53, 54, 255
ICMPV6_ROUTER_ADVERTISEMENT = 134  # RFC 4861

KIND_DEVICE = 1
KIND_FORWARDER = 2
KIND_ARP = 3
KIND_DHCP_SERVER = 4
KIND_DHCP6_SERVER = 5
KIND_ROUTER_ADVERT = 6
KIND_NAMES = ("", "device", "forwarder", "arp", "dhcp-server", "dhcp6-server", "router-advert")

# Event columns (int64; addresses are the batch's uint64 halves, kept bit for bit).
E_ROW = 0  # the batch row
E_KIND = 1
E_MAC = 2  # the frame's Ethernet source
E_A_HI, E_A_LO = 3, 4  # source address (ARP: sender protocol address)
E_B_HI, E_B_LO = 5, 6  # ARP: target address; DHCP: server identifier (IPv4, low half)
E_C_LO = 7  # DHCP: offered address (yiaddr), IPv4 low half
E_D_LO = 8  # DHCP: first router of option 3, IPv4 low half
E_CODE = 9  # ARP op; DHCP message type; router advertisement: router lifetime (s)
E_OTHER_MAC = 10  # ARP: sender hardware address; DHCP: client hardware address
E_VLAN = 11
EVENT_COLUMNS = 12

IPV4_MAPPED = np.uint64(0x0000FFFF00000000)
MAX_OPTIONS = 255  # DHCP options looked at before giving up: bounded work per frame

# Network rows: hi, lo, mask_hi, mask_lo (IPv4 networks in their ::ffff:0:0/96 form).
N_HI, N_LO, N_MASK_HI, N_MASK_LO = 0, 1, 2, 3


@njit(**LEAF)
def _mac(buf, at):
    """The 48-bit MAC address at ``at``."""
    return (u16be(buf, at) << 32) | (u16be(buf, at + 2) << 16) | u16be(buf, at + 4)


@njit(**LEAF)
def _inside(nets, hi, lo):
    for k in range(nets.shape[0]):
        if (hi & nets[k, N_MASK_HI]) == nets[k, N_HI] and (lo & nets[k, N_MASK_LO]) == nets[
            k, N_LO
        ]:
            return True
    return False


@njit(**LEAF)
def _local_scope(hi, lo):
    """Unspecified, loopback, link-local, multicast, broadcast: never from beyond a segment."""
    if hi == 0 and (lo >> np.uint64(32)) == np.uint64(0xFFFF):
        first = (lo >> np.uint64(24)) & np.uint64(0xFF)
        second = (lo >> np.uint64(16)) & np.uint64(0xFF)
        return first == 0 or first == 127 or first >= 224 or (first == 169 and second == 254)
    top = hi >> np.uint64(56)
    return (hi == 0 and lo <= 1) or top == 0xFF or (hi >> np.uint64(54)) == np.uint64(0x3FA)


@njit(**LEAF)
def _put(events, n, row, kind, mac, a_hi, a_lo, b_hi, b_lo, c_lo, d_lo, code, other_mac, vlan):
    events[n, E_ROW] = row
    events[n, E_KIND] = kind
    events[n, E_MAC] = mac
    events[n, E_A_HI] = np.int64(a_hi)
    events[n, E_A_LO] = np.int64(a_lo)
    events[n, E_B_HI] = np.int64(b_hi)
    events[n, E_B_LO] = np.int64(b_lo)
    events[n, E_C_LO] = np.int64(c_lo)
    events[n, E_D_LO] = np.int64(d_lo)
    events[n, E_CODE] = code
    events[n, E_OTHER_MAC] = other_mac
    events[n, E_VLAN] = vlan
    return n + 1


SEEN_SLOTS = 1 << 16  # remembered (fact, minute) pairs: a fact is one event per minute
MINUTE_NS = 60_000_000_000


@njit(**LEAF)
def _mix(h, value):
    """One step of a 64-bit multiplicative hash (splitmix64's finaliser)."""
    h ^= np.uint64(value)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@njit(**LEAF)
def _first_this_minute(seen, seen_minute, kind, mac, a_hi, a_lo, b_lo, minute):
    """Whether this (kind, MAC, addresses) is new in this minute; remembers it.
    A frequent fact (a busy host's every packet) becomes one event a minute."""
    h = _mix(np.uint64(kind), np.uint64(mac))
    h = _mix(h, a_hi)
    h = _mix(h, a_lo)
    h = _mix(h, b_lo) | np.uint64(1)
    slot = np.int64(h & np.uint64(seen.shape[0] - 1))
    if seen[slot] == h and seen_minute[slot] == minute:
        return False
    seen[slot] = h
    seen_minute[slot] = minute
    return True


@njit(**LEAF)
def _v4(value):
    return IPV4_MAPPED | np.uint64(value)


@njit(**HOT_LOOP)
def link_events(buf, base, batch, start, n, pcapng, linktype, if_linktypes, nets, events, seen,
                seen_minute):  # fmt: skip
    """Events of rows ``start``..``n`` of ``batch`` (``records.Batch`` arrays),
    whose records lie in ``buf`` (``buf[0]`` is byte ``base`` of the capture),
    into ``events`` (rows of EVENT_COLUMNS). ``nets``: the isolated networks
    (rows N_HI..N_MASK_LO). ``seen``/``seen_minute`` (SEEN_SLOTS each, kept
    between calls): DEVICE and FORWARDER facts already reported this minute,
    which are not reported again (every packet of a busy isolated host is one).
    ARP, DHCP and advertisements are reported frame by frame. Returns ``(next_row, n_events)``; the
    caller drains ``events`` and calls again while ``next_row < n``."""
    n_events = 0
    offsets = batch.offset
    zero = np.uint64(0)
    for i in range(start, n):
        if n_events >= events.shape[0]:
            return i, n_events
        version = batch.ip_version[i]
        kind = 0
        if version != 0:
            if batch.status[i] != 0:
                continue
            src_hi = batch.src_hi[i]
            src_lo = batch.src_lo[i]
            proto = batch.proto[i]
            sport = batch.sport[i]
            if _inside(nets, src_hi, src_lo):
                kind = KIND_DEVICE
            elif _inside(nets, batch.dst_hi[i], batch.dst_lo[i]) and not _local_scope(
                src_hi, src_lo
            ):
                kind = KIND_FORWARDER
            elif proto == IPPROTO_UDP and (
                (sport == DHCP_SERVER_PORT and batch.dport[i] == DHCP_CLIENT_PORT)
                or (sport == DHCP6_SERVER_PORT and batch.dport[i] == DHCP6_CLIENT_PORT)
            ):
                kind = KIND_DHCP_SERVER
            elif proto == IPPROTO_ICMPV6 and sport == ICMPV6_ROUTER_ADVERTISEMENT:
                kind = KIND_ROUTER_ADVERT
            else:
                continue
        data, lt = frame_start(buf, offsets[i] - base, pcapng, linktype, if_linktypes,
                               batch.interface[i])  # fmt: skip
        if data < 0 or lt != LINKTYPE_ETHERNET:
            continue
        caplen = np.int64(batch.cap_len[i])
        end = data + caplen
        if end > buf.shape[0] or caplen < 14:
            continue
        mac = _mac(buf, data + 6)
        vlan = np.int64(batch.vlan[i])
        minute = batch.ts_ns[i] // MINUTE_NS
        if version != 0:
            src_hi = batch.src_hi[i]
            src_lo = batch.src_lo[i]
            if kind == KIND_DEVICE or kind == KIND_FORWARDER:
                # A DHCP reply or an advertisement from a device is also an event of its own.
                proto = batch.proto[i]
                sport = batch.sport[i]
                special = (proto == IPPROTO_UDP and (sport == DHCP_SERVER_PORT
                                                     or sport == DHCP6_SERVER_PORT)) or (
                    proto == IPPROTO_ICMPV6 and sport == ICMPV6_ROUTER_ADVERTISEMENT)  # fmt: skip
                if _first_this_minute(seen, seen_minute, kind, mac, src_hi, src_lo, zero, minute):
                    n_events = _put(events, n_events, i, kind, mac, src_hi, src_lo, zero, zero,
                                    zero, zero, 0, 0, vlan)  # fmt: skip
                if not special:
                    continue
                if n_events >= events.shape[0]:
                    return i + 1, n_events  # (the special part of this frame is lost: rare)
                kind = KIND_DHCP_SERVER if proto == IPPROTO_UDP else KIND_ROUTER_ADVERT
            at = decode_frame(buf, data, caplen, lt).transport_at
            if at < 0:
                continue
            if kind == KIND_ROUTER_ADVERT:
                if at + 8 <= end:
                    lifetime = u16be(buf, at + 6)
                    n_events = _put(events, n_events, i, KIND_ROUTER_ADVERT, mac, src_hi, src_lo,
                                    zero, zero, zero, zero, lifetime, 0, vlan)  # fmt: skip
                continue
            at += 8  # the UDP header
            if batch.sport[i] == DHCP6_SERVER_PORT:
                if at < end:
                    n_events = _put(events, n_events, i, KIND_DHCP6_SERVER, mac, src_hi, src_lo,
                                    zero, zero, zero, zero, u8(buf, at), 0, vlan)  # fmt: skip
                continue
            if version != 4 or at + 240 > end or u8(buf, at) != BOOTREPLY:
                continue
            if u32be(buf, at + 236) != DHCP_MAGIC:
                continue
            yiaddr = _v4(u32be(buf, at + 16))
            client = _mac(buf, at + 28) if u8(buf, at + 2) == 6 else 0
            message_type = 0
            server = zero
            router = zero
            q = at + 240
            for _ in range(MAX_OPTIONS):
                if q >= end:
                    break
                code = u8(buf, q)
                if code == OPTION_END:
                    break
                if code == OPTION_PAD:
                    q += 1
                    continue
                if q + 2 > end:
                    break
                length = u8(buf, q + 1)
                if q + 2 + length > end:
                    break
                if code == OPTION_MESSAGE_TYPE and length >= 1:
                    message_type = u8(buf, q + 2)
                elif code == OPTION_SERVER_ID and length >= 4:
                    server = _v4(u32be(buf, q + 2))
                elif code == OPTION_ROUTER and length >= 4:
                    router = _v4(u32be(buf, q + 2))
                q += 2 + length
            n_events = _put(events, n_events, i, KIND_DHCP_SERVER, mac, src_hi, src_lo, zero,
                            server, yiaddr, router, message_type, client, vlan)  # fmt: skip
            continue
        # Not IP: ARP, after any VLAN tags.
        p = data + 12
        et = u16be(buf, p)
        p += 2
        for _ in range(4):
            if et != ETHERTYPE_8021Q and et != ETHERTYPE_8021AD:
                break
            if p + 4 > end:
                et = 0
                break
            et = u16be(buf, p + 2)
            p += 4
        if et != ETHERTYPE_ARP or p + 28 > end:
            continue
        if (
            u16be(buf, p) != ARP_HTYPE_ETHERNET
            or u16be(buf, p + 2) != ETHERTYPE_IPV4
            or u8(buf, p + 4) != 6
            or u8(buf, p + 5) != 4
        ):
            continue
        op = u16be(buf, p + 6)
        sender_mac = _mac(buf, p + 8)
        sender = _v4(u32be(buf, p + 14))
        target = _v4(u32be(buf, p + 24))
        n_events = _put(events, n_events, i, KIND_ARP, mac, zero, sender, zero, target, zero,
                        zero, op, sender_mac, vlan)  # fmt: skip
    return n, n_events
