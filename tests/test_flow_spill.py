"""Closed flow records written to disk (``detector.flows.spill``) and read back:
the same flows, in the same order, in every output, as a table that keeps them
all in memory; the files have no name and an unwritable place is one line.

The reference is the table with ``spill_rows=None`` (today's in-memory path,
itself checked against tests/naive.py in test_flows_vs_naive.py) and, for the
merge, numpy's stable sort by first packet of all rows in the order closed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from detector._kernels import flowtable as fk
from detector.capture.reading import Reading
from detector.errors import DetectorError
from detector.flows import count_flows
from detector.flows import spill as sp
from detector.flows import table as flow_table
from detector.flows.export import export_flows
from detector.flows.records import initiator_columns, largest_rows

import corpus
import gen_cases as gc

FORMATS = {"table": "flows.txt", "csv": "flows.csv", "jsonl": "flows.jsonl",
           "parquet": "flows.parquet"}  # fmt: skip


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Many short flows, idle expiries and a full table (evictions), so rows
    are closed in an order far from their first packets."""
    path = tmp_path_factory.mktemp("spill") / "r.pcap"
    return gc.random_capture(path, 6000, 900, 11, long_gap_p=0.05)


COUNT = {"idle_timeout": 2.0, "max_flows": 64}


@pytest.mark.parametrize("export_rows", [flow_table.EXPORT_ROWS, 24])
def test_spilled_table_keeps_every_row_in_the_order_closed(capture, tmp_path, monkeypatch,
                                                           export_rows):  # fmt: skip
    whole = count_flows([capture], spill_rows=None, **COUNT)
    # 24-row export buffers: handed over when half full, written out, used again
    monkeypatch.setattr(flow_table, "EXPORT_ROWS", export_rows)
    given_back, taken = set(), set()
    recycle, fresh = flow_table.FlowTable._recycle, flow_table.FlowTable._fresh_buffer

    def recycle_seen(table: flow_table.FlowTable, chunk: np.ndarray) -> None:
        recycle(table, chunk)
        given_back.update(id(b) for b in table._spare)

    def fresh_seen(table: flow_table.FlowTable) -> np.ndarray:
        buffer = fresh(table)
        taken.add(id(buffer))
        return buffer

    monkeypatch.setattr(flow_table.FlowTable, "_recycle", recycle_seen)
    monkeypatch.setattr(flow_table.FlowTable, "_fresh_buffer", fresh_seen)
    spilled = count_flows([capture], spill_rows=70, spill_dir=tmp_path, **COUNT)
    assert bool(given_back & taken) == (export_rows == 24)
    assert spilled.evicted_flows == whole.evicted_flows > 0
    assert spilled.spilled_flows > 0.9 * spilled.closed_flows
    assert spilled.closed_flows == len(whole.exported_rows()) > 500
    # chunks: every row once, each with its place in the order closed
    seen = np.zeros(spilled.closed_flows, dtype=np.int64)
    for index, rows in spilled.indexed_row_chunks():
        seen[index] += 1
        assert np.array_equal(rows, whole.exported_rows()[index])
    assert (seen == 1).all()
    assert np.array_equal(spilled.exported_rows(), whole.exported_rows())


def test_readers_of_a_spilled_table_see_what_the_whole_table_gives(capture, tmp_path):
    whole = count_flows([capture], spill_rows=None, **COUNT)
    rows = whole.exported_rows()
    order = np.argsort(rows[:, fk.C_FIRST], kind="stable")
    spilled = count_flows([capture], spill_rows=13, spill_dir=tmp_path, **COUNT)
    blocks = list(spilled.sorted_row_blocks())
    assert len(blocks) > 1
    assert np.array_equal(np.concatenate(blocks), rows[order])
    for n in (0, 1, 5, 64, len(rows) + 3):
        assert np.array_equal(spilled.largest_rows(n), largest_rows(rows, n))

    def udp(r: np.ndarray) -> np.ndarray:
        return ((r[:, fk.C_META] >> 16) & 0xFF) == 17

    assert np.array_equal(spilled.rows_where(udp), rows[udp(rows)])
    assert np.array_equal(whole.rows_where(udp), rows[udp(rows)])
    # The same flows' columns, without copying their rows (beacon's read).
    for table in (spilled, whole):
        picked = table.columns_where(initiator_columns, lambda c: c["dst_port"] % 2 == 0)
        expected = initiator_columns(rows[initiator_columns(rows)["dst_port"] % 2 == 0])
        assert picked.keys() == expected.keys() and len(picked["sent"]) > 0
        for name in expected:
            assert np.array_equal(picked[name], expected[name]), name
    nothing = spilled.columns_where(initiator_columns, lambda c: c["sent"] < 0)
    assert {name: len(v) for name, v in nothing.items()} == dict.fromkeys(expected, 0)
    for ours, theirs in zip(
        spilled.column_slices(slice_flows=100), whole.column_slices(slice_flows=100), strict=True
    ):
        assert ours.keys() == theirs.keys()
        for name in ours:
            a, b = ours[name], theirs[name]
            if a.dtype.kind == "M":  # NaT is not equal to itself
                a, b = a.view(np.int64), b.view(np.int64)
            assert np.array_equal(a, b), name


