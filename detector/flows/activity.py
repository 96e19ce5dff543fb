"""ActivityTable: packets and bytes per conversation per time bin.

The flow table says how much a flow carried in all; rules and per-host
features need to know *when* ("50 MB within any 60-minute span outside business
hours", features per 10-minute window). This table counts the same packet
batches a second way, one row per (conversation, time bin):

* a conversation is (A, B, A port, B port, protocol, VLAN) with A the endpoint
  with the smaller (address, port), as in the flow table; ``packets_ab`` /
  ``bytes_ab`` count A→B, ``packets_ba`` / ``bytes_ba`` B→A (a packet from an
  endpoint to itself counts as A→B);
* ports are taken as decoded: ICMP/ICMPv6 rows carry (type, code), with no
  request/reply pairing (an echo and its reply are two rows), and non-first
  fragments carry ports 0 (the flow table, unlike this one, attributes them to
  their first fragment's ports);
* the bin of a packet is ``floor(ts_ns / bin_ns)``, a floor for times before
  1970 too: a packet at exactly ``k * bin_ns`` is in bin k, one at
  ``k * bin_ns - 1`` in bin k - 1; ``bin_start_ns = bin * bin_ns``;
* bytes are ``wire_len`` (the frame on the wire, right for headers-only
  captures); ``first_ns`` / ``last_ns`` are the earliest and latest packet of
  the row, whatever order the packets came in;
* packets that carry no IP (``ip_version`` 0) are skipped.

The counting table is bounded by ``capacity`` rows (128 bytes each, plus 16
to 32 bytes of slot table). When its rows are all in use, they are copied out
(96 bytes each, kept until asked for) and the table starts again empty, so a
(conversation, bin) may appear in several copied chunks: :meth:`ActivityTable.columns`
merges them (sums the counters, keeps the earliest first and latest last), and
the result does not depend on the capacity.

>>> table = ActivityTable(bin_seconds=60)
>>> for batch in read_packets(["a.pcap"]):
...     table.ingest(batch)
>>> per_minute = table.to_frame()
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._kernels import activity as ak
from ..capture import PacketBatch, read_packets
from .fold import Foldable, fold_ports, fold_rows

# The columns of the rows this table hands out (``drained``, ``columns``), for
# code that works on the rows themselves (a distributed scan's shares): the
# kernel's layout, named here so that nothing outside flows/ reads the kernels.
C_A_HI, C_A_LO, C_B_HI, C_B_LO = ak.C_A_HI, ak.C_A_LO, ak.C_B_HI, ak.C_B_LO
C_FIRST, C_LAST = ak.C_FIRST, ak.C_LAST

if TYPE_CHECKING:  # pandas is imported only when a DataFrame is asked for (start-up time)
    import pandas as pd

NS = 1_000_000_000
DEFAULT_BIN_SECONDS = 60
DEFAULT_CAPACITY = 1 << 18  # 32 MiB of rows, 4 MiB of slots
# Rows held before they are merged and, with a ``foldable``, folded: 96 MiB of
# merged rows (96 bytes each; detector/flows/fold.py).
DEFAULT_MAX_ROWS = 1 << 20
# Slot entries keep row + 1 in their low 32 bits.
MAX_CAPACITY = (1 << 31) - 1

ACTIVITY_COLUMNS: tuple[str, ...] = (
    "a_hi",
    "a_lo",
    "b_hi",
    "b_lo",
    "a_port",
    "b_port",
    "proto",
    "vlan",
    "bin_start_ns",
    "packets_ab",
    "bytes_ab",
    "packets_ba",
    "bytes_ba",
    "first_ns",
    "last_ns",
)

# Column → (dtype, meaning). Addresses are 128-bit, big-endian halves, IPv4 as
# ::ffff:a.b.c.d (as in the packet batch).
ACTIVITY_COLUMNS_DOC: dict[str, tuple[type[np.generic], str]] = {
    "a_hi": (np.uint64, "address of A (the smaller endpoint), high 64 bits"),
    "a_lo": (np.uint64, "address of A, low 64 bits"),
    "b_hi": (np.uint64, "address of B, high 64 bits"),
    "b_lo": (np.uint64, "address of B, low 64 bits"),
    # ICMP: a packet's (type, code) are its (source, destination) ports.
    "a_port": (
        np.int32,
        "port of A (ICMP: the type if A sent it, else the code; later fragments 0)",
    ),
    "b_port": (np.int32, "port of B (ICMP: the code if A sent it, else the type)"),
    "proto": (np.int32, "IP protocol number"),
    "vlan": (np.int32, "outermost VLAN id, -1 when untagged"),
    "bin_start_ns": (np.int64, "start of the time bin, ns since the epoch (UTC)"),
    "packets_ab": (np.int64, "packets A → B in the bin"),
    "bytes_ab": (np.int64, "bytes on the wire A → B in the bin"),
    "packets_ba": (np.int64, "packets B → A in the bin"),
    "bytes_ba": (np.int64, "bytes on the wire B → A in the bin"),
    "first_ns": (np.int64, "first packet of the row, ns since the epoch"),
    "last_ns": (np.int64, "last packet of the row, ns since the epoch"),
}

NO_VLAN = 0xFFFF


class ActivityTable:
    """Packets and bytes per conversation per time bin (module docstring)."""

    def __init__(
        self,
        *,
        bin_seconds: int = DEFAULT_BIN_SECONDS,
        capacity: int = DEFAULT_CAPACITY,
        max_rows: int = DEFAULT_MAX_ROWS,
        foldable: Foldable | None = None,
    ) -> None:
        if isinstance(bin_seconds, bool) or not isinstance(bin_seconds, int | np.integer):
            raise TypeError(f"bin_seconds must be a whole number of seconds (got {bin_seconds!r})")
        if not 0 < bin_seconds <= 365 * 86_400:
            raise ValueError(f"bin_seconds must be 1 to 31536000 (a year); got {bin_seconds}")
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer):
            raise TypeError(f"capacity must be a whole number of rows (got {capacity!r})")
        if not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be 1 to {MAX_CAPACITY} rows; got {capacity}")
        self.bin_seconds = int(bin_seconds)
        self.capacity = int(capacity)
        self.bin_ns = self.bin_seconds * NS
        self._rows = _new_rows(self.capacity)
        self._slots = np.zeros(1 << int(2 * self.capacity - 1).bit_length(), dtype=np.int64)
        self._state = np.zeros(ak.S_FIELDS, dtype=np.int64)
        self._chunks: list[np.ndarray] = []  # drained rows, (n, ak.USED_COLUMNS) each
        self._merged: np.ndarray | None = None  # cache of merged_columns()
        self.drains = 0  # times the full table was copied out and emptied
        if isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer):
            raise TypeError(f"max_rows must be a whole number of rows (got {max_rows!r})")
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1; got {max_rows}")
        # Rows held in drained chunks, and the count at which they are merged
        # (and folded, with ``foldable``: detector/flows/fold.py).
        self.max_rows = int(max_rows)
        self.foldable = foldable
        self._held = 0
        self._compact_at = self.max_rows
        # Outside addresses folded, per bin: {bin: distinct addresses}; and
        # few-packet conversation-minutes whose ports were dropped, per bin.
        self.folded_sources: dict[int, int] = {}
        self.folded_conversations: dict[int, int] = {}

    @classmethod
    def combined(
        cls, parts: Sequence[np.ndarray], *, bin_seconds: int = DEFAULT_BIN_SECONDS
    ) -> ActivityTable:
        """A table of the rows of several tables' :meth:`merged_columns` (live
        capture workers, each counting part of the traffic): the entries of one
        (conversation, bin) found in several parts are merged, as one table's
        drained chunks are. For reading (``columns``); it counts no packets."""
        table = cls(bin_seconds=bin_seconds, capacity=1)
        parts = [part for part in parts if part.shape[1]]
        merged = _merged_in_time_order(parts)
        if merged is not None:
            table._merged = merged
            table._chunks = [merged.T]
            return table
        rows = [np.ascontiguousarray(part.T) for part in parts]
        if rows:
            table._chunks = [np.concatenate(rows)]
        return table

    @classmethod
    def warm_up(cls) -> ActivityTable:
        """Compile the table's kernels (counting, merging) on a few made-up
        packets, more conversations than it has rows (so it drains); returns
        the table."""
        from ..capture.live import sample_records

        _, batch = sample_records(40)
        table = cls(bin_seconds=60, capacity=16)
        table.ingest(batch)
        table.merged_columns()
        return table

    # -- counters ----------------------------------------------------------------
    @property
    def packets(self) -> int:
        """IP packets counted."""
        return int(self._state[ak.S_PACKETS])

    @property
    def memory_bytes(self) -> int:
        """Bytes held: the table plus the rows copied out of it so far."""
        return int(self._rows.nbytes + self._slots.nbytes + sum(c.nbytes for c in self._chunks))

    # -- feeding -----------------------------------------------------------------
    def ingest(self, batch: PacketBatch) -> None:
        """Count a batch of packets."""
        n = len(batch)
        i = 0
        while i < n:
            stopped = ak.count_activity(
                batch.arrays(), i, n, self.bin_ns, self._rows, self._slots, self._state
            )
            self._merged = None
            if stopped < n:
                if self._state[ak.S_ROWS] == 0:  # an empty table refused a row: a bug
                    raise RuntimeError(f"activity kernel stopped at packet {stopped} with no rows")
                self._drain()
            i = stopped

    def _drain(self) -> None:
        used = int(self._state[ak.S_ROWS])
        self._chunks.append(self._rows[:used, : ak.USED_COLUMNS].copy())
        self._slots.fill(0)
        self._state[ak.S_ROWS] = 0
        self.drains += 1
        self._held += used
        if self._held > self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Merge the drained chunks into one, folded first when they are over
        the budget; the next merge waits until the rows held double (so a
        capture of many real conversations costs a few sorts, not one per
        drain)."""
        rows = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = []
        rows = self._folded(rows)
        merged = _merge(np.ascontiguousarray(rows))
        del rows
        merged = self._ports_folded(merged)
        self._chunks = [merged.T]  # a view of the columns
        self._held = self._chunks[0].shape[0]
        self._compact_at = max(self.max_rows, 2 * self._held)

    def _folded(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` folded (detector/flows/fold.py) when a ``foldable`` was given
        and they are over half the budget; else ``rows`` as they are."""
        if self.foldable is None or rows.shape[0] <= self.max_rows // 2:
            return rows
        folded, bins, sources = fold_rows(rows, self.foldable)
        for b, k in zip(bins.tolist(), sources.tolist(), strict=True):
            self.folded_sources[b] = self.folded_sources.get(b, 0) + k
        return folded

    def _ports_folded(self, merged: np.ndarray) -> np.ndarray:
        """Merged columns ``merged``, their few-packet conversations' client
        ports dropped and merged again (detector/flows/fold.py) when a
        ``foldable`` was given and they are still over half the budget (as
        addresses are folded: the next merge then starts from few rows)."""
        if self.foldable is None or merged.shape[1] <= self.max_rows // 2:
            return merged
        bins, counts = fold_ports(merged)  # in place: the columns are the table's own
        if not len(bins):
            return merged
        for b, k in zip(bins.tolist(), counts.tolist(), strict=True):
            self.folded_conversations[b] = self.folded_conversations.get(b, 0) + k
        return _merge(np.ascontiguousarray(merged.T))

    # -- output ------------------------------------------------------------------
    def merged_columns(self) -> np.ndarray:
        """Raw columns, shape (``USED_COLUMNS``, rows): row ``C_*`` of
        ``detector._kernels.activity`` is that column. One entry per
        (conversation, bin), in the order of :meth:`columns`. The table can keep
        counting afterwards; the array is the table's own, not to be modified."""
        if self._merged is None:
            live = self._rows[: int(self._state[ak.S_ROWS]), : ak.USED_COLUMNS]
            drained = bool(self._chunks)
            if drained:
                # One array of every row drained and live, and an empty table:
                # the state stays whole whatever happens next.
                rows = np.concatenate([*self._chunks, live])
                self._chunks = [rows]
                self._slots.fill(0)
                self._state[ak.S_ROWS] = 0
                if rows.shape[0] > self.max_rows:
                    self._chunks = []
                    rows = self._folded(rows)
            else:
                rows = np.ascontiguousarray(live)
            merged = _merge(np.ascontiguousarray(rows))
            del rows
            if drained:
                merged = self._ports_folded(merged)
            if drained:
                self._chunks = [merged.T]  # never larger than the rows it merges
            self._held = merged.shape[1] if drained else 0
            self._merged = merged
        return self._merged

    def forget_before(self, start_ns: int) -> int:
        """Drop the rows of bins that start before ``start_ns``, so a live
        sensor's memory stays bounded; returns how many rows went. The rows
        kept are exactly those a table fed only the later packets would
        hold. The table keeps counting afterwards."""
        cols = self.merged_columns()
        first = -(-int(start_ns) // self.bin_ns)  # the first whole bin
        keep = cols[ak.C_BIN] >= first
        self.folded_sources = {b: k for b, k in self.folded_sources.items() if b >= first}
        self.folded_conversations = {
            b: k for b, k in self.folded_conversations.items() if b >= first
        }
        dropped = int(keep.shape[0] - np.count_nonzero(keep))
        if dropped:
            self._chunks = [np.ascontiguousarray(cols[:, keep].T)]
            self._held = int(np.count_nonzero(keep))
            self._slots.fill(0)
            self._state[ak.S_ROWS] = 0
            self._merged = None
        return dropped

    def with_hosts(self, hosts: Sequence[tuple[int, int]]) -> ActivityTable:
        """A table (for reading) of this one's rows with one of ``hosts`` ((hi,
        lo) pairs) at either end, with its folded counts: what an analysis of a
        few hosts reads (a live sensor's look on the packet, docs/live.md)."""
        cols = self.merged_columns()
        keep = np.zeros(cols.shape[1], dtype=bool)
        for hi_row, lo_row in ((ak.C_A_HI, ak.C_A_LO), (ak.C_B_HI, ak.C_B_LO)):
            his, los = cols[hi_row].view(np.uint64), cols[lo_row].view(np.uint64)
            for hi, lo in hosts:  # a few: one pass each
                keep |= (los == np.uint64(lo)) & (his == np.uint64(hi))
        table = ActivityTable.combined([cols[:, keep]], bin_seconds=self.bin_seconds)
        table.folded_sources = dict(self.folded_sources)
        table.folded_conversations = dict(self.folded_conversations)
        return table

    def columns(self) -> dict[str, np.ndarray]:
        """One array per name of ``ACTIVITY_COLUMNS`` (dtypes in
        ``ACTIVITY_COLUMNS_DOC``); one row per (A, B, A port, B port, protocol,
        VLAN, bin), sorted by (bin_start_ns, a_hi, a_lo, b_hi, b_lo, a_port,
        b_port, proto, vlan), addresses compared as unsigned numbers, untagged
        (-1) before VLAN 0."""
        cols = self.merged_columns()
        meta = cols[ak.C_META].view(np.uint64)
        vlan = (meta & np.uint64(0xFFFF)).astype(np.int32)
        vlan[vlan == NO_VLAN] = -1
        return {
            "a_hi": cols[ak.C_A_HI].view(np.uint64).copy(),
            "a_lo": cols[ak.C_A_LO].view(np.uint64).copy(),
            "b_hi": cols[ak.C_B_HI].view(np.uint64).copy(),
            "b_lo": cols[ak.C_B_LO].view(np.uint64).copy(),
            "a_port": (meta >> np.uint64(48)).astype(np.int32),
            "b_port": ((meta >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int32),
            "proto": ((meta >> np.uint64(16)) & np.uint64(0xFF)).astype(np.int32),
            "vlan": vlan,
            # int64 arithmetic: wraps only within one bin of the int64 limits
            # (times of damaged files, docs/flows.md).
            "bin_start_ns": cols[ak.C_BIN] * np.int64(self.bin_ns),
            "packets_ab": cols[ak.C_AB_PACKETS].copy(),
            "bytes_ab": cols[ak.C_AB_BYTES].copy(),
            "packets_ba": cols[ak.C_BA_PACKETS].copy(),
            "bytes_ba": cols[ak.C_BA_BYTES].copy(),
            "first_ns": cols[ak.C_FIRST].copy(),
            "last_ns": cols[ak.C_LAST].copy(),
        }

    def to_frame(self) -> pd.DataFrame:
        """:meth:`columns` as a pandas DataFrame (same names, dtypes and order;
        times stay integer ns)."""
        import pandas as pd

        return pd.DataFrame(self.columns(), columns=list(ACTIVITY_COLUMNS))


def activity_from_captures(
    paths: Iterable[str | os.PathLike[str]],
    *,
    bin_seconds: int = DEFAULT_BIN_SECONDS,
    capacity: int = DEFAULT_CAPACITY,
) -> ActivityTable:
    """Read captures (one stream, in the order given) into an activity table;
    ``table.columns()`` or ``table.to_frame()`` give the rows. A damaged file
    raises :class:`detector.errors.DecodeError` after its good packets, as
    :func:`detector.capture.read_packets` does."""
    table = ActivityTable(bin_seconds=bin_seconds, capacity=capacity)
    for batch in read_packets(paths, reuse_batch=True):
        table.ingest(batch)
    return table


def _new_rows(capacity: int) -> np.ndarray:
    # Rows start on a cache-line boundary, so each row is exactly two lines.
    spare = ak.ROW_ALIGN // 8
    raw = np.zeros(capacity * ak.ROW_COLUMNS + spare, dtype=np.int64)
    skip = (-raw.ctypes.data % ak.ROW_ALIGN) // 8
    return raw[skip : skip + capacity * ak.ROW_COLUMNS].reshape(capacity, ak.ROW_COLUMNS)


def _merged_in_time_order(parts: Sequence[np.ndarray]) -> np.ndarray | None:
    """Merged columns of parts that follow one another in time (each one's
    first bin no earlier than the one before's last: the parts of a scan
    spread over workers, detector/distributed), or None. Each part is merged
    and in order already, so only the bins two parts share (those their cut
    falls in) need merging: far less than sorting every row again."""
    if len(parts) < 2:
        return parts[0] if parts else None
    firsts = [int(part[ak.C_BIN, 0]) for part in parts]
    lasts = [int(part[ak.C_BIN, -1]) for part in parts]
    if any(firsts[k + 1] < lasts[k] for k in range(len(parts) - 1)):
        return None
    rows = np.concatenate(parts, axis=1)
    shared = sorted({lasts[k] for k in range(len(parts) - 1) if firsts[k + 1] == lasts[k]})
    if not shared:
        return rows
    bins = rows[ak.C_BIN]
    pieces = []
    at = 0
    for b in shared:
        lo = int(np.searchsorted(bins, b, side="left"))
        hi = int(np.searchsorted(bins, b, side="right"))
        pieces.append(rows[:, at:lo])
        pieces.append(_merge(np.ascontiguousarray(rows[:, lo:hi].T)))
        at = hi
    pieces.append(rows[:, at:])
    return np.concatenate(pieces, axis=1)


def _merge(rows: np.ndarray) -> np.ndarray:
    """Raw rows (n, ``USED_COLUMNS``), C-contiguous, as drained, to raw columns
    (``USED_COLUMNS``, m) in :meth:`ActivityTable.columns` order, the entries of
    one (conversation, bin) merged: counters summed, earliest first, latest
    last. One numpy argsort, then one kernel pass that gathers and merges."""
    # The sort key: 48 bytes per entry compared as raw bytes, so big-endian
    # words in key order (a third of np.lexsort's time over six columns).
    keys = np.empty((len(rows), 6), dtype=">u8")
    for k, c in enumerate((ak.C_BIN, ak.C_A_HI, ak.C_A_LO, ak.C_B_HI, ak.C_B_LO, ak.C_META)):
        keys[:, k] = rows[:, c].view(np.uint64)
    # The bin is signed: flipping its sign bit orders it as unsigned.
    keys[:, 0] ^= np.uint64(1 << 63)
    # Untagged (0xFFFF) sorts before VLAN 0, as its output value -1 says; VLAN
    # ids are 12 bits, so adding 1 to the low 16 bits keeps the rest in order.
    low = np.uint64(0xFFFF)
    keys[:, 5] = (keys[:, 5] & ~low) | ((keys[:, 5] + np.uint64(1)) & low)
    # Stable (timsort): drained chunks come roughly in time order already.
    order = np.argsort(keys.view(np.dtype((np.void, keys.shape[1] * 8))).ravel(), kind="stable")
    del keys
    merged = np.empty((ak.USED_COLUMNS, len(rows)), dtype=np.int64)
    m = ak.merge_in_order(rows, order, merged)
    if m < 0:
        raise RuntimeError("activity merge: rows, order and output do not fit (a bug)")
    return merged if m == len(rows) else merged[:, :m].copy()
