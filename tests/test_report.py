"""The daily report (detector/report/): exact figures of a generated day, the
calm empty day, escaping, masking, and the page as headless Chromium renders it.

The day is Wednesday 2026-02-04 at a Taipei site (business hours Mon–Fri
08:30–17:30). Two capture files, as a rotating capture writes them:

* night.pcap: the isolated host 10.8.40.31 sends 62,000,000 bytes to
  203.0.113.140:443 from 02:13:00 to 02:19:00 local and gets 500,000 back;
* morning.pcap: the internet computer 10.8.10.44 sends 3,000,000 bytes to the
  allowlisted mirror 198.51.100.25:443 from 10:00:00 to 10:01:00 (1,000,000
  back) and 200,000 bytes to 192.0.2.10:80 from 11:00:00 to 11:00:30
  (5,000,000 back).

Every expected number below is worked out by hand from those figures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html as html_lib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from gen_traffic import MTU_FRAME, Capture, at

from detector.capture import CaptureStats
from detector.capture.reading import Reading
from detector.detect.names import Names
from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy
from detector.report import CaptureFile, build_day_report, render_html, write_report
from detector.report.day import day_bounds

POLICY = """
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

[allowlist]
destinations = ["198.51.100.25/32"]
"""

ZONE = "Asia/Taipei"
DAY = dt.date(2026, 2, 4)
ISO, PC = "10.8.40.31", "10.8.10.44"
OUT, MIRROR, WEB = "203.0.113.140", "198.51.100.25", "192.0.2.10"
NS = 1_000_000_000


def frames(total: int) -> int:
    """Frames the generator writes for ``total`` bytes: full 1514-byte frames
    and one with the rest (every remainder here is larger than the headers)."""
    return -(-total // MTU_FRAME)


PACKETS = sum(map(frames, (62_000_000, 500_000, 3_000_000, 1_000_000, 200_000, 5_000_000)))


def night() -> Capture:
    return Capture().transfer(ISO, OUT, start=at("2026-02-04 02:13", ZONE), seconds=360,
                              bytes_out=62_000_000, bytes_in=500_000)  # fmt: skip


def morning() -> Capture:
    return (
        Capture()
        .transfer(
            PC,
            MIRROR,
            start=at("2026-02-04 10:00", ZONE),
            seconds=60,
            bytes_out=3_000_000,
            bytes_in=1_000_000,
        )  # fmt: skip
        .transfer(
            PC,
            WEB,
            start=at("2026-02-04 11:00", ZONE),
            seconds=30,
            bytes_out=200_000,
            bytes_in=5_000_000,
            sport=49200,
            dport=80,
        )  # fmt: skip
    )


def as_file(stats: CaptureStats, drops: int | None) -> CaptureFile:
    return CaptureFile(
        path=Path(stats.path).name,
        bytes=Path(stats.path).stat().st_size,
        first_ns=int(stats.first_ns or 0),
        last_ns=int(stats.last_ns or 0),
        packets=int(stats.packets),
        kernel_drops=drops,
    )


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """(policy, scan result, capture files) of the generated day."""
    where = tmp_path_factory.mktemp("day")
    paths = [night().write(where / "night.pcap"), morning().write(where / "morning.pcap")]
    policy = parse_policy(POLICY)
    stats: list[CaptureStats] = []
    result = scan_captures(paths, policy, reading=Reading(stats_out=stats))
    files = [as_file(stats[0], 7), as_file(stats[1], None)]
    return policy, result, files


def report_of(day, **options):
    policy, result, files = day
    options.setdefault("known_hosts", {PC})
    options.setdefault("sensor", "mirror-1")
    return build_day_report(result, policy, day=DAY, files=files, processing_seconds=12.5,
                            **options)  # fmt: skip


def section(page: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert match, f"no section {name}"
    return match.group(1)


def table_rows(fragment: str) -> list[list[str]]:
    """Cell texts of each data row (tags stripped, entities decoded)."""
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", fragment, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        if cells:
            rows.append([html_lib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


# -- the figures ------------------------------------------------------------------------


def test_summary_counts_alerts_worst_first_with_local_times(day):
    page = render_html(report_of(day))
    summary = section(page, "summary")
    assert re.sub(r"<[^>]+>", "", re.search(r'id="alert-counts">(.*?)</p>', summary).group(1)) == (
        "2 alerts: critical1, high1"
    )
    lines = [re.sub(r"<[^>]+>", "", li) for li in re.findall(r"<li>(.*?)</li>", summary)]
    assert lines == [
        "critical02:13–02:19 Isolated host talked to a non-isolated address: 10.8.40.31 "
        "(isolated) → 203.0.113.140:443, sent 62.0 MB · new",
        "high02:13–02:19 Bulk upload outside business hours: 10.8.40.31 (isolated) → "
        "203.0.113.140:443, sent 62.0 MB · new",
    ]
    # two hosts sent 62,000,000 + 3,000,000 + 200,000 bytes outside
    assert "2 internal hosts sent 65.2 MB to the outside in all." in summary
    assert "Asia/Taipei, UTC+08:00" in page


def test_alert_says_who_when_how_much_and_why(day):
    page = render_html(report_of(day))
    first = re.search(r'<article class="alert sev-critical" id="alert-1">(.*?)</article>',
                      page, re.S).group(1)  # fmt: skip
    assert "<dt>Who</dt><dd>10.8.40.31 (isolated host)</dd>" in first
    assert "<dt>Other side</dt><dd>203.0.113.140:443</dd>" in first
    assert "<dt>When</dt><dd>Wed 2026-02-04 02:13:00 to Wed 2026-02-04 02:19:00 local</dd>" in first
    how = html_lib.unescape(re.sub(r"<[^>]+>", "", re.search(r"<dt>How much</dt><dd>(.*?)</dd>",
                                                             first).group(1)))  # fmt: skip
    assert how == (
        f"sent 62.0 MB (62,000,000 B) in {frames(62_000_000):,} packets; "
        "received 500.0 kB (500,000 B)"
    )
    assert "isolated network is bridged to the internet" in first  # why it matters
    second = page.split('id="alert-2">')[1].split("</article>")[0]
    # The rule's evidence (egress.* in the JSON lines), in words.
    assert (
        "threshold bytes: 50,000,000; span minutes: 60; destinations: (ip: 203.0.113.140, "
        "bytes: 62,000,000)" in second
    )
    # One flow carried the whole transfer (no gap near the 120 s idle timeout).
    (flow,) = table_rows(first)
    assert flow[:7] == ["02:13:00", "02:19:00", "49152", "203.0.113.140:443", "tcp",
                        "62.0 MB (62,000,000 B)", "500.0 kB (500,000 B)"]  # fmt: skip
    assert re.fullmatch(r"1:[A-Za-z0-9+/]{27}=", flow[7])


def test_timeline_has_the_hour_of_the_upload_and_shaded_off_hours(day):
    report = report_of(day)
    start, end = day_bounds(DAY, day[0])
    hour = 3600 * NS
    # Wednesday: off-hours before 08:30 and from 17:30 local.
    assert report.off_minutes == ((start, start + 8 * hour + hour // 2),
                                  (start + 17 * hour + hour // 2, end))  # fmt: skip
    entry = report.alerts[0]
    assert len(entry.hours) == 24
    assert [(h.label, h.bytes_out) for h in entry.hours if h.bytes_out] == [("02:00", 62_000_000)]
    svg = re.search(r"<svg.*?</svg>", render_html(report), re.S).group(0)
    assert svg.count('class="off"') == 2
    assert re.findall(r'class="bar[^"]*".*?<title>(.*?)</title>', svg) == ["02:00: 62.0 MB"]
    assert 'class="bar hot"' in svg  # the hour of the alert stands out


def test_holiday_is_off_hours_all_day(day):
    policy, result, files = day
    report = build_day_report(result, policy, day=dt.date(2026, 1, 1), files=files,
                              processing_seconds=1.0)  # fmt: skip
    start, end = day_bounds(dt.date(2026, 1, 1), policy)
    assert report.off_minutes == ((start, end),)
    assert report.alerts == () and report.top_uploaders == ()


def test_top_destinations_and_uploaders(day):
    page = render_html(report_of(day))
    assert table_rows(section(page, "top-destinations")) == [
        [OUT, "—", "62.0 MB (62,000,000 B)", "500.0 kB (500,000 B)", "1", ""],
        [MIRROR, "—", "3.0 MB (3,000,000 B)", "1.0 MB (1,000,000 B)", "1", "allowlisted"],
        [WEB, "—", "200.0 kB (200,000 B)", "5.0 MB (5,000,000 B)", "1", ""],
    ]
    assert table_rows(section(page, "top-uploaders")) == [
        [f"{ISO} (isolated)", "62.0 MB (62,000,000 B)", "62.0 MB (62,000,000 B)", "1"],
        [f"{PC} (internal)", "3.2 MB (3,200,000 B)", "0 B", "2"],
    ]


def test_hosts_first_seen_today(day):
    page = render_html(report_of(day))
    assert table_rows(section(page, "new-hosts")) == [
        [f"{ISO} (isolated)", "02:13:00", "62.0 MB (62,000,000 B)", "500.0 kB (500,000 B)", "1"]
    ]
    everyone = report_of(day, known_hosts=())
    assert [h.host for h in everyone.new_hosts] == [ISO, PC]  # in order of first packet
    seen = render_html(report_of(day, known_hosts={ISO, PC}))
    assert "every internal host with traffic today was seen on an earlier day" in seen


def test_an_address_that_only_receives_is_not_a_host(tmp_path):
    # An outside scan of an unused internal address: 10.8.10.99 never answers.
    probe = at("2026-02-04 04:00", ZONE)
    path = (
        morning()
        .packet("192.0.2.99", "10.8.10.99", at_ns=probe, dport=445, proto=6)
        .write(tmp_path / "c.pcap")
    )
    policy = parse_policy(POLICY)
    result = scan_captures([path], policy)
    report = build_day_report(result, policy, day=DAY, files=[], processing_seconds=0.1)
    assert [h.host for h in report.new_hosts] == [PC] and report.hosts == 1
    assert report.new_hosts[0].first_ns == at("2026-02-04 10:00", ZONE)


def test_sensor_health(day):
    page = render_html(report_of(day))
    health = section(page, "sensor-health")
    assert f'<dd id="packets">{PACKETS:,}</dd>' in health
    assert '<dd id="flows">3</dd>' in health
    # Covered: 02:13:00–02:19:00 and 10:00:00–11:00:30 with no gap over a minute
    # inside a file, i.e. 86,400 s less 2 h 13 min, 7 h 41 min and 12 h 59 min 30 s.
    assert '<dd id="coverage">4.6 % of the day (1 h 06 min of 24 h 00 min)</dd>' in health
    assert table_rows(health.split('id="gaps"')[1].split("</table>")[0]) == [
        ["00:00–02:13", "2 h 13 min", "start of day", "night.pcap"],
        ["02:19–10:00", "7 h 41 min", "night.pcap", "morning.pcap"],
        ["11:00–24:00", "12 h 59 min", "morning.pcap", "end of day"],
    ]
    drops = re.sub(r"<[^>]+>", "", re.search(r'<dd id="drops">(.*?)</dd>', health).group(1))
    assert drops == "7 (1 file(s) do not record drops)"
    assert '<dd id="processing">12.5 s' in health
    # The summary says what was not seen, near the top.
    summary = section(page, "summary")
    assert (
        '<p class="warn" id="blind">Careful: the captures cover 4.6 % of the day (3 gaps of '
        "over a minute); the capture lost 7 packets (kernel drops). What was not captured "
        "was not checked; see sensor health.</p>"
    ) in summary


def test_a_day_without_packets_is_not_called_calm(day):
    policy, result, _ = day
    report = build_day_report(result, policy, day=dt.date(2026, 2, 6), files=[],
                              processing_seconds=0.1)  # fmt: skip
    summary = section(render_html(report), "summary")
    assert "nothing was checked" in summary and "No alerts today" not in summary


def test_flood_day_details_the_worst_and_counts_the_rest(day, monkeypatch):
    import detector.report.day as day_module
    import detector.report.html as html_module

    monkeypatch.setattr(day_module, "DETAILED_ALERTS", 1)
    monkeypatch.setattr(html_module, "BY_RULE_FROM", 1)
    report = report_of(day)
    assert report.alerts_total == 2 and [e.alert.rule_id for e in report.alerts] == [
        "isolated-egress"
    ]
    page = render_html(report)
    assert 'id="alert-2"' not in page
    assert "The 1 worst are listed and detailed below; the other 1 are counted" in page
    rows = table_rows(section(page, "summary"))
    assert rows == [
        ["critical", "Isolated host talked to a non-isolated address isolated-egress", "1", "1",
         "62.0 MB"],
        ["high", "Bulk upload outside business hours offhours-bulk-egress", "1", "1", "62.0 MB"],
    ]  # fmt: skip


def test_empty_day_is_calm(tmp_path):
    path = morning().write(tmp_path / "morning.pcap")
    policy = parse_policy(POLICY)
    stats: list[CaptureStats] = []
    result = scan_captures([path], policy, reading=Reading(stats_out=stats))
    report = build_day_report(result, policy, day=DAY, files=[as_file(stats[0], 0)],
                              processing_seconds=0.4, known_hosts={PC})  # fmt: skip
    page = render_html(report)
    assert report.alerts == ()
    assert "No alerts today. 1 internal host sent 3.2 MB to the outside" in page
    assert 'id="alerts"' not in page and 'class="badge' not in page
    assert '<dd id="drops">0</dd>' in page
    assert 'id="blind"' in page  # 10:00–11:00:30 only: the summary says so


def test_write_report_replaces_the_file_whole(day, tmp_path):
    target = tmp_path / "2026-02-04.html"
    target.write_text("old")
    report = report_of(day)
    write_report(report, target)
    assert target.read_text(encoding="utf-8") == render_html(report)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left


# -- escaping and masking ---------------------------------------------------------------

HOSTILE = '<img src=x onerror="alert(1)">.example.com'


def hostile_result(day):
    """The day's scan with hostile texts where traffic can put them."""
    from detector.networks import address_pair as _pair

    policy, result, files = day
    alerts = [
        dataclasses.replace(
            a,
            text=a.text + " <script>alert(2)</script>",
            destination_domain=HOSTILE,
            evidence=dict(a.evidence),
        )  # fmt: skip
        for a in result.alerts
    ]
    names = Names({_pair(OUT): [HOSTILE], _pair(WEB): ["a123456789.example.net"]})
    return dataclasses.replace(result, alerts=alerts, names=names)


