"""Flow-table export rows → the flow record's numeric columns, in one pass.

The rows are row-major (24 int64 per flow, 192 bytes). Taking each column
with numpy reads the whole array once per column (every row's cache line for
eight useful bytes), some thirty times for one set of records. One loop over
the rows writes every column at once: for a million flows, the columns for
the Parquet writer took 0.74 s instead of 1.06 s.
``detector.flows.records.flow_columns`` documents the columns; tests compare
this with the numpy version it replaced.
"""

import numpy as np
from numba import njit

from .._jit import KERNEL
from .flowtable import (
    C_A_HI,
    C_A_LO,
    C_B_HI,
    C_B_LO,
    C_DIR,
    C_FIRST,
    C_INIT_IS_A,
    C_IP_VERSION,
    C_LAST,
    C_META,
    C_REASON,
    D_BYTES,
    D_FIRST,
    D_FLAGS,
    D_LAST,
    D_PACKETS,
    DIR_WIDTH,
)

NAT = np.iinfo(np.int64).min  # numpy's "not a time": a direction without packets

# Columns of the int64 output (``numeric``), in this order.
N_FIRST = 0
N_LAST = 1
N_FWD_PACKETS = 2
N_FWD_BYTES = 3
N_REV_PACKETS = 4
N_REV_BYTES = 5
N_BI_PACKETS = 6
N_BI_BYTES = 7
N_FWD_FIRST = 8
N_FWD_LAST = 9
N_REV_FIRST = 10
N_REV_LAST = 11
N_REASON = 12
N_COLUMNS = 13


@njit(**KERNEL)
def split_rows(rows, addresses, ports, small, vlan_id, numeric, duration_ms):
    """Fill, for each flow row ``i`` (src = the side that started the flow):

    * ``addresses[k, i]``: src hi, src lo, dst hi, dst lo (uint64);
    * ``ports[k, i]``: src port, dst port, src→dst TCP flags, dst→src flags (uint16);
    * ``small[k, i]``: protocol, IP version (uint8);
    * ``vlan_id[i]``: the VLAN id, -1 for none (int32);
    * ``numeric[k, i]``: the ``N_*`` columns (int64; per-direction times NAT
      when that direction sent nothing);
    * ``duration_ms[i]``: last minus first packet time in milliseconds.

    Column-major outputs: each ``[k]`` is a contiguous column.
    """
    for i in range(rows.shape[0]):
        init_a = rows[i, C_INIT_IS_A] == 1
        if init_a:
            src_hi, src_lo, dst_hi, dst_lo = C_A_HI, C_A_LO, C_B_HI, C_B_LO
            fwd = C_DIR
            rev = C_DIR + DIR_WIDTH
        else:
            src_hi, src_lo, dst_hi, dst_lo = C_B_HI, C_B_LO, C_A_HI, C_A_LO
            fwd = C_DIR + DIR_WIDTH
            rev = C_DIR
        addresses[0, i] = np.uint64(rows[i, src_hi])
        addresses[1, i] = np.uint64(rows[i, src_lo])
        addresses[2, i] = np.uint64(rows[i, dst_hi])
        addresses[3, i] = np.uint64(rows[i, dst_lo])
        meta = rows[i, C_META]
        a_port = (meta >> 48) & 0xFFFF
        b_port = (meta >> 32) & 0xFFFF
        ports[0, i] = a_port if init_a else b_port
        ports[1, i] = b_port if init_a else a_port
        ports[2, i] = rows[i, fwd + D_FLAGS] & 0xFFFF
        ports[3, i] = rows[i, rev + D_FLAGS] & 0xFFFF
        small[0, i] = (meta >> 16) & 0xFF
        small[1, i] = rows[i, C_IP_VERSION] & 0xFF
        vlan = meta & 0xFFFF
        vlan_id[i] = -1 if vlan == 0xFFFF else vlan
        first = rows[i, C_FIRST]
        last = rows[i, C_LAST]
        numeric[N_FIRST, i] = first
        numeric[N_LAST, i] = last
        fwd_packets = rows[i, fwd + D_PACKETS]
        rev_packets = rows[i, rev + D_PACKETS]
        fwd_bytes = rows[i, fwd + D_BYTES]
        rev_bytes = rows[i, rev + D_BYTES]
        numeric[N_FWD_PACKETS, i] = fwd_packets
        numeric[N_FWD_BYTES, i] = fwd_bytes
        numeric[N_REV_PACKETS, i] = rev_packets
        numeric[N_REV_BYTES, i] = rev_bytes
        numeric[N_BI_PACKETS, i] = fwd_packets + rev_packets
        numeric[N_BI_BYTES, i] = fwd_bytes + rev_bytes
        numeric[N_FWD_FIRST, i] = rows[i, fwd + D_FIRST] if fwd_packets > 0 else NAT
        numeric[N_FWD_LAST, i] = rows[i, fwd + D_LAST] if fwd_packets > 0 else NAT
        numeric[N_REV_FIRST, i] = rows[i, rev + D_FIRST] if rev_packets > 0 else NAT
        numeric[N_REV_LAST, i] = rows[i, rev + D_LAST] if rev_packets > 0 else NAT
        numeric[N_REASON, i] = rows[i, C_REASON]
        # As numpy computes it: the int64 difference as float64, over 1e6.
        duration_ms[i] = np.float64(last - first) / 1e6
