"""Walk capture records in a byte buffer and decode each packet into a batch.

One kernel per container format. Both take a buffer that holds a stretch of the
(decompressed) file, start at ``pos`` and stop at the first record that does not
fit entirely in the buffer, at ``max_records``, or at damage. They return where
they stopped and why; the Python reader refills the buffer from there. Walking
and decoding are fused so a packet is read once while it is in cache.

Output arrays (struct of arrays, one row per packet) have the dtypes of
``detector.capture.batch.BATCH_DTYPES``.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from .._jit import HOT_LOOP, INLINE, LEAF
from .decode import ZERO_WINDOW_SHIFT, decode_frame, u8, u16be, u16le, u32be, u32le
from .flowtable import COUNT_OK, S_LATEST, count_packet

# A batch's arrays, one row per packet, in the kernels' argument order
# (``detector.capture.batch.BATCH_DTYPES`` has their dtypes; docs/flows.md
# what each means).
Batch = namedtuple(
    "Batch",
    ["ts_ns", "interface", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "proto",
     "ip_version", "wire_len", "cap_len", "tcp_flags", "vlan", "frag", "frag_id", "offset",
     "status", "payload_len", "tcp_seq", "tcp_zero_window"],
)  # fmt: skip

# Why a walk stopped.
WALK_OK = 0  # buffer consumed exactly, or max_records reached
WALK_NEED_MORE = 1  # the next record is not complete in the buffer
WALK_RECORD_TOO_LONG = 2  # a length field beyond MAX_RECORD_BYTES: damage, not a packet
WALK_BAD_BLOCK = 3  # pcapng block length impossible (too small, unaligned, mismatched)
WALK_BAD_SECTION = 4  # pcapng section header with an unknown byte-order magic
WALK_BAD_VERSION = 5  # pcapng section of a major version we do not read
WALK_COUNT_STOPPED = 6  # the flow table asked to stop (detail: its COUNT_* code)

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
COUNT_PACKETS = 5
COUNT_WIRE_BYTES = 6
COUNT_FIRST_TS = 7  # the caller starts it at the largest int64
COUNT_LAST_TS = 8  # the caller starts it at the smallest int64
COUNT_STATUS = 9  # 9..13: packets per decode status (decode.STATUS_*)
N_COUNTERS = 16


@njit(**INLINE)
def write_row(batch, r, ts_ns, interface, packet, wire_len, cap_len, offset):
    """Write one decoded packet into row ``r`` of ``batch`` (:data:`Batch` arrays)."""
    batch.ts_ns[r] = ts_ns
    batch.interface[r] = interface
    batch.src_hi[r] = packet.src_hi
    batch.src_lo[r] = packet.src_lo
    batch.dst_hi[r] = packet.dst_hi
    batch.dst_lo[r] = packet.dst_lo
    batch.sport[r] = packet.sport
    batch.dport[r] = packet.dport
    batch.proto[r] = packet.proto
    batch.ip_version[r] = packet.ip_version
    batch.wire_len[r] = wire_len
    batch.cap_len[r] = cap_len
    batch.tcp_flags[r] = packet.tcp_flags & 0xFFF
    batch.tcp_zero_window[r] = packet.tcp_flags >> ZERO_WINDOW_SHIFT
    batch.vlan[r] = packet.vlan
    batch.frag[r] = packet.frag
    batch.frag_id[r] = packet.frag_id
    batch.offset[r] = offset
    batch.status[r] = packet.status
    batch.payload_len[r] = packet.payload_len
    batch.tcp_seq[r] = packet.tcp_seq


@njit(**INLINE)
def _take(counters, t, wire, st):
    counters[COUNT_PACKETS] += 1
    counters[COUNT_WIRE_BYTES] += wire
    if t < counters[COUNT_FIRST_TS]:
        counters[COUNT_FIRST_TS] = t
    if t > counters[COUNT_LAST_TS]:
        counters[COUNT_LAST_TS] = t
    counters[COUNT_STATUS + st] += 1


PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 0x00000001
PCAPNG_PB = 0x00000002  # obsolete Packet Block
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
# The bytes before a frame: a classic record header (time, captured and wire
# lengths), a pcapng Simple Packet Block's and an Enhanced Packet Block's headers.
PCAP_RECORD_HEADER = 16
PCAPNG_SPB_HEADER = 12
PCAPNG_EPB_HEADER = 28


@njit(**LEAF)
def frame_start(buf, rec, pcapng, linktype, if_linktypes, interface):
    """Where the frame of the record at ``buf[rec]`` starts, and its link type
    (pcapng: the one of ``interface``, clamped to ``if_linktypes``); -1 when the
    record's header is not in ``buf``. A batch's ``offset`` less the buffer's
    base is such a ``rec``; a pcapng block type is read in either byte order."""
    if rec < 0 or rec + PCAP_RECORD_HEADER > buf.shape[0]:
        return np.int64(-1), np.int64(linktype)
    if not pcapng:
        return np.int64(rec + PCAP_RECORD_HEADER), np.int64(linktype)
    block = u32le(buf, rec)
    if block != PCAPNG_EPB and block != PCAPNG_SPB:
        block = u32be(buf, rec)
    data = rec + (PCAPNG_SPB_HEADER if block == PCAPNG_SPB else PCAPNG_EPB_HEADER)
    at = min(max(np.int64(interface), 0), if_linktypes.shape[0] - 1)
    return np.int64(data), np.int64(if_linktypes[at])


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


@njit(**LEAF)
def _u32(buf, i, big_endian):
    if big_endian:
        return u32be(buf, i)
    return u32le(buf, i)


@njit(**LEAF)
def _u16(buf, i, big_endian):
    if big_endian:
        return u16be(buf, i)
    return u16le(buf, i)


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


@njit(**HOT_LOOP)
def walk_pcap(
    buf, pos, end, big_endian, nanosecond, linktype, snaplen, base_offset, max_records,
    counters, out, write_out, count, table, params, export, n_export,
):  # fmt: skip
    """Walk classic pcap records in ``buf[pos:end]``.

    ``out`` is the batch's arrays (:data:`Batch`, written when ``write_out``);
    with ``count`` each packet is also counted into the flow table ``table``
    (``flowtable.FlowTableArrays``; see ``flowtable.count_packet``) in the same
    pass, so it is never written out and read back. Returns ``(packets,
    stop_pos, why, detail, n_export)``; ``detail`` is the bad length for
    WALK_RECORD_TOO_LONG.
    """
    state = table.state
    frac_mul = 1 if nanosecond else 1000
    # Running totals live in registers and reach ``counters`` once, at the end.
    wire_total = np.int64(0)
    first_ts = counters[COUNT_FIRST_TS]
    last_ts = counters[COUNT_LAST_TS]
    over_snaplen = np.int64(0)
    over_wirelen = np.int64(0)
    row = 0
    why = WALK_OK
    detail = np.int64(0)
    while row < max_records:
        if pos + 16 > end:
            why = WALK_OK if pos == end else WALK_NEED_MORE
            break
        sec = _u32(buf, pos, big_endian)
        frac = _u32(buf, pos + 4, big_endian)
        incl = _u32(buf, pos + 8, big_endian)
        orig = _u32(buf, pos + 12, big_endian)
        if incl > MAX_RECORD_BYTES:
            why = WALK_RECORD_TOO_LONG
            detail = incl
            break
        data = pos + 16
        if data + incl > end:
            why = WALK_NEED_MORE
            break
        packet = decode_frame(buf, data, incl, linktype)
        t = sec * 1_000_000_000 + frac * frac_mul
        if count and t > state[S_LATEST]:
            state[S_LATEST] = t  # every packet moves the clock, IP or not
        if count and packet.ip_version != 0:
            n_export, done = count_packet(t, packet, orig, table, params, export, n_export)
            if done != COUNT_OK:
                # Not taken: offered again after the caller made room.
                why = WALK_COUNT_STOPPED
                detail = done
                break
        wire_total += orig
        if t < first_ts:
            first_ts = t
        if t > last_ts:
            last_ts = t
        if snaplen > 0 and incl > snaplen:
            over_snaplen += 1
        if incl > orig:
            over_wirelen += 1
        counters[COUNT_STATUS + packet.status] += 1
        if write_out:
            write_row(out, row, t, 0, packet, orig, incl, base_offset + pos)
        row += 1
        pos = data + incl
    counters[COUNT_PACKETS] += row
    counters[COUNT_WIRE_BYTES] += wire_total
    counters[COUNT_FIRST_TS] = first_ts
    counters[COUNT_LAST_TS] = last_ts
    counters[COUNT_CAPLEN_OVER_SNAPLEN] += over_snaplen
    counters[COUNT_CAPLEN_OVER_WIRELEN] += over_wirelen
    return row, pos, why, detail, n_export


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
            r = u8(buf, value)
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


@njit(**HOT_LOOP)
def walk_pcapng(
    buf,
    pos,
    end,
    section,
    interfaces,
    base_offset,
    max_records,
    counters,
    out,
    write_out,
    count,
    table,
    params,
    export,
    n_export,
):
    """Walk pcapng blocks in ``buf[pos:end]``; ``section`` and ``interfaces``
    carry the section's byte order and interface table across calls. Other
    arguments and the result as for ``walk_pcap``.
    """
    state = table.state
    row = 0
    while row < max_records:
        if pos + 12 > end:
            if pos == end:
                return row, pos, WALK_OK, 0, n_export
            return row, pos, WALK_NEED_MORE, 0, n_export
        # The SHB type reads the same in both byte orders; its body says which.
        block_type_le = u32le(buf, pos)
        if block_type_le == PCAPNG_SHB:
            magic = u32le(buf, pos + 8)
            if magic == PCAPNG_BYTE_ORDER_MAGIC:
                big_endian = False
            elif u32be(buf, pos + 8) == PCAPNG_BYTE_ORDER_MAGIC:
                big_endian = True
            else:
                return row, pos, WALK_BAD_SECTION, magic, n_export
            block_len = _u32(buf, pos + 4, big_endian)
            if block_len < 28 or block_len % 4 != 0 or block_len > MAX_BLOCK_BYTES:
                return row, pos, WALK_BAD_BLOCK, block_len, n_export
            if pos + block_len > end:
                return row, pos, WALK_NEED_MORE, 0, n_export
            major = _u16(buf, pos + 12, big_endian)
            if major != 1:
                return row, pos, WALK_BAD_VERSION, major, n_export
            section[SEC_BIG_ENDIAN] = 1 if big_endian else 0
            section[SEC_N_INTERFACES] = 0
            section[SEC_STARTED] = 1
            pos += block_len
            continue
        if section[SEC_STARTED] == 0:
            return row, pos, WALK_BAD_SECTION, block_type_le, n_export
        big_endian = section[SEC_BIG_ENDIAN] == 1
        block_type = _u32(buf, pos, big_endian)
        block_len = _u32(buf, pos + 4, big_endian)
        if block_len < 12 or block_len % 4 != 0 or block_len > MAX_BLOCK_BYTES:
            return row, pos, WALK_BAD_BLOCK, block_len, n_export
        if pos + block_len > end:
            return row, pos, WALK_NEED_MORE, 0, n_export
        if _u32(buf, pos + block_len - 4, big_endian) != block_len:
            return row, pos, WALK_BAD_BLOCK, block_len, n_export

        if block_type == PCAPNG_IDB:
            if block_len < 20:
                return row, pos, WALK_BAD_BLOCK, block_len, n_export
            _read_idb(buf, pos, block_len, big_endian, section, interfaces, counters)
            pos += block_len
            continue

        if block_type == PCAPNG_EPB or block_type == PCAPNG_PB:
            if block_len < 32:
                return row, pos, WALK_BAD_BLOCK, block_len, n_export
            if block_type == PCAPNG_EPB:
                if_id = _u32(buf, pos + 8, big_endian)
            else:
                if_id = _u16(buf, pos + 8, big_endian)
            ts = (_u32(buf, pos + 12, big_endian) << 32) | _u32(buf, pos + 16, big_endian)
            incl = _u32(buf, pos + 20, big_endian)
            orig = _u32(buf, pos + 24, big_endian)
            data = pos + 28
            if incl > block_len - 32:
                return row, pos, WALK_BAD_BLOCK, block_len, n_export
        elif block_type == PCAPNG_SPB:
            if block_len < 16:
                return row, pos, WALK_BAD_BLOCK, block_len, n_export
            if_id = 0
            orig = _u32(buf, pos + 8, big_endian)
            data = pos + 12
            incl = min(orig, block_len - 16)
            ts = -1
        else:
            counters[COUNT_SKIPPED_BLOCKS] += 1
            pos += block_len
            continue

        if if_id < section[SEC_N_INTERFACES]:
            snap = interfaces[if_id, IF_SNAPLEN]
            linktype = interfaces[if_id, IF_LINKTYPE]
            ts_mul = interfaces[if_id, IF_TS_MUL]
            ts_div = interfaces[if_id, IF_TS_DIV]
            ts_shift = interfaces[if_id, IF_TS_SHIFT]
            ts_offset = interfaces[if_id, IF_TS_OFFSET_NS]
        else:
            # A packet of an interface the file never described: its link type
            # is unknown, so it is kept as such (status "unknown link type"),
            # timed in the default microseconds.
            counters[COUNT_UNKNOWN_INTERFACE] += 1
            snap = 0
            linktype = -1
            ts_mul, ts_div, ts_shift, ts_offset = 1000, 1, -1, 0
        if block_type == PCAPNG_SPB:
            if snap > 0 and incl > snap:
                incl = snap
            t = section[SEC_LAST_TS]
        else:
            t = _ts_to_ns(ts, ts_mul, ts_div, ts_shift) + ts_offset
        packet = decode_frame(buf, data, incl, linktype)
        if count and t > state[S_LATEST]:
            state[S_LATEST] = t  # every packet moves the clock, IP or not
        if count and packet.ip_version != 0:
            n_export, done = count_packet(t, packet, orig, table, params, export, n_export)
            if done != COUNT_OK:
                return row, pos, WALK_COUNT_STOPPED, done, n_export
        # State and counters change only once the packet is taken.
        section[SEC_LAST_TS] = t
        if block_type != PCAPNG_SPB and snap > 0 and incl > snap:
            counters[COUNT_CAPLEN_OVER_SNAPLEN] += 1
        if incl > orig:
            counters[COUNT_CAPLEN_OVER_WIRELEN] += 1
        _take(counters, t, orig, packet.status)
        row += 1
        block_start = pos
        pos += block_len
        if not write_out:
            continue
        write_row(out, row - 1, t, if_id, packet, orig, incl, base_offset + block_start)
    return row, pos, WALK_OK, 0, n_export
