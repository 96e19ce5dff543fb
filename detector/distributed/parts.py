"""Parts of the input: whole files, or byte ranges of big classic pcap files
cut on record boundaries, each read by one task.

A classic pcap file is a 24-byte header and records of a 16-byte header
(seconds, fraction, captured length, length on the wire) plus the captured
bytes. Nothing marks where a record starts, so a cut is found the way a reader
resynchronises: from the wanted offset, try each byte as a record start and
keep the first one from which ``CHAIN_RECORDS`` records follow one another
(plausible lengths and times, each ending where the next begins) or end
exactly at the end of the file. A false start would have to fake sixteen
consistent record headers in a row; captured bytes do not.

Only the few cut points are searched (a few kB read each), not every record:
planning a 2.4 GB file takes milliseconds.

pcapng is cut on blocks: a numba pass over the block headers
(``detector.capture.files.index_pcapng``) finds an Enhanced Packet Block at each wanted
offset and every section header and interface description before it, which
are carried to the part as its header. Compressed files and standard input are
read whole by one task each.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

PCAP_HEADER_BYTES = 24
RECORD_HEADER_BYTES = 16
MAX_RECORD_BYTES = 262_144  # the reader's limit (detector/capture: larger is damage)
CHAIN_RECORDS = 16
SEARCH_BYTES = 1 << 20  # how far past a wanted cut a record start is looked for
# Magic → (byte order, fraction units per second): microsecond and nanosecond files.
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
PCAPNG_SHB_TYPE = 0x0A0D0D0A
MAX_HEADER_BLOCKS = 4096  # section headers and interface descriptions in one pcapng file
# Record times of one capture lie within this of its first record's time.
TIME_SPREAD_SECONDS = 366 * 86_400


@dataclass(frozen=True)
class Part:
    """Bytes ``start``–``end`` of ``path`` (``end`` None: to the end), read
    after ``header`` (the file's own header, for a range past it). ``index``:
    place in the input stream; ``file_index``: which input file."""

    path: str
    index: int
    file_index: int
    start: int = 0
    end: int | None = None
    header: bytes = b""

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None

    @property
    def size(self) -> int:
        """Bytes this part covers on disk (0 when unknown: standard input)."""
        if self.end is not None:
            return self.end - self.start
        try:
            return max(os.path.getsize(self.path) - self.start, 0)
        except OSError:
            return 0

    def describe(self) -> str:
        if self.whole:
            return self.path
        end = self.end if self.end is not None else "end"
        return f"{self.path} (bytes {self.start}–{end})"


def plan_parts(paths: list[str], part_bytes: int) -> list[Part]:
    """The parts of ``paths`` (in stream order): uncompressed classic pcap files
    larger than ``part_bytes`` are cut into ranges of about that size; every
    other input is one part."""
    if part_bytes < 1 << 16:
        raise ValueError(f"part_bytes must be at least 65536 (got {part_bytes})")
    parts: list[Part] = []
    for file_index, path in enumerate(paths):
        ranges = _pcapng_ranges(path, part_bytes)
        if ranges:
            for start, end, header in ranges:
                parts.append(Part(path, len(parts), file_index, start, end, header))
            continue
        cuts = _pcap_cuts(path, part_bytes)
        if not cuts:
            parts.append(Part(path, len(parts), file_index))
            continue
        with open(path, "rb") as f:
            header = f.read(PCAP_HEADER_BYTES)
        edges = [PCAP_HEADER_BYTES, *cuts]
        for k, start in enumerate(edges):
            end = edges[k + 1] if k + 1 < len(edges) else None
            # The first range starts after the header the reader reads anyway.
            parts.append(Part(path, len(parts), file_index, start, end, header))
    return parts


def _size_to_cut(path: str, part_bytes: int) -> int | None:
    """The size of a file worth cutting into parts of about ``part_bytes``;
    None for standard input, a file too small, or one that cannot be read
    (the task reading it whole reports the problem, located)."""
    if path == "-":
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    return size if size > part_bytes + part_bytes // 2 else None


def _pcap_cuts(path: str, part_bytes: int) -> list[int]:
    """Record starts about ``part_bytes`` apart (none: read the file whole)."""
    size = _size_to_cut(path, part_bytes)
    if size is None:
        return []
    try:
        with open(path, "rb") as f:
            header = f.read(PCAP_HEADER_BYTES)
            if len(header) < PCAP_HEADER_BYTES or header[:4] not in PCAP_MAGICS:
                return []  # pcapng, gzip or not a capture: one task reads (or reports) it
            order, units = PCAP_MAGICS[header[:4]]
            first = f.read(RECORD_HEADER_BYTES)
            if len(first) < RECORD_HEADER_BYTES:
                return []
            first_seconds = struct.unpack(order + "I", first[:4])[0]
            cuts: list[int] = []
            want = part_bytes
            while want < size - part_bytes // 2:
                f.seek(want)
                window = f.read(SEARCH_BYTES + CHAIN_RECORDS * (MAX_RECORD_BYTES + 16))
                found = find_record_start(window, want, size, order, units, first_seconds)
                if found is None:
                    want += SEARCH_BYTES  # damaged here: try further on
                    continue
                if not cuts or found > cuts[-1]:
                    cuts.append(found)
                want = found + part_bytes
            return cuts
    except OSError:
        return []  # the task reading it reports the problem, located


def _pcapng_ranges(path: str, part_bytes: int) -> list[tuple[int, int | None, bytes]]:
    """(start, end, header) of each part of a big pcapng file (none: read it whole)."""
    size = _size_to_cut(path, part_bytes)
    if size is None:
        return []
    try:
        with open(path, "rb") as f:
            if f.read(4) != PCAPNG_MAGIC:
                return []
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return []
    from ..capture.files import index_pcapng

    wanted = np.arange(part_bytes, size - part_bytes // 2, part_bytes, dtype=np.int64)
    cuts, marks = index_pcapng(data, wanted, MAX_HEADER_BLOCKS)
    # Past damage there are no cuts (-1): the last part reads to it and reports it.
    cuts = np.unique(cuts[cuts > 0])
    ranges: list[tuple[int, int | None, bytes]] = []
    start = 0
    for cut in [*cuts.tolist(), None]:
        header = b""
        if start:
            # The section in force at ``start`` (its SHB) and its interfaces so far.
            before = marks[marks[:, 0] < start]
            section = np.flatnonzero(before[:, 2] == PCAPNG_SHB_TYPE)
            if not len(section):
                return []
            header = b"".join(
                data[o : o + n].tobytes() for o, n, _t in before[section[-1] :].tolist()
            )
        ranges.append((start, cut, header))
        if cut is not None:
            start = cut
    return ranges if len(ranges) > 1 else []


def find_record_start(
    window: bytes, at: int, size: int, order: str, units: int, first_seconds: int
) -> int | None:
    """The first offset ``at + i`` (i < SEARCH_BYTES) in ``window`` (the file's
    bytes from ``at``) from which ``CHAIN_RECORDS`` records chain, or from which
    the records chain to exactly the end of the file (``size``)."""
    record = struct.Struct(order + "IIII")
    limit = min(SEARCH_BYTES, len(window) - RECORD_HEADER_BYTES)
    for i in range(max(limit, 0)):
        if _chains(window, i, at, size, record, units, first_seconds):
            return at + i
    return None


def _chains(
    window: bytes,
    i: int,
    at: int,
    size: int,
    record: struct.Struct,
    units: int,
    first_seconds: int,
) -> bool:
    pos = i
    for _ in range(CHAIN_RECORDS):
        if at + pos == size:
            return pos != i  # ran exactly to the end of the file
        if pos + RECORD_HEADER_BYTES > len(window):
            return False
        seconds, fraction, captured, wire = record.unpack_from(window, pos)
        if (
            fraction >= units
            or wire == 0  # no packet is 0 bytes on the wire; runs of zero bytes chain so
            or captured > MAX_RECORD_BYTES
            or captured > wire
            or wire > MAX_RECORD_BYTES * 4
            or abs(seconds - first_seconds) > TIME_SPREAD_SECONDS
        ):
            return False
        pos += RECORD_HEADER_BYTES + captured
        if at + pos > size:
            return False
    return True
