"""Where packets come from: capture files (pcap, pcapng, gzip) — and later the
live mirror-port ring and pcap streams on stdin."""

from .batch import BATCH_DTYPES, BYTES_PER_PACKET, PacketBatch, address_text, concat
from .files import (
    CaptureProblem,
    CaptureReader,
    CaptureStats,
    capture_inputs,
    overlap_warnings,
    read_packets,
)

__all__ = [
    "BATCH_DTYPES",
    "BYTES_PER_PACKET",
    "CaptureProblem",
    "CaptureReader",
    "CaptureStats",
    "PacketBatch",
    "address_text",
    "capture_inputs",
    "concat",
    "overlap_warnings",
    "read_packets",
]
