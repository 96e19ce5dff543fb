"""Read capture files (pcap, pcapng, either gzip-compressed) into packet batches.

The file is read sequentially into one reused buffer; a numba kernel walks the
records in it and decodes every packet. Memory stays bounded by the buffer and
the batch size whatever the file size. Damage stops the reading of that file
with a :class:`CaptureProblem` naming the byte offset; every packet before it has
already been delivered.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import stat
import sys
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple, Protocol

import numpy as np

from .._kernels import flowtable as fk
from .._kernels import index as ik
from .._kernels import records as rk
from .._kernels.decode import STATUS_NAMES, STATUS_UNKNOWN_LINKTYPE
from ..errors import CaptureError, DecodeError
from .batch import PacketBatch

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
# Classic pcap magic as the bytes appear on disk → (big_endian, nanosecond)
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": (False, False),
    b"\x4d\x3c\xb2\xa1": (False, True),
    b"\xa1\xb2\xc3\xd4": (True, False),
    b"\xa1\xb2\x3c\x4d": (True, True),
}
PCAP_HEADER_BYTES = 24

DEFAULT_BUFFER_BYTES = 64 << 20
# Map windows with their pages already present: one system call instead of a
# page fault per 64 KiB.
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
DEFAULT_BATCH_PACKETS = 1 << 18
MAX_INTERFACES = 1 << 16  # pcapng interface ids are 32-bit; 65,536 is far beyond real files

LINKTYPE_NAMES = {
    0: "BSD loopback",
    1: "Ethernet",
    12: "raw IP",
    14: "raw IP",
    101: "raw IP",
    108: "OpenBSD loopback",
    113: "Linux cooked v1",
    228: "IPv4",
    229: "IPv6",
    276: "Linux cooked v2",
    105: "IEEE 802.11",
    127: "802.11 radiotap",
    9: "PPP",
    192: "PPI",
    195: "IEEE 802.15.4",
    239: "NFLOG",
    249: "Linux vsock",
}


@dataclass
class CaptureProblem:
    """Something wrong with a capture file, located by byte offset.

    ``fatal`` problems stopped the reading of that file early; the others are
    warnings (a last record cut short is normal for a capture still being written).
    """

    path: str
    offset: int | None
    message: str
    fatal: bool
    # The offset counts bytes of the decompressed data of a gzip file, not of
    # the file on disk (problems of the gzip stream itself count those).
    decompressed: bool = False

    def __str__(self) -> str:
        where = f"{at_offset(self.offset, self.decompressed)}: " if self.offset is not None else ""
        return f"{self.path}: {where}{self.message}"


def at_offset(offset: int, decompressed: bool = False) -> str:
    """How a problem line names its place: ``byte offset 1234``, or for the
    records inside a gzip file ``byte offset 1234 of the decompressed data``
    (``zcat FILE | tail -c +1235`` starts there)."""
    return f"byte offset {offset}" + (" of the decompressed data" if decompressed else "")


def walk_problem(why: int, detail: int, packets: int) -> str:
    """Words for a record walker's stop (``records.WALK_*`` and its detail),
    after the ``PATH: byte offset N:`` of the record where it stopped. The one
    description of damage, for capture files and live pcap streams alike."""
    kept = f"{packets} packets before it were read, the rest is skipped"
    if why == rk.WALK_RECORD_TOO_LONG:
        return (
            f"record length {detail} is beyond the {rk.MAX_RECORD_BYTES}-byte limit: the "
            f"capture is damaged here; {kept}"
        )
    if why == rk.WALK_BAD_BLOCK:
        return f"pcapng block length {detail} is impossible (damaged block); {kept}"
    if why == rk.WALK_BAD_SECTION:
        return (
            f"pcapng section header expected here (found 0x{detail & 0xFFFFFFFF:08x}); the "
            f"capture is damaged; {kept}"
        )
    if why == rk.WALK_BAD_VERSION:
        return (
            f"pcapng section of major version {detail} (expected 1: a format we do not read); "
            f"{kept}"
        )
    return f"unexpected reader state {why} (detail {detail}), a bug: please report it; {kept}"


def new_counters() -> np.ndarray:
    """A walker's counters (``records.COUNT_*``), none counted yet."""
    counters = np.zeros(rk.N_COUNTERS, dtype=np.int64)
    counters[rk.COUNT_FIRST_TS] = np.iinfo(np.int64).max
    counters[rk.COUNT_LAST_TS] = np.iinfo(np.int64).min
    return counters


class RecordBuffer(NamedTuple):
    """Where the records of a batch lie while it is read: ``buf[0]`` is byte
    ``base`` of the capture (``batch.offset`` counts from there). pcap records
    are all of link type ``linktype``; pcapng ones (``pcapng``) are of their
    interface's, ``if_linktypes[batch.interface]``."""

    buf: np.ndarray
    base: int
    pcapng: bool
    linktype: int
    if_linktypes: np.ndarray


