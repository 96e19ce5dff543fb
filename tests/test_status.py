"""live --status: the page and /metrics of detector/status.py, served for real
on loopback, read by urllib, by prometheus_client's own parser and by headless
Chromium (no script, nothing from elsewhere, the style sheet applied)."""

from __future__ import annotations

import html as html_lib
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from detector.alerts.record import Alert
from detector.errors import DetectorError
from detector.status import CSP, Counters, StatusBoard, StatusServer, Talker, parse_address

ZONE = ZoneInfo("Asia/Taipei")
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def _alert(rule: str, host: str, text: str, severity: int = 4) -> Alert:
    return Alert(rule, rule, severity, 1_770_142_380_000_000_000, 1_770_142_740_000_000_000,
                 host, text, destination_ip="203.0.113.140", destination_port=443,
                 source_bytes=62_700_000)  # fmt: skip


@pytest.fixture()
def server():
    board = StatusBoard("sensor-1", "eth1", ZONE)
    server = StatusServer(board, "127.0.0.1:0").start()
    yield server
    server.close()


def _get(server: StatusServer, path: str) -> tuple[int, dict[str, str], str]:
    host, port = server.address[:2]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_metrics_are_the_boards_counters_exactly(server):
    board = server.board
    board.count(Counters(packets=123_457, packets_per_second=812.5, dropped=3, open_flows=42,
                         alerts=2))  # fmt: skip
    board.alerted([_alert("isolated-egress", "10.8.40.31", "a"),
                   _alert("offhours-bulk-egress", "10.8.40.31", "b", 3),
                   _alert("isolated-egress", "10.8.40.31", "a, grown")])  # fmt: skip
    code, headers, body = _get(server, "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    who = (("interface", "eth1"), ("sensor", "sensor-1"))
    assert samples[("egress_detector_packets_total", who)] == 123_457
    assert samples[("egress_detector_dropped_packets_total", who)] == 3
    assert samples[("egress_detector_open_flows", who)] == 42
    assert samples[("egress_detector_packets_per_second", who)] == 812.5
    by_rule = {
        dict(labels)["rule"]: value
        for (name, labels), value in samples.items()
        if name == "egress_detector_alerts_total"
    }
    assert by_rule == {"isolated-egress": 2, "offhours-bulk-egress": 1}


def test_page_shows_figures_and_escapes_what_came_from_traffic(server):
    board = server.board
    board.count(Counters(packets=9_876_543, packets_per_second=1500.0, dropped=0, open_flows=7,
                         alerts=1))  # fmt: skip
    board.analysed([Talker("10.8.40.31", 62_700_000, 1), Talker("10.8.1.20", 1_200, 3)])
    board.alerted([_alert("dns-tunnel", "10.8.1.20", f"names like {HOSTILE}")])
    code, headers, page = _get(server, "/")
    assert code == 200 and headers["Content-Security-Policy"] == CSP
    assert "script-src" not in CSP and "default-src 'none'" in CSP
    assert "<script" not in page and "<img" not in page
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", page))
    for figure in ("9,876,543", "1,500", "62.7 MB", "10.8.40.31", "dns-tunnel",
                   "2026-02-04 02:13:00 CST", HOSTILE):  # fmt: skip
        assert figure in text, figure
    assert '<meta http-equiv="refresh" content="5">' in page
    assert _get(server, "/other")[0] == 404


def test_bad_addresses_are_one_line_errors():
    for text in ("9090", "localhost:", ":9090", "127.0.0.1:70000", "127.0.0.1:http"):
        with pytest.raises(DetectorError, match="expected HOST:PORT"):
            parse_address(text)
    assert parse_address("[::1]:9090") == ("::1", 9090)
    board = StatusBoard("s", "eth1", ZONE)
    with StatusServer(board, "127.0.0.1:0").start() as _taken:  # a port in use
        port = _taken.address[1]
        with pytest.raises(DetectorError, match=f"--status 127.0.0.1:{port}: cannot listen"):
            StatusServer(board, f"127.0.0.1:{port}")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get "
                    "install chromium); CI installs it")  # fmt: skip
def test_page_in_chromium_runs_nothing_and_is_styled(server, tmp_path: Path):
    board = server.board
    board.count(Counters(packets=4_242, packets_per_second=10.0, dropped=0, open_flows=1,
                         alerts=1))  # fmt: skip
    board.alerted([_alert("isolated-egress", "10.8.40.31", HOSTILE)])
    host, port = server.address[:2]
    assert CHROMIUM is not None
    run = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--dump-dom", f"http://{host}:{port}/"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # nothing refused by the CSP: the style sheet's hash matches
    assert "<script" not in run.stdout and "4,242" in run.stdout
    assert HOSTILE in html_lib.unescape(run.stdout)


def test_live_status_shows_the_streamed_packets_exactly(tmp_path: Path):
    """live -r - --status: while the stream is open, /metrics and the page
    count exactly the packets written so far (tshark-independent: the
    capture's own record count), and the alerts raised appear on the page."""
    import json
    import socket
    import sys
    import time

    from gen_traffic import Capture, at

    root = Path(__file__).resolve().parents[1]
    night = at("2026-02-04 02:13", "Asia/Taipei")
    pcap = (
        Capture()
        .transfer(
            "10.8.40.31",
            "203.0.113.140",
            dport=443,
            start=night,
            seconds=60,
            bytes_out=3_000_000,
            bytes_in=100_000,
        )  # fmt: skip
        .write(tmp_path / "upload.pcap")
    ).read_bytes()
    records, at_byte = 0, 24  # count the records of the classic pcap by hand
    while at_byte < len(pcap):
        records += 1
        at_byte += 16 + int.from_bytes(pcap[at_byte + 8 : at_byte + 12], "little")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "-r", "-", "--policy",
         str(root / "captures" / "sample-policy.toml"), "--format", "jsonl",
         "--report-every", "1", "--status", f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    try:
        said = b""
        while b"status page on http://127.0.0.1:" not in said:
            assert (line := proc.stderr.readline()), said  # b"": it ended
            said += line
        proc.stdin.write(pcap)
        proc.stdin.flush()  # the stream stays open: the sensor is running
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        counted = None
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
                body = reply.read().decode()
            values = {
                s.name: s.value
                for family in text_string_to_metric_families(body)
                for s in family.samples
            }
            counted = values.get("egress_detector_packets_total")
            alerts = [k for k in values if k == "egress_detector_alerts_total"]
            if counted == records and alerts:
                break
            time.sleep(0.5)
        assert counted == records
        with urllib.request.urlopen(f"{url}/", timeout=10) as reply:
            page = html_lib.unescape(reply.read().decode())
        assert f"{records:,}" in page and "isolated-egress" in page and "10.8.40.31" in page
    finally:
        proc.stdin.close()
        out = proc.stdout.read().decode()
        proc.wait(timeout=120)
    assert proc.returncode == 1
    assert "isolated-egress" in {json.loads(line)["rule"]["id"] for line in out.splitlines()}
