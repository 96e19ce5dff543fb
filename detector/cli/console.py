"""What every command shares on the terminal: exit codes, one-line messages on
stderr, progress bars, and the argument types of numbers. The command modules
(main, live, nightly) import this; it imports none of them."""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Iterator, Sequence


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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds as a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 16:
        raise argparse.ArgumentTypeError(f"must be at least 16, got {text}")
    return value


def worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


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
