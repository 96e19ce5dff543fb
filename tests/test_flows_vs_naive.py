"""``detector.flows.flows_from_captures`` against tests/naive.py, row by row on
every column of docs/flows.md ("Flow columns"), Community ID included.

Both sides are sorted by first packet, then the flow key; timestamps are
compared as integer ns (NaT <-> None), floats exactly.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detector.flows.table as flow_table_module
from detector.capture import read_packets
from detector.flows import FLOW_COLUMNS_DOC, FlowTable, flows_from_captures

import corpus
import gen_cases as gc
import naive

DOC = Path(__file__).resolve().parents[1] / "docs" / "flows.md"
S = gc.NS


def doc_columns() -> list[str]:
    """The column names of docs/flows.md's "Flow columns" table, in order."""
    text = DOC.read_text().split("## Flow columns", 1)[1].split("\n#", 1)[0]  # to the next heading
    names = []
    for line in text.splitlines():
        if line.startswith("| `"):
            _, first, meaning, _ = line.split("|", 3)
            names += re.findall(r"`([a-z0-9_]+)`", first)
            # a column introduced in another's meaning: "`transport` gives ..."
            names += re.findall(r"`([a-z0-9_]+)` gives", meaning)
    return names


COLUMNS = doc_columns()
TIME_COLUMNS = {
    "first_seen": "first_ns",
    "last_seen": "last_ns",
    "src2dst_first_seen": "src2dst_first_ns",
    "src2dst_last_seen": "src2dst_last_ns",
    "dst2src_first_seen": "dst2src_first_ns",
    "dst2src_last_seen": "dst2src_last_ns",
}


TEXT_COLUMNS = {"src_ip", "dst_ip", "transport", "expiry_reason", "community_id", "conn_state",
                "history", "service", "server_name"}  # fmt: skip


def test_doc_columns_are_all_there():
    assert len(COLUMNS) == 31 and COLUMNS[0] == "first_seen" and COLUMNS[-1] == "server_name"
    assert set(TIME_COLUMNS) <= set(COLUMNS) and "transport" in COLUMNS
    assert sorted(COLUMNS) == sorted(FLOW_COLUMNS_DOC)


def kernel_rows(frame: pd.DataFrame) -> list[dict]:
    missing = set(COLUMNS) - set(frame.columns)
    assert not missing, f"flow columns of docs/flows.md missing: {missing}"
    cols = {}
    for c in COLUMNS:
        series = frame[c]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or str(series.dtype).startswith("datetime"):
            cols[c] = [None if pd.isna(x) else x.value for x in series]
        elif c in TEXT_COLUMNS:
            cols[c] = [str(x) for x in series]
        elif c == "duration_ms":
            cols[c] = [float(x) for x in series]
        else:
            cols[c] = [int(x) for x in series]
    return [{c: cols[c][i] for c in COLUMNS} for i in range(len(frame))]


def naive_rows(flows: list[dict]) -> list[dict]:
    return [{c: f[TIME_COLUMNS.get(c, c)] for c in COLUMNS} for f in flows]


def sort_key(row: dict):
    return (
        row["first_seen"] if row["first_seen"] is not None else -(1 << 64),
        row["vlan_id"],
        row["protocol"],
        naive.addr_int(row["src_ip"]),
        row["src_port"],
        naive.addr_int(row["dst_ip"]),
        row["dst_port"],
        repr(sorted(row.items())),
    )


def flow_diffs(kernel: list[dict], ref: list[dict], ignore=frozenset()) -> list[str]:
    """Descriptions of the first disagreements (empty when equal)."""
    cols = [c for c in COLUMNS if c not in ignore]
    if ignore:
        key = lambda r: repr([r[c] for c in cols])  # noqa: E731
    else:
        key = sort_key
    k = sorted(kernel, key=key)
    n = sorted(ref, key=key)
    out = []
    if len(k) != len(n):
        out.append(f"flow count: kernel {len(k)}, naive {len(n)}")
    for i, (a, b) in enumerate(zip(k, n, strict=False)):
        bad = [c for c in cols if a[c] != b[c]]
        if bad:
            out.append(
                f"row {i}: "
                + ", ".join(f"{c} kernel {a[c]!r} naive {b[c]!r}" for c in bad)
                + f" [{b['src_ip']}:{b['src_port']} -> {b['dst_ip']}:{b['dst_port']}"
                f" proto {b['protocol']} vlan {b['vlan_id']}]"
            )
            if len(out) >= 6:
                break
    return out


