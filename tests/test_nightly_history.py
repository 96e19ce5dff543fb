"""What the nightly's days before teach a day's scan (issue 20: rules without a
model in a noisy office; detector/nightly/history.py): who called each outside
address, each host's beats and uploads, kept in the state's ``contacts`` table.

The hand-built case, in Asia/Taipei (values worked out below, not read back
from the code):

* Tue 2026-02-03: three hosts call a meeting server (3 MB out, 4 MB back,
  20 min each); a host beats to a push server (24 connections, 300 B each, every
  30 min from 08:00); the future uploader and the three callers fetch a small
  page from a server no one calls (the plant: a few kB make no habit).
* Tue, also: a host fetches a page from a cloud address.
* Wed 2026-02-04: a fourth host calls the meeting server (120 MB out, 150 MB
  back in 30 min: over bulk-upload-new-destination's 100 MB); the uploader
  sends 120 MB in 30 min to the planted server, which echoes 150 MB back (a
  call's disguise); the push channel beats again; at 18:06 another host
  sends 35 MB in one transfer to the cloud address (low-and-slow-egress's
  one upload to an address no other host of the site used).
* Fri 2026-03-06 (30 days later): the fourth host sends one packet to the
  meeting server; everything else is older than the 28 days kept.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import gen_traffic
import pytest
from gen_traffic import Capture, at

from detector.errors import DetectorError
from detector.nightly import state as state_module
from detector.nightly.run import NightlyOptions, run_nightly
from detector.nightly.state import NightlyState
from detector.policy import parse_policy

ROOT = Path(__file__).resolve().parents[1]
ZONE = "Asia/Taipei"
POLICY = """\
[site]
name = "nightly-history"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
"""
CALLERS = ["10.8.10.11", "10.8.10.12", "10.8.10.13"]
CALLER4, UPLOADER, PUSHER, SYNC = "10.8.10.14", "10.8.10.21", "10.8.10.31", "10.8.10.41"
MEET, PLANTED, PUSH, CLOUD = "203.0.113.50", "198.51.100.77", "192.0.2.200", "203.0.113.90"
DAY1, DAY2, DAY3 = "2026-02-03", "2026-02-04", "2026-03-06"
MB = 1_000_000


def t(local: str) -> int:
    return at(local, ZONE)


def _beats(cap: Capture, day: str) -> None:
    for k in range(24):  # 08:00, 08:30, ... 19:30: a beat of 1.0 score
        start = t(f"{day} 08:00") + k * 30 * 60 * 10**9
        cap.transfer(PUSHER, PUSH, start=start, seconds=1, bytes_out=300, bytes_in=500,
                     sport=40000 + k)  # fmt: skip


def day_captures() -> dict[str, Capture]:
    one, two, three = Capture(), Capture(), Capture()
    for k, host in enumerate(CALLERS):
        one.transfer(host, MEET, start=t(f"{DAY1} {10 + k}:00"), seconds=1200, bytes_out=3 * MB,
                     bytes_in=4 * MB, sport=50000 + k, dport=3478, proto=17)  # fmt: skip
        one.transfer(host, PLANTED, start=t(f"{DAY1} 15:0{k}"), seconds=2, bytes_out=2_000,
                     bytes_in=20_000, sport=51000 + k)  # fmt: skip
    one.transfer(UPLOADER, PLANTED, start=t(f"{DAY1} 14:00"), seconds=5, bytes_out=5_000,
                 bytes_in=50_000, sport=52000)  # fmt: skip
    one.transfer(CALLERS[0], CLOUD, start=t(f"{DAY1} 16:00"), seconds=2, bytes_out=2_000,
                 bytes_in=20_000, sport=53000)  # fmt: skip
    _beats(one, DAY1)
    two.transfer(CALLER4, MEET, start=t(f"{DAY2} 10:00"), seconds=1800, bytes_out=120 * MB,
                 bytes_in=150 * MB, sport=50010, dport=3478, proto=17)  # fmt: skip
    two.transfer(UPLOADER, PLANTED, start=t(f"{DAY2} 14:00"), seconds=1800, bytes_out=120 * MB,
                 bytes_in=150 * MB, sport=52001)  # fmt: skip
    _beats(two, DAY2)
    two.transfer(SYNC, CLOUD, start=t(f"{DAY2} 18:06"), seconds=120, bytes_out=35 * MB,
                 bytes_in=MB // 2, sport=53001)  # fmt: skip
    three.packet(CALLER4, MEET, at_ns=t(f"{DAY3} 10:00"), wire=100, sport=50011, dport=3478)
    return {DAY1: one, DAY2: two, DAY3: three}


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("history") / "captures"
    folder.mkdir()
    frame, gen_traffic.MTU_FRAME = gen_traffic.MTU_FRAME, 64_000  # large segments (TSO)
    try:
        for day, cap in day_captures().items():
            path = cap.write(folder / f"{day}.pcap")
            written = t(f"{day} 23:59")
            os.utime(path, ns=(written, written))
    finally:
        gen_traffic.MTU_FRAME = frame
    return folder


def run(captures: Path, out: Path, days: list[str], history: bool = True) -> dict:
    """Run the nightly over the files of ``days`` (copied in), as of the night
    after the last; each day's alerts as sorted (rule, host, other side)."""
    folder = out / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    for day in days:
        target = folder / f"{day}.pcap"
        if not target.exists():
            os.link(captures / f"{day}.pcap", target)
    options = NightlyOptions(captures=str(folder), state=str(out / "state.db"),
                             report_dir=str(out / "reports"), history=history)  # fmt: skip
    result = run_nightly(options, parse_policy(POLICY, "nightly-history.toml"),
                         now_ns=t(f"{days[-1]} 23:59") + 3 * 3600 * 10**9)  # fmt: skip
    return {
        str(d.day): sorted((a.rule_id, a.source_ip, a.destination_ip or "") for a in d.alerts)
        for d in result.days
    }


