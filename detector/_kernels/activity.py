"""The activity table: packets and bytes per conversation per time bin.

The flow table keeps totals per flow; rules and per-host features need traffic
resolved in time ("50 MB within any 60-minute span outside business hours").
This is a second aggregation over the same packet batches, keyed by
(conversation, time bin):

* conversation = (A address, B address, A port, B port, protocol, VLAN), where
  A is the endpoint with the smaller (address hi, address lo, port) -- the flow
  table's rule (``canonical_key`` in flowtable.py), so ``META`` is its
  ``meta_key``. A packet from an endpoint to itself (same address and port)
  counts as A→B.
* Ports are the packet's as decoded, with no further interpretation: ICMP and
  ICMPv6 are keyed by (type, code) with no request/reply pairing (an echo and
  its reply are two conversations), and a non-first fragment, which carries
  no transport header, is keyed with ports 0 (no attribution to its first
  fragment, unlike the flow table).
* bin = floor(ts_ns / bin_ns), a floor also for times before 1970: a packet at
  exactly ``k * bin_ns`` is in bin k, one at ``k * bin_ns - 1`` in bin k - 1.
* Packets whose ``ip_version`` is 0 (no IP) are skipped.

Per row: packets and bytes (``wire_len``, the length on the wire) A→B and B→A,
and the first and last packet time (min and max, so packets out of time order
are fine).

Layout (why): as in the flow table, a row is one block of ``ROW_COLUMNS``
int64 (two cache lines, the caller aligns the array to 64 bytes), and the slot
table holds ``(hash tag << 32) | (row + 1)`` so most probes are settled without
reading a row. Linear probing, a power-of-two slot table at least twice the row
capacity, no deletion. When every row is in use and a packet needs a new one,
the kernel stops and returns that packet's index: the caller copies out the
used rows, empties the slot table, resets ``S_ROWS`` and calls again from that
packet. Memory is bounded by the capacity; the same (conversation, bin) may
then appear in several drained chunks, which the caller merges: it sorts the
drained rows by key and ``merge_in_order`` gathers them in that order into
columns, folding neighbours with the same key into one.
"""

import numpy as np
from numba import njit

from .._jit import HOT_LOOP, KERNEL
from .decode import packet_at
from .flowtable import canonical_key, find_row, flow_hash, take_slot

# Row columns (int64 each).
C_A_HI = 0
C_A_LO = 1
C_B_HI = 2
C_B_LO = 3
C_META = 4  # a_port << 48 | b_port << 32 | proto << 16 | vlan (flowtable.meta_key)
C_BIN = 5  # floor(ts_ns / bin_ns)
C_AB_PACKETS = 6
C_AB_BYTES = 7
C_BA_PACKETS = 8
C_BA_BYTES = 9
C_FIRST = 10  # ns
C_LAST = 11  # ns
USED_COLUMNS = 12
ROW_COLUMNS = 16  # padded: 128 bytes per row, two cache lines
ROW_ALIGN = 64

# State scalars (an int64 array kept by the caller between calls).
S_ROWS = 0  # rows in use
S_PACKETS = 1  # IP packets counted
S_FIELDS = 2

# Mixes the bin into the hash's meta input, so a conversation's consecutive
# bins land far apart in the slot table (an odd constant: the golden ratio).
BIN_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@njit(**HOT_LOOP)
def count_activity(batch, start, n, bin_ns, rows, slots, state):
    """Count packets ``start..n`` of ``batch`` (``records.Batch`` arrays) into
    the activity table.

    ``rows``: (capacity, ROW_COLUMNS) int64; ``slots``: int64, a power of two
    at least twice the capacity, zero where empty; ``state``: S_FIELDS int64;
    ``bin_ns`` > 0 (else nothing is counted). Returns the index of the first
    packet not counted: ``n`` when all were, less when the rows are all in use
    (drain, then call again from there).
    """
    if bin_ns <= 0:  # the caller validates; a kernel never raises
        return start
    capacity = rows.shape[0]
    for i in range(start, n):
        if batch.ip_version[i] == 0:
            continue
        t = batch.ts_ns[i]
        # numba's integer // floors like Python's, also for negative times.
        b = t // bin_ns
        p = packet_at(batch, i)
        a_hi, a_lo, b_hi, b_lo, meta, d = canonical_key(
            p.src_hi, p.src_lo, p.dst_hi, p.dst_lo, p.sport, p.dport, p.proto, p.vlan
        )
        h = flow_hash(a_hi, a_lo, b_hi, b_lo, np.uint64(meta) ^ (np.uint64(b) * BIN_MULTIPLIER))
        tag = np.int64(h >> np.uint64(32))
        key = (np.int64(a_hi), np.int64(a_lo), np.int64(b_hi), np.int64(b_lo), meta, b)
        row, j = find_row(rows, slots, tag, key)
        if row < 0:
            row = state[S_ROWS]
            if row >= capacity:
                return i
            state[S_ROWS] = row + 1
            take_slot(rows, slots, j, tag, row, key)
            rows[row, C_AB_PACKETS] = 0
            rows[row, C_AB_BYTES] = 0
            rows[row, C_BA_PACKETS] = 0
            rows[row, C_BA_BYTES] = 0
            rows[row, C_FIRST] = t
            rows[row, C_LAST] = t
        elif t < rows[row, C_FIRST]:
            rows[row, C_FIRST] = t
        elif t > rows[row, C_LAST]:
            rows[row, C_LAST] = t
        base = C_AB_PACKETS + 2 * d
        rows[row, base] += 1
        rows[row, base + 1] += np.int64(batch.wire_len[i])
        state[S_PACKETS] += 1
    return n


@njit(**KERNEL)
def merge_in_order(rows, order, out):
    """Write the entries ``rows[order[k]]`` one after another into the columns
    ``out`` (USED_COLUMNS, len(order)), merging consecutive entries of the
    same (conversation, bin): counters summed, earliest first, latest last.

    ``rows``: (n, ≥ USED_COLUMNS) int64, as drained from the table; ``order``
    sorts them by key, so equal keys are neighbours. Returns the number of
    merged entries written, or -1 (nothing written) when the shapes do not fit.
    """
    n = rows.shape[0]
    if rows.shape[1] < USED_COLUMNS or out.shape[0] < USED_COLUMNS:
        return -1
    if out.shape[1] < order.shape[0]:
        return -1
    for k in range(order.shape[0]):
        if order[k] < 0 or order[k] >= n:
            return -1
    m = -1
    for k in range(order.shape[0]):
        i = order[k]
        if (
            m >= 0
            and rows[i, C_A_LO] == out[C_A_LO, m]
            and rows[i, C_B_LO] == out[C_B_LO, m]
            and rows[i, C_BIN] == out[C_BIN, m]
            and rows[i, C_META] == out[C_META, m]
            and rows[i, C_A_HI] == out[C_A_HI, m]
            and rows[i, C_B_HI] == out[C_B_HI, m]
        ):
            out[C_AB_PACKETS, m] += rows[i, C_AB_PACKETS]
            out[C_AB_BYTES, m] += rows[i, C_AB_BYTES]
            out[C_BA_PACKETS, m] += rows[i, C_BA_PACKETS]
            out[C_BA_BYTES, m] += rows[i, C_BA_BYTES]
            if rows[i, C_FIRST] < out[C_FIRST, m]:
                out[C_FIRST, m] = rows[i, C_FIRST]
            if rows[i, C_LAST] > out[C_LAST, m]:
                out[C_LAST, m] = rows[i, C_LAST]
        else:
            m += 1
            for c in range(USED_COLUMNS):
                out[c, m] = rows[i, c]
    return m + 1
