"""One place for numba's compile options, so no kernel hard-codes them.

* ``EGRESS_DETECTOR_BOUNDSCHECK=1`` compiles every kernel with bounds checking
  (an out-of-range index raises instead of reading past a buffer). The fuzz tests
  run that way. Caching is off then, so a checked build never lands in, or is
  loaded from, the cache the fast build uses.
* The cache lives in a directory we can write even when site-packages is
  read-only: ``$EGRESS_DETECTOR_CACHE_DIR``, else ``$NUMBA_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/egress-detector/numba`` (``~/.cache/...``).

Every kernel module imports its options from here.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def _start_numba_without_scipy():  # type: ignore[no-untyped-def]
    """Import numba and start its compiler target without touching SciPy.

    numba imports SciPy to check its version, and on first use imports
    ``scipy.linalg.cython_blas`` to offer ``np.dot`` inside kernels: together
    0.8 s of a 1.5 s start-up budget, for linear algebra our kernels never do.
    Hiding SciPy meanwhile makes numba record "no BLAS"; SciPy imports normally
    afterwards (scikit-learn needs it). If anything imported SciPy or started
    numba before us, there is nothing to save and nothing is hidden.
    """
    if "scipy" in sys.modules or "numba.np.arraymath" in sys.modules:
        import numba

        return numba
    sys.modules["scipy"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import numba
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
        cpu_target.typing_context.refresh()
    finally:
        if sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]
    return numba


numba = _start_numba_without_scipy()


def _cache_dir() -> Path:
    explicit = os.environ.get("EGRESS_DETECTOR_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "egress-detector" / "numba"


def _kernel_fingerprint() -> str:
    """A hash of every kernel source file.

    numba's cache checks only the file that defines a function, not the helpers
    inlined into it from other files: an edited ``decode.py`` would leave a stale
    ``records.py`` kernel in the cache. Keying the cache directory on all kernel
    sources (and numba's version) makes any change recompile everything.
    """
    digest = hashlib.sha256(numba.__version__.encode())
    for source in sorted((Path(__file__).parent / "_kernels").glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


BOUNDSCHECK: bool = os.environ.get("EGRESS_DETECTOR_BOUNDSCHECK", "") == "1"
CACHE_DIR: Path = _cache_dir() / _kernel_fingerprint()
CACHE: bool = not BOUNDSCHECK

if CACHE:
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable home: compile every run rather than fail
        CACHE = False

if CACHE:
    # numba reads this when a kernel is first cached or loaded, not at import.
    numba.config.CACHE_DIR = str(CACHE_DIR)  # type: ignore[attr-defined]


# Kernels: nopython, no Python objects; fastmath is off because we do no float
# reductions where reassociation would pay, and exact integer results matter.
KERNEL = dict(cache=CACHE, boundscheck=BOUNDSCHECK, nogil=True)
# Per-packet loops that allocate nothing run without numba's reference-counting
# runtime: with it, every array handed to an inlined helper costs an atomic
# incref and decref per packet (73 → 23 ns per packet in the flow table).
HOT_LOOP = dict(KERNEL, _nrt=False)
# Per-packet helpers must not cost a reference count per array argument per call
# (the 6x trap in PERF-NOTES). Two ways:
# * INLINE: numba pastes the helper's IR into the caller. Certain, but numba copies
#   the helper's whole IR per call site, in time that grows with the square of its
#   size: for the large bodies the hot loops must have inline (decode_frame,
#   count_packet, the batch row writer), and for small helpers not yet moved to
#   LEAF (each move wants its own ab_kernels check).
# * LEAF: an ordinary compiled function without the reference-counting runtime, so a
#   call costs no reference count; LLVM inlines the small ones into the loop. The
#   byte readers, hashes and payload parsers moved here halved the first run's
#   compile at the same packet rates (figures: benchmarks/README.md, "The first
#   run's compile").
INLINE = dict(cache=CACHE, boundscheck=BOUNDSCHECK, inline="always")
LEAF = dict(cache=CACHE, boundscheck=BOUNDSCHECK, _nrt=False)


def is_compiled_cache_warm() -> bool:
    """True when compiled kernels are already in the cache (start-up will be fast)."""
    if not CACHE:
        return False
    return any(CACHE_DIR.rglob("*.nbi"))
