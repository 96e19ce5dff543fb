"""``detector.flows.activity`` (packets and bytes per conversation per time bin)
against a pure-Python reference built on tests/naive.py's independent decoder.

Every comparison is exact and includes the row order: the reference sorts by
(bin_start_ns, a_hi, a_lo, b_hi, b_lo, a_port, b_port, proto, vlan), as
``ActivityTable.columns`` promises.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector._kernels import activity as ak
from detector._kernels import flowtable as fk
from detector.capture import PacketBatch, read_packets
from detector.flows import FlowTable
from detector.flows.activity import (
    ACTIVITY_COLUMNS,
    ACTIVITY_COLUMNS_DOC,
    ActivityTable,
    activity_from_captures,
)

import corpus
import gen_cases as gc
import naive

NS = gc.NS
M64 = (1 << 64) - 1
MINUTE = 60 * NS


# --------------------------------------------------------------------------
# the reference
# --------------------------------------------------------------------------


def naive_activity(packets, bin_seconds: int = 60) -> list[tuple]:
    """Rows of ACTIVITY_COLUMNS, sorted, from naive.Packet objects (or anything
    with their attributes). Written to be obviously right: a dict keyed by the
    tuple, Python's floor division, Python's tuple order for A and B."""
    bin_ns = bin_seconds * NS
    acc: dict[tuple, list[int]] = {}
    for p in packets:
        if p.ip_version == 0:
            continue
        a, b = (p.src, p.sport), (p.dst, p.dport)
        forward = a <= b  # the smaller (address, port) is A; a packet to itself is A→B
        if not forward:
            a, b = b, a
        vlan = -1 if p.vlan == naive.NO_VLAN else p.vlan
        key = (
            p.ts_ns // bin_ns * bin_ns,
            a[0] >> 64,
            a[0] & M64,
            b[0] >> 64,
            b[0] & M64,
            a[1],
            b[1],
            p.proto,
            vlan,
        )
        c = acc.setdefault(key, [0, 0, 0, 0, p.ts_ns, p.ts_ns])
        d = 0 if forward else 2
        c[d] += 1
        c[d + 1] += p.wire_len
        c[4] = min(c[4], p.ts_ns)
        c[5] = max(c[5], p.ts_ns)
    return [(*k[1:], k[0], *v) for k, v in sorted(acc.items())]


def table_rows(table: ActivityTable) -> list[tuple]:
    cols = table.columns()
    assert list(cols) == list(ACTIVITY_COLUMNS)
    return list(zip(*(cols[c].tolist() for c in ACTIVITY_COLUMNS), strict=True))


def kernel_activity(paths, **kw) -> tuple[list[tuple], ActivityTable]:
    batch_packets = kw.pop("batch_packets", None)
    table = ActivityTable(**kw)
    extra = {} if batch_packets is None else {"batch_packets": batch_packets}
    for batch in read_packets([str(p) for p in paths], on_problem=lambda p: None, **extra):
        table.ingest(batch)
    return table_rows(table), table


def row_diffs(got: list[tuple], want: list[tuple]) -> list[str]:
    out = []
    if len(got) != len(want):
        out.append(f"rows: kernel {len(got)}, naive {len(want)}")
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            bad = [
                f"{c} kernel {x} naive {y}"
                for c, x, y in zip(ACTIVITY_COLUMNS, g, w, strict=True)
                if x != y
            ]
            out.append(f"row {i}: " + ", ".join(bad))
            if len(out) >= 6:
                break
    return out


def assert_same_activity(paths, **kw) -> tuple[list[tuple], ActivityTable]:
    rows, table = kernel_activity(paths, **kw)
    ref = naive_activity(naive.naive_packets(list(paths)), kw.get("bin_seconds", 60))
    diffs = row_diffs(rows, ref)
    assert not diffs, "\n".join([f"{[Path(p).name for p in paths]} {kw}:", *diffs])
    return rows, table


# --------------------------------------------------------------------------
# hand-made batches: expected values written out
# --------------------------------------------------------------------------


def make_batch(packets: list[dict]) -> PacketBatch:
    """A packet batch from dicts; unnamed fields are IPv4/UDP, untagged, 100 bytes."""
    batch = PacketBatch.empty(len(packets))
    defaults = dict(
        ts_ns=0,
        interface=0,
        src_hi=0,
        src_lo=0,
        dst_hi=0,
        dst_lo=0,
        sport=0,
        dport=0,
        proto=17,
        ip_version=4,
        wire_len=100,
        cap_len=100,
        tcp_flags=0,
        vlan=0xFFFF,
        frag=0,
        frag_id=0,
        offset=0,
        status=0,
        payload_len=0,
        tcp_seq=0,
        tcp_zero_window=0,
    )
    for name, values in vars(batch).items():
        values[:] = [p.get(name, defaults[name]) for p in packets]
    return batch


def v4(last: int) -> int:
    return naive.V4_MAPPED | (10 << 24) | last


H1, H2, H3 = v4(1), v4(2), v4(3)


def pkt(t, src, dst, sport=1000, dport=443, **kw) -> dict:
    return dict(
        ts_ns=t,
        src_hi=src >> 64,
        src_lo=src & M64,
        dst_hi=dst >> 64,
        dst_lo=dst & M64,
        sport=sport,
        dport=dport,
        **kw,
    )


def test_bins_directions_and_non_ip():
    """Bin edges (k * 60 s is bin k, one ns before is bin k - 1, before 1970
    too), both directions, non-IP skipped, times out of order."""
    packets = [
        pkt(0, H1, H2, wire_len=10),  # bin 0, A→B (H1 < H2)
        pkt(MINUTE - 1, H2, H1, 443, 1000, wire_len=20),  # bin 0, B→A
        pkt(MINUTE, H1, H2, wire_len=30),  # bin 1
        pkt(-1, H1, H2, wire_len=40),  # bin -1
        pkt(-MINUTE, H2, H1, 443, 1000, wire_len=50),  # bin -1, B→A, before its first
        pkt(-MINUTE - 1, H1, H2, wire_len=60),  # bin -2
        pkt(5, H1, H2, wire_len=70, ip_version=0, status=1),  # not IP: skipped
        pkt(-30 * NS, H1, H2, wire_len=80),  # bin -1, inside its span: first, last kept
    ]
    table = ActivityTable()
    table.ingest(make_batch(packets))
    assert table.packets == 7
    h1, h2 = H1 & M64, H2 & M64
    key = (0, h1, 0, h2, 1000, 443, 17, -1)
    assert table_rows(table) == [
        (*key, -2 * MINUTE, 1, 60, 0, 0, -MINUTE - 1, -MINUTE - 1),
        (*key, -MINUTE, 2, 120, 1, 50, -MINUTE, -1),
        (*key, 0, 1, 10, 1, 20, 0, MINUTE - 1),
        (*key, MINUTE, 1, 30, 0, 0, MINUTE, MINUTE),
    ]
    assert table_rows(table) == naive_activity([_as_naive(p) for p in packets])


def _as_naive(p: dict):
    """A hand-made packet as naive_activity reads it."""
    from types import SimpleNamespace

    full = {"proto": 17, "ip_version": 4, "wire_len": 100, "vlan": 0xFFFF, **p}
    return SimpleNamespace(
        src=(full["src_hi"] << 64) | full["src_lo"],
        dst=(full["dst_hi"] << 64) | full["dst_lo"],
        **full,
    )


def test_orientation_ports_vlan_and_unsigned_order():
    """A is the smaller (address, port); the port decides between equal
    addresses; a packet to itself is A→B; VLAN and protocol are part of the key;
    addresses with the top bit set sort after small ones (unsigned); untagged
    (-1) sorts before VLAN 0."""
    big = 0xFF02 << 112 | 1  # ff02::1: high half ≥ 2**63
    packets = [
        pkt(1, H2, H1, 53, 40000),  # B→A: A = H1:40000
        pkt(2, H1, H1, 9, 7),  # same address: port 7 < 9, so B→A
        pkt(3, H1, H1, 5, 5),  # to itself: A→B
        pkt(4, H1, H2, 1, 2, vlan=0),
        pkt(5, H1, H2, 1, 2),  # untagged: another row
        pkt(6, H1, H2, 1, 2, proto=6),
        pkt(7, big, H1, 1, 2, ip_version=6),  # A = H1 (hi 0 < ff02...)
        pkt(8, big, big + 1, 1, 2, ip_version=6),  # A's high half ≥ 2**63: sorts last
    ]
    table = ActivityTable()
    table.ingest(make_batch(packets))
    h1, h2 = H1 & M64, H2 & M64
    rows = table_rows(table)
    assert rows == [
        (0, h1, 0, h1, 5, 5, 17, -1, 0, 1, 100, 0, 0, 3, 3),
        (0, h1, 0, h1, 7, 9, 17, -1, 0, 0, 0, 1, 100, 2, 2),
        (0, h1, 0, h2, 1, 2, 6, -1, 0, 1, 100, 0, 0, 6, 6),
        (0, h1, 0, h2, 1, 2, 17, -1, 0, 1, 100, 0, 0, 5, 5),
        (0, h1, 0, h2, 1, 2, 17, 0, 0, 1, 100, 0, 0, 4, 4),
        (0, h1, 0, h2, 40000, 53, 17, -1, 0, 0, 0, 1, 100, 1, 1),
        (0, h1, big >> 64, 1, 2, 1, 17, -1, 0, 0, 0, 1, 100, 7, 7),
        (big >> 64, 1, big >> 64, 2, 1, 2, 17, -1, 0, 1, 100, 0, 0, 8, 8),
    ]
    assert rows == naive_activity([_as_naive(p) for p in packets])


def test_dtypes_and_frame():
    table = ActivityTable(bin_seconds=10)
    table.ingest(make_batch([pkt(-1, H1, H2), pkt(25 * NS, H2, H1, 443, 1000, vlan=7)]))
    cols = table.columns()
    for name, (dtype, _) in ACTIVITY_COLUMNS_DOC.items():
        assert cols[name].dtype == dtype, name
        assert cols[name].shape == (2,)
    assert list(ACTIVITY_COLUMNS_DOC) == list(ACTIVITY_COLUMNS)
    assert cols["bin_start_ns"].tolist() == [-10 * NS, 20 * NS]
    assert cols["vlan"].tolist() == [-1, 7]
    frame = table.to_frame()
    assert list(frame.columns) == list(ACTIVITY_COLUMNS)
    assert [frame[c].dtype for c in ACTIVITY_COLUMNS] == [cols[c].dtype for c in ACTIVITY_COLUMNS]
    assert frame["bytes_ba"].tolist() == [0, 100]


def test_empty():
    table = ActivityTable(capacity=1)
    table.ingest(make_batch([]))
    table.ingest(make_batch([pkt(0, H1, H2, ip_version=0)]))
    cols = table.columns()
    assert table.packets == 0 and all(len(cols[c]) == 0 for c in ACTIVITY_COLUMNS)
    assert len(table.to_frame()) == 0


@pytest.mark.parametrize(
    "kw,error",
    [
        (dict(bin_seconds=0), ValueError),
        (dict(bin_seconds=-60), ValueError),
        (dict(bin_seconds=1.5), TypeError),
        (dict(capacity=0), ValueError),
        (dict(capacity=1 << 31), ValueError),
        (dict(capacity=16.0), TypeError),
    ],
)
def test_bad_parameters_are_named(kw, error):
    with pytest.raises(error, match=next(iter(kw))):
        ActivityTable(**kw)


def test_kernel_with_a_bad_bin_width_counts_nothing():
    """Kernels never raise: bin_ns <= 0 (the Python face refuses it) counts nothing."""
    batch = make_batch([pkt(0, H1, H2)])
    rows = np.zeros((4, ak.ROW_COLUMNS), dtype=np.int64)
    slots = np.zeros(8, dtype=np.int64)
    state = np.zeros(ak.S_FIELDS, dtype=np.int64)
    arrays = batch.arrays()
    assert ak.count_activity(arrays, 0, 1, 0, rows, slots, state) == 0
    assert state.tolist() == [0, 0]
    assert ak.count_activity(arrays, 0, 1, MINUTE, rows, slots, state) == 1
    assert state.tolist() == [1, 1]


def test_full_table_stops_at_the_packet_not_counted():
    """The kernel's contract: with every row used, it returns the index of the
    first packet that needs a new row, having counted those before it."""
    batch = make_batch([pkt(i * MINUTE, H1, H2) for i in range(3)] + [pkt(1, H1, H2)])
    rows = np.zeros((2, ak.ROW_COLUMNS), dtype=np.int64)
    slots = np.zeros(4, dtype=np.int64)
    state = np.zeros(ak.S_FIELDS, dtype=np.int64)
    arrays = batch.arrays()
    assert ak.count_activity(arrays, 0, 4, MINUTE, rows, slots, state) == 2
    assert state.tolist() == [2, 2]
    slots[:] = 0
    state[ak.S_ROWS] = 0
    assert ak.count_activity(arrays, 2, 4, MINUTE, rows, slots, state) == 4
    assert state.tolist() == [2, 4]  # bin 2 and bin 0 again: two rows
    assert rows[:2, ak.C_BIN].tolist() == [2, 0]


# --------------------------------------------------------------------------
# captures against the reference
# --------------------------------------------------------------------------


def _random(d: Path, seed: int, fmt: str = "pcap", n: int = 2000, **kw) -> Path:
    return gc.random_capture(
        d / f"r{seed}.{fmt.replace('-', '')}", n, kw.pop("flows", 40), seed, fmt=fmt, **kw
    )


@pytest.mark.parametrize(
    "seed,fmt,bin_seconds",
    [
        (1, "pcap", 60),
        (2, "pcapng", 60),
        (3, "pcap-ns", 1),
        (4, "pcap-be", 600),
        (5, "pcapng", 3600),
    ],
)
def test_random_capture(tmp_path, seed, fmt, bin_seconds):
    path = _random(tmp_path, seed, fmt)
    rows, table = assert_same_activity([path], bin_seconds=bin_seconds)
    pk = naive.naive_packets(path)
    ip = [p for p in pk if p.ip_version]
    # what the capture exercises
    assert len(ip) < len(pk)  # ARP frames are skipped
    assert table.packets == len(ip)
    assert sum(r[9] + r[11] for r in rows) == len(ip)
    assert sum(r[10] + r[12] for r in rows) == sum(p.wire_len for p in ip)
    assert any(r[9] and r[11] for r in rows)  # rows with both directions
    assert {r[6] for r in rows} >= {1, 6, 17, 58} and any(r[7] >= 0 for r in rows)
    assert any(p.frag & 1 and not p.frag & 2 for p in ip)  # later fragments: ports 0
    per_key = defaultdict(set)
    for r in rows:
        per_key[r[:8]].add(r[8])
    assert max(len(b) for b in per_key.values()) > 1  # conversations over several bins
    assert table_rows(activity_from_captures([path], bin_seconds=bin_seconds)) == rows


@pytest.mark.parametrize("capacity", [1, 16, 100])
def test_tiny_capacity_drains_and_merges(tmp_path, capacity):
    """A table far too small drains many times mid-stream; the merged result
    is the same, row for row, as with room to spare (and as the reference)."""
    path = _random(tmp_path, 9, n=3000, flows=80, mean_gap_s=0.5)
    rows, table = assert_same_activity([path], capacity=capacity, bin_seconds=10)
    big, big_table = kernel_activity([path], bin_seconds=10)
    assert rows == big
    assert table.drains >= 10 and big_table.drains == 0
    assert len(rows) > capacity


def test_batch_boundaries_do_not_matter(tmp_path):
    path = _random(tmp_path, 13, n=1500)
    whole, _ = kernel_activity([path])
    for batch_packets in (1, 7, 256):
        rows, _ = kernel_activity([path], batch_packets=batch_packets, capacity=32)
        assert rows == whole


def test_columns_mid_stream_then_more(tmp_path):
    """Asking for the columns merges what was drained; counting goes on after,
    and the final result is that of the whole stream."""
    path = _random(tmp_path, 17, n=1500)
    batches = [b.copy() for b in read_packets([str(path)], batch_packets=200)]
    whole = ActivityTable()
    for b in batches:
        whole.ingest(b)
    for capacity in (8, 1 << 18):
        table = ActivityTable(capacity=capacity)
        ref = []
        for k, b in enumerate(batches):
            table.ingest(b)
            ref.append(b)
            if k % 3 == 1:
                part = ActivityTable()
                for r in ref:
                    part.ingest(r)
                assert table_rows(table) == table_rows(part)
        assert table_rows(table) == table_rows(whole)
        assert table.packets == whole.packets


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    capacity=st.sampled_from([2, 16, 1 << 18]),
    bin_seconds=st.sampled_from([1, 7, 60, 86_400]),
    fmt=st.sampled_from(["pcap", "pcap-ns", "pcapng"]),
    snaplen=st.sampled_from([None, 54, 62]),
)
def test_random_capture_property(seed, capacity, bin_seconds, fmt, snaplen):
    with tempfile.TemporaryDirectory() as d:
        path = _random(Path(d), seed, fmt, n=600, flows=25, snaplen=snaplen)
        assert_same_activity([path], capacity=capacity, bin_seconds=bin_seconds)


def test_negative_and_boundary_times_in_a_capture(tmp_path):
    """pcapng with if_tsoffset -3600 s: packets before 1970, exactly on bin
    edges and one ns either side, in both directions, an ARP frame between."""
    w = gc.Pcapng()
    w.shb("<")
    w.idb(1, tsresol=9, tsoffset=-3600)
    f = gc.udp4("10.30.0.1", "10.30.0.2", 1000, 53)
    r = gc.udp4("10.30.0.2", "10.30.0.1", 53, 1000)
    times = []
    for k in (0, 1, 59, 60, 61):  # minutes after the offset: -60 ... +1 minutes around 0
        edge = k * MINUTE
        times += [edge - 1, edge, edge + 1]
    for i, ticks in enumerate(t for t in times if t >= 0):
        w.epb(0, ticks, f if i % 2 else r)
    w.epb(0, 30 * MINUTE, gc.eth(gc.ARP(psrc="10.30.0.1", pdst="10.30.0.2", hwsrc=gc.MAC_A)))
    path = tmp_path / "edges.pcapng"
    path.write_bytes(w.bytes())
    rows, table = assert_same_activity([path])
    bins = [r[8] // MINUTE for r in rows]
    assert bins == [-60, -59, -2, -1, 0, 1]
    assert table.packets == 14
    first_last = {r[8] // MINUTE: (r[13], r[14]) for r in rows}
    assert first_last[-60] == (-60 * MINUTE, -59 * MINUTE - 1)
    assert first_last[-1] == (-MINUTE, -1)
    assert first_last[0] == (0, MINUTE - 1)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return gc.write_all(tmp_path_factory.mktemp("cases"))


@pytest.mark.parametrize("name", list(gc.CASES))
def test_generated_case(cases, name):
    for group in gc.stream_groups(name, cases[name]):
        assert_same_activity(group)
        assert_same_activity(group, capacity=2, bin_seconds=1)


def test_icmp_is_keyed_by_type_and_code(cases):
    """No request/reply pairing: an echo (8, 0) and its reply (0, 0) are two rows
    (the flow table makes them one flow)."""
    rows, _ = assert_same_activity(cases["icmp_echo"])
    icmp = [r for r in rows if r[6] == 1]
    assert {(r[4], r[5]) for r in icmp} >= {(8, 0), (0, 0)}


# --------------------------------------------------------------------------
# the shared corpus: real captures
# --------------------------------------------------------------------------


@corpus.needs_corpus
@pytest.mark.parametrize("path", corpus.corpus_files(), ids=lambda p: p.name)
def test_corpus_file(path):
    assert_same_activity([path])


def _flow_totals(path) -> tuple[dict, dict, bool]:
    """Per conversation (A, B, meta): [ab packets, ab bytes, ba packets,
    ba bytes, first, last] from the activity table summed over bins, and from
    the flow table summed over the flows of the key; and whether the capture
    holds later fragments."""
    activity = ActivityTable(bin_seconds=1)
    flows = FlowTable()
    later_fragments = False
    for batch in read_packets([str(path)], on_problem=lambda p: None):
        activity.ingest(batch)
        flows.ingest(batch)
        later_fragments |= bool(np.any((batch.frag & 3) == 1))
    flows.flush()
    assert activity.packets == flows.packets

    def add(out, key, values):
        if key in out:
            t = out[key]
            out[key] = [
                *(x + y for x, y in zip(t[:4], values[:4], strict=True)),
                min(t[4], values[4]),
                max(t[5], values[5]),
            ]
        else:
            out[key] = list(values)

    a: dict = {}
    cols = activity.merged_columns()
    for r in cols.T.tolist():
        add(a, tuple(r[:5]), r[ak.C_AB_PACKETS : ak.C_LAST + 1])
    f: dict = {}
    for r in flows.exported_rows().tolist():
        ab, ba = fk.C_DIR, fk.C_DIR + fk.DIR_WIDTH
        add(
            f,
            tuple(r[:5]),
            [
                r[ab + fk.D_PACKETS],
                r[ab + fk.D_BYTES],
                r[ba + fk.D_PACKETS],
                r[ba + fk.D_BYTES],
                r[fk.C_FIRST],
                r[fk.C_LAST],
            ],
        )
    return a, f, later_fragments


@corpus.needs_corpus
def test_corpus_conversations_match_the_flow_table():
    """Summed over bins, each conversation carries what the flow table's flows
    of that key carry (timeout splits summed too). ICMP keys differ by design
    (the flow table pairs request and reply types), and so do later fragments
    (the flow table gives them their first fragment's ports): those captures
    are compared on totals only."""
    compared = 0
    for path in corpus.corpus_files():
        a, f, later_fragments = _flow_totals(path)
        # ICMP rows may also differ in direction (between two ends with the same
        # address the ports decide it), so all keys are compared on sums of both.
        both = [sum(v[0] + v[2] for v in a.values()), sum(v[1] + v[3] for v in a.values())]
        assert both == [
            sum(v[0] + v[2] for v in f.values()),
            sum(v[1] + v[3] for v in f.values()),
        ], path.name
        if later_fragments:
            continue

        def plain(d):
            return {k: v for k, v in d.items() if (k[4] >> 16) & 0xFF not in (1, 58)}

        assert plain(a) == plain(f), path.name
        compared += len(plain(a))
    assert compared > 1000
