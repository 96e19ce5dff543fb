"""`egress-detector timeline`: a host's minutes against tshark's own sums, its
alerts with the carve command of each, and the SVG chart."""

from __future__ import annotations

import datetime as dt
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from naive import read_records

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
POLICY = ROOT / "captures" / "sample-policy.toml"
HOST = "10.8.40.31"
TAIPEI = ZoneInfo("Asia/Taipei")
SVG = "{http://www.w3.org/2000/svg}"

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)  # fmt: skip


@needs_tshark
def test_minutes_are_tsharks_sums_in_local_time():
    """Bytes and packets out (ip.src is the host) and in (ip.dst is the host)
    per minute of Taipei time, summed from tshark's frame.len: equal, every
    active minute (27 of them)."""
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(SAMPLE), "-Y", f"ip.addr=={HOST}", "-T", "fields",
         "-e", "frame.time_epoch", "-e", "frame.len", "-e", "ip.src", "-e", "ip.dst"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    want: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for line in proc.stdout.splitlines():
        epoch, length, src, dst = line.split("\t")
        minute = dt.datetime.fromtimestamp(int(epoch.split(".")[0]), tz=TAIPEI)
        row = want[minute.strftime("%Y-%m-%d %H:%M")]
        if src.split(",")[0] == HOST:
            row[0] += int(length)
            row[2] += 1
        if dst.split(",")[0] == HOST:
            row[1] += int(length)
            row[3] += 1
    got = run("timeline", "-q", "--host", HOST, "--policy", str(POLICY), "--format", "csv",
              str(SAMPLE))  # fmt: skip
    assert got.returncode == 1, got.stderr  # the host has alerts
    lines = got.stdout.splitlines()
    assert lines[0] == "minute_local,bytes_out,bytes_in,packets_out,packets_in,top_peer"
    rows = {f[0]: [int(x) for x in f[1:5]] for f in (line.split(",") for line in lines[1:])}
    assert rows == dict(want)
    assert len(rows) == 27
    assert rows["2026-02-04 02:17"][0] == max(r[0] for r in rows.values())
    top = {f[0]: f[5] for f in (line.split(",") for line in lines[1:])}
    assert top["2026-02-04 02:17"] == "203.0.113.140" and top["2026-02-04 02:08"] == "10.8.10.44"


def test_table_lists_destinations_and_alerts_with_their_carve_command(tmp_path):
    """The table names each other side with its services and volumes, and each
    alert with a carve command; that command, run, writes the alert's packets
    (the 62,173 of the upload for the critical one)."""
    proc = run("timeline", "--host", HOST, "--policy", str(POLICY), str(SAMPLE))
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout
    assert "203.0.113.140                             tcp/443                  62.7 MB      1.4 MB  02:13 - 02:19" in text  # noqa: E501
    assert "10.8.10.44 [internal]" in text and "tcp/3389, tcp/445" in text
    assert "ALERTS (3)" in text
    commands = [line.split("packets: ", 1)[1] for line in text.splitlines() if "packets: " in line]
    assert len(commands) == 3
    critical = next(c for c in commands if "--peer 203.0.113.140" in c)
    words = shlex.split(critical)
    assert words[:2] == ["egress-detector", "carve"]
    done = run(*words[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    carved = read_records(tmp_path / f"isolated-egress-{HOST}.pcap")
    assert len(carved) == 62_173


def test_svg_chart(tmp_path):
    """-o FILE.svg: well-formed SVG, one bar out per minute the host sent in
    (27), the tallest at 02:17, one shaded span per alert (3)."""
    out = tmp_path / "night.svg"
    proc = run("timeline", "-q", "--host", HOST, "--policy", str(POLICY), "-o", str(out),
               str(SAMPLE))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "out"]
    assert len(bars) == 27
    tallest = max(bars, key=lambda r: float(r.get("height", 0)))
    assert tallest.find(f"{SVG}title").text.startswith("02:17 sent 11.8 MB")
    assert len([r for r in root.iter(f"{SVG}rect") if r.get("class") == "alert"]) == 3
    assert "Asia/Taipei" in root.find(f"{SVG}title").text


def test_a_host_outside_the_site_is_one_line():
    proc = run("timeline", "-q", "--host", "203.0.113.140", "--policy", str(POLICY), str(SAMPLE))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "egress-detector: error: --host 203.0.113.140: no timeline: it is not in the policy's "
        "internal networks (timelines are of the site's own hosts)"
    ]


def test_daily_report_has_each_alerted_hosts_minutes():
    """The daily report's "Alerted hosts, minute by minute": 10.8.40.31 with
    its chart (27 minutes it sent in, 3 alert spans) and its destinations."""
    import re

    from detector.pipelines.scan import scan_captures
    from detector.policy import load_policy
    from detector.report import build_day_report, render_html

    policy = load_policy(str(POLICY))
    result = scan_captures([SAMPLE], policy)
    page = render_html(build_day_report(result, policy, day=dt.date(2026, 2, 4), files=[],
                                        processing_seconds=1.0))  # fmt: skip
    section = re.search(r'<section id="hosts-by-minute">.*?</section>', page, re.S).group(0)
    hosts = re.findall(r"<h3>([^<]+)</h3>", section)
    assert hosts[0] == HOST
    first = section.split("<h3>")[1]
    assert first.count('class="out"') == 27
    assert first.count('class="alert"') == 3
    assert "<td>203.0.113.140</td><td>tcp/443</td>" in first
