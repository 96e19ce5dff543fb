"""``detector.arrays.sorted_unique`` against ``np.unique`` (numpy's own answer):
values, dtype and order, on random and edge inputs."""

from __future__ import annotations

import numpy as np
import pytest

from detector.arrays import sorted_unique


def same(values: np.ndarray) -> None:
    got = sorted_unique(values)
    want = np.unique(values)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # NaN matches NaN here


def test_hand_computed_case() -> None:
    got = sorted_unique(np.array([5, -3, 5, 0, -3, 2**62], dtype=np.int64))
    assert got.tolist() == [-3, 0, 5, 2**62]
    assert got.dtype == np.int64


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.uint64, np.float64])
def test_edges(dtype: type) -> None:
    for values in ([], [7], [7, 7, 7, 7], [3, 1, 2, 1, 3]):
        same(np.array(values, dtype=dtype))


def test_negative_and_uint64_above_2_63() -> None:
    same(np.array([-(2**63), -1, 0, -1, 2**63 - 1, -(2**63)], dtype=np.int64))
    big = np.array([2**64 - 1, 2**63, 0, 2**63 + 1, 2**63, 1, 2**64 - 1], dtype=np.uint64)
    same(big)
    assert sorted_unique(big).tolist() == [0, 1, 2**63, 2**63 + 1, 2**64 - 1]


def test_nan_counts_once_and_last() -> None:
    values = np.array([np.nan, 2.0, -np.inf, np.nan, 2.0, -0.0, 0.0, np.inf, np.nan])
    same(values)
    got = sorted_unique(values)
    assert got[:-1].tolist() == [-np.inf, 0.0, 2.0, np.inf]
    assert np.isnan(got[-1])
    same(np.array([np.nan, np.nan]))
    same(np.array([np.nan], dtype=np.float32))
    times = np.array(["NaT", "2026-12-06", "NaT", "2026-12-05"], dtype="datetime64[ns]")
    same(times)
    same(np.array([1 + 1j, complex(np.nan, 0), 1 + 1j, complex(0, np.nan), -1j]))


def test_random_against_numpy() -> None:
    rng = np.random.default_rng(23)
    for n in (1, 2, 10, 1000, 100_000):
        same(rng.integers(-(2**62), 2**62, n))  # mostly distinct
        same(rng.integers(0, 50, n))  # many repeats
        same(rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True))
        same(rng.integers(0, 2**31 - 1, n).astype(np.int32))
        floats = rng.normal(size=n)
        floats[rng.random(n) < 0.1] = np.nan
        same(floats)
        same(rng.integers(0, max(n // 3, 1), n).astype("U8"))
        same(rng.integers(0, max(n // 3, 1), n).astype("S8"))


def test_other_shapes_and_kinds() -> None:
    rng = np.random.default_rng(6)
    same(rng.integers(0, 20, (300, 4)))  # np.unique flattens: so does the helper
    same(np.array(5))
    same(rng.integers(0, 30, 500).astype(str).astype(object))
    same(np.array([True, False, True]))
    same(np.array([3, 1, 3], dtype="timedelta64[s]"))
    same([4, 2, 4, 9])  # a list, as np.unique takes
