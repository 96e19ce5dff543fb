"""Keep the records of chosen packets, and write them out as a capture file.

:class:`RecordKeeper` sits where a payload inspector sits (``read_packets(...,
inspector=keeper)``): it sees each batch while the batch's records are still in
the reader's buffer, asks its ``choose`` function which rows to keep, and
copies those packets' captured bytes, with their time, lengths and link type,
into a spill file (memory first, a temporary file past 64 MiB). Nothing is
decided about the output until the end: which packets of the kept ones are
wanted (``KeptPackets.select``) and whether one pcap file can hold them (one
link type) or pcapng is needed (:func:`write_capture`).

Records are rewritten, not copied block for block: a pcap record header or a
pcapng Enhanced Packet Block with the packet's own time (nanoseconds, the
resolution the reader computed it in), captured and wire lengths, and link
type, so packets of pcap and pcapng inputs, of several files and interfaces,
go into one file that Wireshark and tshark open.
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from .._kernels.decode import decode_frame
from ..errors import OutputError
from ..outputs import replacing
from .batch import PacketBatch
from .bpf import record_data
from .files import RecordBuffer

SPILL_IN_MEMORY = 64 << 20  # kept bytes held in memory before they go to a temporary file
PCAPNG_EPB = 6
PCAP_NS_MAGIC = 0xA1B23C4D  # pcap with nanosecond times (libpcap, Wireshark read it)
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
IF_TSRESOL = 9  # pcapng option: interface time resolution
TSRESOL_NS = 9  # 10^-9 s
MAX_SNAPLEN = 262144
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6 = 6, 17, 1, 58

# What decides, for a batch, which of its rows to keep (a boolean mask).
Chooser = Callable[[PacketBatch], np.ndarray]


@dataclass
class KeptPackets:
    """The packets kept so far, one row each, in capture order: where their
    bytes lie in the spill, and what each is (time, lengths, link type, the
    input and interface it came from, and its decoded header fields)."""

    spill: IO[bytes]
    at: list[np.ndarray] = field(default_factory=list)  # byte offset in the spill
    rows: list[PacketBatch] = field(default_factory=list)  # the packets' batch rows
    linktype: list[np.ndarray] = field(default_factory=list)
    source: list[np.ndarray] = field(default_factory=list)  # index of the input file
    kept_len: list[np.ndarray] = field(default_factory=list)  # bytes in the spill
    spilled: int = 0

    def columns(self) -> tuple[PacketBatch, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, spill offsets, link types, input index, kept lengths), all packets."""
        from .batch import concat

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

        return (
            concat(self.rows),
            cat(self.at, np.int64),
            cat(self.linktype, np.int64),
            cat(self.source, np.int64),
            cat(self.kept_len, np.int64),
        )


