"""Payload facts past the inspector's budget are folded (issue 18: memory
bounded whatever the capture; a flood of names took a scan of 3M DNS questions
to 2.9 GB). Checked against a naive reference of the same rules: repeats of a
name dropped, then each host cut to an equal share of the room, its earliest
kept, the rest counted per host and kind. And on a capture: a host that floods
names hides neither its own tunnel nor another host's, and sensor-flood says
what was not kept."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scapy.all import DNS, DNSQR, IP, UDP, Ether, wrpcap

from detector.flows import payload
from detector.flows.payload import FACT_NAMES, OVERFLOW_HOSTS, PayloadInspector, water_level

MAC = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def chunk(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Facts from (ts, src_lo, dst_lo, kind, a, c, text) rows (IPv4-mapped addresses)."""
    n = len(rows)
    out = {name: np.zeros(n, dtype=np.int64) for name in ("ts_ns", "a", "b", "c", "d")}
    out["ts_ns"] = np.array([r[0] for r in rows], dtype=np.int64)
    out["src_hi"] = np.zeros(n, dtype=np.uint64)
    out["dst_hi"] = np.zeros(n, dtype=np.uint64)
    out["src_lo"] = np.array([r[1] for r in rows], dtype=np.uint64)
    out["dst_lo"] = np.array([r[2] for r in rows], dtype=np.uint64)
    out["sport"] = np.arange(n, dtype=np.int32)  # every fact its own flow
    out["dport"] = np.full(n, 53, dtype=np.int32)
    out["proto"] = np.full(n, 17, dtype=np.int32)
    out["kind"] = np.array([r[3] for r in rows], dtype=object)
    out["a"] = np.array([r[4] for r in rows], dtype=np.int64)
    out["c"] = np.array([r[5] for r in rows], dtype=np.int64)
    out["text"] = np.array([r[6] for r in rows], dtype=object)
    out["secret"] = np.array([""] * n, dtype=object)
    assert set(out) == set(FACT_NAMES)
    return out


def naive_fold(rows: list[tuple], room: int) -> tuple[list[tuple], dict[tuple, list[int]]]:
    """The fold as the module docstring says it, one fact at a time."""
    seen, kept = set(), []
    for r in rows:
        key = (r[3], r[1], r[2], r[4], r[6])
        if r[3] in payload.NAME_KINDS and key in seen:
            continue
        seen.add(key)
        kept.append(r)
    if len(kept) <= room:
        return kept, {}

    def host(r: tuple) -> int:
        return r[2] if r[3] == "dns-answer" or (r[3] == "dns" and r[5] == 1) else r[1]

    counts: dict[int, int] = {}
    for r in kept:
        counts[host(r)] = counts.get(host(r), 0) + 1
    share = max(c for c in range(max(counts.values()) + 1)
                if sum(min(n, c) for n in counts.values()) <= room)  # fmt: skip
    out, taken, over = [], {}, {}
    for r in kept:
        h = host(r)
        taken[h] = taken.get(h, 0) + 1
        if taken[h] <= share:
            out.append(r)
        else:
            o = over.setdefault((h, r[3]), [0, r[0], r[0]])
            o[0] += 1
            o[1], o[2] = min(o[1], r[0]), max(o[2], r[0])
    return out, over


def test_water_level_is_the_largest_share_that_fits():
    rng = np.random.default_rng(3)
    for _ in range(200):
        counts = rng.integers(1, 50, rng.integers(1, 12))
        room = int(rng.integers(0, counts.sum() + 5))
        best = max(c for c in range(counts.max() + 1) if np.minimum(counts, c).sum() <= room)
        assert water_level(counts, room) == best


def test_below_the_budget_nothing_is_folded(monkeypatch):
    monkeypatch.setattr(payload, "FACT_BUDGET", 100)
    inspector = PayloadInspector()
    rows = [(i, 10, 53, "dns", 1, 0, "same.example") for i in range(100)]
    inspector.take(chunk(rows))
    assert inspector.held == 100 and len(inspector.frame()) == 100
    assert inspector.repeats_dropped == 0 and not len(inspector.overflow)


