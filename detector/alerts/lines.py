"""Alerts read back from JSON lines another run wrote, or someone else did
(``scan --history``, ``carve --alerts``): a file the detector did not make
itself, read as hostile input.

Each line is read with a cap on its length (an alert's line is a few kB; a
line of hundreds of MB would otherwise be held whole, twice), decoded and
parsed on its own, and any problem is one line naming the option, the file
and the line's byte offset: not UTF-8, not JSON, nested deeper than Python's
parser goes (a ``RecursionError``, not a crash), too long.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..errors import DetectorError

# An alert's line is a few kB (syslog's are cut at 8,192 bytes); the longest
# this version writes, with every name and evidence item, stays far below.
MAX_LINE = 4 << 20


def json_lines(
    path: str, option: str, *, holding: bytes | None = None, hint: str = ""
) -> Iterator[tuple[int, Any]]:
    """(byte offset, value) of each line of ``path`` that is not blank (and,
    with ``holding``, has those bytes in it: the rest are not parsed). A
    problem is a DetectorError: '``option`` ``path``: byte offset N: what;
    ``hint``'."""
    try:
        stream = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DetectorError(f"{option} {path}: cannot open: {exc.strerror}") from None

    def problem(offset: int, what: str) -> DetectorError:
        return DetectorError(f"{option} {path}: byte offset {offset}: {what}{hint}")

    with stream:
        offset = 0
        while True:
            try:
                raw = stream.readline(MAX_LINE + 1)
            except OSError as exc:
                raise problem(offset, f"cannot read: {exc.strerror}") from None
            if not raw:
                return
            here, offset = offset, offset + len(raw)
            if len(raw) > MAX_LINE:
                raise problem(here, f"a line of over {MAX_LINE >> 20} MiB (an alert is a few kB)")
            if not raw.strip() or (holding is not None and holding not in raw):
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise problem(here + exc.start, "not UTF-8 text") from None
            except RecursionError:
                raise problem(here, "not a JSON line (nested deeper than it can be read)") from None
            except ValueError as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise problem(here, f"not a JSON line ({msg})") from None
            yield here, value