class RecordKeeper:
    """An inspector for :func:`detector.capture.read_packets` that keeps the
    packets ``choose`` picks (module docstring). ``headers_only`` cuts each
    kept packet after its transport header (TCP with its options, UDP, ICMP);
    a packet with no transport header of its own (a later fragment) keeps the
    bytes before its IP payload, as its first fragment showed them, or none."""

    def __init__(self, choose: Chooser, *, headers_only: bool = False) -> None:
        self.choose = choose
        self.headers_only = headers_only
        self.source = 0  # the input file being read (the caller moves it on)
        self.kept = KeptPackets(
            tempfile.SpooledTemporaryFile(max_size=SPILL_IN_MEMORY)  # noqa: SIM115
        )
        self._fragment_prefix: dict[tuple[int, ...], int] = {}

    def inspect(self, records: RecordBuffer, batch: PacketBatch) -> None:
        wanted = np.flatnonzero(self.choose(batch))
        if not len(wanted):
            return
        rows = PacketBatch(*(a[wanted] for a in batch.arrays()))
        data, linktype = record_data(records, rows)
        length = rows.cap_len.astype(np.int64)
        if self.headers_only:
            length = self._headers(records.buf, data, length, linktype, rows)
        # Gather the chosen packets' bytes in one vectorised copy.
        ends = np.cumsum(length)
        index = np.repeat(data - (ends - length), length) + np.arange(
            int(ends[-1]) if len(ends) else 0
        )
        payload = records.buf[index]
        kept = self.kept
        kept.at.append(kept.spilled + ends - length)
        kept.rows.append(rows)
        kept.linktype.append(linktype)
        kept.source.append(np.full(len(wanted), self.source, dtype=np.int64))
        kept.kept_len.append(length)
        kept.spill.write(payload.tobytes())
        kept.spilled += int(ends[-1])

    def _headers(
        self,
        buf: np.ndarray,
        data: np.ndarray,
        length: np.ndarray,
        linktype: np.ndarray,
        rows: PacketBatch,
    ) -> np.ndarray:
        """Each packet's length cut after its transport header."""
        out = length.copy()
        for i in range(len(out)):
            start, caplen = int(data[i]), int(length[i])
            key = (int(rows.src_hi[i]), int(rows.src_lo[i]), int(rows.dst_hi[i]),
                   int(rows.dst_lo[i]), int(rows.proto[i]), int(rows.frag_id[i]))  # fmt: skip
            if rows.frag[i] == 1:  # a later fragment: payload only
                out[i] = min(caplen, self._fragment_prefix.get(key, 0))
                continue
            if rows.ip_version[i] == 0:
                continue  # not IP (ARP, say): no payload of a flow to cut
            packet = decode_frame(buf, start, caplen, int(linktype[i]))
            at = int(packet.transport_at)
            if at < 0:
                continue
            if rows.frag[i] & 2:
                self._fragment_prefix[key] = at - start
            proto = int(packet.proto)
            if proto == IPPROTO_TCP:
                header = (int(buf[at + 12]) >> 4) * 4 if at + 12 < start + caplen else 20
            elif proto in (IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6):
                header = 8
            else:
                header = 0
            out[i] = min(caplen, at - start + header)
        return out


def write_capture(
    output: str,
    kept: KeptPackets,
    chosen: np.ndarray,
    *,
    fmt: str,
    interface_names: dict[tuple[int, int, int], str] | None = None,
    into: str | None = None,
) -> int:
    """Write the kept packets ``chosen`` (indices, in capture order) to
    ``output`` as ``fmt`` ('pcap' or 'pcapng'); returns how many. ``into``:
    the file to write (a partial file ``outputs.replacing`` gave for
    ``output``, made before the reading); by default ``output`` is replaced
    when the file is complete. pcapng has
    one interface per (input file, interface, link type) the packets came from,
    with its link type and nanosecond times; pcap needs one link type."""
    rows, at, linktype, source, kept_len = kept.columns()
    chosen = np.asarray(chosen, dtype=np.int64)
    types = np.unique(linktype[chosen]) if len(chosen) else np.array([1])
    if fmt == "pcap" and len(types) > 1:
        raise OutputError(
            output,
            f"the packets have {len(types)} link types ({', '.join(map(str, types.tolist()))}) "
            "and a pcap file holds one: name the output .pcapng",
        )
    kept.spill.flush()
    with contextlib.ExitStack() as stack:
        path = into if into is not None else stack.enter_context(replacing(output))
        out = stack.enter_context(open(path, "wb"))
        if fmt == "pcap":
            lt = int(types[0]) if int(types[0]) >= 0 else 1
            out.write(struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, MAX_SNAPLEN, lt))
            interface = np.zeros(len(chosen), dtype=np.int64)
        else:
            out.write(_section_header())
            # Every interface first (a packet block may only name one described
            # before it): one per (input, interface, link type), in order of use.
            keys = np.stack([source[chosen], rows.interface[chosen].astype(np.int64),
                             linktype[chosen]], axis=1)  # fmt: skip
            unique, first, interface = np.unique(
                keys, axis=0, return_index=True, return_inverse=True
            )
            order = np.argsort(first, kind="stable")
            renumber = np.empty(len(order), dtype=np.int64)
            renumber[order] = np.arange(len(order))
            interface = renumber[interface.ravel()]
            for k in order.tolist():
                key = (int(unique[k, 0]), int(unique[k, 1]), int(unique[k, 2]))
                out.write(_interface_block(key[2], (interface_names or {}).get(key, "")))
        # A chunk of packets at a time: read their bytes from the spill in one
        # go (they are in capture order there too), write their records in one.
        done = np.cumsum(kept_len[chosen])
        at_chunk = 0
        while at_chunk < len(chosen):
            before = int(done[at_chunk - 1]) if at_chunk else 0
            stop = max(int(np.searchsorted(done, before + WRITE_CHUNK_BYTES)), at_chunk + 1)
            part = chosen[at_chunk:stop]
            out.write(_records(kept, part, rows, at, kept_len, interface[at_chunk:stop], fmt))
            at_chunk = stop
    return len(chosen)


