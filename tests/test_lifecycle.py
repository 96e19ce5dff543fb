"""An alert's lifecycle through the commands: suppressed by the policy (held
back, counted, listed), new or recurring across the nightly's days, and the
report directory's index and day-to-day links."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

from gen_traffic import Capture, at

from detector.alerts.record import incident_id
from detector.cli.main import main
from detector.nightly.run import NightlyOptions, run_nightly
from detector.policy import parse_policy

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
SAMPLE_POLICY = ROOT / "captures" / "sample-policy.toml"

ISO, OUT, VENDOR = "10.8.40.31", "203.0.113.140", "198.51.100.20"
DAY1, DAY2 = dt.date(2026, 2, 3), dt.date(2026, 2, 4)
POLICY = f"""
[site]
name = "lifecycle"
timezone = "UTC"
[networks]
internal = ["10.8.0.0/16"]
isolated = ["10.8.40.0/24"]

[[suppress]]
rule = "isolated-egress"
host = "10.8.40.0/24"
destination = "{VENDOR}"
until = 2026-02-03
reason = "vendor's remote maintenance, ticket 4711"
"""


def test_scan_counts_what_the_policy_suppresses(tmp_path, capsys):
    """The sample's offhours-bulk-egress alert suppressed: two alerts written,
    the summary says one more was held back, and the exit status is still 1."""
    policy = tmp_path / "site.toml"
    policy.write_text(
        SAMPLE_POLICY.read_text()
        + """
