"""FlowTable: feed packet batches in, get flow records out (docs/flows.md)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from .._kernels import flowtable as fk
from ..capture import CaptureProblem, CaptureStats, PacketBatch, read_packets
from .community_id import community_id_v1

NS = 1_000_000_000
DEFAULT_IDLE_TIMEOUT = 120.0  # seconds, as nfstream
DEFAULT_ACTIVE_TIMEOUT = 1800.0
DEFAULT_MAX_FLOWS = 1_000_000
INITIAL_FLOWS = 1 << 16
EXPORT_ROWS = 1 << 16
FRAG_SLOTS = 1 << 14  # recent first fragments remembered for their followers
# One row (192 B), two slots (16 B) and a free-list entry (8 B).
BYTES_PER_FLOW = fk.FLOW_COLUMNS * 8 + 2 * 8 + 8

# IANA protocol keywords, lower case (the names Zeek and ECS use for the common ones).
TRANSPORT_NAMES = {
    0: "hopopt",
    1: "icmp",
    2: "igmp",
    4: "ipv4",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    43: "ipv6-route",
    44: "ipv6-frag",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "ipv6-icmp",
    59: "ipv6-nonxt",
    60: "ipv6-opts",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    132: "sctp",
    136: "udplite",
}

FLOW_COLUMNS_DOC: dict[str, str] = {
    "first_seen": "first packet (UTC)",
    "last_seen": "last packet (UTC)",
    "src_ip": "initiator address",
    "src_port": "initiator port (ICMP: type)",
    "dst_ip": "responder address",
    "dst_port": "responder port (ICMP: counterpart type or code)",
    "protocol": "IP protocol number",
    "transport": "protocol name (tcp, udp, icmp, ipv6-icmp, ...)",
    "ip_version": "4 or 6",
    "vlan_id": "outermost VLAN id, -1 when untagged",
    "src2dst_packets": "packets initiator → responder",
    "src2dst_bytes": "bytes on the wire initiator → responder",
    "dst2src_packets": "packets responder → initiator",
    "dst2src_bytes": "bytes on the wire responder → initiator",
    "bidirectional_packets": "both directions",
    "bidirectional_bytes": "both directions",
    "src2dst_first_seen": "first packet initiator → responder (NaT if none)",
    "src2dst_last_seen": "last packet initiator → responder",
    "dst2src_first_seen": "first packet responder → initiator (NaT if none)",
    "dst2src_last_seen": "last packet responder → initiator",
    "src2dst_tcp_flags": "OR of TCP flags initiator → responder",
    "dst2src_tcp_flags": "OR of TCP flags responder → initiator",
    "duration_ms": "last_seen - first_seen in milliseconds",
    "expiry_reason": "idle, active, end (input ended) or evicted (table full)",
    "community_id": "Community ID v1 hash (seed 0)",
}


class FlowTable:
    """Bidirectional flow table driven by packet time.

    >>> table = FlowTable(idle_timeout=120, active_timeout=1800)
    >>> for batch in read_packets(["a.pcap", "b.pcap"]):
    ...     table.ingest(batch)
    >>> table.flush()
    >>> flows = table.to_frame()
    """

    def __init__(
        self,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        active_timeout: float = DEFAULT_ACTIVE_TIMEOUT,
        max_flows: int = DEFAULT_MAX_FLOWS,
    ) -> None:
        if idle_timeout <= 0 or active_timeout <= 0:
            raise ValueError(
                f"timeouts must be positive seconds (idle_timeout={idle_timeout}, "
                f"active_timeout={active_timeout})"
            )
        if max_flows < 16:
            raise ValueError(f"max_flows must be at least 16 (got {max_flows})")
        self.idle_ns = int(idle_timeout * NS)
        self.active_ns = int(active_timeout * NS)
        # Sweeping more often than a quarter of the idle timeout frees memory no
        # sooner in practice and costs a scan of the table each time.
        self.sweep_ns = max(self.idle_ns // 4, NS)
        self.max_flows = max_flows
        capacity = min(INITIAL_FLOWS, max_flows)
        self._flows = self._new_rows(capacity)
        self._slots = np.zeros(self._slot_count(capacity), dtype=np.int64)
        self._free = np.empty(capacity, dtype=np.int64)
        self._state = np.zeros(fk.S_FIELDS, dtype=np.int64)
        self._frag_keys = np.zeros(FRAG_SLOTS, dtype=np.uint64)
        self._frag_ports = np.zeros(FRAG_SLOTS, dtype=np.int64)
        self._icmp = fk.icmp_counterparts()
        self.export_buffer = np.empty((EXPORT_ROWS, fk.FLOW_COLUMNS), dtype=np.int64)
        self.n_export = 0
        self.kernel_params = np.array([self.idle_ns, self.active_ns, self.sweep_ns], dtype=np.int64)
        self._done: list[np.ndarray] = []
        self.on_export: Callable[[np.ndarray], None] | None = None

    @staticmethod
    def _new_rows(capacity: int) -> np.ndarray:
        # Rows start on a cache-line boundary, so each row is exactly three lines.
        spare = fk.ROW_ALIGN // 8
        raw = np.empty(capacity * fk.FLOW_COLUMNS + spare, dtype=np.int64)
        skip = (-raw.ctypes.data % fk.ROW_ALIGN) // 8
        rows = raw[skip : skip + capacity * fk.FLOW_COLUMNS].reshape(capacity, fk.FLOW_COLUMNS)
        rows[:, fk.C_SLOT] = -1
        return rows

    @property
    def kernel_table(self) -> tuple[np.ndarray, ...]:
        """The arrays the counting kernels take, in their order."""
        return (
            self._flows,
            self._slots,
            self._free,
            self._state,
            self._frag_keys,
            self._frag_ports,
            self._icmp,
        )

    @staticmethod
    def _slot_count(capacity: int) -> int:
        return 1 << int(2 * capacity - 1).bit_length()  # a power of two ≥ 2 × capacity

    # -- counters ----------------------------------------------------------------
    @property
    def live_flows(self) -> int:
        return int(self._state[fk.S_LIVE])

    @property
    def evicted_flows(self) -> int:
        return int(self._state[fk.S_EVICTED])

    @property
    def packets(self) -> int:
        """IP packets counted into flows."""
        return int(self._state[fk.S_PACKETS])

    @property
    def fragments_attributed(self) -> int:
        return int(self._state[fk.S_FRAG_HITS])

    @property
    def memory_bytes(self) -> int:
        return int(self._flows.nbytes + self._slots.nbytes + self._free.nbytes)

    # -- feeding -----------------------------------------------------------------
    def ingest(self, batch: PacketBatch) -> None:
        """Count a batch of packets into the table."""
        n = len(batch)
        i = 0
        while i < n:
            i, self.n_export, why = fk.aggregate(
                batch.ts_ns,
                batch.src_hi,
                batch.src_lo,
                batch.dst_hi,
                batch.dst_lo,
                batch.sport,
                batch.dport,
                batch.proto,
                batch.ip_version,
                batch.wire_len,
                batch.tcp_flags,
                batch.vlan,
                batch.frag,
                batch.frag_id,
                i,
                n,
                self.kernel_table,
                self.kernel_params,
                self.export_buffer,
                self.n_export,
            )
            self.handle(why)

    def handle(self, why: int) -> None:
        """Do what a counting kernel that stopped with ``why`` asks for."""
        if why == fk.COUNT_EXPORT_FULL:
            self._drain()
        elif why == fk.COUNT_TABLE_FULL:
            self._make_room()

    def expire(self, now_ns: int) -> None:
        """Close flows idle at ``now_ns`` (live capture: the clock moves on
        when packets stop)."""
        while True:
            self.n_export = fk.sweep_idle(
                self._flows,
                self._slots,
                self._free,
                self._state,
                now_ns,
                self.idle_ns,
                self.export_buffer,
                self.n_export,
            )
            if self.n_export < self.export_buffer.shape[0]:
                break
            self._drain()

    def flush(self) -> None:
        """Close every open flow (end of input)."""
        while self.live_flows:
            self.n_export = fk.flush_all(
                self._flows,
                self._slots,
                self._free,
                self._state,
                self.idle_ns,
                self.export_buffer,
                self.n_export,
            )
            self._drain()
        self._drain()

    def _make_room(self) -> None:
        capacity = self._flows.shape[0]
        if capacity < self.max_flows:
            self._grow(min(capacity * 2, self.max_flows))
            return
        if self.export_buffer.shape[0] - self.n_export < max(capacity // 8, 1):
            self._drain()
        self.n_export = fk.evict_oldest(
            self._flows, self._slots, self._free, self._state, self.export_buffer, self.n_export
        )
        self._drain()

    def _grow(self, capacity: int) -> None:
        rows = self._new_rows(capacity)
        high = int(self._state[fk.S_HIGH_WATER])
        rows[:high] = self._flows[:high]
        free = np.empty(capacity, dtype=np.int64)
        n_free = int(self._state[fk.S_N_FREE])
        free[:n_free] = self._free[:n_free]
        slots = np.zeros(self._slot_count(capacity), dtype=np.int64)
        fk.rebuild_slots(rows, high, slots)
        self._flows, self._free, self._slots = rows, free, slots

    def _drain(self) -> None:
        if self.n_export:
            done = self.export_buffer[: self.n_export].copy()
            if self.on_export is not None:
                self.on_export(done)
            else:
                self._done.append(done)
            self.n_export = 0

    # -- output ------------------------------------------------------------------
    def exported_rows(self) -> np.ndarray:
        """Closed flows as raw rows (columns of ``detector._kernels.flowtable``)."""
        self._drain()
        if not self._done:
            return np.empty((0, fk.FLOW_COLUMNS), dtype=np.int64)
        if len(self._done) > 1:
            self._done = [np.concatenate(self._done)]
        return self._done[0]

    def to_frame(self, *, community_id: bool = True) -> pd.DataFrame:
        """Closed flows as a DataFrame with the columns of ``FLOW_COLUMNS_DOC``,
        in order of first packet."""
        return rows_to_frame(self.exported_rows(), community_id=community_id)


def _address_texts(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Text of 128-bit addresses, converting each distinct address once."""
    pairs = np.stack([hi, lo], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    texts = []
    import ipaddress

    for h, low in uniq.tolist():
        if h == 0 and (low >> 32) == 0xFFFF:
            x = low & 0xFFFFFFFF
            texts.append(f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}")
        else:
            texts.append(str(ipaddress.IPv6Address((h << 64) | low)))
    return np.asarray(texts, dtype=object)[inverse.reshape(-1)]


def _packed(hi: int, lo: int) -> bytes:
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return (lo & 0xFFFFFFFF).to_bytes(4, "big")
    return ((hi << 64) | lo).to_bytes(16, "big")


def rows_to_frame(rows: np.ndarray, *, community_id: bool = True) -> pd.DataFrame:
    """Turn raw flow rows into the documented flow columns."""
    rows = rows[np.argsort(rows[:, fk.C_FIRST], kind="stable")] if len(rows) else rows
    u = rows.view(np.uint64)
    init_a = rows[:, fk.C_INIT_IS_A] == 1
    a_dir = fk.C_DIR
    b_dir = fk.C_DIR + fk.DIR_WIDTH
    src_hi = np.where(init_a, u[:, fk.C_A_HI], u[:, fk.C_B_HI])
    src_lo = np.where(init_a, u[:, fk.C_A_LO], u[:, fk.C_B_LO])
    dst_hi = np.where(init_a, u[:, fk.C_B_HI], u[:, fk.C_A_HI])
    dst_lo = np.where(init_a, u[:, fk.C_B_LO], u[:, fk.C_A_LO])
    meta = u[:, fk.C_META]
    a_port = (meta >> np.uint64(48)).astype(np.int64)
    b_port = ((meta >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int64)
    src_port = np.where(init_a, a_port, b_port)
    dst_port = np.where(init_a, b_port, a_port)
    fwd = np.where(
        init_a[:, None],
        rows[:, a_dir : a_dir + fk.DIR_WIDTH],
        rows[:, b_dir : b_dir + fk.DIR_WIDTH],
    )
    rev = np.where(
        init_a[:, None],
        rows[:, b_dir : b_dir + fk.DIR_WIDTH],
        rows[:, a_dir : a_dir + fk.DIR_WIDTH],
    )

    def stamp(ns: np.ndarray) -> pd.DatetimeIndex:
        return pd.to_datetime(np.where(ns < 0, np.iinfo(np.int64).min, ns), unit="ns", utc=True)

    n = len(rows)
    protocol = ((meta >> np.uint64(16)) & np.uint64(0xFF)).astype(np.uint8)
    src_text = _address_texts(src_hi, src_lo) if n else np.empty(0, dtype=object)
    dst_text = _address_texts(dst_hi, dst_lo) if n else np.empty(0, dtype=object)
    vlan = (meta & np.uint64(0xFFFF)).astype(np.int64)
    frame = pd.DataFrame(
        {
            "first_seen": stamp(rows[:, fk.C_FIRST]),
            "last_seen": stamp(rows[:, fk.C_LAST]),
            "src_ip": src_text,
            "src_port": src_port.astype(np.uint16),
            "dst_ip": dst_text,
            "dst_port": dst_port.astype(np.uint16),
            "protocol": protocol,
            "transport": pd.Categorical(
                [TRANSPORT_NAMES.get(int(p), str(int(p))) for p in protocol]
            )
            if n
            else pd.Categorical([]),
            "ip_version": rows[:, fk.C_IP_VERSION].astype(np.uint8),
            "vlan_id": np.where(vlan == 0xFFFF, -1, vlan).astype(np.int32),
            "src2dst_packets": fwd[:, fk.D_PACKETS],
            "src2dst_bytes": fwd[:, fk.D_BYTES],
            "dst2src_packets": rev[:, fk.D_PACKETS],
            "dst2src_bytes": rev[:, fk.D_BYTES],
            "bidirectional_packets": fwd[:, fk.D_PACKETS] + rev[:, fk.D_PACKETS],
            "bidirectional_bytes": fwd[:, fk.D_BYTES] + rev[:, fk.D_BYTES],
            "src2dst_first_seen": stamp(fwd[:, fk.D_FIRST]),
            "src2dst_last_seen": stamp(np.where(fwd[:, fk.D_PACKETS] > 0, fwd[:, fk.D_LAST], -1)),
            "dst2src_first_seen": stamp(rev[:, fk.D_FIRST]),
            "dst2src_last_seen": stamp(np.where(rev[:, fk.D_PACKETS] > 0, rev[:, fk.D_LAST], -1)),
            "src2dst_tcp_flags": fwd[:, fk.D_FLAGS].astype(np.uint16),
            "dst2src_tcp_flags": rev[:, fk.D_FLAGS].astype(np.uint16),
            "duration_ms": (rows[:, fk.C_LAST] - rows[:, fk.C_FIRST]) / 1e6,
            "expiry_reason": pd.Categorical.from_codes(
                rows[:, fk.C_REASON].astype(np.int8), categories=pd.Index(fk.REASON_NAMES)
            ),
        }
    )
    if community_id:
        frame["community_id"] = [
            community_id_v1(_packed(sh, sl), _packed(dh, dl), p, sp, dp)
            for sh, sl, dh, dl, p, sp, dp in zip(
                src_hi.tolist(),
                src_lo.tolist(),
                dst_hi.tolist(),
                dst_lo.tolist(),
                protocol.tolist(),
                src_port.tolist(),
                dst_port.tolist(),
                strict=True,
            )
        ]
    return frame


def flows_from_captures(
    paths: Iterable[str | os.PathLike[str]],
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    active_timeout: float = DEFAULT_ACTIVE_TIMEOUT,
    max_flows: int = DEFAULT_MAX_FLOWS,
    on_problem: Callable[[CaptureProblem], None] | None = None,
    stats_out: list[CaptureStats] | None = None,
    progress: Callable[[Iterator[int]], Iterator[int]] | None = None,
) -> tuple[pd.DataFrame, FlowTable]:
    """Read captures (one stream, in the order given) and return their flows."""
    table = FlowTable(idle_timeout=idle_timeout, active_timeout=active_timeout, max_flows=max_flows)
    steps = read_packets(paths, counter=table, on_problem=on_problem, stats_out=stats_out)
    for _ in progress(steps) if progress else steps:
        pass
    table.flush()
    return table.to_frame(), table
