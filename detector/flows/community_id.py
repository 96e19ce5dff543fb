"""Community ID v1 (https://github.com/corelight/community-id-spec): a flow hash
that Zeek, Suricata, Elastic and nfstream also emit, so one flow can be found
across all of them."""

from __future__ import annotations

import base64
import hashlib
import struct

# Request/reply ICMP types: their flows are two-way (spec, "ICMP port equivalents").
ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10}
ICMP6_PAIRS = {
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
PORTED = {6, 17, 132, 1, 58}  # TCP, UDP, SCTP, ICMP, ICMPv6


def community_id_v1(
    src: bytes, dst: bytes, proto: int, sport: int, dport: int, *, seed: int = 0
) -> str:
    """Community ID of one flow seen from its initiator.

    ``src``/``dst`` are packed addresses (4 or 16 bytes). For ICMP, ``sport`` is
    the type and ``dport`` the code of the initiator's packet.
    """
    one_way = False
    if proto in (1, 58):
        pairs = ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    if not one_way and (src > dst or (src == dst and sport > dport)):
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + struct.pack("!BB", proto, 0)
    if proto in PORTED:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
