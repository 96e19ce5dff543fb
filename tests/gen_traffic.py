"""Generate captures of whole transfers for the rule tests: exact byte counts at
exact times, written as headers-only classic pcap (as a mirror port with a small
snap length records them), built column-wise with numpy so a 100 MB transfer
is a few milliseconds.

    >>> cap = Capture()
    >>> cap.transfer("10.8.40.31", "203.0.113.140", dport=443,
    ...              start=at("2026-02-04 02:13", "Asia/Taipei"), seconds=360,
    ...              bytes_out=62_000_000, bytes_in=500_000)
    >>> cap.write(tmp_path / "x.pcap")

Every frame of a transfer carries up to 1514 bytes on the wire; the last one
of each direction carries the remainder, so the byte totals are exact. Frames
are spread evenly over ``seconds`` (the last one lands at start + seconds).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

NS = 1_000_000_000
MTU_FRAME = 1514


def at(local: str, zone: str) -> int:
    """ns since the epoch of a local wall time 'YYYY-MM-DD HH:MM[:SS]' in ``zone``."""
    fmt = "%Y-%m-%d %H:%M:%S" if local.count(":") == 2 else "%Y-%m-%d %H:%M"
    moment = datetime.strptime(local, fmt).replace(tzinfo=ZoneInfo(zone))
    return int(moment.timestamp()) * NS


def _header(src: str, dst: str, sport: int, dport: int, proto: int) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if proto == 6:
        transport = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
    elif proto == 17:
        transport = struct.pack("!HHHH", sport, dport, 8, 0)
    else:  # ICMP echo request
        transport = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"
    if s.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 1, 0, 64, proto, 0,
                         s.packed, d.packed)  # fmt: skip
        return eth + b"\x08\x00" + ip + transport
    proto6 = 58 if proto == 1 else proto
    if proto == 1:
        transport = struct.pack("!BBHHH", 128, 0, 0, 1, 1)
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(transport), proto6, 64, s.packed, d.packed)
    return eth + b"\x86\xdd" + ip6 + transport


@dataclass
class Capture:
    """Frames to write: (time ns, wire length, header bytes)."""

    times: list[np.ndarray] = field(default_factory=list)
    wires: list[np.ndarray] = field(default_factory=list)
    headers: list[bytes] = field(default_factory=list)
    which: list[np.ndarray] = field(default_factory=list)

    def _add(self, header: bytes, start: int, seconds: float, total: int) -> None:
        if total <= 0:
            return
        n = -(-total // MTU_FRAME)
        wires = np.full(n, MTU_FRAME, dtype=np.int64)
        wires[-1] = total - MTU_FRAME * (n - 1)
        if wires[-1] < len(header):  # too small to hold the headers: fold into the one before
            if n == 1:
                wires[-1] = total
            else:
                wires[-2] += wires[-1] - len(header)
                wires[-1] = len(header)
        span = int(round(seconds * NS))
        times = start + (np.arange(n, dtype=np.int64) * span) // max(n - 1, 1)
        self.headers.append(header)
        self.times.append(times)
        self.wires.append(wires)
        self.which.append(np.full(n, len(self.headers) - 1, dtype=np.int64))

    def transfer(
        self,
        src: str,
        dst: str,
        *,
        start: int,
        seconds: float,
        bytes_out: int,
        bytes_in: int = 0,
        sport: int = 49152,
        dport: int = 443,
        proto: int = 6,
    ) -> Capture:
        """``src`` sends ``bytes_out`` to ``dst`` and gets ``bytes_in`` back, over
        ``seconds`` from ``start`` (ns)."""
        self._add(_header(src, dst, sport, dport, proto), start, seconds, bytes_out)
        self._add(_header(dst, src, dport, sport, proto), start, seconds, bytes_in)
        return self

    def packet(self, src: str, dst: str, *, at_ns: int, wire: int = 60, sport: int = 49152,
               dport: int = 53, proto: int = 17) -> Capture:  # fmt: skip
        """One frame."""
        header = _header(src, dst, sport, dport, proto)
        self.headers.append(header)
        self.times.append(np.array([at_ns], dtype=np.int64))
        self.wires.append(np.array([max(wire, len(header))], dtype=np.int64))
        self.which.append(np.array([len(self.headers) - 1], dtype=np.int64))
        return self

    def write(self, path: str | Path) -> Path:
        """Classic pcap, little-endian, nanosecond timestamps, Ethernet, frames in time order."""
        times = np.concatenate(self.times) if self.times else np.zeros(0, np.int64)
        wires = np.concatenate(self.wires) if self.wires else np.zeros(0, np.int64)
        which = np.concatenate(self.which) if self.which else np.zeros(0, np.int64)
        order = np.argsort(times, kind="stable")
        times, wires, which = times[order], wires[order], which[order]
        out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        header_len = np.array([len(h) for h in self.headers], dtype=np.int64)
        caplen = header_len[which]
        records = np.zeros(len(times), dtype=[("sec", "<u4"), ("frac", "<u4"), ("cap", "<u4"),
                                               ("wire", "<u4")])  # fmt: skip
        records["sec"] = times // NS
        records["frac"] = times % NS
        records["cap"] = caplen
        records["wire"] = wires
        raw = records.tobytes()
        parts = [bytes(out)]
        for i in range(len(times)):
            parts.append(raw[16 * i : 16 * i + 16])
            parts.append(self.headers[which[i]])
        path = Path(path)
        path.write_bytes(b"".join(parts))
        return path
