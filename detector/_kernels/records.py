"""Walk capture records in a byte buffer and decode each packet into a batch.

One kernel per container format. Both take a buffer that holds a stretch of the
(decompressed) file, start at ``pos`` and stop at the first record that does not
fit entirely in the buffer, at ``max_records``, or at damage. They return where
they stopped and why; the Python reader refills the buffer from there. Walking
and decoding are fused so a packet is read once while it is in cache.

Output arrays (struct of arrays, one row per packet) are written from row
``first`` on; their dtypes are those of ``detector.capture.batch.BATCH_DTYPES``.
"""

import numpy as np
from numba import njit

from .._jit import INLINE, KERNEL
from .decode import decode_frame, u32be, u32le

# Why a walk stopped.
WALK_OK = 0  # buffer consumed exactly, or max_records reached
WALK_NEED_MORE = 1  # the next record is not complete in the buffer
WALK_RECORD_TOO_LONG = 2  # a length field beyond MAX_RECORD_BYTES: damage, not a packet
WALK_BAD_BLOCK = 3  # pcapng block length impossible (too small, unaligned, mismatched)
WALK_BAD_SECTION = 4  # pcapng section header with an unknown byte-order magic
WALK_BAD_VERSION = 5  # pcapng section of a major version we do not read

# libpcap refuses records above 256 KiB (MAXIMUM_SNAPLEN); so do we. A larger
# length is a damaged header, and trusting it would swallow good packets.
MAX_RECORD_BYTES = 262144
# pcapng blocks carry options too; allow some room above the packet limit.
MAX_BLOCK_BYTES = MAX_RECORD_BYTES + 65536

# Non-fatal events, counted per walk (indices into the ``counters`` array).
COUNT_CAPLEN_OVER_SNAPLEN = 0
COUNT_CAPLEN_OVER_WIRELEN = 1
COUNT_UNKNOWN_INTERFACE = 2
COUNT_TOO_MANY_INTERFACES = 3
COUNT_SKIPPED_BLOCKS = 4
N_COUNTERS = 8

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 0x00000001
PCAPNG_PB = 0x00000002  # obsolete Packet Block
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14

# Interface table columns (one row per pcapng interface of the current section).
IF_LINKTYPE = 0
IF_SNAPLEN = 1
IF_TS_MUL = 2  # ns = ts * mul // div   (decimal resolutions)
IF_TS_DIV = 3
IF_TS_SHIFT = 4  # >= 0: binary resolution 2^-shift; -1: decimal
IF_TS_OFFSET_NS = 5
IF_COLUMNS = 6

# Section state (an int64 array the reader keeps across buffers).
SEC_BIG_ENDIAN = 0
SEC_N_INTERFACES = 1
SEC_LAST_TS = 2  # for Simple Packet Blocks, which carry no time
SEC_STARTED = 3
SEC_FIELDS = 4


@njit(**INLINE)
def _u32(buf, i, big_endian):
    if big_endian:
        return u32be(buf, i)
    return u32le(buf, i)


@njit(**INLINE)
def _u16(buf, i, big_endian):
    if big_endian:
        return (np.int64(buf[i]) << 8) | np.int64(buf[i + 1])
    return (np.int64(buf[i + 1]) << 8) | np.int64(buf[i])


@njit(**INLINE)
def _ts_to_ns(ts, mul, div, shift):
    if shift < 0:
        if div == 1:
            return ts * mul
        return ts // div
    if shift == 0:
        return ts * 1_000_000_000
    whole = ts >> shift
    frac = ts & ((np.int64(1) << shift) - 1)
    if shift <= 32:
        return whole * 1_000_000_000 + ((frac * 1_000_000_000) >> shift)
    return whole * 1_000_000_000 + np.int64(frac * (1e9 / 2.0**shift))