def _exports(capture: Path, where: Path, **count_options: object) -> dict[str, bytes]:
    out = {}
    for fmt, name in FORMATS.items():
        for top in (None, 25):
            path = where / f"{top}-{name}"
            export_flows([capture], fmt, str(path), top=top, **count_options)  # type: ignore[arg-type]
            out[f"{fmt} top={top}"] = path.read_bytes()
    return out


def test_every_output_is_byte_identical(capture, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _exports(capture, tmp_path / "a", spill_rows=None, **COUNT)
    spilled = _exports(capture, tmp_path / "b", spill_rows=5, spill_dir=tmp_path, **COUNT)
    for name, data in whole.items():
        assert spilled[name] == data, name
    assert len(whole["jsonl top=None"].splitlines()) > 500


def test_merge_orders_ties_by_the_order_closed(monkeypatch, tmp_path):
    """Runs of many equal first-packet times, merged through blocks of a few
    rows: numpy's stable sort of the rows in the order closed, exactly."""
    monkeypatch.setattr(sp, "MERGE_BYTES", 40 * sp.ROW_BYTES)
    monkeypatch.setattr(sp, "MIN_BLOCK", 3)
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 1 << 40, size=(2000, fk.FLOW_COLUMNS), dtype=np.int64)
    rows[:, fk.C_FIRST] = rng.integers(0, 30, size=len(rows))  # ~70 rows share each time
    spill = sp.SpillFile(tmp_path)
    cuts = [0, 1, 2, 300, 301, 900, 1400, 1990]
    for start, stop in zip(cuts, cuts[1:], strict=False):
        spill.write_run([rows[start:stop]], start, wait=start % 2 == 0)
    tail = rows[1990:]
    tail_order = np.argsort(tail[:, fk.C_FIRST], kind="stable")
    merged = np.concatenate(
        list(sp.merge(spill, spill.written_runs(), (tail[tail_order], tail_order + 1990)))
    )
    assert np.array_equal(merged, rows[np.argsort(rows[:, fk.C_FIRST], kind="stable")])
    spill.close()


def test_the_spill_file_has_no_name(capture, tmp_path):
    table = count_flows([capture], spill_rows=3, spill_dir=tmp_path, **COUNT)
    assert table.spilled_flows > 0
    assert os.listdir(tmp_path) == []  # nothing to find, nothing left if killed
    table.close()
    assert os.listdir(tmp_path) == []


def test_a_spill_place_that_cannot_be_written_is_one_line(capture, tmp_path, monkeypatch):
    missing = tmp_path / "gone"
    with pytest.raises(DetectorError) as caught:
        count_flows([capture], spill_rows=3, spill_dir=missing, **COUNT)
    message = str(caught.value)
    assert message.startswith(f"{missing}: cannot make a file") and "\n" not in message

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sp.os, "pwrite", full)
    with pytest.raises(DetectorError) as caught:
        count_flows([capture], spill_rows=3, spill_dir=tmp_path, **COUNT)
    assert str(caught.value) == (
        f"{tmp_path}: cannot write for the flow records kept on disk: No space left on "
        "device (set TMPDIR to a directory with room)"
    )


@corpus.needs_corpus
def test_spilled_outputs_match_on_the_corpus(tmp_path):
    files = corpus.corpus_files()
    picked = sorted(files, key=lambda p: p.stat().st_size)[-2:] + files[::15]
    for path in picked:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        quiet = {"reading": Reading(on_problem=lambda p: None)}
        whole = _exports(path, tmp_path / "a", spill_rows=None, **quiet)
        spilled = _exports(path, tmp_path / "b", spill_rows=11, spill_dir=tmp_path, **quiet)
        for name, data in whole.items():
            assert spilled[name] == data, f"{path.name}: {name}"
        for sub in ("a", "b"):
            for f in (tmp_path / sub).iterdir():
                f.unlink()
            (tmp_path / sub).rmdir()


def test_a_spilled_table_makes_the_same_parquet_dataset(capture, tmp_path):
    """scan --parquet-dir writes the flows a slice at a time: read back, the same
    rows as the whole table's frame."""
    import pandas as pd

    from detector.distributed.dataset import write_dataset
    from detector.policy import load_policy

    whole = count_flows([capture], spill_rows=None, **COUNT)
    spilled = count_flows([capture], spill_rows=50, spill_dir=tmp_path, **COUNT)

    class Result:  # what write_dataset reads of a ScanResult
        flows = spilled
        features = pd.DataFrame({"window_start": pd.Series([], dtype="datetime64[ns, UTC]")})

    policy = load_policy(Path(__file__).resolve().parents[1] / "captures" / "sample-policy.toml")
    assert write_dataset(Result(), policy, tmp_path / "lake") == ["flows"]  # type: ignore[arg-type]
    back = pd.read_parquet(tmp_path / "lake" / "flows").drop(columns=["site", "day"])
    expected = whole.to_frame()
    assert len(back) == len(expected) > 500
    key = ["first_seen", "last_seen", "community_id", "src_port", "dst_port"]
    back = back.sort_values(key, kind="stable").reset_index(drop=True)
    expected = expected.sort_values(key, kind="stable").reset_index(drop=True)
    for name in expected.columns:
        ours, theirs = back[name], expected[name]
        if isinstance(theirs.dtype, pd.CategoricalDtype):
            ours, theirs = ours.astype(str), theirs.astype(str)
        assert ours.equals(theirs), name
