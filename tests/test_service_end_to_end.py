"""Issue 22's "Done when", in one run: the months-long sensor end to end.

On the bridge of tests/test_live.py (network namespaces; the isolated host's
bridge port mirrored to ``span1``, recorded by tcpdump too), a live sensor
runs as the example unit runs it (docs/systemd/egress-detector-live.service:
its ExecStart with this lab's interface and paths; an unprivileged user with
CAP_NET_RAW and CAP_NET_ADMIN only, no new privileges, the kernel cache in
its own directory; see tests/test_service_unit.py for the user nobody cannot
be) and sends its alerts to a TCP syslog collector, a TLS one (certificate
checked against the site's CA) and a webhook, all three inside the lab's
namespace. The scripted incident: the isolated host uploads 1 MB (raised at
once: isolated-egress); logrotate's way, the alert file is renamed and the
sensor sent SIGHUP; only now does the webhook come up (it was down: the
first alerts waited in the spool); the host uploads 2.5 MB more (3.5 MB
outside business hours: offhours-bulk-egress at 3 MB) and sends mail to a
new address (mail-egress, and isolated-egress for the new address); SIGTERM.

Checked: every document the sensor wrote (the rotated file, then the new
one) reached each of the three receivers exactly once, in the same order;
the early alerts came while the sensor ran (before SIGTERM); the packet
count on /metrics and the status page is tcpdump's record count exactly;
and each incident's event.id is the one a scan of tcpdump's capture and the
nightly run over it give. Root and ``ip netns`` are needed (CI runs as root).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import test_live as lab
from test_service_unit import (
    AS_ROOT,
    TWO_CAPS,
    UNIT,
    UNPRIVILEGED,
    nobody_can_run_this_python,
    unit_settings,
)
from tls_certs import issue, make_ca

from detector.nightly.run import NightlyOptions, run_nightly
from detector.pipelines.scan import scan_captures
from detector.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
TCP_PORT, TLS_PORT, WEBHOOK_PORT, STATUS_PORT = 6601, 6514, 8080, 9090

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)"),
    pytest.mark.skipif(
        shutil.which("ip") is None or shutil.which("setpriv") is None
        or shutil.which("tcpdump") is None,
        reason="needs `ip netns`, setpriv (util-linux) and tcpdump",
    ),
]  # fmt: skip

# A receiver in the lab's namespace (the sensor's collectors and webhook are on its
# loopback): the tests' own collector and webhook receiver (test_syslog_stream,
# test_webhook), writing each document they take to a file as it comes.
RECEIVER = r"""
import json, ssl, sys, time
sys.path.insert(0, sys.argv[1])
from test_syslog_stream import Collector, body
from test_webhook import Receiver
kind, port, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
if kind == "webhook":
    receiver = Receiver(port=port)
    def taken():
        with receiver.lock:
            return list(receiver.taken)
else:
    context = None
    if kind == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[5], sys.argv[6])
    collector = Collector(context, port=port)
    def taken():
        with collector.lock:
            return [body(m) for m in collector.messages]
print("ready", flush=True)
written = 0
with open(out, "a") as stream:
    while True:
        docs = taken()
        for doc in docs[written:]:
            stream.write(json.dumps(doc) + "\n")
        stream.flush()
        written = len(docs)
        time.sleep(0.05)
"""

PAGE = r"""
import sys, urllib.request
for path in ("/metrics", "/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{path}", timeout=10) as reply:
        sys.stdout.write(reply.read().decode() + "\0")