def rows(state_path: Path) -> list[tuple]:
    state = NightlyState(state_path)
    try:
        return state.contact_rows()
    finally:
        state.close()


def test_the_state_keeps_each_pair_with_the_days_of_its_calls_beats_and_uploads(
    captures, tmp_path
):
    run(captures, tmp_path, [DAY1, DAY2])

    def caller(k: int, host: str) -> list[tuple]:
        return [
            # The call: 3 MB out, 4 MB back (two-way, at least 1 MB sent).
            (host, MEET, t(f"{DAY1} {10 + k}:00"), DAY1, DAY1, 3 * MB, 4 * MB, DAY1, DAY1,
             None, None, None, None),
            # The page: a few kB teach nothing.
            (host, PLANTED, t(f"{DAY1} 15:0{k}"), DAY1, DAY1, 2_000, 20_000, None, None, None,
             None, None, None),
        ]  # fmt: skip

    expected = [
        *caller(0, CALLERS[0]), *caller(1, CALLERS[1]), *caller(2, CALLERS[2]),
        (CALLERS[0], CLOUD, t(f"{DAY1} 16:00"), DAY1, DAY1, 2_000, 20_000, None, None, None,
         None, None, None),
        # 35 MB, 0.5 MB back: no call; under 100 MB: no upload habit.
        (SYNC, CLOUD, t(f"{DAY2} 18:06"), DAY2, DAY2, 35 * MB, MB // 2, None, None, None, None,
         None, None),
        # 120 MB in 30 min, 150 MB back: a call and an upload (over 100 MB in 60 min).
        (CALLER4, MEET, t(f"{DAY2} 10:00"), DAY2, DAY2, 120 * MB, 150 * MB, DAY2, DAY2, None,
         None, DAY2, DAY2),
        # Day 1's page and day 2's echoed upload: bytes of both days; the habits of day 2.
        (UPLOADER, PLANTED, t(f"{DAY1} 14:00"), DAY1, DAY2, 5_000 + 120 * MB,
         50_000 + 150 * MB, DAY2, DAY2, None, None, DAY2, DAY2),
        # 24 beats a day of 300 B out and 500 B back, both days.
        (PUSHER, PUSH, t(f"{DAY1} 08:00"), DAY1, DAY2, 2 * 24 * 300, 2 * 24 * 500, None, None,
         DAY1, DAY2, None, None),
    ]  # fmt: skip
    assert rows(tmp_path / "state.db") == sorted(expected)
    # 30 days on: only the pair used within the last 28 days is kept.
    run(captures, tmp_path, [DAY1, DAY2, DAY3])
    assert rows(tmp_path / "state.db") == [
        (CALLER4, MEET, t(f"{DAY2} 10:00"), DAY2, DAY3, 120 * MB + 100, 150 * MB, DAY2, DAY2,
         None, None, DAY2, DAY2),
    ]  # fmt: skip


