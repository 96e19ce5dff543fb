"""The one way an output file is written: every command's outputs (flows,
alerts, features, models), the nightly's reports and learned days.

The file is written as ``.NAME.<pid>.partial`` beside its target, created
before the work that fills it (so an unwritable path is reported before a
long read), given the earlier file's permissions (or ``mode`` for a new file),
flushed to disk, and renamed into place only when complete; removed if the
work fails or is interrupted. A reader, a crash or Ctrl-C sees the earlier
file or the new one, never half of one.

Written in place instead: stdout (no path), a pipe or a device, and a file we
may write in a directory we may not create files in (one an administrator
made for us): there no partial file is possible, and writing the file itself
is what the user asked for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import overload

from .errors import OutputError

__all__ = ["OutputError", "replacing"]


@overload
def replacing(
    output: None, *, fsync: bool = ..., mode: int | None = ...
) -> AbstractContextManager[None]: ...
@overload
def replacing(
    output: str | os.PathLike[str], *, fsync: bool = ..., mode: int | None = ...
) -> AbstractContextManager[str]: ...
@overload
def replacing(
    output: str | os.PathLike[str] | None, *, fsync: bool = ..., mode: int | None = ...
) -> AbstractContextManager[str | None]: ...
def replacing(
    output: str | os.PathLike[str] | None, *, fsync: bool = True, mode: int | None = None
) -> AbstractContextManager[str | None]:
    """The path to write ``output`` as, for the length of a ``with`` block: a
    file beside it, created now and moved into its place when the block ends
    without error, removed if it does not; ``output`` itself where no partial
    file can be made (see the module's doc), None for stdout (None).

    ``fsync``: flush the file to disk before the rename (off for outputs a
    rerun makes again, where it would only cost time). ``mode``: a new file's
    permissions (default: as ``open`` makes them, under the umask); a file
    that replaces another keeps the other's. An unwritable path raises
    :class:`OutputError` naming ``output``."""
    return _replacing(output, fsync, mode)


@contextlib.contextmanager
def _replacing(
    output: str | os.PathLike[str] | None, fsync: bool, mode: int | None
) -> Iterator[str | None]:
    if output is None or not os.fspath(output):
        yield None if output is None else os.fspath(output)
        return
    shown = os.fspath(output)
    target = Path(os.path.realpath(shown))
    partial = _partial_beside(target, shown, mode)
    if partial is None:
        yield shown
        return
    try:
        yield str(partial)
        if fsync:
            _fsync(partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _partial_beside(target: Path, shown: str, mode: int | None) -> Path | None:
    """A new, empty file beside ``target`` to write it as, with its permissions
    (flow records are sensitive); None to write ``target`` in place."""
    if target.exists() and not target.is_file():
        return None  # a pipe or a device
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        _create(partial)
    except OSError as exc:
        if target.is_file() and os.access(target, os.W_OK):
            # A file we may write in a directory we may not add to (made for
            # us by an administrator): write it in place, as before.
            return None
        raise OutputError(shown, str(exc.strerror or exc)) from None
    try:
        if target.exists():
            os.chmod(partial, target.stat().st_mode & 0o7777)
        elif mode is not None:
            os.chmod(partial, mode)
    except OSError:
        partial.unlink()
        if target.exists():
            return None  # rather in place than with wider permissions
        raise
    return partial


def _create(partial: Path) -> None:
    try:
        open(partial, "xb").close()
    except FileExistsError:
        # Left by an earlier process with this process id, killed before it
        # could remove it (a container's or service's ids repeat): not in use.
        partial.unlink()
        open(partial, "xb").close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
