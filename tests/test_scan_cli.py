"""`egress-detector scan` as an administrator runs it: the bundled incident,
formats, exit codes, policy errors, features out."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from golden.make_golden import CASES, command
from test_bad_input import pcap_bytes

from detector.features import FEATURE_NAMES

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample-incident.pcap.gz"
POLICY = ROOT / "captures" / "sample-policy.toml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_golden_alerts(tmp_path):
    """The alerts of each golden case, byte for byte (tests/golden/make_golden.py
    regenerates them on purpose)."""
    # event.created is when the scan wrote the file: compared as a time of this run.
    created = re.compile(r'"created": "([^"]*)"')
    for capture, policy, golden in CASES:
        out = tmp_path / golden.name
        before = datetime.now(UTC).replace(microsecond=0)
        proc = subprocess.run(command(capture, policy, out), capture_output=True, text=True)
        after = datetime.now(UTC)
        assert proc.returncode == 1, proc.stderr
        text = out.read_text()
        for stamp in created.findall(text):
            assert before <= datetime.fromisoformat(stamp) <= after, stamp
        assert created.sub("", text) == created.sub("", golden.read_text()), f"{golden.name} changed"


def test_sample_shows_the_modelled_incident():
    proc = run("scan", "--policy", str(POLICY), "--format", "jsonl", str(SAMPLE))
    assert proc.returncode == 1, proc.stderr
    alerts = [json.loads(line) for line in proc.stdout.splitlines()]
    worst = alerts[0]
    assert worst["rule"]["id"] == "isolated-egress" and worst["event"]["severity"] == 4
    assert worst["source"]["ip"] == "10.8.40.31"
    assert (worst["destination"]["ip"], worst["destination"]["port"]) == ("203.0.113.140", 443)
    # captures/make_sample.py: 62,736,589 bytes from 02:13:40 local
    assert worst["source"]["bytes"] == 62_736_589
    assert worst["@timestamp"].startswith("2026-02-04T02:13:40.") and worst["@timestamp"].endswith(
        "+08:00"
    )
    rules = {(a["rule"]["id"], a["source"]["ip"], a.get("destination", {}).get("ip"))
             for a in alerts}  # fmt: skip
    assert ("offhours-bulk-egress", "10.8.40.31", "203.0.113.140") in rules
    # The bridge: an internet-side PC reached the isolated host (ECS source:
    # who started the conversation).
    assert ("isolated-egress", "10.8.10.44", "10.8.40.31") in rules
    # The allowlisted nightly backup (about 31 MB to 198.51.100.25) raises nothing.
    assert not any(a.get("destination", {}).get("ip") == "198.51.100.25" for a in alerts)
    assert "alert(s) in" in proc.stderr


def test_table_csv_and_jsonl_carry_the_same_alerts(tmp_path):
    as_csv = tmp_path / "alerts.csv"
    assert (
        run("scan", "-q", "--policy", str(POLICY), "-o", str(as_csv), str(SAMPLE)).returncode == 1
    )
    rows = list(csv.DictReader(as_csv.open()))
    as_jsonl = run("scan", "-q", "--policy", str(POLICY), "--format", "jsonl", str(SAMPLE))
    docs = [json.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert [r["rule_id"] for r in rows] == [d["rule"]["id"] for d in docs]
    assert [int(r["source_bytes"]) for r in rows] == [d["source"]["bytes"] for d in docs]
    table = run("scan", "-q", "--policy", str(POLICY), str(SAMPLE)).stdout
    assert table.startswith("SEVERITY") and "CRITICAL isolated-egress" in table
    assert f"{len(docs)} alert(s) for taipei-mission" in table


def test_features_out(tmp_path):
    out = tmp_path / "hosts.parquet"
    proc = run("scan", "-q", "--policy", str(POLICY), "--features-out", str(out), str(SAMPLE))
    assert proc.returncode == 1
    features = pd.read_parquet(out)
    assert list(features.columns) == ["host", "window_start", "window_end", *FEATURE_NAMES]
    drop = features[features["host"] == "10.8.40.31"]
    assert drop["bytes_out"].sum() >= 62_736_589
    assert str(features["window_start"].dt.tz) == "Asia/Taipei"


def test_policy_errors_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "site.toml"
    bad.write_text('[networks]\nisolated = ["10.8.40.0/33"]\n')
    proc = run("scan", "--policy", str(bad), str(SAMPLE))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "networks.isolated" in lines[0] and "site.toml" in lines[0]
    assert "Traceback" not in proc.stderr
    missing = run("scan", "--policy", str(tmp_path / "nope.toml"), str(SAMPLE))
    assert missing.returncode == 2 and "nope.toml" in missing.stderr


def test_without_policy_warns_and_runs(tmp_path):
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(3))
    proc = run("scan", str(capture))
    assert proc.returncode in (0, 1)
    assert "warning:" in proc.stderr and "--policy" in proc.stderr


def test_unreadable_input_exits_3_and_bad_window_2(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture at all")
    proc = run("scan", "--policy", str(POLICY), str(junk))
    assert proc.returncode == 3 and "junk.pcap" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run("scan", "--window", "7", str(SAMPLE)).returncode == 2


def test_scan_help_teaches():
    text = run("scan", "--help").stdout
    for needle in ("examples:", "exit codes:", "--policy", "docs/policy.md", "jsonl", "ECS"):
        assert needle in text


def test_unwritable_outputs_fail_before_the_scan(tmp_path):
    """-o, --features-out (scan) and -o (train) that cannot be written are
    reported at once, each by its path, not after reading the captures."""
    missing = tmp_path / "no-such-dir"
    for args, bad in (
        (["scan", "--policy", str(POLICY), "-o", str(missing / "a.jsonl")], missing / "a.jsonl"),
        (["scan", "--policy", str(POLICY), "--features-out", str(missing / "f.parquet")],
         missing / "f.parquet"),
        (["train", "--policy", str(POLICY), "-o", str(missing / "m.model")], missing / "m.model"),
    ):  # fmt: skip
        proc = run(*args, str(tmp_path / "never-read.pcap"))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"egress-detector: error: cannot write {bad}: No such file or directory; "
            "choose a writable path"
        ]


def test_interrupted_scan_leaves_earlier_outputs(tmp_path, monkeypatch):
    """Interrupted while writing its outputs, scan leaves the alerts and
    features of an earlier run as they were, and no partial files."""
    import detector.alerts
    from detector.cli import main as cli

    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(3))
    alerts, features = tmp_path / "a.jsonl", tmp_path / "f.csv"
    alerts.write_text("earlier alerts\n")
    features.write_text("earlier features\n")

    def interrupted(alerts_, fmt, output, zone, site, **_ecs):
        with open(output, "w") as half_written:
            half_written.write('{"@timestamp": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(detector.alerts, "write_alerts", interrupted)
    args = ["scan", str(capture), "-q", "-o", str(alerts), "--features-out", str(features)]
    assert cli.main(args) == 130
    assert alerts.read_text() == "earlier alerts\n"
    assert features.read_text() == "earlier features\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "c.pcap", "f.csv"]
