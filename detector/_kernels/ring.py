"""Walk the blocks of a Linux ``TPACKET_V3`` receive ring and decode each packet.

The ring is one ``uint8`` array over the ``mmap`` of an ``AF_PACKET`` socket:
``n_blocks`` blocks of ``block_size`` bytes. The kernel fills a block with
packets, then sets ``TP_STATUS_USER`` in its ``block_status``; we read every
packet of it and hand it back by writing ``TP_STATUS_KERNEL``. Blocks are
used in order, so the walk starts at the block after the last one handed back
and stops at the first block still the kernel's.

Layouts (``include/uapi/linux/if_packet.h``), all little-endian on the
machines we run on (host byte order):

* ``struct tpacket_block_desc``: version u32 @0, offset_to_priv u32 @4, then
  ``tpacket_hdr_v1``: block_status u32 @8, num_pkts u32 @12,
  offset_to_first_pkt u32 @16, blk_len u32 @20, seq_num u64 @24, …
* ``struct tpacket3_hdr`` (one per packet, 48 bytes): tp_next_offset u32 @0,
  tp_sec u32 @4, tp_nsec u32 @8, tp_snaplen u32 @12, tp_len u32 @16,
  tp_status u32 @20, tp_mac u16 @24, tp_net u16 @26, tp_rxhash u32 @28,
  tp_vlan_tci u32 @32, tp_vlan_tpid u16 @36; then a ``sockaddr_ll`` whose
  sll_pkttype is at @58.

Nothing in a block is trusted: every offset and length is checked against the
block's bounds before it is used, and a block that fails a check is counted
(``COUNT_RING_DAMAGED``) and handed back with the packets read so far.

The batch row of a packet is written as the file walkers write theirs
(``records.write_row``). Its ``offset`` is where the frame starts in the
ring minus 16, the length of a pcap record header: a consumer that finds
frames 16 bytes after a record's offset (payload inspection) reads ring
packets as it reads a pcap file's. With ``hold``, blocks read in full are
kept from the kernel until :func:`release_held`, so such a consumer can read
the frames of a batch before the kernel reuses their blocks.
"""

import numpy as np
from numba import njit

from .._jit import HOT_LOOP, INLINE
from .decode import decode_frame, u16le, u32le
from .records import (
    COUNT_CAPLEN_OVER_WIRELEN,
    COUNT_FIRST_TS,
    COUNT_LAST_TS,
    COUNT_PACKETS,
    COUNT_STATUS,
    COUNT_WIRE_BYTES,
    write_row,
)

# tpacket_hdr_v1.block_status / tpacket3_hdr.tp_status bits
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10  # the kernel took an 802.1Q tag off: it is in tp_vlan_tci
PACKET_OUTGOING = 4  # sll_pkttype of a packet this host sent

BLOCK_DESC_BYTES = 48  # sizeof(struct tpacket_block_desc), aligned
TPACKET3_HDR_BYTES = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
SLL_PKTTYPE = TPACKET3_HDR_BYTES + 10  # sockaddr_ll.sll_pkttype, after the header
VLAN_TAG_BYTES = 4

# Counters beyond records.py's (same array, spare indices).
COUNT_RING_DAMAGED = 14  # blocks with an impossible offset or length (left early)
COUNT_RING_BLOCKS = 15  # blocks walked

# ring_state (an int64 array the caller keeps between calls)
R_BLOCK = 0  # the block to look at next
R_PACKET = 1  # packets of that block already taken (a batch filled mid-block)
R_OFFSET = 2  # where in the block the next packet header is (0: at the start)
R_HELD_FIRST = 3  # the first block read in full but not handed back yet (hold)
R_HELD = 4  # how many such blocks
R_FIELDS = 5
PCAP_RECORD_HEADER = 16

# Why a walk returned.
RING_IDLE = 0  # the next block is still the kernel's: wait for it
RING_BATCH_FULL = 1  # the batch is full; call again with an empty one


@njit(**INLINE)
def _release(ring, base):
    ring[base + 8] = TP_STATUS_KERNEL
    ring[base + 9] = 0
    ring[base + 10] = 0
    ring[base + 11] = 0


