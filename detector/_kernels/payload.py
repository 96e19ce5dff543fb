"""Payload inspection: a few facts from the first payload packets of each flow.

Like nfstream's first-packets analysis, only the first ``max_packets`` packets
carrying payload in each flow (both directions together) are looked at, and in
each at most ``max_bytes`` bytes, so the cost per packet is bounded whatever
the traffic (hostile input included). DNS (port 53) is the exception: every
DNS packet is read, so a tunnel cannot hide behind one long-lived source port.
What is found becomes a *fact* row:

* DNS (UDP or TCP port 53): the question name, type, response code; each A/AAAA
  answer as its own fact pointing at the question name (RFC 1035 §4.1);
* TLS ClientHello (any port): server name (SNI, RFC 6066 §3) and the first ALPN
  protocol (RFC 7301);
* HTTP/1.x requests: method, Host, Content-Length (RFC 9112);
* P2P signatures (BitTorrent handshake, DHT, uTP SYN, trackers, local peer
  discovery, eDonkey, Gnutella);
* SSH: the identification string ``SSH-2.0-``, ``SSH-1.99-`` or ``SSH-1.``
  that either side sends first (RFC 4253 §4.2), on TCP;
* QUIC: a long-header packet (header form and fixed bits set, RFC 9000 §17.2)
  of version 1 (RFC 9000), 2 (RFC 9369) or an IETF draft (0xff0000xx), on UDP;
* Taiwan national ID and resident certificate numbers with a valid check digit,
  in TCP payloads that are not TLS records.

Names and numbers go to a byte arena; a fact holds (batch row, kind, four
integers, arena offset, length). The budget table is direct-mapped by flow hash:
a collision merely shares or resets a budget, never reads out of bounds.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from .._jit import HOT_LOOP, LEAF
from .cpu import prefetch
from .decode import decode_frame, packet_at, u8, u16be, u32be, u32le
from .flowtable import canonical_key, flow_hash
from .records import frame_start

# Fact columns.
F_ROW = 0
F_KIND = 1
F_A = 2
F_B = 3
F_C = 4
F_D = 5
F_AT = 6
F_LEN = 7
FACT_COLUMNS = 8

KIND_DNS = 1  # A qtype, B rcode, C 1 = response, D answers; arena: question name
KIND_DNS_ANSWER = 2  # A ip version, B address hi, C address lo, D ttl; arena: question name
KIND_TLS_SNI = 3  # arena: server name
KIND_TLS_ALPN = 4  # arena: first ALPN protocol
KIND_HTTP = 5  # A method, B Content-Length (-1: none); arena: Host
KIND_P2P = 6  # A signature
KIND_PII = 7  # A 1 national ID, 2 resident certificate; arena: the 10 characters
KIND_SMTP_SIZE = 8  # A the message size a mail client declares (RFC 1870 SIZE=)
KIND_SSH = 9  # A the SSH protocol major version (2 for "2.0" and "1.99", 1 for "1.x")
KIND_QUIC = 10  # A the QUIC version of a long-header packet
KIND_NAMES = (
    "", "dns", "dns-answer", "tls-sni", "tls-alpn", "http", "p2p-signature", "pii", "smtp-size",
    "ssh", "quic",
)  # fmt: skip
WORD_SSH = 11  # index of "SSH-" in ``words``
WORD_METHODS = 12  # index of the first HTTP method in ``words``

P2P_BITTORRENT = 1
P2P_DHT = 2
P2P_UTP = 3
P2P_TRACKER = 4
P2P_LSD = 5
P2P_EDONKEY = 6
P2P_GNUTELLA = 7
P2P_NAMES = (
    "",
    "BitTorrent handshake",
    "BitTorrent DHT",
    "uTP",
    "BitTorrent tracker",
    "BitTorrent local peer discovery",
    "eDonkey",
    "Gnutella",
)

HTTP_METHODS = ("GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT")

QUIC_V1 = 0x00000001  # RFC 9000
QUIC_V2 = 0x6B3343CF  # RFC 9369
QUIC_DRAFT = 0xFF0000  # draft-ietf-quic-transport-NN: 0xff0000NN
QUIC_LONG_FIXED = 0xC0  # header form (long) and fixed bit, RFC 9000 §17.2
QUIC_MAX_CID = 20  # connection ID length limit of versions 1 and 2

# params
P_MAX_PACKETS = 0
P_MAX_BYTES = 1
P_FIELDS = 2
MAX_BUDGET = 255  # max_packets fits the count byte of a budget slot
TAG_MASK = np.uint64(0xFFFFFFFFFFFFFF00)
COUNT_MASK = np.uint64(0xFF)

INSPECT_OK = 0
INSPECT_FULL = 1  # facts or arena full: drain, call again from the returned row

IPPROTO_TCP = 6
IPPROTO_UDP = 17
MAX_NAME = 255
MAX_ANSWERS = 32
# Room one packet can need: a DNS name per answer is shared, so a name, a SNI,
# an ALPN, a Host and a few ID numbers.
PACKET_ARENA = 2048
PACKET_FACTS = MAX_ANSWERS + 40

# Taiwan ID letters → their two-digit codes (Ministry of the Interior).
_LETTER_CODES = np.array(
    [10, 11, 12, 13, 14, 15, 16, 17, 34, 18, 19, 20, 21, 22, 35, 23, 24, 25, 26, 27, 28, 29,
     32, 30, 31, 33],
    dtype=np.int64,
)  # fmt: skip


def letter_codes():
    return _LETTER_CODES.copy()


@njit(**LEAF)
def _lower(c):
    if 65 <= c <= 90:
        return c + 32
    return c


@njit(**LEAF)
def _put(facts, n_facts, row, kind, a, b, c, d, at, length):
    facts[n_facts, F_ROW] = row
    facts[n_facts, F_KIND] = kind
    facts[n_facts, F_A] = a
    facts[n_facts, F_B] = b
    facts[n_facts, F_C] = c
    facts[n_facts, F_D] = d
    facts[n_facts, F_AT] = at
    facts[n_facts, F_LEN] = length
    return n_facts + 1


@njit(**LEAF)
def _skip_name(buf, p, end):
    """Position after a DNS name at p (labels or a pointer); -1 if malformed."""
    for _ in range(128):
        if p >= end:
            return -1
        length = u8(buf, p)
        if length == 0:
            return p + 1
        if length & 0xC0 == 0xC0:
            return p + 2 if p + 2 <= end else -1
        if length & 0xC0:
            return -1
        p += 1 + length
    return -1


@njit(**LEAF)
def _dns(buf, p, end, row, facts, n_facts, arena, n_arena):
    if p + 12 > end:
        return n_facts, n_arena
    flags = u16be(buf, p + 2)
    qdcount = u16be(buf, p + 4)
    ancount = u16be(buf, p + 6)
    if qdcount < 1 or (flags & 0x7800) != 0:  # standard queries only (opcode 0)
        return n_facts, n_arena
    q = p + 12
    name_at = n_arena
    length_total = 0
    for _ in range(128):
        if q >= end:
            return n_facts, name_at
        label = u8(buf, q)
        if label == 0:
            q += 1
            break
        if label & 0xC0 or q + 1 + label > end or length_total + label + 1 > MAX_NAME:
            return n_facts, name_at
        if length_total > 0:
            arena[n_arena] = 46  # '.'
            n_arena += 1
            length_total += 1
        for k in range(label):
            arena[n_arena] = _lower(u8(buf, q + 1 + k))
            n_arena += 1
        length_total += label
        q += 1 + label
    if q + 4 > end:
        return n_facts, name_at
    qtype = u16be(buf, q)
    response = (flags >> 15) & 1
    n_facts = _put(facts, n_facts, row, KIND_DNS, qtype, flags & 0xF, response, ancount,
                   name_at, length_total)  # fmt: skip
    if not response or (flags & 0xF) != 0:
        return n_facts, n_arena
    q += 4
    for _ in range(min(ancount, MAX_ANSWERS)):
        q = _skip_name(buf, q, end)
        if q < 0 or q + 10 > end:
            break
        rtype = u16be(buf, q)
        ttl = u32be(buf, q + 4)
        rdlength = u16be(buf, q + 8)
        q += 10
        if q + rdlength > end:
            break
        if rtype == 1 and rdlength == 4:
            lo = np.int64(0xFFFF00000000) | u32be(buf, q)
            n_facts = _put(facts, n_facts, row, KIND_DNS_ANSWER, 4, 0, lo, ttl, name_at,
                           length_total)  # fmt: skip
        elif rtype == 28 and rdlength == 16:
            hi = np.uint64(0)
            lo = np.uint64(0)
            for k in range(8):
                hi = (hi << np.uint64(8)) | np.uint64(u8(buf, q + k))
                lo = (lo << np.uint64(8)) | np.uint64(u8(buf, q + 8 + k))
            n_facts = _put(facts, n_facts, row, KIND_DNS_ANSWER, 6, np.int64(hi), np.int64(lo),
                           ttl, name_at, length_total)  # fmt: skip
        q += rdlength
    return n_facts, n_arena


@njit(**LEAF)
def _copy_text(buf, p, length, arena, n_arena, lower):
    for k in range(length):
        c = u8(buf, p + k)
        arena[n_arena + k] = _lower(c) if lower else c
    return n_arena + length


@njit(**LEAF)
def _tls_client_hello(buf, p, end, row, facts, n_facts, arena, n_arena):
    # record header (5) + handshake header (4) + version (2) + random (32)
    q = p + 5 + 4 + 2 + 32
    if q + 1 > end:
        return n_facts, n_arena
    q += 1 + u8(buf, q)  # session id
    if q + 2 > end:
        return n_facts, n_arena
    q += 2 + u16be(buf, q)  # cipher suites
    if q + 1 > end:
        return n_facts, n_arena
    q += 1 + u8(buf, q)  # compression methods
    if q + 2 > end:
        return n_facts, n_arena
    ext_end = min(q + 2 + u16be(buf, q), end)
    q += 2
    seen_sni = False
    seen_alpn = False
    for _ in range(64):
        if q + 4 > ext_end:
            break
        ext_type = u16be(buf, q)
        ext_len = u16be(buf, q + 2)
        body = q + 4
        if ext_type == 0 and not seen_sni and body + 5 <= ext_end and u8(buf, body + 2) == 0:
            seen_sni = True
            name_len = u16be(buf, body + 3)
            if 0 < name_len <= MAX_NAME and body + 5 + name_len <= ext_end:
                at = n_arena
                n_arena = _copy_text(buf, body + 5, name_len, arena, n_arena, True)
                n_facts = _put(facts, n_facts, row, KIND_TLS_SNI, 0, 0, 0, 0, at, name_len)
        elif ext_type == 16 and not seen_alpn and body + 3 <= ext_end:
            seen_alpn = True
            proto_len = u8(buf, body + 2)
            if 0 < proto_len and body + 3 + proto_len <= ext_end:
                at = n_arena
                n_arena = _copy_text(buf, body + 3, proto_len, arena, n_arena, False)
                n_facts = _put(facts, n_facts, row, KIND_TLS_ALPN, 0, 0, 0, 0, at, proto_len)
        q = body + ext_len
    return n_facts, n_arena


@njit(**LEAF)
def _starts(buf, p, end, text, any_case):
    """buf[p:end] starts with the ASCII bytes of ``text`` (a uint8 array); with
    ``any_case``, in any case (``text`` is then lower-case: a header name with
    its ':', a keyword)."""
    if p + text.shape[0] > end:
        return False
    for k in range(text.shape[0]):
        c = u8(buf, p + k)
        if any_case:
            c = _lower(c)
        if c != text[k]:
            return False
    return True


@njit(**LEAF)
def _find(buf, p, end, text, any_case):
    """Position of ``text`` in buf[p:end] (``any_case`` as for ``_starts``), -1 if absent."""
    for i in range(p, end - text.shape[0] + 1):
        if _starts(buf, i, end, text, any_case):
            return i
    return -1


@njit(**LEAF)
def _number(buf, p, end, max_digits):
    """The decimal number at buf[p:end] (at most ``max_digits`` digits) and how
    many digits it has (0: none there)."""
    value = np.int64(0)
    digits = 0
    while p < end and 48 <= u8(buf, p) <= 57 and digits < max_digits:
        value = value * 10 + (u8(buf, p) - 48)
        p += 1
        digits += 1
    return value, digits


@njit(**LEAF)
def _http_request(buf, p, end, method, row, words, facts, n_facts, arena, n_arena):
    # words: 0 "host:", 1 "content-length:", 2 "info_hash=", 3 "\r\n"
    host_name = words[0]
    clen_name = words[1]
    line_end = _find(buf, p, end, words[3], False)
    if line_end < 0:
        return n_facts, n_arena
    if _find(buf, p, line_end, words[2], False) >= 0:
        n_facts = _put(facts, n_facts, row, KIND_P2P, P2P_TRACKER, 0, 0, 0, 0, 0)
    host_at = n_arena
    host_len = 0
    content_length = np.int64(-1)
    q = line_end + 2
    for _ in range(64):
        if q >= end:
            break
        nxt = _find(buf, q, end, words[3], False)
        stop = nxt if nxt >= 0 else end
        if stop == q:
            break  # blank line: end of the head
        if nxt < 0:
            # The line runs into the end of what was captured (snap length)
            # or read (max_bytes): its value may be cut ("Host: exfil" of
            # exfil.example.net). A wrong name is worse than none.
            break
        if _starts(buf, q, stop, host_name, True):
            v = q + host_name.shape[0]
            while v < stop and (u8(buf, v) == 32 or u8(buf, v) == 9):
                v += 1
            host_len = min(stop - v, MAX_NAME)
            n_arena = _copy_text(buf, v, host_len, arena, n_arena, True)
        elif _starts(buf, q, stop, clen_name, True):
            v = q + clen_name.shape[0]
            while v < stop and (u8(buf, v) == 32 or u8(buf, v) == 9):
                v += 1
            value, digits = _number(buf, v, stop, 18)
            if digits:
                content_length = value
        q = nxt + 2
    n_facts = _put(facts, n_facts, row, KIND_HTTP, method, content_length, 0, 0, host_at,
                   host_len)  # fmt: skip
    return n_facts, n_arena


@njit(**LEAF)
def _is_digit(c):
    return 48 <= c <= 57


@njit(**LEAF)
def _is_alnum(c):
    return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122


@njit(**LEAF)
def _id_kind(buf, i, letters):
    """1 for a national ID, 2 for a resident certificate number with a valid
    check digit at buf[i:i+10], else 0. Weights 1, 9 (letter code), 8..1, 1."""
    first = u8(buf, i) - 65
    code = letters[first]
    second = u8(buf, i + 1)
    total = (code // 10) + (code % 10) * 9
    kind = 0
    if second == 49 or second == 50:  # '1' or '2': national ID
        kind = 1
        total += (second - 48) * 8
    elif second == 56 or second == 57:  # '8' or '9': resident certificate (2021 format)
        kind = 2
        total += (second - 48) * 8
    elif 65 <= second <= 68:  # 'A'-'D': resident certificate (old format)
        kind = 2
        total += (letters[second - 65] % 10) * 8
    else:
        return 0
    for k in range(2, 9):
        total += (u8(buf, i + k) - 48) * (9 - k)
    total += u8(buf, i + 9) - 48
    return kind if total % 10 == 0 else 0


@njit(**LEAF)
def _pii(buf, p, end, row, letters, facts, n_facts, arena, n_arena, room):
    i = p
    while i + 10 <= end and n_facts < room:
        c = u8(buf, i)
        if 65 <= c <= 90 and (i == p or not _is_alnum(u8(buf, i - 1))):
            ok = True
            for k in range(2, 10):
                if not _is_digit(u8(buf, i + k)):
                    ok = False
                    break
            if ok and (i + 10 == end or not _is_digit(u8(buf, i + 10))):
                kind = _id_kind(buf, i, letters)
                if kind:
                    at = n_arena
                    n_arena = _copy_text(buf, i, 10, arena, n_arena, False)
                    n_facts = _put(facts, n_facts, row, KIND_PII, kind, 0, 0, 0, at, 10)
                    i += 10
                    continue
        i += 1
    return n_facts, n_arena


@njit(**LEAF)
def _zeros(buf, p, end):
    for k in range(p, end):
        if u8(buf, k) != 0:
            return False
    return True


@njit(**LEAF)
def _looks_like_text(buf, p, end):
    """The first bytes are printable ASCII (or tab, CR, LF): cleartext protocols
    (HTTP, SMTP, FTP, POP, IMAP) and form or JSON bodies start so; compressed,
    encrypted and binary payloads almost never do, and are not scanned."""
    for k in range(min(end - p, 16)):
        c = u8(buf, p + k)
        if not (32 <= c <= 126 or c == 9 or c == 10 or c == 13):
            return False
    return True


@njit(**LEAF)
def _ssh_version(buf, p, end, words):
    """2 for an SSH-2 identification string at p ("SSH-2.0-" or "SSH-1.99-",
    RFC 4253 §4.2 and §5.1), 1 for "SSH-1.", 0 if none."""
    if not _starts(buf, p, end, words[WORD_SSH], False) or p + 6 > end:
        return 0
    v = p + 4
    if u8(buf, v) == 50 and u8(buf, v + 1) == 46 and v + 4 <= end and u8(buf, v + 2) == 48:
        return 2 if u8(buf, v + 3) == 45 else 0  # "2.0-"
    if u8(buf, v) == 49 and u8(buf, v + 1) == 46:  # "1."
        if v + 5 <= end and u8(buf, v + 2) == 57 and u8(buf, v + 3) == 57 and u8(buf, v + 4) == 45:
            return 2  # "1.99-": a server that speaks both, taken as 2
        return 1
    return 0


@njit(**LEAF)
def _quic_version(buf, p, end):
    """The version of a QUIC long-header packet at p (RFC 9000 §17.2: first
    byte with the header form and fixed bits, a 4-byte version, then the
    destination and source connection ID lengths), 0 if it is not one of a
    known version."""
    if p + 7 > end or (u8(buf, p) & QUIC_LONG_FIXED) != QUIC_LONG_FIXED:
        return 0
    version = u32be(buf, p + 1)
    if version == QUIC_V1 or version == QUIC_V2:
        dcid = u8(buf, p + 5)
        if dcid > QUIC_MAX_CID or p + 7 + dcid > end or u8(buf, p + 6 + dcid) > QUIC_MAX_CID:
            return 0
        return version
    if (version >> 8) == QUIC_DRAFT:
        return version  # early drafts coded the lengths otherwise: not checked
    return 0


@njit(**LEAF)
def _p2p(buf, p, end, proto, sport, dport, words):
    """A P2P signature id at the start of this payload, 0 if none.
    words: 4 "\\x13BitTorrent protocol", 5 "2:id20:", 6 "BT-SEARCH * ",
    7 "GNUTELLA", 8 the UDP tracker magic."""
    n = end - p
    if proto == IPPROTO_TCP:
        if _starts(buf, p, end, words[4], False):
            return P2P_BITTORRENT
        if _starts(buf, p, end, words[7], False):
            return P2P_GNUTELLA
        b0 = u8(buf, p)
        # eDonkey/eMule: protocol byte, little-endian length of the rest, Hello (0x01)
        if (b0 == 0xE3 or b0 == 0xC5 or b0 == 0xD4) and n >= 6:
            if u32le(buf, p + 1) == n - 5 and u8(buf, p + 5) == 0x01:
                return P2P_EDONKEY
        return 0
    if u8(buf, p) == 100 and _find(buf, p, min(end, p + 64), words[5], False) >= 0:  # 'd' bencode
        return P2P_DHT
    if _starts(buf, p, end, words[6], False):
        return P2P_LSD
    if n >= 16 and _starts(buf, p, end, words[8], False):
        return P2P_TRACKER
    # uTP SYN (BEP 29): type 4, version 1, extension 0 or 2, no data. QUIC short
    # headers can begin 0x41 too: not on QUIC's or DNS's ports.
    if (n == 20 and u8(buf, p) == 0x41 and (u8(buf, p + 1) == 0 or u8(buf, p + 1) == 2)
            and sport != 443 and dport != 443 and sport != 53 and dport != 53):  # fmt: skip
        return P2P_UTP
    return 0


AHEAD = 8  # packets of look-ahead: enough to hide a memory read behind the work on others
RING = 16  # a power of two above AHEAD: the keys hashed ahead, by packet


@njit(**LEAF)
def _budget_key(packet):
    """The hash of a packet's flow, the same whichever way the packet goes."""
    a_hi, a_lo, b_hi, b_lo, meta, _d = canonical_key(
        packet.src_hi, packet.src_lo, packet.dst_hi, packet.dst_lo, packet.sport, packet.dport,
        packet.proto, packet.vlan,
    )  # fmt: skip
    return flow_hash(a_hi, a_lo, b_hi, b_lo, np.uint64(meta))


