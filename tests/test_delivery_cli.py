"""--syslog tcp:// and tls://, --webhook and their options on the commands
that send alerts (live, nightly), end to end against loopback receivers:
every alert the command writes arrives once, in order, on each; a wrong CA is
one error line (exit 2); what a receiver that is down did not take goes first
on the next run; the token is never written; usage mistakes are said."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from test_live_stream import POLICY, incident, live
from test_nightly import nightly, site  # noqa: F401 - the nightly's module fixture
from test_syslog_stream import Collector, body, server_context
from test_webhook import TOKEN, Receiver
from tls_certs import issue, make_ca
from warm_cli import WarmCli


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmCli]:
    """live in forks of one process that imported it (tests/warm_cli.py), for the
    usage mistakes: what is checked is what the command says, not its start-up
    (the other live tests here start it for real)."""
    with WarmCli(("detector.pipelines.live",)) as cli:
        yield cli


def test_live_sends_every_alert_to_tcp_syslog_and_the_webhook(tmp_path):
    collector, receiver = Collector(), Receiver()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    try:
        with open(incident(tmp_path), "rb") as stream:
            proc = live("--syslog", f"tcp://127.0.0.1:{collector.port}", "--webhook",
                        receiver.url, "--webhook-token-file", str(token), "--spool-dir",
                        str(tmp_path / "spool"), stdin=stream)  # fmt: skip
            out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        docs = [json.loads(line) for line in out.splitlines()]
        assert len(docs) >= 3
        assert [body(m) for m in collector.wait_for(len(docs))] == docs
        assert receiver.wait_taken(len(docs)) == docs
    finally:
        collector.stop()
        receiver.stop()
    assert {h["Authorization"] for _, h, _ in receiver.attempts} == {f"Bearer {TOKEN}"}
    assert TOKEN not in err and "warning" not in err


def test_live_refuses_a_collector_the_ca_does_not_vouch_for_in_one_line(tmp_path):
    ca, other = make_ca(tmp_path, "Site CA"), make_ca(tmp_path, "Other CA")
    server = issue(ca, tmp_path, "collector", names=("localhost",))
    collector = Collector(server_context(server))
    try:
        proc = live("--syslog", f"tls://localhost:{collector.port}", "--syslog-ca",
                    str(other.cert), "-q", stdin=subprocess.DEVNULL)  # fmt: skip
        out, err = proc.communicate(timeout=300)
    finally:
        collector.stop()
    assert proc.returncode == 2 and out == ""
    assert err.splitlines() == [
        f"egress-detector: error: --syslog tls://localhost:{collector.port}: the server's "
        "certificate is refused: unable to get local issuer certificate (checked against the "
        f"CA in {other.cert})"
    ]


def test_usage_mistakes_are_said_before_anything_starts(tmp_path, warm):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    for args, said in [
        (["--webhook", "http://127.0.0.1:9/x"], "--webhook: give the spool with --spool-dir DIR"),
        (["--spool-dir", str(tmp_path)], "--spool-dir is for a webhook: give its URL"),
        (["--webhook-token-file", str(token)], "--webhook-token-file is for a webhook"),
        (["--syslog", "tcp://127.0.0.1:9", "--syslog-ca", "ca.pem"],
         "--syslog-ca, --syslog-cert and --syslog-key are for --syslog tls://"),
        (["--webhook-token", TOKEN], "--webhook-token: not on the command line"),
    ]:  # fmt: skip
        proc = warm.completed(["live", "-r", "-", "--policy", str(POLICY), "--format", "jsonl",
                               *args, "-q"], timeout=120)  # fmt: skip
        err = proc.stderr
        assert proc.returncode == 2 and said in err, (args, err)
        assert TOKEN not in err


def test_nightly_sends_new_alerts_and_the_next_run_delivers_what_waited(site, tmp_path):  # noqa: F811
    collector, receiver = Collector(), Receiver()
    receiver.mode = "fail"
    out = tmp_path / "out"
    out.mkdir()
    try:
        first = nightly(site, out, "--syslog", f"tcp://127.0.0.1:{collector.port}",
                        "--webhook", receiver.url)  # fmt: skip
        assert first.returncode == 1, first.stderr
        docs = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
        assert len(docs) >= 3
        assert [body(m) for m in collector.wait_for(len(docs))] == docs
        assert receiver.taken == []
        spool = f"{out / 'state.db'}.webhook-spool"
        assert (f"{len(docs)} alert(s) not delivered yet wait in the spool {spool}: the next run "
                "with it sends them first") in first.stderr  # fmt: skip
        receiver.mode = "ok"
        second = nightly(site, out, "--webhook", receiver.url)  # nothing new to do
        assert second.returncode == 0, second.stderr
        assert "0 new alert(s)" in second.stderr
        assert f"{len(docs)} alert(s) from an earlier run wait in the spool" in second.stderr
        assert receiver.wait_taken(len(docs)) == docs  # once each, in order
    finally:
        collector.stop()
        receiver.stop()


def test_scan_sends_its_alerts_to_tcp_syslog_and_the_webhook(tmp_path):
    """scan takes --syslog and --webhook too: the same ECS documents as its JSON
    lines, each once, on both."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    collector, receiver = Collector(), Receiver()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "detector", "scan", "-q", "--policy",
             str(root / "captures" / "sample-policy.toml"), "--format", "jsonl",
             "--syslog", f"tcp://127.0.0.1:{collector.port}", "--webhook", receiver.url,
             "--spool-dir", str(tmp_path / "spool"),
             str(root / "captures" / "sample-incident.pcap.gz")],
            capture_output=True, text=True, timeout=300, cwd=root,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        docs = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [d["rule"]["id"] for d in docs] == [
            "isolated-egress", "offhours-bulk-egress", "isolated-egress"]  # fmt: skip
        assert [body(m) for m in collector.wait_for(len(docs))] == docs
        assert receiver.wait_taken(len(docs)) == docs
    finally:
        collector.stop()
        receiver.stop()
    assert proc.stderr == ""
