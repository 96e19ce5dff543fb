"""One place for numba's compile options, so no kernel hard-codes them.

* ``EGRESS_DETECTOR_BOUNDSCHECK=1`` compiles every kernel with bounds checking
  (an out-of-range index raises instead of reading past a buffer). The fuzz tests
  run that way. Caching is off then, so a checked build never lands in, or is
  loaded from, the cache the fast build uses.
* The cache lives in a directory we can write even when site-packages is
  read-only: ``$EGRESS_DETECTOR_CACHE_DIR``, else ``$NUMBA_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/egress-detector/numba`` (``~/.cache/...``).
* A built package ships its kernels compiled (``detector/_jitcache``, made by
  ``python -m detector._jit --build DIR`` from ``setup.py`` when the wheel is
  built) for a CPU every x86-64 machine has. When that cache fits this process
  (the same kernel sources, numba, Python and platform), numba compiles for that
  CPU too and the shipped files are copied into the cache above once, so the
  first run loads its kernels instead of compiling them for a minute. When it
  does not fit (another numba, another machine, a damaged file), it is left
  alone and the kernels compile for this machine as before (the compile note
  says so and why: ``SHIPPED_REASON``).

Every kernel module imports its options from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
KERNEL_DIR = PACKAGE_DIR / "_kernels"
# Where a built package keeps its compiled kernels ($EGRESS_DETECTOR_SHIPPED_CACHE
# points elsewhere, for tests and for bench_compile.py).
SHIPPED_DIR = Path(os.environ.get("EGRESS_DETECTOR_SHIPPED_CACHE") or PACKAGE_DIR / "_jitcache")
MANIFEST = "manifest.json"
# The CPUs shipped kernels may be compiled for (LLVM's names, no feature string),
# with the host features each needs: x86-64-v3 (AVX2 and BMI2, Intel since 2013,
# AMD since 2015) where the build machine has them, else the baseline x86-64 every
# machine runs. Against code for this machine's own CPU (znver3) in alternating
# processes, kernel mode: v3 75.5-75.8 ms, znver3 76.5-78.6, generic 78.5-90.3
# (benchmarks/README.md, "The first run from a built package").
CPU_LEVELS: dict[str, frozenset[str]] = {
    "x86-64-v3": frozenset(
        [
            "avx",
            "avx2",
            "bmi",
            "bmi2",
            "cx16",
            "f16c",
            "fma",
            "lzcnt",
            "movbe",
            "popcnt",
            "sahf",
            "sse3",
            "sse4.1",
            "sse4.2",
            "ssse3",
            "xsave",
        ]
    ),
    "generic": frozenset(),
}


def cpu_lacks(cpu_name: str, host_features: dict[str, bool]) -> list[str]:
    """The features ``cpu_name``'s code needs that the host lacks (all of them, as
    ["?"], for a CPU name we do not know)."""
    needed = CPU_LEVELS.get(cpu_name)
    if needed is None:
        return ["?"]
    return sorted(f for f in needed if not host_features.get(f, False))


def _host_features() -> dict[str, bool]:
    import llvmlite.binding as ll

    if platform.machine() not in ("x86_64", "AMD64"):
        return {}
    return dict(ll.get_host_cpu_features())


def portable_cpu() -> tuple[str, str]:
    """The CPU to compile shipped kernels for on this (build) machine."""
    features = _host_features()
    if features and not cpu_lacks("x86-64-v3", features):
        return ("x86-64-v3", "")
    return ("generic", "")


PORTABLE_CPU = ("generic", "")  # set by _choose_target: the CPU shipped kernels are for


def _start_numba_without_scipy(before_start: Any = None) -> Any:
    """Import numba and start its compiler target without touching SciPy.

    numba imports SciPy to check its version, and on first use imports
    ``scipy.linalg.cython_blas`` to offer ``np.dot`` inside kernels: together
    0.8 s of a 1.5 s start-up budget, for linear algebra our kernels never do.
    Hiding SciPy meanwhile makes numba record "no BLAS"; SciPy imports normally
    afterwards (scikit-learn needs it). If anything imported SciPy or started
    numba before us, there is nothing to save and nothing is hidden.

    ``before_start(numba)`` runs after the import and before the compiler
    target starts: the last moment numba's CPU name can still be chosen.
    """
    if "scipy" in sys.modules or "numba.np.arraymath" in sys.modules:
        import numba

        if before_start is not None:
            before_start(numba)
        return numba
    sys.modules["scipy"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import numba
        from numba.core.registry import cpu_target

        if before_start is not None:
            before_start(numba)
        cpu_target.target_context.refresh()
        cpu_target.typing_context.refresh()
    finally:
        if sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]
    return numba


def _cache_dir() -> Path:
    explicit = os.environ.get("EGRESS_DETECTOR_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "egress-detector" / "numba"


def _kernel_fingerprint(numba_version: str) -> str:
    """A hash of every kernel source file.

    numba's cache checks only the file that defines a function, not the helpers
    inlined into it from other files: an edited ``decode.py`` would leave a stale
    ``records.py`` kernel in the cache. Keying the cache directory on all kernel
    sources (and numba's version) makes any change recompile everything.
    """
    digest = hashlib.sha256(numba_version.encode())
    for source in sorted(KERNEL_DIR.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _platform() -> dict[str, str]:
    """What compiled code depends on besides the sources and the CPU."""
    return {
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}{getattr(sys, 'abiflags', '')}",
        "machine": platform.machine(),
        "system": sys.platform,
    }


def shipped_fit(shipped: Path, fingerprint: str, numba_version: str) -> tuple[dict | None, str]:
    """The shipped cache's manifest if its kernels can run here, else None, and why not."""
    try:
        manifest = json.loads((shipped / MANIFEST).read_text())
    except FileNotFoundError:
        return None, "this install has no compiled kernels"
    except (OSError, ValueError) as exc:
        return None, f"{shipped / MANIFEST}: unreadable ({exc})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None, f"{shipped / MANIFEST}: not a kernel cache manifest"
    if manifest.get("numba") != numba_version:
        return None, (
            f"the kernels shipped were compiled with numba {manifest.get('numba')}, "
            f"this is numba {numba_version}"
        )
    if manifest.get("fingerprint") != fingerprint:
        return None, "the kernels shipped were compiled from other kernel sources"
    here = _platform()
    for key, value in here.items():
        if manifest.get(key) != value:
            shipped_for = manifest.get(key)
            return None, f"the kernels shipped were compiled for {key} {shipped_for}, not {value}"
    cpu_name = manifest.get("cpu_name")
    if manifest.get("cpu_features") != "" or not isinstance(cpu_name, str):
        return None, f"the kernels shipped were compiled for CPU {cpu_name!r}"
    lacks = cpu_lacks(cpu_name, _host_features()) if cpu_name != "generic" else []
    if lacks:
        return None, f"the kernels shipped were compiled for CPU {cpu_name!r}" + (
            f", and this CPU lacks {', '.join(lacks)}" if lacks != ["?"] else ""
        )
    return manifest, ""


def seed_cache(shipped: Path, manifest: dict, into: Path) -> str:
    """Copy the shipped kernels into the cache directory ``into`` (once: a marker
    file says it was done). Files the cache already holds are kept; a shipped file
    whose hash differs from the manifest's stops the copy before any of it lands
    (numba would fail on a damaged cache file rather than recompile). Returns why
    nothing was copied, or ""."""
    marker = into / f".seeded-{manifest['fingerprint']}"
    if marker.exists():
        return ""
    files: dict[str, str] = manifest["files"]
    blobs = {}
    for name, sha256 in files.items():
        if "/" in name or name.startswith("."):
            return f"{shipped / MANIFEST}: {name!r} is not a cache file name"
        try:
            blob = (shipped / name).read_bytes()
        except OSError as exc:
            return f"{shipped / name}: unreadable ({exc.strerror})"
        if hashlib.sha256(blob).hexdigest() != sha256:
            return f"{shipped / name}: damaged (its hash differs from the manifest's)"
        blobs[name] = blob
    into.mkdir(parents=True, exist_ok=True)
    # Data files first, each index after them, each file written whole then renamed
    # into place: a process loading meanwhile sees an old state or the new one.
    for name in sorted(blobs, key=lambda n: n.endswith(".nbi")):
        target = into / name
        if target.exists():
            continue
        fd, temporary = tempfile.mkstemp(dir=into, prefix=".seeding-")
        with os.fdopen(fd, "wb") as out:
            out.write(blobs[name])
        os.replace(temporary, target)
    marker.touch()
    return ""


BOUNDSCHECK: bool = os.environ.get("EGRESS_DETECTOR_BOUNDSCHECK", "") == "1"
CACHE: bool = not BOUNDSCHECK
FINGERPRINT = ""  # the kernel sources' and numba's hash: names the cache directory
CACHE_DIR = Path()  # this fingerprint's cache (numba.config.CACHE_DIR)
# Our kernels' cache files, in a folder named after the package (the copies
# benchmarks/ab_kernels.py loads under other names keep theirs apart).
KERNEL_CACHE_DIR = Path()
CPU_NAME = ""  # the CPU numba compiles for ("" = this machine's)
SHIPPED: dict | None = None  # the shipped cache's manifest, when it is used
SHIPPED_REASON = ""  # why the shipped cache is not used ("" when it is)


def _choose_target(numba: Any) -> None:
    """Find the cache; compile for the shipped cache's CPU when that cache fits
    this process and its files were copied into the cache."""
    global FINGERPRINT, CACHE_DIR, KERNEL_CACHE_DIR, CACHE, SHIPPED, SHIPPED_REASON, CPU_NAME
    global PORTABLE_CPU
    FINGERPRINT = _kernel_fingerprint(numba.__version__)
    CACHE_DIR = _cache_dir() / FINGERPRINT
    KERNEL_CACHE_DIR = CACHE_DIR / PACKAGE_DIR.name
    if CACHE:
        try:
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
        except OSError:  # an unwritable home: compile every run rather than fail
            CACHE = False
    wanted: tuple[str, str] | None = None
    if os.environ.get("EGRESS_DETECTOR_BUILD_CACHE") == "1":  # detector/_jit_build.py
        SHIPPED_REASON = "building the shipped cache"
        PORTABLE_CPU = portable_cpu()
        wanted = PORTABLE_CPU
    elif not CACHE:
        SHIPPED_REASON = "the kernel cache is off"
    else:
        SHIPPED, SHIPPED_REASON = shipped_fit(SHIPPED_DIR, FINGERPRINT, numba.__version__)
        if SHIPPED is not None:
            PORTABLE_CPU = (SHIPPED["cpu_name"], "")
    from numba.core.registry import cpu_target

    config = numba.config
    current = (config.CPU_NAME, config.CPU_FEATURES)
    if SHIPPED is not None and current != PORTABLE_CPU:
        if current != (None, None):
            SHIPPED, SHIPPED_REASON = None, "NUMBA_CPU_NAME/NUMBA_CPU_FEATURES chose another CPU"
        elif "_toplevel_target_context" in vars(cpu_target):
            # numba's code generator already runs for this machine's CPU: the shipped
            # code's index entries (keyed by CPU) would never match.
            SHIPPED, SHIPPED_REASON = None, "numba was started before egress-detector"
    if SHIPPED is not None:
        try:
            SHIPPED_REASON = seed_cache(SHIPPED_DIR, SHIPPED, KERNEL_CACHE_DIR)
        except OSError as exc:
            SHIPPED_REASON = f"{KERNEL_CACHE_DIR}: the shipped kernels could not be copied ({exc})"
        if SHIPPED_REASON:
            SHIPPED = None
        else:
            wanted = PORTABLE_CPU
    if wanted is not None and current == (None, None):
        config.CPU_NAME, config.CPU_FEATURES = wanted
    CPU_NAME = config.CPU_NAME or ""


numba = _start_numba_without_scipy(_choose_target)

if CACHE:
    # numba reads this when a kernel is first cached or loaded, not at import.
    numba.config.CACHE_DIR = str(CACHE_DIR)  # type: ignore[attr-defined]


def _install_locator() -> None:
    """File our kernels' cache entries by content, not by where they are installed.

    numba's own locators file a function under a hash of its source directory's
    path, so a cache compiled in a build tree is never found from site-packages.
    This one puts every kernel of ``_kernels/`` in ``KERNEL_CACHE_DIR``, stamped
    with a hash of its source file (older numba stamp the file's mtime, which
    ``pip install`` does not keep). Functions elsewhere keep numba's locators.
    """
    from numba.core import caching

    class KernelCacheLocator(caching._CacheLocator):  # type: ignore[misc,name-defined]
        def __init__(self, py_func: Any, py_file: str) -> None:
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno

        def ensure_cache_path(self) -> None:
            KERNEL_CACHE_DIR.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=KERNEL_CACHE_DIR).close()

        def get_cache_path(self) -> str:
            return str(KERNEL_CACHE_DIR)

        def get_source_stamp(self) -> str:
            return _source_hash(self._py_file)

        def get_disambiguator(self) -> str:
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if Path(py_file).resolve().parent != KERNEL_DIR:
                return None
            locator = cls(py_func, py_file)
            try:
                locator.ensure_cache_path()
            except OSError:
                return None
            return locator

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # type: ignore[attr-defined]
    impl._locator_classes.insert(0, KernelCacheLocator)


_SOURCE_HASHES: dict[str, str] = {}


def _source_hash(path: str) -> str:
    if path not in _SOURCE_HASHES:
        _SOURCE_HASHES[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _SOURCE_HASHES[path]


if CACHE:
    _install_locator()


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
