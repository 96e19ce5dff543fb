"""The packet batch: one struct-of-arrays chunk of decoded packets."""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from .._kernels.decode import STATUS_NAMES
from .._kernels.records import Batch
from ..networks import address_text

# Column name → dtype, in the order of the kernels' batch (``records.Batch``).
BATCH_DTYPES: dict[str, type[np.generic]] = {
    "ts_ns": np.int64,
    "interface": np.int32,
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "sport": np.uint16,
    "dport": np.uint16,
    "proto": np.uint8,
    "ip_version": np.uint8,
    "wire_len": np.uint32,
    "cap_len": np.uint32,
    "tcp_flags": np.uint16,
    "vlan": np.uint16,
    "frag": np.uint8,
    "frag_id": np.uint32,
    "offset": np.int64,
    "status": np.uint8,
    "payload_len": np.uint32,
    "tcp_seq": np.uint32,
    "tcp_zero_window": np.uint8,
}

BYTES_PER_PACKET = sum(np.dtype(t).itemsize for t in BATCH_DTYPES.values())
_columns = operator.attrgetter(*BATCH_DTYPES)  # a batch's arrays, in order (a kernel call each)


@dataclass
class PacketBatch:
    """Decoded packets, one row each (see docs/flows.md for every field)."""

    ts_ns: np.ndarray
    interface: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    proto: np.ndarray
    ip_version: np.ndarray
    wire_len: np.ndarray
    cap_len: np.ndarray
    tcp_flags: np.ndarray
    vlan: np.ndarray
    frag: np.ndarray
    frag_id: np.ndarray
    offset: np.ndarray
    status: np.ndarray
    payload_len: np.ndarray
    tcp_seq: np.ndarray
    tcp_zero_window: np.ndarray

    @classmethod
    def empty(cls, capacity: int) -> PacketBatch:
        return cls(**{name: np.empty(capacity, dtype) for name, dtype in BATCH_DTYPES.items()})

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays as the kernels take them (a named tuple, ``records.Batch``)."""
        return Batch._make(_columns(self))  # type: ignore[no-any-return]

    def head(self, n: int) -> PacketBatch:
        """The first ``n`` rows (views, no copy)."""
        return PacketBatch(*(a[:n] for a in self.arrays()))

    def copy(self) -> PacketBatch:
        return PacketBatch(*(a.copy() for a in self.arrays()))

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def src_ip(self, i: int) -> str:
        return address_text(int(self.src_hi[i]), int(self.src_lo[i]))

    def dst_ip(self, i: int) -> str:
        return address_text(int(self.dst_hi[i]), int(self.dst_lo[i]))

    def status_counts(self) -> dict[str, int]:
        counts = np.bincount(self.status, minlength=len(STATUS_NAMES))
        return {
            STATUS_NAMES[i]: int(c) for i, c in enumerate(counts) if c and i < len(STATUS_NAMES)
        }


def concat(batches: list[PacketBatch]) -> PacketBatch:
    if not batches:
        return PacketBatch.empty(0)
    return PacketBatch(
        *(np.concatenate(cols) for cols in zip(*(b.arrays() for b in batches), strict=True))
    )
