"""Eviction at the flow cap (``evict_cut`` + ``evict_oldest``) against a naive
version of its definition, on tables of made-up live flows.

The definition (docs/flows.md, "Flow records"): when a full table needs a row,
the cut is the ``max(k // 8, 1)``-th smallest last-seen time among the live rows
at positions 0, step, 2 step, ... (step = rows ever used // EVICT_SAMPLE, at
least 1; k the live rows sampled); every live flow last seen at or before the
cut is closed as ``evicted``, in row order, at most an eighth of the table's
rows. What stays must still be found by its key.
"""

from __future__ import annotations

import numpy as np
import pytest

from detector._kernels import flowtable as fk
from detector.flows import FlowTable


def live_rows(n: int, seed: int, *, distinct_times: bool = True) -> np.ndarray:
    """``n`` export rows with distinct random keys and random last-seen times."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, fk.FLOW_COLUMNS), dtype=np.int64)
    rows[:, fk.C_A_HI] = 0
    rows[:, fk.C_A_LO] = rng.choice(1 << 40, size=n, replace=False)
    rows[:, fk.C_B_LO] = 0x0A000001
    rows[:, fk.C_META] = (443 << 32) | (6 << 16) | 0xFFFF
    if distinct_times:
        last = rng.permutation(n).astype(np.int64) * 1_000 + 10**18
    else:  # a coarse clock: a few hundred flows share each second
        last = rng.integers(0, max(n // 300, 1), size=n) * 1_000_000_000 + 10**18
    rows[:, fk.C_LAST] = last
    rows[:, fk.C_FIRST] = last - rng.integers(0, 10**9, size=n)
    rows[:, fk.C_DIR + fk.D_PACKETS] = 1
    rows[:, fk.C_DIR + fk.D_BYTES] = 60
    rows[:, fk.C_DIR + fk.D_FIRST] = rows[:, fk.C_FIRST]
    rows[:, fk.C_DIR + fk.D_LAST] = last
    rows[:, fk.C_INIT_IS_A] = 1
    rows[:, fk.C_IP_VERSION] = 4
    return rows


def naive_eviction(rows: np.ndarray, room: int) -> list[int]:
    """Rows (positions) the definition closes, live rows ``rows`` at positions
    0..n-1 of a full table."""
    n = len(rows)
    step = max(n // fk.EVICT_SAMPLE, 1)
    sample = sorted(int(rows[r, fk.C_LAST]) for r in range(0, n, step))
    cut = sample[max(len(sample) // 8, 1) - 1]
    return [r for r in range(n) if rows[r, fk.C_LAST] <= cut][:room]


def full_table(rows: np.ndarray) -> FlowTable:
    table = FlowTable(max_flows=len(rows))
    table.resume(rows, int(rows[:, fk.C_LAST].max()))
    return table


def still_found(table: FlowTable, rows: np.ndarray) -> bool:
    kt = table.kernel_table
    for row in rows:
        key = tuple(int(v) for v in row[: fk.C_META + 1])
        h = fk.flow_hash(*(np.uint64(v & (2**64 - 1)) for v in key))
        tag = np.int64(h >> np.uint64(32))
        found, _ = fk.find_row(kt.flows, kt.slots, tag, tuple(np.int64(v) for v in key))
        if found < 0:
            return False
    return True


@pytest.mark.parametrize(
    ("n", "seed", "distinct"),
    [(64, 1, True), (1000, 2, True), (40_000, 3, True), (40_000, 4, False), (5000, 5, False)],
)
def test_eviction_closes_what_the_definition_says(n, seed, distinct):
    rows = live_rows(n, seed, distinct_times=distinct)
    table = full_table(rows)
    table._make_room()
    closed = table.exported_rows()
    room = max(n // 8, 1)
    expected = naive_eviction(rows, room)
    assert len(closed) == len(expected) == table.evicted_flows > 0
    assert np.array_equal(closed[:, : fk.C_SLOT], rows[expected, : fk.C_SLOT])
    assert np.array_equal(closed[:, fk.C_DIR :], _with_reason(rows[expected], fk.REASON_EVICTED))
    assert table.live_flows == n - len(expected)
    kept = np.setdiff1d(np.arange(n), expected)
    assert still_found(table, rows[kept])
    assert not still_found(table, rows[expected[:1]])


def _with_reason(rows: np.ndarray, reason: int) -> np.ndarray:
    out = rows.copy()
    out[:, fk.C_REASON] = reason
    return out[:, fk.C_DIR :]


def test_eviction_takes_about_the_oldest_eighth():
    """Distinct times: of 65,536 flows, the sampled cut closes 11 % to 12.5 % (an
    eighth at most), every one of them among the oldest 14 %."""
    n = 1 << 16
    rows = live_rows(n, 7)
    table = full_table(rows)
    table._make_room()
    closed = table.exported_rows()
    assert 0.11 * n < len(closed) <= n // 8
    age_rank = (closed[:, fk.C_LAST] - 10**18) // 1_000  # 0: the oldest flow
    assert age_rank.max() < 0.14 * n


def test_ties_at_the_cut_stop_at_an_eighth():
    """Every flow seen at the same instant: an eighth is closed, in row order."""
    rows = live_rows(4096, 8)
    rows[:, fk.C_LAST] = 10**18
    table = full_table(rows)
    table._make_room()
    closed = table.exported_rows()
    assert np.array_equal(closed[:, : fk.C_META + 1], rows[:512, : fk.C_META + 1])