def differing_columns(kernel: list[dict], ref: list[dict]) -> set[str]:
    """Columns on which matched rows differ (rows matched by the flow key and
    packet counts, which every known difference leaves alone)."""

    def ident(r):
        return (
            r["vlan_id"],
            r["protocol"],
            r["src_ip"],
            r["src_port"],
            r["dst_ip"],
            r["dst_port"],
            r["src2dst_packets"],
            r["dst2src_packets"],
            r["src2dst_bytes"],
        )

    k = sorted(kernel, key=lambda r: repr(ident(r)))
    n = sorted(ref, key=lambda r: repr(ident(r)))
    assert [ident(r) for r in k] == [ident(r) for r in n]
    return {c for a, b in zip(k, n, strict=True) for c in COLUMNS if a[c] != b[c]}


def kernel_flows(paths, **kw) -> tuple[list[dict], FlowTable]:
    frame, table = flows_from_captures([str(p) for p in paths], on_problem=lambda p: None, **kw)
    return kernel_rows(frame), table


def assert_same_flows(paths, **kw) -> list[dict]:
    """Kernel flows == naive flows; returns naive's rows."""
    k, _ = kernel_flows(paths, **kw)
    n = naive_rows(naive.naive_flows(list(paths), **kw))
    diffs = flow_diffs(k, n)
    assert not diffs, "\n".join([f"{[Path(p).name for p in paths]} {kw}:"] + diffs)
    return n


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return gc.write_all(tmp_path_factory.mktemp("cases"))


# --------------------------------------------------------------------------
# generated cases
# --------------------------------------------------------------------------

# Generated cases on which the kernel is known to differ from naive.py (none).
KNOWN_CASE_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_CASE_BUGS[n]))
        if n in KNOWN_CASE_BUGS
        else n
        for n in gc.CASES
    ],
)
def test_generated_case(cases, name):
    for group in gc.stream_groups(name, cases[name]):
        assert assert_same_flows(group)


@pytest.mark.parametrize(
    "kw",
    [
        dict(idle_timeout=60.0),
        dict(active_timeout=900.0),
        dict(idle_timeout=121.0, active_timeout=1e9),
    ],
)
def test_generated_cases_other_timeouts(cases, kw):
    for name in ("idle_timeout", "active_timeout", "rotated", "ipv4_fragments", "icmp_echo"):
        for group in gc.stream_groups(name, cases[name]):
            assert assert_same_flows(group, **kw)


# --------------------------------------------------------------------------
# random captures
# --------------------------------------------------------------------------

# (name, random_capture keyword arguments): "gaps" has idle gaps of 100-400 s
# and of exactly 120 s; "long" has flows that live past the 1800 s active timeout.
PROFILES = {
    "gaps": dict(n_packets=2000, n_flows=30, long_gap_p=0.03),
    "long": dict(n_packets=3000, n_flows=10, long_gap_p=0.0005, exact_gap_p=0.0, mean_gap_s=1.0),
}


def _capture(d: Path, profile: str, seed: int, fmt: str = "pcap", **extra) -> Path:
    kw = dict(PROFILES[profile], **extra)
    n, flows = kw.pop("n_packets"), kw.pop("n_flows")
    return gc.random_capture(d / f"{profile}-{seed}.{fmt}", n, flows, seed, fmt=fmt, **kw)


def _successors(rows: list[dict]) -> int:
    """Flows closed by a later packet of their own key (idle/active with a successor)."""
    groups = defaultdict(list)
    for r in rows:
        ends = sorted(
            [
                (naive.addr_int(r["src_ip"]), r["src_port"]),
                (naive.addr_int(r["dst_ip"]), r["dst_port"]),
            ]
        )
        groups[(r["vlan_id"], r["protocol"], *ends)].append(r)
    return sum(len(g) - 1 for g in groups.values())


