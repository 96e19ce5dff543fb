"""Run tests/fuzz_kernels.py with every kernel compiled with bounds checking.

The kernels read from buffers of untrusted bytes; bounds checking turns any
read past a buffer into an IndexError instead of a silent wrong value or a
crash. Checked builds are never cached, so this compiles the kernels afresh in
a child process: minutes of one core. tests/conftest.py starts that child as
soon as the test is collected, so it compiles on one core while the rest of
the suite runs on the other; the test then waits for its verdict."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from corpus import have_corpus, needs_corpus

HERE = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 1200

_child: subprocess.Popen[bytes] | None = None
# A file, not a pipe: a long failure report cannot block the child. It lives
# as long as the session (the child writes into it in the background).
_output = tempfile.TemporaryFile()  # noqa: SIM115


def start_fuzz_child() -> None:
    """Start the bounds-checked fuzz run in the background (once)."""
    global _child
    if _child is not None or not have_corpus():
        return
    env = dict(os.environ, EGRESS_DETECTOR_BOUNDSCHECK="1")
    _child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "fuzz_kernels.py")],
        env=env, stdout=_output, stderr=subprocess.STDOUT, cwd=HERE.parent,
    )  # fmt: skip


def stop_fuzz_child() -> None:
    """End the child if the session ends without waiting for it (-x, Ctrl-C,
    or the test deselected after collection)."""
    if _child is not None and _child.poll() is None:
        _child.kill()
        _child.wait()


@needs_corpus
def test_kernels_never_read_out_of_bounds_on_mutated_captures():
    start_fuzz_child()
    assert _child is not None
    try:
        returncode = _child.wait(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _child.kill()
        raise
    _output.seek(0)
    report = _output.read().decode(errors="replace")
    assert returncode == 0, report[-6000:]
    assert " passed" in report
