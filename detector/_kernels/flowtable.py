"""The bidirectional flow table: open addressing over a dense per-flow array.

Layout (why): a hash table is bound by cache misses, so each live flow is one
row of ``LIVE_COLUMNS`` int64 (two cache lines: the key and times, then both
directions' counters) rather than twenty separate arrays, and the slot table
holds ``(hash tag << 32) | (row + 1)`` so most probes are settled without
touching the flow row. A closed flow is written out in the wider export row
(``FLOW_COLUMNS``), the one every reader of flows takes. Linear probing, table
at most half full, deletion by backward shift (no tombstones, so probe chains
never rot).

Beside each live row, one line of ``EXTRA_COLUMNS`` in a second array holds
what a packet seldom touches: each direction's first packet time, and for TCP
Zeek's endpoint states, history letters and the sequence numbers of the last
SYN, FIN and RST (docs/flows.md, "TCP state and history"). A TCP packet reads
it only when it can change them: a SYN, FIN or RST, a zero window, or the
first pure ACK or data packet of its direction (bits in the live row say
which were seen).

Expiry follows docs/flows.md: a packet more than ``idle`` after its flow's last
packet, or more than ``active`` after its first, closes the flow and opens a new
one; periodic sweeps export idle flows to free memory; a full table evicts about
the least recently seen eighth (a cut placed from a sample of last-seen
times). Closed flows are copied to an export buffer; when it fills, the kernel
returns and the caller drains it and calls again.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from .._jit import HOT_LOOP, INLINE, KERNEL, LEAF
from .decode import TCP_ZERO_WINDOW, packet_at

# The meta column packs the rest of the key: a_port << 48 | b_port << 32 | proto << 16 | vlan

# Export row columns (int64 each): what the table hands out for each closed
# flow. A = the endpoint with the smaller (address, port). The first eight are
# also the live row's first line.
C_A_HI = 0
C_A_LO = 1
C_B_HI = 2
C_B_LO = 3
C_META = 4  # a_port << 48 | b_port << 32 | proto << 16 | vlan: one compare, one hash input
C_FIRST = 5
C_LAST = 6
C_SLOT = 7  # live rows: INFO << SLOT_BITS | where the row sits in the slot table; -1 free
# Per direction: A→B from column 8, B→A from column 16.
C_DIR = 8
D_PACKETS = 0
D_BYTES = 1
D_FIRST = 2
D_LAST = 3
D_FLAGS = 4
DIR_WIDTH = 8
C_INIT_IS_A = 13  # 1 when A started the flow (live rows: INFO bit 0 in C_SLOT)
C_IP_VERSION = 14  # live rows: INFO from bit 1 in C_SLOT
C_REASON = 15  # why the flow was closed (export rows only)
C_ZERO_WINDOW = 21  # zero windows A advertised (low 32 bits), B (high 32): Zeek's "w" counter
C_PAYLOAD = 24  # transport payload bytes A→B; B→A at C_PAYLOAD + 1
C_TCP = 26  # TCP endpoint states (T_* bits), history length; each side's H_* bits from 24, 32
C_HISTORY = 27  # history letters, LETTER_BITS each (HIST_*): C_HISTORY, C_HISTORY + 1
C_SEQ_SYN = 29  # sequence number of A's last SYN (low 32 bits), B's (high 32)
C_SEQ_FIN = 30  # ... of the last FIN, plus its payload (where Zeek places a FIN)
C_SEQ_RST = 31  # ... of the last RST
FLOW_COLUMNS = 32  # export rows

# Live rows: line 0 as above (C_A_HI..C_SLOT); line 1 both directions, A→B from
# column L_DIR, B→A from L_DIR + L_DIR_WIDTH. Packets, TCP history bits and TCP
# flags share a word (packets << 24 | H_* bits << 12 | flags: one add and one
# or, and 40 bits of packets). Whether A started the flow and the IP version
# ride in C_SLOT's high bits: both are set once, when the flow opens, and a
# packet never reads them.
L_DIR = 8
L_PKFL = 0
L_BYTES = 1
L_PAYLOAD = 2
L_LAST = 3
L_DIR_WIDTH = 4
LIVE_COLUMNS = 16  # 128 bytes per row, two cache lines
ROW_ALIGN = 128  # a row never straddles a third line
PKFL_SHIFT = 24
FLAGS_MASK = 0xFFF  # tcp_flags: the 12 low bits of TCP's offset/flags word
SEEN_SHIFT = 12

# The extra line of each row (``FlowTableArrays.extra``, EXTRA_COLUMNS int64).
X_FIRST = 0  # first packet A→B; B→A at X_FIRST + 1
X_TCP = 2  # as C_TCP, without the H_* bits (those live in each side's PKFL word); the
# zero windows each side advertised from bit W_COUNT_SHIFT (W_COUNT_BITS each)
X_HISTORY = 3  # as C_HISTORY (two words)
X_SEQ_SYN = 5
X_SEQ_FIN = 6
X_SEQ_RST = 7
EXTRA_COLUMNS = 8  # 64 bytes, one line
# The words an export row and the extra line hold alike, in the same order: the
# history (two words), then the last SYN's, FIN's and RST's sequence numbers.
KEPT_WORDS = 5
assert C_SEQ_RST - C_HISTORY == X_SEQ_RST - X_HISTORY == KEPT_WORDS - 1

# Zeek's TCP endpoint states (analyzer/protocol/tcp/TCP_Endpoint.h), 3 bits each.
TCP_INACTIVE = 0
TCP_SYN_SENT = 1
TCP_SYN_ACK_SENT = 2
TCP_PARTIAL = 3
TCP_ESTABLISHED = 4
TCP_CLOSED = 5
TCP_RESET = 6
# The C_TCP / X_TCP word: A's state (bits 0-2) and the state before it (3-5),
# B's from bit 6; the number of history letters from bit 12; bit 18 when the
# first packet was the responder's SYN+ACK (Zeek writes "^": roles flipped);
# bit 19 when letters beyond HISTORY_MAX were dropped.
T_SIDE_BITS = 6
T_COUNT_SHIFT = 12
T_COUNT_MASK = 0x3F
T_FLIPPED = 1 << 18
T_HISTORY_FULL = 1 << 19
# X_TCP only: each side's count of zero windows (A from bit 20, B from 40),
# which stops at W_COUNT_MAX (Zeek would write a 7th "w" at 10,000,000).
W_COUNT_SHIFT = 20
W_COUNT_BITS = 20
W_COUNT_MAX = (1 << W_COUNT_BITS) - 1
LETTER_BITS = 5
LETTERS_PER_WORD = 12
HISTORY_WORDS = 2
HISTORY_MAX = HISTORY_WORDS * LETTERS_PER_WORD

# What a side has shown, for Zeek's "record once" history letters (its
# hist_seen bits: a SYN or SYN+ACK, FIN, RST, FIN+RST, data, pure ACK, SYN with
# FIN or RST) and whether the side left TCP_INACTIVE. Kept in the side's PKFL
# word from bit SEEN_SHIFT, so a packet that changes nothing is told so from the
# line it writes anyway.
H_SYN = 1
H_FIN = 2
H_RST = 4
H_FIN_RST = 8
H_DATA = 16
H_ACK = 32
H_MULTI = 64
H_ACTIVE = 128
H_BITS = 0xFF

# History letters (LETTER_BITS): Zeek's letter (HISTORY_LETTERS) + HIST_FROM_B when B sent it.
HIST_SYN = 0
HIST_SYN_ACK = 1
HIST_ACK = 2
HIST_DATA = 3
HIST_FIN = 4
HIST_RST = 5
HIST_FIN_RST = 6
HIST_MULTI = 7
HIST_ZERO_WINDOW = 8  # "w": a zero window advertised (again at the 10th, 100th, ...)
HIST_FROM_B = 16
HIST_KIND = 15
HISTORY_LETTERS = "SHADFRIQW"
SLOT_BITS = 40
SLOT_MASK = (1 << SLOT_BITS) - 1
INFO_INIT_IS_A = 1  # INFO bit 0; the IP version from bit 1


@njit(**LEAF)
def meta_key(a_port, b_port, proto, vlan):
    return (a_port << 48) | (b_port << 32) | (proto << 16) | vlan


REASON_IDLE = 0
REASON_ACTIVE = 1
REASON_END = 2
REASON_EVICTED = 3
# Set by the flow records (flowrows.split_rows), never by the table: a TCP flow
# closed idle or at the end of input after a reset, or a close by both sides.
REASON_FIN = 4
REASON_RST = 5
REASON_NAMES = ("idle", "active", "end", "evicted", "fin", "rst")

# State scalars (an int64 array kept by the caller between calls).
S_LIVE = 0  # live flows
S_HIGH_WATER = 1  # rows ever used (rows below it are live or on the free list)
S_N_FREE = 2
S_NEXT_SWEEP = 3  # packet time of the next idle sweep (NO_TIME: none yet)
S_EVICTED = 4  # flows closed early because the table was full
S_FRAG_HITS = 5  # non-first fragments attributed to their flow
S_FRAG_MISSES = 6
S_PACKETS = 7  # IP packets counted into flows
S_LATEST = 8  # latest packet time seen, IP or not (NO_TIME: none yet)
S_FIELDS = 9

# The table's arrays, as the counting kernels take them: ``flows`` the live rows,
# ``slots`` the slot table, ``free`` the rows freed for reuse, ``state`` the
# S_* scalars, ``frag_keys``/``frag_ports`` the recent first fragments' ports
# (direct-mapped by hash), ``icmp_counterparts`` from :func:`icmp_counterparts`,
# ``extra`` each row's extra line (X_* columns).
FlowTableArrays = namedtuple(
    "FlowTableArrays",
    ["flows", "slots", "free", "state", "frag_keys", "frag_ports", "icmp_counterparts", "extra"],
)

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10
IPPROTO_TCP = 6
IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58

EMPTY = np.int64(0)
# "No time yet": packet times may be negative (before 1970, or wrapped in a
# damaged file), so neither 0 nor -1 can mean "unset".
NO_TIME = np.iinfo(np.int64).min
LOW32 = np.int64(0xFFFFFFFF)


def icmp_counterparts():
    """Community ID v1's ICMP request/reply pairs: type → counterpart type (-1: none).

    Row 0 is ICMPv4, row 1 ICMPv6.
    """
    table = np.full((2, 256), -1, dtype=np.int64)
    for a, b in ((8, 0), (13, 14), (15, 16), (17, 18), (10, 9)):
        table[0, a] = b
        table[0, b] = a
    for a, b in ((128, 129), (130, 131), (133, 134), (135, 136), (139, 140), (144, 145)):
        table[1, a] = b
        table[1, b] = a
    return table


@njit(**LEAF)
def mix64(x):
    # splitmix64 finaliser: every input bit moves every output bit.
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(**LEAF)
def flow_hash(a_hi, a_lo, b_hi, b_lo, meta):
    # Independent multiplies (they run in parallel), then one finaliser: a
    # third of the cost of chaining a full mix per field.
    h = a_lo * np.uint64(0x9E3779B97F4A7C15)
    h ^= b_lo * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= a_hi * np.uint64(0x165667B19E3779F9)
    h ^= b_hi * np.uint64(0xD6E8FEB86659FD93)
    h ^= meta * np.uint64(0xFF51AFD7ED558CCD)
    return mix64(h)


@njit(**LEAF)
def canonical_key(src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto, vlan):
    """A packet's flow key, the same whichever way the packet goes: A is the
    endpoint with the smaller (address, port). Returns ``(a_hi, a_lo, b_hi,
    b_lo, meta, d)`` with ``d`` 0 when the packet goes A→B, 1 when B→A.

    One definition for the flow table, the per-minute activity table and the
    payload inspector's budget, so all three agree on what a flow is."""
    if src_hi < dst_hi or (
        src_hi == dst_hi and (src_lo < dst_lo or (src_lo == dst_lo and sport <= dport))
    ):
        return src_hi, src_lo, dst_hi, dst_lo, meta_key(sport, dport, proto, vlan), 0
    return dst_hi, dst_lo, src_hi, src_lo, meta_key(dport, sport, proto, vlan), 1


