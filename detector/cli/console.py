"""What every command shares on the terminal: exit codes, one-line messages on
stderr (capture problems, policy warnings, the compile note), progress bars,
and the argument types of numbers. The command modules (main, live, nightly)
import this; it imports none of them."""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ..capture import CaptureProblem
    from ..policy import Policy

T = TypeVar("T")


class ExitStatus(enum.IntEnum):
    """Exit codes, the same for every command."""

    OK = 0  # done; no alerts
    ALERTS = 1  # done; alerts were raised
    USAGE = 2  # bad command line, policy or configuration
    UNREADABLE = 3  # some input could not be read completely (what was read is in the output)
    INTERNAL = 4  # a bug in egress-detector: please report it (rerun with --traceback)
    INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT): the shell's convention, 128 + 2


def say(message: str) -> None:
    print(f"egress-detector: {message}", file=sys.stderr, flush=True)


def say_compiling(seconds: int, *, quiet: bool = False) -> None:
    """Say that the packet kernels are compiled first (about ``seconds``), when
    their cache is cold (and not ``quiet``)."""
    from .. import _jit

    if not quiet and not _jit.is_compiled_cache_warm():
        say(
            f"compiling the packet kernels for this machine (once, about {seconds} s; cached in "
            f"{_jit.CACHE_DIR.parent})"
        )


class Problems:
    """Says each capture problem as it comes (``error:`` when the rest of a
    file was lost, else ``warning:``); ``damaged`` once one was an error."""

    def __init__(self) -> None:
        self.damaged = False

    def __call__(self, problem: CaptureProblem) -> None:
        self.damaged = self.damaged or problem.fatal
        say(("error: " if problem.fatal else "warning: ") + str(problem))


def site_policy(path: str | None) -> Policy:
    """The policy file at ``path`` (the built-in defaults for None), its
    warnings said."""
    from ..policy import default_policy, load_policy

    policy = load_policy(path) if path is not None else default_policy()
    for warning in policy.warnings:
        say(f"warning: {warning}")
    return policy


def number(
    parse: Callable[[str], T],
    expected: str,
    valid: Callable[[T], bool] | None = None,
    must: str = "",
) -> Callable[[str], T]:
    """An argument type: ``parse`` the text, which must be ``valid``; the usage
    errors read "expected EXPECTED, got 'x'" and "must MUST, got x"."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if valid is not None and not valid(value):
            raise argparse.ArgumentTypeError(f"must {must}, got {text}")
        return value

    return convert


def whole(text: str) -> int:
    """A whole number, maybe with _ between digits (1_000_000)."""
    return int(text.replace("_", ""))


positive_float = number(float, "seconds as a number", lambda v: v > 0, "be more than 0 seconds")
positive_int = number(whole, "a whole number", lambda v: v >= 16, "be at least 16")
worker_count = number(int, "a number of processes", lambda v: v >= 1, "be at least 1")


def progress(steps: Iterator[int], paths: Sequence[str], enabled: bool) -> Iterator[int]:
    """A progress bar by bytes of input on disk, on stderr, only on a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield from steps
        return
    from tqdm import tqdm

    total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    with tqdm(
        total=total, unit="B", unit_scale=True, desc="reading", file=sys.stderr, leave=False
    ) as bar:
        for step in steps:
            yield step
            bar.update(step)
