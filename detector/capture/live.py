"""Live packet sources: a Linux ``AF_PACKET`` ``TPACKET_V3`` ring, a pcap stream
on standard input, and scapy's sniffer (portable, slow).

Every source fills the same :class:`PacketBatch` the file readers fill, through
numba kernels: the ring is walked in place (``_kernels/ring.py``), a stream is
walked by the pcap/pcapng walkers of the file reader. The hot path makes no
Python object per packet (the scapy backend excepted, which is why it is slow).

>>> source = RingSource("eth1", RingConfig(), bpf="not port 22")
>>> batch = PacketBatch.empty(source.batch_rows)
>>> n = source.read(batch, timeout=1.0)   # rows written, 0 after the timeout
>>> source.close()                        # promiscuous mode ends with the socket
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import select
import socket
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._kernels import records as rk
from .._kernels import ring as ringk
from .._kernels.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW
from ..errors import CaptureError, DetectorError
from .batch import PacketBatch
from .bpf import BPF_RET_K, MAX_SNAPLEN, compile_bpf
from .files import (
    GZIP_MAGIC,
    NOT_COUNTING,
    PCAP_HEADER_BYTES,
    PCAP_MAGICS,
    PCAPNG_MAGIC,
    PayloadInspector,
    RecordBuffer,
    at_offset,
    first_bad_byte,
    new_counters,
    pcap_header_problem,
    walk_problem,
)

# <linux/if_ether.h>, <linux/if_packet.h>, <asm-generic/socket.h>
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20
TPACKET_V3 = 2
# Not PACKET_FANOUT_HASH (0): the kernel's flow hash takes the ports of whole
# packets but only the addresses of fragments (which carry no ports past the
# first), so a UDP flow's big, fragmented datagrams and its small ones land on
# different sockets. Nor PACKET_FANOUT_FLAG_DEFRAG: the group's sockets then
# receive reassembled datagrams, not the fragments on the wire (7 packets
# counted where 18 were sent; tests/test_live.py). A classic BPF program that
# hashes the two addresses does it (Linux 4.3).
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_DATA = 22
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33  # root may exceed net.core.rmem_max

# <linux/if_arp.h>: interface hardware type → the link type its frames start with
ARPHRD_LINKTYPES = {
    1: LINKTYPE_ETHERNET,  # ARPHRD_ETHER (also veth, bridges, bonds)
    772: LINKTYPE_ETHERNET,  # ARPHRD_LOOPBACK: a zeroed Ethernet header
    65534: LINKTYPE_RAW,  # ARPHRD_NONE: tun, WireGuard
    768: LINKTYPE_RAW,  # ARPHRD_TUNNEL (ipip)
    776: LINKTYPE_RAW,  # ARPHRD_SIT
    778: LINKTYPE_RAW,  # ARPHRD_IPGRE
    512: LINKTYPE_RAW,  # ARPHRD_PPP
}

DEFAULT_BATCH_ROWS = 1 << 15  # fits in L2 with the flow table's working set


@dataclass(frozen=True)
class RingConfig:
    """The receive ring's geometry. Memory is ``block_size * block_count`` per
    worker; a block is handed to us when full or ``retire_ms`` after its first
    packet, whichever comes first (so a quiet link still delivers promptly)."""

    block_size: int = 1 << 20
    block_count: int = 64
    frame_size: int = 2048
    retire_ms: int = 50
    snaplen: int = 0  # bytes kept of each packet; 0: whole packets

    def check(self) -> None:
        page = mmap.PAGESIZE
        if self.block_size < page or self.block_size & (self.block_size - 1):
            raise DetectorError(
                f"--block-size {self.block_size}: must be a power of two of at least the "
                f"page size ({page})"
            )
        if not 16 <= self.frame_size <= self.block_size or self.frame_size % 16:
            raise DetectorError(
                f"--frame-size {self.frame_size}: must be a multiple of 16 between 16 and "
                f"the block size ({self.block_size})"
            )
        if self.block_count < 2:
            raise DetectorError(f"--block-count {self.block_count}: must be at least 2")
        if self.snaplen < 0 or self.snaplen > MAX_SNAPLEN:
            raise DetectorError(f"--snaplen {self.snaplen}: must be 0 (whole) to {MAX_SNAPLEN}")


@dataclass
class SourceStats:
    """What a source has seen: packets it delivered, and what the kernel says
    it received and dropped (ring buffer full) since the source opened."""

    delivered: int = 0
    kernel_received: int = 0
    kernel_dropped: int = 0


def interface_linktype(iface: str) -> int:
    """The link type of frames captured on ``iface`` (from its ARPHRD type)."""
    path = Path("/sys/class/net") / iface / "type"
    try:
        hardware = int(path.read_text())
    except FileNotFoundError:
        raise CaptureError(f"interface {iface!r} does not exist (see `ip link`)") from None
    except (OSError, ValueError) as exc:
        raise CaptureError(f"interface {iface!r}: cannot read its type: {exc}") from None
    if hardware not in ARPHRD_LINKTYPES:
        raise CaptureError(
            f"interface {iface!r} has hardware type {hardware}, which we do not decode "
            "(Ethernet, loopback and raw-IP interfaces are supported)"
        )
    return ARPHRD_LINKTYPES[hardware]


CAPTURE_NEEDS = "needs root or CAP_NET_RAW"


def check_capture_access(iface: str) -> None:
    """Raise :class:`CaptureError` now if this process may not open a packet
    socket (before the kernels compile, not a minute later)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        raise CaptureError(
            f"capturing on {iface} {CAPTURE_NEEDS} (run as root, optionally with --user to "
            "drop privileges afterwards, or as a service: docs/live.md)"
        ) from None
    except OSError:  # no AF_PACKET here: the source says so when it opens
        pass


