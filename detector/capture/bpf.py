"""``--bpf EXPR``: the pcap filter compiled by libpcap (``compile_bpf``, which
live capture attaches to its socket); for capture files, once per link type met, and
run over each record's captured bytes by a numba interpreter
(``detector._kernels.bpf``), so a filtered file is read at the reader's pace.

A capture path can carry its filter (:class:`FilteredPath`, a ``str``): the
readers of every command take paths, and a path that says how it is to be
read reaches the reader through all of them unchanged.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from .._kernels import bpf as bk
from ..errors import CaptureError, DetectorError
from .batch import PacketBatch

if TYPE_CHECKING:
    from .files import RecordBuffer

PCAP_RECORD_HEADER = 16
PCAPNG_EPB_HEADER = 28  # block type, length, interface, time (2), captured, wire
PCAPNG_SPB_HEADER = 12  # block type, length, wire length
PCAPNG_SPB = 3
BPF_RET_K = 0x06  # BPF_RET | BPF_K: "accept k bytes of the packet"
MAX_SNAPLEN = 262144  # libpcap's MAXIMUM_SNAPLEN
_INSN = np.dtype([("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])


def compile_bpf(expression: str | None, linktype: int, snaplen: int = 0) -> bytes:
    """Classic BPF instructions (8 bytes each) for a pcap filter ``expression``,
    compiled by libpcap (through scapy), ready for ``SO_ATTACH_FILTER``.

    A filter's "accept" returns say how many bytes of the packet to keep:
    they are capped at ``snaplen`` when one is given, so the kernel copies no
    more of each packet into the ring than we read. Without an expression and
    with a snap length, the program is just "accept ``snaplen`` bytes".
    A bad expression raises :class:`DetectorError` (a usage error) with
    libpcap's reason.
    """
    keep = snaplen or MAX_SNAPLEN
    if not expression:
        return struct.pack("HBBI", BPF_RET_K, 0, 0, keep)
    try:
        from scapy.arch.common import compile_filter
    except ImportError as exc:  # pragma: no cover - scapy is a dependency
        raise CaptureError(f"--bpf needs scapy and libpcap: {exc}") from None
    try:
        program = compile_filter(expression, linktype=linktype)
    except Exception as exc:  # noqa: BLE001  scapy raises Scapy_Exception, ImportError, OSError
        if "libpcap is not available" in str(exc):
            raise CaptureError(
                f"--bpf {expression!r}: compiling a filter needs libpcap, which is not "
                "installed here: install it (Debian/Ubuntu: apt-get install libpcap0.8; "
                "Fedora/RHEL: dnf install libpcap) or run without --bpf"
            ) from None
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise DetectorError(f"--bpf {expression!r}: {reason}") from None
    out = bytearray()
    for i in range(program.bf_len):
        insn = program.bf_insns[i]
        k = insn.k & 0xFFFFFFFF  # scapy gives k signed: "ether broadcast" has -1
        if insn.code == BPF_RET_K and k != 0:
            k = min(k, keep) if snaplen else max(k, keep)
        out += struct.pack("HBBI", insn.code, insn.jt, insn.jf, k)
    return bytes(out)


class FilteredPath(str):
    """A capture's path with the pcap filter its packets pass through."""

    bpf: str

    def __new__(cls, path: str, bpf: str) -> FilteredPath:
        made = super().__new__(cls, path)
        made.bpf = bpf
        return made

    def __reduce__(self) -> tuple[object, ...]:
        return (FilteredPath, (str(self), self.bpf))


def record_data(records: RecordBuffer, batch: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
    """Where each packet's captured bytes start in ``records.buf``, and its link
    type (-1: an interface the file never described)."""
    start = batch.offset - records.base
    if not records.pcapng:
        linktype = np.full(len(batch), records.linktype, dtype=np.int64)
        return start + PCAP_RECORD_HEADER, linktype
    # The block type's low byte is its first byte (little-endian sections) or
    # its fourth (big-endian); every type the reader takes is below 256.
    kind = records.buf[start].astype(np.int64) | records.buf[start + 3].astype(np.int64)
    data = start + np.where(kind == PCAPNG_SPB, PCAPNG_SPB_HEADER, PCAPNG_EPB_HEADER)
    table = records.if_linktypes
    interface = batch.interface.astype(np.int64)
    known = (interface >= 0) & (interface < len(table))
    linktype = np.where(known, table[np.clip(interface, 0, len(table) - 1)], -1).astype(np.int64)
    return data, linktype


class PacketFilter:
    """A pcap filter expression, ready to run on the records of any link type."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._index: dict[int, int] = {}
        self._programs: list[np.ndarray] = []
        self._mem = np.zeros(16, dtype=np.int64)
        compile_bpf(expression, 1)  # a bad expression is said before any file is read

    def program(self, linktype: int) -> int:
        """The index of the program for ``linktype`` (compiled the first time)."""
        if linktype not in self._index:
            try:
                program = compile_bpf(self.expression, linktype)
            except DetectorError as exc:
                raise DetectorError(f"{exc} (for packets of link type {linktype})") from None
            raw = np.frombuffer(program, dtype=_INSN)
            rows = np.stack(
                [raw["code"].astype(np.int64), raw["jt"].astype(np.int64),
                 raw["jf"].astype(np.int64), raw["k"].astype(np.int64)], axis=1,
            )  # fmt: skip
            self._index[linktype] = len(self._programs)
            self._programs.append(rows)
        return self._index[linktype]

    def mask(self, records: RecordBuffer, batch: PacketBatch) -> np.ndarray:
        """Which packets of ``batch`` (records in ``records``) pass the filter."""
        data, linktype = record_data(records, batch)
        which = np.full(len(batch), -1, dtype=np.int64)
        for lt in np.unique(linktype).tolist():
            if lt >= 0:
                which[linktype == lt] = self.program(int(lt))
        programs = np.concatenate(self._programs)
        lengths = np.array([len(p) for p in self._programs], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        out = np.empty(len(batch), dtype=np.bool_)
        bk.filter_rows(programs, starts, lengths, which, records.buf, data.astype(np.int64),
                       batch.cap_len.astype(np.int64), batch.wire_len.astype(np.int64),
                       self._mem, out)  # fmt: skip
        return out