@njit(**HOT_LOOP)
def walk_ring(ring, block_size, n_blocks, ring_state, linktype, skip_outgoing, hold, max_rows,
              counters, out):  # fmt: skip
    """Decode the packets of every ready block, in ring order, into ``out``.

    ``ring``: uint8, writable, at least ``block_size * n_blocks`` bytes;
    ``ring_state``: R_FIELDS int64; ``out``: the batch arrays (``records.Batch``), at least
    ``max_rows`` long. ``skip_outgoing`` leaves out packets this host sent
    (on loopback the kernel shows each packet twice, as libpcap knows).
    ``hold`` keeps the blocks read in full for :func:`release_held`.
    Returns ``(rows, why)``: rows written, and RING_IDLE or RING_BATCH_FULL.
    """
    if block_size < BLOCK_DESC_BYTES or n_blocks <= 0 or ring.shape[0] < block_size * n_blocks:
        return 0, RING_IDLE
    row = 0
    block = ring_state[R_BLOCK]
    if block < 0 or block >= n_blocks:
        block = 0
    taken = ring_state[R_PACKET]
    at = ring_state[R_OFFSET]
    why = RING_IDLE
    wire_total = np.int64(0)
    first_ts = counters[COUNT_FIRST_TS]
    last_ts = counters[COUNT_LAST_TS]
    over_wirelen = np.int64(0)
    held = ring_state[R_HELD]
    if held == 0:
        ring_state[R_HELD_FIRST] = block
    # At most one lap: a block handed back (or held) is not looked at again.
    for _lap in range(n_blocks - held):
        base = block * block_size
        if (u32le(ring, base + 8) & TP_STATUS_USER) == 0:
            break
        num_pkts = u32le(ring, base + 12)
        if at == 0:
            at = u32le(ring, base + 16)  # offset_to_first_pkt
        damaged = False
        full = False
        while taken < num_pkts:
            if row >= max_rows:
                full = True
                break
            # The header, the sockaddr_ll after it, and the frame must lie in the block.
            if at < BLOCK_DESC_BYTES or at + TPACKET3_HDR_BYTES + 20 > block_size:
                damaged = True
                break
            p = base + at
            next_offset = u32le(ring, p)
            sec = u32le(ring, p + 4)
            nsec = u32le(ring, p + 8)
            snaplen = u32le(ring, p + 12)
            wire = u32le(ring, p + 16)
            status = u32le(ring, p + 20)
            mac = u16le(ring, p + 24)
            if mac < TPACKET3_HDR_BYTES or at + mac + snaplen > block_size:
                damaged = True
                break
            taken += 1
            if next_offset == 0:
                at = block_size  # the last packet of the block
            elif next_offset < TPACKET3_HDR_BYTES:
                damaged = True  # would loop or overlap: leave the block after this packet
                at = block_size
            else:
                at += next_offset
            if skip_outgoing and ring[p + SLL_PKTTYPE] == PACKET_OUTGOING:
                continue
            packet = decode_frame(ring, p + mac, snaplen, linktype)
            tag_taken_off = (status & TP_STATUS_VLAN_VALID) != 0
            if tag_taken_off:
                # libpcap puts the tag the kernel took off back into the frame
                # (and its 4 bytes into the lengths): count it as a capture file
                # shows it. cap_len stays what lies in the ring.
                wire += VLAN_TAG_BYTES
            t = sec * 1_000_000_000 + nsec
            wire_total += wire
            if t < first_ts:
                first_ts = t
            if t > last_ts:
                last_ts = t
            if snaplen > wire:
                over_wirelen += 1
            counters[COUNT_STATUS + packet.status] += 1
            write_row(out, row, t, 0, packet, wire, snaplen, p + mac - PCAP_RECORD_HEADER)
            if tag_taken_off:
                out.vlan[row] = u32le(ring, p + 32) & 0x0FFF
            row += 1
            if damaged:
                break
        if full:
            why = RING_BATCH_FULL
            break
        if damaged:
            counters[COUNT_RING_DAMAGED] += 1
        # Every packet of the block is read: give it back to the kernel.
        counters[COUNT_RING_BLOCKS] += 1
        if hold:
            held += 1
        else:
            _release(ring, base)
        block = block + 1 if block + 1 < n_blocks else 0
        taken = 0
        at = 0
    ring_state[R_BLOCK] = block
    ring_state[R_PACKET] = taken
    ring_state[R_OFFSET] = at
    ring_state[R_HELD] = held
    counters[COUNT_PACKETS] += row
    counters[COUNT_WIRE_BYTES] += wire_total
    counters[COUNT_FIRST_TS] = first_ts
    counters[COUNT_LAST_TS] = last_ts
    counters[COUNT_CAPLEN_OVER_WIRELEN] += over_wirelen
    return row, why


@njit(**HOT_LOOP)
def release_held(ring, block_size, n_blocks, ring_state):
    """Hand back the blocks a ``hold`` walk kept; returns how many."""
    held = ring_state[R_HELD]
    block = ring_state[R_HELD_FIRST]
    if block < 0 or block >= n_blocks or held < 0 or held > n_blocks:
        return 0
    if ring.shape[0] < block_size * n_blocks:
        return 0
    for _ in range(held):
        _release(ring, block * block_size)
        block = block + 1 if block + 1 < n_blocks else 0
    ring_state[R_HELD] = 0
    ring_state[R_HELD_FIRST] = block
    return held
