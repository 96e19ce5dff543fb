"""``--bpf EXPR`` for capture files: the pcap filter, compiled by libpcap as
live capture compiles it (``live.compile_bpf``), once per link type met, and
run over each record's captured bytes by a numba interpreter
(``detector._kernels.bpf``), so a filtered file is read at the reader's pace.

A capture path can carry its filter (:class:`FilteredPath`, a ``str``): the
readers of every command take paths, and a path that says how it is to be
read reaches the reader through all of them unchanged.
"""

from __future__ import annotations

import numpy as np

from .._kernels import bpf as bk
from ..errors import DetectorError
from .batch import PacketBatch
from .files import RecordBuffer

PCAP_RECORD_HEADER = 16
PCAPNG_EPB_HEADER = 28  # block type, length, interface, time (2), captured, wire
PCAPNG_SPB_HEADER = 12  # block type, length, wire length
PCAPNG_SPB = 3
_INSN = np.dtype([("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])


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
        from .live import compile_bpf

        compile_bpf(expression, 1)  # a bad expression is said before any file is read

    def program(self, linktype: int) -> int:
        """The index of the program for ``linktype`` (compiled the first time)."""
        if linktype not in self._index:
            from .live import compile_bpf

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
