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


def test_address_text_matches_python_ipaddress() -> None:
    """The numba address formatter against ``ipaddress`` (an independent
    implementation), on random addresses with many zero groups, so every
    placement of the ``::`` run and its ties is met, and on the edge cases."""
    import ipaddress

    from detector._kernels import timefmt

    rng = np.random.default_rng(7)
    n = 20_000
    hi = rng.integers(0, 2**64, n, dtype=np.uint64)
    lo = rng.integers(0, 2**64, n, dtype=np.uint64)
    for half in (hi, lo):
        for group in range(4):
            zero = rng.random(n) < 0.5
            half[zero] &= ~np.uint64(0xFFFF << (16 * group))
    is_v4 = rng.random(n) < 0.3
    hi[is_v4] = 0
    lo[is_v4] = (lo[is_v4] & np.uint64(0xFFFFFFFF)) | np.uint64(0xFFFF << 32)
    # ::, ::1, mapped, all ones, 1::, 2001:db8::1, a tie of two runs (the first wins)
    edge = [(0, 0), (0, 1), (0, 0xFFFF0A000001), (2**64 - 1, 2**64 - 1), (1 << 48, 0),
            (0x20010DB800000000, 1), (0x0001000000000001, 0x0000000000000001)]  # fmt: skip
    for i, (h, low) in enumerate(edge):
        hi[i], lo[i], is_v4[i] = h, low, False
    fixed = np.zeros((n, timefmt.ADDRESS_WIDTH), dtype=np.uint8)
    lengths = np.zeros(n, dtype=np.int64)
    timefmt.address_texts(hi, lo, is_v4, fixed, lengths)
    ours = [bytes(fixed[i, : lengths[i]]).decode() for i in range(n)]
    reference = [
        str(ipaddress.IPv4Address(int(lo[i]) & 0xFFFFFFFF))
        if is_v4[i]
        else str(ipaddress.IPv6Address((int(hi[i]) << 64) | int(lo[i])))
        for i in range(n)
    ]
    assert ours == reference
    assert ours[:3] == ["::", "::1", "::ffff:a00:1"]
