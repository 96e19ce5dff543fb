"""Find rotated capture files in a directory and fingerprint them by content.

A file is a capture when its first bytes say so (pcap, pcapng, either one
gzip-compressed), whatever its name; its place in time is its packets' times,
whatever its name or mtime says. Fingerprinting reads the file once with the
decoder (no flow table): first and last packet time, packets, bytes on the
wire, whether the last record is cut short, and a content hash that does not
change when the file is renamed or gzip-compressed after rotation
(``tcpdump -z gzip``), so the same packets are never counted twice.

For an uncompressed file the same reading makes carve's index (``carve
--state``, docs/carve.md): for each stretch of ``INDEX_BLOCK_BYTES`` of the
file, where its first record starts and the earliest and latest packet time
of the records that start in it; for pcapng also where each section header
and interface description block lies (the blocks a byte range read alone
needs before it). A carve then reads only the stretches whose times reach the
alert's, not whole files.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..capture import CaptureProblem, read_packets
from ..capture.files import GZIP_MAGIC, PCAP_MAGICS, PCAPNG_MAGIC
from ..errors import CaptureError

HEAD_HASH_BYTES = 1 << 20  # of the decompressed capture: header and first packets
# pcapng Interface Statistics Block and its drop options (pcapng spec, section 4.6).
PCAPNG_ISB = 0x00000005
ISB_IFDROP = 5  # packets the interface dropped (lack of resources)
ISB_OSDROP = 7  # packets the OS dropped (capture buffer full)
TAIL_BLOCKS = 64  # blocks walked back from the end of a pcapng file looking for ISBs
CUT_SHORT_MARKS = ("the last record is cut short", "the gzip stream ends early")
INDEX_BLOCK_SHIFT = 20
INDEX_BLOCK_BYTES = 1 << INDEX_BLOCK_SHIFT  # carve's index: one row per MiB of file
MAX_HEADER_BLOCKS = 4096  # pcapng section headers and interface descriptions indexed


@dataclass(frozen=True)
class CaptureFingerprint:
    """What a capture file holds, found by reading it."""

    path: str
    size: int  # bytes on disk
    mtime_ns: int
    format: str  # "pcap" or "pcapng"
    compressed: bool
    first_ns: int | None  # first and last packet time (UTC ns); None without packets
    last_ns: int | None
    packets: int
    wire_bytes: int
    content_hash: str  # BLAKE2b of the decompressed head + the packet span and counts
    kernel_drops: int | None  # from pcapng interface statistics, where the file has them
    cut_short: bool  # last record or gzip stream incomplete: still being written?
    problems: tuple[CaptureProblem, ...] = field(default=())
    # carve's index (module docstring), uncompressed files only: rows of (first
    # record offset, earliest, latest packet time) per INDEX_BLOCK_BYTES, and for
    # pcapng rows of (offset, length, block type) of its SHBs and IDBs.
    index_blocks: np.ndarray | None = None
    index_headers: np.ndarray | None = None

    @property
    def damaged(self) -> bool:
        return any(p.fatal for p in self.problems)


def capture_format(path: str | os.PathLike[str]) -> tuple[str, bool] | None:
    """``(format, compressed)`` when the file starts like a capture, else None."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4)
            compressed = head[:2] == GZIP_MAGIC
            if compressed:
                stream.seek(0)
                head = _inflate_head(stream, 4)
    except OSError:
        return None
    if head == PCAPNG_MAGIC:
        return "pcapng", compressed
    if head in PCAP_MAGICS:
        return "pcap", compressed
    return None