def hostile_page(day) -> str:
    policy, _, files = day
    files = [dataclasses.replace(files[0], path="night<&>.pcap"), files[1]]
    report = build_day_report(hostile_result(day), policy, day=DAY, files=files,
                              processing_seconds=12.5, sensor='<b>"span"</b>')  # fmt: skip
    return render_html(report)


def test_hostile_texts_are_shown_not_interpreted(day):
    page = hostile_page(day)
    assert "<img" not in page and "<script" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.example.com" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "night&lt;&amp;&gt;.pcap" in page
    assert "sensor &lt;b&gt;&quot;span&quot;&lt;/b&gt;" in page


def test_id_numbers_are_masked_wherever_they_come_from(day):
    from detector.report.html import mask_personal

    page = hostile_page(day)
    assert "a123456789" not in page.lower()
    assert "a12*****89.example.net" in page  # the name of 192.0.2.10
    # Glued to a letter or digit before, or a digit after: not a number. A letter
    # after does not stop the cleartext-pii rule (the kernel), so it is masked.
    assert mask_personal("F131104093, B212345678x, xA123456789, A1234567890") == (
        "F13*****93, B21*****78x, xA123456789, A1234567890"
    )


def test_cleartext_pii_alert_in_the_report_is_masked(tmp_path):
    from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Ether, Raw, wrpcap

    numbers = ["A123456789", "F131104093"]
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    body = "\r\n".join(f"name{i},{n}" for i, n in enumerate(numbers)).encode()
    packets = [
        ether / IP(src="10.0.0.53", dst=PC) / UDP(sport=53, dport=5555) / DNS(
            qr=1, qd=DNSQR(qname="f131104093.example.net"),
            an=DNSRR(rrname="f131104093.example.net", type="A", rdata="198.51.100.9")),
        ether / IP(src=PC, dst="198.51.100.9") / TCP(sport=40001, dport=25, flags="PA") / Raw(body),
    ]  # fmt: skip
    for i, packet in enumerate(packets):
        packet.time = at("2026-02-04 03:00", ZONE) // NS + i
    wrpcap(str(tmp_path / "c.pcap"), packets)
    policy = parse_policy(POLICY)
    result = scan_captures([tmp_path / "c.pcap"], policy)
    assert [a.rule_id for a in result.alerts] == ["cleartext-pii"]
    page = render_html(build_day_report(result, policy, day=DAY, files=[],
                                        processing_seconds=0.1))  # fmt: skip
    for number in numbers:
        assert number.lower() not in page.lower()
    assert "A12*****89" in page and "F13*****93" in page
    assert "f13*****93.example.net" in page