def test_day_ones_calls_and_beats_quiet_day_two_but_a_first_upload_still_fires(
    captures, tmp_path
):
    with_history = run(captures, tmp_path / "with", [DAY1, DAY2])
    alone = run(captures, tmp_path / "alone", [DAY1, DAY2], history=False)
    upload = ("bulk-upload-new-destination", UPLOADER, PLANTED)
    beacon = ("beacon", PUSHER, PUSH)
    # Day 1: the push channel is new.
    assert with_history[DAY1] == alone[DAY1] == [beacon]
    # Day 2 alone: the fourth host's call is an upload to a server new to it
    # that no other host used that day, and the beat is a beacon again.
    assert alone[DAY2] == sorted([upload, ("bulk-upload-new-destination", CALLER4, MEET), beacon,
                                  ("low-and-slow-egress", SYNC, CLOUD)])  # fmt: skip
    # With day 1: three other hosts called the meeting server (more than
    # shared_by_hosts 3 with the caller), the push channel is the host's habit;
    # the upload echoed back by the planted server (a few kB of pages on day 1,
    # no call) still fires; the cloud address another host used on day 1 is
    # not one no other host of the site used.
    assert with_history[DAY2] == [upload]


def test_a_contacts_table_that_is_not_the_nightlys_is_refused_in_one_line(tmp_path):
    path = tmp_path / "state.db"
    NightlyState(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE contacts")
    db.execute("CREATE TABLE contacts (host TEXT, peer TEXT, days BLOB)")
    db.commit()
    db.close()
    with pytest.raises(DetectorError) as caught:
        NightlyState(path)
    message = str(caught.value)
    assert message == (
        f"--state {path}: table contacts has other columns (host, peer, days); it is not the "
        f"nightly's: drop it (sqlite3 {path} 'DROP TABLE contacts') and the nightly rebuilds "
        "it, learning calls, beats and uploads from its next days"
    )
    # The command: exit 2, that line, no traceback.
    (tmp_path / "captures").mkdir()
    (tmp_path / "policy.toml").write_text(POLICY)
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "nightly", "--captures", str(tmp_path / "captures"),
         "--policy", str(tmp_path / "policy.toml"), "--state", str(path), "--report-dir",
         str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (2, f"egress-detector: error: {message}\n")


def test_a_huge_or_garbled_contacts_table_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "state.db"
    NightlyState(path).close()
    db = sqlite3.connect(path)
    row = "INSERT INTO contacts VALUES (?, ?, 1, '2026-02-03', '2026-02-03', 1, 1, ?, ?, " \
          "NULL, NULL, NULL, NULL)"  # fmt: skip
    db.executemany(row, [(f"10.8.10.{k}", "203.0.113.50", "2026-02-03", "2026-02-03")
                         for k in range(6)])  # fmt: skip
    db.commit()
    # More rows than the nightly keeps (it trims to MAX_CONTACTS each day).
    monkeypatch.setattr(state_module, "MAX_CONTACTS", 5)
    with pytest.raises(DetectorError, match=r"table contacts has 6 rows, more than the 5 it keeps"):
        NightlyState(path)
    monkeypatch.setattr(state_module, "MAX_CONTACTS", 10)
    # A row whose host is no address: refused when a day reads the history.
    db.execute(row, ("not-an-address", "203.0.113.50", "2026-02-03", "2026-02-03"))
    db.commit()
    db.close()
    state = NightlyState(path)
    try:
        with pytest.raises(DetectorError, match=r"table contacts holds a row that is no address"):
            state.history_before("2026-02-04")
        # Before that day, no habit is read, so nothing is refused.
        assert state.history_before("2026-02-03").empty
    finally:
        state.close()


def test_the_table_is_trimmed_to_its_bound_habits_last(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setattr(state_module, "MAX_CONTACTS", 3)
    path = tmp_path / "state.db"
    state = NightlyState(path)
    try:
        day = pd.DataFrame({
            "host": ["10.8.10.1", "10.8.10.2", "10.8.10.3", "10.8.10.4"],
            "peer": ["203.0.113.1"] * 4, "first_ns": [1, 2, 3, 4],
            "bytes_out": [10, 5, 1, 7], "bytes_in": [0, 0, 0, 0],
            "call": [False, False, True, False], "beat": [False] * 4, "upload": [False] * 4,
        })  # fmt: skip
        state.finish_day("2026-02-03", alert_ids=[], new_alerts=0, files=1, report="r",
                         hosts=[], output=None, output_bytes=0, now_ns=0,
                         contacts=day)  # fmt: skip
        # The plain contact with the fewest bytes goes; the call stays.
        assert [r[0] for r in state.contact_rows()] == ["10.8.10.1", "10.8.10.3", "10.8.10.4"]
    finally:
        state.close()


def test_a_redone_day_does_not_count_its_bytes_twice(tmp_path):
    import pandas as pd

    def day(sent: int, call: bool) -> pd.DataFrame:
        return pd.DataFrame({"host": ["10.8.10.1"], "peer": ["203.0.113.1"], "first_ns": [sent],
                             "bytes_out": [sent], "bytes_in": [2 * sent], "call": [call],
                             "beat": [False], "upload": [False]})  # fmt: skip

    state = NightlyState(tmp_path / "state.db")
    try:
        for when, contacts in (("2026-02-03", day(10, False)), ("2026-02-04", day(100, True)),
                               ("2026-02-04", day(100, True)),  # --day 2026-02-04 again
                               ("2026-02-03", day(10, False))):  # fmt: skip
            state.finish_day(when, alert_ids=[], new_alerts=0, files=1, report="r", hosts=[],
                             output=None, output_bytes=0, now_ns=0, contacts=contacts)  # fmt: skip
        # 10 + 100 sent, each day once; the first packet the earlier; the call on day 2 only.
        assert state.contact_rows() == [
            ("10.8.10.1", "203.0.113.1", 10, "2026-02-03", "2026-02-04", 110, 220,
             "2026-02-04", "2026-02-04", None, None, None, None),
        ]  # fmt: skip
        # Day 2 is given nothing of itself; day 3 its call.
        assert state.history_before("2026-02-04").calls.empty
        assert len(state.history_before("2026-02-05").calls) == 1
    finally:
        state.close()


def test_addresses_read_back_as_the_one_by_one_parser_reads_them():
    from detector.networks import address_pair
    from detector.nightly.history import addresses

    texts = ["10.8.10.1", "2001:db8::1", "203.0.113.50", "10.8.10.1", "255.255.255.255",
             "0.0.0.0", "::ffff:198.51.100.7", "fe80::1", "192.0.2.200"]  # fmt: skip
    hi, lo = addresses(texts)
    assert list(zip(hi.tolist(), lo.tolist(), strict=True)) == [address_pair(t) for t in texts]
    for bad in (["10.8.10.256"], ["203.0.113"], ["host.example"], [None], [7]):
        with pytest.raises(ValueError):
            addresses(bad)