def _attach_filter(
    sock: socket.socket, program: bytes, option: int = SO_ATTACH_FILTER
) -> ctypes.Array[ctypes.c_char]:
    """Attach classic BPF ``program`` as the socket's filter (or, with
    ``PACKET_FANOUT_DATA``, as its fanout group's selector); returns the buffer
    the kernel copied from (kept alive until the call returned, which is all
    the kernel needs)."""
    insns = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(insns))  # struct sock_fprog
    level = socket.SOL_SOCKET if option == SO_ATTACH_FILTER else SOL_PACKET
    sock.setsockopt(level, option, fprog)
    return insns


# Classic BPF (<linux/filter.h>, <linux/bpf_common.h>)
BPF_LD_W_ABS, BPF_LD_H_ABS = 0x20, 0x28
BPF_JEQ_K, BPF_TAX, BPF_XOR_X, BPF_MUL_K, BPF_RSH_K, BPF_RET_A = 0x15, 0x07, 0xAC, 0x24, 0x74, 0x16
SKF_AD_PROTOCOL = -0x1000  # SKF_AD_OFF + SKF_AD_PROTOCOL: the packet's ethertype
SKF_NET_OFF = -0x100000  # loads relative to the network (IP) header
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
GOLDEN_32 = 0x9E3779B1  # Knuth's multiplicative hash: mixes the xor into the high bits


def fanout_program() -> bytes:
    """The fanout group's selector: the xor of the source and destination
    addresses (symmetric: both directions agree), mixed, for IPv4 and IPv6;
    the kernel takes it modulo the group's size. Only addresses, so the
    fragments of a datagram (only the first has ports) and the flow's whole
    packets go to the same socket; other packets (ARP, …) to the first.
    Loads are relative to the IP header (``SKF_NET_OFF``), so a VLAN tag the
    kernel took off, or the link type, does not move them."""

    def insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)

    def xor_words(offsets: range) -> list[bytes]:
        out = [insn(BPF_LD_W_ABS, SKF_NET_OFF + offsets[0]), insn(BPF_TAX, 0)]
        for offset in offsets[1:]:
            out += [insn(BPF_LD_W_ABS, SKF_NET_OFF + offset), insn(BPF_XOR_X, 0), insn(BPF_TAX, 0)]
        return out

    mix = [insn(BPF_MUL_K, GOLDEN_32), insn(BPF_RSH_K, 16), insn(BPF_RET_A, 0)]
    ipv4 = xor_words(range(12, 20, 4)) + mix  # source and destination: bytes 12-19
    ipv6 = xor_words(range(8, 40, 4)) + mix  # bytes 8-39
    other = [insn(BPF_RET_K, 0)]
    head = [insn(BPF_LD_H_ABS, SKF_AD_PROTOCOL)]
    # jt/jf count instructions to skip: [v4?][v6?][other][ipv4…][ipv6…]
    head.append(insn(BPF_JEQ_K, ETHERTYPE_IPV4, jt=2, jf=0))
    head.append(insn(BPF_JEQ_K, ETHERTYPE_IPV6, jt=1 + len(ipv4), jf=0))
    return b"".join(head + other + ipv4 + ipv6)


