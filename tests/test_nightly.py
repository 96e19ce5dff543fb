"""`egress-detector nightly` on rotated captures built with gen_traffic: files
found by content and ordered by packet time (misleading names and mtimes, a
gzip file, a pcapng file), flows stitched across file boundaries and across
runs, files still being written left alone, and kills (SIGKILL) at several
points giving exactly the alerts and reports of an uninterrupted run.

The expected alerts come from an independent path: `scan` of the whole
capture as one unsplit file, each alert assigned to the local day it starts in.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from gen_traffic import Capture, at

from detector.alerts.record import Observer, to_ecs
from detector.cli.main import main
from detector.errors import CaptureError
from detector.nightly.discover import capture_format, fingerprint
from detector.nightly.run import KILL_HOOK, NightlyOptions, run_nightly
from detector.pipelines.scan import scan_captures
from detector.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
ZONE = "Asia/Taipei"
POLICY = """
[site]
name = "taipei-mission"
timezone = "Asia/Taipei"

[business_hours]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
isolated = ["10.8.40.0/24"]

[allowlist]
destinations = ["198.51.100.25/32"]
"""
ISO, PC, PC2, NEWPC = "10.8.40.31", "10.8.10.44", "10.8.10.50", "10.8.10.77"
MB = 1_000_000
NS = 1_000_000_000
DAY1, DAY2, DAY3 = dt.date(2026, 2, 3), dt.date(2026, 2, 4), dt.date(2026, 2, 5)


def t(local: str) -> int:
    return at(local, ZONE)


def traffic() -> Capture:
    cap = Capture()
    # Day 1 (Tue): the modelled incident at 02:00, an isolated host uploading.
    cap.transfer(ISO, "203.0.113.140", start=t("2026-02-03 02:00"), seconds=360,
                 bytes_out=62 * MB, bytes_in=MB)  # fmt: skip
    for day in ("2026-02-03", "2026-02-04"):  # the allowlisted backup, business hours
        cap.transfer(PC, "198.51.100.25", start=t(f"{day} 09:00"), seconds=60,
                     bytes_out=5 * MB, bytes_in=100_000, sport=50001)  # fmt: skip
    cap.packet(PC, "192.0.2.53", at_ns=t("2026-02-03 18:00"), dport=53)
    # Across midnight (and the day-1/day-2 boundary): starts on day 1.
    cap.transfer(PC2, "203.0.113.9", start=t("2026-02-03 23:50"), seconds=1200,
                 bytes_out=55 * MB, bytes_in=MB, sport=50002)  # fmt: skip
    # One flow from 01:20 to 01:40 on day 2, across the 01:30 file boundary.
    cap.transfer(PC, "203.0.113.7", start=t("2026-02-04 01:20"), seconds=1200,
                 bytes_out=60 * MB, bytes_in=2 * MB, sport=50003)  # fmt: skip
    cap.packet(ISO, "203.0.113.140", at_ns=t("2026-02-04 10:00:05"), dport=53)
    cap.transfer(NEWPC, "192.0.2.80", start=t("2026-02-04 11:00"), seconds=30,
                 bytes_out=20_000, bytes_in=300_000, sport=50004, dport=80)  # fmt: skip
    cap.packet(PC, "192.0.2.53", at_ns=t("2026-02-04 13:00"), dport=53)
    cap.packet(PC, "192.0.2.53", at_ns=t("2026-02-05 01:59"), dport=53)
    return cap


# (file name, format, first local time of its packets, mtime): names and mtimes
# say nothing true about the order.
FILES = [
    ("capture-5.pcap", "pcap", "2026-02-03 00:00", "2026-02-06 00:00"),
    ("a.cap", "pcap", "2026-02-03 08:00", "2026-02-03 00:00"),
    ("zz-00.pcap", "pcap", "2026-02-03 16:00", "2026-02-05 12:00"),
    ("capture-1.pcap.gz", "gzip", "2026-02-03 23:30", "2026-02-01 00:00"),
    ("sensor.dat", "pcapng", "2026-02-04 01:30", "2026-02-05 18:00"),
    ("capture-0.pcap", "pcap", "2026-02-04 12:00", "2026-01-30 00:00"),
]


def pcap_records(data: bytes) -> list[tuple[int, bytes]]:
    """(ns time, record bytes) of a little-endian nanosecond pcap."""
    out, at_ = [], 24
    while at_ < len(data):
        sec, frac, cap, _wire = struct.unpack_from("<IIII", data, at_)
        out.append((sec * NS + frac, data[at_ : at_ + 16 + cap]))
        at_ += 16 + cap
    return out


def pcapng(records: list[tuple[int, bytes]]) -> bytes:
    """The same packets as pcapng: SHB, one Ethernet IDB with ns resolution, EPBs."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", kind, n) + body + struct.pack("<I", n)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + b"\0\0\0\0"
    idb = block(1, struct.pack("<HHI", 1, 0, 262144) + tsresol)
    parts = [shb, idb]
    for ts, rec in records:
        _s, _f, cap, wire = struct.unpack_from("<IIII", rec)
        parts.append(block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, cap, wire)
                           + rec[16:]))  # fmt: skip
    return b"".join(parts)


