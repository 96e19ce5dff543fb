"""`egress-detector live -r -` as a remote sensor's pcap stream (no root): the
modelled incident of the rule tests, piped in; alerts equal a scan's, also
after a SIGHUP reload; --max-packets; a stream that is not pcap."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from gen_traffic import Capture, at

from detector.detect.scan import scan_captures
from detector.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "captures" / "sample-policy.toml"
ISO, PC, OUT = "10.8.40.31", "10.8.10.44", "203.0.113.140"


def incident(tmp_path: Path) -> Path:
    night = at("2026-02-04 02:13", "Asia/Taipei")
    cap = Capture()
    cap.transfer(PC, ISO, dport=445, start=night - 600 * 10**9, seconds=60, bytes_out=200_000,
                 bytes_in=50_000)  # fmt: skip
    cap.transfer(ISO, OUT, dport=443, start=night, seconds=360, bytes_out=62_000_000,
                 bytes_in=1_000_000)  # fmt: skip
    cap.transfer("10.8.10.7", "198.51.100.25", dport=443, start=night, seconds=300,
                 bytes_out=30_000_000)  # fmt: skip
    return cap.write(tmp_path / "incident.pcap")


def keys(alerts):
    return sorted((a.rule_id, a.source_ip, a.destination_ip, a.destination_port) for a in alerts)


def doc_keys(lines):
    docs = [json.loads(line) for line in lines]
    return sorted(
        (d["rule"]["id"], d["source"]["ip"], d.get("destination", {}).get("ip"),
         d.get("destination", {}).get("port"))
        for d in docs if d["event"].get("action") != "alert-updated"  # raised, not updates
    )  # fmt: skip


def live(*args: str, stdin=None, text: bool = True) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "-r", "-", "--policy", str(POLICY),
         "--format", "jsonl", *args],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, cwd=ROOT,
    )  # fmt: skip


def test_a_piped_capture_raises_what_a_scan_raises(tmp_path):
    pcap = incident(tmp_path)
    with open(pcap, "rb") as stream:
        proc = live("--report-every", "1", stdin=stream)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # the end of the stream: exits as scan does
    expected = keys(scan_captures([pcap], load_policy(POLICY)).alerts)
    assert doc_keys(out.splitlines()) == expected
    assert ("isolated-egress", ISO, OUT, 443) in expected
    assert ("isolated-egress", ISO, PC, 49152) in expected  # the bridge (the PC's port)


def test_sighup_reloads_the_policy_and_the_stream_goes_on(tmp_path):
    pcap = incident(tmp_path).read_bytes()
    proc = live("--report-every", "1", stdin=subprocess.PIPE, text=False)
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    seen: list[bytes] = []
    while b"capturing on" not in (line := proc.stderr.readline()):
        assert line, b"".join(seen)
        seen.append(line)
    proc.stdin.write(pcap[: len(pcap) // 2])
    proc.stdin.flush()
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while b"policy reloaded" not in (line := proc.stderr.readline()):
        assert line and time.monotonic() < deadline, b"".join(seen)
        seen.append(line)
    proc.stdin.write(pcap[len(pcap) // 2 :])
    proc.stdin.close()
    out = proc.stdout.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode == 1
    assert ("isolated-egress", ISO, OUT, 443) in doc_keys(out.splitlines())


def test_max_packets_bounds_the_run(tmp_path):
    with open(incident(tmp_path), "rb") as stream:
        proc = live("--max-packets", "1000", stdin=stream)
        _out, err = proc.communicate(timeout=300)
    assert "1,000 packets in" in err, err


def test_a_stream_that_is_not_pcap_is_one_line(tmp_path):
    proc = live(stdin=subprocess.PIPE)
    _out, err = proc.communicate("hello, this is text\n", timeout=300)
    assert proc.returncode == 3, err
    assert "not a pcap or pcapng stream" in err and "Traceback" not in err


def test_a_stream_cut_short_or_empty_ends_with_one_error(tmp_path):
    data = incident(tmp_path).read_bytes()
    for given, message in ((data[:-7], "the last record is cut short"),
                           (b"", "ended before its pcap/pcapng header"),
                           (data[:10], "ended before its pcap/pcapng header")):  # fmt: skip
        proc = live(stdin=subprocess.PIPE, text=False)
        _out, err = proc.communicate(given, timeout=300)
        text = err.decode()
        assert message in text and "Traceback" not in text, text
        assert proc.returncode in (1, 3), text  # cut short after the incident: alerts first


def test_a_table_on_stdout_and_json_lines_to_a_file(tmp_path):
    out_file = tmp_path / "alerts.jsonl"
    with open(incident(tmp_path), "rb") as stream:
        proc = live("--format", "table", "--jsonl", str(out_file), stdin=stream)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    lines = out_file.read_text().splitlines()
    assert ("isolated-egress", ISO, OUT, 443) in doc_keys(lines)
    assert out.startswith("SEVERITY") and out.count("isolated-egress") == sum(
        '"isolated-egress"' in line for line in lines
    )
