"""How a command reads its captures, one record handed down the pipelines
(scan, train, scale-out) to the flow counter instead of four arguments each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .files import CaptureProblem, CaptureStats


@dataclass(frozen=True)
class Reading:
    """``threads``: how many threads decode and count (None: as many as the
    inputs are worth, :func:`detector.flows.table.auto_threads`); ``on_problem``: says each problem of
    a capture as it comes; ``stats_out``: gets each file's figures;
    ``progress``: wraps the iterator of bytes read (a progress bar)."""

    threads: int | None = 1
    on_problem: Callable[[CaptureProblem], None] | None = None
    stats_out: list[CaptureStats] | None = None
    progress: Callable[[Iterator[int]], Iterator[int]] | None = None

    def counting(self, paths: list[str]) -> dict[str, Any]:
        """The options of ``count_flows`` for reading ``paths`` this way."""
        from ..flows.table import auto_threads

        threads = self.threads if self.threads is not None else auto_threads(paths)
        return {"threads": threads, "on_problem": self.on_problem,
                "stats_out": self.stats_out, "progress": self.progress}  # fmt: skip


ONE_THREAD = Reading()
AS_FIT = Reading(threads=None)  # threads as the inputs are worth
