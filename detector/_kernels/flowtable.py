"""The bidirectional flow table: open addressing over a dense per-flow array.

Layout (why): a hash table is bound by cache misses, so each flow is one row of
``FLOW_COLUMNS`` int64 (3 cache lines) rather than twenty separate arrays, and
the slot table holds ``(hash tag << 32) | (row + 1)`` so most probes are settled
without touching the flow row. Linear probing, table at most half full,
deletion by backward shift (no tombstones, so probe chains never rot).

Expiry follows docs/flows.md: a packet more than ``idle`` after its flow's last
packet, or more than ``active`` after its first, closes the flow and opens a new
one; periodic sweeps export idle flows to free memory; a full table evicts the
least recently seen eighth. Closed flows are copied to an export buffer; when it
fills, the kernel returns and the caller drains it and calls again.
"""

import numpy as np
from numba import njit

from .._jit import INLINE, KERNEL

# Flow row columns (int64 each). A = the endpoint with the smaller (address, port).
C_A_HI = 0
C_A_LO = 1
C_B_HI = 2
C_B_LO = 3
C_A_PORT = 4
C_B_PORT = 5
C_PROTO = 6
C_VLAN = 7
C_IP_VERSION = 8
C_INIT_IS_A = 9  # 1 when A started the flow
C_FIRST = 10
C_LAST = 11
C_SLOT = 12  # where the row sits in the slot table (kept up to date by shifts)
C_REASON = 13  # why the flow was closed (export rows only)
# Per direction, A→B from column 14, B→A from column 19.
C_DIR = 14
D_PACKETS = 0
D_BYTES = 1
D_FIRST = 2
D_LAST = 3
D_FLAGS = 4
DIR_WIDTH = 5
FLOW_COLUMNS = C_DIR + 2 * DIR_WIDTH  # 24 → 192 bytes per row

REASON_IDLE = 0
REASON_ACTIVE = 1
REASON_END = 2
REASON_EVICTED = 3
REASON_NAMES = ("idle", "active", "end", "evicted")

# State scalars (an int64 array kept by the caller between calls).
S_LIVE = 0  # live flows
S_HIGH_WATER = 1  # rows ever used (rows below it are live or on the free list)
S_N_FREE = 2
S_NEXT_SWEEP = 3  # packet time of the next idle sweep
S_EVICTED = 4  # flows closed early because the table was full
S_FRAG_HITS = 5  # non-first fragments attributed to their flow
S_FRAG_MISSES = 6
S_PACKETS = 7  # IP packets counted into flows
S_FIELDS = 8

TCP_SYN = 0x02
TCP_ACK = 0x10
IPPROTO_TCP = 6
IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58

EMPTY = np.int64(0)
LOW32 = np.int64(0xFFFFFFFF)


def icmp_counterparts():
    """Community ID v1's ICMP request/reply pairs: type → counterpart type (-1: none).

    Row 0 is ICMPv4, row 1 ICMPv6.
    """
    table = np.full((2, 256), -1, dtype=np.int64)
    for a, b in ((8, 0), (13, 14), (15, 16), (17, 18), (10, 9)):
        table[0, a] = b
        table[0, b] = a
    for a, b in ((128, 129), (133, 134), (135, 136), (130, 131), (144, 145), (146, 147)):
        table[1, a] = b
        table[1, b] = a
    return table


@njit(**INLINE)
def mix64(x):
    # splitmix64 finaliser: cheap, and every input bit moves every output bit.
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(**INLINE)
def flow_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, proto, vlan):
    h = mix64(a_lo ^ np.uint64(0x9E3779B97F4A7C15))
    h = mix64(h ^ a_hi)
    h = mix64(h ^ b_lo)
    h = mix64(h ^ b_hi)
    tail = (np.uint64(a_port) << np.uint64(48)) | (np.uint64(b_port) << np.uint64(32))
    tail |= (np.uint64(proto) << np.uint64(16)) | np.uint64(vlan)
    return mix64(h ^ tail)


@njit(**INLINE)
def _export(flows, row, reason, export, n_export):
    for c in range(FLOW_COLUMNS):
        export[n_export, c] = flows[row, c]
    export[n_export, C_REASON] = reason


@njit(**INLINE)
def _remove(flows, slots, mask, row, free, state):
    """Delete ``row`` from the slot table (backward shift) and free it."""
    i = flows[row, C_SLOT]
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
            flows[(entry & LOW32) - 1, C_SLOT] = i
            i = j
    slots[i] = EMPTY
    free[state[S_N_FREE]] = row
    state[S_N_FREE] += 1
    state[S_LIVE] -= 1


