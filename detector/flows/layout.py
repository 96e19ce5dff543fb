"""The raw flow row: how the flow table hands out a closed flow.

One int64 row of ``FLOW_COLUMNS`` per flow (``FlowTable.exported_rows``). Most
code reads flows as columns (``records.py``); what works on the rows themselves
(merging the flows of a distributed scan's parts) takes their layout from
here, not from the kernels.
"""

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