# The inspector's arrays, as ``inspect_packets`` takes them: ``seen`` the budget
# slots, ``params`` the P_* limits, ``words`` the byte strings looked for (a tuple
# of uint8 arrays, in the order of ``flows/payload.py``'s list), ``letters``
# from :func:`letter_codes`, ``facts`` the fact rows, ``arena`` the names' bytes,
# ``keys`` RING uint64 of scratch (the kernels allocate nothing).
InspectorArrays = namedtuple(
    "InspectorArrays", ["seen", "params", "words", "letters", "facts", "arena", "keys"]
)


@njit(**HOT_LOOP)
def inspect_packets(buf, base, batch, start, n, pcapng, linktype, if_linktypes, inspector,
                    n_facts, n_arena):  # fmt: skip
    """Inspect rows ``start``..``n`` of ``batch`` (``records.Batch`` arrays),
    whose records lie in ``buf`` (``buf[0]`` is byte ``base`` of the capture),
    with the inspector's arrays ``inspector`` (:data:`InspectorArrays`). Returns
    ``(next_row, n_facts, n_arena, why)``; on INSPECT_FULL the caller drains
    and calls again."""
    seen, words, letters, facts, arena = (
        inspector.seen, inspector.words, inspector.letters, inspector.facts, inspector.arena
    )  # fmt: skip
    max_packets = inspector.params[P_MAX_PACKETS]
    max_bytes = inspector.params[P_MAX_BYTES]
    offsets = batch.offset
    mask = seen.shape[0] - 1
    # The budget key of packet k, hashed when k was AHEAD packets off (for the
    # prefetch) and kept for its turn: one hash a packet, not two.
    keys = inspector.keys
    for i in range(start, n):
        if n_facts + PACKET_FACTS > facts.shape[0] or n_arena + PACKET_ARENA > arena.shape[0]:
            return i, n_facts, n_arena, INSPECT_FULL
        # The batch was decoded a whole batch ago: its records (hundreds of
        # bytes apart in a full-payload capture) and budget slots have left
        # the caches. Ask for packet i + AHEAD's now, so they have arrived
        # when it is its turn (a hint only: nothing is read here).
        k = i + AHEAD
        if k < n and batch.ip_version[k] != 0:
            rec = offsets[k] - base
            if rec >= 0 and rec < buf.shape[0]:
                prefetch(buf, rec)
                if rec + 64 < buf.shape[0]:
                    prefetch(buf, rec + 64)
            ahead = _budget_key(packet_at(batch, k))
            keys[k & (RING - 1)] = ahead
            prefetch(seen, np.int64(ahead & np.uint64(mask)))
        if batch.ip_version[i] == 0 or batch.status[i] != 0:
            continue
        packet = packet_at(batch, i)
        proto = packet.proto
        if proto != IPPROTO_TCP and proto != IPPROTO_UDP:
            continue
        if batch.cap_len[i] <= 60 and proto == IPPROTO_TCP:
            continue  # a bare TCP segment (54 bytes, padded to 60): no payload to read
        sport = packet.sport
        dport = packet.dport
        key = keys[i & (RING - 1)] if i >= start + AHEAD else _budget_key(packet)
        # One word per slot: the hash's upper 56 bits, then the packets
        # inspected so far (one cache miss per packet, not two).
        slot = np.int64(key & np.uint64(mask))
        tag = key & TAG_MASK
        entry = seen[slot]
        if entry & TAG_MASK != tag:
            entry = tag
        count = np.int64(entry & COUNT_MASK)
        # DNS is always read: it is small, and a tunnel must not hide behind
        # one long-lived source port.
        dns = sport == 53 or dport == 53
        if count >= max_packets and not dns:
            seen[slot] = entry
            continue
        data, lt = frame_start(buf, offsets[i] - base, pcapng, linktype, if_linktypes,
                               batch.interface[i])  # fmt: skip
        if data < 0:
            continue
        caplen = np.int64(batch.cap_len[i])
        if data + caplen > buf.shape[0]:
            continue
        at = decode_frame(buf, data, caplen, lt).transport_at
        end = data + caplen
        if at < 0 or at >= end:
            continue
        if proto == IPPROTO_TCP:
            if at + 13 > end:
                continue
            payload = at + (u8(buf, at + 12) >> 4) * 4
        else:
            payload = at + 8
        if payload >= end or (end - payload <= 6 and _zeros(buf, payload, end)):
            # Nothing, or Ethernet's padding of a short frame (a bare ACK is 54
            # bytes, padded to 60): not payload, and not worth a budget slot.
            seen[slot] = entry
            continue
        seen[slot] = entry + np.uint64(1) if count < max_packets else entry
        end = min(end, payload + max_bytes)
        if dns:
            dns_at = payload + 2 if proto == IPPROTO_TCP else payload
            n_facts, n_arena = _dns(buf, dns_at, end, i, facts, n_facts, arena, n_arena)
            continue
        b0 = u8(buf, payload)
        if proto == IPPROTO_UDP and b0 >= QUIC_LONG_FIXED:
            version = _quic_version(buf, payload, end)
            if version:
                n_facts = _put(facts, n_facts, i, KIND_QUIC, version, 0, 0, 0, 0, 0)
                continue
        if proto == IPPROTO_TCP and b0 == 83:  # "S"
            ssh = _ssh_version(buf, payload, end, words)
            if ssh:
                n_facts = _put(facts, n_facts, i, KIND_SSH, ssh, 0, 0, 0, 0, 0)
                continue
        if proto == IPPROTO_TCP and b0 == 0x16 and payload + 6 <= end and u8(buf, payload + 1) == 3:
            if u8(buf, payload + 5) == 1:
                n_facts, n_arena = _tls_client_hello(buf, payload, end, i, facts, n_facts,
                                                     arena, n_arena)  # fmt: skip
            continue
        if (
            proto == IPPROTO_TCP
            and 20 <= b0 <= 23
            and payload + 2 <= end
            and u8(buf, payload + 1) == 3
        ):
            continue  # a TLS record: encrypted, nothing more to see
        if (
            proto == IPPROTO_TCP
            and (b0 == 77 or b0 == 109)
            and _starts(buf, payload, end, words[9], True)
        ):
            # "MAIL FROM:<a@b> SIZE=123456": the size of the message to come
            at_size = _find(buf, payload, min(end, payload + 512), words[10], True)
            if at_size >= 0:
                value, digits = _number(buf, at_size + words[10].shape[0], end, 15)
                if digits:
                    n_facts = _put(facts, n_facts, i, KIND_SMTP_SIZE, value, 0, 0, 0, 0, 0)
        if proto == IPPROTO_TCP and 65 <= b0 <= 90:
            for m in range(len(words) - WORD_METHODS):
                method = words[WORD_METHODS + m]
                if _starts(buf, payload, end, method, False):
                    n_facts, n_arena = _http_request(buf, payload, end, m + 1, i, words,
                                                     facts, n_facts, arena, n_arena)  # fmt: skip
                    break
        sig = _p2p(buf, payload, end, proto, sport, dport, words)
        if sig:
            n_facts = _put(facts, n_facts, i, KIND_P2P, sig, 0, 0, 0, 0, 0)
        if proto == IPPROTO_TCP and _looks_like_text(buf, payload, end):
            room = min(n_facts + 32, facts.shape[0])
            n_facts, n_arena = _pii(buf, payload, end, i, letters, facts, n_facts, arena,
                                    n_arena, room)  # fmt: skip
    return n, n_facts, n_arena, INSPECT_OK