@njit(**LEAF)
def find_row(rows, slots, tag, key):
    """Look ``key`` up in an open-addressing table (linear probing; a slot holds
    ``tag << 32 | row + 1``, 0 when empty): the flow table's, or the activity
    table's.

    A row starts with its key: ``key`` holds the values of its first
    ``len(key)`` columns (A high, A low, B high, B low, meta; the activity
    table's key goes on with the bin). Returns ``(row, slot)``: the row with
    that key and its slot, or -1 and the empty slot where the key would go.
    """
    mask = slots.shape[0] - 1
    j = tag & mask
    while True:
        entry = slots[j]
        if entry == EMPTY:
            return -1, j
        if ((entry >> 32) & LOW32) == tag:
            r = (entry & LOW32) - 1
            same = True
            for c in range(len(key)):
                if rows[r, c] != key[c]:
                    same = False
                    break
            if same:
                return r, j
        j = (j + 1) & mask


@njit(**LEAF)
def empty_slot(slots, tag):
    """The first empty slot on ``tag``'s probe path."""
    mask = slots.shape[0] - 1
    j = tag & mask
    while slots[j] != EMPTY:
        j = (j + 1) & mask
    return j


@njit(**LEAF)
def take_slot(rows, slots, j, tag, row, key):
    """Put ``row`` in slot ``j`` and write its ``key`` (see :func:`find_row`)."""
    slots[j] = (tag << 32) | (row + 1)
    for c in range(len(key)):
        rows[row, c] = key[c]


