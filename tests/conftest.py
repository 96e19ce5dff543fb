"""Suite-wide hooks and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _installed_kernels() -> Path | None:
    """The compiled kernels an installed (built, not editable) egress-detector
    shipped, when the suite imports the source tree beside it, else None.

    CI runs ``pip install '.[test]'`` (whose wheel build compiles every kernel
    for the portable CPU into ``detector/_jitcache``, setup.py) and then pytest,
    which imports ``detector`` from the source tree: that tree has no shipped
    cache, so its processes compiled every kernel again for this machine's CPU,
    and the commands the suite starts outside the tree (``egress-detector``,
    ``python -m detector`` with another working directory) import the
    installed package, whose seeding keeps the files the tree's processes had
    written and so compiled a third time, for the portable CPU. Pointing every
    process at the installed package's cache (EGRESS_DETECTOR_SHIPPED_CACHE)
    makes them all load what the build compiled. detector/_jit.py uses it only
    when it fits: the same kernel sources (a hash of them), numba, Python and
    CPU; otherwise the kernels compile as before. tests/test_jit_cache.py sets
    its own."""
    if (
        os.environ.get("EGRESS_DETECTOR_SHIPPED_CACHE")
        or (ROOT / "detector" / "_jitcache").is_dir()
    ):
        return None
    import site

    for packages in [*site.getsitepackages(), site.getusersitepackages()]:
        shipped = Path(packages) / "detector" / "_jitcache"
        if (shipped / "manifest.json").is_file():
            return shipped
    return None


# Before anything imports detector (its _jit reads the variable at import), and
# for every process the tests start (they inherit it).
_SHIPPED = _installed_kernels()
if _SHIPPED is not None:
    os.environ["EGRESS_DETECTOR_SHIPPED_CACHE"] = str(_SHIPPED)

FUZZ_TEST = "test_kernels_never_read_out_of_bounds_on_mutated_captures"


def pytest_collection_finish(session):  # type: ignore[no-untyped-def]
    # The bounds-checked fuzz run compiles every kernel afresh (minutes of one
    # core): start it now, beside the rest of the suite, if it is selected.
    if any(item.name == FUZZ_TEST for item in session.items):
        from test_fuzz import start_fuzz_child

        start_fuzz_child()


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    import sys

    fuzz = sys.modules.get("test_fuzz")
    if fuzz is not None:
        fuzz.stop_fuzz_child()


@pytest.fixture(scope="module")
def client():
    """A local Dask cluster of two in-process workers, one per test module that
    asks for it (tests/test_distributed*.py)."""
    distributed = pytest.importorskip("dask.distributed", reason="needs the 'distributed' extra")
    with (
        distributed.LocalCluster(
            n_workers=2, processes=False, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c
