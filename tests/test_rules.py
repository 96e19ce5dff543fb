"""Each rule on generated captures: one it must fire on, one it must not, and
the traps (time zones, window boundaries, holidays, daylight-saving days).

Captures come from gen_traffic (exact bytes at exact times); expected values
are worked out by hand from what was generated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gen_traffic import Capture, at

from detector.alerts.record import to_ecs
from detector.pipelines.before import Before
from detector.pipelines.scan import scan_captures
from detector.policy import load_policy

TAIPEI = """
[site]
name = "taipei-mission"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"
holidays = ["2026-01-01"]

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]
isolated_peers = ["10.8.40.5/32"]

[allowlist]
destinations = ["198.51.100.25/32"]
"""

ISO = "10.8.40.31"
PC = "10.8.10.44"
OUT = "203.0.113.140"
MB = 1_000_000


def scan(tmp_path: Path, capture: Capture, policy: str = TAIPEI, extra: str = ""):
    (tmp_path / "policy.toml").write_text(policy + extra)
    pcap = capture.write(tmp_path / "traffic.pcap")
    return scan_captures([pcap], load_policy(tmp_path / "policy.toml"))


def fired(result, rule_id: str):
    return [a for a in result.alerts if a.rule_id == rule_id]


# -- isolated-egress ---------------------------------------------------------------------


def test_isolated_egress_one_packet_outside_is_critical_at_any_hour(tmp_path):
    # Wednesday 10:00 local: business hours do not matter, neither does size.
    t = at("2026-02-04 10:00:05", "Asia/Taipei")
    result = scan(tmp_path, Capture().packet(ISO, OUT, at_ns=t, wire=60, dport=53))
    (alert,) = fired(result, "isolated-egress")
    assert alert.severity == 4
    assert (alert.source_ip, alert.destination_ip, alert.destination_port) == (ISO, OUT, 53)
    assert (alert.source_bytes, alert.source_packets) == (60, 1)
    assert alert.start_ns == alert.end_ns == t
    assert alert.direction == "egress"
    assert "during business hours" in alert.message


def test_isolated_egress_bridge_to_internal_pc_is_high(tmp_path):
    t = at("2026-02-04 02:05", "Asia/Taipei")
    cap = Capture().transfer(PC, ISO, start=t, seconds=30, bytes_out=200_000, bytes_in=4 * MB,
                             sport=50000, dport=445)  # fmt: skip
    result = scan(tmp_path, cap)
    (alert,) = fired(result, "isolated-egress")
    assert alert.severity == 3 and alert.direction == "internal"
    # The isolated host is the alert's source whoever started the connection.
    assert (alert.source_ip, alert.destination_ip) == (ISO, PC)
    assert alert.source_bytes == 4 * MB and alert.destination_bytes == 200_000
    assert alert.transport == "tcp"


def test_isolated_egress_silent_inside_the_isolated_zone(tmp_path):
    t = at("2026-02-04 02:05", "Asia/Taipei")
    cap = (
        Capture()
        .transfer(ISO, "10.8.40.5", start=t, seconds=60, bytes_out=9 * MB, dport=445)
        .transfer(ISO, "10.8.40.32", start=t, seconds=60, bytes_out=1 * MB, dport=3389)
        # local scope: DHCP broadcast and mDNS are not talking to another host
        .packet(ISO, "255.255.255.255", at_ns=t, sport=68, dport=67)
        .packet(ISO, "224.0.0.251", at_ns=t + 1, sport=5353, dport=5353)
    )
    assert fired(scan(tmp_path, cap), "isolated-egress") == []


def test_isolated_egress_episodes_merge_within_a_window(tmp_path):
    t = at("2026-02-04 02:00", "Asia/Taipei")
    cap = (
        Capture()
        .transfer(ISO, OUT, start=t, seconds=60, bytes_out=1 * MB)
        # 5 minutes later: the same episode (gap < 10-minute window)
        .transfer(ISO, OUT, start=t + 6 * 60 * 10**9, seconds=60, bytes_out=2 * MB, sport=49153)
        # 40 minutes later: a second alert
        .transfer(ISO, OUT, start=t + 47 * 60 * 10**9, seconds=60, bytes_out=3 * MB, sport=49154)
    )
    alerts = sorted(fired(scan(tmp_path, cap), "isolated-egress"), key=lambda a: a.start_ns)
    assert [a.source_bytes for a in alerts] == [3 * MB, 3 * MB]
    assert alerts[0].start_ns == t and alerts[0].end_ns == t + 7 * 60 * 10**9


def test_isolated_egress_can_be_disabled(tmp_path):
    t = at("2026-02-04 02:05", "Asia/Taipei")
    cap = Capture().packet(ISO, OUT, at_ns=t)
    result = scan(tmp_path, cap, extra="\n[rules.isolated-egress]\nenabled = false\n")
    assert fired(result, "isolated-egress") == []


# -- offhours-bulk-egress ----------------------------------------------------------------


def test_offhours_bulk_local_evening_that_is_utc_daytime(tmp_path):
    # 20:00 Taipei = 12:00Z: business hours in UTC, off-hours at the site.
    t = at("2026-02-04 20:00", "Asia/Taipei")
    cap = Capture().transfer(PC, OUT, start=t, seconds=300, bytes_out=60 * MB, bytes_in=MB)
    (alert,) = fired(scan(tmp_path, cap), "offhours-bulk-egress")
    assert alert.source_bytes == 60 * MB
    assert alert.destination_ip == OUT and alert.destination_port == 443
    assert alert.start_ns == t and alert.end_ns == t + 300 * 10**9
    assert alert.severity == 3
    assert "from 20:00 to 20:05 local time (Wed 2026-02-04)" in alert.message


def test_offhours_bulk_silent_on_local_morning_that_is_utc_night(tmp_path):
    # 10:00 Taipei = 02:00Z: off-hours in UTC, business hours at the site.
    t = at("2026-02-04 10:00", "Asia/Taipei")
    cap = Capture().transfer(PC, OUT, start=t, seconds=300, bytes_out=60 * MB)
    assert fired(scan(tmp_path, cap), "offhours-bulk-egress") == []


def test_offhours_bulk_straddling_a_window_boundary(tmp_path):
    # 30 MB at 02:55-02:59 and 30 MB at 03:00-03:04: no 10-minute window and
    # no clock hour holds 50 MB, but a 60-minute span does.
    t1 = at("2026-02-04 02:55", "Asia/Taipei")
    t2 = at("2026-02-04 03:00", "Asia/Taipei")
    cap = (
        Capture()
        .transfer(PC, OUT, start=t1, seconds=240, bytes_out=30 * MB)
        .transfer(PC, "192.0.2.77", start=t2, seconds=240, bytes_out=30 * MB, sport=50001)
    )
    (alert,) = fired(scan(tmp_path, cap), "offhours-bulk-egress")
    assert alert.source_bytes == 60 * MB
    assert alert.evidence["destination_count"] == 2
    assert {d["ip"] for d in alert.evidence["destinations"]} == {OUT, "192.0.2.77"}


def test_offhours_bulk_silent_when_spread_over_more_than_an_hour(tmp_path):
    t1 = at("2026-02-04 01:00", "Asia/Taipei")
    t2 = at("2026-02-04 02:01", "Asia/Taipei")
    cap = (
        Capture()
        .transfer(PC, OUT, start=t1, seconds=60, bytes_out=30 * MB)
        .transfer(PC, OUT, start=t2, seconds=60, bytes_out=30 * MB, sport=50001)
    )
    assert fired(scan(tmp_path, cap), "offhours-bulk-egress") == []


def test_offhours_bulk_on_a_holiday_and_not_the_next_working_day(tmp_path):
    # 2026-01-01 (Thursday) is a holiday in the policy; 2026-01-02 a working Friday.
    holiday = at("2026-01-01 10:00", "Asia/Taipei")
    workday = at("2026-01-02 10:00", "Asia/Taipei")
    cap = (
        Capture()
        .transfer(PC, OUT, start=holiday, seconds=60, bytes_out=55 * MB)
        .transfer(PC, OUT, start=workday, seconds=60, bytes_out=55 * MB, sport=50001)
    )
    (alert,) = fired(scan(tmp_path, cap), "offhours-bulk-egress")
    assert alert.start_ns == holiday and alert.source_bytes == 55 * MB


def test_offhours_bulk_saturday(tmp_path):
    t = at("2026-02-07 11:00", "Asia/Taipei")  # Saturday
    cap = Capture().transfer(PC, OUT, start=t, seconds=60, bytes_out=51 * MB)
    assert len(fired(scan(tmp_path, cap), "offhours-bulk-egress")) == 1


def test_offhours_bulk_allowlisted_and_threshold(tmp_path):
    t = at("2026-02-04 01:00", "Asia/Taipei")
    cap = Capture().transfer("10.8.10.20", "198.51.100.25", start=t, seconds=600,
                             bytes_out=300 * MB)  # fmt: skip
    assert fired(scan(tmp_path, cap), "offhours-bulk-egress") == []
    cap = Capture().transfer(PC, OUT, start=t, seconds=60, bytes_out=60 * MB)
    raised = "\n[rules.offhours-bulk-egress]\nmin_bytes = 100_000_000\n"
    assert fired(scan(tmp_path, cap, extra=raised), "offhours-bulk-egress") == []


BERLIN = """
[site]
name = "berlin"
timezone = "Europe/Berlin"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "08:00"
end = "18:00"
"""


@pytest.mark.parametrize(
    ("local", "fires"),
    [
        # 2026-03-29: clocks go 02:00 CET → 03:00 CEST. 08:30 CEST is 06:30Z; with
        # the winter offset it would read 07:30, off-hours.
        ("2026-03-29 08:30", False),
        ("2026-03-29 07:30", True),
        # 2026-10-25: clocks go 03:00 CEST → 02:00 CET. 17:45 CET is 16:45Z; with
        # the summer offset it would read 18:45, off-hours.
        ("2026-10-25 17:45", False),
        ("2026-10-25 18:05", True),
    ],
)
def test_offhours_bulk_on_daylight_saving_days(tmp_path, local, fires):
    t = at(local, "Europe/Berlin")
    cap = Capture().transfer("10.1.2.3", OUT, start=t, seconds=120, bytes_out=70 * MB)
    assert len(fired(scan(tmp_path, cap, policy=BERLIN), "offhours-bulk-egress")) == int(fires)


# -- bulk-upload-new-destination ----------------------------------------------------------


def test_bulk_upload_new_destination_in_business_hours(tmp_path):
    t = at("2026-02-04 11:00", "Asia/Taipei")
    cap = Capture().transfer(PC, OUT, start=t, seconds=900, bytes_out=120 * MB)
    (alert,) = fired(scan(tmp_path, cap), "bulk-upload-new-destination")
    assert alert.source_bytes == 120 * MB and alert.destination_ip == OUT
    assert "during business hours" in alert.message


def test_bulk_upload_to_a_destination_known_for_longer_is_silent(tmp_path):
    first = at("2026-02-03 05:00", "Asia/Taipei")  # 30 hours before
    t = at("2026-02-04 11:00", "Asia/Taipei")
    cap = (
        Capture()
        .packet(PC, OUT, at_ns=first, dport=443, proto=6)
        .transfer(PC, OUT, start=t, seconds=900, bytes_out=120 * MB)
        .transfer(PC, "192.0.2.9", start=t, seconds=900, bytes_out=80 * MB, sport=50001)
    )
    assert fired(scan(tmp_path, cap), "bulk-upload-new-destination") == []


# -- mail-egress ---------------------------------------------------------------------------


def test_mail_from_isolated_host_is_critical_whatever_the_size(tmp_path):
    t = at("2026-02-04 10:00", "Asia/Taipei")
    cap = (
        Capture()
        .transfer(ISO, "192.0.2.20", start=t, seconds=5, bytes_out=12_000, bytes_in=3_000,
                  sport=40000, dport=587)
        # mail inside the isolated zone is not egress
        .transfer("10.8.40.32", "10.8.40.5", start=t, seconds=5, bytes_out=30 * MB, dport=25)
    )  # fmt: skip
    (alert,) = fired(scan(tmp_path, cap), "mail-egress")
    assert alert.severity == 4 and alert.source_ip == ISO
    assert (alert.destination_ip, alert.destination_port, alert.source_bytes) == (
        "192.0.2.20", 587, 12_000)  # fmt: skip


def test_large_outbound_mail_from_any_host_is_medium(tmp_path):
    t = at("2026-02-04 10:00", "Asia/Taipei")
    cap = (
        Capture()
        .transfer(PC, "192.0.2.20", start=t, seconds=20, bytes_out=15 * MB, dport=25)
        .transfer("10.8.10.45", "192.0.2.20", start=t, seconds=20, bytes_out=5 * MB, dport=465)
    )
    (alert,) = fired(scan(tmp_path, cap), "mail-egress")
    assert alert.severity == 2 and alert.source_ip == PC and alert.source_bytes == 15 * MB


# -- always-on -----------------------------------------------------------------------------


def _chatter(cap: Capture, host: str, start: int, hours: float, every_s: int = 600,
             quiet: tuple[int, int] | None = None) -> Capture:  # fmt: skip
    for k in range(int(hours * 3600 // every_s) + 1):
        t = start + k * every_s * 10**9
        if quiet is not None and quiet[0] <= t < quiet[1]:
            continue
        cap.packet(host, "10.8.0.1", at_ns=t, dport=53)
    return cap


def test_always_on_fires_for_a_host_up_all_night(tmp_path):
    start = at("2026-02-03 23:30", "Asia/Taipei")
    cap = _chatter(Capture(), "10.8.10.50", start, 7)
    quiet = (at("2026-02-04 03:00", "Asia/Taipei"), at("2026-02-04 04:00", "Asia/Taipei"))
    cap = _chatter(cap, "10.8.10.51", start, 7, quiet=quiet)
    (alert,) = fired(scan(tmp_path, cap), "always-on")
    assert alert.source_ip == "10.8.10.50" and alert.severity == 1
    assert alert.start_ns == at("2026-02-04 00:00", "Asia/Taipei")
    assert alert.end_ns == at("2026-02-04 06:00", "Asia/Taipei") - 1
    assert alert.source_packets == 36  # one every 10 minutes, 00:00 to 05:50


def test_always_on_judges_only_nights_seen_whole(tmp_path):
    start = at("2026-02-04 01:00", "Asia/Taipei")  # the capture starts mid-night
    cap = _chatter(Capture(), "10.8.10.50", start, 8)
    assert fired(scan(tmp_path, cap), "always-on") == []


def test_always_on_on_the_night_clocks_go_back(tmp_path):
    # Europe/Berlin 2026-10-25: 00:00–06:00 on the clock is 7 real hours.
    start = at("2026-10-24 23:30", "Europe/Berlin")
    cap = _chatter(Capture(), "10.1.2.3", start, 8)
    (alert,) = fired(scan(tmp_path, cap, policy=BERLIN), "always-on")
    assert alert.start_ns == at("2026-10-25 00:00", "Europe/Berlin")
    assert alert.end_ns - alert.start_ns == 7 * 3600 * 10**9 - 1


# -- alert documents -----------------------------------------------------------------------


def test_ecs_document_carries_site_offset_and_fields(tmp_path):
    t = at("2026-02-04 02:13:40", "Asia/Taipei") + 518_000_000
    cap = Capture().transfer(ISO, OUT, start=t, seconds=300, bytes_out=60 * MB, bytes_in=MB)
    result = scan(tmp_path, cap)
    policy = load_policy(tmp_path / "policy.toml")
    docs = [to_ecs(a, policy.zone, policy.site_name) for a in result.alerts]
    by_rule = {d["rule"]["id"]: d for d in docs}
    assert set(by_rule) == {"isolated-egress", "offhours-bulk-egress"}
    doc = json.loads(json.dumps(by_rule["isolated-egress"]))
    assert doc["@timestamp"] == "2026-02-04T02:13:40.518+08:00"
    assert doc["event"]["end"] == "2026-02-04T02:18:40.518+08:00"
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 4
    assert doc["source"] == {"ip": ISO, "bytes": 60 * MB, "packets": 39_631, "port": 49152}
    assert doc["destination"]["ip"] == OUT and doc["destination"]["port"] == 443
    assert doc["destination"]["bytes"] == MB
    assert doc["network"]["transport"] == "tcp" and doc["network"]["direction"] == "egress"
    assert doc["network"]["community_id"].startswith("1:")
    assert doc["observer"]["name"] == "taipei-mission"
    # Worst first: the critical isolated-egress before the high off-hours alert.
    assert [a.rule_id for a in result.alerts] == ["isolated-egress", "offhours-bulk-egress"]


def test_always_on_exempt_hosts(tmp_path):
    start = at("2026-02-03 23:30", "Asia/Taipei")
    cap = _chatter(_chatter(Capture(), "10.8.10.50", start, 7), "10.8.0.1", start, 7)
    exempt = '\n[rules.always-on]\nexempt = ["10.8.0.1/32"]\n'
    alerts = fired(scan(tmp_path, cap, extra=exempt), "always-on")
    assert [a.source_ip for a in alerts] == ["10.8.10.50"]


def test_large_mail_to_an_allowlisted_relay_is_silent(tmp_path):
    t = at("2026-02-04 10:00", "Asia/Taipei")
    cap = Capture().transfer(PC, "198.51.100.25", start=t, seconds=20, bytes_out=40 * MB, dport=25)
    assert fired(scan(tmp_path, cap), "mail-egress") == []


# -- beacon ------------------------------------------------------------------------------


def test_beacon_every_minute_and_not_random_browsing(tmp_path):
    import numpy as np

    rng = np.random.default_rng(7)
    start = at("2026-02-04 09:00", "Asia/Taipei")
    cap = Capture()
    for i in range(120):  # every 60 s ± 1 s, 3,000 bytes each, a new connection each time
        t = start + i * 60 * 10**9 + int(rng.uniform(-1, 1) * 1e9)
        cap.transfer(PC, "203.0.113.50", start=t, seconds=0.2, bytes_out=3000, bytes_in=500,
                     sport=20000 + i)  # fmt: skip
    t = start
    for i in range(120):  # browsing: irregular gaps and sizes
        t += int(rng.exponential(60) * 1e9) + 10**9
        cap.transfer("10.8.10.45", "198.51.100.77", start=t, seconds=0.2,
                     bytes_out=int(rng.integers(500, 50_000)), sport=30000 + i)  # fmt: skip
    (alert,) = fired(scan(tmp_path, cap), "beacon")
    assert (alert.source_ip, alert.destination_ip) == (PC, "203.0.113.50")
    assert alert.evidence["connections"] == 120
    assert abs(alert.evidence["period_seconds"] - 60) < 1
    assert "every 60 s ±" in alert.message and "120 times" in alert.message
    assert "3.0 kB each" in alert.message


def _beacon_capture():
    start = at("2026-02-04 23:00", "Asia/Taipei")
    cap = Capture()
    for i in range(40):  # a heartbeat every 25 minutes, 200 bytes each
        cap.transfer(PC, "203.0.113.50", start=start + i * 1500 * 10**9, seconds=0.1,
                     bytes_out=200, bytes_in=300, sport=20000 + i)  # fmt: skip
        cap.transfer("10.8.10.45", "203.0.113.51", start=start + i * 1500 * 10**9, seconds=0.1,
                     bytes_out=200, bytes_in=300, sport=30000 + i)  # fmt: skip
    return cap


@pytest.mark.parametrize("habits", [True, False])
def test_beacon_leaves_out_a_hosts_habit_known_to_the_models_baseline(tmp_path, habits):
    # The model's baseline knows (PC, 203.0.113.50), as train records a push
    # channel held every night; (10.8.10.45, 203.0.113.51) is new to it.
    import numpy as np
    import pandas as pd

    from detector.detect.context import ScanContext
    from detector.detect.rules.beacon import DETECTION

    extra = "" if habits else "\n[rules.beacon]\nhabits = false\n"
    result = scan(tmp_path, _beacon_capture(), extra=extra)
    both = sorted((a.source_ip, a.destination_ip) for a in fired(result, "beacon"))
    assert both == [(PC, "203.0.113.50"), ("10.8.10.45", "203.0.113.51")]
    traffic = result.traffic
    ids = {traffic.text(i): i for i in range(len(traffic.address_hi))}
    known = pd.MultiIndex.from_arrays([np.array([ids[PC]]), np.array([ids["203.0.113.50"]])])
    policy = load_policy(tmp_path / "policy.toml")
    ctx = ScanContext(policy, traffic, 10, facts=result.facts, flows=result.flows,
                      known_destinations=known)  # fmt: skip
    left = sorted((a.source_ip, a.destination_ip) for a in DETECTION.run(ctx))
    assert left == (both[1:] if habits else both)


def test_groups_are_numbered_from_the_level_codes_in_order():
    # (host, peer, minute) sorted by host and peer: groups (1, 7), (1, 9), (2, 7).
    import pandas as pd

    from detector.detect.rules.common import run_ids as _run_ids

    index = pd.MultiIndex.from_tuples(
        [(1, 7, 0), (1, 7, 60), (1, 9, 0), (2, 7, 0), (2, 7, 120)],
        names=["host_id", "peer_id", "minute_ns"],
    )
    assert _run_ids(index).tolist() == [0, 0, 1, 2, 2]
    assert _run_ids(index[:0]).tolist() == []


@pytest.mark.parametrize(("callers", "fires"), [(3, False), (2, True)])
def test_a_call_to_an_address_others_reached_before_is_no_upload(tmp_path, callers, fires):
    """bulk-upload-new-destination on 100,000,000 bytes over udp/3478 from
    10.8.10.44 to 198.51.100.77, each frame echoed back (tests/rule_cases.py,
    ``_call``), with no other host in the capture: the users of the address
    come from the first-contact record of earlier traffic (a live sensor's
    look at one host, a scan after a nightly), where ``callers`` other hosts
    reached it. Three (``shared_by_hosts``) make it a call; two do not."""
    from rule_cases import CALLERS, SITE, UPLOAD, _call, _pcap

    from detector.pipelines.scan import first_contacts, scan_activity
    from detector.policy import parse_policy

    policy = parse_policy(SITE, "site.toml")
    before = scan_captures(_pcap(tmp_path, "before", _call(UPLOAD, 0, CALLERS[:callers])), policy)
    record = first_contacts(before.traffic)
    assert len(record) == callers
    now = scan_captures(_pcap(tmp_path, "now", _call(UPLOAD, 100_000_000, [])), policy)
    rule = "bulk-upload-new-destination"
    assert [(a.rule_id, a.source_bytes, a.destination_bytes) for a in now.alerts] == [
        (rule, 100_000_000, 100_000_000)
    ]
    again = scan_activity(now.activity, now.flows, policy, before=Before(first_contacts=record))
    assert [a.rule_id for a in again.alerts] == ([rule] if fires else [])


@pytest.mark.parametrize("seed", range(4))
def test_groups_reaching_keeps_exactly_the_groups_a_naive_loop_finds(seed):
    # Two keys, one with huge and negative values (group_codes renumbers them),
    # against a plain loop over each group's minutes.
    import numpy as np
    import pandas as pd

    from detector.detect.rules.common import group_codes, groups_reaching

    rng = np.random.default_rng(seed)
    n = 3000
    frame = pd.DataFrame({
        "host_id": rng.integers(0, 40, n),
        "period": rng.choice([-5, 7, 2**40, 2**61], n),
        "minute_ns": rng.integers(0, 60, n) * 60 * 10**9,
        "bytes_out": rng.integers(0, 400_000, n) * rng.integers(0, 2, n),
    })  # fmt: skip
    frame.loc[frame["host_id"] % 3 == 0, "bytes_out"] //= 20  # whole groups under the threshold
    span_ns, threshold = 20 * 60 * 10**9, 1_200_000
    keys = ["host_id", "period"]
    expected = set()
    for key, rows in frame.groupby(keys):
        per = rows.groupby("minute_ns")["bytes_out"].sum()
        for end in per.index:
            if per[(per.index > end - span_ns) & (per.index <= end)].sum() >= threshold:
                expected.add(key)
    got = groups_reaching(frame, keys, "bytes_out", span_ns, threshold)
    assert 0 < len(expected) < frame.groupby(keys).ngroups
    assert set(map(tuple, got[keys].to_numpy().tolist())) == expected
    assert got.index.tolist() == [i for i, k in enumerate(zip(frame["host_id"], frame["period"],
                                                              strict=True)) if k in expected]  # fmt: skip
    codes = group_codes(frame, keys)
    assert (pd.factorize(codes)[0] == frame.groupby(keys, sort=False).ngroup().to_numpy()).all()


def test_long_connection_leaves_out_only_pairs_that_cannot_reach_its_bars(tmp_path, monkeypatch):
    # Held connections of spread spacing and length, parallel ones to one address
    # (the cumulative bar), and a night of one-minute flows: the alerts are the
    # same when every (host, address, night) is sorted into sessions.
    import numpy as np

    from detector.detect.context import ScanContext
    from detector.detect.rules import long_connection

    rng = np.random.default_rng(3)
    night = at("2026-02-04 00:10", "Asia/Taipei")
    cap = Capture()
    for k in range(14):
        every, count = int(rng.integers(4, 20)), int(rng.integers(2, 50))
        for i in range(count):
            cap.transfer(f"10.8.10.{60 + k}", f"203.0.113.{60 + k}", start=night + i * every * 60 * 10**9,
                         seconds=0.1, bytes_out=100, bytes_in=60, sport=40000 + k)  # fmt: skip
    for port in range(8):  # eight one-hour connections side by side: 8 hours in all
        for i in range(7):
            cap.transfer(PC, OUT, start=night + (port * 5 + i * 10) * 60 * 10**9, seconds=0.1,
                         bytes_out=100, sport=41000 + port)  # fmt: skip
    for i in range(300):
        cap.transfer("10.8.10.45", f"198.51.100.{i % 200}", start=night + i * 60 * 10**9,
                     seconds=0.1, bytes_out=500, sport=42000 + i)  # fmt: skip
    result = scan(tmp_path, cap)
    ctx = ScanContext(load_policy(tmp_path / "policy.toml"), result.traffic, 10)
    kept = long_connection.DETECTION.run(ctx)
    monkeypatch.setattr(long_connection, "group_codes", lambda rows, keys: np.zeros(len(rows), int))
    every_pair = long_connection.DETECTION.run(ctx)
    assert kept == every_pair
    kinds = {a.evidence["kind"] for a in kept}
    assert len(kept) >= 3 and kinds >= {"long", "cumulative"}
