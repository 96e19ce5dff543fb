"""Floods from inside the site keep memory bounded too (issue 18, item 3):

* forged cards on an isolated segment (macof: a new source address a frame)
  took a scan of 3M frames to 4.5 GB and 130 s; the link inspector now drops
  the facts of cards seen within one minute past its budget and counts them;
* a new port a packet between the site's own addresses folds no address; the
  activity table now drops the ports of few-packet conversation-minutes when
  its rows are still over the budget once merged.

Each is checked against what a naive reading of the same frames says, and the
real device, the real ARP for an outside address and the real upload survive.
"""

from __future__ import annotations

import numpy as np
import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from detector._kernels import activity as ak
from detector.capture import read_packets
from detector.flows import link as link_module
from detector.flows.activity import ActivityTable
from detector.flows.fold import FOLD_PACKETS, fold_ports
from detector.flows.link import LinkInspector
from detector.networks import NetworkSet

from gen_cases import write_pcap

S = 1_000_000_000
REAL = "00:1b:21:00:00:01"


def _mac(i: int) -> str:
    return ":".join(
        f"{b:02x}" for b in (0x02, 0x42, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF, 7)
    )


def _macof(tmp_path, cards: int):  # type: ignore[no-untyped-def]
    """``cards`` forged cards a frame each from 65 s to 125 s; a real card on the
    segment since 0 s (frames at 0, 61 and 140 s); a forged card's ARP for an
    outside address at 90 s."""
    frames = [(65 * S + i * 60 * S // (cards + 1),
               raw(Ether(src=_mac(i), dst="ff:ff:ff:ff:ff:ff")
                   / IP(src=f"10.8.40.{2 + i % 250}", dst="10.8.40.1") / TCP(sport=1024 + i)))
              for i in range(cards)]  # fmt: skip
    real = raw(Ether(src=REAL, dst="00:0c:29:00:00:09") / IP(src="10.8.40.31", dst="10.8.40.5")
               / TCP())  # fmt: skip
    frames += [(t * S, real) for t in (0, 61, 140)]
    frames.append((90 * S, raw(Ether(src=_mac(cards + 1), dst="ff:ff:ff:ff:ff:ff")
                               / ARP(op=1, hwsrc=_mac(cards + 1), psrc="10.8.40.77",
                                     pdst="203.0.113.9"))))  # fmt: skip
    frames.sort(key=lambda f: f[0])
    return write_pcap(tmp_path / "macof.pcap", 1, frames)


