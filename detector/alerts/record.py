"""The Alert record, and how it is written as an ECS document.

Field names follow the Elastic Common Schema (ECS 8.11, ``ecs.version``), so a
SIEM ingests the JSON lines without a mapping: ``event.*``, ``rule.*``,
``source.*``, ``destination.*``, ``network.*``, ``observer.*``, ``related.ip``,
``dns.question.name``. What ECS has no field for lives under ``egress.*`` (the
rule's evidence: thresholds, other destinations).

``event.id`` is the incident's, not the document's (:func:`incident_id`): a
hash of the rule, the host, the other side and the second of the first packet,
so a scan of the captures, a live sensor that saw the same packets and the
nightly give the same alert the same id, whatever windows each cut the traffic
into and however often live updated it (docs/live.md).

An alert never holds a full ID number: its text fields (``text``, ``notes``,
``destination_domain``, ``destination_names``, ``evidence`` at any depth) are
masked (:func:`detector.alerts.mask.mask_personal`) when it is made, and an
alert is never changed after (a later finding makes a new one), so no writer
has to remember.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from .mask import mask_personal, mask_value

SEVERITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "critical"}
ECS_VERSION = "8.11.0"  # the ECS release whose field types the documents follow
RULES_REFERENCE = "docs/rules.md"  # rule.reference: this file, at the rule's heading
# rule.description of each rule id: its declaration's one line (``catches``),
# recorded when the declaration is made (detect/declare.py; alerts cannot import
# the detections, which import alerts).
RULE_DESCRIPTIONS: dict[str, str] = {}
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
    # The last earlier local day (YYYY-MM-DD) the same rule, host and other side
    # alerted, within the policy's report.recurring_days: a recurring alert. None:
    # new (as far as the history given says; a scan without history says new).
    previously_seen: str | None = None

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

    @property
    def ecs_id(self) -> str:
        """ECS ``event.id``: the one a live sensor gave it, else its incident's
        (:func:`incident_id`), the same in every output."""
        return self.event_id or incident_id(
            self.rule_id, self.source_ip, self.destination_ip, self.start_ns
        )

    def with_evidence(self, **more: Any) -> Alert:
        """This alert with more evidence (added after what it has)."""
        return replace(self, evidence={**self.evidence, **more})

    def with_note(self, note: str, **evidence: Any) -> Alert:
        """This alert with one more sentence about the same incident (and its evidence)."""
        return replace(self, notes=(*self.notes, note), evidence={**self.evidence, **evidence})


def incident_id(rule_id: str, host: str, other_side: str | None, start_ns: int) -> str:
    """The ``event.id`` of an incident: the first 32 hex digits of the SHA-256 of
    ``rule|host|other side|first second`` (the other side empty when there is
    none; the first second is the first packet's UTC time in whole seconds).

    Whole seconds, because a live sensor stamps packets in nanoseconds and
    tcpdump's files in microseconds: both floor to the same second. The start,
    because it is what a live sensor knows first and keeps (a later update of
    the same incident keeps its id while its end and figures grow) and what a
    scan and the nightly find again in the files; the end, the figures and the
    message differ between a window's first sight and the whole incident."""
    text = f"{rule_id}|{host}|{other_side or ''}|{int(start_ns) // 1_000_000_000}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Observer:
    """The sensor that saw the traffic (ECS ``observer.hostname`` and
    ``observer.ingress.interface.name``): its name (the policy's
    ``site.sensor``, ``--sensor``, else the machine's host name for live and
    nightly) and the capture interface (live only)."""

    hostname: str | None = None
    interface: str | None = None


def initiator_is_host(alert: Alert) -> bool:
    """Whether the site's host started the conversation. Activity rows do not
    record who sent the first packet, so the ports say, as in the messages and
    the table (``detect/rules/common.py: service_port``): the host is the server
    when its port is the lower one (445 against an ephemeral 51682)."""
    if alert.source_port is None or alert.destination_port is None:
        return True
    return not alert.source_port < alert.destination_port


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


def to_ecs(
    alert: Alert,
    zone: ZoneInfo,
    site_name: str,
    *,
    created_ns: int | None = None,
    observer: Observer | None = None,
) -> dict[str, Any]:
    """The alert as one ECS document (a dict ready for ``json.dumps``).

    ``created_ns``: ``event.created``, when this output made the document (now
    when not given; the nightly gives its own, see docs/nightly.md).
    ``observer``: the sensor (the alert's own ``observer_*`` fields win).
    ``source`` is the side that started the conversation (:func:`initiator_is_host`):
    the site's host, unless the host was the server, when it is ``destination``.
    """
    created = time.time_ns() if created_ns is None else int(created_ns)
    event_id = alert.ecs_id
    doc: dict[str, Any] = {
        "@timestamp": local_time(alert.start_ns, zone),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["network"],
            # A connection alert, or news about the sensor (event.type "info").
            "type": ["connection" if alert.source_ip else "info"],
            "start": local_time(alert.start_ns, zone),
            "end": local_time(alert.end_ns, zone),
            "duration": int(alert.end_ns - alert.start_ns),
            "severity": int(alert.severity),
            "id": event_id,
            "created": local_time(created, zone),
        },
        "rule": {"id": alert.rule_id, "name": alert.rule_name},
    }
    description = RULE_DESCRIPTIONS.get(alert.rule_id)
    if description:
        doc["rule"]["description"] = description
    doc["rule"]["reference"] = f"{RULES_REFERENCE}#{alert.rule_id}"
    if alert.event_action is not None:
        doc["event"]["action"] = alert.event_action
    if alert.event_sequence is not None:
        doc["event"]["sequence"] = int(alert.event_sequence)
    name = alert.destination_domain or (
        alert.destination_names[0] if alert.destination_names else None
    )
    host = _endpoint(alert.source_ip or None, alert.source_port, None,
                     alert.source_bytes, alert.source_packets)  # fmt: skip
    other = _endpoint(alert.destination_ip, alert.destination_port, name,
                      alert.destination_bytes, alert.destination_packets)  # fmt: skip
    if host and alert.destination_ip is not None and not initiator_is_host(alert):
        # The other side started it: it is ECS source (its name goes with it).
        doc["source"], doc["destination"] = other, host
    else:
        if host:
            doc["source"] = host
        if other:
            doc["destination"] = other
    if name:
        doc["dns"] = {"question": {"name": name}}
    related = [ip for ip in (alert.source_ip, alert.destination_ip) if ip and _is_ip(ip)]
    if related:
        doc["related"] = {"ip": list(dict.fromkeys(related))}
    network: dict[str, Any] = {}
    if alert.transport:
        network["transport"] = alert.transport
    if alert.direction:
        network["direction"] = alert.direction
    if alert.community_id:
        network["community_id"] = alert.community_id
    if network:
        doc["network"] = network
    sensor = observer or Observer()
    doc["observer"] = {"name": site_name, "product": "egress-detector", "type": "ids"}
    hostname = alert.observer_hostname or sensor.hostname
    if hostname:
        doc["observer"]["hostname"] = hostname
    interface = alert.observer_interface or sensor.interface
    if interface:
        doc["observer"]["ingress"] = {"interface": {"name": interface}}
    doc["message"] = alert.message
    evidence: dict[str, Any] = {
        "severity_name": SEVERITY_NAMES.get(alert.severity, str(alert.severity)),
        # New, or the same rule, host and other side as an alert of the last
        # report.recurring_days days (docs/report.md).
        "recurrence": "recurring" if alert.previously_seen else "new",
    }
    if alert.previously_seen:
        evidence["previously_seen"] = alert.previously_seen
    evidence.update(alert.evidence)
    doc["egress"] = evidence
    return doc


def _endpoint(
    ip: str | None, port: int | None, domain: str | None, sent: int, packets: int
) -> dict[str, Any]:
    """One side as ECS source or destination: ip, port, domain, bytes and packets
    it sent (an empty dict for no side; a name alone when only that is known)."""
    if ip is None:
        return {"domain": domain} if domain else {}
    side: dict[str, Any] = {"ip": ip}
    if port is not None:
        side["port"] = int(port)
    if domain:
        side["domain"] = domain
    side["bytes"] = int(sent)
    side["packets"] = int(packets)
    return side


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