"""


def receiver(kind: str, port: int, out: Path, *tls: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        lab.in_ns(lab.MON, sys.executable, "-c", RECEIVER, str(ROOT / "tests"), kind, str(port),
                  str(out), *map(str, tls)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
    return proc


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines()[: text.count("\n")]]


def wait_until(check, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def pcap_records(path: Path) -> int:
    """Records of a classic pcap, counted by hand from its headers."""
    data = path.read_bytes()
    count, at = 0, 24
    while at + 16 <= len(data):
        count += 1
        at += 16 + int.from_bytes(data[at + 8 : at + 12], "little")
    return count


def status_figures() -> tuple[float, str]:
    """egress_detector_packets_total from /metrics, and the status page's text."""
    from prometheus_client.parser import text_string_to_metric_families

    got = subprocess.run(lab.in_ns(lab.MON, sys.executable, "-c", PAGE, str(STATUS_PORT)),
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    metrics, page, _ = got.stdout.split("\0")
    values = {s.name: s.value for family in text_string_to_metric_families(metrics)
              for s in family.samples}  # fmt: skip
    return values["egress_detector_packets_total"], page


def test_a_sensor_as_the_unit_runs_it_delivers_every_alert_once_everywhere():
    import html

    from detector import _jit

    home = Path(tempfile.mkdtemp(prefix="ed-e2e-"))  # the user's own (StateDirectory= etc.)
    procs: list[subprocess.Popen] = []
    with lab.bridge_lab():
        try:
            _run(home, procs, _jit.CACHE_DIR, html.unescape)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
            shutil.rmtree(home, ignore_errors=True)


def _run(home: Path, procs: list[subprocess.Popen], cache_dir: Path, unescape) -> None:
    logs, received, pki = home / "logs", home / "received", home / "pki"
    for folder in (logs, received):
        folder.mkdir()
    ca = make_ca(pki, "Site CA")
    server = issue(ca, pki, "collector", names=("localhost",), ips=("127.0.0.1",))
    policy = home / "site.toml"
    policy.write_text(lab.policy_text())
    cache = home / "cache"
    if cache_dir.is_dir():  # the user cannot write root's kernel cache: a copy of it
        shutil.copytree(cache_dir, cache / cache_dir.name)
    cache.mkdir(exist_ok=True)
    as_nobody = nobody_can_run_this_python()
    uid = 65534 if as_nobody else 0
    for path in [home, *home.rglob("*")]:
        os.chown(path, uid, uid)
    for path in (home, pki, ca.cert, policy):
        path.chmod(0o755 if path.is_dir() else 0o644)

    # The unit's command line, with this lab's interface and paths, and the collectors.
    argv = shlex.split(unit_settings(UNIT.read_text())["ExecStart"][0])[1:]
    argv[argv.index("-i") + 1] = "span1"
    argv[argv.index("--policy") + 1] = str(policy)
    argv[argv.index("-o") + 1] = str(logs / "alerts.jsonl")
    argv += ["--bpf", lab.FILTER, "--syslog", f"tcp://127.0.0.1:{TCP_PORT}",
             "--syslog", f"tls://localhost:{TLS_PORT}", "--syslog-ca", str(ca.cert),
             "--webhook", f"http://127.0.0.1:{WEBHOOK_PORT}/alerts", "--spool-dir",
             str(home / "spool"), "--status", f"127.0.0.1:{STATUS_PORT}"]  # fmt: skip

    tcp = receiver("tcp", TCP_PORT, received / "tcp.jsonl")
    tls = receiver("tls", TLS_PORT, received / "tls.jsonl", server.cert, server.key)
    procs += [tcp, tls]
    pcap = home / "mirror.pcap"
    tcpdump = subprocess.Popen(
        lab.in_ns(lab.MON, "tcpdump", "-i", "span1", "-n", "-U", "-s", "0", "-B", "65536",
                  "--time-stamp-precision", "nano", "-w", str(pcap), *lab.FILTER.split()),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    procs.append(tcpdump)
    sensor = subprocess.Popen(
        [*lab.in_ns(lab.MON, "setpriv", *(UNPRIVILEGED if as_nobody else AS_ROOT),
                    f"--inh-caps={TWO_CAPS}", f"--ambient-caps={TWO_CAPS}",
                    f"--bounding-set={TWO_CAPS}", sys.executable, "-m", "detector", *argv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "EGRESS_DETECTOR_CACHE_DIR": str(cache), "HOME": "/nonexistent"},
    )  # fmt: skip
    procs.append(sensor)
    lab.wait_for(tcpdump, "listening on")
    lab.wait_for(sensor, "capturing on")
    status = Path(f"/proc/{sensor.pid}/status").read_text()
    assert f"\nUid:\t{uid}\t" in status and "\nCapEff:\t0000000000003000\n" in status, status

    alerts, rotated = logs / "alerts.jsonl", logs / "alerts.jsonl-1"
    # 1. The isolated host's first upload: raised at once, while the webhook is down.
    lab.transfer(443, [1_000_000])
    wait_until(lambda: any(d["rule"]["id"] == "isolated-egress" for d in lines(alerts)),
               "the isolated host's first upload alerted")  # fmt: skip
    # 2. logrotate: renamed (the sensor keeps writing to it until SIGHUP), then SIGHUP.
    alerts.rename(rotated)
    sensor.send_signal(signal.SIGHUP)
    lab.wait_for(sensor, "SIGHUP: reopened")
    # 3. The webhook comes up: what waited in the spool goes first.
    webhook = receiver("webhook", WEBHOOK_PORT, received / "webhook.jsonl")
    procs.append(webhook)
    # 4. The upload goes on past the off-hours threshold; mail to a new address.
    lab.transfer(443, [2_500_000])
    lab.transfer(587, [5_000], to=(lab.MORE_OUT[0],))
    wanted = {"isolated-egress", "offhours-bulk-egress", "mail-egress"}
    wait_until(lambda: wanted <= {d["rule"]["id"] for d in lines(rotated) + lines(alerts)},
               "the incident's alerts while the sensor runs")  # fmt: skip
    early = lines(rotated) + lines(alerts)
    # 5. What the sensor has seen, on /metrics and its page: tcpdump's count exactly.
    records = 0

    def counted_all() -> bool:
        nonlocal records
        records = pcap_records(pcap)
        return status_figures()[0] == records

    wait_until(counted_all, "/metrics counting tcpdump's packets", 20)
    _, page = status_figures()
    assert f"{records:,}" in unescape(page) and "isolated-egress" in page
    # 6. Stopped as systemd stops it.
    sensor.send_signal(signal.SIGTERM)
    _out, err = sensor.communicate(timeout=120)
    assert sensor.returncode == 0, err
    tcpdump.send_signal(signal.SIGINT)
    tcpdump.wait(timeout=30)

    written = lines(rotated) + lines(alerts)
    assert lines(rotated) and lines(alerts)  # alerts on both sides of the rotation
    assert written[: len(early)] == early
    keys = [(d["event"]["id"], d["event"]["sequence"]) for d in written]
    assert len(set(keys)) == len(keys)  # each document once
    for name in ("tcp", "tls", "webhook"):
        path = received / f"{name}.jsonl"
        wait_until(lambda p=path: len(lines(p)) >= len(written), f"{name} receiving all", 30)
        time.sleep(0.2)  # and nothing more
        assert lines(path) == written, name
    print(f"{len(written)} documents ({len(lines(rotated))} before the rotation) at each "
          f"receiver; {records:,} packets; the sensor as uid {uid}")  # fmt: skip
    spooled = lines(received / "webhook.jsonl")[: len(lines(rotated))]
    assert spooled == lines(rotated)  # what waited while the webhook was down came first

    # The same incidents from a scan of tcpdump's capture and from the nightly.
    raised = {(d["rule"]["id"], d["source"]["ip"], d.get("destination", {}).get("ip")): d["event"]["id"]
              for d in written if d["event"]["action"] == "alert-raised"}  # fmt: skip
    # The lab's isolated host reaches outside over an on-link route, so it also
    # asks in ARP for outside addresses: arp-outside-segment (issue 20, item 9).
    assert {rule for rule, _, _ in raised} == wanted | {"arp-outside-segment"}
    site = load_policy(policy)
    scan = scan_captures([pcap], site)
    by_scan = {(a.rule_id, a.source_ip, a.destination_ip): a.ecs_id for a in scan.alerts}
    assert {key: by_scan.get(key) for key in raised} == raised
    folder = home / "captures"
    folder.mkdir()
    shutil.copy(pcap, folder / "mirror.pcap")
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    now_ns = int(dt.datetime(tomorrow.year, tomorrow.month, tomorrow.day, 3,
                             tzinfo=dt.UTC).timestamp()) * 10**9  # fmt: skip
    os.utime(folder / "mirror.pcap", ns=(now_ns - 3600 * 10**9,) * 2)
    options = NightlyOptions(captures=str(folder), state=str(home / "state.db"),
                             report_dir=str(home / "reports"),
                             alerts_path=str(home / "nightly.jsonl"), settle_seconds=0)  # fmt: skip
    run_nightly(options, site, now_ns=now_ns)
    nightly = {(d["rule"]["id"], d["source"]["ip"], d.get("destination", {}).get("ip")): d["event"]["id"]
               for d in lines(home / "nightly.jsonl")}  # fmt: skip
    assert {key: nightly.get(key) for key in raised} == raised
