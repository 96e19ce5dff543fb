"""The Alert record, and how it is written as an ECS document.

Field names follow the Elastic Common Schema (ECS 8.x), so a SIEM ingests the
JSON lines without a mapping: ``event.*``, ``rule.*``, ``source.*``,
``destination.*``, ``network.*``, ``observer.*``. What ECS has no field for
lives under ``egress.*`` (the rule's evidence: thresholds, other destinations).

An alert never holds a full ID number: its text fields (``message``,
``destination_domain``, ``evidence`` at any depth) are masked
(:func:`detector.alerts.mask.mask_personal`) whenever they are set, when the
alert is made and when a rule adds to it later, so no writer has to remember.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .mask import Evidence, mask_personal

SEVERITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "critical"}
ALERT_RAISED = "alert-raised"  # ECS event.action of an alert's first document
ALERT_UPDATED = "alert-updated"  # … and of a later one with grown figures, same event.id


@dataclass
class Alert:
    """One finding: a rule (or the model) and one host, over one span of time.

    Consecutive windows of the same (rule, host, destination) are one alert;
    ``start_ns``/``end_ns`` are the first and last packet of what it describes.
    ``source`` is the site's host; ``destination`` the other side. An alert
    about the sensor itself has no host: ``source_ip`` is empty and the ECS
    document has no ``source`` (ECS consumers reject a ``source.ip`` that is
    not an address); the ``observer_*`` fields say which sensor it is.
    """

    rule_id: str
    rule_name: str
    severity: int  # 1 low … 4 critical
    start_ns: int
    end_ns: int
    source_ip: str
    message: str
    source_bytes: int = 0
    source_packets: int = 0
    source_port: int | None = None
    destination_ip: str | None = None
    destination_port: int | None = None
    destination_domain: str | None = None  # a name the scan saw for it (DNS, SNI, Host)
    destination_bytes: int = 0
    destination_packets: int = 0
    transport: str | None = None
    direction: str | None = None  # ECS network.direction: egress, internal, …
    community_id: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)  # → egress.*
    # The sensor itself, for alerts about the sensor (sensor-drops,
    # sensor-blind) that concern no one host: ECS observer.hostname and
    # observer.ingress.interface.name (a SPAN port sensor has only ingress).
    observer_hostname: str | None = None
    observer_interface: str | None = None
    # A live sensor writes an alert when first raised and again, with the same
    # event.id, when its figures grow (docs/live.md): event.action says which,
    # event.sequence counts them (0 when raised). None in a scan.
    event_id: str | None = None
    event_action: str | None = None  # ALERT_RAISED or ALERT_UPDATED
    event_sequence: int | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # Text from the traffic (a DNS name, a Host, an SNI, a payload excerpt)
        # enters an alert only through these fields: mask it on the way in.
        if name == "evidence":
            value = Evidence(value)
        elif name in _TEXT_FIELDS and isinstance(value, str):
            value = mask_personal(value)
        object.__setattr__(self, name, value)

    @property
    def sort_key(self) -> tuple[int, int, int, str]:
        """Worst first, then biggest, then earliest."""
        return (-self.severity, -self.source_bytes, self.start_ns, self.rule_id)


_TEXT_FIELDS = frozenset({"message", "destination_domain"})


def local_time(ts_ns: int, zone: ZoneInfo, *, digits: int = 3) -> str:
    """ISO 8601 with the site's UTC offset, e.g. 2026-02-04T02:13:40.518+08:00."""
    seconds, frac = divmod(int(ts_ns), 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).astimezone(zone)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def to_ecs(alert: Alert, zone: ZoneInfo, site_name: str) -> dict[str, Any]:
    """The alert as one ECS document (a dict ready for ``json.dumps``)."""
    doc: dict[str, Any] = {
        "@timestamp": local_time(alert.start_ns, zone),
        "event": {
            "kind": "alert",
            "category": ["network"],
            # A connection alert, or news about the sensor (event.type "info").
            "type": ["connection" if alert.source_ip else "info"],
            "start": local_time(alert.start_ns, zone),
            "end": local_time(alert.end_ns, zone),
            "duration": int(alert.end_ns - alert.start_ns),
            "severity": int(alert.severity),
        },
        "rule": {"id": alert.rule_id, "name": alert.rule_name},
    }
    if alert.event_id is not None:
        doc["event"]["id"] = alert.event_id
    if alert.event_action is not None:
        doc["event"]["action"] = alert.event_action
    if alert.event_sequence is not None:
        doc["event"]["sequence"] = int(alert.event_sequence)
    if alert.source_ip:
        doc["source"] = {
            "ip": alert.source_ip,
            "bytes": int(alert.source_bytes),
            "packets": int(alert.source_packets),
        }
        if alert.source_port is not None:
            doc["source"]["port"] = int(alert.source_port)
    if alert.destination_ip is not None:
        destination: dict[str, Any] = {"ip": alert.destination_ip}
        if alert.destination_port is not None:
            destination["port"] = int(alert.destination_port)
        if alert.destination_domain:
            destination["domain"] = alert.destination_domain
        destination["bytes"] = int(alert.destination_bytes)
        destination["packets"] = int(alert.destination_packets)
        doc["destination"] = destination
    network: dict[str, Any] = {}
    if alert.transport:
        network["transport"] = alert.transport
    if alert.direction:
        network["direction"] = alert.direction
    if alert.community_id:
        network["community_id"] = alert.community_id
    if network:
        doc["network"] = network
    observer: dict[str, Any] = {"name": site_name, "product": "egress-detector", "type": "ids"}
    if alert.observer_hostname:
        observer["hostname"] = alert.observer_hostname
    if alert.observer_interface:
        observer["ingress"] = {"interface": {"name": alert.observer_interface}}
    doc["observer"] = observer
    doc["message"] = alert.message
    evidence = {"severity_name": SEVERITY_NAMES.get(alert.severity, str(alert.severity))}
    evidence.update(alert.evidence)
    doc["egress"] = evidence
    return doc