class RingReader:
    """Reads the packets of a ``TPACKET_V3`` receive ring (a :class:`RingSource`'s
    mapping, or a :func:`fake_ring`) into batches, with the payload inspector
    reading their frames before the blocks go back to the kernel."""

    def __init__(
        self,
        ring: np.ndarray,
        block_size: int,
        block_count: int,
        linktype: int,
        max_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        self.ring = ring
        self.block_size = block_size
        self.block_count = block_count
        self.linktype = linktype
        self.max_rows = max_rows
        self.counters = new_counters()
        self.state = np.zeros(ringk.R_FIELDS, dtype=np.int64)
        # Row offsets point 16 bytes before each frame, as pcap records do.
        self._records = RecordBuffer(ring, 0, False, linktype, np.array([linktype], np.int64))

    def read(self, batch: PacketBatch, inspector: PayloadInspector | None = None) -> int:
        """Decode the packets of every ready block into ``batch`` (from row 0);
        returns rows written. An ``inspector`` reads their payloads while they
        are still in the ring (the blocks are held until it has)."""
        hold = inspector is not None
        rows, _why = ringk.walk_ring(
            self.ring, self.block_size, self.block_count, self.state, self.linktype, False, hold,
            min(len(batch), self.max_rows), self.counters, batch.arrays(),
        )  # fmt: skip
        if inspector is not None:
            if rows:
                inspector.inspect(self._records, batch.head(rows))
            self.release()
        return int(rows)

    def release(self) -> int:
        """Hand the blocks a read held back to the kernel; returns how many."""
        return int(ringk.release_held(self.ring, self.block_size, self.block_count, self.state))

    @property
    def damaged_blocks(self) -> int:
        return int(self.counters[ringk.COUNT_RING_DAMAGED])

    @classmethod
    def warm_up(cls) -> None:
        """Compile the ring's kernels (reading blocks, handing held ones back)
        on a fake ring of a few made-up packets."""
        block_size = 1 << 14
        ring = fake_ring(sample_items(), block_size=block_size, block_count=2)
        reader = cls(ring, block_size, 2, LINKTYPE_ETHERNET)
        reader.read(PacketBatch.empty(64))
        reader.release()


class RingSource:
    """Packets from one ``AF_PACKET`` socket with a ``TPACKET_V3`` ring on
    ``iface``, in promiscuous mode while it is open. With ``fanout_group``,
    the socket joins a hash fanout group: the kernel spreads flows over the
    group's sockets, both directions of a flow to the same one."""

    name = "ring"

    def __init__(
        self,
        iface: str,
        config: RingConfig | None = None,
        *,
        bpf: str | None = None,
        fanout_group: int | None = None,
        promiscuous: bool = True,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        self.config = config or RingConfig()
        self.config.check()
        self.iface = iface
        self.linktype = interface_linktype(iface)
        self.batch_rows = batch_rows
        self._stats = SourceStats()
        program = compile_bpf(bpf, self.linktype, self.config.snaplen)
        cfg = self.config
        try:
            # Protocol 0: the socket receives nothing until it is bound below,
            # so no packet of another interface reaches the ring meanwhile.
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CaptureError(
                f"capturing on {iface} needs root or CAP_NET_RAW (run as root, "
                "optionally with --user to drop privileges afterwards)"
            ) from None
        try:
            sock = self.sock
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            if Path(f"/sys/class/net/{iface}/type").read_text().strip() == "772":
                # Loopback shows each packet twice, leaving and arriving: keep one.
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            _attach_filter(sock, program)
            frames = cfg.block_size // cfg.frame_size * cfg.block_count
            # struct tpacket_req3: block size, block count, frame size, frame
            # count, retire timeout (ms), private bytes per block, features.
            req = struct.pack(
                "7I", cfg.block_size, cfg.block_count, cfg.frame_size, frames, cfg.retire_ms, 0, 0
            )
            try:
                sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            except OSError as exc:
                raise CaptureError(
                    f"cannot set up a {cfg.block_size * cfg.block_count >> 20} MiB ring on "
                    f"{iface}: {exc.strerror} (try smaller --block-size / --block-count)"
                ) from None
            self._size = cfg.block_size * cfg.block_count
            self._map = mmap.mmap(
                sock.fileno(), self._size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
            self.ring = np.frombuffer(self._map, dtype=np.uint8)
            self._reader = RingReader(
                self.ring, cfg.block_size, cfg.block_count, self.linktype, batch_rows
            )
            try:
                sock.bind((iface, ETH_P_ALL))
            except OSError as exc:
                raise CaptureError(f"cannot capture on {iface}: {exc.strerror}") from None
            if promiscuous:
                index = socket.if_nametoindex(iface)
                mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")  # packet_mreq
                # A membership, not the IFF_PROMISC flag: the kernel drops it
                # when the socket closes, however the process ends.
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            if fanout_group is not None:
                # Spread by address pair (fanout_program): every fragment of a
                # datagram and every packet of a flow, both ways, to one socket.
                fanout = (fanout_group & 0xFFFF) | (PACKET_FANOUT_CBPF << 16)
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, fanout)
                _attach_filter(sock, fanout_program(), PACKET_FANOUT_DATA)
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(
        self, batch: PacketBatch, timeout: float, inspector: PayloadInspector | None = None
    ) -> int:
        """Decode ready packets into ``batch`` (from row 0); wait up to
        ``timeout`` seconds for a block when none is ready. Returns rows
        written. An ``inspector`` reads the payloads of those rows while they
        are still in the ring."""
        rows = self._walk(batch, inspector)
        if rows == 0 and timeout > 0:
            try:
                self._poll.poll(int(timeout * 1000))
            except InterruptedError:  # a signal: the caller looks at its flags
                return 0
            rows = self._walk(batch, inspector)
        return rows

    def wait(self, timeout: float) -> None:
        """Return when a block may be ready, or after ``timeout`` seconds."""
        with contextlib.suppress(InterruptedError):  # a signal: the caller looks at its flags
            self._poll.poll(int(timeout * 1000))

    def _walk(self, batch: PacketBatch, inspector: PayloadInspector | None) -> int:
        rows = self._reader.read(batch, inspector)
        self._stats.delivered += rows
        return rows

    def stats(self) -> SourceStats:
        """Counters since the source opened (reading them from the kernel resets
        the kernel's, so they are summed here)."""
        if self.sock.fileno() >= 0:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            received, dropped, _freezes = struct.unpack("3I", raw)  # struct tpacket_stats_v3
            self._stats.kernel_received += received
            self._stats.kernel_dropped += dropped
        return SourceStats(**vars(self._stats))

    @property
    def damaged_blocks(self) -> int:
        return self._reader.damaged_blocks

    def close(self) -> None:
        # The ring's array (the reader's too) pins the mapping: release it first.
        vars(self).pop("_reader", None)
        vars(self).pop("ring", None)
        mapped = getattr(self, "_map", None)
        if mapped is not None:
            del self._map
            mapped.close()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()


class StreamSource:
    """A pcap or pcapng stream (``tcpdump -i eth1 -w - | egress-detector live -r -``),
    gzip-compressed or not (found from its first bytes): whatever has arrived
    is decoded at once, without waiting for a full buffer, so alerts follow
    the stream as they do a ring. Offsets in a gzip stream's problems count
    its decompressed bytes."""

    name = "stream"

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        buffer_bytes: int = 16 << 20,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        self._stream = stream if stream is not None else sys.stdin.buffer
        self._fd = self._stream.fileno()
        self._buf = np.empty(max(buffer_bytes, rk.MAX_BLOCK_BYTES * 2), dtype=np.uint8)
        self._start = 0  # unread bytes are _buf[_start:_end]
        self._end = 0
        self._consumed = 0  # stream bytes before _buf[0]
        self.batch_rows = batch_rows
        self.counters = new_counters()
        self.eof = False
        self._drained = False
        self.problem: str | None = None
        self._format = ""
        self._big_endian = self._nanosecond = False
        self.linktype = 0
        self._snaplen = 0
        self._section = np.zeros(rk.SEC_FIELDS, dtype=np.int64)
        self._interfaces = np.zeros((256, rk.IF_COLUMNS), dtype=np.int64)
        self._delivered = 0
        self.latest_ns: int | None = None  # the stream's clock: its latest packet
        self._latest_at = time.monotonic()
        self._sniffed = b""  # the stream's first byte, until a second says if it is gzip
        self._inflater: Any = None  # a zlib decompressor once the stream is gzip
        self._compressed = b""  # compressed bytes read, not yet decompressed
        self._compressed_read = 0
        self._sniffing = True  # until the first bytes say whether it is gzip
        self._member_open = False  # inside a gzip member (its end not yet read)
        self._gzip_cut = False  # the stream ended inside a gzip member
        self._gzip_damage: str | None = None

    def fileno(self) -> int:
        return self._fd

    @property
    def gzip(self) -> bool:
        return self._inflater is not None

    def _at(self, offset: int) -> str:
        return at_offset(offset, self.gzip)

    def check_start(self, timeout: float) -> None:
        """Read the stream's first bytes, waiting up to ``timeout`` seconds for
        them, and raise :class:`CaptureError` at once when they are no capture
        or the stream ends before its header; a stream that sends nothing in
        that time is checked when it does."""
        deadline = time.monotonic() + timeout
        while not self._format and self.problem is None:
            if self._header():
                return
            if self.eof:
                self.close()
                raise CaptureError(self.problem or "standard input: no pcap/pcapng header")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._fill(left)
        if self._gzip_damage is not None and not self._format:
            raise CaptureError(f"standard input: {self._gzip_damage}")

    def _fill(self, timeout: float) -> None:
        if self.eof:
            return
        if not self._compressed:
            ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
            if not ready:
                return
        if self._start and self._start == self._end:
            self._consumed += self._start  # (byte offsets after this were short of it)
            self._start = self._end = 0
        elif self._end == self._buf.shape[0]:
            keep = self._end - self._start
            self._buf[:keep] = self._buf[self._start : self._end]
            self._consumed += self._start
            self._start, self._end = 0, keep
        space = self._buf.shape[0] - self._end
        if self._compressed:
            data = self._inflate(b"", space)
        else:
            try:
                data = os.read(self._fd, space if self._inflater is None else 1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    return
                raise
            if not data:
                self.eof = True
                if self._sniffed:  # one byte in all: plain data, said by close()
                    data, self._sniffed = self._sniffed, b""
                else:
                    self._gzip_cut = self._member_open
                    return
            elif self._sniffing:
                # The first bytes: gzip (zcat's magic) or the capture itself.
                data, self._sniffed = self._sniffed + data, b""
                if len(data) < 2 and data == GZIP_MAGIC[:1]:
                    self._sniffed = data
                    return
                self._sniffing = False
                if data[:2] == GZIP_MAGIC:
                    self._inflater = zlib.decompressobj(wbits=31)
            if self._inflater is not None and not self.eof:
                data = self._inflate(data, space)
        self._buf[self._end : self._end + len(data)] = np.frombuffer(data, dtype=np.uint8)
        self._end += len(data)

    def _inflate(self, data: bytes, space: int) -> bytes:
        """Decompress what was read (and what was left from before) into at
        most ``space`` bytes; concatenated gzip members are read in turn."""
        self._compressed_read += len(data)
        data = self._compressed + data
        out: list[bytes] = []
        have = 0
        while data and have < space:
            before = self._inflater.copy()  # zlib drops a failed call's output
            try:
                piece = self._inflater.decompress(data, space - have)
            except zlib.error as exc:
                reason = str(exc).split(": ", 1)[-1]
                bad = first_bad_byte(before, data)
                # Everything before the damaged byte is read first; close() says it.
                self._gzip_damage = (
                    f"gzip data is corrupt ({reason}) at byte offset "
                    f"{self._compressed_read - len(data) + bad:,} of the compressed stream"
                )
                self._inflater, data = before, data[:bad]
                continue
            out.append(piece)
            have += len(piece)
            self._member_open = not self._inflater.eof
            if self._inflater.eof:
                rest = self._inflater.unused_data
                self._inflater = zlib.decompressobj(wbits=31)
                data = rest if rest.strip(b"\x00") else b""  # zero padding after the last member
            else:
                data = self._inflater.unconsumed_tail
        self._compressed = data
        if self._gzip_damage is not None and not data:
            self.eof = True
        return b"".join(out)

    def _header(self) -> bool:
        have = self._end - self._start
        head = self._buf[self._start : self._start + 4].tobytes()
        if have < 4:
            return False
        if head == PCAPNG_MAGIC:
            self._format = "pcapng"
            return True
        if head not in PCAP_MAGICS:
            raise CaptureError(
                f"standard input: {self._at(self._consumed + self._start)}: not a pcap or "
                f"pcapng stream (it starts with {head.hex(' ')}); use tcpdump -w - "
                "(gzip-compressed too)"
            )
        if have < PCAP_HEADER_BYTES:
            return False
        self._big_endian, self._nanosecond = PCAP_MAGICS[head]
        order = ">" if self._big_endian else "<"
        fields = struct.unpack(
            order + "IHHiIII", self._buf[self._start : self._start + 24].tobytes()
        )
        bad_version = pcap_header_problem(fields[1], fields[2])
        if bad_version is not None:
            raise CaptureError(
                f"standard input: {self._at(self._consumed + self._start + 4)}: {bad_version}"
            )
        self._snaplen = fields[5]
        self.linktype = fields[6] & 0xFFFF
        self._format = "pcap"
        self._start += PCAP_HEADER_BYTES
        return True

    def read(
        self, batch: PacketBatch, timeout: float, inspector: PayloadInspector | None = None
    ) -> int:
        rows = self._walk(batch, inspector)
        if rows == 0 and not self.eof and self.problem is None:
            self._fill(timeout)
            rows = self._walk(batch, inspector)
        if rows == 0 and self.eof:
            self._drained = True
        return rows

    def wait(self, timeout: float) -> None:
        """Return when more of the stream may have come, or after ``timeout`` seconds."""
        if self._compressed:  # decompressed bytes are waiting
            return
        if self.eof or self.problem is not None:
            time.sleep(timeout)
            return
        with contextlib.suppress(InterruptedError):
            select.select([self._fd], [], [], timeout)

    def _walk(self, batch: PacketBatch, inspector: PayloadInspector | None) -> int:
        if self.problem is not None:
            return 0
        if not self._format and not self._header():
            return 0
        view = self._buf.view()
        view.flags.writeable = False  # the file walkers' compiled array type
        max_rows = min(len(batch), self.batch_rows)
        table, params, export = NOT_COUNTING
        if self._format == "pcap":
            n, pos, why, detail, _ = rk.walk_pcap(
                view, self._start, self._end, self._big_endian, self._nanosecond, self.linktype,
                self._snaplen, self._consumed, max_rows, self.counters, batch.arrays(), True,
                False, table, params, export, 0,
            )  # fmt: skip
        else:
            n, pos, why, detail, _ = rk.walk_pcapng(
                view, self._start, self._end, self._section, self._interfaces, self._consumed,
                max_rows, self.counters, batch.arrays(), True, False, table, params, export, 0,
            )  # fmt: skip
        if n and inspector is not None:
            records = RecordBuffer(view, self._consumed, self._format == "pcapng", self.linktype,
                                   self._interfaces[:, rk.IF_LINKTYPE])  # fmt: skip
            inspector.inspect(records, batch.head(n))
        self._start = pos
        if why not in (rk.WALK_OK, rk.WALK_NEED_MORE):
            # The file reader's words, for the same damage.
            packets = int(self.counters[rk.COUNT_PACKETS])
            self.problem = (
                f"standard input: {self._at(self._consumed + pos)}: "
                f"{walk_problem(why, int(detail), packets)}"
            )
        if n:
            self._delivered += int(n)
            self.latest_ns = int(self.counters[rk.COUNT_LAST_TS])
            self._latest_at = time.monotonic()
        return int(n)

    def clock_ns(self) -> int | None:
        """The stream's time now: its latest packet, moved on by the wall-clock
        time since that packet arrived (so flows expire when the stream idles)."""
        if self.latest_ns is None:
            return None
        return self.latest_ns + int((time.monotonic() - self._latest_at) * 1e9)

    @property
    def finished(self) -> bool:
        # At the end of the stream, a walk that finds nothing more is the end
        # (what is left, if anything, is a record cut short: close() says so).
        return self._drained or self.problem is not None

    def stats(self) -> SourceStats:
        return SourceStats(delivered=self._delivered)

    def close(self) -> None:
        where = self._at(self._consumed + self._start)
        if self.problem is None and self._gzip_damage is not None:
            self.problem = (
                f"standard input: {self._gzip_damage}; "
                f"{int(self.counters[rk.COUNT_PACKETS])} packets before it were read"
            )
        elif self.problem is None and not self._format:
            self.problem = (
                f"standard input: {where}: the stream ended before its pcap/pcapng header "
                f"({self._end - self._start} bytes arrived"
                f"{'; the gzip stream ends early' if self._gzip_cut else ''})"
            )
        elif self.eof and self._start < self._end and self.problem is None:
            self.problem = (
                f"standard input: {where}: the last record is cut short "
                f"({self._end - self._start} bytes of it arrived); "
                f"{int(self.counters[rk.COUNT_PACKETS])} packets before it were read"
            )
        elif self._gzip_cut and self.problem is None:
            self.problem = (
                f"standard input: the gzip stream ends early (after {self._compressed_read:,} "
                f"compressed bytes); {int(self.counters[rk.COUNT_PACKETS])} packets before "
                "the end were read"
            )


class ScapySource:
    """Portable and slow (about 10-50 thousand packets/s): scapy's sniffer
    socket hands over each frame as a Python object, which we write as pcap
    records into a buffer and decode with the file walker. For platforms
    without ``AF_PACKET`` rings, or to check the ring against. On Linux its
    drops are counted as the ring's are."""

    name = "scapy"

    def __init__(
        self, iface: str, *, bpf: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> None:
        import scapy.all  # noqa: F401  (sets conf.L2listen for this platform)
        from scapy.config import conf

        self.iface = iface
        try:
            self._sock = conf.L2listen(iface=iface, filter=bpf, promisc=True)
        except PermissionError:
            raise CaptureError(f"capturing on {iface} needs root or CAP_NET_RAW") from None
        except Exception as exc:  # noqa: BLE001  scapy's errors for bad filters / interfaces
            raise CaptureError(f"scapy cannot capture on {iface}: {exc}") from None
        # On Linux scapy's socket is an AF_PACKET one: give it room for bursts
        # (offloaded TCP arrives in 64 KB frames; the default buffer holds three)
        # and read its drop counter. Elsewhere drops go uncounted.
        self._packet_socket = getattr(self._sock, "ins", None)
        if not isinstance(self._packet_socket, socket.socket):
            self._packet_socket = None
        if self._packet_socket is not None:
            with contextlib.suppress(OSError):
                self._packet_socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self._stats = SourceStats()
        try:
            self.linktype = interface_linktype(iface)
        except CaptureError:
            self.linktype = LINKTYPE_ETHERNET
        self.batch_rows = batch_rows
        self.counters = new_counters()
        self._buf = bytearray()

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def read(
        self, batch: PacketBatch, timeout: float, inspector: PayloadInspector | None = None
    ) -> int:
        deadline = time.monotonic() + timeout
        limit = min(len(batch), self.batch_rows)
        records = 0
        buf = self._buf
        buf.clear()
        while records < limit:
            wait = deadline - time.monotonic() if records == 0 else 0.0
            ready, _, _ = select.select([self._sock], [], [], max(wait, 0.0))
            if not ready:
                break
            _cls, data, ts = self._sock.recv_raw(65535)
            if data is None:
                continue
            ts_ns = time.time_ns() if ts is None else int(ts * 1e9)
            sec, nsec = divmod(ts_ns, 1_000_000_000)
            buf += struct.pack("<IIII", sec, nsec, len(data), len(data))
            buf += data
            records += 1
        if not records:
            return 0
        array = np.frombuffer(bytes(buf), dtype=np.uint8)  # read-only, as the walker's type
        n = decode_records(array, self.linktype, batch, limit, self.counters)
        if n and inspector is not None:
            linktypes = np.array([self.linktype], dtype=np.int64)
            where = RecordBuffer(array, 0, False, self.linktype, linktypes)
            inspector.inspect(where, batch.head(n))
        self._stats.delivered += n
        return n

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self._sock], [], [], timeout)

    def stats(self) -> SourceStats:
        if self._packet_socket is not None and self._packet_socket.fileno() >= 0:
            with contextlib.suppress(OSError):
                raw = self._packet_socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                received, dropped = struct.unpack("2I", raw)  # struct tpacket_stats
                self._stats.kernel_received += received
                self._stats.kernel_dropped += dropped
        return SourceStats(**vars(self._stats))

    def close(self) -> None:
        self._sock.close()


def decode_records(
    records: np.ndarray, linktype: int, batch: PacketBatch, max_rows: int, counters: np.ndarray
) -> int:
    """Decode pcap records (headers little-endian, times in nanoseconds, no file
    header: what :class:`ScapySource` makes of the frames it receives) into
    ``batch``; returns the rows written."""
    table, params, export = NOT_COUNTING
    n, _pos, _why, _detail, _ = rk.walk_pcap(
        records, 0, len(records), False, True, linktype, 0, 0, max_rows, counters,
        batch.arrays(), True, False, table, params, export, 0,
    )  # fmt: skip
    return int(n)


def sample_frame(
    src: str = "192.0.2.1", dst: str = "198.51.100.1", sport: int = 40000, dport: int = 443,
    payload: int = 0, flags: int = 0x18,
) -> bytes:  # fmt: skip
    """An Ethernet/IPv4/TCP frame (for warming the kernels up, and tests)."""
    import ipaddress

    ip_len = 20 + 20 + payload
    addresses = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 1, 0x4000, 64, 6, 0, *addresses)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, flags, 65535, 0, 0)
    ether = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ether + ip + tcp + b"\x00" * payload


