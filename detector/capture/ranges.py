"""A byte range of a capture file read as a capture file of its own: the
file's header (for pcapng, the section and interface blocks in force at the
range), then the range's records. Scale-out reads a file in parts this way
(``detector/distributed``), and carving through the nightly's index reads only
the ranges that hold an alert's flows (``detector/forensics/carve.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import CaptureError
from .files import CaptureReader

Opener = Callable[[str, str], Any]


class RangeFile:
    """``header``, then bytes ``start``..``end`` of ``path`` (``end`` None: to
    the end of the file), as a stream. No ``fileno``: the reader copies it
    through a buffer and never maps the whole file."""

    def __init__(
        self, path: str, start: int, end: int | None, header: bytes, opener: Opener = open
    ) -> None:
        self._file = opener(path, "rb")
        self._file.seek(start)
        self._head = header
        self._left = None if end is None else end - start

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        got = self.readinto(memoryview(buf))
        return bytes(buf[:got])

    def readinto(self, view: memoryview) -> int:
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        want = len(view) if self._left is None else min(len(view), self._left)
        if want <= 0:
            return 0
        got = int(self._file.readinto(view[:want]))  # type: ignore[attr-defined]
        if self._left is not None:
            self._left -= got
        return got

    def close(self) -> None:
        self._file.close()


class RangeReader(CaptureReader):
    """The packets of bytes ``start``..``end`` of ``path`` read after
    ``header``, as :class:`CaptureReader` reads a whole file (problems name
    the file; ``opener`` opens it, for readers that count what is opened)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        start: int,
        end: int | None,
        header: bytes,
        *,
        inspector: Any = None,
        bpf: str | None = None,
        opener: Opener = open,
    ) -> None:
        super().__init__(path, reuse_batch=True, inspector=inspector, bpf=bpf)
        self._range = (os.fspath(path), start, end, header)
        self._opener = opener

    def _problem(
        self, offset: int | None, message: str, *, fatal: bool, on_disk: bool = False
    ) -> None:
        """As the whole file's reader says it: an offset in the range's records
        is given in the file (the header before them is the file's own)."""
        _path, start, _end, header = self._range
        if offset is not None and offset >= len(header):
            offset = offset - len(header) + start
        super()._problem(offset, message, fatal=fatal, on_disk=on_disk)

    def _open(self) -> tuple[Any, None, bytes]:
        path, start, end, header = self._range
        try:
            raw = RangeFile(path, start, end, header, self._opener)
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open: {exc.strerror}") from None
        return raw, None, raw.read(4)
