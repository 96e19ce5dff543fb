"""The flow record's numeric columns (one-pass kernel) against numpy column by column.

``detector._kernels.flowrows.split_rows`` makes every numeric column in one loop
over the rows; the reference below is the plain numpy version (a column at a
time) it replaced. Random rows cover both initiators, directions without
packets (NaT times), negative times, "no VLAN" (0xFFFF), every port and flag bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from detector._kernels import flowtable as fk
from detector.flows.records import flow_columns

NAT = np.iinfo(np.int64).min


def reference(rows: np.ndarray) -> dict[str, np.ndarray]:
    u = rows.view(np.uint64)
    init_a = rows[:, fk.C_INIT_IS_A] == 1
    a_dir, b_dir, width = fk.C_DIR, fk.C_DIR + fk.DIR_WIDTH, fk.DIR_WIDTH
    meta = u[:, fk.C_META]
    a_port = (meta >> np.uint64(48)).astype(np.int64)
    b_port = ((meta >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int64)
    fwd = np.where(init_a[:, None], rows[:, a_dir : a_dir + width], rows[:, b_dir : b_dir + width])
    rev = np.where(init_a[:, None], rows[:, b_dir : b_dir + width], rows[:, a_dir : a_dir + width])
    vlan = (meta & np.uint64(0xFFFF)).astype(np.int64)

    def stamp(ns: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        return (ns if present is None else np.where(present, ns, NAT)).view("M8[ns]")

    fwd_any = fwd[:, fk.D_PACKETS] > 0
    rev_any = rev[:, fk.D_PACKETS] > 0
    return {
        "first_seen": stamp(rows[:, fk.C_FIRST]),
        "last_seen": stamp(rows[:, fk.C_LAST]),
        "src_port": np.where(init_a, a_port, b_port).astype(np.uint16),
        "dst_port": np.where(init_a, b_port, a_port).astype(np.uint16),
        "protocol": ((meta >> np.uint64(16)) & np.uint64(0xFF)).astype(np.uint8),
        "ip_version": rows[:, fk.C_IP_VERSION].astype(np.uint8),
        "vlan_id": np.where(vlan == 0xFFFF, -1, vlan).astype(np.int32),
        "src2dst_packets": fwd[:, fk.D_PACKETS],
        "src2dst_bytes": fwd[:, fk.D_BYTES],
        "dst2src_packets": rev[:, fk.D_PACKETS],
        "dst2src_bytes": rev[:, fk.D_BYTES],
        "bidirectional_packets": fwd[:, fk.D_PACKETS] + rev[:, fk.D_PACKETS],
        "bidirectional_bytes": fwd[:, fk.D_BYTES] + rev[:, fk.D_BYTES],
        "src2dst_first_seen": stamp(fwd[:, fk.D_FIRST], fwd_any),
        "src2dst_last_seen": stamp(fwd[:, fk.D_LAST], fwd_any),
        "dst2src_first_seen": stamp(rev[:, fk.D_FIRST], rev_any),
        "dst2src_last_seen": stamp(rev[:, fk.D_LAST], rev_any),
        "src2dst_tcp_flags": fwd[:, fk.D_FLAGS].astype(np.uint16),
        "dst2src_tcp_flags": rev[:, fk.D_FLAGS].astype(np.uint16),
        "duration_ms": (rows[:, fk.C_LAST] - rows[:, fk.C_FIRST]) / 1e6,
        "src2dst_payload_bytes": np.where(init_a, rows[:, fk.C_PAYLOAD], rows[:, fk.C_PAYLOAD + 1]),
        "dst2src_payload_bytes": np.where(init_a, rows[:, fk.C_PAYLOAD + 1], rows[:, fk.C_PAYLOAD]),
    }


def reference_reasons(rows: np.ndarray) -> list[str]:
    """The table's reason, but fin or rst for a TCP flow closed idle or at the
    end whose endpoint states (C_TCP: 3 bits each, A from bit 0, B from bit 6)
    show a reset, or both sides closed."""
    meta = rows[:, fk.C_META].view(np.uint64)
    tcp = ((meta >> np.uint64(16)) & np.uint64(0xFF)) == 6
    a_state = rows[:, fk.C_TCP] & 7
    b_state = (rows[:, fk.C_TCP] >> 6) & 7
    reason = rows[:, fk.C_REASON].copy()
    quiet = tcp & ((reason == fk.REASON_IDLE) | (reason == fk.REASON_END))
    reset = (a_state == fk.TCP_RESET) | (b_state == fk.TCP_RESET)
    closed = (a_state == fk.TCP_CLOSED) & (b_state == fk.TCP_CLOSED)
    reason[quiet & closed] = fk.REASON_FIN
    reason[quiet & reset] = fk.REASON_RST
    return np.asarray(fk.REASON_NAMES, dtype=object)[reason].tolist()


def random_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.integers(-(2**62), 2**62, size=(n, fk.FLOW_COLUMNS), dtype=np.int64)
    rows[:, fk.C_INIT_IS_A] = rng.integers(0, 2, n)
    rows[:, fk.C_IP_VERSION] = rng.choice([4, 6], n)
    for column in (fk.C_DIR + fk.D_PACKETS, fk.C_DIR + fk.DIR_WIDTH + fk.D_PACKETS):
        rows[:, column] = rng.integers(0, 3, n)  # a third of directions sent nothing
    rows[:, fk.C_REASON] = rng.integers(0, fk.REASON_EVICTED + 1, n)  # the table's reasons
    meta = rng.integers(0, 2**63, n, dtype=np.int64)
    meta[::7] |= 0xFFFF  # no VLAN
    meta[::3] = (meta[::3] & ~(0xFF << 16)) | (6 << 16)  # a third TCP
    rows[:, fk.C_META] = meta
    return rows


@pytest.mark.parametrize("arrow_text", [False, True])
def test_numeric_columns_match_numpy(arrow_text: bool) -> None:
    rows = random_rows(20_000, seed=11)
    got = flow_columns(rows, community_id=False, presorted=True, arrow_text=arrow_text)
    want = reference(rows)
    for name, expected in want.items():
        assert got[name].dtype == expected.dtype, name
        if expected.dtype.kind == "M":
            assert np.array_equal(got[name].view(np.int64), expected.view(np.int64)), name
        else:
            assert np.array_equal(got[name], expected), name
    reasons = reference_reasons(rows)
    assert {"fin", "rst", "idle", "end"} <= set(reasons)  # the random rows reach every case
    if arrow_text:
        assert got["expiry_reason"].to_pylist() == reasons
    else:
        assert got["expiry_reason"].tolist() == reasons


def test_hand_made_row() -> None:
    """One flow started by B (the larger endpoint): src is B, B→A is src→dst."""
    row = np.zeros((1, fk.FLOW_COLUMNS), dtype=np.int64)
    row[0, fk.C_A_HI], row[0, fk.C_A_LO] = 0, (0xFFFF << 32) | 0x0A000001  # 10.0.0.1
    row[0, fk.C_B_HI], row[0, fk.C_B_LO] = 0, (0xFFFF << 32) | 0xC0000207  # 192.0.2.7
    # A port above 32767 makes the packed key negative as int64, as in the table.
    meta = (51000 << 48) | (443 << 32) | (6 << 16) | 0xFFFF
    row[0, fk.C_META] = np.array([meta], dtype=np.uint64).view(np.int64)[0]
    row[0, fk.C_FIRST], row[0, fk.C_LAST] = 1_000_000_000, 3_500_000_000
    b = fk.C_DIR + fk.DIR_WIDTH
    row[0, b + fk.D_PACKETS], row[0, b + fk.D_BYTES] = 3, 180
    row[0, b + fk.D_FIRST], row[0, b + fk.D_LAST], row[0, b + fk.D_FLAGS] = (
        1_000_000_000,
        3_500_000_000,
        0x12,
    )
    row[0, fk.C_INIT_IS_A] = 0
    row[0, fk.C_IP_VERSION] = 4
    row[0, fk.C_REASON] = fk.REASON_IDLE
    got = flow_columns(row, community_id=False, presorted=True)
    assert got["src_ip"].tolist() == ["192.0.2.7"] and got["dst_ip"].tolist() == ["10.0.0.1"]
    assert (int(got["src_port"][0]), int(got["dst_port"][0])) == (443, 51000)
    assert (int(got["src2dst_packets"][0]), int(got["src2dst_bytes"][0])) == (3, 180)
    assert (int(got["dst2src_packets"][0]), int(got["bidirectional_bytes"][0])) == (0, 180)
    assert int(got["src2dst_tcp_flags"][0]) == 0x12
    assert np.isnat(got["dst2src_first_seen"][0]) and np.isnat(got["dst2src_last_seen"][0])
    assert int(got["vlan_id"][0]) == -1 and int(got["protocol"][0]) == 6
    assert got["duration_ms"][0] == 2500.0
    assert got["expiry_reason"].tolist() == ["idle"]
