"""How a detection is declared: one ``Detection`` per rule, in one module each.

A declaration holds everything about its rule: the id alerts, SIEM searches
and policy files use; the title alerts carry as ``rule.name``; the default
severity; each setting a site may change under ``[rules.<id>]`` with its kind,
default and meaning; why it matters (the words the daily report prints); what
it catches and its known false positives (the words of docs/rules.md); and the
check itself. The policy reader validates ``[rules.<id>]`` from the settings
declared here, docs/rules.md and the rule settings of docs/policy.md are
generated from the declarations (``python -m detector.detect.docs``), and the
scan runs the checks in catalogue order (``detector/detect/rules/__init__.py``).

Like a Zeek notice or a Sigma rule, but executable and typed: a setting's kind
both checks the policy's value and documents it, so the two cannot drift.

This module imports the standard library, the alert's severity names and the
units only: the policy reader uses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from ..alerts.record import RULE_DESCRIPTIONS, SEVERITY_NAMES, Alert
from ..units import HOUR_NS, MINUTE_NS

if TYPE_CHECKING:
    from ..networks import NetworkSet
    from .context import ScanContext
    from .packets import PacketContext


_INT64_MAX = (1 << 63) - 1  # TOML integers are 64-bit; rules compute in int64
MINUTES_PER_YEAR = 365 * 1440  # the longest span a rule may be given
HOURS_PER_YEAR = 365 * 24
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"  # RFC 1035 labels (plus "_" as in SRV)
DOMAIN_PATTERN = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")


class Reader(Protocol):
    """What a setting's kind needs from the policy reader (detector/policy/reader.py):
    each method checks one value and fails with the file and key path."""

    def fail(self, path: str, message: str) -> NoReturn: ...
    def boolean(self, path: str, value: object) -> bool: ...
    def severity(self, path: str, value: object) -> int: ...
    def integer(
        self, path: str, value: object, minimum: int, what: str, maximum: int = _INT64_MAX
    ) -> int: ...
    def string(self, path: str, value: object) -> str: ...
    def array(self, path: str, value: object) -> list[Any]: ...
    def time_of_day(self, path: str, value: object, end: bool) -> int: ...
    def networks(self, path: str, value: object) -> NetworkSet: ...


# -- kinds of setting ----------------------------------------------------------------


class Kind:
    """What values a setting takes: ``read`` checks and normalises one from the
    policy file; ``type_name`` and ``shown`` write it in the docs."""

    type_name = ""

    def read(self, reader: Reader, path: str, value: object) -> Any:
        raise NotImplementedError

    def shown(self, value: Any) -> str:
        """A default as written in TOML, for the docs (lists: detect/docs.py)."""
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, int):
            return f"`{value:_}`" if value >= 10_000 else f"`{value}`"
        return f'`"{value}"`'


class Boolean(Kind):
    type_name = "boolean"

    def read(self, reader: Reader, path: str, value: object) -> bool:
        return reader.boolean(path, value)


class Severity(Kind):
    type_name = "severity"

    def read(self, reader: Reader, path: str, value: object) -> int:
        return reader.severity(path, value)

    def shown(self, value: Any) -> str:
        return f'`"{SEVERITY_NAMES[int(value)]}"`'


@dataclass(frozen=True)
class Integer(Kind):
    """An integer from ``minimum`` to ``maximum``; ``why`` says the range in words."""

    minimum: int
    why: str
    maximum: int = _INT64_MAX
    type_name: str = "integer"

    def read(self, reader: Reader, path: str, value: object) -> int:
        return reader.integer(path, value, self.minimum, self.why, self.maximum)


BYTES = Integer(0, "bytes cannot be negative")
COUNT = Integer(1, "must be at least 1")
MINUTES = Integer(1, "must be at least 1", MINUTES_PER_YEAR)
HOURS = Integer(1, "must be at least 1", HOURS_PER_YEAR)
PERCENT = Integer(0, "a percentage, 0–100", 100, "integer (percent)")


class Networks(Kind):
    type_name = "array of networks"

    def read(self, reader: Reader, path: str, value: object) -> tuple[str, ...]:
        return tuple(reader.networks(path, value).canonical())


def _names(
    reader: Reader, path: str, value: object, check: Callable[[str, str, object], None]
) -> tuple[str, ...]:
    names: dict[str, None] = {}  # in order; a set for the look-ups (lists may be long)
    for index, entry in enumerate(reader.array(path, value)):
        entry_path = f"{path}[{index}]"
        name = reader.string(entry_path, entry).strip().lower().rstrip(".")
        check(entry_path, name, entry)
        if name in names:
            reader.fail(entry_path, f"{name} is listed twice")
        names[name] = None
    return tuple(names)


class Domains(Kind):
    type_name = "array of domain names"

    def read(self, reader: Reader, path: str, value: object) -> tuple[str, ...]:
        def check(entry_path: str, name: str, entry: object) -> None:
            if not DOMAIN_PATTERN.fullmatch(name):
                reader.fail(entry_path, f"{entry!r} is not a domain name")

        return _names(reader, path, value, check)


@dataclass(frozen=True)
class Choices(Kind):
    """Names from a list the detector ships (``known`` reads it when needed)."""

    known: Callable[[], tuple[str, ...]]
    what: str = "name"
    type_name: str = "array of names"

    def read(self, reader: Reader, path: str, value: object) -> tuple[str, ...]:
        def check(entry_path: str, name: str, entry: object) -> None:
            known = self.known()
            if name not in known:
                reader.fail(entry_path, f"unknown {self.what} {name!r} (known: {', '.join(known)})")

        return _names(reader, path, value, check)


@dataclass(frozen=True)
class TimeOfDay(Kind):
    """A local time "HH:MM"; an ``end`` may be "24:00"."""

    end: bool = False
    type_name: str = 'string `"HH:MM"`'

    def read(self, reader: Reader, path: str, value: object) -> str:
        minutes = reader.time_of_day(path, value, end=self.end)
        return f"{minutes // 60:02d}:{minutes % 60:02d}"


class Ports(Kind):
    type_name = "array of ports"

    def read(self, reader: Reader, path: str, value: object) -> tuple[int, ...]:
        ports: set[int] = set()
        for index, port in enumerate(reader.array(path, value)):
            port_path = f"{path}[{index}]"
            number = reader.integer(port_path, port, 1, "ports are 1–65535")
            if number > 65_535:
                reader.fail(port_path, f"{number} is too large (ports are 1–65535)")
            if number in ports:
                reader.fail(port_path, f"{number} is listed twice")
            ports.add(number)
        return tuple(sorted(ports))


# -- settings and detections -----------------------------------------------------------


# Beyond this many destinations for one (rule, host), the rest are summed into
# one more alert: a host sweeping the internet must not bury the console.
MAX_ALERTS_PER_HOST = 20


@dataclass(frozen=True)
class Setting:
    """One key of ``[rules.<id>]``: its kind, default and what it means."""

    key: str
    kind: Kind
    default: Any
    meaning: str


ENABLED = Setting("enabled", Boolean(), True, "`false` turns the rule off.")

# Where a detection runs in a scan: over per-minute host traffic, after the
# model (payload facts, names, flow records), inside the model, or about the
# sensor itself (live capture only).
TRAFFIC, PAYLOAD, MODEL, SENSOR = "traffic", "payload", "model", "sensor"


# A check: the scan's context and the rule with the site's settings -> its alerts.
Check = Callable[["ScanContext", "Rule"], list[Alert]]


@dataclass(frozen=True)
class Detection:
    """Everything about one rule. ``check`` takes the scan's context and the
    rule with the site's settings (:class:`Rule`) and returns its alerts
    (attached with ``@DETECTION.checks(over=...)``, which sets the stage
    too); detections with ``stage`` MODEL or SENSOR are raised by the model
    and the live sensor, not by a check."""

    rule_id: str
    title: str  # rule.name in every alert
    severity: int  # the default, 1 low … 4 critical
    catches: str  # one line for the rule tables (README, docs/rules.md)
    why_it_matters: str  # for the administrator woken at 3 a.m. (the daily report)
    description: str  # docs/rules.md: how it decides, in full (Markdown)
    false_positives: str = ""  # docs/rules.md: what fires it without an incident
    settings: tuple[Setting, ...] = ()  # the rule's own keys (enabled and severity are implied)
    check: Check | None = None
    stage: str = TRAFFIC
    in_policy: bool = True  # False: no [rules.<id>] table (the model's and the sensor's)
    severity_shown: str = ""  # the rule table's words when one severity does not say it all
    severity_meaning: str = ""  # docs/policy.md: what `severity` applies to, if not everything
    policy_example: str = ""  # docs/policy.md: a TOML example for [rules.<id>]
    # Cross-key checks of the parsed settings (e.g. a night must have a length).
    validate: Callable[[Reader, str, Mapping[str, Any]], None] | None = None
    # "Why it matters" for alerts of one network.direction (isolated-egress inside: a bridge).
    why_by_direction: Mapping[str, str] = field(default_factory=dict)
    # A live sensor's look at each batch of packets it counts, for a rule whose alert
    # must not wait for the window's end (attached with ``@DETECTION.watches``;
    # detector/detect/packets.py): it returns sightings, tuples with the host's
    # (hi, lo) first, and a new one asks for an analysis of that host at once.
    on_packets: Callable[[PacketContext], Iterable[tuple[Any, ...]]] | None = None
    # What tells two of this rule's incidents of one host apart besides time, so
    # that a live sensor updates the alert it raised rather than raising another:
    # by default the other side (destination.ip); for a rule whose other side is
    # the busiest of several, which can change as the incident goes on, less.
    incident: Callable[[Alert], Hashable] | None = None
    # At most MAX_ALERTS_PER_HOST alerts of one host, the rest summed in one more
    # (detect/rules/common.py): a host sweeping the internet must not bury the
    # console (set with ``checks``, by the rules that alert per destination).
    capped_per_host: bool = False

    def __post_init__(self) -> None:
        # ECS rule.description of this rule's alerts, in every output (alerts/record.py).
        RULE_DESCRIPTIONS[self.rule_id] = self.catches

    def checks(self, over: str, capped_per_host: bool = False) -> Callable[[Check], Check]:
        """Decorator: the function below is this detection's check, run ``over``
        host traffic (TRAFFIC) or payload facts, names and flow records (PAYLOAD);
        ``capped_per_host``: its alerts are capped per host (``capped_per_host``
        below). A rule module declares what the rule is first, how it decides below."""
        if over not in (TRAFFIC, PAYLOAD):
            raise ValueError(f"{self.rule_id}: a check runs over TRAFFIC or PAYLOAD, not {over!r}")

        def attach(function: Check) -> Check:
            # Once, at import, before the catalogue reads it: still one record per rule.
            object.__setattr__(self, "check", function)
            object.__setattr__(self, "stage", over)
            object.__setattr__(self, "capped_per_host", capped_per_host)
            return function

        return attach

    def watches(
        self, function: Callable[[PacketContext], Iterable[tuple[Any, ...]]]
    ) -> Callable[[PacketContext], Iterable[tuple[Any, ...]]]:
        """Decorator: the function below is this detection's look at each batch of
        packets in a live sensor (``on_packets``, detector/detect/packets.py)."""
        object.__setattr__(self, "on_packets", function)  # once, at import, as ``checks``
        return function

    def run(self, ctx: ScanContext) -> list[Alert]:
        """This rule's alerts over ``ctx`` with the site's settings for it (none
        when the site turned it off, or it is raised elsewhere than by a check)."""
        settings = ctx.policy.rule(self.rule_id)
        if self.check is None or not settings.enabled:
            return []
        alerts = self.check(ctx, Rule(self, settings))
        if self.capped_per_host:
            alerts = limit_per_host(alerts, self)
        return alerts

    def incident_key(self, alert: Alert) -> Hashable:
        """Which incident of its host ``alert`` belongs to (``incident``)."""
        if self.incident is None:
            return alert.destination_ip
        return self.incident(alert)

    def defaults(self) -> dict[str, Any]:
        """Every setting's default, ``enabled`` and ``severity`` first, in declared order."""
        return {
            "enabled": True,
            "severity": self.severity,
            **{setting.key: setting.default for setting in self.settings},
        }

    def setting(self, key: str) -> Setting:
        if key == "enabled":
            return ENABLED
        if key == "severity":
            return Setting("severity", Severity(), self.severity, self.severity_meaning)
        for setting in self.settings:
            if setting.key == key:
                return setting
        raise KeyError(f"{self.rule_id} has no setting {key!r}")

    def alert(
        self, severity: int, start_ns: int, end_ns: int, source_ip: str, text: str, **fields: Any
    ) -> Alert:
        """An alert of this detection (``fields``: the rest of the Alert's)."""
        return Alert(
            self.rule_id, self.title, severity, start_ns, end_ns, source_ip, text, **fields
        )

    def why(self, alert: Alert) -> str:
        return self.why_by_direction.get(alert.direction or "", self.why_it_matters)