def sample_items(count: int = 40) -> list[tuple[int, bytes]]:
    """``count`` made-up packets, (time in ns, frame) each, one flow per
    packet, a nanosecond apart from now: the warm-ups' input."""
    now = time.time_ns()
    return [(now + i, sample_frame(sport=40000 + i, payload=10)) for i in range(count)]


def sample_records(count: int = 40) -> tuple[RecordBuffer, PacketBatch]:
    """:func:`sample_items` as pcap records in a read-only buffer (as
    :class:`ScapySource` makes them), and the batch decoded from them."""
    records = b"".join(
        struct.pack("<IIII", *divmod(ts, 1_000_000_000), len(frame), len(frame)) + frame
        for ts, frame in sample_items(count)
    )
    buf = np.frombuffer(records, dtype=np.uint8)
    batch = PacketBatch.empty(count)
    n = decode_records(buf, LINKTYPE_ETHERNET, batch, count, new_counters())
    ethernet = np.array([LINKTYPE_ETHERNET], dtype=np.int64)
    return RecordBuffer(buf, 0, False, LINKTYPE_ETHERNET, ethernet), batch.head(n)


def warm_up() -> None:
    """Compile what the live sources run, on a few made-up packets: the ring's
    kernels (:meth:`RingReader.warm_up`) and the pcap record walker of
    :class:`StreamSource` and :class:`ScapySource`. What counts and inspects
    the packets has its own warm-up."""
    RingReader.warm_up()
    sample_records()


