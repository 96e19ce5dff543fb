"""Suite-wide hooks and fixtures."""

from __future__ import annotations

import pytest

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
