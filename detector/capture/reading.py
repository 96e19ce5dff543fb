"""How a command reads its captures, one record handed down the pipelines
(scan, train, scale-out) to the flow counter instead of four arguments each."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .files import CaptureProblem, CaptureStats


def auto_threads(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Two threads pay off on big inputs and a machine with two cores; below
    64 MB starting the pipeline costs more than it saves."""
    if (os.cpu_count() or 1) < 2:
        return 1
    size = 0
    for path in paths:
        try:
            size += os.path.getsize(path)
        except OSError:  # "-" (a stream) or a file that will fail with a clear error
            return 2 if str(path) == "-" else 1
    return 2 if size > 64 << 20 else 1


@dataclass(frozen=True)
class Reading:
    """``threads``: how many threads decode and count (None: as many as the
    inputs are worth, :func:`auto_threads`); ``on_problem``: says each problem of
    a capture as it comes; ``stats_out``: gets each file's figures;
    ``progress``: wraps the iterator of bytes read (a progress bar)."""

    threads: int | None = 1
    on_problem: Callable[[CaptureProblem], None] | None = None
    stats_out: list[CaptureStats] | None = None
    progress: Callable[[Iterator[int]], Iterator[int]] | None = None

    def counting(self, paths: list[str]) -> dict[str, Any]:
        """The options of ``count_flows`` for reading ``paths`` this way."""
        threads = self.threads if self.threads is not None else auto_threads(paths)
        return {"threads": threads, "on_problem": self.on_problem,
                "stats_out": self.stats_out, "progress": self.progress}  # fmt: skip


ONE_THREAD = Reading()
AS_FIT = Reading(threads=None)  # threads as the inputs are worth