def fake_ring(
    frames: list[tuple[int, bytes]],
    *,
    block_size: int = 1 << 16,
    block_count: int = 4,
    per_block: int = 64,
    vlan_tci: int | None = None,
) -> np.ndarray:
    """A ring as the kernel would leave it, holding ``frames`` ((ns, frame
    bytes) each, ``per_block`` to a block, every used block ready for us):
    for warming the kernels up before capture starts, and for tests.
    ``vlan_tci`` marks every packet as having had that 802.1Q tag taken off."""
    ring = np.zeros(block_size * block_count, dtype=np.uint8)
    for index in range(0, len(frames), per_block):
        block = index // per_block
        if block >= block_count:
            raise ValueError(f"{len(frames)} frames do not fit in {block_count} blocks")
        base = block * block_size
        chunk = frames[index : index + per_block]
        at = ringk.BLOCK_DESC_BYTES
        offsets = []
        for ts_ns, frame in chunk:
            mac = ringk.TPACKET3_HDR_BYTES + 32  # header, sockaddr_ll, padding (as the kernel)
            size = (mac + len(frame) + 15) & ~15
            if at + size > block_size:
                raise ValueError("frames do not fit in the block: raise block_size")
            sec, nsec = divmod(ts_ns, 1_000_000_000)
            status = ringk.TP_STATUS_USER
            if vlan_tci is not None:
                status |= ringk.TP_STATUS_VLAN_VALID
            header = struct.pack(
                "<IIIIIIHHIIHH", 0, sec, nsec, len(frame), len(frame), status, mac,
                mac + 14, 0, vlan_tci or 0, 0x8100 if vlan_tci is not None else 0, 0,
            )  # fmt: skip
            ring[base + at : base + at + len(header)] = np.frombuffer(header, dtype=np.uint8)
            ring[base + at + mac : base + at + mac + len(frame)] = np.frombuffer(frame, np.uint8)
            offsets.append(at)
            at += size
        for i, at_i in enumerate(offsets[:-1]):
            ring[base + at_i : base + at_i + 4] = np.frombuffer(
                struct.pack("<I", offsets[i + 1] - at_i), dtype=np.uint8
            )
        desc = struct.pack("<IIIIII", 3, 0, ringk.TP_STATUS_USER, len(chunk), 48, at)
        ring[base : base + len(desc)] = np.frombuffer(desc, dtype=np.uint8)
    return ring
