"""Community ID v1 for many flows at once: SHA-1 and base64 in numba.

The hash of one flow in Python (struct, hashlib, base64) costs a few
microseconds; a million flows, seconds — more than counting their packets. Here
every flow is one 64-byte SHA-1 block (the input is at most 40 bytes), hashed
and encoded without leaving the kernel. ``detector.flows.community_id`` holds the
readable one-flow version; tests compare both with the reference package.
"""

import numpy as np
from numba import njit

from .._jit import INLINE, KERNEL

B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)
ID_CHARS = 30  # "1:" + 28 base64 characters
PORTED = (1, 6, 17, 58, 132)  # ICMP, TCP, UDP, ICMPv6, SCTP carry ports in the hash
M32 = np.uint32(0xFFFFFFFF)


@njit(**INLINE)
def _rotl(x, n):
    return ((x << np.uint32(n)) | (x >> np.uint32(32 - n))) & M32


@njit(**INLINE)
def _sha1_block(block, w, digest):
    """SHA-1 (FIPS 180-4) of one padded 64-byte block into 5 uint32 words."""
    for i in range(16):
        w[i] = (
            (np.uint32(block[4 * i]) << np.uint32(24))
            | (np.uint32(block[4 * i + 1]) << np.uint32(16))
            | (np.uint32(block[4 * i + 2]) << np.uint32(8))
            | np.uint32(block[4 * i + 3])
        )
    for i in range(16, 80):
        w[i] = _rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
    a = np.uint32(0x67452301)
    b = np.uint32(0xEFCDAB89)
    c = np.uint32(0x98BADCFE)
    d = np.uint32(0x10325476)
    e = np.uint32(0xC3D2E1F0)
    # Four loops, one per round function, not one loop choosing among them:
    # they take 0.53-0.61 of its time (1M flows, interleaved runs).
    for i in range(0, 20):
        t = (_rotl(a, 5) + ((b & c) | (~b & d)) + e + np.uint32(0x5A827999) + w[i]) & M32
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(t)
    for i in range(20, 40):
        t = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint32(0x6ED9EBA1) + w[i]) & M32
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(t)
    for i in range(40, 60):
        t = (_rotl(a, 5) + ((b & c) | (b & d) | (c & d)) + e + np.uint32(0x8F1BBCDC) + w[i]) & M32
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(t)
    for i in range(60, 80):
        t = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint32(0xCA62C1D6) + w[i]) & M32
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(t)
    digest[0] = np.uint32(0x67452301) + a
    digest[1] = np.uint32(0xEFCDAB89) + b
    digest[2] = np.uint32(0x98BADCFE) + c
    digest[3] = np.uint32(0x10325476) + d
    digest[4] = np.uint32(0xC3D2E1F0) + e


@njit(**INLINE)
def _put_address(block, at, hi, lo, v4):
    if v4:
        for j in range(4):
            block[at + j] = np.uint8((lo >> np.uint64(24 - 8 * j)) & np.uint64(0xFF))
        return at + 4
    for j in range(8):
        block[at + j] = np.uint8((hi >> np.uint64(56 - 8 * j)) & np.uint64(0xFF))
        block[at + 8 + j] = np.uint8((lo >> np.uint64(56 - 8 * j)) & np.uint64(0xFF))
    return at + 16


@njit(**KERNEL)
def community_ids(src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, one_way, seed, out):
    """Write ``"1:" + base64(sha1(...))`` of each flow into ``out[i, :30]``.

    Ports are the flow's (ICMP: type and counterpart type, or type and code
    when ``one_way``, which also keeps the initiator's order). Addresses are
    128-bit; IPv4-mapped ones are hashed as 4 bytes.
    """
    block = np.zeros(64, dtype=np.uint8)
    w = np.zeros(80, dtype=np.uint32)
    digest = np.zeros(5, dtype=np.uint32)
    raw = np.zeros(21, dtype=np.uint8)
    mapped = np.uint64(0xFFFF)
    for i in range(src_hi.shape[0]):
        s_hi, s_lo, d_hi, d_lo = src_hi[i], src_lo[i], dst_hi[i], dst_lo[i]
        sp, dp = sport[i], dport[i]
        v4 = s_hi == 0 and (s_lo >> np.uint64(32)) == mapped
        if not one_way[i]:
            # Order the endpoints as the spec does: by address bytes, then port.
            if s_hi > d_hi or (s_hi == d_hi and (s_lo > d_lo or (s_lo == d_lo and sp > dp))):
                s_hi, s_lo, d_hi, d_lo, sp, dp = d_hi, d_lo, s_hi, s_lo, dp, sp
        for j in range(64):
            block[j] = 0
        block[0] = np.uint8(seed >> 8)
        block[1] = np.uint8(seed & 0xFF)
        at = _put_address(block, 2, s_hi, s_lo, v4)
        at = _put_address(block, at, d_hi, d_lo, v4)
        p = proto[i]
        block[at] = np.uint8(p)
        block[at + 1] = 0
        at += 2
        if p == 1 or p == 6 or p == 17 or p == 58 or p == 132:
            block[at] = np.uint8(sp >> 8)
            block[at + 1] = np.uint8(sp & 0xFF)
            block[at + 2] = np.uint8(dp >> 8)
            block[at + 3] = np.uint8(dp & 0xFF)
            at += 4
        block[at] = 0x80  # padding: one bit, zeros, then the length in bits
        bits = at * 8
        block[62] = np.uint8(bits >> 8)
        block[63] = np.uint8(bits & 0xFF)
        _sha1_block(block, w, digest)
        for j in range(5):
            raw[4 * j] = np.uint8(digest[j] >> np.uint32(24))
            raw[4 * j + 1] = np.uint8((digest[j] >> np.uint32(16)) & np.uint32(0xFF))
            raw[4 * j + 2] = np.uint8((digest[j] >> np.uint32(8)) & np.uint32(0xFF))
            raw[4 * j + 3] = np.uint8(digest[j] & np.uint32(0xFF))
        raw[20] = 0
        out[i, 0] = 49  # "1"
        out[i, 1] = 58  # ":"
        for g in range(7):  # 21 bytes → 28 characters; the last one is padding
            x = (np.int64(raw[3 * g]) << 16) | (np.int64(raw[3 * g + 1]) << 8) | raw[3 * g + 2]
            out[i, 2 + 4 * g] = B64[(x >> 18) & 63]
            out[i, 3 + 4 * g] = B64[(x >> 12) & 63]
            out[i, 4 + 4 * g] = B64[(x >> 6) & 63]
            out[i, 5 + 4 * g] = B64[x & 63]
        out[i, 29] = 61  # "=": 20 bytes leave one pad character