@njit(**INLINE)
def _export(flows, extra, row, reason, export, n_export):
    """Write live ``row`` out as export row ``n_export``."""
    for c in range(C_SLOT):
        export[n_export, c] = flows[row, c]
    slot = flows[row, C_SLOT]
    info = slot >> SLOT_BITS
    export[n_export, C_SLOT] = slot & SLOT_MASK
    tcp = extra[row, X_TCP]
    zero_windows = (tcp >> W_COUNT_SHIFT) & W_COUNT_MAX
    zero_windows |= ((tcp >> (W_COUNT_SHIFT + W_COUNT_BITS)) & W_COUNT_MAX) << 32
    tcp &= (np.int64(1) << W_COUNT_SHIFT) - 1
    for d in range(2):
        live = L_DIR + d * L_DIR_WIDTH
        out = C_DIR + d * DIR_WIDTH
        pkfl = flows[row, live + L_PKFL]
        export[n_export, out + D_PACKETS] = pkfl >> PKFL_SHIFT
        export[n_export, out + D_BYTES] = flows[row, live + L_BYTES]
        export[n_export, out + D_FIRST] = extra[row, X_FIRST + d]
        export[n_export, out + D_LAST] = flows[row, live + L_LAST]
        export[n_export, out + D_FLAGS] = pkfl & FLAGS_MASK
        for c in range(out + D_FLAGS + 1, out + DIR_WIDTH):
            export[n_export, c] = 0
        export[n_export, C_PAYLOAD + d] = flows[row, live + L_PAYLOAD]
        tcp |= ((pkfl >> SEEN_SHIFT) & H_BITS) << (24 + 8 * d)
    export[n_export, C_INIT_IS_A] = info & INFO_INIT_IS_A
    export[n_export, C_IP_VERSION] = info >> 1
    export[n_export, C_REASON] = reason
    export[n_export, C_TCP] = tcp
    export[n_export, C_ZERO_WINDOW] = zero_windows
    for k in range(KEPT_WORDS):
        export[n_export, C_HISTORY + k] = extra[row, X_HISTORY + k]