def find_captures(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Regular files under ``directory`` (recursively, in name order for a
    stable listing) whose content is a capture. Hidden files and directories
    (names starting with a dot: editors' and copy tools' temporaries) are skipped."""
    root = Path(directory)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink() and capture_format(path) is not None:
                yield path


def fingerprint(path: str | os.PathLike[str]) -> CaptureFingerprint:
    """Read ``path`` once and describe it (see the module docstring).

    Raises :class:`CaptureError` when it cannot be read at all."""
    name = os.fspath(path)
    info = os.stat(name)
    sniffed = capture_format(name)
    if sniffed is None:
        # The reader's own words for what the file is instead (it raises).
        for _ in read_packets([name], batch_packets=1):
            break
        raise CaptureError(f"{name}: byte offset 0: not a pcap or pcapng file")
    fmt, compressed = sniffed
    problems: list[CaptureProblem] = []
    stats_out: list = []
    blocks = _BlockIndex()
    for batch in read_packets([name], reuse_batch=True, on_problem=problems.append,
                              stats_out=stats_out):  # fmt: skip
        if not compressed:
            blocks.add(batch.offset, batch.ts_ns)
    stats = stats_out[0]
    cut_short = any(any(m in p.message for m in CUT_SHORT_MARKS) for p in problems)
    digest = hashlib.blake2b(digest_size=16)
    with open(name, "rb") as stream:
        digest.update(_inflate_head(stream, HEAD_HASH_BYTES) if compressed else
                      stream.read(HEAD_HASH_BYTES))  # fmt: skip
    digest.update(
        struct.pack(
            "<qqqq",
            stats.packets,
            stats.wire_bytes,
            -1 if stats.first_ns is None else stats.first_ns,
            -1 if stats.last_ns is None else stats.last_ns,
        )
    )
    drops = _pcapng_tail_drops(name) if fmt == "pcapng" and not compressed else None
    return CaptureFingerprint(
        path=name,
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        format=fmt,
        compressed=compressed,
        first_ns=stats.first_ns,
        last_ns=stats.last_ns,
        packets=stats.packets,
        wire_bytes=stats.wire_bytes,
        content_hash=digest.hexdigest(),
        kernel_drops=drops,
        cut_short=cut_short,
        problems=tuple(problems),
        index_blocks=None if compressed else blocks.rows(),
        index_headers=_pcapng_headers(name, info.st_size)
        if fmt == "pcapng" and not compressed
        else None,
    )


class _BlockIndex:
    """Per INDEX_BLOCK_BYTES of a file (records in file order): the first
    record's offset and the earliest and latest packet time of the records
    that start there."""

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = []

    def add(self, offsets: np.ndarray, ts_ns: np.ndarray) -> None:
        if not len(offsets):
            return
        offsets = offsets.astype(np.int64)
        block = offsets >> INDEX_BLOCK_SHIFT
        starts = np.concatenate(([0], np.flatnonzero(np.diff(block)) + 1))
        rows = np.empty((len(starts), 4), dtype=np.int64)
        rows[:, 0] = block[starts]
        rows[:, 1] = offsets[starts]
        rows[:, 2] = np.minimum.reduceat(ts_ns, starts)
        rows[:, 3] = np.maximum.reduceat(ts_ns, starts)
        if self._rows and self._rows[-1][-1, 0] == rows[0, 0]:
            last = self._rows[-1][-1]  # the block goes on from the batch before
            rows[0, 1] = last[1]
            rows[0, 2] = min(last[2], rows[0, 2])
            rows[0, 3] = max(last[3], rows[0, 3])
            self._rows[-1] = self._rows[-1][:-1]
        self._rows.append(rows)

    def rows(self) -> np.ndarray:
        """(first record offset, earliest, latest packet time) per block."""
        if not self._rows:
            return np.empty((0, 3), dtype=np.int64)
        return np.concatenate(self._rows)[:, 1:].copy()


def _pcapng_headers(path: str, size: int) -> np.ndarray | None:
    """(offset, length, type) of each section header and interface description
    block of a pcapng file, from one pass over its block headers."""
    from ..capture.files import index_pcapng

    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return None
    _cuts, marks = index_pcapng(data, np.array([size], dtype=np.int64), MAX_HEADER_BLOCKS)
    if len(marks) >= MAX_HEADER_BLOCKS:
        return None  # more than indexed: carve reads such a file whole
    return marks.copy()


def first_packet_ns(path: str | os.PathLike[str]) -> int | None:
    """The time of the first packet (a file still being written is read only
    as far as its first batch)."""
    try:
        for batch in read_packets([path], batch_packets=64, on_problem=lambda _p: None):
            if len(batch):
                return int(batch.ts_ns[0])
    except CaptureError:
        return None
    return None


def _inflate_head(stream, limit: int) -> bytes:  # type: ignore[no-untyped-def]
    """Up to ``limit`` bytes of a gzip stream, tolerating a stream cut short
    (``gzip.GzipFile`` raises and drops what it had)."""
    inflate = zlib.decompressobj(wbits=47)
    out = bytearray()
    while len(out) < limit:
        chunk = stream.read(64 << 10)
        if not chunk:
            break
        try:
            out += inflate.decompress(chunk, limit - len(out))
        except zlib.error:
            break
        if inflate.eof:
            break
    return bytes(out[:limit])


def _pcapng_tail_drops(path: str) -> int | None:
    """Dropped packets from the Interface Statistics Blocks at the end of an
    uncompressed pcapng file (dumpcap writes one per interface as it closes a
    file), walking back over blocks by their trailing length. Summed over
    interfaces; None when the file has none near its end.

    dumpcap's counters run from the start of the capture, not of the file;
    we report them as the file records them."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(0)
            magic = stream.read(12)
            if len(magic) < 12:
                return None
            order = "<" if magic[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            end = size
            drops: dict[int, int] = {}
            for _ in range(TAIL_BLOCKS):
                if end < 12:
                    break
                stream.seek(end - 4)
                (length,) = struct.unpack(order + "I", stream.read(4))
                if length < 12 or length % 4 or length > end:
                    break
                start = end - length
                stream.seek(start)
                block = stream.read(length)
                (kind,) = struct.unpack(order + "I", block[:4])
                if kind == PCAPNG_ISB and length >= 24:
                    (interface,) = struct.unpack(order + "I", block[8:12])
                    dropped = _isb_drops(block[20 : length - 4], order)
                    if dropped is not None and interface not in drops:
                        drops[interface] = dropped
                elif kind == 0x0A0D0D0A:  # a section header: earlier blocks are another section
                    break
                end = start
    except OSError:
        return None
    return sum(drops.values()) if drops else None


def _isb_drops(options: bytes, order: str) -> int | None:
    at = 0
    found: int | None = None
    while at + 4 <= len(options):
        code, length = struct.unpack(order + "HH", options[at : at + 4])
        if code == 0:
            break
        value = options[at + 4 : at + 4 + length]
        if code in (ISB_IFDROP, ISB_OSDROP) and length == 8:
            found = (found or 0) + struct.unpack(order + "Q", value)[0]
        at += 4 + length + (-length % 4)
    return found
