"""benchmarks/replay_stacks.py lays each session's recorded packets onto its
scheduled time: offsets stretched to the scheduled duration, the session's
own order kept, one pcap per local day. Hand-computed on made-up records."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from replay_stacks import Plan, lay_out, local, read_pcap  # noqa: E402

S = 1_000_000_000


def test_sessions_are_stretched_onto_their_scheduled_times_in_order(tmp_path):
    day = dt.date(2026, 11, 16)
    plan = Plan()
    # A transfer scheduled at 10:00 for 100 s, a DNS query at 23:59:59.9 as it ran.
    plan.add("10.8.10.11", {"op": "tcp"}, local(day, 10), 100.0)
    plan.add("10.8.10.11", {"op": "dns"}, local(day, 24) - S // 10)
    ran = 1_700_000_000 * S  # when the lab ran them
    spans = [(ran, ran + 2_000_000), (ran + 5_000_000, ran + 6_000_000)]
    frames = [bytes([k]) * 60 for k in range(5)]
    # The transfer: packets 0, 1 and 2 ms after its start (the last one 2 ms in:
    # stretched 50,000 times to 100 s); the query: two packets 0.2 s apart.
    packets = [(ran, frames[0], 60), (ran + 1_000_000, frames[1], 1500),
               (ran + 2_000_000, frames[2], 60), (ran + 5_000_000, frames[3], 80),
               (ran + 205_000_000, frames[4], 80)]  # fmt: skip
    paths = lay_out(plan, spans, packets, tmp_path)
    assert [p.name for p in paths] == ["2026-11-16.pcap", "2026-11-17.pcap"]
    first = read_pcap(paths[0])
    assert [(t - local(day, 10), f, w) for t, f, w in first[:3]] == [
        (0, frames[0], 60), (50 * S, frames[1], 1500), (100 * S, frames[2], 60)]  # fmt: skip
    # The query as it ran: its first packet on the day, the reply 0.2 s later (the next day).
    assert first[3] == (local(day, 24) - S // 10, frames[3], 80)
    assert read_pcap(paths[1]) == [(local(day, 24) + S // 10, frames[4], 80)]
