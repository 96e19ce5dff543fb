"""Run tests/fuzz_kernels.py with every kernel compiled with bounds checking.

The kernels read from buffers of untrusted bytes; bounds checking turns any
read past a buffer into an IndexError instead of a silent wrong value or a
crash. Checked builds are never cached, so this compiles the kernels afresh in
a child process (about half a minute)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from corpus import needs_corpus

HERE = Path(__file__).resolve().parent


@needs_corpus
def test_kernels_never_read_out_of_bounds_on_mutated_captures():
    env = dict(os.environ, EGRESS_DETECTOR_BOUNDSCHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "fuzz_kernels.py")],
        env=env, capture_output=True, text=True, timeout=1200, cwd=HERE.parent,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
