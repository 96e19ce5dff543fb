"""The site's effective policy: every setting resolved, defaults filled in.

``Policy`` is what the rest of the detector reads: the networks, business
hours in the site's zone, the allowlist, and each rule's settings
(``RuleSettings``, declared with the rule in detector/detect/rules/).
``default_policy`` is the policy without a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ..alerts.record import SEVERITY_NAMES
from ..detect.rules import POLICY_RULES
from ..networks import DEFAULT_INTERNAL, LOCAL_SCOPE, NetworkSet
from ..units import DAY_NS, MINUTE_NS, format_minutes
from .suppress import Suppression
from .zones import NAT, as_utc_ns, load_zone, machine_timezone, utc_offset_ns

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Every rule's settings with their defaults (enabled, severity, then the rule's
# own keys in declared order), from the rules' declarations.
RULE_DEFAULTS: dict[str, dict[str, Any]] = {
    rule_id: detection.defaults() for rule_id, detection in POLICY_RULES.items()
}
RULE_IDS: tuple[str, ...] = tuple(sorted(RULE_DEFAULTS))

DEFAULT_DAYS = frozenset(range(5))  # Monday–Friday
DEFAULT_START = 8 * 60
DEFAULT_END = 18 * 60
DEFAULT_WINDOW_MINUTES = 10
DEFAULT_PERCENTILE = 99.5
DEFAULT_SITE_NAME = "site"
DEFAULT_RECURRING_DAYS = 30  # an alert seen again within this many days is recurring


@dataclass(frozen=True)
class RuleSettings:
    """One rule's effective settings: enabled, severity (1–4) and its thresholds."""

    rule_id: str
    enabled: bool
    severity: int
    params: Mapping[str, Any]  # the rule's own keys (not enabled/severity), defaults filled

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


def _format_days(days: frozenset[int]) -> str:
    if not days:
        return "no days"
    ordered = sorted(days)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{DAY_NAMES[ordered[0]].title()}–{DAY_NAMES[ordered[-1]].title()}"
    return ", ".join(DAY_NAMES[day].title() for day in ordered)


