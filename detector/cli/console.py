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

from ..capture.reading import Reading

if TYPE_CHECKING:
    from ..capture import CaptureProblem, CaptureStats
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


def exit_codes_help(*codes: tuple[ExitStatus, str]) -> str:
    """A command's "exit codes:" epilog: what its own codes mean for it, then
    the two every command shares (a bug, Ctrl-C)."""
    bug = "internal error (a bug): rerun with --traceback and report what it prints"
    shared = [(ExitStatus.INTERNAL, bug), (ExitStatus.INTERRUPTED, "interrupted (Ctrl-C)")]
    lines = ["exit codes:"]
    for code, meaning in [*codes, *shared]:
        first, *more = meaning.split("\n")
        lines += [f"  {int(code)}  {first}", *(f"     {line}" for line in more)]
    return "\n".join(lines) + "\n"


def say(message: str) -> None:
    print(f"egress-detector: {message}", file=sys.stderr, flush=True)


def say_compiling(seconds: int, *, quiet: bool = False, what: str = "packet kernels") -> None:
    """Say, when numba actually compiles a kernel (a cold or partly stale
    cache: the first run after an install or an upgrade, another user's cache,
    a kernel this command is the first to run), that it does and for about how
    long; a run that only loads cached kernels says nothing. Call it once the
    command's inputs are checked: the note comes at the first compile, however
    late in the run that is, and once per process."""
    _COMPILE_NOTE.arm(
        None
        if quiet
        else f"compiling the {what} for this machine (the first run after an install or "
        f"an upgrade; about {seconds} s, then cached in {_cache_place()}){_unshipped()}..."
    )


def _unshipped() -> str:
    """Why the kernels shipped with this install are not used, when it has some."""
    from .. import _jit

    if _jit.SHIPPED is not None or not _jit.SHIPPED_DIR.is_dir():
        return ""
    return f"; the kernels shipped with it are not used: {_jit.SHIPPED_REASON}"


def _cache_place() -> str:
    from .. import _jit

    return str(_jit.CACHE_DIR.parent)


class _CompileNote:
    """A numba event listener (``numba:compile`` starts only on a cache miss,
    never when a kernel is loaded from the cache) that says its note once."""

    def __init__(self) -> None:
        self.note: str | None = None
        self.installed = False

    def arm(self, note: str | None) -> None:
        self.note = note
        if self.installed:
            return
        from .. import _jit  # numba started its own way (without SciPy)

        event = _jit.numba.core.event

        listener = self

        class Listener(event.Listener):  # type: ignore[misc,name-defined]
            def on_start(self, _event: object) -> None:
                listener.compiling()

            def on_end(self, _event: object) -> None:
                pass

        event.register("numba:compile", Listener())
        self.installed = True

    def compiling(self) -> None:
        note, self.note = self.note, None
        if note is not None:
            say(note)


_COMPILE_NOTE = _CompileNote()


class Problems:
    """Says each capture problem as it comes (``error:`` when the rest of a
    file was lost, else ``warning:``); ``damaged`` once one was an error.
    ``progress``: a progress bar over ``captures``, shown unless ``quiet``."""

    def __init__(self, captures: Sequence[str] = (), quiet: bool = True) -> None:
        self.damaged = False
        self.captures = captures
        self.quiet = quiet

    def __call__(self, problem: CaptureProblem) -> None:
        self.damaged = self.damaged or problem.fatal
        say(("error: " if problem.fatal else "warning: ") + str(problem))

    def progress(self, steps: Iterator[int]) -> Iterator[int]:
        return progress(steps, self.captures, not self.quiet)

    def reading(
        self, threads: int | None = None, stats_out: list[CaptureStats] | None = None
    ) -> Reading:
        """How the command reads its captures: with these problems said and this
        progress shown (``threads`` None: as many as the inputs are worth)."""
        return Reading(threads, self, stats_out, self.progress)


def reading_starts(compile_seconds: int, captures: Sequence[str] = (), *, quiet: bool) -> Problems:
    """Call once a command's inputs are checked, as it starts reading
    ``captures``: arms the compile notice (:func:`say_compiling`) and returns
    what says each capture problem as it comes and shows the reading's progress."""
    say_compiling(compile_seconds, quiet=quiet)
    return Problems(captures, quiet)


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