@njit(**KERNEL)
def import_rows(rows, flows, extra):
    """Export rows back into live rows ``flows[:len(rows)]`` and their extra
    lines (a table taking over another's open flows); their slots are set by
    rebuild_slots."""
    for r in range(rows.shape[0]):
        for c in range(C_SLOT):
            flows[r, c] = rows[r, c]
        info = (rows[r, C_IP_VERSION] << 1) | (rows[r, C_INIT_IS_A] & INFO_INIT_IS_A)
        flows[r, C_SLOT] = info << SLOT_BITS
        tcp = rows[r, C_TCP]
        for d in range(2):
            live = L_DIR + d * L_DIR_WIDTH
            out = C_DIR + d * DIR_WIDTH
            seen = (tcp >> (24 + 8 * d)) & H_BITS
            flows[r, live + L_PKFL] = (
                (rows[r, out + D_PACKETS] << PKFL_SHIFT)
                | (seen << SEEN_SHIFT)
                | (rows[r, out + D_FLAGS] & FLAGS_MASK)
            )
            flows[r, live + L_BYTES] = rows[r, out + D_BYTES]
            flows[r, live + L_PAYLOAD] = rows[r, C_PAYLOAD + d]
            flows[r, live + L_LAST] = rows[r, out + D_LAST]
            extra[r, X_FIRST + d] = rows[r, out + D_FIRST]
        zero_windows = rows[r, C_ZERO_WINDOW]
        extra[r, X_TCP] = (
            (tcp & ((np.int64(1) << W_COUNT_SHIFT) - 1))
            | (min(zero_windows & LOW32, W_COUNT_MAX) << W_COUNT_SHIFT)
            | (min((zero_windows >> 32) & LOW32, W_COUNT_MAX) << (W_COUNT_SHIFT + W_COUNT_BITS))
        )
        for k in range(KEPT_WORDS):
            extra[r, X_HISTORY + k] = rows[r, C_HISTORY + k]


@njit(**INLINE)
def _remove(table, row):
    """Delete ``row`` from the slot table (backward shift) and free it."""
    flows, slots, free, state = table.flows, table.slots, table.free, table.state
    mask = slots.shape[0] - 1
    i = flows[row, C_SLOT] & SLOT_MASK
    j = i
    while True:
        j = (j + 1) & mask
        entry = slots[j]
        if entry == EMPTY:
            break
        home = ((entry >> 32) & LOW32) & mask
        # Move the entry at j back to the hole at i unless its home lies in (i, j].
        if i <= j:
            stays = i < home <= j
        else:
            stays = home > i or home <= j
        if not stays:
            slots[i] = entry
            moved = (entry & LOW32) - 1
            flows[moved, C_SLOT] = (flows[moved, C_SLOT] & ~SLOT_MASK) | i
            i = j
    slots[i] = EMPTY
    flows[row, C_SLOT] = -1
    free[state[S_N_FREE]] = row
    state[S_N_FREE] += 1
    state[S_LIVE] -= 1


# The sweeps allocate nothing: without the reference-counting runtime, handing
# the table's arrays to the inlined helpers costs nothing per flow.
@njit(**HOT_LOOP)
def sweep_idle(table, now, idle_ns, export, n_export):
    """Export every flow idle for more than ``idle_ns`` at time ``now``.

    Returns the new export count; stops early if the export buffer fills (the
    caller drains it and sweeps again).
    """
    flows = table.flows
    for row in range(table.state[S_HIGH_WATER]):
        if n_export >= export.shape[0]:
            break
        if flows[row, C_SLOT] >= 0 and now - flows[row, C_LAST] > idle_ns:
            _export(flows, table.extra, row, REASON_IDLE, export, n_export)
            n_export += 1
            _remove(table, row)
    return n_export


@njit(**HOT_LOOP)
def flush_all(table, idle_ns, export, n_export):
    """Export every live flow (end of input); returns the new export count.

    A flow already idle at the latest packet time closes as ``idle``, the rest
    as ``end``: the reason must not depend on when a sweep last ran.
    """
    flows = table.flows
    latest = table.state[S_LATEST]
    for row in range(table.state[S_HIGH_WATER]):
        if n_export >= export.shape[0]:
            break
        if flows[row, C_SLOT] >= 0:
            reason = REASON_IDLE if latest - flows[row, C_LAST] > idle_ns else REASON_END
            _export(flows, table.extra, row, reason, export, n_export)
            n_export += 1
            _remove(table, row)
    return n_export


# Last-seen times sampled to place the eviction cut: the eighth-smallest of 4,096
# is within about half a percent of the exact eighth of the table, and taking it
# costs 4,096 reads instead of a copy and a partition of every live row's time.
EVICT_SAMPLE = 4096