WRITE_CHUNK_BYTES = 32 << 20


def _records(
    kept: KeptPackets,
    part: np.ndarray,
    rows: PacketBatch,
    at: np.ndarray,
    kept_len: np.ndarray,
    interface: np.ndarray,
    fmt: str,
) -> bytes:
    """The records of the kept packets ``part`` (pcap record headers, or pcapng
    Enhanced Packet Blocks on interfaces ``interface``), built column-wise."""
    first, last = int(at[part[0]]), int(at[part[-1]] + kept_len[part[-1]])
    kept.spill.seek(first)
    spill = np.frombuffer(kept.spill.read(last - first), dtype=np.uint8)
    length = kept_len[part]
    ts = rows.ts_ns[part].astype(np.int64)
    wire = np.maximum(rows.wire_len[part].astype(np.int64), length)
    if fmt == "pcap":
        head = np.zeros((len(part), 4), dtype="<u4")
        head[:, 0] = (ts // 1_000_000_000) & 0xFFFFFFFF
        head[:, 1] = ts % 1_000_000_000
        head[:, 2] = length
        head[:, 3] = wire
        header_bytes, padding, trailer = 16, np.zeros(len(part), np.int64), 0
    else:
        padding = -length % 4
        block = 32 + length + padding
        stamp = ts.astype(np.uint64)
        head = np.zeros((len(part), 7), dtype="<u4")
        head[:, 0] = PCAPNG_EPB
        head[:, 1] = block
        head[:, 2] = interface
        head[:, 3] = stamp >> np.uint64(32)
        head[:, 4] = stamp & np.uint64(0xFFFFFFFF)
        head[:, 5] = length
        head[:, 6] = wire
        header_bytes, trailer = 28, 4
    record = header_bytes + length + padding + trailer
    ends = np.cumsum(record)
    starts = ends - record
    out = np.zeros(int(ends[-1]), dtype=np.uint8)
    # Headers: each record's first ``header_bytes`` bytes.
    heads = head.view(np.uint8).reshape(len(part), header_bytes)
    out[(starts[:, None] + np.arange(header_bytes)).ravel()] = heads.ravel()
    # Data: the packet's kept bytes, from the spill.
    total = int(length.sum())
    if total:
        source = np.repeat(at[part] - first - (np.cumsum(length) - length), length)
        target = np.repeat(starts + header_bytes - (np.cumsum(length) - length), length)
        step = np.arange(total)
        out[target + step] = spill[source + step]
    if trailer:
        tail = np.frombuffer(block.astype("<u4").tobytes(), dtype=np.uint8).reshape(-1, 4)
        out[(ends[:, None] - 4 + np.arange(4)).ravel()] = tail.ravel()
    return out.tobytes()


def _section_header() -> bytes:
    body = struct.pack("<IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1)
    length = 12 + len(body)
    return struct.pack("<II", 0x0A0D0D0A, length) + body + struct.pack("<I", length)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _interface_block(linktype: int, name: str) -> bytes:
    options = b""
    if name:
        options += _option(2, name.encode("utf-8", "replace")[:200])  # if_name
    options += _option(IF_TSRESOL, bytes([TSRESOL_NS])) + struct.pack("<HH", 0, 0)
    body = struct.pack("<HHI", max(linktype, 0) & 0xFFFF, 0, MAX_SNAPLEN) + options
    length = 12 + len(body)
    return struct.pack("<II", 1, length) + body + struct.pack("<I", length)