@njit(**KERNEL)
def walk_pcap(
    buf, pos, end, big_endian, nanosecond, linktype, snaplen, base_offset, first, max_records,
    counters, ts_ns, interface, src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto,
    ip_version, wire_len, cap_len, tcp_flags, vlan, frag, frag_id, offset, status,
):
    """Walk classic pcap records in ``buf[pos:end]``.

    Returns ``(rows_written, stop_pos, why, detail)``; ``detail`` is the bad
    length for WALK_RECORD_TOO_LONG.
    """
    frac_mul = 1 if nanosecond else 1000
    row = first
    limit = first + max_records
    while row < limit:
        if pos + 16 > end:
            if pos == end:
                return row - first, pos, WALK_OK, 0
            return row - first, pos, WALK_NEED_MORE, 0
        sec = _u32(buf, pos, big_endian)
        frac = _u32(buf, pos + 4, big_endian)
        incl = _u32(buf, pos + 8, big_endian)
        orig = _u32(buf, pos + 12, big_endian)
        if incl > MAX_RECORD_BYTES:
            return row - first, pos, WALK_RECORD_TOO_LONG, incl
        data = pos + 16
        if data + incl > end:
            return row - first, pos, WALK_NEED_MORE, 0
        if snaplen > 0 and incl > snaplen:
            counters[COUNT_CAPLEN_OVER_SNAPLEN] += 1
        if incl > orig:
            counters[COUNT_CAPLEN_OVER_WIRELEN] += 1
        (st, ipv, pr, sh, sl, dh, dl, sp, dp, fl, vl, fr, fid) = decode_frame(
            buf, data, incl, linktype
        )
        ts_ns[row] = sec * 1_000_000_000 + frac * frac_mul
        interface[row] = 0
        src_hi[row] = sh
        src_lo[row] = sl
        dst_hi[row] = dh
        dst_lo[row] = dl
        sport[row] = sp
        dport[row] = dp
        proto[row] = pr
        ip_version[row] = ipv
        wire_len[row] = orig
        cap_len[row] = incl
        tcp_flags[row] = fl
        vlan[row] = vl
        frag[row] = fr
        frag_id[row] = fid
        offset[row] = base_offset + pos
        status[row] = st
        row += 1
        pos = data + incl
    return row - first, pos, WALK_OK, 0


@njit(**INLINE)
def _read_idb(buf, pos, block_len, big_endian, section, interfaces, counters):
    n = section[SEC_N_INTERFACES]
    if n >= interfaces.shape[0]:
        counters[COUNT_TOO_MANY_INTERFACES] += 1
        return
    interfaces[n, IF_LINKTYPE] = _u16(buf, pos + 8, big_endian)
    interfaces[n, IF_SNAPLEN] = _u32(buf, pos + 12, big_endian)
    interfaces[n, IF_TS_MUL] = 1000  # default resolution: microseconds
    interfaces[n, IF_TS_DIV] = 1
    interfaces[n, IF_TS_SHIFT] = -1
    interfaces[n, IF_TS_OFFSET_NS] = 0
    opt = pos + 16
    opt_end = pos + block_len - 4
    while opt + 4 <= opt_end:
        code = _u16(buf, opt, big_endian)
        length = _u16(buf, opt + 2, big_endian)
        value = opt + 4
        if code == 0 or value + length > opt_end:
            break
        if code == OPT_IF_TSRESOL and length >= 1:
            r = np.int64(buf[value])
            if r & 0x80:
                interfaces[n, IF_TS_SHIFT] = min(r & 0x7F, 63)
            else:
                r = min(r, 18)
                if r <= 9:
                    interfaces[n, IF_TS_MUL] = 10 ** (9 - r)
                    interfaces[n, IF_TS_DIV] = 1
                else:
                    interfaces[n, IF_TS_MUL] = 1
                    interfaces[n, IF_TS_DIV] = 10 ** (r - 9)
        elif code == OPT_IF_TSOFFSET and length >= 8:
            if big_endian:
                seconds = (u32be(buf, value) << 32) | u32be(buf, value + 4)
            else:
                seconds = (u32le(buf, value + 4) << 32) | u32le(buf, value)
            interfaces[n, IF_TS_OFFSET_NS] = seconds * 1_000_000_000
        opt = value + ((length + 3) & ~3)
    section[SEC_N_INTERFACES] = n + 1


