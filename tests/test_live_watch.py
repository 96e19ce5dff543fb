"""Rules that alert on the packet in a live sensor (issue 22, section 2).

Each rule whose declaration has a look on the packet (``Detection.on_packets``)
is run on its own regression captures (tests/rule_cases.py) streamed into a
live engine whose window ends in ten minutes: every fire case's alert must be
written while the stream is still open (so not by a window's analysis, nor by
the end's), carry the event.id a scan of the same capture gives, and the end's
analysis must only update it, never raise it again. Each near-miss raises
nothing of its rule. And the volume rules' running totals cross their
threshold exactly where the rules' own span arithmetic says a span first
reaches it (``groups_reaching``, ``dense_spans``, ``minute_runs``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rule_cases import CASES, FIRE, NEAR_MISS, Case

from detector.alerts.record import ALERT_RAISED, ALERT_UPDATED, Alert
from detector.capture.live import StreamSource
from detector.detect.packets import RunningTotals
from detector.detect.rules.common import dense_spans, groups_reaching, minute_runs
from detector.pipelines.live import WATCHING, LiveDetector, LiveOptions
from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy
from detector.units import MINUTE_NS

WATCHED = {d.rule_id for d in WATCHING}
FIRE_CASES = [c for rule in sorted(WATCHED) for c in CASES[rule][FIRE]]
NEAR_MISSES = [c for rule in sorted(WATCHED) for c in CASES[rule][NEAR_MISS]]
# Not in this test: a host that started a connection to a messaging app's address range
# (no name). The look sights it, but the check asks the flow records who started the
# connection, and a live sensor keeps no closed flow records for the rules (its
# FlowTable.on_export hands them to --flows-out or drops them): live does not raise
# it, early or at the end (a gap older than the looks, left open). (case, host)
LATE = {("line_name_and_telegram_range", "10.8.10.45")}


def test_the_rules_that_need_no_window_look_at_packets():
    """The rules issue 22 names: the isolated host's packet, its mail, P2P and
    messaging apps, and the volume rules as they cross their threshold."""
    assert sorted(WATCHED) == ["bulk-upload-new-destination", "im-app", "isolated-egress",
                               "mail-egress", "offhours-bulk-egress", "p2p"]  # fmt: skip


class Streamed:
    """A live engine reading a pipe (as ``live -r -`` reads standard input),
    its window ten minutes away; ``write`` feeds it, ``close`` ends it."""

    def __init__(self, policy_text: str) -> None:
        read_end, self.write_end = os.pipe()
        self.source = StreamSource(os.fdopen(read_end, "rb"))
        self.written: list[Alert] = []
        self.lock = threading.Lock()
        self.engine = LiveDetector([self.source], parse_policy(policy_text),
                                   LiveOptions(report_every=600), emit=self._emit)  # fmt: skip
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _emit(self, alerts: list[Alert]) -> None:
        with self.lock:
            self.written.extend(alerts)

    def _run(self) -> None:
        self.result = self.engine.run()

    def write(self, data: bytes) -> None:
        os.write(self.write_end, data)

    def wait_for(self, rule_id: str, count: int, timeout: float = 60) -> list[Alert]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                mine = [a for a in self.written if a.rule_id == rule_id]
            if len(mine) >= count:
                return mine
            time.sleep(0.05)
        return mine

    def close(self) -> None:
        os.close(self.write_end)
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()


def _written(case: Case, tmp_path: Path) -> bytes:
    paths = case.write(tmp_path / case.name)
    assert len(paths) == 1
    return paths[0].read_bytes()


@pytest.mark.parametrize("case", FIRE_CASES, ids=[c.name for c in FIRE_CASES])
def test_a_rule_that_needs_no_window_alerts_while_the_stream_is_open(case: Case, tmp_path):
    data = _written(case, tmp_path)
    scan = scan_captures([tmp_path / case.name / f"{case.name}.pcap"],
                         parse_policy(case.policy))  # fmt: skip
    assert len([a for a in scan.alerts if a.rule_id == case.rule_id]) == len(case.alerts)
    expected = {(a.rule_id, a.source_ip): a.ecs_id for a in scan.alerts
                if a.rule_id == case.rule_id and (case.name, a.source_ip) not in LATE}  # fmt: skip
    at_once = {host for _, host in expected}
    live = Streamed(case.policy)
    try:
        live.write(data)
        early = live.wait_for(case.rule_id, len(at_once))
        assert live.thread.is_alive()  # the stream is open: no end's analysis yet
        assert {a.source_ip for a in early} == at_once, early
    finally:
        live.close()
    assert live.result is not None
    mine = [a for a in live.result.emitted if a.rule_id == case.rule_id]
    # Raised once each, while the stream was open, with the scan's event.id ...
    assert {(a.rule_id, a.source_ip): a.event_id for a in mine} == expected
    assert all(a.event_action == ALERT_RAISED for a in mine)
    # ... and what the end's analysis wrote of them is an update of the same incident.
    ids = set(expected.values())
    later = [a for a in live.result.updates if a.rule_id == case.rule_id]
    assert all(a.event_id in ids and a.event_action == ALERT_UPDATED for a in later)


@pytest.mark.parametrize("case", NEAR_MISSES, ids=[c.name for c in NEAR_MISSES])
def test_a_near_miss_raises_nothing_early_or_late(case: Case, tmp_path):
    live = Streamed(case.policy)
    try:
        live.write(_written(case, tmp_path))
        time.sleep(1.0)  # two ticks of the main loop: an analysis asked for would have run
    finally:
        live.close()
    assert live.result is not None
    assert [a for a in live.result.emitted if a.rule_id == case.rule_id] == []


# -- the running totals against the rules' own arithmetic ------------------------------------


def _random_uploads(seed: int) -> pd.DataFrame:
    """Minutes with bytes for a few hosts: bursts and gaps of random length."""
    rng = np.random.default_rng(seed)
    rows = []
    for host in range(6):
        minute = int(rng.integers(0, 30))
        for _ in range(int(rng.integers(5, 60))):
            minute += int(rng.choice([1, 1, 1, 2, 5, 40]))
            rows.append((host, minute * MINUTE_NS, int(rng.integers(1, 4_000_000))))
    return pd.DataFrame(rows, columns=["host_id", "minute_ns", "bytes_out"])


def _feed_in_batches(frame: pd.DataFrame, seed: int):
    """The rows in time order, cut into batches of random size (a batch may hold
    several minutes, a minute may span batches: its bytes split in two)."""
    rng = np.random.default_rng(seed + 1000)
    ordered = frame.sort_values("minute_ns", kind="stable")
    pieces = []
    for host, minute, amount in ordered.itertuples(index=False):
        first = int(rng.integers(0, amount + 1))
        pieces += [(host, minute, first), (host, minute, amount - first)]
    at = 0
    while at < len(pieces):
        size = int(rng.integers(1, 12))
        chunk = pieces[at : at + size]
        at += size
        yield ((np.array([p[0] for p in chunk]),), np.array([p[1] for p in chunk], dtype=np.int64),
               np.array([p[2] for p in chunk], dtype=np.int64))  # fmt: skip


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("threshold", [25_000_000, 3_000_000, 2**40])
def test_a_span_total_crosses_where_the_rules_first_span_reaches_the_threshold(seed, threshold):
    """Thresholds a span reaches over many minutes, that one minute can reach
    alone (the ring keeps a minute's amount up to the threshold), and one above
    32 bits (the ring in 64 bits)."""
    frame = _random_uploads(seed)
    if threshold == 2**40:  # uploads big enough to reach it
        frame["bytes_out"] *= 2**20
    span = 20
    totals = RunningTotals()
    crossings: list[tuple[object, int]] = []
    for hosts, minutes, amounts in _feed_in_batches(frame, seed):
        crossings += totals.crossed("r", hosts, minutes, amounts, threshold, span_minutes=span)
    # The rule's own: which hosts have a span reaching the threshold, and where each
    # span of dense_spans ends first (a crossing is the first minute of a run of hits).
    reaching = groups_reaching(frame, ["host_id"], "bytes_out", span * MINUTE_NS, threshold)
    assert {h for (h,), _ in crossings} == set(reaching["host_id"])
    for host in set(reaching["host_id"]):
        per = frame[frame["host_id"] == host].groupby("minute_ns")["bytes_out"].sum()
        minutes, volume = per.index.to_numpy(), per.to_numpy()
        total = np.concatenate([[0], np.cumsum(volume)])
        starts = np.searchsorted(minutes, minutes - span * MINUTE_NS + MINUTE_NS, side="left")
        sums = total[1:] - total[starts]
        # A crossing at each minute whose span reaches the threshold with its own
        # bytes and not without them (the earlier minutes of the span fell short).
        first_hits = [int(m) for m in minutes[(sums >= threshold) & (sums - volume < threshold)]]
        assert sorted(m for (h,), m in crossings if h == host) == first_hits
        assert dense_spans(minutes, volume, span * MINUTE_NS, threshold, 0)  # the rule fires


@pytest.mark.parametrize("seed", range(8))
def test_an_episode_total_crosses_where_the_rules_episode_reaches_the_threshold(seed):
    frame = _random_uploads(seed)
    gap, threshold = 10 * MINUTE_NS, 20_000_000
    totals = RunningTotals()
    crossings: list[tuple[object, int]] = []
    for hosts, minutes, amounts in _feed_in_batches(frame, seed):
        crossings += totals.crossed("r", hosts, minutes, amounts, threshold, gap_ns=gap)
    expected = []
    for host, rows in frame.groupby("host_id"):
        per = rows.groupby("minute_ns")["bytes_out"].sum()
        minutes, volume = per.index.to_numpy(), per.to_numpy()
        runs = minute_runs(minutes, gap)  # mail-egress's episodes
        for run in np.unique(runs):
            sums = np.cumsum(volume[runs == run])
            if sums[-1] >= threshold:
                expected.append(((host,), int(minutes[runs == run][np.argmax(sums >= threshold)])))
    assert sorted(crossings) == sorted(expected)


def test_one_hosts_rows_are_every_row_with_it_at_either_end(tmp_path):
    """ActivityTable.with_hosts (what a sighting's analysis reads) against a
    filter of every row by hand: the rows with the host as A or as B, whole."""
    from gen_traffic import Capture, at

    from detector.capture import read_packets
    from detector.flows.activity import ActivityTable
    from detector.networks import address_pair

    start = at("2026-02-04 02:00", "UTC")
    capture = Capture()
    for i, (src, dst) in enumerate([("10.8.40.31", "203.0.113.140"), ("10.8.10.7", "10.8.40.31"),
                                    ("10.8.10.7", "198.51.100.9"), ("10.8.10.8", "203.0.113.140")]):  # fmt: skip
        capture.transfer(src, dst, start=start + i * 50 * 10**9, seconds=120, bytes_out=90_000)
    table = ActivityTable(bin_seconds=60)
    for batch in read_packets([capture.write(tmp_path / "four.pcap")]):
        table.ingest(batch)
    everything = pd.DataFrame(table.columns())
    for hosts in (["10.8.40.31"], ["10.8.10.7", "10.8.10.8"], ["192.0.2.1"]):
        pairs = [address_pair(h) for h in hosts]
        mine = pd.DataFrame(table.with_hosts(pairs).columns())
        ends_a = list(zip(everything["a_hi"], everything["a_lo"], strict=True))
        ends_b = list(zip(everything["b_hi"], everything["b_lo"], strict=True))
        wanted = everything[[a in pairs or b in pairs for a, b in zip(ends_a, ends_b, strict=True)]]
        assert len(wanted) == len(mine) and (len(mine) > 0) == (hosts != ["192.0.2.1"])
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), wanted.reset_index(drop=True))


def test_an_upload_alerted_early_whose_busiest_destination_changes_is_updated_not_raised_again(
    tmp_path,
):
    """offhours-bulk-egress names the address that received most. Raised at
    once when 10.8.10.44's 3 MB to 203.0.113.140 cross the (site's) 3 MB
    threshold at night; then 10 MB to 198.51.100.77 make that one the busiest.
    The end's analysis writes the same incident (the declaration's
    ``incident``: the host alone), as an update naming the new address, with
    the first document's event.id: one incident, one alert."""
    from gen_traffic import Capture, at

    night = at("2026-02-04 02:00", "Asia/Taipei")
    first = Capture().transfer("10.8.10.44", "203.0.113.140", start=night, seconds=20,
                               bytes_out=3_000_000).write(tmp_path / "first.pcap")  # fmt: skip
    then = Capture().transfer("10.8.10.44", "198.51.100.77", start=night + 30 * 10**9,
                              seconds=60, bytes_out=10_000_000).write(tmp_path / "then.pcap")  # fmt: skip
    policy = CASES["offhours-bulk-egress"][FIRE][0].policy
    policy += "\n[rules.offhours-bulk-egress]\nmin_bytes = 3_000_000\n"
    live = Streamed(policy)
    try:
        live.write(first.read_bytes())
        early = live.wait_for("offhours-bulk-egress", 1)
        assert [(a.destination_ip, a.event_action) for a in early] == [
            ("203.0.113.140", ALERT_RAISED)
        ]
        live.write(then.read_bytes()[24:])  # the same stream: no second header
    finally:
        live.close()
    assert live.result is not None
    raised = [a for a in live.result.emitted if a.rule_id == "offhours-bulk-egress"]
    updates = [a for a in live.result.updates if a.rule_id == "offhours-bulk-egress"]
    assert len(raised) == 1 and updates
    assert {a.event_id for a in updates} == {raised[0].event_id}
    assert updates[-1].destination_ip == "198.51.100.77"
    assert updates[-1].source_bytes == 13_000_000