@pytest.mark.parametrize("profile,seed,fmt", [("gaps", 7, "pcap"), ("long", 8, "pcapng")])
def test_random_capture(tmp_path, profile, seed, fmt):
    path = _capture(tmp_path, profile, seed, fmt)
    rows = assert_same_flows([path])
    reasons = Counter(r["expiry_reason"] for r in rows)
    pk = naive.naive_packets(path)
    # what the capture exercises
    assert reasons["idle"] > 0 and reasons["end"] > 0
    assert _successors(rows) > 0  # flows split by gaps (> 120 s, or > 1800 s of life)
    if profile == "long":
        assert reasons["active"] > 0
    assert any(p.frag & 1 and not p.frag & 2 for p in pk) and any(p.ip_version == 6 for p in pk)
    assert {r["transport"] for r in rows} >= {"tcp", "udp"} and any(r["vlan_id"] >= 0 for r in rows)
    assert {r["protocol"] for r in rows} & {1, 58}
    assert sum(r["bidirectional_packets"] for r in rows) == sum(1 for p in pk if p.ip_version)


@pytest.mark.parametrize(
    "profile,seed,kw",
    [
        ("gaps", 11, dict(idle_timeout=30.0, active_timeout=0.5)),
        ("long", 12, dict(active_timeout=600.0)),
    ],
)
def test_random_capture_other_timeouts(tmp_path, profile, seed, kw):
    rows = assert_same_flows([_capture(tmp_path, profile, seed)], **kw)
    assert Counter(r["expiry_reason"] for r in rows)["active"] > 0


@settings(max_examples=5, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    profile=st.sampled_from(sorted(PROFILES)),
    fmt=st.sampled_from(["pcap", "pcap-ns", "pcap-be", "pcapng"]),
    snaplen=st.sampled_from([None, None, 54, 62]),
)
def test_random_capture_property(seed, profile, fmt, snaplen):
    with tempfile.TemporaryDirectory() as d:
        path = _capture(Path(d), profile, seed, fmt, n_packets=800, snaplen=snaplen)
        assert assert_same_flows([path])