@pytest.mark.parametrize("budget", [None, 400])
def test_forged_cards_are_counted_not_kept(tmp_path, monkeypatch, budget):
    """With room for everything the facts are every card's; with a budget of
    400 distinct facts the 2,000 forged cards' device facts are dropped and
    counted (in the minute of their frame), while the real card (three
    minutes) and the ARP for an outside address stay."""
    path = _macof(tmp_path, 2000)
    if budget is not None:
        monkeypatch.setattr(link_module, "LINK_BUDGET", budget)
        monkeypatch.setattr(link_module, "COMPACT_ROWS", 256)
    inspector = LinkInspector(NetworkSet(["10.8.40.0/24"]))
    for _batch in read_packets([str(path)], inspector=inspector, batch_packets=128):
        pass
    frame = inspector.frame()
    devices = frame[frame["kind"] == "device"]
    real = int(REAL.replace(":", ""), 16)
    assert int(devices[devices["mac"] == real]["count"].iloc[0]) == 3
    arp = frame[frame["kind"] == "arp"]
    assert len(arp) == 1 and int(arp["b_lo"].iloc[0]) & 0xFFFF_FFFF == 0xCB00_7109
    if budget is None:
        assert len(devices) == 2001 and inspector.folded_cards == {}
    else:
        assert len(devices) == 1
        minutes = [(65 * S + i * 60 * S // 2001) // (60 * S) * 60 * S for i in range(2000)]
        assert inspector.folded_cards == {m: minutes.count(m) for m in set(minutes)}
        assert len(frame) < budget


def test_fold_ports_against_a_naive_reading():
    rng = np.random.default_rng(5)
    n = 500
    rows = np.zeros((n, ak.USED_COLUMNS), dtype=np.int64)
    rows[:, ak.C_A_LO] = rng.integers(1, 4, n)
    rows[:, ak.C_B_LO] = 10
    rows[:7, ak.C_B_LO] = rows[:7, ak.C_A_LO]  # a host talking to itself
    ports = rng.integers(1024, 65536, (n, 2)).astype(np.uint64)
    ports[:, 1] = rng.choice([80, 443, 53], n)  # services, each reached by many clients
    ports[30:36, 1] = 22  # ... and one by a handful: under MANY, kept as they are
    ports[40:45] = ports[40:45, ::-1]  # the service on A's side
    meta = (ports[:, 0] << np.uint64(48)) | (ports[:, 1] << np.uint64(32)) | np.uint64(6 << 16)
    meta[:20] = np.uint64(1 << 16)  # ICMP-like: no ports already
    rows[:, ak.C_META] = meta.view(np.int64)
    rows[:, ak.C_BIN] = rng.integers(0, 3, n)
    rows[:, ak.C_AB_PACKETS] = rng.integers(0, 6, n)
    rows[:, ak.C_BA_PACKETS] = rng.integers(0, 3, n)
    rows[n // 2 :, ak.C_META] = rows[: n - n // 2, ak.C_META]  # conversations in two rows
    meta = rows[:, ak.C_META].view(np.uint64).copy()
    out = rows.copy()
    cols = out.T  # the columns, as the table holds them: folded in place
    many = 20
    bins, counts = fold_ports(cols, many=many)
    total: dict[tuple, int] = {}
    for i in range(n):
        conv = tuple(int(rows[i, c]) for c in (ak.C_A_LO, ak.C_B_LO, ak.C_META))
        total[conv] = total.get(conv, 0) + int(rows[i, ak.C_AB_PACKETS] + rows[i, ak.C_BA_PACKETS])

    def dropped(i: int) -> int | None:
        """Row i's meta with its client port dropped, if it is a candidate."""
        conv = tuple(int(rows[i, c]) for c in (ak.C_A_LO, ak.C_B_LO, ak.C_META))
        a_port, b_port = int(meta[i]) >> 48, (int(meta[i]) >> 32) & 0xFFFF
        itself = rows[i, ak.C_A_LO] == rows[i, ak.C_B_LO]
        if total[conv] > FOLD_PACKETS or a_port == b_port or itself:
            return None
        return int(meta[i]) & ~((0xFFFF << 48) if a_port > b_port else (0xFFFF << 32))

    reach: dict[tuple, set] = {}  # (pair, service) -> the conversations that would merge there
    for i in range(n):
        if dropped(i) is not None:
            key = (int(rows[i, ak.C_A_LO]), int(rows[i, ak.C_B_LO]), dropped(i))
            reach.setdefault(key, set()).add(int(meta[i]))
    want = {}
    for i in range(n):
        new = dropped(i)
        folded = new is not None and len(reach[(int(rows[i, ak.C_A_LO]),
                                                int(rows[i, ak.C_B_LO]), new)]) >= many  # fmt: skip
        expect = new if folded else int(meta[i])
        assert int(out[i, ak.C_META]) & (2**64 - 1) == expect
        if folded:
            want[int(rows[i, ak.C_BIN])] = want.get(int(rows[i, ak.C_BIN]), 0) + 1
    assert dict(zip(bins.tolist(), counts.tolist(), strict=True)) == want
    assert 0 < sum(want.values()) < n  # some folded, some under MANY or with more packets
    assert not any((int(out[i, ak.C_META]) >> 32) & 0xFFFF == 0 for i in range(30, 36))
    others = [c for c in range(ak.USED_COLUMNS) if c != ak.C_META]
    assert np.array_equal(out[:, others], rows[:, others])


def test_a_flood_between_the_sites_own_addresses_stays_bounded(tmp_path):
    """10.8.40.66 sends 20,000 SYNs to 10.8.40.1, each from a new port, over
    two minutes, beside a 300-packet transfer: with a budget of 2,000 rows
    the table holds a handful, packets and bytes per pair and minute are
    exact, the SYNs keep their service port and the transfer both ports."""
    syn = [(i * 120 * S // 20_000, raw(Ether(src=REAL) / IP(src="10.8.40.66", dst="10.8.40.1")
                                        / TCP(sport=1024 + i % 60_000, dport=80)))
           for i in range(20_000)]  # fmt: skip
    data = raw(Ether(src=REAL) / IP(src="10.8.40.31", dst="10.8.40.5") / TCP(sport=5000,
                                                                            dport=445) / (b"x" * 900))  # fmt: skip
    frames = sorted(syn + [(i * S // 3, data) for i in range(300)], key=lambda f: f[0])
    path = write_pcap(tmp_path / "inside.pcap", 1, frames)
    table = ActivityTable(bin_seconds=60, capacity=512, max_rows=2000,
                          foldable=lambda hi, lo: np.zeros(len(hi), dtype=bool))  # fmt: skip
    naive: dict[tuple[int, int], list[int]] = {}
    for batch in read_packets([str(path)], batch_packets=256):
        table.ingest(batch)
        for src, ts, wire in zip(batch.src_lo.tolist(), batch.ts_ns.tolist(),
                                 batch.wire_len.tolist(), strict=True):  # fmt: skip
            cell = naive.setdefault((src & 0xFF, ts // (60 * S)), [0, 0])
            cell[0] += 1
            cell[1] += wire
    cols = table.columns()
    # Bounded: the budget, and the counting table's rows not yet merged.
    assert len(cols["bin_start_ns"]) <= 2000 + 512
    got: dict[tuple[int, int], list[int]] = {}
    for a_lo, b_lo, start, pab, pba, bab, bba in zip(
        cols["a_lo"].tolist(), cols["b_lo"].tolist(), cols["bin_start_ns"].tolist(),
        cols["packets_ab"].tolist(), cols["packets_ba"].tolist(), cols["bytes_ab"].tolist(),
        cols["bytes_ba"].tolist(), strict=True,
    ):  # fmt: skip
        src = max(a_lo & 0xFF, b_lo & 0xFF)  # the sender: .66 or .31, the larger end
        cell = got.setdefault((src, start // (60 * S)), [0, 0])
        cell[0] += pab + pba
        cell[1] += bab + bba
    assert got == naive
    assert sum(table.folded_conversations.values()) > 10_000
    transfer = (cols["a_port"] == 445) | (cols["b_port"] == 445)
    assert int((cols["packets_ab"] + cols["packets_ba"])[transfer].sum()) == 300
    assert set(cols["a_port"][transfer].tolist()) | set(cols["b_port"][transfer].tolist()) == {
        445,
        5000,
    }
    syns = ~transfer
    assert set(cols["a_port"][syns].tolist()) | set(cols["b_port"][syns].tolist()) >= {0, 80}