def write_rotated(whole: Path, folder: Path) -> list[Path]:
    data = whole.read_bytes()
    header, records = data[:24], pcap_records(data)
    starts = [t(f[2]) for f in FILES] + [2**62]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for (name, fmt, _first, mtime), lo, hi in zip(FILES, starts, starts[1:], strict=False):
        part = [(ts, rec) for ts, rec in records if lo <= ts < hi]
        assert part, name
        raw = header + b"".join(rec for _, rec in part)
        body = {"pcap": raw, "gzip": gzip.compress(raw, mtime=0), "pcapng": pcapng(part)}[fmt]
        path = folder / name
        path.write_bytes(body)
        os.utime(path, ns=(t(mtime), t(mtime)))
        paths.append(path)
    (folder / "README.txt").write_text("not a capture\n")
    return paths


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    (root / "policy.toml").write_text(POLICY)
    whole = traffic().write(root / "whole.pcap")
    write_rotated(whole, root / "captures")
    return root


@pytest.fixture(scope="module")
def uninterrupted(site):
    """One run of the command over all six files, from a fresh state."""
    out = site / "uninterrupted"
    out.mkdir()
    proc = nightly(site, out)
    return out, proc


def expected_by_day(site: Path) -> dict[dt.date, list[dict]]:
    """Alerts of a scan of the unsplit capture, by the local day they start in."""
    policy = load_policy(site / "policy.toml")
    result = scan_captures([site / "whole.pcap"], policy)
    out: dict[dt.date, list[dict]] = {DAY1: [], DAY2: []}

    def day_of(alert) -> dt.date:
        return dt.datetime.fromtimestamp(alert.start_ns // NS, tz=policy.zone).date()

    # The days each (rule, host, other side) alerted on: one that alerted on an
    # earlier day (within 30) is marked recurring by the nightly.
    days: dict[tuple, set[dt.date]] = {}
    for alert in result.alerts:
        days.setdefault((alert.rule_id, alert.source_ip, alert.destination_ip), set()).add(
            day_of(alert))  # fmt: skip
    for alert in result.alerts:
        day = day_of(alert)
        earlier = [d for d in days[(alert.rule_id, alert.source_ip, alert.destination_ip)]
                   if d < day]  # fmt: skip
        if earlier:
            alert = replace(alert, previously_seen=str(max(earlier)))
        # The nightly names the sensor: --sensor, else this machine (docs/alerts.md).
        observer = Observer(socket.gethostname())
        out[day].append(without_id(to_ecs(alert, policy.zone, policy.site_name,
                                          observer=observer)))  # fmt: skip
    return out


def without_id(doc: dict) -> dict:
    """``doc`` without event.created (the scan's is its run's time, the
    nightly's its captures' mtime: docs/alerts.md); event.id stays, and is the
    scan's."""
    doc = json.loads(json.dumps(doc))
    doc["event"].pop("created")
    return doc


def nightly(site: Path, out: Path, *extra: str, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "detector", "nightly", "--captures", str(site / "captures"),
         "--policy", str(site / "policy.toml"), "--state", str(out / "state.db"),
         "--report-dir", str(out / "reports"), "--jsonl", str(out / "alerts.jsonl"), *extra],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def in_process(site: Path, out: Path, capsys, *extra: str) -> int:
    capsys.readouterr()
    return main(["nightly", "--captures", str(site / "captures"), "--policy",
                 str(site / "policy.toml"), "--state", str(out / "state.db"),
                 "--report-dir", str(out / "reports"), "--jsonl", str(out / "alerts.jsonl"),
                 *extra])  # fmt: skip


def copy(site: Path, folder: Path, files: list, mtime: str) -> None:
    for name, *_ in files:
        shutil.copy(site / "captures" / name, folder / name)
        os.utime(folder / name, ns=(t(mtime), t(mtime)))


def report_text(path: Path) -> str:
    # The one figure that differs between two runs of the same work.
    return re.sub(r'<dd id="processing">.*?</dd>', "", path.read_text(), flags=re.S)


# -- discovery ----------------------------------------------------------------------------


def test_files_are_recognised_by_content_and_fingerprinted(site):
    folder = site / "captures"
    assert capture_format(folder / "README.txt") is None
    assert capture_format(folder / "sensor.dat") == ("pcapng", False)
    assert capture_format(folder / "capture-1.pcap.gz") == ("pcap", True)
    whole = pcap_records((site / "whole.pcap").read_bytes())
    lo, hi = t("2026-02-03 23:30"), t("2026-02-04 01:30")
    mine = [ts for ts, _ in whole if lo <= ts < hi]
    found = fingerprint(folder / "capture-1.pcap.gz")
    assert (found.first_ns, found.last_ns, found.packets) == (mine[0], mine[-1], len(mine))
    assert not found.cut_short and not found.problems
    # The same packets uncompressed have the same content hash (tcpdump -z gzip).
    plain = site / "plain.pcap"
    plain.write_bytes(gzip.decompress((folder / "capture-1.pcap.gz").read_bytes()))
    assert fingerprint(plain).content_hash == found.content_hash
    assert fingerprint(folder / "a.cap").content_hash != found.content_hash


def test_a_file_that_is_no_capture_is_refused_in_the_readers_words(tmp_path):
    path = tmp_path / "notes.pcap"
    path.write_bytes(b"GET / HTTP/1.1\r\nHost: example\r\n")
    with pytest.raises(CaptureError) as info:
        fingerprint(path)
    assert str(info.value) == (
        f"{path}: byte offset 0: not a pcap or pcapng file: it looks like text ('GET / "
        "HTTP/1.1'); expected pcap or pcapng (tcpdump -w, dumpcap, Wireshark; editcap -F pcap "
        "converts other formats)"
    )


def test_pcapng_interface_statistics_give_kernel_drops(tmp_path):
    records = pcap_records(traffic().write(tmp_path / "x.pcap").read_bytes())[:10]
    body = pcapng(records)
    # An ISB for interface 0: ifdrop 7 and osdrop 5 (pcapng spec, 4.6), then end of options.
    opts = struct.pack("<HHQ", 5, 8, 7) + struct.pack("<HHQ", 7, 8, 5) + struct.pack("<HH", 0, 0)
    isb_body = struct.pack("<III", 0, 0, 0) + opts
    n = 12 + len(isb_body)
    isb = struct.pack("<II", 5, n) + isb_body + struct.pack("<I", n)
    (tmp_path / "x.pcapng").write_bytes(body + isb)
    (tmp_path / "y.pcapng").write_bytes(body)
    assert fingerprint(tmp_path / "x.pcapng").kernel_drops == 12
    assert fingerprint(tmp_path / "y.pcapng").kernel_drops is None
    assert fingerprint(tmp_path / "x.pcapng").packets == 10


# -- one run, two runs ----------------------------------------------------------------------


def test_nightly_alerts_equal_a_scan_of_the_whole_capture(site, uninterrupted, tmp_path, capsys):
    out, proc = uninterrupted
    assert proc.returncode == 1, proc.stderr
    for name in ("state.db", "alerts.jsonl"):
        shutil.copy(out / name, tmp_path / name)
    shutil.copytree(out / "reports", tmp_path / "reports")
    docs = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    expected = expected_by_day(site)
    assert [without_id(d) for d in docs] == expected[DAY1] + expected[DAY2]
    assert len({d["event"]["id"] for d in docs}) == len(docs)
    # Day 2's alerts of an incident that alerted on day 1 too are recurring.
    recurring = [(d["rule"]["id"], d["egress"]["previously_seen"]) for d in docs
                 if d["egress"]["recurrence"] == "recurring"]  # fmt: skip
    assert recurring and {seen for _, seen in recurring} == {str(DAY1)}
    # Hand-computed: the 60 MB flow of day 2 across the 01:30 file boundary is one alert.
    (upload,) = [d for d in docs if d["destination"]["ip"] == "203.0.113.7"]
    assert upload["source"]["bytes"] == 60 * MB
    assert upload["event"]["start"].startswith("2026-02-04T01:20:00.000+08:00")
    # The midnight upload starts on day 1 and is written once.
    (midnight,) = [d for d in docs if d["destination"]["ip"] == "203.0.113.9"]
    assert midnight["source"]["bytes"] == 55 * MB
    # Day 3 holds the last packet only (01:59): a report without alerts.
    for day in (DAY1, DAY2, DAY3):
        assert (tmp_path / "reports" / f"egress-report-{day}.html").exists()
    assert "3 day(s) finished" in proc.stderr
    # A second run (in this process: the same command) has nothing new to do.
    before = (tmp_path / "alerts.jsonl").read_bytes()
    assert in_process(site, tmp_path, capsys) == 0
    err = capsys.readouterr().err
    assert "0 new capture file(s)" in err and "0 day(s) finished" in err
    assert (tmp_path / "alerts.jsonl").read_bytes() == before
    # Redoing a day rewrites its report and writes no alert twice.
    assert in_process(site, tmp_path, capsys, "--day", str(DAY2)) == 1
    assert (tmp_path / "alerts.jsonl").read_bytes() == before


def test_flows_are_stitched_across_files_and_across_runs(site, tmp_path):
    """Night 1 sees the files up to 01:30 on day 2 (the 60 MB flow is open at the
    end of its last file); night 2 the rest. The flow is one flow, and the
    alerts are those of one run over everything."""
    folder = tmp_path / "captures"
    folder.mkdir()
    policy = load_policy(site / "policy.toml")
    flows: dict[dt.date, list] = {}

    def keep(day, scan):
        f = scan.flows.to_frame(community_id=False)
        flows[day] = f[f["dst_ip"] == "203.0.113.7"]

    def run(now: str):
        options = NightlyOptions(captures=str(folder), state=str(tmp_path / "state.db"),
                                 report_dir=str(tmp_path / "reports"),
                                 alerts_path=str(tmp_path / "alerts.jsonl"))  # fmt: skip
        return run_nightly(options, policy, now_ns=t(now), on_day=keep)

    copy(site, folder, FILES[:4], "2026-02-04 01:35")
    first = run("2026-02-04 01:45")
    assert [d.day for d in first.days] == [DAY1]
    assert [d for d, _ in first.not_ready] == [DAY2]
    copy(site, folder, FILES[4:], "2026-02-05 02:05")
    second = run("2026-02-05 03:00")
    assert [d.day for d in second.days] == [DAY2] and len(second.taken) == 2
    (flow,) = flows[DAY2].itertuples()
    assert (flow.src_ip, flow.src2dst_bytes, flow.dst2src_bytes) == (PC, 60 * MB, 2 * MB)
    docs = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    expected = expected_by_day(site)
    assert [without_id(d) for d in docs] == expected[DAY1] + expected[DAY2]


def test_a_file_still_being_written_is_left_for_the_next_run(site, tmp_path):
    folder = tmp_path / "captures"
    folder.mkdir()
    policy = load_policy(site / "policy.toml")
    copy(site, folder, FILES[:5], "2026-02-05 02:00")
    last = (site / "captures" / FILES[5][0]).read_bytes()
    growing = folder / FILES[5][0]
    growing.write_bytes(last[:-7])  # the last record cut short
    mtime = t("2026-02-05 02:00")
    os.utime(growing, ns=(mtime, mtime))
    options = NightlyOptions(captures=str(folder), state=str(tmp_path / "state.db"),
                             report_dir=str(tmp_path / "reports"))  # fmt: skip
    # Ten minutes after its last write: cut short, so still being written.
    result = run_nightly(options, policy, now_ns=t("2026-02-05 02:10"))
    assert [p for p, _ in result.waiting] == [str(growing)]
    assert "cut short" in result.waiting[0][1]
    assert [d.day for d in result.days] == [DAY1]
    assert [d for d, _ in result.not_ready] == [DAY2]
    # Modified a moment ago: left without even being read.
    os.utime(growing, ns=(t("2026-02-05 02:20") - 5 * NS,) * 2)
    result = run_nightly(options, policy, now_ns=t("2026-02-05 02:20"))
    assert "modified in the last 60 s" in result.waiting[0][1] and not result.days
    # Finished: taken in, and day 2 is done.
    growing.write_bytes(last)
    os.utime(growing, ns=(mtime, mtime))
    result = run_nightly(options, policy, now_ns=t("2026-02-05 03:00"))
    assert not result.waiting and [d.day for d in result.days] == [DAY2]


# -- kills -----------------------------------------------------------------------------


def test_killed_anywhere_and_run_again_gives_exactly_the_uninterrupted_output(
    site, uninterrupted, tmp_path
):
    whole, reference = uninterrupted
    assert reference.returncode == 1, reference.stderr
    # Steps: one per file taken in (6), then per day: report written, alerts
    # appended, day committed. Each run below is killed after its Nth step:
    # mid-files; after day 1's report; after day 1's alerts (before the commit);
    # after day 1's commit, day 2's report and alerts (before day 2's commit).
    out = tmp_path / "killed"
    out.mkdir()
    for kill_after in (3, 4, 2, 5):
        proc = nightly(site, out, env={KILL_HOOK: str(kill_after)})
        assert proc.returncode == -9, (kill_after, proc.stderr)
    final = nightly(site, out)
    assert final.returncode == 1, final.stderr
    assert (out / "alerts.jsonl").read_bytes() == (whole / "alerts.jsonl").read_bytes()
    for day in (DAY1, DAY2, DAY3):
        name = f"egress-report-{day}.html"
        assert report_text(out / "reports" / name) == report_text(whole / "reports" / name)
    leftovers = [p.name for p in (out / "reports").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_alerts_committed_by_a_killed_run_are_announced_by_the_next_run(
    site, uninterrupted, tmp_path, capsys
):
    """A run killed after committing its days, before its summary and exit
    status: the next run that completes announces their alerts (summary and
    exit status 1), once; the one after it exits 0."""
    whole, reference = uninterrupted
    # 6 files taken in, then 3 steps a day (report, alerts, commit): killed
    # right after day 3's commit, with every day finished and none announced.
    out = tmp_path / "killed"
    out.mkdir()
    killed = nightly(site, out, env={KILL_HOOK: "15"})
    assert killed.returncode == -9, killed.stderr
    assert "day(s) finished" not in killed.stderr  # no summary
    assert (out / "alerts.jsonl").read_bytes() == (whole / "alerts.jsonl").read_bytes()

    def said(err: str) -> list[str]:
        return [line.removeprefix("egress-detector: ") for line in err.splitlines()]

    assert in_process(site, out, capsys) == 1
    err = said(capsys.readouterr().err)
    day_line = re.compile(r"(\S+): (\d+) alert\(s\) \((\d+) new\) from (\d+) file")
    counts = [m.groups() for line in said(reference.stderr) if (m := day_line.match(line))]
    assert [c[0] for c in counts] == [str(DAY1), str(DAY2), str(DAY3)]
    expected = expected_by_day(site)
    assert [int(c[1]) for c in counts] == [len(expected[DAY1]), len(expected[DAY2]), 0]
    for day, alerts, new, files in counts:
        report = out / "reports" / f"egress-report-{day}.html"
        line = (f"{day}: {alerts} alert(s) ({new} new) from {files} file(s) → {report} "
                "(finished by an earlier run that was stopped before it announced them)")  # fmt: skip
        assert line in err, err
    total = len(expected[DAY1]) + len(expected[DAY2])
    assert err[-1] == (
        "0 new capture file(s) (0 B), 0 day(s) finished, 0 new alert(s); and 3 day(s) an "
        f"earlier run finished: {total} alert(s) ({total} new)"
    )
    # Announced once: the next run has nothing to tell.
    assert in_process(site, out, capsys) == 0
    err = said(capsys.readouterr().err)
    assert not [line for line in err if "earlier run" in line]
    assert err[-1] == "0 new capture file(s) (0 B), 0 day(s) finished, 0 new alert(s)"
    assert (out / "alerts.jsonl").read_bytes() == (whole / "alerts.jsonl").read_bytes()


def test_days_are_marked_announced_only_once_the_summary_is_out(site, tmp_path):
    options = NightlyOptions(captures=str(site / "captures"), state=str(tmp_path / "state.db"),
                             report_dir=str(tmp_path / "reports"))  # fmt: skip
    policy = load_policy(site / "policy.toml")

    def broken_pipe(result):
        raise BrokenPipeError  # the summary could not be written

    with pytest.raises(BrokenPipeError):
        run_nightly(options, policy, announce=broken_pipe)
    told = []
    again = run_nightly(options, policy, announce=told.append)
    assert told == [again] and not again.days
    assert [d.day for d in again.earlier] == [str(DAY1), str(DAY2), str(DAY3)]
    assert again.announced_alerts == sum(d.alerts for d in again.earlier) > 0
    # A --day redo announces that day again, and no other.
    redo = run_nightly(replace(options, day=DAY2), policy)
    assert [d.day for d in redo.days] == [DAY2] and not redo.earlier
    assert redo.announced_alerts == len(redo.days[0].alerts) > 0
    assert not run_nightly(options, policy).earlier


def test_a_schema_1_state_takes_its_days_as_announced(tmp_path):
    """State files of the version before days.announced: their days were
    announced by the runs that finished them."""
    from detector.nightly.state import NightlyState

    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE days (day TEXT PRIMARY KEY, alerts INTEGER NOT NULL, new_alerts INTEGER "
        "NOT NULL, files INTEGER NOT NULL, report TEXT NOT NULL, finished_at_ns INTEGER NOT NULL);"
        "INSERT INTO days VALUES ('2026-02-03', 4, 4, 3, 'r.html', 0);"
    )
    old.commit()
    old.close()
    state = NightlyState(path)
    assert state.finished_days() == {"2026-02-03"} and state.unannounced_days() == []
    state.finish_day("2026-02-04", alert_ids=["a", "b"], new_alerts=2, files=1, report="s.html",
                     hosts=[], output=None, output_bytes=0, now_ns=1)  # fmt: skip
    assert [d.day for d in state.unannounced_days()] == ["2026-02-04"]
    state.mark_announced(["2026-02-04"])
    assert state.unannounced_days() == []
    state.close()
    assert sqlite3.connect(path).execute("SELECT value FROM meta").fetchone() == ("2",)


def test_help_teaches_cron_and_systemd(capsys):
    with pytest.raises(SystemExit) as done:
        main(["nightly", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "30 1 * * *" in text and "egress-detector-nightly.timer" in text


def test_bad_state_file_is_one_line(site, tmp_path, capsys):
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    code = main(["nightly", "--captures", str(site / "captures"), "--policy",
                 str(site / "policy.toml"), "--state", str(tmp_path / "state.db"),
                 "--report-dir", str(tmp_path / "reports")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "state.db" in err and "SQLite" in err, err


def test_two_threads_read_many_rotated_files(site):
    """A day is read as one stream of many files; with two threads each file
    used to keep one batch of the pipeline's pool, and the fifth file waited
    forever. The same flows as one thread, over more files than the pool holds."""
    import numpy as np

    from detector.flows.table import PIPELINE_DEPTH, count_flows

    paths = sorted((site / "captures").glob("*.pcap")) * 2
    assert len(paths) > PIPELINE_DEPTH
    import threading

    one = count_flows(paths, threads=1)
    done: list = []
    reader = threading.Thread(target=lambda: done.append(count_flows(paths, threads=2)),
                              daemon=True)  # fmt: skip
    reader.start()
    reader.join(120)
    assert done, "two threads over many files never finished"
    (two,) = done
    assert two.packets == one.packets > 0
    assert np.array_equal(two.exported_rows(), one.exported_rows())


# -- --learn ---------------------------------------------------------------------------


def ordinary_day(cap: Capture, day: str) -> Capture:
    cap.transfer(PC, "198.51.100.25", start=t(f"{day} 09:00"), seconds=60, bytes_out=5 * MB,
                 bytes_in=100_000, sport=50001)  # fmt: skip
    cap.transfer(PC, "203.0.113.50", start=t(f"{day} 10:00"), seconds=120, bytes_out=2 * MB,
                 bytes_in=3 * MB, sport=50005)  # fmt: skip
    cap.transfer(PC2, "203.0.113.60", start=t(f"{day} 11:00"), seconds=60, bytes_out=MB,
                 bytes_in=4 * MB, sport=50006)  # fmt: skip
    return cap.packet(PC, "192.0.2.53", at_ns=t(f"{day} 23:59"), dport=53)


def test_learn_refits_the_model_from_clean_windows_only(site, tmp_path):
    from detector.detect.model import EgressModel, load_model, save_model
    from detector.nightly.learn import MIN_DAYS
    from detector.pipelines.train import train_model

    policy = load_policy(site / "policy.toml")
    baseline = Capture()
    for day in range(26, 31):
        ordinary_day(baseline, f"2026-01-{day}")
    model_path = tmp_path / "site.model"
    small = EgressModel(n_estimators=10, max_samples=256)  # a small forest: a quick test
    trained = train_model([baseline.write(tmp_path / "baseline.pcap")], policy, model=small)
    save_model(trained.model, model_path, policy)
    days = [dt.date(2026, 2, 2) + dt.timedelta(days=i) for i in range(MIN_DAYS + 1)]
    archive = tmp_path / "archive"
    archive.mkdir()
    for day in days:
        cap = ordinary_day(Capture(), str(day))
        if day == DAY2:  # 02:00-02:06 on Wednesday: 60 MB off hours, an alert
            cap.transfer(PC, "203.0.113.7", start=t(f"{day} 02:00"), seconds=360,
                         bytes_out=60 * MB, sport=50003)  # fmt: skip
        cap.write(archive / f"{day}.pcap")
    folder = tmp_path / "captures"
    folder.mkdir()
    options = NightlyOptions(captures=str(folder), state=str(tmp_path / "state.db"),
                             report_dir=str(tmp_path / "reports"), learn=str(model_path))  # fmt: skip

    def night(upto: int, now: str):
        for day in days[:upto]:
            shutil.copy(archive / f"{day}.pcap", folder / f"{day}.pcap")
            os.utime(folder / f"{day}.pcap", ns=(t(now) - 3600 * NS,) * 2)
        return run_nightly(options, policy, model=load_model(model_path, policy), now_ns=t(now))

    before = model_path.read_bytes()
    first = night(MIN_DAYS - 1, f"{days[MIN_DAYS - 1]} 01:30")
    assert [d.day for d in first.days] == days[: MIN_DAYS - 1]
    assert model_path.read_bytes() == before  # six clean days: not yet
    second = night(MIN_DAYS + 1, f"{days[-1] + dt.timedelta(days=1)} 01:30")
    assert [d.day for d in second.days] == days[MIN_DAYS - 1 :]
    learned = tmp_path / "state.db.learned"
    frames = {day: pd.read_parquet(learned / f"{day}.windows.parquet") for day in days}
    # The off-hours upload's window (02:00 local on Wednesday) was never learned;
    # the same host's ordinary 09:00 window that day was.
    wed = frames[DAY2]
    local = pd.DatetimeIndex(wed["window_start"]).tz_convert(ZONE).strftime("%H:%M")
    assert not ((wed["host"] == PC) & (local == "02:00")).any()
    assert ((wed["host"] == PC) & (local == "09:00")).any()
    upload_day = scan_captures([archive / f"{DAY2}.pcap"], policy).features
    upload_local = pd.DatetimeIndex(upload_day["window_start"]).tz_convert(ZONE).strftime("%H:%M")
    assert ((upload_day["host"] == PC) & (upload_local == "02:00")).any()
    # The model now is the one fitted on the eight kept days, with the same parameters.
    refit = load_model(model_path, policy)
    assert refit.get_params() == small.get_params()
    assert refit.n_windows_ == sum(len(f) for f in frames.values())
    first_window = min(pd.DatetimeIndex(f["window_start"]).asi8.min() for f in frames.values())
    assert refit.span_[0] == first_window


def test_a_damaged_capture_is_one_line_with_its_offset_and_exit_3(site, tmp_path, capsys):
    folder = tmp_path / "captures"
    folder.mkdir()
    good = Capture().packet(PC, "192.0.2.53", at_ns=t("2026-02-03 10:00"), dport=53)
    data = good.write(tmp_path / "good.pcap").read_bytes()
    # A record header claiming 1 MB of packet: beyond the 262144-byte limit.
    bad = data + struct.pack("<IIII", 1_770_084_000, 0, 1 << 20, 1 << 20) + b"\0" * 64
    (folder / "damaged.pcap").write_bytes(bad)
    os.utime(folder / "damaged.pcap", ns=(t("2026-02-04 12:00"),) * 2)
    capsys.readouterr()
    code = main(["nightly", "--captures", str(folder), "--policy", str(site / "policy.toml"),
                 "--state", str(tmp_path / "state.db"), "--report-dir",
                 str(tmp_path / "reports")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    lines = [line for line in err.splitlines() if "damaged.pcap" in line and "error" in line]
    assert len(lines) == 1 and f"byte offset {len(data)}:" in lines[0], err
    assert (tmp_path / "reports" / f"egress-report-{DAY1}.html").exists()


def test_workers_start_one_local_cluster_for_every_day(site, uninterrupted, tmp_path, monkeypatch):
    """``--workers 2``: the days of a run share one local Dask cluster (started
    at the first day, closed at the end), and the alerts are the
    single-process run's."""
    pytest.importorskip("dask.distributed", reason="needs the 'distributed' extra (Dask)")
    from detector.distributed import scan as distributed_scan

    started: list[int | None] = []
    start = distributed_scan._client

    def counted(workers, scheduler):
        started.append(workers)
        return start(workers, scheduler)

    monkeypatch.setattr(distributed_scan, "_client", counted)
    options = NightlyOptions(captures=str(site / "captures"), state=str(tmp_path / "state.db"),
                             report_dir=str(tmp_path / "reports"),
                             alerts_path=str(tmp_path / "alerts.jsonl"), workers=2)  # fmt: skip
    result = run_nightly(options, load_policy(site / "policy.toml"))
    assert [str(d.day) for d in result.days] == [str(DAY1), str(DAY2), str(DAY3)]
    assert started == [2]
    docs = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    out, _ = uninterrupted
    alone = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert [without_id(d) for d in docs] == [without_id(d) for d in alone]