@njit(**KERNEL)
def sweep_idle(flows, slots, free, state, now, idle_ns, export, n_export):
    """Export every flow idle for more than ``idle_ns`` at time ``now``.

    Returns the new export count; stops early if the export buffer fills (the
    caller drains it and sweeps again).
    """
    mask = slots.shape[0] - 1
    for row in range(state[S_HIGH_WATER]):
        if n_export >= export.shape[0]:
            break
        if flows[row, C_SLOT] < 0:
            continue
        if now - flows[row, C_LAST] > idle_ns:
            _export(flows, row, REASON_IDLE, export, n_export)
            n_export += 1
            _remove(flows, slots, mask, row, free, state)
            flows[row, C_SLOT] = -1
    return n_export


@njit(**KERNEL)
def flush_all(flows, slots, free, state, reason, export, n_export):
    """Export every live flow with ``reason``; returns the new export count."""
    mask = slots.shape[0] - 1
    for row in range(state[S_HIGH_WATER]):
        if n_export >= export.shape[0]:
            break
        if flows[row, C_SLOT] < 0:
            continue
        _export(flows, row, reason, export, n_export)
        n_export += 1
        _remove(flows, slots, mask, row, free, state)
        flows[row, C_SLOT] = -1
    return n_export


@njit(**KERNEL)
def evict_oldest(flows, slots, free, state, export, n_export):
    """Close the least recently seen eighth of the live flows (table full)."""
    mask = slots.shape[0] - 1
    high = state[S_HIGH_WATER]
    lasts = np.empty(state[S_LIVE], dtype=np.int64)
    k = 0
    for row in range(high):
        if flows[row, C_SLOT] >= 0:
            lasts[k] = flows[row, C_LAST]
            k += 1
    if k == 0:
        return n_export
    cut = np.partition(lasts[:k], max(k // 8 - 1, 0))[max(k // 8 - 1, 0)]
    room = export.shape[0] - n_export
    for row in range(high):
        if room == 0:
            break
        if flows[row, C_SLOT] >= 0 and flows[row, C_LAST] <= cut:
            _export(flows, row, REASON_EVICTED, export, n_export)
            n_export += 1
            room -= 1
            _remove(flows, slots, mask, row, free, state)
            flows[row, C_SLOT] = -1
            state[S_EVICTED] += 1
    return n_export


@njit(**KERNEL)
def aggregate(
    ts_ns, src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto, ip_version, wire_len,
    tcp_flags, vlan, frag, frag_id, start, stop,
    flows, slots, free, state, frag_keys, frag_ports, icmp_map,
    idle_ns, active_ns, sweep_every_ns, export, n_export,
):
    """Count packets ``start..stop`` of a batch into the flow table.

    Returns ``(next_packet, n_export, why)``: ``why`` is 0 when all packets were
    counted, 1 when the export buffer is full, 2 when the table is full (the
    caller evicts or grows, then calls again from ``next_packet``).
    """
    mask = slots.shape[0] - 1
    frag_mask = frag_keys.shape[0] - 1
    capacity = flows.shape[0]
    export_cap = export.shape[0]
    for i in range(start, stop):
        # Room for up to two exports (a timed-out flow, a sweep) before we start.
        if n_export + 2 > export_cap:
            return i, n_export, 1
        if ip_version[i] == 0:
            continue
        t = ts_ns[i]
        if t >= state[S_NEXT_SWEEP]:
            if state[S_NEXT_SWEEP] != 0:
                n_export = sweep_idle(flows, slots, free, state, t, idle_ns, export, n_export)
                if n_export >= export_cap:
                    return i, n_export, 1
            state[S_NEXT_SWEEP] = t + sweep_every_ns

        s_hi = src_hi[i]
        s_lo = src_lo[i]
        d_hi = dst_hi[i]
        d_lo = dst_lo[i]
        sp = np.int64(sport[i])
        dp = np.int64(dport[i])
        pr = np.int64(proto[i])
        fl = np.int64(tcp_flags[i])
        fr = frag[i]

        if fr != 0:
            # First fragments leave their ports for the later ones (same
            # addresses, protocol and identification).
            fk = mix64(mix64(s_lo ^ mix64(s_hi)) ^ mix64(d_lo ^ mix64(d_hi)))
            fk = mix64(fk ^ (np.uint64(frag_id[i]) << np.uint64(8)) ^ np.uint64(pr))
            fslot = np.int64(fk & np.uint64(frag_mask))
            if fr & 2:
                frag_keys[fslot] = fk
                frag_ports[fslot] = (sp << 16) | dp
            elif frag_keys[fslot] == fk:
                sp = frag_ports[fslot] >> 16
                dp = frag_ports[fslot] & 0xFFFF
                state[S_FRAG_HITS] += 1
            else:
                state[S_FRAG_MISSES] += 1

        if pr == IPPROTO_ICMP or pr == IPPROTO_ICMPV6:
            counterpart = icmp_map[0 if pr == IPPROTO_ICMP else 1, sp & 0xFF]
            if counterpart >= 0:
                dp = counterpart

        # Canonical order: A is the smaller (address, port).
        if s_hi < d_hi or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sp <= dp))):
            a_hi, a_lo, b_hi, b_lo, a_port, b_port, d = s_hi, s_lo, d_hi, d_lo, sp, dp, 0
        else:
            a_hi, a_lo, b_hi, b_lo, a_port, b_port, d = d_hi, d_lo, s_hi, s_lo, dp, sp, 1
        vl = np.int64(vlan[i])
        h = flow_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, pr, vl)
        tag = np.int64(h >> np.uint64(32))
        j = tag & mask
        ia_hi = np.int64(a_hi)
        ia_lo = np.int64(a_lo)
        ib_hi = np.int64(b_hi)
        ib_lo = np.int64(b_lo)
        row = -1
        while True:
            entry = slots[j]
            if entry == EMPTY:
                break
            if ((entry >> 32) & LOW32) == tag:
                r = (entry & LOW32) - 1
                if (
                    flows[r, C_A_LO] == ia_lo
                    and flows[r, C_B_LO] == ib_lo
                    and flows[r, C_A_HI] == ia_hi
                    and flows[r, C_B_HI] == ib_hi
                    and flows[r, C_A_PORT] == a_port
                    and flows[r, C_B_PORT] == b_port
                    and flows[r, C_PROTO] == pr
                    and flows[r, C_VLAN] == vl
                ):
                    row = r
                    break
            j = (j + 1) & mask

        if row >= 0:
            reason = -1
            if t - flows[row, C_LAST] > idle_ns:
                reason = REASON_IDLE
            elif t - flows[row, C_FIRST] > active_ns:
                reason = REASON_ACTIVE
            if reason >= 0:
                _export(flows, row, reason, export, n_export)
                n_export += 1
                _remove(flows, slots, mask, row, free, state)
                flows[row, C_SLOT] = -1
                row = -1
                # The hole may have moved entries: probe again for a free slot.
                j = tag & mask
                while slots[j] != EMPTY:
                    j = (j + 1) & mask

        if row < 0:
            if state[S_N_FREE] > 0:
                state[S_N_FREE] -= 1
                row = free[state[S_N_FREE]]
            elif state[S_HIGH_WATER] < capacity:
                row = state[S_HIGH_WATER]
                state[S_HIGH_WATER] += 1
            else:
                return i, n_export, 2
            slots[j] = (tag << 32) | (row + 1)
            state[S_LIVE] += 1
            flows[row, C_A_HI] = ia_hi
            flows[row, C_A_LO] = ia_lo
            flows[row, C_B_HI] = ib_hi
            flows[row, C_B_LO] = ib_lo
            flows[row, C_A_PORT] = a_port
            flows[row, C_B_PORT] = b_port
            flows[row, C_PROTO] = pr
            flows[row, C_VLAN] = vl
            flows[row, C_IP_VERSION] = ip_version[i]
            # The initiator sent the first packet, unless that packet is a
            # SYN+ACK: then the receiver had sent the (uncaptured) SYN.
            synack = pr == IPPROTO_TCP and (fl & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)
            sender_is_a = d == 0
            flows[row, C_INIT_IS_A] = 1 if sender_is_a != synack else 0
            flows[row, C_FIRST] = t
            flows[row, C_LAST] = t
            flows[row, C_SLOT] = j
            flows[row, C_REASON] = -1
            for c in range(C_DIR, FLOW_COLUMNS):
                flows[row, c] = 0
            flows[row, C_DIR + D_FIRST] = -1
            flows[row, C_DIR + DIR_WIDTH + D_FIRST] = -1

        # min/max rather than first/last written: merged multi-interface captures
        # are not always in time order.
        base = C_DIR + d * DIR_WIDTH
        flows[row, base + D_PACKETS] += 1
        flows[row, base + D_BYTES] += wire_len[i]
        if flows[row, base + D_FIRST] < 0 or t < flows[row, base + D_FIRST]:
            flows[row, base + D_FIRST] = t
        if t > flows[row, base + D_LAST]:
            flows[row, base + D_LAST] = t
        flows[row, base + D_FLAGS] |= fl
        if t > flows[row, C_LAST]:
            flows[row, C_LAST] = t
        elif t < flows[row, C_FIRST]:
            flows[row, C_FIRST] = t
        state[S_PACKETS] += 1
    return stop, n_export, 0


@njit(**KERNEL)
def rebuild_slots(flows, high_water, slots):
    """Insert every live row of ``flows`` into an empty slot table (after growth)."""
    mask = slots.shape[0] - 1
    for row in range(high_water):
        if flows[row, C_SLOT] < 0:
            continue
        h = flow_hash(
            np.uint64(flows[row, C_A_HI]), np.uint64(flows[row, C_A_LO]),
            np.uint64(flows[row, C_B_HI]), np.uint64(flows[row, C_B_LO]),
            flows[row, C_A_PORT], flows[row, C_B_PORT], flows[row, C_PROTO], flows[row, C_VLAN],
        )
        tag = np.int64(h >> np.uint64(32))
        j = tag & mask
        while slots[j] != EMPTY:
            j = (j + 1) & mask
        slots[j] = (tag << 32) | (row + 1)
        flows[row, C_SLOT] = j