# -- in a real browser ------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (Debian: apt-get install chromium); CI installs it",
)


def chromium_dom(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM as headless Chromium renders ``page``, and its console messages
    (Chromium logs each as an INFO:CONSOLE line on stderr, CSP refusals too)."""
    assert CHROMIUM is not None
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console


@needs_chromium
def test_report_renders_in_chromium_without_console_errors(day, tmp_path):
    target = tmp_path / "report.html"
    write_report(report_of(day), target)
    dom, console = chromium_dom(target, tmp_path / "profile")
    assert console == []
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", dom))
    for figure in ("2 alerts", "62.0 MB", "62,000,000 B", "500,000 B", "3.2 MB",
                   f"{PACKETS:,}",
                   "4.6 % of the day", "02:13–02:19", "Asia/Taipei, UTC+08:00"):  # fmt: skip
        assert figure in text, figure
    # The style sheet applied (the CSP lets it in by hash): the badge is styled.
    assert '<span class="badge sev-critical">critical</span>' in dom


@needs_chromium
def test_hostile_page_runs_nothing_in_chromium(day, tmp_path):
    target = tmp_path / "hostile.html"
    target.write_text(hostile_page(day), encoding="utf-8")
    dom, console = chromium_dom(target, tmp_path / "profile")
    assert console == []  # no script ran, nothing was blocked: nothing was there to run
    assert "<img" not in dom and "<script" not in dom
    assert HOSTILE in html_lib.unescape(dom)


def test_daylight_saving_day_has_23_hours(tmp_path):
    # Paris, Sunday 2026-03-29: clocks go from 02:00 to 03:00. 4,000,000 bytes at
    # 03:30 local (01:30 UTC) are in the day's third hour, labelled 03:00.
    policy = parse_policy(POLICY.replace("Asia/Taipei", "Europe/Paris"))
    start = at("2026-03-29 03:30", "Europe/Paris")
    path = (
        Capture()
        .transfer(ISO, OUT, start=start, seconds=60, bytes_out=4_000_000)
        .write(tmp_path / "dst.pcap")
    )
    stats: list[CaptureStats] = []
    result = scan_captures([path], policy, reading=Reading(stats_out=stats))
    day = dt.date(2026, 3, 29)
    report = build_day_report(result, policy, day=day, files=[as_file(stats[0], None)],
                              processing_seconds=1.0)  # fmt: skip
    begin, end = day_bounds(day, policy)
    assert end - begin == 23 * 3600 * NS
    (entry, *_) = report.alerts
    assert [h.label for h in entry.hours][:4] == ["00:00", "01:00", "03:00", "04:00"]
    assert [(h.label, h.bytes_out) for h in entry.hours if h.bytes_out] == [("03:00", 4_000_000)]
    assert report.off_minutes == ((begin, end),)  # a Sunday
    page = render_html(report)
    assert "Europe/Paris, UTC+01:00 then UTC+02:00" in page
    assert "of 23 h 00 min)" in page


def test_a_bridge_is_explained_as_a_bridge(tmp_path):
    # The internet computer reaches into the isolated one over SMB at 02:05.
    start = at("2026-02-04 02:05", ZONE)
    cap = Capture().transfer(PC, ISO, start=start, seconds=30, bytes_out=200_000,
                             bytes_in=4_000_000, sport=50000, dport=445)  # fmt: skip
    policy = parse_policy(POLICY)
    result = scan_captures([cap.write(tmp_path / "c.pcap")], policy)
    report = build_day_report(result, policy, day=DAY, files=[], processing_seconds=0.1)
    (entry,) = report.alerts
    assert (entry.alert.rule_id, entry.alert.direction) == ("isolated-egress", "internal")
    page = render_html(report)
    assert "Traffic with an internet computer means someone connected the two" in page
    assert "sent nothing to outside addresses today" in page  # its timeline is empty
    (flow,) = entry.flows
    assert (flow.host, flow.host_port, flow.peer, flow.peer_port) == (ISO, 445, PC, 50000)
    assert (flow.bytes_out, flow.bytes_in) == (4_000_000, 200_000)


def test_ipv6_host_and_destination(tmp_path):
    # 60,000,000 bytes from fd00:8:10::44 to 2001:db8::1 at 03:00 local (off-hours).
    host, outside = "fd00:8:10::44", "2001:db8::1"
    policy = parse_policy(POLICY.replace('internal = ["10.0.0.0/8"]',
                                         'internal = ["10.0.0.0/8", "fd00::/8"]'))  # fmt: skip
    cap = Capture().transfer(host, outside, start=at("2026-02-04 03:00", ZONE), seconds=120,
                             bytes_out=60_000_000, bytes_in=300_000)  # fmt: skip
    result = scan_captures([cap.write(tmp_path / "c.pcap")], policy)
    report = build_day_report(result, policy, day=DAY, files=[], processing_seconds=0.1)
    (entry,) = report.alerts
    assert entry.alert.rule_id == "offhours-bulk-egress"
    assert entry.other_side == "[2001:db8::1]:443"
    page = render_html(report)
    (flow,) = table_rows(page.split('id="alert-1">')[1].split("</article>")[0])
    assert flow[2:7] == ["49152", "[2001:db8::1]:443", "tcp", "60.0 MB (60,000,000 B)",
                         "300.0 kB (300,000 B)"]  # fmt: skip
    assert [(h.label, h.bytes_out) for h in entry.hours if h.bytes_out] == [("03:00", 60_000_000)]


@needs_chromium
def test_the_console_check_sees_errors_and_refused_loads(tmp_path):
    # The harness itself: a page with a script error and a load the CSP refuses
    # must give console lines, or the tests above could not fail.
    canary = tmp_path / "canary.html"
    canary.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
        "<script>console.error('canary-error')</script>"
        '<img src="http://192.0.2.1/x.png"></body></html>',
        encoding="utf-8",
    )
    _, console = chromium_dom(canary, tmp_path / "profile")
    assert any("canary-error" in line for line in console)
    assert any("192.0.2.1/x.png" in line for line in console)


# -- alert lifecycle: the site's words, suppressed, new or recurring, links ---------------


def test_the_sites_own_words_replace_the_rules_why(day):
    """[report.why] words appear as "why it matters" for that rule, the rule's
    own words for the others."""
    policy, result, files = day
    words = "Our isolated lab must never reach the outside (memo 2026-7)."
    own = parse_policy(POLICY + f'\n[report.why]\nisolated-egress = "{words}"\n')
    page = render_html(build_day_report(result, own, day=DAY, files=files,
                                        processing_seconds=1.0))  # fmt: skip
    from detector.detect.rules import BY_ID

    found = re.findall(r"<dt>Why it matters</dt><dd>(.*?)</dd>", page)
    whys = [html_lib.unescape(w) for w in found]
    assert whys[0] == words  # the critical isolated-egress alert comes first
    assert whys[1] == BY_ID["offhours-bulk-egress"].why_it_matters
    assert BY_ID["isolated-egress"].why_it_matters not in whys


def test_suppressed_alerts_are_listed_with_their_reason_not_alerted(day):
    from detector.policy.suppress import split_suppressed

    policy, result, files = day
    own = parse_policy(
        POLICY
        + f"""
[[suppress]]
rule = "offhours-bulk-egress"
host = "10.8.40.0/24"
destination = "{OUT}"
until = 2026-02-04
reason = "night backup to the vendor, ticket 4711"
"""
    )
    kept, held = split_suppressed(result.alerts, own.suppressions, own.zone)
    assert [a.rule_id for a in held and [h.alert for h in held]] == ["offhours-bulk-egress"]
    report = build_day_report(dataclasses.replace(result, alerts=kept), own, day=DAY,
                              files=files, processing_seconds=1.0, suppressed=held)  # fmt: skip
    page = render_html(report)
    assert report.alerts_total == len(result.alerts) - 1
    rows = re.findall(r"<tr>(.*?)</tr>", section(page, "suppressed"), re.S)
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[1])]
    assert cells == ["high", "offhours-bulk-egress", ISO, f"{OUT}:443", "02:13–02:19",
                     "62.0 MB", "night backup to the vendor, ticket 4711", "2026-02-04"]  # fmt: skip
    assert "Suppressed by the policy (1)" in page


def test_a_suppression_holds_until_its_day_and_by_name_under_a_domain():
    """Hand-made alerts: the last day is included (local time), the next is not;
    a name matches itself and its subdomains, not a look-alike."""
    from detector.alerts.record import Alert
    from detector.policy.suppress import split_suppressed

    policy = parse_policy(
        POLICY
        + """
[[suppress]]
rule = "p2p"
host = "10.8.10.0/24"
destination = "example.net"
until = 2026-02-04
reason = "approved"
"""
    )
    # 2026-02-04 23:59:59 and 2026-02-05 00:00:00 in Taipei (UTC+8)
    last, after = 1770220799 * NS, 1770220800 * NS

    def alert(start: int, host: str = PC, name: str = "files.example.net") -> Alert:
        return Alert("p2p", "P2P", 3, start, start + NS, host, "x",
                     destination_ip=OUT, destination_domain=name)  # fmt: skip

    cases = [alert(last), alert(after), alert(last, host="10.8.11.1"),
             alert(last, name="example.net"), alert(last, name="badexample.net")]  # fmt: skip
    kept, held = split_suppressed(cases, policy.suppressions, policy.zone)
    assert [h.alert for h in held] == [cases[0], cases[3]]
    assert kept == [cases[1], cases[2], cases[4]]


def test_an_expired_suppression_warns():
    policy = parse_policy(
        POLICY
        + """
[[suppress]]
rule = "p2p"
host = "10.8.10.5"
until = 2020-01-31
reason = "trial"
"""
    )
    assert policy.warnings == (
        "policy.toml: suppress[0]: expired on 2020-01-31 (p2p for 10.8.10.5/32: trial): alerts "
        "after it are raised again; renew or remove it",
    )


def test_new_and_recurring_alerts_are_told_apart(day):
    policy, result, files = day
    first, second = result.alerts[:2]
    alerts = [dataclasses.replace(first, previously_seen="2026-02-02"), second]
    page = render_html(build_day_report(dataclasses.replace(result, alerts=alerts), policy,
                                        day=DAY, files=files, processing_seconds=1.0))  # fmt: skip
    items = [re.sub(r"<[^>]+>", "", li) for li in re.findall(r"<li>(.*?)</li>", page)]
    assert items[0].endswith("· recurring (last 2026-02-02)")
    assert items[1].endswith("· new")
    seen = re.findall(r"<dt>Seen before</dt><dd>(.*?)</dd>", page)
    assert seen == [
        "recurring: the same rule, host and other side alerted on 2026-02-02 (within 30 days)",
        "new: not alerted in the 30 days before (for this rule, host and other side)",
    ]


def test_day_pages_link_to_their_neighbours_and_are_relinked(day, tmp_path):
    from detector.report.html import relink

    alone = render_html(report_of(day))  # scan's page, no report directory: no links
    assert re.findall(r'<nav class="days">(.*?)</nav>', alone) == [""]
    page = render_html(report_of(day), dt.date(2026, 2, 3), None, index=True)
    nav = re.findall(r'<nav class="days">(.*?)</nav>', page)
    assert nav == ['<a rel="prev" href="egress-report-2026-02-03.html">← 2026-02-03</a> · '
                   '<a href="index.html">all days</a>']  # fmt: skip
    path = tmp_path / "egress-report-2026-02-04.html"
    path.write_text(page, encoding="utf-8")
    assert relink(path, dt.date(2026, 2, 3), dt.date(2026, 2, 5))
    again = path.read_text(encoding="utf-8")
    assert re.findall(r'href="([^"]+)"', re.search(r"<nav.*?</nav>", again).group(0)) == [
        "egress-report-2026-02-03.html", "index.html", "egress-report-2026-02-05.html"]  # fmt: skip
    assert again.replace(re.search(r"<nav.*?</nav>", again).group(0), "") == page.replace(
        re.search(r"<nav.*?</nav>", page).group(0), "")  # fmt: skip
    assert not relink(tmp_path / "missing.html", None, None)


def test_the_index_lists_thirty_days_with_counts_and_links():
    from detector.report.index import DayLine, render_index

    lines = [
        DayLine(dt.date(2026, 2, 4), 3, 1, 2, "egress-report-2026-02-04.html"),
        DayLine(dt.date(2026, 2, 2), 0, 0, 0, "egress-report-2026-02-02.html"),
        DayLine(dt.date(2025, 12, 1), 9, 9, 0, "egress-report-2025-12-01.html"),  # too old
    ]
    page = render_index("taipei-mission", lines)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)[1:]
    assert len(rows) == 30
    cells = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
             for r in rows]  # fmt: skip
    assert cells[0] == ["Wed 2026-02-04", "3", "1", "2", "egress-report-2026-02-04.html"]
    assert cells[1] == ["Tue 2026-02-03", "—", "—", "—", "no report"]
    assert cells[2] == ["Mon 2026-02-02", "0", "0", "0", "egress-report-2026-02-02.html"]
    assert cells[29][0] == "Tue 2026-01-06"
    assert "2025-12-01" not in page
    assert "The 30 days to 2026-02-04: 3 alert(s)." in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_an_alert_about_the_sensor_and_a_floods_target(day, monkeypatch):
    """A day under a flood: a sensor-flood alert has no host (the report ended
    in ValueError on its empty source.ip, and the nightly with it), and a
    host with more flows than the report reads (REPORT_FLOWS) says how to
    carve them instead of listing them."""
    from dataclasses import replace

    from detector.detect.rules.sensor import FLOOD
    from detector.report import day as day_module

    policy, result, files = day
    flood = FLOOD.alert(FLOOD.severity, result.alerts[0].start_ns, result.alerts[0].end_ns, "",
                        "a flood: 5 outside addresses", evidence={"folded_sources": 5})  # fmt: skip
    flooded = replace(result, alerts=[*result.alerts, flood])
    monkeypatch.setattr(day_module, "REPORT_FLOWS", 0)  # every host has too many
    report = build_day_report(flooded, policy, day=DAY, files=files, processing_seconds=1.0)
    (entry,) = [e for e in report.alerts if e.alert.rule_id == "sensor-flood"]
    assert (entry.host_role, entry.flows, entry.hours) == ("the sensor", (), ())
    page = render_html(report)
    assert "sensor-flood</span></h3>" in page and "<dt>Who</dt><dd>the sensor</dd>" in page
    upload = [e for e in report.alerts if e.alert.source_ip == ISO][0]
    assert upload.too_many_flows and upload.flows == ()
    assert "too many flows today to list here" in page
    monkeypatch.setattr(day_module, "REPORT_FLOWS", 1_000_000)
    again = build_day_report(flooded, policy, day=DAY, files=files, processing_seconds=1.0)
    upload = [e for e in again.alerts if e.alert.source_ip == ISO][0]
    assert not upload.too_many_flows and len(upload.flows) >= 1