[[suppress]]
rule = "offhours-bulk-egress"
host = "10.8.40.31"
destination = "203.0.113.0/24"
until = 2026-02-04
reason = "test"
"""
    )
    out = tmp_path / "alerts.jsonl"
    assert main(["scan", "--policy", str(policy), "-o", str(out), str(SAMPLE)]) == 1
    err = capsys.readouterr().err
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(d["rule"]["id"] for d in docs) == ["isolated-egress", "isolated-egress"]
    (summary,) = [line for line in err.splitlines() if "→" in line]
    assert "→ 2 alert(s) (1 more suppressed by the policy) in " in summary


def _day(path: Path, day: dt.date, *, vendor: bool) -> Path:
    capture = Capture()
    start = at(f"{day} 10:00", "UTC")
    capture.transfer(ISO, OUT, start=start, seconds=60, bytes_out=300_000, bytes_in=20_000)
    if vendor:
        capture.transfer(ISO, VENDOR, start=start + 120 * 10**9, seconds=30,
                         bytes_out=40_000, bytes_in=900_000, dport=22)  # fmt: skip
    written = capture.write(path)
    mtime = at(f"{day + dt.timedelta(days=1)} 00:05", "UTC")
    os.utime(written, ns=(mtime, mtime))
    return written


def test_nightly_suppresses_marks_recurring_and_links_the_days(tmp_path):
    """Day 1: ISO reaches OUT (an alert) and the vendor (suppressed). Day 2: ISO
    reaches OUT again (recurring, last seen day 1) and the vendor (the
    suppression ended on day 1: an alert, new)."""
    folder = tmp_path / "captures"
    folder.mkdir()
    _day(folder / "day1.pcap", DAY1, vendor=True)
    _day(folder / "day2.pcap", DAY2, vendor=True)
    reports = tmp_path / "reports"
    options = NightlyOptions(captures=str(folder), state=str(tmp_path / "state.db"),
                             report_dir=str(reports), alerts_path=str(tmp_path / "alerts.jsonl"),
                             settle_seconds=0)  # fmt: skip
    said: list[str] = []
    policy = parse_policy(POLICY)
    assert policy.warnings and "expired on 2026-02-03" in policy.warnings[0]
    result = run_nightly(options, policy, now_ns=at("2026-02-06 00:00", "UTC"), say=said.append)
    assert [(d.day, len(d.alerts), d.suppressed, d.recurring) for d in result.days] == [
        (DAY1, 1, 1, 0), (DAY2, 2, 0, 1)]  # fmt: skip
    assert said[0].startswith("2026-02-03: 1 alert(s) (1 new, 1 suppressed by the policy) from 1")

    docs = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    shown = sorted((d["event"]["start"][:10], d["destination"]["ip"], d["egress"]["recurrence"],
                    d["egress"].get("previously_seen")) for d in docs)  # fmt: skip
    assert shown == [
        ("2026-02-03", OUT, "new", None),
        ("2026-02-04", VENDOR, "new", None),  # suppressed on day 1: never alerted before
        ("2026-02-04", OUT, "recurring", "2026-02-03"),
    ]

    day1 = (reports / f"egress-report-{DAY1}.html").read_text()
    held = re.search(r'<section id="suppressed">(.*?)</section>', day1, re.S).group(1)
    assert "vendor&#x27;s remote maintenance, ticket 4711" in held and VENDOR in held
    assert "Suppressed by the policy (1)" in held

    def links(page: str) -> list[str]:
        return re.findall(r'href="([^"]+)"', re.search(r"<nav.*?</nav>", page).group(0))

    # Day 1 was written first (no next day then), and relinked when day 2 came.
    assert links(day1) == ["index.html", f"egress-report-{DAY2}.html"]
    day2 = (reports / f"egress-report-{DAY2}.html").read_text()
    assert links(day2) == [f"egress-report-{DAY1}.html", "index.html"]

    index = (reports / "index.html").read_text()
    rows = {
        m.group(1): [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                  m.group(2))]
        for m in re.finditer(r'<tr id="day-([0-9-]+)">(.*?)</tr>', index)
    }  # fmt: skip
    assert rows == {
        "2026-02-04": ["Wed 2026-02-04", "2", "1", "0", f"egress-report-{DAY2}.html"],
        "2026-02-03": ["Tue 2026-02-03", "1", "1", "1", f"egress-report-{DAY1}.html"],
    }


def test_scan_says_new_unless_given_history(tmp_path, capsys):
    """The sample scanned alone: every alert new. Given yesterday's alerts of
    the same rule and addresses (either way round), those recur; one of 31
    days before does not (report.recurring_days is 30); a broken history file
    is one line naming its byte offset."""
    out = tmp_path / "alerts.jsonl"
    args = ["scan", "-q", "--policy", str(SAMPLE_POLICY), "--format", "jsonl"]
    assert main([*args, "-o", str(out), str(SAMPLE)]) == 1
    alone = [json.loads(line) for line in out.read_text().splitlines()]
    assert {d["egress"]["recurrence"] for d in alone} == {"new"}

    def earlier(rule: str, source: str, destination: str, day: str) -> str:
        return json.dumps({"rule": {"id": rule}, "event": {"start": f"{day}T23:00:00.000+08:00"},
                           "source": {"ip": source}, "destination": {"ip": destination}})  # fmt: skip

    history = tmp_path / "history.jsonl"
    history.write_text("\n".join([
        earlier("isolated-egress", "10.8.40.31", "203.0.113.140", "2026-02-03"),  # yesterday
        earlier("isolated-egress", "10.8.40.31", "10.8.10.44", "2026-01-04"),  # 31 days before
        earlier("offhours-bulk-egress", "203.0.113.140", "10.8.40.31", "2026-01-05"),  # 30
    ]) + "\n")  # fmt: skip
    assert main([*args, "-o", str(out), "--history", str(history), str(SAMPLE)]) == 1
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    seen = sorted((d["rule"]["id"], d["source"]["ip"], d["egress"]["recurrence"],
                   d["egress"].get("previously_seen")) for d in docs)  # fmt: skip
    assert seen == [
        ("isolated-egress", "10.8.10.44", "new", None),
        ("isolated-egress", "10.8.40.31", "recurring", "2026-02-03"),
        ("offhours-bulk-egress", "10.8.40.31", "recurring", "2026-01-05"),
    ]
    capsys.readouterr()
    history.write_text(earlier("p2p", "10.8.10.5", "203.0.113.9", "2026-02-03") + "\n{oops\n")
    assert main([*args, "--history", str(history), str(SAMPLE)]) == 2
    offset = len(earlier("p2p", "10.8.10.5", "203.0.113.9", "2026-02-03")) + 1
    assert capsys.readouterr().err.splitlines() == [
        f"egress-detector: error: --history {history}: byte offset {offset}: not a JSON line "
        "(Expecting property name enclosed in double quotes) (one a line, with rule.id and "
        "event.start, as scan --format jsonl and nightly write)"
    ]
    history.write_text(earlier("p2p", "10.8.10.5", "203.0.113.9", "2026-02-03") + '\n{"a": 1}\n')
    assert main([*args, "--history", str(history), str(SAMPLE)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"egress-detector: error: --history {history}: byte offset {offset}: not an alert in "
        "ECS JSON (one a line, with rule.id and event.start, as scan --format jsonl and "
        "nightly write)"
    ]


def test_the_nightly_command_says_what_it_suppressed(tmp_path, capsys):
    """The command's summary: the day line and the last line count the
    suppressed alert; the policy's expired suppression is warned about; the
    alerts carry the policy's sensor name."""
    folder = tmp_path / "captures"
    folder.mkdir()
    _day(folder / "day1.pcap", DAY1, vendor=True)
    policy = tmp_path / "site.toml"
    policy.write_text(POLICY.replace('name = "lifecycle"', 'name = "lifecycle"\nsensor = "span-7"'))
    jsonl = tmp_path / "alerts.jsonl"
    code = main(["nightly", "--captures", str(folder), "--policy", str(policy), "--state",
                 str(tmp_path / "state.db"), "--report-dir", str(tmp_path / "reports"),
                 "--jsonl", str(jsonl), "--settle", "0"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert any("suppress[0]: expired on 2026-02-03" in line for line in err)
    assert any(line.startswith("egress-detector: 2026-02-03: 1 alert(s) (1 new, 1 suppressed by "
                               "the policy) from 1 file(s)") for line in err)  # fmt: skip
    assert err[-1].endswith("1 day(s) finished, 1 new alert(s) (1 more suppressed by the policy)")
    (doc,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert doc["observer"]["hostname"] == "span-7"
    assert "sensor span-7" in (tmp_path / "reports" / f"egress-report-{DAY1}.html").read_text()


def test_live_holds_back_and_counts_a_suppressed_incident(tmp_path):
    """A live sensor under the suppression: the vendor's incident is not
    written, and counted once however many analyses see it again."""
    from test_ecs import _Clock

    from detector.capture import read_packets
    from detector.pipelines.live import LiveDetector, LiveOptions

    path = _day(tmp_path / "day1.pcap", DAY1, vendor=True)
    source = _Clock()
    written: list = []
    live = LiveDetector([source], parse_policy(POLICY), LiveOptions(), emit=written.extend)
    for batch in read_packets([path]):
        live.workers[0].flows.ingest(batch)
        live.workers[0].activity.ingest(batch)
    source.now = at(f"{DAY1} 10:05", "UTC")
    live._analyse(final=False)
    live._analyse(final=True)
    assert [(a.rule_id, a.destination_ip) for a in live.emitted] == [("isolated-egress", OUT)]
    assert all(a.destination_ip != VENDOR for a in written)
    start = at(f"{DAY1} 10:02", "UTC")  # the vendor transfer's first packet
    assert live.suppressed == {incident_id("isolated-egress", ISO, VENDOR, start)}