class SiteSettings(Protocol):
    """A rule's settings as the site's policy sets them (detector/policy/site.py)."""

    @property
    def severity(self) -> int: ...

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True)
class Rule:
    """A detection with the site's settings for it: what a check is given. It
    reads a setting as ``rule["min_bytes"]`` and makes its alerts with
    :meth:`alert`, at the severity the site chose for the rule."""

    detection: Detection
    settings: SiteSettings

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    @property
    def rule_id(self) -> str:
        return self.detection.rule_id

    def ns(self, key: str) -> int:
        """A ``…_minutes`` or ``…_hours`` setting as nanoseconds (how rules count time)."""
        unit = {"minutes": MINUTE_NS, "hours": HOUR_NS}[key.rsplit("_", 1)[-1]]
        return int(self.settings[key]) * unit

    def alert(
        self,
        start_ns: int,
        end_ns: int,
        source_ip: str,
        text: str,
        severity: int | None = None,
        **fields: Any,
    ) -> Alert:
        """An alert of this rule at the site's severity (``severity``: a rule
        whose severity depends on what it found, as isolated-egress's)."""
        level = self.settings.severity if severity is None else severity
        return self.detection.alert(level, start_ns, end_ns, source_ip, text, **fields)


def limit_per_host(alerts: list[Alert], rule: Detection) -> list[Alert]:
    """At most ``MAX_ALERTS_PER_HOST`` of each host's ``alerts``, the largest;
    the rest summed in one more alert."""
    by_host: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_host.setdefault(alert.source_ip, []).append(alert)
    kept: list[Alert] = []
    for host, group in by_host.items():
        group.sort(key=lambda a: a.sort_key)
        kept.extend(group[:MAX_ALERTS_PER_HOST])
        rest = group[MAX_ALERTS_PER_HOST:]
        if rest:
            peers = sorted({a.destination_ip or "" for a in rest})
            kept.append(
                rule.alert(
                    max(a.severity for a in rest),
                    min(a.start_ns for a in rest),
                    max(a.end_ns for a in rest),
                    host,
                    text=f"{host}: {len(rest)} more {rule.rule_id} findings with "
                    f"{len(peers)} more destinations (the {MAX_ALERTS_PER_HOST} largest are "
                    "separate alerts)",
                    source_bytes=sum(a.source_bytes for a in rest),
                    source_packets=sum(a.source_packets for a in rest),
                    evidence={"more_destinations": len(peers), "examples": peers[:10]},
                )
            )
    return kept
