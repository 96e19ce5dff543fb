"""Pieces of issue 20 ("the careful adversary") checked on hand-worked cases:
off-hours periods, and one alert per incident when the model flags a night of
transfers (detector/detect/model/alerts.py). The detections themselves have
their regression captures in tests/rule_cases.py."""

from __future__ import annotations

import numpy as np
import pytest
from gen_traffic import at

from detector.alerts.record import Alert
from detector.detect.model.alerts import _attach, _grown, _same_incident
from detector.detect.rules.common import off_hours_periods
from detector.policy import parse_policy

ZONE = "Asia/Taipei"
POLICY = parse_policy(
    """
[site]
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"
holidays = ["2026-02-16", "2026-02-17"]
""",
    "adversary.toml",
)


def _day_number(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


def test_off_hours_periods_run_from_one_business_day_to_the_next():
    """Wed 2026-02-04 evening and Thu morning are one night (Thursday's number);
    Fri 2026-02-13 evening to Wed 2026-02-18 morning (weekend, then the holidays
    Mon 16 and Tue 17) is one period, named by Wed 18; business minutes are not
    off-hours."""
    times = [
        "2026-02-04 17:30",  # Wed, first off-hours minute
        "2026-02-05 08:29",  # Thu, last minute of the same night
        "2026-02-05 08:30",  # Thu, business
        "2026-02-05 17:29",  # Thu, business (last minute)
        "2026-02-13 23:00",  # Fri night
        "2026-02-15 12:00",  # Sun
        "2026-02-17 12:00",  # Tue, a holiday
        "2026-02-18 08:29",  # Wed morning
        "2026-02-18 08:30",  # Wed, business
    ]
    minutes = np.array([at(t, ZONE) for t in times], dtype=np.int64)
    off, period = off_hours_periods(POLICY, minutes)
    assert off.tolist() == [True, True, False, False, True, True, True, True, False]
    thu, wed18 = _day_number("2026-02-05"), _day_number("2026-02-18")
    assert period[off].tolist() == [thu, thu, wed18, wed18, wed18, wed18]


def _anomaly(start: str, end: str, sent: int, score: float, windows: int, to: str) -> Alert:
    return Alert(
        "model-anomaly",
        "Unusual egress for this site (model)",
        2,
        at(start, ZONE),
        at(end, ZONE),
        "10.8.10.44",
        f"10.8.10.44 sent {sent} B (most to {to}) in {windows} windows; the model finds "
        f"this unusual (score {score})",
        source_bytes=sent,
        source_packets=sent // 1_000,
        destination_ip=to,
        direction="egress",
        evidence={"model": {"score": score, "windows": windows, "explanation": "x"}},
    )


def test_transfers_of_one_night_to_one_address_are_one_incident():
    """Episodes at 00:00-00:10 and 03:00-03:10 (Wed 2026-02-04) to one address
    are one incident (off-hours all the way between); the same address at
    Wed 00:00 and Wed 20:00 (business hours between) are not; a second address
    never is."""
    first = _anomaly("2026-02-04 00:00", "2026-02-04 00:10", 3_000_000, 0.7, 1, "203.0.113.9")
    later = _anomaly("2026-02-04 03:00", "2026-02-04 03:10", 2_000_000, 0.8, 2, "203.0.113.9")
    evening = _anomaly("2026-02-04 20:00", "2026-02-04 20:10", 1_000_000, 0.9, 1, "203.0.113.9")
    other = _anomaly("2026-02-04 03:00", "2026-02-04 03:10", 2_000_000, 0.8, 1, "203.0.113.10")
    assert _same_incident(first, later, POLICY)
    assert not _same_incident(first, evening, POLICY)
    assert not _same_incident(first, other, POLICY)
    grown = _grown(first, later, POLICY)
    assert (grown.start_ns, grown.end_ns) == (first.start_ns, later.end_ns)
    assert grown.source_bytes == 5_000_000
    assert grown.source_packets == 5_000
    assert grown.evidence["model"] == {"score": 0.8, "windows": 3, "explanation": "x",
                                       "transfers": 2}  # fmt: skip
    assert grown.text.startswith("10.8.10.44 sent 5.0 MB to 203.0.113.9 in 2 transfers (3 windows)")
    assert grown.text.endswith("the model finds this unusual (score 0.8)")
    third = _grown(grown, _anomaly("2026-02-04 05:00", "2026-02-04 05:10", 1_000_000, 0.6, 1,
                                   "203.0.113.9"), POLICY)  # fmt: skip
    assert third.evidence["model"]["transfers"] == 3
    assert third.evidence["model"]["windows"] == 4
    assert third.source_bytes == 6_000_000


def test_a_rule_alert_carries_one_model_note_however_many_episodes_overlap_it():
    """A night-long rule alert overlapped by three flagged episodes (scores 0.6,
    0.9, 0.7; 1, 2 and 1 windows): one note, the worst episode's reason; the
    verdict in evidence is the worst's with all 4 windows."""
    rule = Alert("low-and-slow-egress", "x", 3, 0, 10, "10.8.10.44", "slow upload",
                 direction="egress")  # fmt: skip
    note = None
    for score, windows in [(0.6, 1), (0.9, 2), (0.7, 1)]:
        doc = {"score": score, "windows": windows}
        rule, note = _attach(rule, note, f"reason {score}", doc)
    assert rule.notes == ("reason 0.9",)
    assert rule.evidence["model"] == {"score": 0.9, "windows": 4}
    assert rule.message == "slow upload; reason 0.9"


# -- whole scans of generated captures ------------------------------------------------------

SITE = """
[site]
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]

[allowlist]
destinations = ["198.51.100.25/32"]
"""
PC, OUT, BACKUP_SERVICE = "10.8.10.44", "203.0.113.140", "198.51.100.25"


def _scan(tmp_path, capture):
    from detector.pipelines.scan import scan_captures

    path = capture.write(tmp_path / "c.pcap")
    return scan_captures([path], parse_policy(SITE, "site.toml")).alerts


@pytest.mark.parametrize(("proto", "port", "name"), [(6, 443, "tcp"), (17, 443, "udp"),
                                                     (1, 0, "icmp")])  # fmt: skip
def test_volume_rules_count_every_protocols_bytes(tmp_path, proto, port, name):
    """50,000,000 bytes on the wire from 10.8.10.44 to 203.0.113.140 in 10 minutes
    from Wed 02:00 (off-hours), nothing back, over TCP, UDP or ICMP: each is an
    offhours-bulk-egress of exactly 50,000,000 bytes; the ICMP one is also a
    quiet-protocol-volume alert naming ICMP with the same bytes."""
    from gen_traffic import Capture

    start = at("2026-02-04 02:00", ZONE)
    capture = Capture().transfer(PC, OUT, start=start, seconds=600, bytes_out=50_000_000,
                                 dport=port, proto=proto)  # fmt: skip
    alerts = _scan(tmp_path, capture)
    bulk = [a for a in alerts if a.rule_id == "offhours-bulk-egress"]
    assert [(a.source_ip, a.destination_ip, a.source_bytes, a.transport) for a in bulk] == [
        (PC, OUT, 50_000_000, name)
    ]
    quiet = [a for a in alerts if a.rule_id == "quiet-protocol-volume"]
    if name == "icmp":
        assert [(a.evidence["protocol"], a.source_bytes) for a in quiet] == [("ICMP", 50_000_000)]
    else:
        assert quiet == []


def test_an_allowlisted_backup_does_not_hide_a_slow_upload(tmp_path):
    """The backup server 10.8.10.20 sends 100,000,000 bytes to the allowlisted
    198.51.100.25 from Wed 01:00 for 40 minutes, and 6,000,000 bytes over
    udp/443 to 203.0.113.140 at 01:10 and again at 01:50 (2 minutes each):
    low-and-slow-egress reports exactly the 12,000,000 bytes to 203.0.113.140
    in 2 transfers; the backup counts in no rule."""
    from gen_traffic import Capture

    server = "10.8.10.20"
    one = at("2026-02-04 01:00", ZONE)
    capture = (
        Capture()
        .transfer(server, BACKUP_SERVICE, start=one, seconds=2_400, bytes_out=100_000_000)
        .transfer(server, OUT, start=one + 600 * 10**9, seconds=120, bytes_out=6_000_000,
                  sport=50001, dport=443, proto=17)
        .transfer(server, OUT, start=one + 3_000 * 10**9, seconds=120, bytes_out=6_000_000,
                  sport=50001, dport=443, proto=17)
    )  # fmt: skip
    alerts = _scan(tmp_path, capture)
    assert [(a.rule_id, a.source_ip, a.destination_ip, a.source_bytes) for a in alerts] == [
        ("low-and-slow-egress", server, OUT, 12_000_000)
    ]
    assert alerts[0].evidence["transfers"] == 2
    assert alerts[0].transport == "udp"


def test_a_model_alert_names_the_upload_beside_the_allowlisted_backup():
    """A flagged window of the backup server: 60,000,000 bytes to the allowlisted
    198.51.100.25 (peer 1) and 12,000,000 to 203.0.113.140 (peer 2). The alert
    names 203.0.113.140, "most outside the allowlist", with what came back from
    it (240,000 bytes in 200 packets); the bytes sent are the window's, 72 MB."""
    import pandas as pd

    from detector.detect.model.alerts import _anomaly_alert

    class Traffic:
        def text(self, address_id: int) -> str:
            return {1: BACKUP_SERVICE, 2: OUT}[address_id]

    start = at("2026-02-04 01:00", ZONE)
    ext = pd.DataFrame({
        "peer_id": [1, 2], "peer_allowlisted": [True, False],
        "bytes_out": [60_000_000, 12_000_000], "bytes_in": [1_200_000, 240_000],
        "packets_in": [1_000, 200], "first_ns": [start, start + 60 * 10**9],
        "last_ns": [start + 540 * 10**9, start + 300 * 10**9],
    })  # fmt: skip
    episode = pd.DataFrame({"bytes_out": [72_000_000], "packets_out": [50_000]})
    alert = _anomaly_alert("10.8.10.20", episode, {"score": 0.8}, "unusual", Traffic(),  # type: ignore[arg-type]
                           ext, start, start + 600 * 10**9)  # fmt: skip
    assert (alert.destination_ip, alert.destination_bytes, alert.destination_packets) == (
        OUT, 240_000, 200)  # fmt: skip
    assert alert.source_bytes == 72_000_000
    assert alert.text == (
        "10.8.10.20 sent 72.0 MB (most outside the allowlist to 203.0.113.140) in 1 window; "
        "unusual"
    )


def test_a_slow_upload_is_compared_with_the_hosts_earlier_nights():
    """A low-and-slow-egress alert of 10.8.10.44 from Wed 00:05 to 01:55 (local)
    with a model whose baseline has this host sending at most 50,000 bytes per
    10-minute window at 00:00-00:59 and 20,000 at 01:00-01:59 (95th
    percentiles): 12 windows (00:00 ... 01:50) = 6 x 50,000 + 6 x 20,000 =
    420,000 bytes; the 16,800,000-byte upload is 40.0 times that. A host not in
    the baseline is compared with the site's (10,000 a window: 120,000)."""
    from detector.detect.model.alerts import _with_history
    from detector.detect.model.constants import COUNT_FEATURES
    from detector.detect.model.history import History

    NF = len(COUNT_FEATURES)  # noqa: N806

    host_hour = np.zeros((1, 24, 4))
    host_hour[0, 0] = (10_000, 50_000, 30, 60_000)
    host_hour[0, 1] = (5_000, 20_000, 30, 30_000)
    site_hour = np.zeros((24, 4))
    site_hour[:, 1], site_hour[:, 2] = 10_000, 100
    empty = np.zeros(0, dtype=np.uint64)
    history = History(np.array(["10.8.10.44"]), np.zeros((1, NF, 3)), host_hour,
                      np.zeros((NF, 3)), site_hour, empty, empty, empty, empty)  # fmt: skip

    class Model:
        history_ = history

    def slow(host: str) -> Alert:
        return Alert("low-and-slow-egress", "x", 3, at("2026-02-04 00:05", ZONE),
                     at("2026-02-04 01:55", ZONE), host, "slow", source_bytes=16_800_000)  # fmt: skip

    known, stranger = _with_history(Model(), [slow("10.8.10.44"), slow("10.8.10.99")], POLICY, 10)  # type: ignore[arg-type]
    assert known.evidence["baseline_bytes"] == 420_000
    assert known.notes == (
        "in the same hours of earlier nights its baseline sent at most 420.0 kB to all "
        "outside addresses (95th percentile of each 10-minute window); this upload alone "
        "is 40.0 times that",
    )
    assert stranger.evidence["baseline_bytes"] == 120_000
    assert "the site's baseline (a host not in it)" in stranger.notes[0]
