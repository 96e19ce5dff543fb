"""Alerts as Elastic and Splunk expect them: every alert type's ECS document
against the field types of ECS 8.11 (tests/data/ecs-8.11.0-fields.tsv, copied
from the ECS repository), and one incident given the same ``event.id`` by a
scan, a live sensor and the nightly."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from gen_traffic import Capture, at
from rule_cases import CASES, FIRE

from detector.alerts.record import ECS_VERSION, Alert, Observer, incident_id, to_ecs
from detector.alerts.sinks import write_alerts
from detector.capture import read_packets
from detector.detect.rules import BY_ID, DETECTIONS
from detector.errors import DetectorError
from detector.nightly.run import NightlyOptions, run_nightly
from detector.pipelines.live import LiveDetector, LiveOptions
from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy

from corpus import CORPUS
from naive import addr_int, naive_packets

ROOT = Path(__file__).resolve().parent.parent
FIELDS = Path(__file__).resolve().parent / "data" / "ecs-8.11.0-fields.tsv"
NS = 1_000_000_000

# Allowed values, from the same release's generated/ecs/ecs_flat.yml
# (https://github.com/elastic/ecs/blob/v8.11.0/generated/ecs/ecs_flat.yml).
ALLOWED = {
    "event.kind": {"alert", "asset", "enrichment", "event", "metric", "state",
                   "pipeline_error", "signal"},
    # The types ECS expects with event.category "network".
    "event.type": {"access", "allowed", "connection", "denied", "end", "info", "protocol",
                   "start"},
    "event.category": {"network"},
    "event.outcome": {"failure", "success", "unknown"},
    # network.direction's expected values (its description in the same file).
    "network.direction": {"ingress", "egress", "inbound", "outbound", "internal", "external",
                          "unknown"},
}  # fmt: skip


def ecs_fields() -> dict[str, tuple[str, bool]]:
    """field → (type, is an array), from the copied table."""
    out = {}
    for line in FIELDS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("field\t"):
            continue
        name, kind, normalization = (line.split("\t") + [""])[:3]
        out[name] = (kind, normalization == "array")
    return out


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def type_problems(doc: dict[str, Any]) -> list[str]:
    """What in ``doc`` is not ECS as the table says (custom egress.* aside)."""
    fields = ecs_fields()
    wrong = []
    for name, value in flatten(doc).items():
        if name.startswith("egress."):
            continue  # ours: ECS has no field for a rule's evidence
        if name not in fields:
            wrong.append(f"{name}: not an ECS field")
            continue
        kind, array = fields[name]
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not array and kind != "keyword":
            wrong.append(f"{name}: a list, ECS has one {kind}")
        for item in values:
            if not _is(kind, item):
                wrong.append(f"{name}: {item!r} is not of ECS type {kind}")
            if name in ALLOWED and item not in ALLOWED[name]:
                wrong.append(f"{name}: {item!r} is not an allowed value")
    return wrong


def _is(kind: str, value: Any) -> bool:
    if kind in ("keyword", "match_only_text", "text"):
        return isinstance(value, str)
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if kind == "date":
        # ISO 8601 with an offset, as Elasticsearch's strict_date_optional_time reads it
        return (
            isinstance(value, str)
            and bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", value))
            and dt.datetime.fromisoformat(value).tzinfo is not None
        )
    return False


def alerts_of_every_type(tmp_path: Path) -> tuple[dict[str, Alert], dict[str, list[Path]]]:
    """One alert of each rule: from its first regression capture that fires it
    (with that capture), and made by the declaration for those no scan raises
    (the model's, the sensor's)."""
    found: dict[str, Alert] = {}
    captures: dict[str, list[Path]] = {}
    for rule_id, kinds in sorted(CASES.items()):
        for case in kinds.get(FIRE, []):
            paths = case.write(tmp_path / case.name)
            result = scan_captures(paths, parse_policy(case.policy))
            mine = [a for a in result.alerts if a.rule_id == rule_id]
            if mine:
                found[rule_id], captures[rule_id] = mine[0], paths
                break
    start = at("2026-02-04 02:00", "UTC")
    for detection in DETECTIONS:
        if detection.rule_id in found:
            continue
        if detection.stage == "sensor":
            found[detection.rule_id] = detection.alert(
                detection.severity, start, start + 60 * NS, "", "the sensor dropped packets",
                observer_hostname="span-1", observer_interface="eth1",
                evidence={"sensor_dropped_packets": 1200},
            )  # fmt: skip
        else:  # the model's: per host window, no other side
            found[detection.rule_id] = detection.alert(
                detection.severity, start, start + 600 * NS, "10.8.10.44", "unusual egress",
                source_bytes=4_000_000, source_packets=3000, evidence={"score": 0.71},
            )  # fmt: skip
    return found, captures


def sent_between(
    paths: list[Path], host: str, peer: str, start_ns: int, end_ns: int
) -> tuple[int, int]:
    """Wire bytes host → peer and peer → host in the minutes from start's to
    end, read by the naive decoder (tests/naive.py)."""
    first = start_ns - start_ns % (60 * NS)
    out = back = 0
    h, p = addr_int(host), addr_int(peer)
    for packet in naive_packets(paths):
        if not first <= packet.ts_ns < end_ns - end_ns % (60 * NS) + 60 * NS:
            continue
        if (packet.src, packet.dst) == (h, p):
            out += packet.wire_len
        elif (packet.src, packet.dst) == (p, h):
            back += packet.wire_len
    return out, back


def test_every_alert_type_is_a_valid_ecs_document(tmp_path):
    alerts, captures = alerts_of_every_type(tmp_path)
    assert set(alerts) == {d.rule_id for d in DETECTIONS}
    zone = parse_policy("[site]\ntimezone = 'Asia/Taipei'").zone
    headings = set(re.findall(r"^## `([^`]+)`", (ROOT / "docs" / "rules.md").read_text(), re.M))
    for rule_id, alert in sorted(alerts.items()):
        doc = to_ecs(alert, zone, "site", observer=Observer("span-1", "eth1"))
        assert type_problems(doc) == [], rule_id
        assert doc["ecs"]["version"] == ECS_VERSION
        assert re.fullmatch(r"[0-9a-f]{32}", doc["event"]["id"])
        assert doc["rule"]["description"] == BY_ID[rule_id].catches
        anchor = doc["rule"]["reference"].removeprefix("docs/rules.md#")
        assert anchor == rule_id and anchor in headings, rule_id
        if alert.source_ip:
            ips = [doc["source"]["ip"]] + ([doc["destination"]["ip"]] if alert.destination_ip
                                           else [])  # fmt: skip
            assert sorted(doc["related"]["ip"]) == sorted(ips)
        assert doc["observer"]["hostname"] == "span-1"
        assert doc["observer"]["ingress"]["interface"]["name"] == "eth1"
        # A payload rule's alert carries what was sent (no longer 0): the wire
        # bytes each way in the minutes it spans, as the naive decoder counts them.
        if BY_ID[rule_id].stage == "payload" and alert.destination_ip:
            out, back = sent_between(captures[rule_id], alert.source_ip, alert.destination_ip,
                                     alert.start_ns, alert.end_ns)  # fmt: skip
            assert out > 0, rule_id
            assert (alert.source_bytes, alert.destination_bytes) == (out, back), rule_id


def test_a_type_checker_that_cannot_fail_is_no_test():
    """The checker itself: each of these is wrong, and is found."""
    bad = {
        "@timestamp": "2026-02-04 02:00",
        "event": {"kind": "incident", "severity": "4", "duration": True},
        "source": {"ip": "10.8.40.300", "port": "443"},
        "related": {"ip": ["10.8.40.31", "not-an-ip"]},
        "destination": {"domian": "x"},
        "egress": {"anything": object()},
    }
    assert type_problems(bad) == [
        "@timestamp: '2026-02-04 02:00' is not of ECS type date",
        "event.kind: 'incident' is not an allowed value",
        "event.severity: '4' is not of ECS type long",
        "event.duration: True is not of ECS type long",
        "source.ip: '10.8.40.300' is not of ECS type ip",
        "source.port: '443' is not of ECS type long",
        "related.ip: 'not-an-ip' is not of ECS type ip",
        "destination.domian: not an ECS field",
    ]


def test_source_is_who_started_it_and_names_are_given():
    """A bridge: an internet-side PC (ephemeral port) reached the isolated host's
    RDP port. The alert is about the isolated host; in ECS the PC is source."""
    zone = parse_policy("[site]\ntimezone = 'UTC'").zone
    alert = BY_ID["isolated-egress"].alert(
        3, 10 * NS, 20 * NS, "10.8.40.31", "bridge", source_port=3389, destination_ip="10.8.10.44",
        destination_port=51682, source_bytes=1_594_810, source_packets=1884,
        destination_bytes=1_407_618, destination_packets=2278, transport="tcp",
    )  # fmt: skip
    doc = to_ecs(alert, zone, "site", created_ns=0)
    assert doc["source"] == {"ip": "10.8.10.44", "port": 51682, "bytes": 1_407_618,
                             "packets": 2278}  # fmt: skip
    assert doc["destination"] == {"ip": "10.8.40.31", "port": 3389, "bytes": 1_594_810,
                                  "packets": 1884}  # fmt: skip
    assert doc["related"] == {"ip": ["10.8.40.31", "10.8.10.44"]}
    assert doc["event"]["created"] == "1970-01-01T00:00:00.000+00:00"
    named = BY_ID["p2p"].alert(
        3, 10 * NS, 20 * NS, "10.8.10.5", "p2p", source_port=51000, destination_ip="203.0.113.9",
        destination_port=443, destination_names=("tracker.example.net", "other.example.net"),
    )  # fmt: skip
    doc = to_ecs(named, zone, "site")
    assert doc["destination"]["domain"] == "tracker.example.net"
    assert doc["dns"] == {"question": {"name": "tracker.example.net"}}
    assert doc["source"]["ip"] == "10.8.10.5"


def test_the_incident_id_is_its_definition():
    """sha256 of 'rule|host|other side|first second', first 32 hex digits: the
    nanoseconds and microseconds of one packet give one id."""
    import hashlib

    text = "isolated-egress|10.8.40.31|203.0.113.140|1770142420"
    want = hashlib.sha256(text.encode()).hexdigest()[:32]
    assert incident_id("isolated-egress", "10.8.40.31", "203.0.113.140",
                       1770142420_127_456_789) == want  # fmt: skip
    assert incident_id("isolated-egress", "10.8.40.31", "203.0.113.140",
                       1770142420_127_456_000) == want  # fmt: skip
    assert incident_id("sensor-drops", "", None, 1770142420 * NS) == hashlib.sha256(
        b"sensor-drops|||1770142420").hexdigest()[:32]  # fmt: skip


POLICY = """
[site]
name = "same-id"
timezone = "UTC"
[business_hours]
days = []
[networks]
internal = ["10.8.0.0/16"]
isolated = ["10.8.40.0/24"]
[rules.bulk-upload-new-destination]
min_bytes = 2_000_000
"""
ISO, OUT = "10.8.40.31", "203.0.113.140"


class _Clock:
    """A source with no packets of its own and the test's clock (test_live_engine)."""

    name = "hand"
    batch_rows = 1024
    finished = False
    now = 0

    def clock_ns(self) -> int:
        return self.now

    def read(self, batch, timeout, inspector=None) -> int:
        return 0

    def wait(self, timeout: float) -> None:
        pass

    def stats(self):
        from detector.capture.live import SourceStats

        return SourceStats()

    def close(self) -> None:
        pass


