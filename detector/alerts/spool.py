"""An on-disk queue of alerts for the webhook: what the receiver has not yet
taken waits here, across outages and restarts.

A spool is a directory of its own (mode 0700):

* ``NNNNNNNNNNNNNNNNNNNN.ndjson``: segments, one ECS JSON alert a line, only
  ever appended to (``O_APPEND``), each line synced to disk (``fsync``) before
  :meth:`Spool.append` returns; a new segment every 1 MiB;
* ``cursor``: ``SEGMENT OFFSET END``: what is delivered (everything before
  OFFSET of SEGMENT) and the batch in flight (up to END), replaced atomically
  (written, synced, renamed) after each delivery; delivered segments are
  deleted;
* ``id``: random, made with the spool (with the batch's place, the
  ``Idempotency-Key`` a receiver can drop a repeated batch by);
* ``lock``: held (``flock``) by the process that uses the spool: two
  processes on one spool would deliver the same alerts twice.

A process that starts delivers what the spool holds first, from the cursor on,
and retries the batch that was in flight with the same bytes (so the same
key). A line cut short by a crash while it was written (never acknowledged) is
removed on opening. The spool is bounded (``max_bytes`` of undelivered alerts):
when full, new alerts are refused, said in one line, and how many when it has
room again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import threading
from dataclasses import dataclass

from ..errors import DetectorError

SEGMENT_BYTES = 1 << 20
SUFFIX = ".ndjson"
MAX_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Batch:
    """Whole lines of one segment, from ``start`` to ``end``."""

    segment: int
    start: int
    end: int
    body: bytes
    key: str  # the same for the same bytes, also after a restart

    @property
    def lines(self) -> int:
        return self.body.count(b"\n")


class Spool:
    def __init__(self, directory: str, *, max_bytes: int = MAX_BYTES, option: str = "--spool-dir"):
        self.directory = directory
        self.max_bytes = max_bytes
        self.guard = threading.Lock()  # segments and sizes: appended by one thread, read by another
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self.lock_fd = os.open(self._path("lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DetectorError(f"{option} {directory}: cannot use it: {exc.strerror}") from None
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DetectorError(
                    f"{option} {directory}: another egress-detector is using this spool; give "
                    "each process its own"
                ) from None
            raise DetectorError(f"{option} {directory}: cannot lock it: {exc.strerror}") from None
        try:
            self._open()
        except BaseException:
            os.close(self.lock_fd)
            raise

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _segment_path(self, number: int) -> str:
        return self._path(f"{number:020d}{SUFFIX}")

    def _open(self) -> None:
        try:
            with open(self._path("id"), encoding="ascii") as f:
                self.id = f.read().strip()
        except FileNotFoundError:
            self.id = secrets.token_hex(8)
            self._replace("id", self.id + "\n")
        numbers = sorted(
            int(name[: -len(SUFFIX)])
            for name in os.listdir(self.directory)
            if name.endswith(SUFFIX) and name[: -len(SUFFIX)].isdigit()
        )
        segment, offset, inflight = self._read_cursor()
        if numbers and segment < numbers[0]:
            segment, offset, inflight = numbers[0], 0, 0
        for number in numbers:
            if number < segment:  # delivered; a crash came before it was deleted
                os.unlink(self._segment_path(number))
        self.segments = [n for n in numbers if n >= segment] or [segment]
        self.sizes: dict[int, int] = {}
        for number in self.segments:
            path = self._segment_path(number)
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                size = 0
            if number == self.segments[-1] and size:
                size = self._drop_partial_line(path, size)
            self.sizes[number] = size
        self.segment, self.offset = segment, min(offset, self.sizes[segment])
        self.inflight = inflight if self.offset < inflight <= self.sizes[segment] else 0
        self.writer = os.open(
            self._segment_path(self.segments[-1]),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        self.full = False
        self.refused = 0

    def _read_cursor(self) -> tuple[int, int, int]:
        try:
            with open(self._path("cursor"), encoding="ascii") as f:
                fields = f.read().split()
            segment, offset, inflight = (int(x) for x in fields[:3])
            return segment, offset, inflight
        except (FileNotFoundError, ValueError):
            return 0, 0, 0

    def _drop_partial_line(self, path: str, size: int) -> int:
        """Cut a last line without its newline (a crash while it was written)."""
        with open(path, "rb+") as f:
            data = f.read()  # a segment is about SEGMENT_BYTES
            if data.endswith(b"\n"):
                return len(data)
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            os.fsync(f.fileno())
            return keep

    def _replace(self, name: str, text: str) -> None:
        tmp = self._path(f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path(name))
        self._sync_directory()

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def waiting_bytes(self) -> int:
        """Bytes of alerts not yet delivered."""
        with self.guard:
            return sum(self.sizes.values()) - self.offset

    def waiting_lines(self) -> int:
        """Alerts not yet delivered (reads the spool)."""
        with self.guard:
            places = [(n, self.offset if n == self.segment else 0) for n in self.segments]
        count = 0
        for number, start in places:
            try:
                with open(self._segment_path(number), "rb") as f:
                    f.seek(start)
                    count += f.read().count(b"\n")
            except FileNotFoundError:
                pass
        return count

    def append(self, lines: list[bytes]) -> int:
        """Add whole lines (each ending in a newline) and sync them to disk;
        the number added: fewer when the spool is full."""
        taken = 0
        with self.guard:
            waiting = sum(self.sizes.values()) - self.offset
            for line in lines:
                if waiting + len(line) > self.max_bytes:
                    break
                last = self.segments[-1]
                if self.sizes[last] and self.sizes[last] + len(line) > SEGMENT_BYTES:
                    os.fsync(self.writer)
                    os.close(self.writer)
                    last += 1
                    self.writer = os.open(
                        self._segment_path(last),
                        os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                        0o600,
                    )
                    self._sync_directory()
                    self.segments.append(last)
                    self.sizes[last] = 0
                view = memoryview(line)
                try:
                    while view:
                        view = view[os.write(self.writer, view) :]
                except OSError:  # the disk is full: no part of a line stays
                    os.ftruncate(self.writer, self.sizes[last])
                    raise
                self.sizes[last] += len(line)
                waiting += len(line)
                taken += 1
            if taken:
                os.fsync(self.writer)
            refused = len(lines) - taken
            if refused:
                self.refused += refused
                self.full = True
        return taken

    def room_again(self) -> int:
        """After a refusal: once half the spool is free, how many alerts were
        refused (and forget them); 0 otherwise."""
        with self.guard:
            if not self.full or sum(self.sizes.values()) - self.offset > self.max_bytes // 2:
                return 0
            refused, self.refused, self.full = self.refused, 0, False
            return refused

    def next_batch(self, max_bytes: int) -> Batch | None:
        """The next undelivered lines (at least one, up to about ``max_bytes``),
        or None when everything is delivered; the batch in flight when the
        last process stopped comes first, the same bytes."""
        with self.guard:
            while self.offset >= self.sizes[self.segment] and self.segment != self.segments[-1]:
                self._advance()
            segment, start, size = self.segment, self.offset, self.sizes[self.segment]
            inflight = self.inflight
        if start >= size:
            return None
        with open(self._segment_path(segment), "rb") as f:
            f.seek(start)
            if inflight:
                body = f.read(inflight - start)
            else:
                body = f.read(min(max_bytes, size - start))
                cut = body.rfind(b"\n") + 1
                if cut == 0:  # one line longer than max_bytes: all of it
                    f.seek(start)
                    body = f.read(size - start)
                    cut = body.find(b"\n") + 1
                body = body[:cut]
        end = start + len(body)
        if not inflight:
            with self.guard:
                self.inflight = end
            self._write_cursor()
        return Batch(segment, start, end, body, f"{self.id}-{segment}-{start}-{end}")

    def split(self, batch: Batch) -> bool:
        """The receiver refused ``batch`` as too large: send its first half of
        lines first (False when it is one line)."""
        lines = batch.body.splitlines(keepends=True)
        if len(lines) < 2:
            return False
        with self.guard:
            self.inflight = batch.start + sum(map(len, lines[: len(lines) // 2]))
        self._write_cursor()
        return True

    def delivered(self, batch: Batch) -> None:
        """The receiver took ``batch``: record it, drop finished segments."""
        with self.guard:
            self.offset = batch.end
            self.inflight = 0
            if self.offset >= self.sizes[self.segment] and self.segment != self.segments[-1]:
                self._advance()
        self._write_cursor()

    def _advance(self) -> None:
        finished = self.segment
        self.segments.remove(finished)
        del self.sizes[finished]
        self.segment, self.offset, self.inflight = self.segments[0], 0, 0
        self._write_cursor()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._segment_path(finished))

    def _write_cursor(self) -> None:
        self._replace("cursor", f"{self.segment} {self.offset} {self.inflight}\n")

    def close(self) -> None:
        os.close(self.writer)
        os.close(self.lock_fd)  # releases the lock
