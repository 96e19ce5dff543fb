"""The Alert record, and how it is written as an ECS document.

Field names follow the Elastic Common Schema (ECS 8.x), so a SIEM ingests the
JSON lines without a mapping: ``event.*``, ``rule.*``, ``source.*``,
``destination.*``, ``network.*``, ``observer.*``. What ECS has no field for
lives under ``egress.*`` (the rule's evidence: thresholds, other destinations).

An alert never holds a full ID number: its text fields (``text``, ``notes``,
``destination_domain``, ``destination_names``, ``evidence`` at any depth) are
masked (:func:`detector.alerts.mask.mask_personal`) when it is made, and an
alert is never changed after (a later finding makes a new one), so no writer
has to remember.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from .mask import mask_personal, mask_value

SEVERITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "critical"}
ALERT_RAISED = "alert-raised"  # ECS event.action of an alert's first document
ALERT_UPDATED = "alert-updated"  # … and of a later one with grown figures, same event.id


class Evidence(dict[str, Any]):
    """An alert's evidence (``egress.*``): ID numbers masked when it is made, and
    fixed from then on, like the alert. A later finding makes a new alert with
    more evidence (:meth:`Alert.with_evidence`); nothing edits one in place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__((mask_value(k), mask_value(v)) for k, v in dict(*args, **kwargs).items())

    def _fixed(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("an alert's evidence is fixed when it is made: use alert.with_evidence()")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _fixed  # type: ignore[assignment]
    __ior__ = _fixed  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Evidence, (dict(self),))


# Names shown beside the other side's address in a message ("… ({names})").
NAMES_SHOWN = 3


@dataclass(frozen=True)
class Alert:
    """One finding: a rule (or the model) and one host, over one span of time.

    Consecutive windows of the same (rule, host, destination) are one alert;
    ``start_ns``/``end_ns`` are the first and last packet of what it describes.
    ``source`` is the site's host; ``destination`` the other side. An alert
    about the sensor itself has no host: ``source_ip`` is empty and the ECS
    document has no ``source`` (ECS consumers reject a ``source.ip`` that is
    not an address); the ``observer_*`` fields say which sensor it is.

    An alert is a record, fixed when made: ``text`` is the detection's own
    sentence; what later steps learn about the same incident comes as new
    fields on a new alert (``notes``: the model's reason, the declared mail
    sizes; ``destination_names``: what the scan saw the other side called), and
    ``message`` is rendered from them, the same for every output. Text from the
    traffic (a DNS name, a Host, an SNI, a payload excerpt) is masked on the way
    in (:func:`detector.alerts.mask.mask_personal`), so no writer has to remember.
    """

    rule_id: str
    rule_name: str
    severity: int  # 1 low … 4 critical
    start_ns: int
    end_ns: int
    source_ip: str
    text: str  # the detection's own sentence (see ``message``)
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
    evidence: Mapping[str, Any] = field(default_factory=dict)  # → egress.*
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
    # Later findings about the same incident, rendered after ``text``, in order.
    notes: tuple[str, ...] = ()
    # What the other side is called, most seen first (shown beside its address).
    destination_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        masked = object.__setattr__  # the record is frozen; these are its own values
        masked(self, "text", mask_personal(self.text))
        if self.destination_domain is not None:
            masked(self, "destination_domain", mask_personal(self.destination_domain))
        masked(self, "notes", tuple(mask_personal(note) for note in self.notes))
        masked(self, "destination_names", tuple(map(mask_personal, self.destination_names)))
        if not isinstance(self.evidence, Evidence):
            masked(self, "evidence", Evidence(self.evidence))

    @property
    def message(self) -> str:
        """What every output says: the text, each note after it, and the other
        side's names beside its address ('203.0.113.140:443 (files.example.net)')."""
        message = "; ".join((self.text, *self.notes))
        names, ip = self.destination_names, self.destination_ip
        if names and ip:
            label = ", ".join(names[:NAMES_SHOWN]) + (" …" if len(names) > NAMES_SHOWN else "")
            with_port = f"{ip}:{self.destination_port}" if self.destination_port else None
            if with_port and with_port in message:
                message = message.replace(with_port, f"{with_port} ({label})", 1)
            elif ip in message:
                message = message.replace(ip, f"{ip} ({label})", 1)
        return message

    @property
    def sort_key(self) -> tuple[int, int, int, str]:
        """Worst first, then biggest, then earliest."""
        return (-self.severity, -self.source_bytes, self.start_ns, self.rule_id)

    def with_evidence(self, **more: Any) -> Alert:
        """This alert with more evidence (added after what it has)."""
        return replace(self, evidence={**self.evidence, **more})

    def with_note(self, note: str, **evidence: Any) -> Alert:
        """This alert with one more sentence about the same incident (and its evidence)."""
        return replace(self, notes=(*self.notes, note), evidence={**self.evidence, **evidence})


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
