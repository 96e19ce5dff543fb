"""The raw flow row: how the flow table hands out a closed flow.

One int64 row of ``FLOW_COLUMNS`` per flow (``FlowTable.exported_rows``). Most
code reads flows as columns (``records.py``); what works on the rows themselves
(merging the flows of a distributed scan's parts) takes their layout from
here, not from the kernels.
"""

import numpy as np

from .._kernels import flowtable as _table

FLOW_COLUMNS = _table.FLOW_COLUMNS

# The key: A is the end with the smaller (address, port), B the other; the
# addresses as uint64 halves (view the rows as uint64), then ``C_META``:
# a_port << 48 | b_port << 32 | proto << 16 | vlan (0xFFFF untagged).
C_A_HI, C_A_LO, C_B_HI, C_B_LO = _table.C_A_HI, _table.C_A_LO, _table.C_B_HI, _table.C_B_LO
C_META = _table.C_META

# The first and last packet (ns); 1 when A started the flow; 4 or 6.
C_FIRST, C_LAST = _table.C_FIRST, _table.C_LAST
C_INIT_IS_A, C_IP_VERSION = _table.C_INIT_IS_A, _table.C_IP_VERSION

# Each direction's counters: A→B from ``C_DIR``, B→A from ``C_DIR + DIR_WIDTH``;
# packets, bytes on the wire, first and last packet, OR of the TCP flags.
C_DIR, DIR_WIDTH = _table.C_DIR, _table.DIR_WIDTH
D_PACKETS, D_BYTES, D_FLAGS = _table.D_PACKETS, _table.D_BYTES, _table.D_FLAGS
D_FIRST, D_LAST = _table.D_FIRST, _table.D_LAST

# Why the flow closed: ``REASON_NAMES[row[C_REASON]]``.
C_REASON, REASON_NAMES = _table.C_REASON, _table.REASON_NAMES
REASON_IDLE, REASON_ACTIVE = _table.REASON_IDLE, _table.REASON_ACTIVE
REASON_END, REASON_EVICTED = _table.REASON_END, _table.REASON_EVICTED

# Payload bytes (A→B, then B→A), the TCP state word and history words.
C_PAYLOAD, C_TCP, C_HISTORY = _table.C_PAYLOAD, _table.C_TCP, _table.C_HISTORY
_ONCE_CODES = (_table.HIST_ACK, _table.HIST_DATA, _table.HIST_FIN_RST, _table.HIST_MULTI)


def continue_tcp(earlier: np.ndarray, later: np.ndarray, merged: np.ndarray) -> None:
    """Payload, TCP states and history of ``merged`` rows, ``earlier`` flows
    continued by ``later`` ones counted apart (row by row): payloads add up;
    the later letters follow the earlier ones, but for a letter a side writes
    once (a, d, i, q) that it already wrote; each side's state is the later
    one where the later part saw it leave inactive or partial, else the
    earlier one. (The later part saw the connection from its middle: what
    Zeek would have done differs where that matters, e.g. a SYN there.)"""
    for d in (0, 1):
        merged[:, C_PAYLOAD + d] = earlier[:, C_PAYLOAD + d] + later[:, C_PAYLOAD + d]
    tcp_rows = np.flatnonzero((later[:, C_TCP] >> _table.T_COUNT_SHIFT) & _table.T_COUNT_MASK)
    for i in tcp_rows.tolist():
        tcp_e, tcp_l = int(earlier[i, C_TCP]), int(later[i, C_TCP])
        codes = _codes(earlier[i], tcp_e)
        written = set(codes)
        for code in _codes(later[i], tcp_l):
            if (code & _table.HIST_KIND) in _ONCE_CODES and code in written:
                continue
            written.add(code)
            codes.append(code)
        tcp = tcp_e & ~(_table.T_COUNT_MASK << _table.T_COUNT_SHIFT)
        for side in (0, 1):
            shift = side * _table.T_SIDE_BITS
            state = (tcp_l >> shift) & 7
            if state not in (_table.TCP_INACTIVE, _table.TCP_PARTIAL):
                tcp = (tcp & ~(0x3F << shift)) | (tcp_l & (0x3F << shift))
            tcp |= tcp_l & (0xFF << (24 + 8 * side))  # the letters each side showed
        codes = codes[: _table.HISTORY_MAX]
        words = [0] * _table.HISTORY_WORDS
        for k, code in enumerate(codes):
            words[k // _PER_WORD] |= code << (_table.LETTER_BITS * (k % _PER_WORD))
        merged[i, C_TCP] = tcp | (len(codes) << _table.T_COUNT_SHIFT)
        merged[i, C_HISTORY : C_HISTORY + _table.HISTORY_WORDS] = np.array(
            words, dtype=np.uint64
        ).view(np.int64)


_PER_WORD = _table.LETTERS_PER_WORD


def _codes(row: np.ndarray, tcp: int) -> list[int]:
    count = min((tcp >> _table.T_COUNT_SHIFT) & _table.T_COUNT_MASK, _table.HISTORY_MAX)
    words = row[C_HISTORY : C_HISTORY + _table.HISTORY_WORDS].view(np.uint64)
    mask = 2 * _table.HIST_FROM_B - 1
    return [
        int(words[k // _PER_WORD] >> np.uint64(_table.LETTER_BITS * (k % _PER_WORD))) & mask
        for k in range(count)
    ]
