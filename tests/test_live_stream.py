"""`egress-detector live -r -` as a remote sensor's pcap stream (no root): the
modelled incident of the rule tests, piped in; alerts equal a scan's, also
after a SIGHUP reload; --max-packets; a stream that is not pcap."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gen_traffic import Capture, at

from detector.pipelines.scan import scan_captures
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
    """(rule, ECS source, destination, destination port) of each alert: the
    source is the side that started the conversation (docs/alerts.md)."""
    from detector.alerts.record import to_ecs

    zone = load_policy(POLICY).zone
    lines = [json.dumps(to_ecs(a, zone, "site")) for a in alerts]
    return doc_keys(lines)


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
    scanned = scan_captures([pcap], load_policy(POLICY)).alerts
    expected = keys(scanned)
    assert doc_keys(out.splitlines()) == expected
    # The same incidents, the same event.id as the scan's (docs/alerts.md).
    raised = [json.loads(line) for line in out.splitlines()]
    assert sorted({d["event"]["id"] for d in raised}) == sorted(a.ecs_id for a in scanned)
    assert ("isolated-egress", ISO, OUT, 443) in expected
    assert ("isolated-egress", PC, ISO, 445) in expected  # the bridge: the PC reached ISO


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


MODEL_POLICY = """
[site]
name = "reload"
timezone = "Asia/Taipei"
[business_hours]
start = "08:30"
end = "17:30"
[networks]
internal = ["10.0.0.0/8"]
[rules.bulk-upload-new-destination]
min_bytes = 2_000_000
"""


def test_sighup_reloads_the_model_too_and_keeps_it_when_the_file_is_bad(tmp_path):
    """Model A's baseline knows the destination of a 3 MB upload, so
    bulk-upload-new-destination stays quiet under it; the file is replaced
    by model B (same baseline, no known destinations) and SIGHUP: the last
    analysis runs with B and raises the alert, "not in the model baseline".
    A damaged file on a second SIGHUP leaves B in place, said in one line."""
    from test_model import office

    from detector.detect.model import EgressModel, destinations_of, load_model, save_model

    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(MODEL_POLICY)
    policy = load_policy(policy_file)
    cap = Capture().transfer("10.8.10.3", OUT, start=at("2026-02-04 10:00", "Asia/Taipei"),
                             seconds=600, bytes_out=3_000_000)  # fmt: skip
    pcap = cap.write(tmp_path / "upload.pcap")
    scan = scan_captures([pcap], policy)
    assert [a.rule_id for a in scan.alerts] == ["bulk-upload-new-destination"]
    baseline = office(days=7)
    model_file, b_file = tmp_path / "site.model", tmp_path / "b.model"
    known = destinations_of(scan.traffic)
    save_model(EgressModel(n_estimators=20, random_state=1).fit(baseline, destinations=known),
               model_file, policy)  # fmt: skip
    save_model(EgressModel(n_estimators=20, random_state=1).fit(baseline), b_file, policy)
    under = {path: scan_captures([pcap], policy, model=load_model(path, policy)).alerts
             for path in (model_file, b_file)}  # fmt: skip
    assert "bulk-upload-new-destination" not in {a.rule_id for a in under[model_file]}
    assert "bulk-upload-new-destination" in {a.rule_id for a in under[b_file]}

    proc = subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "-r", "-", "--policy", str(policy_file),
         "--model", str(model_file), "--format", "jsonl", "--report-every", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        bufsize=0,  # unbuffered: select() sees every line not yet read
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    seen: list[bytes] = []

    def wait_for(text: bytes) -> None:
        deadline = time.monotonic() + 180  # the first run may compile the kernels
        while True:
            ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
            assert ready, f"{text!r} never came: {b''.join(seen)!r}"
            line = proc.stderr.readline()
            assert line, b"".join(seen)
            seen.append(line)
            if text in line:
                return

    try:
        _reload_model_mid_stream(proc, pcap, model_file, b_file, wait_for, seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out_bytes, err_bytes = proc.stdout.read(), proc.stderr.read()
    out, err = out_bytes.decode(), b"".join(seen).decode() + err_bytes.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    docs = [json.loads(line) for line in out.splitlines()]
    bulk = [d for d in docs if d["rule"]["id"] == "bulk-upload-new-destination"]
    assert len(bulk) == 1 and "(not in the model baseline)" in bulk[0]["message"], out
    assert bulk[0]["source"]["bytes"] == 3_000_000


def _reload_model_mid_stream(proc, pcap, model_file, b_file, wait_for, seen) -> None:
    wait_for(b"capturing on")
    proc.stdin.write(pcap.read_bytes())
    proc.stdin.flush()
    time.sleep(2.5)  # analysed under model A (every second): the destination is known
    model_file.write_bytes(b_file.read_bytes())
    proc.send_signal(signal.SIGHUP)
    wait_for(b"SIGHUP: model reloaded from")
    model_file.write_bytes(b"not a model")
    proc.send_signal(signal.SIGHUP)
    wait_for(b"SIGHUP: model not reloaded, the old one stays: model ")
    assert b"not an egress-detector model file" in seen[-1]
    proc.stdin.close()
    proc.wait(timeout=120)


def rfc5424(datagram: bytes) -> tuple[list[str], dict]:
    """Header fields and the JSON message of one RFC 5424 syslog datagram
    (PRI+VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA,
    then a UTF-8 BOM and the message: RFC 5424 section 6)."""
    header, bom, body = datagram.partition(b" \xef\xbb\xbf")
    assert bom, datagram[:200]
    fields = header.decode("ascii").split(" ")
    assert len(fields) == 7, fields
    return fields, json.loads(body.decode("utf-8"))


def test_alerts_go_to_a_local_syslog_socket_as_rfc5424(tmp_path):
    """--syslog with a Unix socket path (a local daemon's, as /dev/log is):
    the test binds the socket itself and reads every message."""
    import socket

    path = tmp_path / "log"
    collector = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    collector.bind(str(path))
    collector.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    collector.settimeout(5)
    try:
        with open(incident(tmp_path), "rb") as stream:
            proc = live("--syslog", str(path), stdin=stream)
            out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        docs = [json.loads(line) for line in out.splitlines()]
        messages = [rfc5424(collector.recv(65536)) for _ in docs]
        collector.setblocking(False)
        with pytest.raises(BlockingIOError):
            collector.recv(65536)  # one message per alert, no more
    finally:
        collector.close()
    assert [doc for _, doc in messages] == docs  # the same ECS documents, in order
    crit, err_, warning, notice = 2, 3, 4, 5  # RFC 5424 table 2
    severity = {4: crit, 3: err_, 2: warning, 1: notice}
    for fields, doc in messages:
        pri, version = fields[0][1:].split(">")
        assert int(pri) == 16 * 8 + severity[doc["event"]["severity"]]  # facility local0
        assert version == "1" and fields[1] == doc["@timestamp"]
        assert fields[3:] == ["egress-detector", str(proc.pid), doc["rule"]["id"], "-"]
    assert "isolated-egress" in {doc["rule"]["id"] for _, doc in messages}


def test_syslog_local_is_the_local_daemons_socket(tmp_path, monkeypatch):
    """``local`` writes to /dev/log (here a socket the test binds, put in its
    place); an absent socket is one clear line."""
    import socket

    from detector.alerts import stream as stream_mod
    from detector.alerts.record import Alert, to_ecs
    from detector.errors import DetectorError

    path = tmp_path / "dev-log"
    collector = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    collector.bind(str(path))
    collector.settimeout(5)
    monkeypatch.setattr(stream_mod, "SYSLOG_LOCAL", str(path))
    policy = load_policy(POLICY)
    alert = Alert("isolated-egress", "Isolated host talked out", 4, 10**18, 10**18 + 10**9,
                  ISO, "m", destination_ip=OUT)  # fmt: skip
    sender = stream_mod.SyslogSender("local")
    sender.send(alert, to_ecs(alert, policy.zone, policy.site_name))
    fields, doc = rfc5424(collector.recv(65536))
    sender.close()
    collector.close()
    assert fields[0] == "<130>1" and fields[5] == "isolated-egress"  # local0 * 8 + crit
    assert doc["source"]["ip"] == ISO
    monkeypatch.setattr(stream_mod, "SYSLOG_LOCAL", str(tmp_path / "absent"))
    with pytest.raises(DetectorError, match=r"^--syslog local: cannot reach the collector: "):
        stream_mod.SyslogSender("local")


def test_isolated_egress_is_alerted_at_once_not_at_the_windows_end(tmp_path):
    """An isolated host's first packet to the outside: the alert leaves while
    the stream is still open, with the window analysis 10 minutes away
    (--report-every 600). The latency from writing the packet to reading the
    alert is printed (the bar, 2 s, is measured in benchmarks/)."""
    night = at("2026-02-04 02:13", "Asia/Taipei")
    before = Capture().transfer(PC, "198.51.100.25", dport=443, start=night, seconds=5,
                                bytes_out=20_000).write(tmp_path / "before.pcap")  # fmt: skip
    upload = Capture().transfer(ISO, OUT, dport=443, start=night + 10 * 10**9, seconds=2,
                                bytes_out=30_000).write(tmp_path / "upload.pcap")  # fmt: skip
    proc = live("--report-every", "600", stdin=subprocess.PIPE, text=False)
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    seen: list[bytes] = []
    while b"capturing on" not in (line := proc.stderr.readline()):
        assert line, b"".join(seen)
        seen.append(line)
    proc.stdin.write(before.read_bytes())  # header and an allowlisted upload
    proc.stdin.flush()
    time.sleep(1)
    proc.stdin.write(upload.read_bytes()[24:])  # the isolated host's packets, no header
    proc.stdin.flush()
    written = time.monotonic()
    docs = []
    try:
        while not any(d["rule"]["id"] == "isolated-egress" for d in docs):
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no alert within 60 s while the stream is open"
            docs.append(json.loads(proc.stdout.readline()))
        latency = time.monotonic() - written
        print(f"isolated-egress alerted {latency:.2f} s after its packets were written")
        assert proc.poll() is None  # still running: the stream is open
    finally:
        proc.stdin.close()
        rest = proc.stdout.read().decode()
        proc.wait(timeout=120)
    alert = next(d for d in docs if d["rule"]["id"] == "isolated-egress")
    assert (alert["source"]["ip"], alert["destination"]["ip"]) == (ISO, OUT)
    assert alert["event"]["action"] == "alert-raised"
    # The end of the stream analyses again: the same incident, not a second one.
    later = [json.loads(x) for x in rest.splitlines()]
    assert all(d["event"]["id"] == alert["event"]["id"] for d in later
               if d["rule"]["id"] == "isolated-egress")  # fmt: skip