def test_rotated_random_capture(tmp_path):
    """A capture cut into two files mid-flow, given in order, is one stream:
    the same flows as naive over both files, and as the kernel over the whole."""
    whole = _capture(tmp_path, "long", 21, n_packets=1500)
    data = whole.read_bytes()
    records = naive.read_records(whole)
    cut = records[len(records) // 2].offset
    part1, part2 = tmp_path / "part1.pcap", tmp_path / "part2.pcap"
    part1.write_bytes(data[:cut])
    part2.write_bytes(data[:24] + data[cut:])
    rows = assert_same_flows([part1, part2])
    k_whole, _ = kernel_flows([whole])
    assert not flow_diffs(k_whole, rows)
    # flows that span the cut exist (else the test shows nothing)
    t_cut = records[len(records) // 2].ts_ns
    assert any(r["first_seen"] < t_cut <= r["last_seen"] for r in rows)


# --------------------------------------------------------------------------
# a full table, periodic sweeps
# --------------------------------------------------------------------------


def test_small_table_evicts_without_losing_packets(tmp_path):
    path = gc.random_capture(
        tmp_path / "many.pcap", 2000, 300, 31, long_gap_p=0.0, exact_gap_p=0.0, mean_gap_s=0.01
    )
    pk = [p for p in naive.naive_packets(path) if p.ip_version]
    rows, table = kernel_flows([path], max_flows=16)
    assert sum(r["bidirectional_packets"] for r in rows) == len(pk) == table.packets
    assert sum(r["bidirectional_bytes"] for r in rows) == sum(p.wire_len for p in pk)
    evicted = sum(r["expiry_reason"] == "evicted" for r in rows)
    assert evicted > 0 and table.evicted_flows == evicted
    assert {r["expiry_reason"] for r in rows} <= {"evicted", "end", "idle", "active", "fin", "rst"}

    # eviction splits flows, never mixes them: per key the totals are naive's
    def totals(rs):
        t: Counter = Counter()
        for r in rs:
            ends = sorted([(r["src_ip"], r["src_port"]), (r["dst_ip"], r["dst_port"])])
            key = (r["vlan_id"], r["protocol"], *ends)
            t[key + ("packets",)] += r["bidirectional_packets"]
            t[key + ("bytes",)] += r["bidirectional_bytes"]
        return t

    assert totals(rows) == totals(naive_rows(naive.naive_flows(path)))
    # without the limit the kernel agrees with naive row by row
    assert assert_same_flows([path])


def test_small_idle_timeout_sweeps(tmp_path):
    """idle_timeout 2 s: the table sweeps every second of packet time; sweeps
    change when flows leave memory, never what they contain."""
    path = gc.random_capture(
        tmp_path / "sweep.pcap", 2000, 40, 41, long_gap_p=0.01, exact_gap_p=0.0, mean_gap_s=0.2
    )
    table = FlowTable(idle_timeout=2.0)
    for _ in read_packets([str(path)], counter=table):
        pass
    exported_while_reading = len(table.exported_rows())
    live_at_end = table.live_flows
    table.flush()
    rows = kernel_rows(table.to_frame())
    ref = naive_rows(naive.naive_flows(path, idle_timeout=2.0))
    assert not flow_diffs(rows, ref)
    # Flows with a successor (a later flow of the same key) left the table while
    # reading, closed by that packet or swept before it; the rest are swept
    # (idle ones only) or still live at the end of the input.
    with_successor = _successors(ref)
    last_of_key = len(ref) - with_successor
    idle_last = last_of_key - Counter(r["expiry_reason"] for r in ref)["end"]
    swept = exported_while_reading - with_successor
    assert exported_while_reading + live_at_end == len(ref)
    assert 0 < swept <= idle_last  # sweeps ran, and closed only idle flows


@pytest.mark.parametrize("rows", [6, 16])
def test_small_export_buffer_drains_without_losing_flows(tmp_path, monkeypatch, rows):
    """An export buffer of a few rows fills again and again: each drain either
    hands the buffer over (at least half full) or copies what it holds, and a
    handed-over buffer must never be written again. The flows are naive's."""
    monkeypatch.setattr(flow_table_module, "EXPORT_ROWS", rows)
    path = gc.random_capture(
        tmp_path / "drain.pcap", 2000, 40, 43, long_gap_p=0.01, exact_gap_p=0.0, mean_gap_s=0.2
    )
    drained = []
    table = FlowTable(idle_timeout=2.0)
    assert table.export_buffer.shape[0] == rows
    table.on_export = lambda done: drained.append((done, done.copy()))
    for _ in read_packets([str(path)], counter=table):
        pass
    table.flush()
    sizes = [len(done) for done, _ in drained]
    # drains that handed the buffer over (at least half full) happened, and with
    # 16 rows also drains that copied (the end of input, a sweep's few rows)
    assert any(n * 2 >= rows for n in sizes)
    assert rows == 6 or any(n * 2 < rows for n in sizes)
    # no row handed out changed afterwards
    assert all(np.array_equal(done, snapshot) for done, snapshot in drained)
    closed = FlowTable.of_rows(np.concatenate([snapshot for _, snapshot in drained]))
    ref = naive_rows(naive.naive_flows(path, idle_timeout=2.0))
    assert not flow_diffs(kernel_rows(closed.to_frame()), ref)


# --------------------------------------------------------------------------
# flow-table disagreements with docs/flows.md (reported; strict xfail)
# --------------------------------------------------------------------------


def test_fractional_timeout_is_exact(tmp_path):
    f = gc.udp4("10.0.0.1", "10.0.0.2", 1, 2)
    path = gc.write_pcap(tmp_path / "t.pcap", 1, [(gc.T0_NS, f), (gc.T0_NS + 1_001_000_000, f)])
    assert assert_same_flows([path], idle_timeout=1.001)


def test_ipv6_flow_with_v4_mapped_addresses(tmp_path):
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6

    f = gc.eth(IPv6(src="::ffff:10.0.0.1", dst="::ffff:10.0.0.2") / UDP(sport=1, dport=2))
    path = gc.write_pcap(tmp_path / "m.pcap", 1, [(gc.T0_NS, f)])
    assert assert_same_flows([path])


def test_fragment_cache_forgets_a_first_fragment_replaced_in_its_slot(tmp_path):
    """docs/flows.md: first fragments live in a direct-mapped cache; a newer
    first fragment whose key hashes to the same slot replaces the older one, and
    the older datagram's last fragment then lands in a ports-0 flow."""
    import numpy as np
    from scapy.compat import raw
    from scapy.layers.inet import IP, UDP

    from detector._kernels.flowtable import flow_hash
    from detector.flows.table import FRAG_SLOTS

    src, dst, z = np.uint64(0xFFFF0A000001), np.uint64(0xFFFF0A000002), np.uint64(0)
    seen: dict[int, int] = {}
    for fid in range(1, 1 << 16):  # two identifications that share a cache slot
        slot = int(flow_hash(z, src, z, dst, np.uint64(fid << 8 | 17))) & (FRAG_SLOTS - 1)
        if slot in seen:
            a, b = seen[slot], fid
            break
        seen[slot] = fid

    def frag(fid, sport, off, more):
        dgram = raw(UDP(sport=sport, dport=53) / (b"x" * 100))
        chunk = dgram[:56] if off == 0 else dgram[56:]
        ip = IP(
            src="10.0.0.1", dst="10.0.0.2", id=fid, proto=17, flags="MF" if more else 0, frag=off
        )
        return gc.eth(ip / chunk)

    pk = [
        (gc.T0_NS, frag(a, 1111, 0, 1)),
        (gc.T0_NS + 1000, frag(b, 2222, 0, 1)),
        (gc.T0_NS + 2000, frag(a, 1111, 7, 0)),
    ]
    path = gc.write_pcap(tmp_path / "frags.pcap", 1, pk)
    k, _ = kernel_flows([path])
    got = sorted((r["src_port"], r["dst_port"], r["src2dst_packets"]) for r in k)
    assert got == [(0, 0, 1), (1111, 53, 1), (2222, 53, 1)]


# --------------------------------------------------------------------------
# the shared corpus
# --------------------------------------------------------------------------

# file -> the columns on which the kernel's flows differ from naive.py's, and why.
KNOWN_FLOW_DIFFS: dict[str, set[str]] = {}

needs_corpus = corpus.needs_corpus


@needs_corpus
@pytest.mark.parametrize("path", corpus.corpus_files(), ids=lambda p: p.name)
def test_corpus_file(path):
    k, _ = kernel_flows([path])
    n = naive_rows(naive.naive_flows(path))
    known = KNOWN_FLOW_DIFFS.get(path.name)
    if known is None:
        diffs = flow_diffs(k, n)
        assert not diffs, "\n".join([path.name] + diffs)
    else:
        # exactly the known columns differ, and nothing else does
        assert differing_columns(k, n) == known
        assert not flow_diffs(k, n, ignore=known)


@needs_corpus
def test_corpus_allow_list_names_corpus_files():
    files = corpus.corpus_files()
    assert len(files) >= 150
    assert set(KNOWN_FLOW_DIFFS) <= {p.name for p in files}


# --------------------------------------------------------------------------
# the two-thread pipeline counts exactly what the one-pass path counts
# --------------------------------------------------------------------------


def _columns_equal(a, b) -> list[str]:
    import numpy as np

    differ = []
    for name in a:
        x, y = a[name], b[name]
        same = (
            np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fM" else np.array_equal(x, y)
        )
        if not same:
            differ.append(name)
    return differ


@pytest.mark.parametrize("seed", [3, 4])
def test_two_threads_give_the_same_flows(tmp_path, seed):
    from detector.flows import count_flows
    from detector.flows import table as flow_table

    path = tmp_path / "r.pcap"
    gc.random_capture(path, 6000, 300, seed)
    one = count_flows([path], threads=1, idle_timeout=5.0, max_flows=64)
    # Small batches: many hand-overs between the threads, and the table fills up.
    saved = flow_table.PIPELINE_BATCH
    flow_table.PIPELINE_BATCH = 97
    try:
        two = count_flows([path], threads=2, idle_timeout=5.0, max_flows=64)
    finally:
        flow_table.PIPELINE_BATCH = saved
    assert two.packets == one.packets > 5000
    assert two.evicted_flows == one.evicted_flows > 0
    assert _columns_equal(one.columns(), two.columns()) == []


@needs_corpus
def test_two_threads_match_on_the_corpus():
    from detector.flows import count_flows

    for path in corpus.corpus_files()[::7]:
        one = count_flows([path], threads=1, on_problem=lambda p: None)
        two = count_flows([path], threads=2, on_problem=lambda p: None)
        assert _columns_equal(one.columns(), two.columns()) == [], path.name