def test_one_incident_has_one_event_id_in_scan_live_and_nightly(tmp_path):
    """An upload from an isolated host that crosses two of live's 10-minute
    windows: live raises it in the first window and updates it in the second;
    a scan of the file and the nightly's day see it whole. All three give each
    rule's alert the same event.id, and every output of the scan carries it."""
    policy = parse_policy(POLICY)
    start = at("2026-02-04 02:07", "UTC")
    capture = Capture()
    capture.transfer(ISO, OUT, start=start, seconds=600, bytes_out=8_000_000, bytes_in=90_000)
    folder = tmp_path / "captures"
    folder.mkdir()
    path = capture.write(folder / "day.pcap")
    os.utime(path, ns=(at("2026-02-05 02:00", "UTC"),) * 2)

    scan = scan_captures([path], policy)
    by_rule = {a.rule_id: a.ecs_id for a in scan.alerts}
    assert sorted(by_rule) == ["bulk-upload-new-destination", "isolated-egress"]

    source = _Clock()
    written: list[Alert] = []
    live = LiveDetector([source], policy, LiveOptions(), emit=written.extend)
    worker = live.workers[0]
    first_window_end = at("2026-02-04 02:10", "UTC")
    for batch in read_packets([path]):
        worker.flows.ingest(batch)
        worker.activity.ingest(batch)
    source.now = first_window_end + NS
    live._analyse(final=False)
    live._analyse(final=True)
    assert {a.rule_id: a.event_id for a in live.emitted} == by_rule
    assert {a.event_id for a in live.updates} <= set(by_rule.values())

    options = NightlyOptions(captures=str(folder), state=str(tmp_path / "state.db"),
                             report_dir=str(tmp_path / "reports"),
                             alerts_path=str(tmp_path / "alerts.jsonl"), settle_seconds=0)  # fmt: skip
    run_nightly(options, policy, now_ns=at("2026-02-05 03:00", "UTC"))
    nightly = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert {d["rule"]["id"]: d["event"]["id"] for d in nightly} == by_rule
    # event.created of the nightly: the capture's mtime (the same on a redo).
    assert {d["event"]["created"] for d in nightly} == {"2026-02-05T02:00:00.000+00:00"}

    for fmt in ("jsonl", "csv", "table"):
        out = tmp_path / f"alerts.{fmt}"
        write_alerts(scan.alerts, fmt, str(out), policy.zone, policy.site_name)
        text = out.read_text()
        assert all(text.count(i) == 1 for i in by_rule.values()), fmt