@njit(**KERNEL)
def evict_cut(table):
    """The last-seen time at or before which a flow is evicted: among the live
    rows at positions 0, step, 2 step, ... (step = rows ever used //
    EVICT_SAMPLE, at least 1), the ``max(k // 8, 1)``-th smallest, k the live
    rows sampled. NO_TIME when none is live."""
    flows = table.flows
    high = table.state[S_HIGH_WATER]
    step = max(high // EVICT_SAMPLE, 1)
    sample = np.empty(high // step + 1, dtype=np.int64)
    k = 0
    for row in range(0, high, step):
        if flows[row, C_SLOT] >= 0:
            sample[k] = flows[row, C_LAST]
            k += 1
    if k == 0:
        return NO_TIME
    return np.sort(sample[:k])[max(k // 8, 1) - 1]


EVICT_AHEAD = 32  # rows whose victims' slots are touched before any is removed


@njit(**HOT_LOOP)
def evict_oldest(table, cut, most, export, n_export):
    """Close the live flows last seen at or before ``cut`` (:func:`evict_cut`:
    about the least recently seen eighth), in row order, at most ``most`` of
    them and while the export buffer has room; one pass over the rows.

    Returns ``(n_export, touched)``: ``touched`` is only there so that the
    compiler keeps the look-ahead loads (ignore it). Removing a flow starts
    with a cache miss on its slot; loading the slots of the next
    EVICT_AHEAD rows' victims first lets those misses overlap (a quarter less
    time per call, benchmarks/README.md)."""
    flows, slots, state = table.flows, table.slots, table.state
    stop = min(n_export + most, export.shape[0])
    high = state[S_HIGH_WATER]
    touched = 0
    for ahead in range(0, high, EVICT_AHEAD):
        if n_export >= stop:
            break
        end = min(ahead + EVICT_AHEAD, high)
        for row in range(ahead, end):
            slot = flows[row, C_SLOT]
            if slot >= 0 and flows[row, C_LAST] <= cut:
                touched ^= slots[slot & SLOT_MASK]
        for row in range(ahead, end):
            if n_export >= stop:
                break
            if flows[row, C_SLOT] >= 0 and flows[row, C_LAST] <= cut:
                _export(flows, table.extra, row, REASON_EVICTED, export, n_export)
                n_export += 1
                _remove(table, row)
                state[S_EVICTED] += 1
    return n_export, touched


@njit(**LEAF)
def _set_state(tcp, side, new):
    """``tcp`` with ``side``'s endpoint state set to ``new`` (the state it
    leaves kept as its previous one, as TCP_Endpoint::SetState does)."""
    shift = side * T_SIDE_BITS
    old = (tcp >> shift) & 7
    if new == old:
        return tcp
    tcp &= ~(np.int64(0x3F) << shift)
    return tcp | ((new | (old << 3)) << shift)


@njit(**LEAF)
def _add_letter(extra, row, tcp, code):
    """Append history letter ``code``; returns the new X_TCP word."""
    n = (tcp >> T_COUNT_SHIFT) & T_COUNT_MASK
    if n >= HISTORY_MAX:
        return tcp | T_HISTORY_FULL
    word = X_HISTORY + n // LETTERS_PER_WORD
    extra[row, word] |= np.int64(code) << np.int64(LETTER_BITS * (n % LETTERS_PER_WORD))
    return tcp + (np.int64(1) << T_COUNT_SHIFT)


@njit(**LEAF)
def _zero_window(extra, row, side, tcp):
    """One more zero window from ``side``, its "w" written at the 1st, 10th,
    100th ... one: Zeek's ScaledHistoryEntry (Session.cc, base 10), the count
    stopping at W_COUNT_MAX. Returns the new X_TCP word."""
    shift = W_COUNT_SHIFT + side * W_COUNT_BITS
    n = (tcp >> shift) & W_COUNT_MAX
    if n == W_COUNT_MAX:
        return tcp
    n += 1
    tcp += np.int64(1) << shift
    power = np.int64(1)
    while power < n:
        power *= 10
    if power == n:
        tcp = _add_letter(extra, row, tcp, HIST_ZERO_WINDOW | (HIST_FROM_B if side == 1 else 0))
    return tcp


@njit(**LEAF)
def _seq_of(word, side):
    return (word >> (32 * side)) & LOW32


@njit(**LEAF)
def _with_seq(word, side, seq):
    shift = 32 * side
    return (word & ~(LOW32 << shift)) | ((seq & LOW32) << shift)


@njit(**LEAF)
def tcp_packet(flows, extra, row, side, is_orig, flags, payload, seq):
    """Zeek's per-packet TCP bookkeeping for a packet ``side`` (0: A, 1: B)
    sent: the history letters (TCPSessionAdapter.cc's update_history) and
    both endpoints' states (UpdateStateMachine and the Update*State functions
    it calls). Called only when the packet can change either (see
    :func:`count_packet`); docs/flows.md says what is left out.
    """
    peer = 1 - side
    pkfl_col = L_DIR + side * L_DIR_WIDTH + L_PKFL
    seen = (flows[row, pkfl_col] >> SEEN_SHIFT) & H_BITS
    tcp = extra[row, X_TCP]
    state = (tcp >> (side * T_SIDE_BITS)) & 7
    prev = (tcp >> (side * T_SIDE_BITS + 3)) & 7
    from_b = HIST_FROM_B if side == 1 else 0
    syn = (flags & TCP_SYN) != 0
    fin = (flags & TCP_FIN) != 0
    rst = (flags & TCP_RST) != 0
    ack = (flags & TCP_ACK) != 0

    # The history: a letter the first time a kind of packet is seen from this
    # side; SYN, FIN and RST again when their sequence number moved.
    n_bits = np.int64(syn) + np.int64(fin) + np.int64(rst)
    if n_bits > 1:
        kind, code = (H_FIN_RST, HIST_FIN_RST) if fin and rst else (H_MULTI, HIST_MULTI)
        if not seen & kind:
            seen |= kind
            tcp = _add_letter(extra, row, tcp, code | from_b)
    elif n_bits == 1:
        if syn:
            code = (HIST_SYN_ACK if ack else HIST_SYN) | from_b
            last = extra[row, X_SEQ_SYN]
            if not seen & H_SYN:
                seen |= H_SYN
                tcp = _add_letter(extra, row, tcp, code)
            # Zeek numbers a SYN from the sequence number it restarts the side
            # at (relative 0), except after the side closed or was reset.
            elif (state == TCP_CLOSED or (state == TCP_RESET and prev != TCP_INACTIVE)) and (
                seq & LOW32
            ) != _seq_of(last, side):
                tcp = _add_letter(extra, row, tcp, code)
            extra[row, X_SEQ_SYN] = _with_seq(last, side, seq)
        elif fin:
            # A FIN's sequence number is after the data it carries.
            last = extra[row, X_SEQ_FIN]
            end = (seq + payload) & LOW32
            if not seen & H_FIN:
                seen |= H_FIN
                tcp = _add_letter(extra, row, tcp, HIST_FIN | from_b)
            elif end != _seq_of(last, side):
                tcp = _add_letter(extra, row, tcp, HIST_FIN | from_b)
            extra[row, X_SEQ_FIN] = _with_seq(last, side, end)
        else:
            last = extra[row, X_SEQ_RST]
            if not seen & H_RST:
                seen |= H_RST
                tcp = _add_letter(extra, row, tcp, HIST_RST | from_b)
            elif (seq & LOW32) != _seq_of(last, side):
                tcp = _add_letter(extra, row, tcp, HIST_RST | from_b)
            extra[row, X_SEQ_RST] = _with_seq(last, side, seq)
    elif payload > 0:
        if not seen & H_DATA:
            seen |= H_DATA
            tcp = _add_letter(extra, row, tcp, HIST_DATA | from_b)
    elif ack:
        if not seen & H_ACK:
            seen |= H_ACK
            tcp = _add_letter(extra, row, tcp, HIST_ACK | from_b)

    # Zeek's update_window: a zero window, but not with a RST, after this
    # side's RST or after the peer's FIN.
    peer_state = (tcp >> (peer * T_SIDE_BITS)) & 7
    peer_prev = (tcp >> (peer * T_SIDE_BITS + 3)) & 7
    zero_window = (flags & TCP_ZERO_WINDOW) != 0
    if zero_window and not rst and state != TCP_RESET and peer_state != TCP_CLOSED:
        tcp = _zero_window(extra, row, side, tcp)

    # The endpoint state machine.
    if state == TCP_INACTIVE:
        if syn:
            if is_orig:
                tcp = _set_state(tcp, side, TCP_SYN_ACK_SENT if ack else TCP_SYN_SENT)
            else:
                if peer_state == TCP_SYN_SENT:
                    tcp = _set_state(tcp, peer, TCP_ESTABLISHED)
                tcp = _set_state(tcp, side, TCP_ESTABLISHED)
        if fin:
            tcp = _set_state(tcp, side, TCP_CLOSED)
        if rst:
            tcp = _set_state(tcp, side, TCP_RESET)
        if ((tcp >> (side * T_SIDE_BITS)) & 7) == TCP_INACTIVE:
            if not is_orig and payload == 0 and peer_state == TCP_SYN_SENT:
                pass  # an ACK of the SYN before the SYN+ACK forms no partial connection
            elif ack and peer_state == TCP_ESTABLISHED:
                tcp = _set_state(tcp, side, TCP_ESTABLISHED)
            else:
                tcp = _set_state(tcp, side, TCP_PARTIAL)
    elif state == TCP_SYN_SENT or state == TCP_SYN_ACK_SENT:
        if fin:
            tcp = _set_state(tcp, side, TCP_CLOSED)
        if rst:
            tcp = _set_state(tcp, side, TCP_RESET)
    elif state == TCP_ESTABLISHED or state == TCP_PARTIAL:
        if syn and state == TCP_PARTIAL and peer_state == TCP_INACTIVE and not ack:
            tcp = _set_state(tcp, side, TCP_SYN_SENT)
        if fin and not rst:
            tcp = _set_state(tcp, side, TCP_CLOSED)
            if peer_state == TCP_RESET and peer_prev == TCP_CLOSED:
                tcp = _set_state(tcp, peer, TCP_CLOSED)  # FIN then RST: a normal close
        if rst:
            tcp = _set_state(tcp, side, TCP_RESET)
    elif state == TCP_CLOSED:
        if rst and peer_state != TCP_CLOSED:
            tcp = _set_state(tcp, side, TCP_RESET)

    if ((tcp >> (side * T_SIDE_BITS)) & 7) != TCP_INACTIVE:
        seen |= H_ACTIVE
    flows[row, pkfl_col] = (flows[row, pkfl_col] & ~(np.int64(H_BITS) << SEEN_SHIFT)) | (
        seen << SEEN_SHIFT
    )
    extra[row, X_TCP] = tcp


COUNT_OK = 0
COUNT_EXPORT_FULL = 1  # drain the export buffer, then count this packet again
COUNT_TABLE_FULL = 2  # grow or evict, then count this packet again


@njit(**INLINE)
def count_packet(t, packet, wire_len, table, params, export, n_export):
    """Count one IP packet (a decoded :data:`~.decode.Packet` of time ``t``)
    into the flow table ``table`` (:data:`FlowTableArrays`).

    Only hot loops that run without the reference-counting runtime inline this:
    with it, each use of an array of ``table`` would cost a reference count per
    packet. ``params`` = (idle_ns, active_ns, sweep_every_ns). Returns
    ``(n_export, COUNT_*)``; on anything but COUNT_OK the packet was not counted
    and must be offered again (what was done before stopping is idempotent).
    """
    flows, slots, free, state = table.flows, table.slots, table.free, table.state
    idle_ns = params[0]
    active_ns = params[1]
    # Room for a timed-out flow plus a sweep's first export before we start.
    if n_export + 2 > export.shape[0]:
        return n_export, COUNT_EXPORT_FULL
    if t >= state[S_NEXT_SWEEP]:
        if state[S_NEXT_SWEEP] != NO_TIME:
            n_export = sweep_idle(table, t, idle_ns, export, n_export)
            if n_export + 2 > export.shape[0]:
                return n_export, COUNT_EXPORT_FULL
        state[S_NEXT_SWEEP] = t + params[2]

    proto = packet.proto
    sport = packet.sport
    dport = packet.dport
    if packet.frag != 0:
        # First fragments leave their ports for the later ones (same addresses,
        # protocol and identification).
        frag_keys, frag_ports = table.frag_keys, table.frag_ports
        frag_mask = frag_keys.shape[0] - 1
        fkey = flow_hash(
            packet.src_hi,
            packet.src_lo,
            packet.dst_hi,
            packet.dst_lo,
            (np.uint64(packet.frag_id) << np.uint64(8)) | np.uint64(proto),
        )
        fslot = np.int64(fkey & np.uint64(frag_mask))
        if packet.frag & 2:
            frag_keys[fslot] = fkey
            frag_ports[fslot] = (sport << 16) | dport
        elif frag_keys[fslot] == fkey:
            sport = frag_ports[fslot] >> 16
            dport = frag_ports[fslot] & 0xFFFF
            state[S_FRAG_HITS] += 1
        else:
            state[S_FRAG_MISSES] += 1

    if proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
        counterpart = table.icmp_counterparts[0 if proto == IPPROTO_ICMP else 1, sport & 0xFF]
        if counterpart >= 0:
            dport = counterpart

    a_hi, a_lo, b_hi, b_lo, meta, d = canonical_key(
        packet.src_hi, packet.src_lo, packet.dst_hi, packet.dst_lo, sport, dport, proto,
        packet.vlan,
    )  # fmt: skip
    h = flow_hash(a_hi, a_lo, b_hi, b_lo, np.uint64(meta))
    tag = np.int64(h >> np.uint64(32))
    key = (np.int64(a_hi), np.int64(a_lo), np.int64(b_hi), np.int64(b_lo), meta)
    row, j = find_row(flows, slots, tag, key)

    if row >= 0:
        reason = -1
        if t - flows[row, C_LAST] > idle_ns:
            reason = REASON_IDLE
        elif t - flows[row, C_FIRST] > active_ns:
            reason = REASON_ACTIVE
        if reason >= 0:
            _export(flows, table.extra, row, reason, export, n_export)
            n_export += 1
            _remove(table, row)
            row = -1
            # The hole may have pulled entries back: probe again for a free slot.
            j = empty_slot(slots, tag)

    if row < 0:
        if state[S_N_FREE] > 0:
            state[S_N_FREE] -= 1
            row = free[state[S_N_FREE]]
        elif state[S_HIGH_WATER] < flows.shape[0]:
            row = state[S_HIGH_WATER]
            state[S_HIGH_WATER] += 1
        else:
            return n_export, COUNT_TABLE_FULL
        take_slot(flows, slots, j, tag, row, key)
        state[S_LIVE] += 1
        flows[row, C_FIRST] = t
        flows[row, C_LAST] = t
        # The initiator sent the first packet, unless that packet is a SYN+ACK:
        # then the receiver had sent the (uncaptured) SYN.
        synack = proto == IPPROTO_TCP and (packet.tcp_flags & (TCP_SYN | TCP_ACK)) == (
            TCP_SYN | TCP_ACK
        )
        info = (packet.ip_version << 1) | (INFO_INIT_IS_A if (d == 0) != synack else 0)
        flows[row, C_SLOT] = (info << SLOT_BITS) | j
        for c in range(L_DIR, LIVE_COLUMNS):
            flows[row, c] = 0
        extra = table.extra
        for c in range(EXTRA_COLUMNS):
            extra[row, c] = 0
        if synack:
            extra[row, X_TCP] = T_FLIPPED

    # min/max rather than first/last written: merged multi-interface captures
    # are not always in time order. The first time is on the extra line, read
    # only for a packet earlier than the last.
    base = L_DIR + d * L_DIR_WIDTH
    pkfl = flows[row, base + L_PKFL]
    if pkfl == 0:
        table.extra[row, X_FIRST + d] = t
        flows[row, base + L_LAST] = t
    elif t > flows[row, base + L_LAST]:
        flows[row, base + L_LAST] = t
    elif t < flows[row, base + L_LAST] and t < table.extra[row, X_FIRST + d]:
        table.extra[row, X_FIRST + d] = t
    flows[row, base + L_PKFL] = (pkfl + (np.int64(1) << PKFL_SHIFT)) | (
        packet.tcp_flags & FLAGS_MASK
    )
    flows[row, base + L_BYTES] += wire_len
    flows[row, base + L_PAYLOAD] += packet.payload_len
    # TCP: Zeek's history and endpoint states change only on a SYN, FIN or RST,
    # a zero window, or on the first pure ACK or data packet of a side (or one from a side
    # still inactive); later fragments carry no TCP header.
    if proto == IPPROTO_TCP and packet.frag != 1:
        flags = packet.tcp_flags
        if flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_ZERO_WINDOW):
            need = np.int64(-1)
        elif packet.payload_len > 0:
            need = np.int64(H_DATA | H_ACTIVE) << SEEN_SHIFT
        elif flags & TCP_ACK:
            need = np.int64(H_ACK | H_ACTIVE) << SEEN_SHIFT
        else:
            need = np.int64(H_ACTIVE) << SEEN_SHIFT
        if (pkfl & need) != need:
            if need > 0 and (pkfl >> SEEN_SHIFT) & H_ACTIVE:
                # A side already active shows its first pure ACK or data: one
                # letter, no state to change.
                kind = need >> SEEN_SHIFT & ~H_ACTIVE
                code = (HIST_DATA if kind == H_DATA else HIST_ACK) | (HIST_FROM_B if d == 1 else 0)
                extra = table.extra
                extra[row, X_TCP] = _add_letter(extra, row, extra[row, X_TCP], code)
                flows[row, base + L_PKFL] |= np.int64(kind) << SEEN_SHIFT
            else:
                init_is_a = ((flows[row, C_SLOT] >> SLOT_BITS) & INFO_INIT_IS_A) != 0
                is_orig = (d == 0) == init_is_a
                tcp_packet(flows, table.extra, row, d, is_orig, flags, packet.payload_len,
                           packet.tcp_seq)  # fmt: skip
    if t > flows[row, C_LAST]:
        flows[row, C_LAST] = t
    elif t < flows[row, C_FIRST]:
        flows[row, C_FIRST] = t
    state[S_PACKETS] += 1
    return n_export, COUNT_OK


@njit(**HOT_LOOP)
def aggregate(batch, start, stop, table, params, export, n_export):
    """Count packets ``start..stop`` of ``batch`` (``records.Batch`` arrays)
    into the flow table ``table`` (:data:`FlowTableArrays`).

    Returns ``(next_packet, n_export, why)`` with ``why`` a COUNT_* code: the
    caller drains, grows or evicts, then calls again from ``next_packet``.
    """
    state = table.state
    for i in range(start, stop):
        # Every packet moves the clock, IP or not (the end-of-input reason uses it).
        t = batch.ts_ns[i]
        if t > state[S_LATEST]:
            state[S_LATEST] = t
        if batch.ip_version[i] == 0:
            continue
        packet = packet_at(batch, i)
        wire_len = np.int64(batch.wire_len[i])
        n_export, why = count_packet(t, packet, wire_len, table, params, export, n_export)
        if why != COUNT_OK:
            return i, n_export, why
    return stop, n_export, COUNT_OK


@njit(**KERNEL)
def rebuild_slots(flows, high_water, slots):
    """Insert every live row of ``flows`` into an empty slot table (after growth)."""
    for row in range(high_water):
        if flows[row, C_SLOT] < 0:
            continue
        h = flow_hash(
            np.uint64(flows[row, C_A_HI]),
            np.uint64(flows[row, C_A_LO]),
            np.uint64(flows[row, C_B_HI]),
            np.uint64(flows[row, C_B_LO]),
            np.uint64(flows[row, C_META]),
        )
        tag = np.int64(h >> np.uint64(32))
        j = empty_slot(slots, tag)
        slots[j] = (tag << 32) | (row + 1)
        flows[row, C_SLOT] = (flows[row, C_SLOT] & ~SLOT_MASK) | j