@njit(**KERNEL)
def walk_pcapng(
    buf, pos, end, section, interfaces, base_offset, first, max_records,
    counters, ts_ns, interface, src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto,
    ip_version, wire_len, cap_len, tcp_flags, vlan, frag, frag_id, offset, status,
):
    """Walk pcapng blocks in ``buf[pos:end]``; ``section`` and ``interfaces``
    carry the section's byte order and interface table across calls.

    Returns ``(rows_written, stop_pos, why, detail)``.
    """
    row = first
    limit = first + max_records
    while row < limit:
        if pos + 12 > end:
            if pos == end:
                return row - first, pos, WALK_OK, 0
            return row - first, pos, WALK_NEED_MORE, 0
        # The SHB type reads the same in both byte orders; its body says which.
        block_type_le = u32le(buf, pos)
        if block_type_le == PCAPNG_SHB:
            magic = u32le(buf, pos + 8)
            if magic == PCAPNG_BYTE_ORDER_MAGIC:
                big_endian = False
            elif u32be(buf, pos + 8) == PCAPNG_BYTE_ORDER_MAGIC:
                big_endian = True
            else:
                return row - first, pos, WALK_BAD_SECTION, magic
            block_len = _u32(buf, pos + 4, big_endian)
            if block_len < 28 or block_len % 4 != 0 or block_len > MAX_BLOCK_BYTES:
                return row - first, pos, WALK_BAD_BLOCK, block_len
            if pos + block_len > end:
                return row - first, pos, WALK_NEED_MORE, 0
            major = _u16(buf, pos + 12, big_endian)
            if major != 1:
                return row - first, pos, WALK_BAD_VERSION, major
            section[SEC_BIG_ENDIAN] = 1 if big_endian else 0
            section[SEC_N_INTERFACES] = 0
            section[SEC_STARTED] = 1
            pos += block_len
            continue
        if section[SEC_STARTED] == 0:
            return row - first, pos, WALK_BAD_SECTION, block_type_le
        big_endian = section[SEC_BIG_ENDIAN] == 1
        block_type = _u32(buf, pos, big_endian)
        block_len = _u32(buf, pos + 4, big_endian)
        if block_len < 12 or block_len % 4 != 0 or block_len > MAX_BLOCK_BYTES:
            return row - first, pos, WALK_BAD_BLOCK, block_len
        if pos + block_len > end:
            return row - first, pos, WALK_NEED_MORE, 0
        if _u32(buf, pos + block_len - 4, big_endian) != block_len:
            return row - first, pos, WALK_BAD_BLOCK, block_len

        if block_type == PCAPNG_IDB:
            if block_len < 20:
                return row - first, pos, WALK_BAD_BLOCK, block_len
            _read_idb(buf, pos, block_len, big_endian, section, interfaces, counters)
            pos += block_len
            continue

        if block_type == PCAPNG_EPB or block_type == PCAPNG_PB:
            if block_len < 32:
                return row - first, pos, WALK_BAD_BLOCK, block_len
            if block_type == PCAPNG_EPB:
                if_id = _u32(buf, pos + 8, big_endian)
            else:
                if_id = _u16(buf, pos + 8, big_endian)
            ts = (_u32(buf, pos + 12, big_endian) << 32) | _u32(buf, pos + 16, big_endian)
            incl = _u32(buf, pos + 20, big_endian)
            orig = _u32(buf, pos + 24, big_endian)
            data = pos + 28
            if incl > block_len - 32:
                return row - first, pos, WALK_BAD_BLOCK, block_len
        elif block_type == PCAPNG_SPB:
            if block_len < 16:
                return row - first, pos, WALK_BAD_BLOCK, block_len
            if_id = 0
            orig = _u32(buf, pos + 8, big_endian)
            data = pos + 12
            incl = min(orig, block_len - 16)
            ts = -1
        else:
            counters[COUNT_SKIPPED_BLOCKS] += 1
            pos += block_len
            continue

        if if_id >= section[SEC_N_INTERFACES]:
            counters[COUNT_UNKNOWN_INTERFACE] += 1
            pos += block_len
            continue
        snap = interfaces[if_id, IF_SNAPLEN]
        if block_type == PCAPNG_SPB:
            if snap > 0 and incl > snap:
                incl = snap
            t = section[SEC_LAST_TS]
        else:
            if snap > 0 and incl > snap:
                counters[COUNT_CAPLEN_OVER_SNAPLEN] += 1
            t = _ts_to_ns(
                ts,
                interfaces[if_id, IF_TS_MUL],
                interfaces[if_id, IF_TS_DIV],
                interfaces[if_id, IF_TS_SHIFT],
            ) + interfaces[if_id, IF_TS_OFFSET_NS]
            section[SEC_LAST_TS] = t
        if incl > orig:
            counters[COUNT_CAPLEN_OVER_WIRELEN] += 1
        (st, ipv, pr, sh, sl, dh, dl, sp, dp, fl, vl, fr, fid) = decode_frame(
            buf, data, incl, interfaces[if_id, IF_LINKTYPE]
        )
        ts_ns[row] = t
        interface[row] = if_id
        src_hi[row] = sh
        src_lo[row] = sl
        dst_hi[row] = dh
        dst_lo[row] = dl
        sport[row] = sp
        dport[row] = dp
        proto[row] = pr
        ip_version[row] = ipv
        wire_len[row] = orig
        cap_len[row] = incl
        tcp_flags[row] = fl
        vlan[row] = vl
        frag[row] = fr
        frag_id[row] = fid
        offset[row] = base_offset + pos
        status[row] = st
        row += 1
        pos += block_len
    return row - first, pos, WALK_OK, 0