def test_the_fold_matches_a_naive_reference(monkeypatch):
    """Random facts of a few hosts, one flooding with new names, repeats and
    answers among them: what is kept and what is counted equal the reference."""
    monkeypatch.setattr(payload, "FACT_BUDGET", 400)
    rng = np.random.default_rng(7)
    rows = []
    for t in range(1, 1200):
        r = rng.random()
        if r < 0.6:  # host 66 asks new names: the flood
            rows.append((t, 66, 53, "dns", 1, 0, f"{rng.integers(1 << 40):x}.t.example"))
        elif r < 0.75:  # hosts 1-5 ask a few names again and again
            h = int(rng.integers(1, 6))
            rows.append((t, h, 53, "dns", 1, 0, f"n{rng.integers(0, 4)}.example"))
        elif r < 0.85:  # answers to host 7 (whose fact: the receiver's)
            rows.append((t, 53, 7, "dns-answer", 4, 0, f"a{rng.integers(0, 30)}.example"))
        elif r < 0.95:  # TLS server names
            h = int(rng.integers(1, 6))
            rows.append((t, h, 200, "tls-sni", 0, 0, f"s{rng.integers(0, 3)}.example"))
        else:  # ID numbers seen: never dropped as repeats
            rows.append((t, 8, 200, "pii", 1, 0, "A12*****89"))
    inspector = PayloadInspector()
    for start in range(0, len(rows), 64):  # as the reader hands them over
        inspector.take(chunk(rows[start : start + 64]))
    # The reference folds at the same moments: whenever more than the budget is held.
    held: list[tuple] = []
    over: dict[tuple, list[int]] = {}
    for start in range(0, len(rows), 64):
        held += rows[start : start + 64]
        if len(held) > 400:
            held, more = naive_fold(held, 200)
            for key, (n, first, last) in more.items():
                o = over.setdefault(key, [0, first, last])
                o[0] += n
                o[1], o[2] = min(o[1], first), max(o[2], last)
    got = inspector.frame()
    assert list(zip(got["ts_ns"], got["src_lo"], got["kind"], got["text"], strict=True)) == [
        (r[0], r[1], r[3], r[6]) for r in held
    ]
    o = inspector.overflow
    assert {(int(lo), k): [int(n), int(f), int(la)] for lo, k, n, f, la in
            zip(o.lo, o.kind, o.facts, o.first_ns, o.last_ns, strict=True)} == over  # fmt: skip
    assert over and {h for h, _k in over} == {66}  # only the flood was cut
    assert sum(r[3] == "pii" for r in held) == sum(r[3] == "pii" for r in rows)


def test_many_hosts_past_their_share_are_counted_together(monkeypatch):
    monkeypatch.setattr(payload, "FACT_BUDGET", 2 * OVERFLOW_HOSTS)
    inspector = PayloadInspector()
    hosts = 3 * OVERFLOW_HOSTS  # forged askers, each with a few new names
    rows = [(i, 1000 + i % hosts, 53, "dns", 1, 0, f"x{i}.example") for i in range(4 * hosts)]
    inspector.take(chunk(rows))
    o = inspector.overflow
    assert inspector.held <= OVERFLOW_HOSTS
    assert o.total + inspector.held == len(rows)
    assert len({(int(h), int(lo)) for h, lo in zip(o.hi, o.lo, strict=True)}) <= OVERFLOW_HOSTS
    assert (0, 0) in {(int(h), int(lo)) for h, lo in zip(o.hi, o.lo, strict=True)}


def test_forget_before_drops_old_facts_and_counts():
    inspector = PayloadInspector()
    inspector.budget = 10
    inspector.take(chunk([(t, 66, 53, "dns", 1, 0, f"{t}.example") for t in range(30)]))
    assert inspector.overflow.total == 25  # 5 kept (half the budget), the rest counted
    inspector.take(chunk([(100 + t, 5, 53, "dns", 1, 0, "x.example") for t in range(3)]))
    inspector.forget_before(100)
    assert list(inspector.frame()["ts_ns"]) == [100, 101, 102]
    assert inspector.held == 3 and not len(inspector.overflow)


def _question(src: str, t: float, name: str, sport: int):
    packet = MAC / IP(src=src, dst="198.51.100.53") / UDP(sport=sport, dport=53) / DNS(
        id=sport, rd=1, qd=DNSQR(qname=name))  # fmt: skip
    packet.time = t
    return packet


POLICY = """
[site]
name = "fold"
timezone = "UTC"

[networks]
internal = ["10.0.0.0/8"]

[rules.dns-tunnel]
min_unique_subdomains = 100
"""