@dataclass(frozen=True)
class Policy:
    """A site's effective policy: every setting resolved, defaults filled in."""

    site_name: str
    timezone: str
    zone: zoneinfo.ZoneInfo
    business_days: frozenset[int]  # 0 = Monday … 6 = Sunday
    business_start: int  # minutes after local midnight
    business_end: int  # minutes after local midnight, ≤ 1440
    holidays: frozenset[dt.date]
    internal: NetworkSet
    isolated: NetworkSet
    isolated_peers: NetworkSet
    allowlist_destinations: NetworkSet
    window_minutes: int
    model_percentile: float
    rules: Mapping[str, RuleSettings]
    source: str | None = None  # the policy file, None for the defaults
    warnings: tuple[str, ...] = ()
    # Sanctioned domains: a destination whose DNS names, TLS SNI or HTTP Host
    # fall under one is allowlisted like allowlist.destinations.
    allowlist_domains: tuple[str, ...] = ()
    inspect_max_packets: int = 8  # payload packets inspected per flow
    inspect_max_bytes: int = 2048  # bytes inspected per packet
    # Not part of settings() (a model trained before a suppression or a report
    # word was added stays valid): what the outputs say, not what is detected.
    sensor: str | None = None  # [site] sensor: ECS observer.hostname
    suppressions: tuple[Suppression, ...] = ()  # [[suppress]] (policy/suppress.py)
    # [report.why]: rule id → the site's words for why it matters
    report_why: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    recurring_days: int = DEFAULT_RECURRING_DAYS  # [report] recurring_days

    def rule(self, rule_id: str) -> RuleSettings:
        try:
            return self.rules[rule_id]
        except KeyError:
            raise KeyError(f"unknown rule {rule_id!r} (known: {', '.join(RULE_IDS)})") from None

    def settings(self) -> dict[str, Any]:
        """Every effective setting as plain JSON values (networks merged and
        sorted, holidays sorted): what ``fingerprint`` hashes."""
        return {
            "format": 1,
            "site": {"name": self.site_name, "timezone": self.timezone},
            "business_hours": {
                "days": sorted(self.business_days),
                "start": self.business_start,
                "end": self.business_end,
                "holidays": sorted(day.isoformat() for day in self.holidays),
            },
            "networks": {
                "internal": self.internal.canonical(),
                "isolated": self.isolated.canonical(),
                "isolated_peers": self.isolated_peers.canonical(),
            },
            "allowlist": {
                "destinations": self.allowlist_destinations.canonical(),
                "domains": sorted(self.allowlist_domains),
            },
            "inspection": {
                "max_packets": self.inspect_max_packets,
                "max_bytes": self.inspect_max_bytes,
            },
            "features": {"window_minutes": self.window_minutes},
            "model": {"percentile": float(self.model_percentile)},
            "rules": {
                rule_id: {
                    "enabled": settings.enabled,
                    "severity": settings.severity,
                    **{
                        key: list(value) if isinstance(value, tuple) else value
                        for key, value in settings.params.items()
                    },
                }
                for rule_id, settings in sorted(self.rules.items())
            },
        }

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON of ``settings()``: the same for any
        file with the same effective policy, whatever its comments or key order.
        A model or report can record it to show which policy it was made under."""
        text = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def is_external(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """True for addresses outside the internal networks that are not local
        scope (loopback, link-local, multicast, broadcast, unspecified)."""
        return ~(self.internal.contains(hi, lo) | LOCAL_SCOPE.contains(hi, lo))

    def utc_offset_ns(self, ts_ns: np.ndarray) -> np.ndarray:
        """The site's UTC offset (int64 ns, e.g. +8 h for Asia/Taipei) at each UTC
        instant, daylight saving time included. NaT gives 0."""
        return utc_offset_ns(self.zone, ts_ns)

    def is_business_time(self, ts_ns: np.ndarray) -> np.ndarray:
        """True where the UTC instant falls, in site-local time, on a business day
        that is not a holiday, at or after ``business_start`` and before
        ``business_end``. NaT gives False."""
        ts = as_utc_ns(ts_ns)
        local = ts + self.utc_offset_ns(ts)
        day = np.floor_divide(local, DAY_NS)  # days since 1970-01-01, a Thursday
        minute = (local - day * DAY_NS) // MINUTE_NS
        business_day = np.zeros(7, dtype=bool)
        business_day[sorted(self.business_days)] = True
        result = business_day[(day + 3) % 7]
        result &= (minute >= self.business_start) & (minute < self.business_end)
        if self.holidays:
            holiday_days = [(day - dt.date(1970, 1, 1)).days for day in self.holidays]
            result &= ~np.isin(day, np.array(holiday_days, dtype=np.int64))
        result &= ts != NAT
        return result

    def describe(self) -> str:
        """A few lines for people: where the policy comes from and what it says."""
        origin = f"policy {self.source}" if self.source else "default policy (no --policy)"
        lines = [f"site {self.site_name}, time zone {self.timezone}; {origin}"]
        hours = (
            f"business hours: {_format_days(self.business_days)} "
            f"{format_minutes(self.business_start)}–{format_minutes(self.business_end)} local"
        )
        if self.holidays:
            first, last = min(self.holidays), max(self.holidays)
            count = len(self.holidays)
            span = first.isoformat() if count == 1 else f"{first} … {last}"
            hours += f"; {count} holiday{'s' if count > 1 else ''} ({span})"
        lines.append(hours)
        lines.append(f"internal: {self.internal}")
        if self.isolated:
            peers = f" (may reach {self.isolated_peers})" if self.isolated_peers else ""
            lines.append(f"isolated: {self.isolated}{peers}")
        else:
            lines.append("isolated: none")
        lines.append(f"allowlisted destinations: {self.allowlist_destinations or 'none'}")
        lines.append(
            f"features: {self.window_minutes}-minute windows; "
            f"model threshold: percentile {self.model_percentile:g} of baseline scores"
        )
        enabled = [
            f"{rule_id} ({SEVERITY_NAMES[settings.severity]})"
            for rule_id, settings in sorted(self.rules.items())
            if settings.enabled
        ]
        disabled = [
            rule_id for rule_id, settings in sorted(self.rules.items()) if not settings.enabled
        ]
        rules = f"rules: {', '.join(enabled) or 'none'}"
        if disabled:
            rules += f"; disabled: {', '.join(disabled)}"
        lines.append(rules)
        return "\n".join(lines)


def rule_settings(rule_id: str, given: Mapping[str, Any]) -> RuleSettings:
    values = {**RULE_DEFAULTS[rule_id], **given}
    params = {key: value for key, value in values.items() if key not in ("enabled", "severity")}
    return RuleSettings(
        rule_id=rule_id,
        enabled=bool(values["enabled"]),
        severity=int(values["severity"]),
        params=MappingProxyType(params),
    )


def _default_rules() -> Mapping[str, RuleSettings]:
    return MappingProxyType({rule_id: rule_settings(rule_id, {}) for rule_id in RULE_IDS})


def default_policy() -> Policy:
    """The policy used without ``--policy``: RFC 1918 + fc00::/7 internal, no
    isolated networks or allowlist, Mon–Fri 08:00–18:00 in this machine's zone."""
    timezone = machine_timezone()
    zone = load_zone(timezone) or zoneinfo.ZoneInfo("UTC")
    warning = (
        f"no --policy given: using the defaults (internal {DEFAULT_INTERNAL}; "
        f"no isolated networks, no allowlist; business hours Mon–Fri "
        f"{format_minutes(DEFAULT_START)}–{format_minutes(DEFAULT_END)}) "
        f"in this machine's time zone {timezone}"
    )
    return Policy(
        site_name=DEFAULT_SITE_NAME,
        timezone=timezone,
        zone=zone,
        business_days=DEFAULT_DAYS,
        business_start=DEFAULT_START,
        business_end=DEFAULT_END,
        holidays=frozenset(),
        internal=DEFAULT_INTERNAL,
        isolated=NetworkSet(),
        isolated_peers=NetworkSet(),
        allowlist_destinations=NetworkSet(),
        window_minutes=DEFAULT_WINDOW_MINUTES,
        model_percentile=DEFAULT_PERCENTILE,
        rules=_default_rules(),
        source=None,
        warnings=(warning,),
    )