class PayloadInspector(Protocol):
    """What the reader needs of a payload inspector (``detector.flows.payload``):
    it sees each batch while the batch's records are still in their buffer."""

    def inspect(self, records: RecordBuffer, batch: PacketBatch) -> None: ...


class PacketCounter(Protocol):
    """What the reader needs of a flow table to count packets as it decodes
    them (``detector.flows.FlowTable`` is one)."""

    kernel_params: np.ndarray
    n_export: int

    @property
    def kernel_table(self) -> tuple[np.ndarray, ...]: ...

    @property
    def export_buffer(self) -> np.ndarray: ...

    def handle(self, why: int) -> None: ...

    def ingest(self, batch: PacketBatch) -> None: ...


# The table, parameters and export buffer a walker takes when it only decodes
# (``count`` False): the same array types as a real table's, so numba compiles
# one version of each walker for both uses.
NOT_COUNTING = (
    fk.FlowTableArrays(
        np.full((1, fk.FLOW_COLUMNS), -1, dtype=np.int64),
        np.zeros(2, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.zeros(fk.S_FIELDS, dtype=np.int64),
        np.zeros(2, dtype=np.uint64),
        np.zeros(2, dtype=np.int64),
        np.zeros((2, 256), dtype=np.int64),
        np.zeros((1, fk.EXTRA_COLUMNS), dtype=np.int64),
    ),
    np.zeros(3, dtype=np.int64),
    np.zeros((1, fk.FLOW_COLUMNS), dtype=np.int64),
)


@dataclass
class CaptureStats:
    """What reading one file found."""

    path: str
    format: str = ""
    compressed: bool = False
    packets: int = 0
    wire_bytes: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    linktypes: set[int] = field(default_factory=set)
    status_counts: np.ndarray = field(
        default_factory=lambda: np.zeros(len(STATUS_NAMES), dtype=np.int64)
    )
    unknown_linktype_packets: dict[int, int] = field(default_factory=dict)
    counters: np.ndarray = field(default_factory=new_counters)
    problems: list[CaptureProblem] = field(default_factory=list)
    bytes_consumed: int = 0
    disk_position: int = 0  # bytes of the file on disk read so far (for progress bars)


class _GzipStream:
    """A gzip reader that keeps every byte decompressed before damage.

    ``gzip.GzipFile`` raises on a stream cut short and drops what it had
    decompressed in that call; a capture still being written is cut short by
    nature, so we drive zlib ourselves. Concatenated members are read in turn.
    Corrupt data is located to the byte of the file where zlib finds it
    (``error_offset``), and everything before that byte is decompressed.
    """

    def __init__(self, raw: BinaryIO | _Prepended) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(wbits=31)
        self._started = False  # has the current member received any input?
        self._tail = b""  # compressed bytes read from disk but not yet inflated
        self._damage: tuple[str, int] | None = None  # found; reported once before it is read
        self.error: str | None = None
        self.error_offset = 0  # where in the file on disk zlib found the damage
        self.truncated = False
        self.consumed = 0  # compressed bytes read so far (progress on pipes too)

    def read(self, size: int) -> bytes:
        out: list[bytes] = []
        have = 0
        while have < size and self.error is None:
            if self._tail:
                data, self._tail = self._tail, b""
            elif self._damage is not None:  # everything before it is decompressed
                self.error, self.error_offset = self._damage
                break
            else:
                data = self._raw.read(1 << 20)
                self.consumed += len(data)
            if not data:
                self.truncated = self._started and not self._inflate.eof
                break
            self._started = True
            # The state before this input, to find the damaged byte should
            # there be one (a copy takes about 1 µs, once per 1 MiB read).
            before = self._inflate.copy()
            try:
                piece = self._inflate.decompress(data, size - have)
            except zlib.error as exc:
                bad = first_bad_byte(before, data)
                # zlib's "Error -3 while decompressing data: invalid block type";
                # ``data`` is always the last bytes read from the file.
                reason = str(exc).split(": ", 1)[-1]
                self._damage = (f"gzip data is corrupt ({reason})", self.consumed - len(data) + bad)
                # zlib drops what the failed call decompressed: decompress the
                # input before the damaged byte again, from the state before it.
                self._inflate = before
                self._tail = data[:bad]
                continue
            out.append(piece)
            have += len(piece)
            if self._inflate.eof:
                rest = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                self._started = False
                # Zero padding after the last member is common (tape, dd); ignore it.
                self._tail = rest if rest.strip(b"\x00") else b""
            else:
                self._tail = self._inflate.unconsumed_tail
        return b"".join(out)


def first_bad_byte(inflate: Any, data: bytes) -> int:
    """Where in ``data`` zlib, in the state ``inflate``, finds the damage: the
    shortest input that fails ends with it (zlib reads its input in order)."""

    def fails(length: int) -> bool:
        trial = inflate.copy()
        rest = data[:length]
        try:
            while rest:
                trial.decompress(rest, 1 << 20)
                if trial.eof:
                    return False
                rest = trial.unconsumed_tail
        except zlib.error:
            return True
        return False

    good, bad = 0, len(data)  # fails(bad); not fails(good)
    while bad - good > 1:
        mid = (good + bad) // 2
        if fails(mid):
            bad = mid
        else:
            good = mid
    return bad - 1


def _gzip_end(gz: _GzipStream | None) -> str:
    """``; the gzip stream ends early at byte offset N``, when it does."""
    if gz is None:
        return ""
    if gz.error:
        return f"; {gz.error} at {at_offset(gz.error_offset)}"
    if gz.truncated:
        return f"; the gzip stream ends early at {at_offset(gz.consumed)}"
    return ""


class _Prepended:
    """A non-seekable stream with bytes already read put back in front."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int) -> bytes:
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._raw.read(size)


class _Source:
    """A window on the (decompressed) file: ``window(offset)`` returns
    ``(buffer, base, end, eof)`` where ``buffer[offset - base:end]`` are the next
    bytes and ``eof`` says the file ends at ``end``."""

    def window(self, offset: int) -> tuple[np.ndarray, int, int, bool]:
        raise NotImplementedError


class _MappedSource(_Source):
    """Plain files are mapped, not copied: reading them into a buffer costs as
    much as decoding them (PERF-NOTES). Windows are mapped one at a time so the
    resident size stays bounded however large the file."""

    def __init__(self, raw: BinaryIO, window_bytes: int) -> None:
        self._fd = raw.fileno()
        self._size = os.fstat(self._fd).st_size
        self._window = max(window_bytes, mmap.ALLOCATIONGRANULARITY * 2)

    def window(self, offset: int) -> tuple[np.ndarray, int, int, bool]:
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        length = min(self._window, self._size - start)
        if length <= 0:
            empty = np.empty(0, dtype=np.uint8)
            empty.flags.writeable = False
            return empty, offset, 0, True
        mapped = mmap.mmap(
            self._fd,
            length,
            flags=mmap.MAP_SHARED | _MAP_POPULATE,
            prot=mmap.PROT_READ,
            offset=start,
        )
        with contextlib.suppress(AttributeError, OSError):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        # The array keeps the mapping alive; dropping it unmaps the window.
        return np.frombuffer(mapped, dtype=np.uint8), start, length, start + length >= self._size


class _StreamSource(_Source):
    """Compressed files and pipes: decompress into one reused buffer, sliding the
    unread tail of a window to its front before reading on."""

    def __init__(self, raw: BinaryIO, gz: _GzipStream | None, head: bytes, size: int) -> None:
        self._raw = raw
        self._gz = gz
        self._buf = np.empty(size, dtype=np.uint8)
        self._buf[: len(head)] = np.frombuffer(head, dtype=np.uint8)
        self._base = 0
        self._filled = len(head)
        self._eof = False

    def window(self, offset: int) -> tuple[np.ndarray, int, int, bool]:
        buf = self._buf
        keep = self._filled - (offset - self._base)
        if offset != self._base:
            buf[:keep] = buf[offset - self._base : self._filled]
            self._base = offset
            self._filled = keep
        view = memoryview(buf.data)
        while self._filled < buf.shape[0] and not self._eof:
            if self._gz is None:
                n = self._raw.readinto(view[self._filled :])  # type: ignore[attr-defined]
            else:
                data = self._gz.read(buf.shape[0] - self._filled)
                n = len(data)
                buf[self._filled : self._filled + n] = np.frombuffer(data, dtype=np.uint8)
            if not n:
                self._eof = True
            else:
                self._filled += n
        # Hand the kernels a read-only view, as a mapped window is: numba
        # compiles one version per array type, and a second one costs start-up.
        view_ro = buf.view()
        view_ro.flags.writeable = False
        return view_ro, self._base, self._filled, self._eof


def _mappable(raw: BinaryIO) -> bool:
    try:
        info = os.fstat(raw.fileno())
    except (OSError, AttributeError):
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size > 0


EXPECTED_FORMATS = (
    "expected pcap or pcapng (tcpdump -w, dumpcap, Wireshark; editcap -F pcap converts "
    "other formats)"
)
NOT_WHOLE = "it was not copied whole, or its capture stopped at once"


def _describe_unknown_start(head: bytes, compressed: bool = False) -> str:
    """What is wrong with a file (or a gzip file's data, ``compressed``) whose
    first bytes ``head`` (up to 64 of them) are no capture header, and what to do."""
    data = "its decompressed data" if compressed else "the file"
    but = "gzip-compressed, but " if compressed else ""
    if not head:
        return (
            f"{but}{data} is empty (0 bytes): nothing was written into it, or it was not "
            "copied whole"
        )
    if len(head) < 4 and any(m.startswith(head) for m in (PCAPNG_MAGIC, *PCAP_MAGICS)):
        return (
            f"{but}{data} ends after {len(head)} byte(s), inside the capture's first header: "
            f"{NOT_WHOLE}"
        )
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head[:64])
    if printable >= min(len(head), 64) * 0.9:
        text = (head[:24].decode("ascii", "replace").splitlines() or [""])[0]
        return f"{but}not a pcap or pcapng file: it looks like text ({text!r}); {EXPECTED_FORMATS}"
    shown = head[:8].hex(" ")
    return f"{but}not a pcap or pcapng file (it starts with {shown}); {EXPECTED_FORMATS}"


def pcap_header_problem(major: int, minor: int) -> str | None:
    """What is wrong with a pcap file header's version (at byte offset 4), if anything."""
    if major == 2:
        return None
    return (
        f"pcap version {major}.{minor} is not one we read (expected 2.4); the capture may be "
        "damaged, or written by a tool we do not know: editcap -F pcap converts it"
    )


class CaptureReader:
    """Iterate over the packets of one capture file, in batches.

    >>> for batch in CaptureReader("incident.pcap.gz"):
    ...     print(len(batch), batch.ts_ns[0])

    ``reuse_batch=True`` yields the same arrays each time (fastest; a consumer
    that keeps a batch must ``copy()`` it). ``batch_supply`` hands out the batch
    to fill next (a pool shared with another thread, say).

    With a ``counter`` (a flow table), each packet is counted into it as it is
    decoded, in the same pass; the iterator then yields how many more bytes of
    the file on disk were read at each step (for progress bars), or batches
    with ``keep_batches``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_packets: int = DEFAULT_BATCH_PACKETS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        reuse_batch: bool = False,
        counter: PacketCounter | None = None,
        keep_batches: bool = False,
        batch_supply: Callable[[], PacketBatch] | None = None,
        inspector: PayloadInspector | None = None,
        bpf: str | None = None,
    ) -> None:
        # A path may carry its filter (``bpf.FilteredPath``): every command's
        # readers pass paths through unchanged.
        bpf = bpf if bpf is not None else getattr(path, "bpf", None)
        self.packet_filter = None
        if bpf:
            from .bpf import PacketFilter

            self.packet_filter = PacketFilter(bpf)
        self.path = str(path)
        self.batch_supply = batch_supply
        self.inspector = inspector
        self.counter = counter
        self.keep_batches = keep_batches
        self.position = 0  # bytes of the (decompressed) file read so far
        self.batch_packets = batch_packets
        self.buffer_bytes = max(buffer_bytes, rk.MAX_BLOCK_BYTES * 2)
        self.reuse_batch = reuse_batch
        self.stats = CaptureStats(path=self.path)

    # -- opening -----------------------------------------------------------------
    def _open(self) -> tuple[BinaryIO, _GzipStream | None, bytes]:
        if self.path == "-":
            # A pcap stream on standard input (tcpdump -w - | egress-detector flows -).
            raw = sys.stdin.buffer
            head = raw.read(4)
            if head[:2] == GZIP_MAGIC:
                stream = _GzipStream(_Prepended(head, raw))
                self.stats.compressed = True
                return raw, stream, stream.read(4)
            return raw, None, head
        try:
            raw = open(self.path, "rb")  # noqa: SIM115  (closed by the iterator)
        except FileNotFoundError:
            raise CaptureError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{self.path}: is a directory, not a capture file") from None
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open: {exc.strerror}") from None
        head = raw.read(4)
        if head[:2] == GZIP_MAGIC:
            raw.seek(0)
            stream = _GzipStream(raw)
            self.stats.compressed = True
            return raw, stream, stream.read(4)
        return raw, None, head

    def __iter__(self) -> Iterator[Any]:
        raw, gz, head = self._open()
        try:
            yield from self._read(raw, gz, head)
        finally:
            if raw is not sys.stdin.buffer:
                raw.close()

    def _read(self, raw: BinaryIO, gz: _GzipStream | None, head: bytes) -> Iterator[Any]:
        stats = self.stats
        if head == PCAPNG_MAGIC:
            stats.format = "pcapng"
        elif head in PCAP_MAGICS:
            stats.format = "pcap"
        else:
            raise CaptureError(f"{self.path}: {self._unknown_start(raw, gz, head)}")

        source: _Source
        if gz is None and _mappable(raw):
            source = _MappedSource(raw, self.buffer_bytes)
        else:
            source = _StreamSource(raw, gz, head, self.buffer_bytes)
        buf, base, filled, eof = source.window(0)
        pos = 0
        big_endian = nanosecond = False
        linktype = snaplen = 0
        if stats.format == "pcap":
            if filled < PCAP_HEADER_BYTES:
                raise CaptureError(
                    f"{self.path}: {at_offset(0, gz is not None)}: the pcap file header is cut "
                    f"short ({filled} of 24 bytes{_gzip_end(gz)}): the file ends before its "
                    f"first packet; {NOT_WHOLE}"
                )
            big_endian, nanosecond = PCAP_MAGICS[head]
            order = ">" if big_endian else "<"
            major, minor, _zone, _sigfigs, snaplen, linktype_field = np.frombuffer(
                buf[4:24].tobytes(),
                dtype=np.dtype(f"{order}u2,{order}u2,{order}i4,{order}u4,{order}u4,{order}u4"),
            )[0]
            bad_version = pcap_header_problem(int(major), int(minor))
            if bad_version is not None:
                raise CaptureError(f"{self.path}: {at_offset(4, gz is not None)}: {bad_version}")
            linktype = int(linktype_field) & 0xFFFF  # upper bits: FCS length flags
            snaplen = int(snaplen)
            stats.linktypes.add(linktype)
            pos = PCAP_HEADER_BYTES

        section = np.zeros(rk.SEC_FIELDS, dtype=np.int64)
        interfaces = np.zeros((MAX_INTERFACES, rk.IF_COLUMNS), dtype=np.int64)
        counter = self.counter
        packet_filter = self.packet_filter
        # With a filter, packets are decoded into a batch, filtered, and only
        # then counted (the walker's fused counting would count them all).
        counting = counter is not None and packet_filter is None
        write_out = counter is None or self.keep_batches or packet_filter is not None
        yield_batches = counter is None or self.keep_batches
        if not write_out:
            batch = PacketBatch.empty(1)  # counting alone writes no rows
        elif self.batch_supply is not None:
            batch = self.batch_supply()
        else:
            batch = PacketBatch.empty(self.batch_packets)
        table, params, export = (
            (counter.kernel_table, counter.kernel_params, counter.export_buffer)
            if counter is not None
            else NOT_COUNTING
        )
        n_export = counter.n_export if counter is not None else 0
        counters = stats.counters
        done_on_disk = 0

        while True:
            max_records = len(batch) if write_out else self.batch_packets
            # What both walkers take after their format's own arguments.
            rest = (max_records, counters, batch.arrays(), write_out, counting, table, params,
                    export, n_export)  # fmt: skip
            if stats.format == "pcap":
                n, pos, why, detail, n_export = rk.walk_pcap(
                    buf, pos, filled, big_endian, nanosecond, linktype, snaplen, base, *rest
                )
            else:
                n, pos, why, detail, n_export = rk.walk_pcapng(
                    buf, pos, filled, section, interfaces, base, *rest
                )
            self._account()
            if counter is not None:
                counter.n_export = n_export
                if why == rk.WALK_COUNT_STOPPED:
                    counter.handle(int(detail))
                    # The table may have grown: take its arrays afresh.
                    table, export = counter.kernel_table, counter.export_buffer
                    n_export = counter.n_export
            if n:
                self.position = base + pos
                stats.disk_position = self.position if gz is None else gz.consumed
                if write_out:
                    records = RecordBuffer(
                        buf, base, stats.format == "pcapng", linktype,
                        interfaces[:, rk.IF_LINKTYPE],
                    )  # fmt: skip
                    kept = n
                    if packet_filter is not None:
                        # The packets that pass move to the front of the batch
                        # (the batch itself is what a pool of batches gets back).
                        passed = packet_filter.mask(records, batch.head(n))
                        kept = int(np.count_nonzero(passed))
                        if kept < n:
                            for column in batch.arrays():
                                column[:kept] = column[:n][passed]
                    taken = batch.head(kept)
                    if self.inspector is not None and kept:
                        # While the records are still in the buffer: payload
                        # bytes are not part of the batch.
                        self.inspector.inspect(records, taken)
                    if not yield_batches:
                        if counter is not None and kept:
                            counter.ingest(taken)
                            # The table moved on (exports, growth): the walker
                            # is handed its state afresh.
                            table, export = counter.kernel_table, counter.export_buffer
                            n_export = counter.n_export
                        yield stats.disk_position - done_on_disk
                        done_on_disk = stats.disk_position
                    elif kept:  # (none passed: the same batch is filled again)
                        yield taken
                        if self.batch_supply is not None:
                            batch = self.batch_supply()
                        elif not self.reuse_batch:
                            batch = PacketBatch.empty(self.batch_packets)
                else:
                    yield stats.disk_position - done_on_disk
                    done_on_disk = stats.disk_position
            if why == rk.WALK_COUNT_STOPPED or (why == rk.WALK_OK and pos < filled):
                continue  # more records in this window
            if why in (rk.WALK_OK, rk.WALK_NEED_MORE):
                if eof:
                    if pos < filled:
                        self._problem(
                            base + pos,
                            f"the last record is cut short ({filled - pos} bytes of it are in "
                            "the file); normal for a capture still being written; "
                            f"{stats.packets} packets before it were read",
                            fatal=False,
                        )
                    break
                resume = base + pos
                buf, base, filled, eof = source.window(resume)
                pos = resume - base
                continue
            self._problem(base + pos, walk_problem(why, int(detail), stats.packets), fatal=True)
            break
        stats.bytes_consumed = base + pos

        if gz is not None:
            if gz.error:
                self._problem(
                    gz.error_offset,
                    f"{gz.error}: the file is damaged here (gzip -t says so too); "
                    f"{stats.packets} packets before it were read, the rest cannot be "
                    "decompressed",
                    fatal=True,
                    on_disk=True,
                )
            elif gz.truncated:
                self._problem(
                    gz.consumed,
                    "the gzip stream ends early (file still being written, or copied "
                    "before it was complete); every whole packet in it was read",
                    fatal=False,
                    on_disk=True,
                )
        if stats.format == "pcapng":
            n_if = int(section[rk.SEC_N_INTERFACES])
            stats.linktypes.update(int(x) for x in interfaces[:n_if, rk.IF_LINKTYPE])
        self._report_counters()

    def _unknown_start(self, raw: BinaryIO, gz: _GzipStream | None, head: bytes) -> str:
        """The problem line (after the path) of a file that starts with no
        capture header: where, what is wrong and what to do."""
        if gz is not None and gz.error:
            return (
                f"{at_offset(gz.error_offset)}: {gz.error}, before any packet: the file is "
                "damaged (gzip -t says so too); copy it again from its source"
            )
        if gz is not None and gz.truncated and len(head) < 4:
            return (
                f"{at_offset(gz.consumed)}: the gzip stream ends early, {len(head)} byte(s) "
                f"into its data, before the capture's first header: {NOT_WHOLE}"
            )
        # A few more bytes to describe what the file is (it is refused anyway).
        if gz is not None:
            head += gz.read(60)
        elif raw is sys.stdin.buffer:
            # What has come (a BufferedReader's read1): do not wait for more.
            head += getattr(raw, "read1", raw.read)(60) if len(head) == 4 else b""
        else:
            head += raw.read(60)
        return f"{at_offset(0, gz is not None)}: {_describe_unknown_start(head, gz is not None)}"

    # -- bookkeeping ---------------------------------------------------------------
    def _account(self) -> None:
        s = self.stats
        c = s.counters
        s.packets = int(c[rk.COUNT_PACKETS])
        s.wire_bytes = int(c[rk.COUNT_WIRE_BYTES])
        if s.packets:
            s.first_ns = int(c[rk.COUNT_FIRST_TS])
            s.last_ns = int(c[rk.COUNT_LAST_TS])
        s.status_counts = c[rk.COUNT_STATUS : rk.COUNT_STATUS + len(STATUS_NAMES)].copy()

    def _problem(
        self, offset: int | None, message: str, *, fatal: bool, on_disk: bool = False
    ) -> None:
        """Record a problem at ``offset`` in the (decompressed) capture, or in
        the file on disk (``on_disk``: the gzip stream's own problems)."""
        decompressed = self.stats.compressed and not on_disk
        self.stats.problems.append(CaptureProblem(self.path, offset, message, fatal, decompressed))

    def _report_counters(self) -> None:
        s = self.stats
        c = s.counters
        undescribed = int(c[rk.COUNT_UNKNOWN_INTERFACE])
        unknown = int(s.status_counts[STATUS_UNKNOWN_LINKTYPE]) - undescribed
        if unknown:
            names = ", ".join(
                f"{lt} ({LINKTYPE_NAMES.get(lt, 'unsupported')})" for lt in sorted(s.linktypes)
            )
            self._problem(
                None,
                f"{unknown} packets of a link type we do not decode were counted and skipped "
                f"(link types in file: {names})",
                fatal=False,
            )
        if undescribed:
            self._problem(
                None,
                f"{undescribed} packets name an interface the file never described; "
                "counted, not decoded (their link type is unknown)",
                fatal=False,
            )
        if c[rk.COUNT_TOO_MANY_INTERFACES]:
            self._problem(
                None,
                f"more than {MAX_INTERFACES} interfaces in one section; the extra ones "
                "were ignored",
                fatal=False,
            )


def unreadable(path: str) -> str | None:
    """Why the capture at ``path`` cannot be read at all (missing, a directory,
    not a capture), in the words reading it would say; None when it starts as
    a capture should (or is standard input). Commands check their inputs with
    this before the kernels compile."""
    if path == "-":
        return None
    reader = CaptureReader(path)
    try:
        raw, gz, head = reader._open()
    except CaptureError as exc:
        return str(exc)
    try:
        if head == PCAPNG_MAGIC or head in PCAP_MAGICS:
            return None
        return f"{path}: {reader._unknown_start(raw, gz, head)}"
    finally:
        raw.close()


def index_pcapng(
    data: np.ndarray, wanted: np.ndarray, max_marks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where a whole pcapng file (``data``, mapped) can be cut, from one pass
    over its block headers: the offset of the first packet block at or after
    each of the increasing offsets ``wanted`` (-1: none before the end or
    damage), and (offset, length, type) of every section header and interface
    description block before the walk stopped (at most ``max_marks``)."""
    cuts = np.empty(len(wanted), dtype=np.int64)
    marks = np.zeros((max_marks, 3), dtype=np.int64)
    n_marks, _stopped, _status = ik.index_pcapng(data, wanted, cuts, marks)
    return cuts, marks[:n_marks]


def read_reporting(
    reader: CaptureReader, on_problem: Callable[[CaptureProblem], None] | None
) -> Generator[PacketBatch, None, bool]:
    """``reader``'s batches; False when damage stopped it, said to ``on_problem``
    in one line naming the file (raised without one). What was read is kept."""
    try:
        yield from reader
    except CaptureError as exc:
        if on_problem is None:
            raise
        path = reader.path
        on_problem(CaptureProblem(str(path), None, str(exc).removeprefix(f"{path}: "), True))
        return False
    return True


def read_packets(
    paths: Iterable[str | os.PathLike[str]],
    *,
    batch_packets: int = DEFAULT_BATCH_PACKETS,
    reuse_batch: bool = False,
    on_problem: Callable[[CaptureProblem], None] | None = None,
    stats_out: list[CaptureStats] | None = None,
    counter: PacketCounter | None = None,
    batch_supply: Callable[[], PacketBatch] | None = None,
    inspector: PayloadInspector | None = None,
    bpf: str | None = None,
) -> Iterator[Any]:
    """Packets of several files, in the order given, as one stream of batches
    (with a ``counter``, counted into it, yielding bytes of input read; see
    :class:`CaptureReader`); with ``bpf`` (or paths that carry one,
    ``bpf.FilteredPath``), only the packets that pass that pcap filter.

    Problems go to ``on_problem``; without one, the first fatal problem raises
    :class:`DecodeError` (after the good packets before it were yielded) and
    warnings are ignored. A file that cannot be read at all raises
    :class:`CaptureError` unless ``on_problem`` is given.
    """
    for path in paths:
        reader = CaptureReader(
            path,
            batch_packets=batch_packets,
            reuse_batch=reuse_batch,
            counter=counter,
            batch_supply=batch_supply,
            inspector=inspector,
            bpf=bpf,
        )
        if stats_out is not None:
            stats_out.append(reader.stats)
        if not (yield from read_reporting(reader, on_problem)):
            continue
        for problem in reader.stats.problems:
            if on_problem is not None:
                on_problem(problem)
            elif problem.fatal:
                raise DecodeError(str(problem))


# -- many files ------------------------------------------------------------------

FIRST_PACKETS = 64  # packets read to find where a file starts in time


def capture_inputs(
    paths: Iterable[str | os.PathLike[str]],
    *,
    bpf: str | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> list[str]:
    """The captures to read, as every command that reads files takes them:
    directories expanded to the capture files under them (by content, hidden
    names skipped), a file given twice (the same file, or the same bytes under
    another name) kept once, with a warning, and the files put in order of
    their first packet (as the nightly reads them), so that a flow cut across
    two files given in reverse order is one flow. With ``bpf``, each path
    carries that filter (``bpf.FilteredPath``). Standard input ("-") cannot
    be looked into: with it, the files keep the order given."""
    warn = on_warning or (lambda _message: None)
    expanded: list[str] = []
    empty: list[str] = []
    for path in paths:
        name = os.fspath(path)
        if name != "-" and os.path.isdir(name):
            found = list(_captures_under(name))
            if not found:
                empty.append(f"{name}: a directory with no capture file in it")
            expanded.extend(found)
        else:
            expanded.append(name)
    if empty and not expanded:
        raise CaptureError(empty[0])
    for line in empty:
        warn(line)
    unique = _without_repeats(expanded, warn)
    if "-" not in unique:
        starts = {p: _first_packet_ns(p) for p in unique}
        ordered = sorted(
            unique, key=lambda p: (starts[p] is None, starts[p] if starts[p] is not None else 0)
        )
        if ordered != unique:
            warn(
                "the captures are read in the order of their first packet, not as given: "
                + ", ".join(ordered)
            )
        unique = ordered
    if bpf:
        from .bpf import FilteredPath, PacketFilter

        PacketFilter(bpf)  # a bad expression is said before anything is read
        return [FilteredPath(p, bpf) for p in unique]
    return unique


def overlap_warnings(stats: Sequence[CaptureStats]) -> list[str]:
    """Files read one after the other whose packets overlap in time, and that
    come from the same kind of interface (the same link types): the same
    traffic captured twice, or two sensors' files mixed, would be counted
    twice. One line each."""
    out = []
    previous: CaptureStats | None = None
    for current in stats:
        if current.first_ns is None or current.last_ns is None:
            continue
        if (
            previous is not None
            and previous.last_ns is not None
            and current.first_ns < previous.last_ns
            and current.linktypes == previous.linktypes
        ):
            overlap = (min(previous.last_ns, current.last_ns) - current.first_ns) / 1e9
            out.append(
                f"{previous.path} and {current.path} overlap in time by {overlap:.3f} s from "
                "an interface of the same link type: the same traffic in both files would be "
                "counted twice (give each file once, or each sensor's files to its own run)"
            )
        if previous is None or previous.last_ns is None or (current.last_ns > previous.last_ns):
            previous = current
    return out


def _captures_under(directory: str) -> Iterator[str]:
    """Capture files under ``directory`` (recursively, in name order; hidden
    names skipped), recognised by their first bytes."""
    for folder, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not name.startswith(".") and os.path.isfile(path) and _looks_like_capture(path):
                yield path


def _looks_like_capture(path: str) -> bool:
    try:
        with open(path, "rb") as raw:
            head = raw.read(4)
            if head[:2] == GZIP_MAGIC:
                raw.seek(0)
                head = _GzipStream(raw).read(4)
    except OSError:
        return False
    return head == PCAPNG_MAGIC or head in PCAP_MAGICS


def _without_repeats(paths: list[str], warn: Callable[[str], None]) -> list[str]:
    """``paths`` with each file once: the same file (device and inode) or the
    same content (same size, same BLAKE2b of every byte) given again is left
    out, with a warning."""
    kept: list[str] = []
    seen_files: dict[tuple[int, int], str] = {}
    by_size: dict[int, list[str]] = {}
    digests: dict[tuple[str, int], bytes] = {}
    for path in paths:
        try:
            info = os.stat(path) if path != "-" else None
        except OSError:
            info = None  # the reader says what is wrong with it
        if info is None or not stat.S_ISREG(info.st_mode):
            kept.append(path)
            continue
        same = seen_files.get((info.st_dev, info.st_ino))
        if same is None:
            for other in by_size.get(info.st_size, []):
                # Rotated captures often have the same size: their first 64 KiB
                # tell them apart without reading them whole.
                if _digest(other, digests, 1 << 16) != _digest(path, digests, 1 << 16):
                    continue
                if _digest(other, digests) == _digest(path, digests):
                    same = other
                    break
        if same is not None:
            why = "the same file" if same == path else f"the same content as {same}"
            warn(f"{path}: {why}, given again: read once")
            continue
        seen_files[(info.st_dev, info.st_ino)] = path
        by_size.setdefault(info.st_size, []).append(path)
        kept.append(path)
    return kept


def _digest(path: str, cache: dict[tuple[str, int], bytes], limit: int = -1) -> bytes:
    """BLAKE2b of the file's first ``limit`` bytes (-1: all of them)."""
    if (path, limit) not in cache:
        digest = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as raw:
                if limit >= 0:
                    digest.update(raw.read(limit))
                else:
                    for block in iter(lambda: raw.read(1 << 20), b""):
                        digest.update(block)
        except OSError:
            digest.update(path.encode())  # unreadable: equal to nothing else
        cache[(path, limit)] = digest.digest()
    return cache[(path, limit)]


def _first_packet_ns(path: str) -> int | None:
    """The earliest time among the first packets of ``path`` (None: no packet,
    or it cannot be read; the reader says why when it is read)."""
    try:
        for batch in CaptureReader(path, batch_packets=FIRST_PACKETS, buffer_bytes=1 << 20):
            return int(batch.ts_ns.min()) if len(batch) else None
    except (CaptureError, OSError):
        return None
    return None