@pytest.mark.parametrize("precision", ["ns", "us"])
def test_the_id_does_not_depend_on_timestamp_precision(precision):
    start = 1770170820_123_456_789
    stamp = start if precision == "ns" else start // 1000 * 1000
    assert incident_id("p2p", "10.8.10.5", "203.0.113.9", stamp) == incident_id(
        "p2p", "10.8.10.5", "203.0.113.9", start
    )


@pytest.mark.skipif(not (CORPUS / "pcaps").is_dir(),
                    reason=f"the shared capture corpus is not at {CORPUS}")  # fmt: skip
def test_alerts_from_real_captures_are_valid_ecs():
    """The corpus's captures (up to 1 MB each) under a policy that isolates all
    of RFC 1918, so most traffic alerts: every document is ECS, and the names
    real traffic brings reach destination.domain as text."""
    policy = parse_policy('[site]\ntimezone = "UTC"\n[business_hours]\ndays = []\n'
                          '[networks]\nisolated = ["10.0.0.0/8", "172.16.0.0/12", '
                          '"192.168.0.0/16"]\n')  # fmt: skip
    checked: dict[str, int] = {}
    for path in sorted((CORPUS / "pcaps").iterdir()):
        if path.stat().st_size > 1_000_000:
            continue
        try:
            alerts = scan_captures([path], policy).alerts
        except DetectorError:
            continue  # damaged on purpose (the corpus holds some): test_capture_corpus's
        for alert in alerts:
            doc = to_ecs(alert, policy.zone, "corpus", observer=Observer("span-1"))
            assert type_problems(doc) == [], (path.name, alert.rule_id)
            checked[alert.rule_id] = checked.get(alert.rule_id, 0) + 1
    assert {"isolated-egress", "p2p", "im-app"} <= set(checked), checked