def test_a_flood_of_names_hides_no_tunnel(tmp_path, monkeypatch, capsys):
    """With a budget of 600 facts: 10.1.1.66 asks 3,000 new names (a flood),
    10.1.1.7 tunnels with 150 long unique names after it, and 10.1.1.5 asks
    one name 40 times. Both tunnels are found, the flooder's by its earliest
    names, and sensor-flood says how many facts were counted, not kept."""
    from detector.cli.main import main

    monkeypatch.setattr(payload, "FACT_BUDGET", 600)
    start = 1_770_141_600.0
    packets = [_question("10.1.1.66", start + i * 0.01, f"{i:032x}.flood.example", 1024 + i)
               for i in range(3000)]  # fmt: skip
    packets += [_question("10.1.1.5", start + 40 + i, "www.example.com", 2000 + i)
                for i in range(40)]  # fmt: skip
    packets += [_question("10.1.1.7", start + 50 + i * 0.1, f"{i:024x}data.tun.example", 3000 + i)
                for i in range(150)]  # fmt: skip
    capture = tmp_path / "names.pcap"
    wrpcap(str(capture), packets)
    (tmp_path / "p.toml").write_text(POLICY)
    code = main(["scan", "-q", "--policy", str(tmp_path / "p.toml"), "--format", "jsonl",
                 str(capture)])  # fmt: skip
    assert code == 1
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    tunnels = {d["source"]["ip"] for d in docs if d["rule"]["id"] == "dns-tunnel"}
    assert tunnels == {"10.1.1.66", "10.1.1.7"}
    (flood,) = [d for d in docs if d["rule"]["id"] == "sensor-flood"]
    folded = flood["egress"]["folded_facts"]
    assert folded == flood["egress"]["folded_fact_kinds"]["dns"]
    assert flood["egress"]["busiest_sources"][0]["ip"] == "10.1.1.66"
    # Everything the flooder asked is either kept or counted.
    inspector_kept = 3000 - folded
    assert 0 < inspector_kept < 600


@pytest.mark.parametrize("drop_repeats", [True, False])
def test_repeats_are_kept_for_readers_of_each_flows_name(drop_repeats, monkeypatch):
    """flows' inspector keeps each flow's own facts (drop_repeats=False): only
    the hosts' shares are cut; a scan's drops a name's repeat on another flow."""
    monkeypatch.setattr(payload, "FACT_BUDGET", 30)
    inspector = PayloadInspector(drop_repeats=drop_repeats)
    inspector.take(chunk([(t, 5, 200, "tls-sni", 0, 0, "same.example") for t in range(20)]))
    inspector.take(chunk([(t, 6, 200, "tls-sni", 0, 0, "same.example") for t in range(20)]))
    # 40 facts over a budget of 30: the room is 15, two hosts keep 7 each.
    assert inspector.held == (2 if drop_repeats else 14)
    assert inspector.overflow.total == (0 if drop_repeats else 26)


def test_flows_under_a_flood_of_names_name_every_other_flow(tmp_path, monkeypatch, capsys):
    """flows with a budget of 2 x 300 facts: the flooder's later flows lose
    their name, every other flow keeps it, and the command says so."""
    from detector.cli.main import main

    monkeypatch.setattr(payload, "FACT_BUDGET", 300)
    start = 1_770_141_600.0
    packets = [_question("10.1.1.66", start + i * 0.01, f"{i:032x}.flood.example", 1024 + i)
               for i in range(2000)]  # fmt: skip
    packets += [_question("10.1.1.5", start + 30 + i, f"host{i}.example.com", 3000 + i)
                for i in range(50)]  # fmt: skip
    capture = tmp_path / "names.pcap"
    wrpcap(str(capture), packets)
    out = tmp_path / "flows.csv"
    assert main(["flows", "-q", "-o", str(out), str(capture)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "egress-detector: warning: payload inspection's budget: "
    ), err
    rows = list(csv.DictReader(out.open()))
    named = {r["src_ip"]: 0 for r in rows}
    for r in rows:
        named[r["src_ip"]] += bool(r["server_name"])
    assert named["10.1.1.5"] == 50  # all of the quiet host's
    flooded = [r for r in rows if r["src_ip"] == "10.1.1.66"]
    assert len(flooded) == 2000
    # The flooder keeps its earliest: the first named flows are named, in order.
    kept = named["10.1.1.66"]
    assert 0 < kept < 600
    first = sorted(flooded, key=lambda r: r["first_seen"])
    assert all(r["server_name"] for r in first[:kept])
    assert not any(r["server_name"] for r in first[kept:])
    assert err[0].startswith(f"egress-detector: warning: payload inspection's budget: "
                             f"{2000 - kept:,} facts")  # fmt: skip
