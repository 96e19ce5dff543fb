"""Flow writers: timestamps text against numpy's own formatting, and every output
format round-trips the same flows."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from detector.flows import count_flows
from detector.flows.records import iter_flow_columns
from detector.flows.write import _timestamp_texts, write_flows

from gen_cases import random_capture


@pytest.mark.parametrize("unit", ["us", "ns"])
def test_iso_timestamps_match_numpy(unit):
    rng = np.random.default_rng(7)
    ns = rng.integers(-(2**62), 2**62, 50_000)
    if unit == "us":
        ns = ns // 1000 * 1000
    values = ns.view("M8[ns]")
    expected = np.datetime_as_string(values, unit=unit, timezone="UTC").astype(object)
    assert (_timestamp_texts(values) == expected).all()


def test_nat_is_none():
    values = np.array([np.iinfo(np.int64).min, 0], dtype=np.int64).view("M8[ns]")
    assert _timestamp_texts(values).tolist() == [None, "1970-01-01T00:00:00.000000Z"]


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "r.pcap"
    random_capture(path, 3000, 200, 11)
    rows = count_flows([path], idle_timeout=5.0).exported_rows()
    reference = next(iter_flow_columns(rows, slice_flows=10**9))
    return rows, reference


def test_formats_agree_across_slices(tmp_path, flows):
    rows, ref = flows
    n = len(rows)
    assert n > 150
    # Small slices: several row groups / header once / no gaps between slices.
    write_flows(iter_flow_columns(rows, slice_flows=37), "parquet", str(tmp_path / "f.parquet"))
    write_flows(iter_flow_columns(rows, slice_flows=37), "csv", str(tmp_path / "f.csv"))
    write_flows(iter_flow_columns(rows, slice_flows=37), "jsonl", str(tmp_path / "f.jsonl"))

    table = pq.read_table(tmp_path / "f.parquet")
    assert table.num_rows == n
    assert table.column("community_id").to_pylist() == list(ref["community_id"])
    assert table.column("src2dst_bytes").to_pylist() == ref["src2dst_bytes"].tolist()
    first = table.column("first_seen").cast("int64").to_pylist()
    assert first == ref["first_seen"].view(np.int64).tolist()

    with open(tmp_path / "f.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == n
    assert [r["src_ip"] for r in records] == list(ref["src_ip"])
    assert [r["dst2src_last_seen"] or None for r in records] == list(
        _timestamp_texts(ref["dst2src_last_seen"])
    )

    lines = (tmp_path / "f.jsonl").read_text().splitlines()
    assert len(lines) == n
    parsed = [json.loads(line) for line in lines]
    assert [p["dst_port"] for p in parsed] == ref["dst_port"].tolist()
    assert [p["first_seen"] for p in parsed] == list(_timestamp_texts(ref["first_seen"]))
