"""Memory under a flood: few-packet outside addresses counted together
(detector/flows/fold.py) and the sensor-flood alert.

The hand-built case checks the fold itself row by row; the generated flood
checks, against the same capture counted without folding, that every packet
and byte of every internal host is kept per minute and direction, that the
rows of every address that was not folded are untouched, and that the
sensor-flood alert's figures are the folded traffic's exact counts.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from detector._kernels import activity as ak
from detector.capture import read_packets
from detector.flows.activity import ActivityTable, activity_from_captures
from detector.flows.fold import FOLD_PACKETS, fold_rows
from detector.networks import FOLDED_ADDRESS, FOLDED_HI, address_text
from detector.pipelines.scan import foldable, scan_captures
from detector.policy import load_policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "captures" / "sample-policy.toml"
MINUTE = 60 * 1_000_000_000


def _addr(text: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(text)
    value = int(ip) if ip.version == 6 else (0xFFFF << 32) | int(ip)
    return value >> 64, value & ((1 << 64) - 1)


def _row(a: str, a_port: int, b: str, b_port: int, bin_: int, ab: tuple[int, int],
         ba: tuple[int, int], proto: int = 6) -> list[int]:  # fmt: skip
    row = [0] * ak.USED_COLUMNS
    (a_hi, a_lo), (b_hi, b_lo) = _addr(a), _addr(b)
    for column, value in ((ak.C_A_HI, a_hi), (ak.C_A_LO, a_lo), (ak.C_B_HI, b_hi),
                          (ak.C_B_LO, b_lo)):  # fmt: skip
        row[column] = value - (1 << 64) if value >= 1 << 63 else value
    row[ak.C_META] = (a_port << 48) | (b_port << 32) | (proto << 16) | 0xFFFF
    row[ak.C_BIN] = bin_
    row[ak.C_AB_PACKETS], row[ak.C_AB_BYTES] = ab
    row[ak.C_BA_PACKETS], row[ak.C_BA_BYTES] = ba
    row[ak.C_FIRST], row[ak.C_LAST] = bin_ * MINUTE + 1, bin_ * MINUTE + 2
    return row


def _text_rows(rows: np.ndarray) -> list[tuple]:
    out = []
    for r in rows.tolist():
        meta = r[ak.C_META] & ((1 << 64) - 1)
        out.append((
            address_text(r[ak.C_A_HI] & ((1 << 64) - 1), r[ak.C_A_LO] & ((1 << 64) - 1)),
            meta >> 48,
            address_text(r[ak.C_B_HI] & ((1 << 64) - 1), r[ak.C_B_LO] & ((1 << 64) - 1)),
            (meta >> 32) & 0xFFFF,
            r[ak.C_BIN], r[ak.C_AB_PACKETS], r[ak.C_AB_BYTES], r[ak.C_BA_PACKETS],
            r[ak.C_BA_BYTES],
        ))  # fmt: skip
    return out


def test_fold_rows_by_hand() -> None:
    text = POLICY.read_text().replace('internal = ["10.8.0.0/16"]',
                                      'internal = ["10.8.0.0/16", "fd00::/8"]')  # fmt: skip
    policy = parse_policy(text)
    assert policy.internal.contains_text("fd00::5")
    allowlisted = str(next(iter(policy.allowlist_destinations.canonical()))).split("/")[0]
    rows = np.array([
        # a one-packet outside source to an internal server: folded, no swap
        # (::ffff:10.8.0.10 < 100::)
        _row("10.8.0.10", 443, "198.51.100.7", 40000, 5, (0, 0), (1, 54)),
        # IPv6: fd00::5 > 100::, so the folded side becomes A and the
        # directions swap
        _row("2001:db8::9", 5000, "fd00::5", 22, 5, (1, 60), (1, 74)),
        # five packets: a conversation, kept
        _row("10.8.0.10", 443, "203.0.113.5", 1000, 5, (3, 300), (2, 200)),
        # four packets over two rows and two minutes: folded in both
        _row("10.8.0.11", 443, "198.51.100.8", 1, 5, (1, 60), (1, 60)),
        _row("10.8.0.11", 443, "198.51.100.8", 1, 6, (1, 60), (1, 60)),
        # an allowlisted destination, one packet: kept
        _row("10.8.0.12", 5555, allowlisted, 443, 6, (1, 100), (0, 0)),
        # inside to inside: kept
        _row("10.8.0.12", 1, "10.8.0.13", 2, 6, (1, 60), (0, 0)),
    ], dtype=np.int64)  # fmt: skip
    folded, bins, sources = fold_rows(rows, foldable(policy))
    assert _text_rows(folded) == [
        ("10.8.0.10", 443, FOLDED_ADDRESS, 0, 5, 0, 0, 1, 54),
        (FOLDED_ADDRESS, 0, "fd00::5", 22, 5, 1, 60, 1, 74),
        ("10.8.0.10", 443, "203.0.113.5", 1000, 5, 3, 300, 2, 200),
        ("10.8.0.11", 443, FOLDED_ADDRESS, 0, 5, 1, 60, 1, 60),
        ("10.8.0.11", 443, FOLDED_ADDRESS, 0, 6, 1, 60, 1, 60),
        ("10.8.0.12", 5555, allowlisted, 443, 6, 1, 100, 0, 0),
        ("10.8.0.12", 1, "10.8.0.13", 2, 6, 1, 60, 0, 0),
    ]
    # bin 5: 198.51.100.7, 2001:db8::9, 198.51.100.8; bin 6: 198.51.100.8 again
    assert bins.tolist() == [5, 6] and sources.tolist() == [3, 1]
    # the caller's rows are untouched; times kept
    assert _text_rows(rows)[0][2] == "198.51.100.7"
    assert (folded[:, ak.C_FIRST] == rows[:, ak.C_FIRST]).all()
    # nothing foldable: the same array back
    same, bins, _ = fold_rows(rows[2:3], foldable(policy))
    assert same is rows[2:3].base or np.array_equal(same, rows[2:3])
    assert len(bins) == 0
    assert FOLD_PACKETS == 4


# --------------------------------------------------------------------------
# a generated flood with unique spoofed sources
# --------------------------------------------------------------------------

FLOOD_PACKETS = 40_000
UPLOAD = ("10.8.40.31", "203.0.113.140")


def _gen_flood():
    spec = importlib.util.spec_from_file_location("gen_flood", ROOT / "benchmarks" / "gen_flood.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def flood(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SYNs from 40,000 distinct outside addresses to four servers over three
    minutes, with an isolated host's upload (every 20th packet) beside them."""
    gen = _gen_flood()
    n = FLOOD_PACKETS
    rng = np.random.default_rng(7)
    ts = gen.START_NS + np.arange(n, dtype=np.int64) * (180 * 1_000_000_000 // n)
    src = (0xC000_0000 + rng.permutation(1 << 20)[:n]).astype(np.uint32)  # 192.0.0.0/12: unique
    dst = (0x0A08_000A + np.arange(n) % 4).astype(np.uint32)
    sport = rng.integers(1024, 65536, n, dtype=np.uint32)
    dport = np.full(n, 443, dtype=np.uint32)
    upload = np.arange(n) % 20 == 0
    src[upload], dst[upload] = 0x0A08_281F, 0xCB00_718C
    sport[upload] = 51000
    frames = gen._frames(src, dst, sport, dport, 0x02, gen.FRAME)
    wire = np.where(upload, gen.UPLOAD_FRAME, gen.FRAME).astype(np.uint32)
    header = np.zeros((n, 4), dtype="<u4")
    header[:, 0], header[:, 1] = ts // 1_000_000_000, ts % 1_000_000_000
    header[:, 2], header[:, 3] = gen.FRAME, wire
    path = tmp_path_factory.mktemp("flood") / "flood.pcap"
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        out.write(np.concatenate([header.view(np.uint8).reshape(n, 16), frames], axis=1).tobytes())
    return path


def _per_host(cols: dict[str, np.ndarray]) -> Counter:
    """(internal address, minute, direction) → [packets, bytes] (as a Counter of tuples)."""
    totals: Counter = Counter()
    for i in range(len(cols["a_hi"])):
        a = address_text(int(cols["a_hi"][i]), int(cols["a_lo"][i]))
        b = address_text(int(cols["b_hi"][i]), int(cols["b_lo"][i]))
        minute = int(cols["bin_start_ns"][i])
        for host, out, back in ((a, "ab", "ba"), (b, "ba", "ab")):
            if host.startswith("10."):
                totals[(host, minute, "out", "packets")] += int(cols[f"packets_{out}"][i])
                totals[(host, minute, "out", "bytes")] += int(cols[f"bytes_{out}"][i])
                totals[(host, minute, "in", "packets")] += int(cols[f"packets_{back}"][i])
                totals[(host, minute, "in", "bytes")] += int(cols[f"bytes_{back}"][i])
    return totals


def test_flood_folded_keeps_every_byte(flood: Path) -> None:
    policy = load_policy(POLICY)
    whole = activity_from_captures([flood]).columns()
    table = ActivityTable(bin_seconds=60, capacity=2048, max_rows=6000, foldable=foldable(policy))
    for batch in read_packets([flood], reuse_batch=True):
        table.ingest(batch)
    folded = table.columns()
    assert len(folded["a_hi"]) < 6000 + 2048 < len(whole["a_hi"])
    # every packet and byte of every internal host, per minute and direction
    assert _per_host(folded) == _per_host(whole)
    # rows of addresses not folded are exactly the reference's
    keys = ["a_hi", "a_lo", "b_hi", "b_lo", "a_port", "b_port", "proto", "vlan", "bin_start_ns",
            "packets_ab", "bytes_ab", "packets_ba", "bytes_ba", "first_ns", "last_ns"]  # fmt: skip
    kept = [tuple(int(folded[k][i]) for k in keys) for i in range(len(folded["a_hi"]))
            if FOLDED_HI not in (int(folded["a_hi"][i]), int(folded["b_hi"][i]))]  # fmt: skip
    reference = {tuple(int(whole[k][i]) for k in keys) for i in range(len(whole["a_hi"]))}
    assert set(kept) <= reference
    upload = _addr(UPLOAD[1])
    upload_rows = [r for r in kept if (r[2], r[3]) == upload]
    assert sum(r[9] for r in upload_rows) == FLOOD_PACKETS // 20  # every upload packet, kept
    # each spoofed address sent one packet: folded ones + those still held = all of them
    outside_left = {(r[2], r[3]) for r in kept if address_text(r[2], r[3]).startswith("192.")}
    flood_sources = FLOOD_PACKETS - FLOOD_PACKETS // 20
    assert sum(table.folded_sources.values()) + len(outside_left) == flood_sources
    assert sum(table.folded_sources.values()) > flood_sources // 2


def test_scan_of_a_flood_raises_sensor_flood(flood: Path) -> None:
    policy = load_policy(POLICY)
    plain = scan_captures([flood], policy)
    assert "sensor-flood" not in {a.rule_id for a in plain.alerts}  # under the budget: no fold
    result = scan_captures([flood], policy, activity_rows=6000)
    by_rule = {a.rule_id: a for a in result.alerts}
    # the isolated host's upload is seen exactly as without folding
    for rule in ("isolated-egress", "offhours-bulk-egress"):
        if rule in {a.rule_id for a in plain.alerts}:
            before = next(a for a in plain.alerts if a.rule_id == rule)
            assert (by_rule[rule].source_bytes, by_rule[rule].destination_ip) == (
                before.source_bytes, before.destination_ip)  # fmt: skip
    assert by_rule["isolated-egress"].source_bytes == (FLOOD_PACKETS // 20) * 1514
    flood_alerts = [a for a in result.alerts if a.rule_id == "sensor-flood"]
    assert len(flood_alerts) == 1
    alert = flood_alerts[0]
    folded = result.activity.folded_sources
    assert alert.evidence["folded_sources"] == sum(folded.values())
    # the figures are the folded stand-in's rows, counted independently here
    cols = result.activity.columns()
    on_folded = (cols["a_hi"] == FOLDED_HI) | (cols["b_hi"] == FOLDED_HI)
    packets = int(cols["packets_ab"][on_folded].sum() + cols["packets_ba"][on_folded].sum())
    assert alert.evidence["folded_packets"] == packets == alert.evidence["folded_sources"]
    assert alert.evidence["folded_bytes"] == packets * 54
    per_target: Counter = Counter()
    for i in np.flatnonzero(on_folded):
        other = cols["a_lo"][i] if cols["b_hi"][i] == FOLDED_HI else cols["b_lo"][i]
        per_target[address_text(0, int(other))] += int(
            cols["packets_ab"][i] + cols["packets_ba"][i]
        )
    expected = [{"ip": ip, "packets": n} for ip, n in
                sorted(per_target.items(), key=lambda kv: (-kv[1], kv[0]))]  # fmt: skip
    got = alert.evidence["busiest_destinations"]
    assert sorted(got, key=lambda d: (-d["packets"], d["ip"])) == expected
    assert alert.source_ip == "" and alert.start_ns % MINUTE == 0
    assert f"{sum(folded.values()):,} outside addresses" in alert.message


def test_forget_before_forgets_folded_minutes(flood: Path) -> None:
    """A live sensor drops old minutes: their folded counts go with them."""
    policy = load_policy(POLICY)
    table = ActivityTable(bin_seconds=60, capacity=2048, max_rows=6000, foldable=foldable(policy))
    for batch in read_packets([flood], reuse_batch=True):
        table.ingest(batch)
    table.merged_columns()
    minutes = sorted(table.folded_sources)
    assert len(minutes) >= 2
    cut = minutes[-1] * MINUTE
    kept = {m: k for m, k in table.folded_sources.items() if m >= minutes[-1]}
    table.forget_before(cut)
    assert table.folded_sources == kept
