"""The site policy: networks, isolated hosts, business hours, allowlist, rule settings.

A site writes one TOML file (``docs/policy.md`` documents every key;
``captures/sample-policy.toml`` is a worked example). ``load_policy`` checks it
completely and returns a frozen ``Policy``; any problem is one ``PolicyError``
line naming the file, the key path, what was wrong and what is allowed.
Without a file, ``default_policy`` gives RFC 1918 + fc00::/7 as internal and
Mon–Fri 08:00–18:00 in this machine's time zone, and says so in ``warnings``.

Addresses are the project's 128-bit pairs of uint64 arrays (``hi``, ``lo``);
IPv4 is IPv4-mapped IPv6 (``::ffff:a.b.c.d``: ``hi == 0``,
``lo == 0x0000FFFF00000000 | ipv4``). Times are int64 nanoseconds since the
epoch, UTC. Business hours are always judged in the site's own zone: the case
this tool exists for happened at 02:13 local time, which is 18:13 UTC the day
before.

This module imports numpy only (no pandas): the command line loads a policy on
every start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, NoReturn

import numpy as np

from .errors import PolicyError

__all__ = [
    "DEFAULT_INTERNAL",
    "LOCAL_SCOPE",
    "RULE_DEFAULTS",
    "RULE_IDS",
    "SEVERITY_NAMES",
    "NetworkSet",
    "Policy",
    "RuleSettings",
    "default_policy",
    "load_policy",
    "machine_timezone",
    "parse_policy",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SEVERITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "critical"}
_SEVERITY_BY_NAME = {name: level for level, name in SEVERITY_NAMES.items()}

# Every rule's settings with their defaults, in the order error messages list them.
# Values are stored checked and normalised: severities as 1–4, times of day as
# "HH:MM" local time, ports as a sorted tuple.
RULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "always-on": {
        "enabled": True,
        "severity": 1,
        "night_start": "00:00",
        "night_end": "06:00",  # earlier than night_start: the night crosses midnight
        "min_packets": 1,
        "exempt": (),  # CIDRs of hosts meant to run all night (servers, gateways)
    },
    "bulk-upload-new-destination": {
        "enabled": True,
        "severity": 3,
        "min_bytes": 100_000_000,
        "span_minutes": 60,
        "new_for_hours": 24,
    },
    "isolated-egress": {
        "enabled": True,
        "severity": 4,  # the other side is external
        "internal_severity": 3,  # the other side is internal
        "ignore_local_scope": True,
    },
    "mail-egress": {
        "enabled": True,
        "severity": 4,  # mail from an isolated host
        "large_severity": 2,  # large outbound mail from any host
        "min_bytes": 10_000_000,
        # SMTP (RFC 5321), submissions over implicit TLS (RFC 8314), submission (RFC 6409)
        "ports": (25, 465, 587),
    },
    "offhours-bulk-egress": {
        "enabled": True,
        "severity": 3,
        "min_bytes": 50_000_000,
        "span_minutes": 60,
    },
    "p2p": {
        "enabled": True,
        "severity": 3,
    },
    "cleartext-pii": {
        "enabled": True,
        "severity": 3,
        "min_count": 1,  # distinct ID numbers one host must send to one destination
    },
    "im-app": {
        "enabled": True,
        "severity": 2,
        "domains": (),  # more names to report (the shipped lists: detector/data/im_apps.toml)
        "networks": (),  # more ranges
        "ignore": (),  # app ids of the shipped lists to leave out (line, wechat, ...)
    },
    "beacon": {
        "enabled": True,
        "severity": 2,
        "min_connections": 20,  # per host and outside address
        "min_hours": 1,  # from the first to the last of them
        "min_score": 80,  # percent: regularity of intervals and sizes (docs/rules.md)
        # Periodic by design: DNS (RFC 1035) and NTP (RFC 5905) clients poll.
        "ignore_ports": (53, 123),
    },
    "dns-tunnel": {
        "enabled": True,
        "severity": 3,
        "min_label_length": 48,  # one label this long carries encoded data
        "min_unique_subdomains": 100,  # per host and domain
        "min_mean_subdomain_length": 20,
        "min_txt_null_queries": 50,  # TXT and NULL questions per host and domain
    },
}
RULE_IDS: tuple[str, ...] = tuple(sorted(RULE_DEFAULTS))

# What kind of value each rule key takes (checked in _read_rule).
_RULE_KEY_KINDS = {
    "enabled": "bool",
    "severity": "severity",
    "internal_severity": "severity",
    "large_severity": "severity",
    "ignore_local_scope": "bool",
    "min_bytes": "bytes",
    "span_minutes": "minutes",
    "new_for_hours": "hours",
    "min_packets": "positive",
    "ports": "ports",
    "night_start": "time",
    "night_end": "end_time",
    "exempt": "networks",
    "min_count": "positive",
    "domains": "domains",
    "networks": "networks",
    "ignore": "names",
    "min_label_length": "positive",
    "min_unique_subdomains": "positive",
    "min_mean_subdomain_length": "positive",
    "min_txt_null_queries": "positive",
    "min_connections": "positive",
    "min_hours": "hours",
    "min_score": "percent",
    "ignore_ports": "ports",
}

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 1440
_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND
_NS_PER_DAY = 86_400 * _NS_PER_SECOND
_NAT = np.iinfo(np.int64).min  # numpy's and pandas' "not a time"
_UINT64_MASK = (1 << 64) - 1
_INT64_MAX = (1 << 63) - 1  # TOML integers are 64-bit; rules compute in int64
_MINUTES_PER_YEAR = 365 * MINUTES_PER_DAY  # longest span_minutes
_HOURS_PER_YEAR = 365 * 24  # longest new_for_hours
_IPV4_MAPPED = 0x0000_FFFF_0000_0000  # ::ffff:0:0/96, low half (RFC 4291 §2.5.5.2)

_DEFAULT_DAYS = frozenset(range(5))  # Monday–Friday
_DEFAULT_START = 8 * 60
_DEFAULT_END = 18 * 60
_DEFAULT_WINDOW_MINUTES = 10
_DEFAULT_PERCENTILE = 99.5
_DEFAULT_SITE_NAME = "site"


# ---------------------------------------------------------------------------
# Networks


def _address_pair(address: int, version: int) -> tuple[int, int]:
    """An address as the project's (hi, lo) pair; IPv4 becomes IPv4-mapped."""
    if version == 4:
        return 0, _IPV4_MAPPED | address
    return address >> 64, address & _UINT64_MASK


# Up to this many ranges sharing one hi value are compared one by one; more are
# looked up with searchsorted (one pass over the addresses either way per group).
_DIRECT_RANGES = 8


class NetworkSet:
    """An immutable set of IPv4 and IPv6 networks.

    ``contains`` tests (hi, lo) address arrays: IPv4 networks match IPv4-mapped
    addresses, IPv6 networks native ones (an IPv6 network that covers
    ``::ffff:0:0/96`` therefore matches IPv4 addresses too, as the addresses are
    stored that way). Each network is an inclusive range of 128-bit values
    compared as (hi, lo) pairs; ranges inside one ``hi`` value (every IPv4
    network, IPv6 /64 and longer) are grouped by that value, wider ranges are
    compared one by one.
    """

    __slots__ = ("networks", "_collapsed", "_narrow", "_wide")

    networks: tuple[IPNetwork, ...]
    _collapsed: tuple[IPNetwork, ...]
    _narrow: tuple[tuple[np.uint64, np.ndarray, np.ndarray], ...]
    _wide: tuple[tuple[np.uint64, np.uint64, np.uint64, np.uint64], ...]

    def __init__(self, networks: Iterable[IPNetwork | str] = ()) -> None:
        parsed = list(
            dict.fromkeys(
                item if isinstance(item, IPNetwork) else ipaddress.ip_network(item)
                for item in networks
            )
        )
        v4 = [n for n in parsed if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in parsed if isinstance(n, ipaddress.IPv6Network)]
        collapsed: list[IPNetwork] = [
            *ipaddress.collapse_addresses(v4),
            *ipaddress.collapse_addresses(v6),
        ]
        # Inclusive (hi, lo) ranges. Collapsed networks are disjoint, so ranges
        # sharing one hi value can be searched as sorted starts.
        narrow: dict[int, list[tuple[int, int]]] = {}
        wide: list[tuple[np.uint64, np.uint64, np.uint64, np.uint64]] = []
        for net in collapsed:
            start_hi, start_lo = _address_pair(int(net.network_address), net.version)
            end_hi, end_lo = _address_pair(int(net.broadcast_address), net.version)
            if start_hi == end_hi:
                narrow.setdefault(start_hi, []).append((start_lo, end_lo))
            else:
                wide.append(
                    (np.uint64(start_hi), np.uint64(start_lo), np.uint64(end_hi), np.uint64(end_lo))
                )
        narrow_groups = tuple(
            (
                np.uint64(hi),
                np.array(sorted(s for s, _ in spans), dtype=np.uint64),
                np.array([e for _, e in sorted(spans)], dtype=np.uint64),
            )
            for hi, spans in sorted(narrow.items())
        )
        set_attribute = object.__setattr__  # the set is immutable once built
        set_attribute(self, "networks", tuple(parsed))
        set_attribute(self, "_collapsed", tuple(collapsed))
        set_attribute(self, "_narrow", narrow_groups)
        set_attribute(self, "_wide", tuple(wide))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"NetworkSet is immutable (cannot set {name!r})")

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """True where the address (hi[i], lo[i]) is in one of the networks."""
        hi = np.asarray(hi, dtype=np.uint64)
        lo = np.asarray(lo, dtype=np.uint64)
        if hi.shape != lo.shape:
            hi, lo = np.broadcast_arrays(hi, lo)
        inside = np.zeros(hi.shape, dtype=bool)
        for range_hi, starts, ends in self._narrow:
            same_hi = hi == range_hi
            if len(starts) <= _DIRECT_RANGES:
                # start ≤ lo ≤ end as one unsigned compare: below start, lo - start
                # wraps to more than end - start.
                for start, end in zip(starts, ends, strict=True):
                    inside |= same_hi & ((lo - start) <= (end - start))
            else:
                index = np.searchsorted(starts, lo, side="right") - 1
                below_end = lo <= ends[np.maximum(index, 0)]
                inside |= same_hi & (index >= 0) & below_end
        for start_hi, start_lo, end_hi, end_lo in self._wide:
            after_start = (hi > start_hi) | ((hi == start_hi) & (lo >= start_lo))
            before_end = (hi < end_hi) | ((hi == end_hi) & (lo <= end_lo))
            inside |= after_start & before_end
        return inside

    def contains_text(self, address: str) -> bool:
        """Whether one address written as text is in the set (``::ffff:a.b.c.d``
        counts as the IPv4 address it maps). Raises ValueError for non-addresses."""
        ip = ipaddress.ip_address(address)
        hi, lo = _address_pair(int(ip), ip.version)
        found = self.contains(np.array([hi], dtype=np.uint64), np.array([lo], dtype=np.uint64))
        return bool(found[0])

    def canonical(self) -> list[str]:
        """The networks merged and sorted (IPv4 first): what the set really covers."""
        return [str(net) for net in self._collapsed]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        return len(self.networks)

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self.networks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkSet):
            return NotImplemented
        return self._collapsed == other._collapsed

    def __hash__(self) -> int:
        return hash(self._collapsed)

    def __str__(self) -> str:
        return ", ".join(str(net) for net in self.networks)

    def __repr__(self) -> str:
        return f"NetworkSet([{', '.join(repr(str(net)) for net in self.networks)}])"


# Addresses that are not "another host" (RFC 6890 special-purpose registries):
# this network, loopback, link-local, multicast, reserved + limited broadcast.
LOCAL_SCOPE = NetworkSet(
    [
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",  # includes 255.255.255.255, the limited broadcast
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
    ]
)
# RFC 1918 private IPv4 and RFC 4193 unique local IPv6.
DEFAULT_INTERNAL = NetworkSet(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])


# ---------------------------------------------------------------------------
# Time zones


# Offsets are probed once a day and each change is then bisected to the second
# (tz transitions fall on whole seconds). This is exact as long as a zone never
# changes its offset twice within a day: in the IANA data since 1900 the closest
# two offset changes of any zone are four days apart (Africa/Freetown, 1939).
_PROBE_SECONDS = 86_400


def _offset_seconds_at(zone: zoneinfo.ZoneInfo, seconds: int) -> int:
    offset = dt.datetime.fromtimestamp(seconds, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset.days * 86_400 + offset.seconds


def _offset_table(zone: zoneinfo.ZoneInfo, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(change points, offsets) in seconds covering every instant in ``seconds``:
    the offset at t is offsets[i] for the last change point i ≤ t."""
    steps = seconds // _PROBE_SECONDS
    first = int(steps.min())
    # The whole int64-nanosecond range is about 213,000 days: counting is cheap.
    occupied = np.flatnonzero(np.bincount(steps - first)) + first
    probes = np.union1d(occupied, occupied + 1) * _PROBE_SECONDS
    points: list[int] = []
    offsets: list[int] = []
    before: int | None = None
    previous = 0
    for probe in probes.tolist():
        offset = _offset_seconds_at(zone, probe)
        if before is not None and offset != before:
            # Bisect (previous, probe] for the first second with a new offset.
            low, high = previous, probe
            while high - low > 1:
                middle = (low + high) // 2
                if _offset_seconds_at(zone, middle) == before:
                    low = middle
                else:
                    high = middle
            points.append(high)
            offsets.append(_offset_seconds_at(zone, high))
            if offsets[-1] != offset:  # more than one change between probes (no instants there)
                points.append(probe)
                offsets.append(offset)
        elif before is None:
            points.append(probe)
            offsets.append(offset)
        before, previous = offset, probe
    return np.array(points, dtype=np.int64), np.array(offsets, dtype=np.int64)


def _as_utc_ns(ts_ns: np.ndarray) -> np.ndarray:
    """int64 nanoseconds since the epoch; datetime64 arrays are converted."""
    values = np.asarray(ts_ns)
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]").view(np.int64)
    return values.astype(np.int64, copy=False)


def _utc_offset_ns(zone: zoneinfo.ZoneInfo, ts_ns: np.ndarray) -> np.ndarray:
    ts = _as_utc_ns(ts_ns)
    out = np.zeros(ts.shape, dtype=np.int64)
    valid = ts != _NAT
    if not valid.any():
        return out
    seconds = np.floor_divide(ts[valid], _NS_PER_SECOND)
    points, offsets = _offset_table(zone, seconds)
    if len(points) == 1:  # one offset over the whole span (most zones, most captures)
        out[valid] = offsets[0] * _NS_PER_SECOND
    else:
        index = np.searchsorted(points, seconds, side="right") - 1
        out[valid] = offsets[index] * _NS_PER_SECOND
    return out


def _load_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone for an IANA name, or None if there is no such zone here."""
    if not name or name.startswith("/") or name == "localtime":
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone_name_from_path(path: str) -> str | None:
    marker = "zoneinfo/"
    if marker not in path:
        return None
    name = path.rsplit(marker, 1)[1]
    for variant in ("posix/", "right/"):  # the same zones with POSIX or leap-second clocks
        name = name.removeprefix(variant)
    return name


def machine_timezone() -> str:
    """This machine's IANA zone name: $TZ if it names one (``:Europe/Paris`` and
    ``/usr/share/zoneinfo/Europe/Paris`` count), else /etc/timezone, else the
    target of the /etc/localtime link after ``zoneinfo/``, else ``UTC``."""
    candidates: list[str | None] = []
    tz = os.environ.get("TZ", "").strip().removeprefix(":")
    candidates.append(_zone_name_from_path(tz) if tz.startswith("/") else tz)
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            candidates.append(handle.readline().strip())
    except (OSError, UnicodeDecodeError):
        pass
    with contextlib.suppress(OSError):
        candidates.append(_zone_name_from_path(os.readlink("/etc/localtime")))
    for name in candidates:
        if name and _load_zone(name) is not None:
            return name
    return "UTC"


# ---------------------------------------------------------------------------
# The policy


@dataclass(frozen=True)
class RuleSettings:
    """One rule's effective settings: enabled, severity (1–4) and its thresholds."""

    rule_id: str
    enabled: bool
    severity: int
    params: Mapping[str, Any]  # the rule's own keys (not enabled/severity), defaults filled

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes_of(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


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
        return _utc_offset_ns(self.zone, ts_ns)

    def is_business_time(self, ts_ns: np.ndarray) -> np.ndarray:
        """True where the UTC instant falls, in site-local time, on a business day
        that is not a holiday, at or after ``business_start`` and before
        ``business_end``. NaT gives False."""
        ts = _as_utc_ns(ts_ns)
        local = ts + self.utc_offset_ns(ts)
        day = np.floor_divide(local, _NS_PER_DAY)  # days since 1970-01-01, a Thursday
        minute = (local - day * _NS_PER_DAY) // _NS_PER_MINUTE
        business_day = np.zeros(7, dtype=bool)
        business_day[sorted(self.business_days)] = True
        result = business_day[(day + 3) % 7]
        result &= (minute >= self.business_start) & (minute < self.business_end)
        if self.holidays:
            holiday_days = [(day - dt.date(1970, 1, 1)).days for day in self.holidays]
            result &= ~np.isin(day, np.array(holiday_days, dtype=np.int64))
        result &= ts != _NAT
        return result

    def describe(self) -> str:
        """A few lines for people: where the policy comes from and what it says."""
        origin = f"policy {self.source}" if self.source else "default policy (no --policy)"
        lines = [f"site {self.site_name}, time zone {self.timezone}; {origin}"]
        hours = (
            f"business hours: {_format_days(self.business_days)} "
            f"{_format_minutes(self.business_start)}–{_format_minutes(self.business_end)} local"
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


def _rule_settings(rule_id: str, given: Mapping[str, Any]) -> RuleSettings:
    values = {**RULE_DEFAULTS[rule_id], **given}
    params = {key: value for key, value in values.items() if key not in ("enabled", "severity")}
    return RuleSettings(
        rule_id=rule_id,
        enabled=bool(values["enabled"]),
        severity=int(values["severity"]),
        params=MappingProxyType(params),
    )


def _default_rules() -> Mapping[str, RuleSettings]:
    return MappingProxyType({rule_id: _rule_settings(rule_id, {}) for rule_id in RULE_IDS})


def default_policy() -> Policy:
    """The policy used without ``--policy``: RFC 1918 + fc00::/7 internal, no
    isolated networks or allowlist, Mon–Fri 08:00–18:00 in this machine's zone."""
    timezone = machine_timezone()
    zone = _load_zone(timezone) or zoneinfo.ZoneInfo("UTC")
    warning = (
        f"no --policy given: using the defaults (internal {DEFAULT_INTERNAL}; "
        f"no isolated networks, no allowlist; business hours Mon–Fri "
        f"{_format_minutes(_DEFAULT_START)}–{_format_minutes(_DEFAULT_END)}) "
        f"in this machine's time zone {timezone}"
    )
    return Policy(
        site_name=_DEFAULT_SITE_NAME,
        timezone=timezone,
        zone=zone,
        business_days=_DEFAULT_DAYS,
        business_start=_DEFAULT_START,
        business_end=_DEFAULT_END,
        holidays=frozenset(),
        internal=DEFAULT_INTERNAL,
        isolated=NetworkSet(),
        isolated_peers=NetworkSet(),
        allowlist_destinations=NetworkSet(),
        window_minutes=_DEFAULT_WINDOW_MINUTES,
        model_percentile=_DEFAULT_PERCENTILE,
        rules=_default_rules(),
        source=None,
        warnings=(warning,),
    )


# ---------------------------------------------------------------------------
# Reading the file


_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "site": ("name", "timezone"),
    "business_hours": ("days", "start", "end", "holidays"),
    "networks": ("internal", "isolated", "isolated_peers"),
    "allowlist": ("destinations", "domains"),
    "features": ("window_minutes",),
    "inspection": ("max_packets", "max_bytes"),
    "model": ("percentile",),
    "rules": RULE_IDS,
}
_TIME_PATTERN = re.compile(r"(\d\d):(\d\d)")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"  # RFC 1035 labels (plus "_" as in SRV)
_DOMAIN_PATTERN = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")


def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for error messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, dt.datetime):
        return "date-time"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    return type(value).__name__


def _shown(value: object) -> str:
    if isinstance(value, list | dict):
        return _toml_type(value)
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dt.date | dt.time):
        return f"{_toml_type(value)} {value.isoformat()}"
    return f"{_toml_type(value)} {value!r}"


class _Reader:
    """Checks one parsed policy document; every complaint names the file and key."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name

    def fail(self, path: str, message: str) -> NoReturn:
        raise PolicyError(f"{self.file_name}: {path}: {message}")

    def expect(self, path: str, value: object, expected: str) -> NoReturn:
        self.fail(path, f"expected {expected}, got {_shown(value)}")

    def table(
        self, path: str, value: object, allowed: Iterable[str], unknown: str = "key"
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.expect(path, value, "a table")
        allowed = tuple(allowed)
        for key in value:
            if key in allowed:
                continue
            if unknown == "rule":
                self.fail(f"{path}.{key}", f"unknown rule (known: {', '.join(allowed)})")
            self.fail(path, f"unknown key {key!r} (allowed: {', '.join(allowed)})")
        return value

    def boolean(self, path: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.expect(path, value, "true or false")
        return value

    def integer(
        self, path: str, value: object, minimum: int, what: str, maximum: int = _INT64_MAX
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.expect(path, value, "an integer")
        if value < minimum:
            self.fail(path, f"{value} is too small ({what})")
        if value > maximum:
            self.fail(path, f"{value} is too large (at most {maximum:_})")
        return value

    def string(self, path: str, value: object) -> str:
        if not isinstance(value, str):
            self.expect(path, value, "a string")
        return value

    def array(self, path: str, value: object) -> list[Any]:
        if not isinstance(value, list):
            self.expect(path, value, "an array")
        return value

    def severity(self, path: str, value: object) -> int:
        allowed = "low, medium, high, critical or 1–4"
        if isinstance(value, str):
            level = _SEVERITY_BY_NAME.get(value.lower())
            if level is None:
                self.fail(path, f"{value!r} is not a severity (use {allowed})")
            return level
        if isinstance(value, int) and not isinstance(value, bool):
            if value not in SEVERITY_NAMES:
                self.fail(path, f"{value} is not a severity (use {allowed})")
            return value
        self.expect(path, value, f"a severity ({allowed})")

    def time_of_day(self, path: str, value: object, end: bool) -> int:
        """Minutes after midnight for "HH:MM" (or a TOML local time on the minute)."""
        allowed = "00:00–24:00" if end else "00:00–23:59"
        if isinstance(value, dt.time) and not isinstance(value, dt.datetime):
            if value.second or value.microsecond or value.tzinfo is not None:
                self.fail(path, f"{value.isoformat()} is not a whole minute (use HH:MM, {allowed})")
            return value.hour * 60 + value.minute
        if not isinstance(value, str):
            self.expect(path, value, f'a time "HH:MM" ({allowed})')
        match = _TIME_PATTERN.fullmatch(value)
        if match is not None:
            hours, minutes = int(match[1]), int(match[2])
            if hours < 24 and minutes < 60:
                return hours * 60 + minutes
            if end and hours == 24 and minutes == 0:
                return MINUTES_PER_DAY
        self.fail(path, f"{value!r} is not a time (use HH:MM, {allowed})")

    def network(self, path: str, value: object) -> IPNetwork:
        if not isinstance(value, str):
            self.expect(path, value, 'a network as a string ("10.8.40.0/24")')
        text = value.strip()
        try:
            return ipaddress.ip_network(text)
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.fail(path, f"{value!r} is not a network (use CIDR like 10.8.40.0/24)")
        self.fail(
            path,
            f"{value!r} has host bits set (did you mean {loose}? "
            f"use the network address, or /{loose.max_prefixlen} for one host)",
        )

    def networks(self, path: str, value: object) -> NetworkSet:
        items = self.array(path, value)
        parsed: list[IPNetwork] = []
        for index, item in enumerate(items):
            net = self.network(f"{path}[{index}]", item)
            if net in parsed:
                self.fail(f"{path}[{index}]", f"{str(net)!r} is listed twice")
            parsed.append(net)
        return NetworkSet(parsed)


def _read_site(reader: _Reader, section: Mapping[str, Any]) -> tuple[str, str | None]:
    name = _DEFAULT_SITE_NAME
    if "name" in section:
        name = reader.string("site.name", section["name"]).strip()
        if not name or not name.isprintable():
            reader.fail("site.name", "must be one line of printable text, not empty")
    timezone = None
    if "timezone" in section:
        timezone = reader.string("site.timezone", section["timezone"])
        if _load_zone(timezone) is None:
            reader.fail(
                "site.timezone",
                f"unknown time zone {timezone!r} (an IANA name such as Asia/Taipei, "
                "Europe/Paris, UTC)",
            )
    return name, timezone


def _read_business_hours(
    reader: _Reader, section: Mapping[str, Any]
) -> tuple[frozenset[int], int, int, frozenset[dt.date]]:
    days = _DEFAULT_DAYS
    if "days" in section:
        seen: list[int] = []
        for index, item in enumerate(reader.array("business_hours.days", section["days"])):
            path = f"business_hours.days[{index}]"
            name = reader.string(path, item)
            if name.lower() not in DAY_NAMES:
                reader.fail(path, f"{name!r} is not a day (use {', '.join(DAY_NAMES)})")
            day = DAY_NAMES.index(name.lower())
            if day in seen:
                reader.fail(path, f"{name!r} is listed twice")
            seen.append(day)
        days = frozenset(seen)
    start, end = _DEFAULT_START, _DEFAULT_END
    if "start" in section:
        start = reader.time_of_day("business_hours.start", section["start"], end=False)
    if "end" in section:
        end = reader.time_of_day("business_hours.end", section["end"], end=True)
    if start >= end:
        reader.fail(
            "business_hours",
            f"start {_format_minutes(start)} is not before end {_format_minutes(end)} "
            '(business hours cannot cross midnight; all day is start = "00:00", end = "24:00")',
        )
    holidays: list[dt.date] = []
    for index, item in enumerate(
        reader.array("business_hours.holidays", section.get("holidays", []))
    ):
        path = f"business_hours.holidays[{index}]"
        if isinstance(item, dt.date) and not isinstance(item, dt.datetime):
            day_value = item
        elif isinstance(item, str):
            try:
                if not re.fullmatch(r"\d{4}-\d\d-\d\d", item):
                    raise ValueError
                day_value = dt.date.fromisoformat(item)
            except ValueError:
                reader.fail(path, f"{item!r} is not a date (use YYYY-MM-DD)")
        else:
            reader.expect(path, item, 'a date "YYYY-MM-DD"')
        if day_value in holidays:
            reader.fail(path, f"{day_value.isoformat()} is listed twice")
        holidays.append(day_value)
    return days, start, end, frozenset(holidays)


def im_app_ids() -> tuple[str, ...]:
    """The app ids of the shipped messaging-app list (detector/data/im_apps.toml)."""
    with resources.files("detector").joinpath("data/im_apps.toml").open("rb") as stream:
        return tuple(sorted(tomllib.load(stream)))


def _read_rule(reader: _Reader, rule_id: str, value: object) -> dict[str, Any]:
    defaults = RULE_DEFAULTS[rule_id]
    section = reader.table(f"rules.{rule_id}", value, defaults)
    parsed: dict[str, Any] = {}
    for key, item in section.items():
        path = f"rules.{rule_id}.{key}"
        kind = _RULE_KEY_KINDS[key]
        if kind == "bool":
            parsed[key] = reader.boolean(path, item)
        elif kind == "severity":
            parsed[key] = reader.severity(path, item)
        elif kind == "bytes":
            parsed[key] = reader.integer(path, item, 0, "bytes cannot be negative")
        elif kind == "positive":
            parsed[key] = reader.integer(path, item, 1, "must be at least 1")
        elif kind == "minutes":
            parsed[key] = reader.integer(path, item, 1, "must be at least 1", _MINUTES_PER_YEAR)
        elif kind == "hours":
            parsed[key] = reader.integer(path, item, 1, "must be at least 1", _HOURS_PER_YEAR)
        elif kind == "percent":
            parsed[key] = reader.integer(path, item, 0, "a percentage, 0–100", 100)
        elif kind == "networks":
            parsed[key] = tuple(reader.networks(path, item).canonical())
        elif kind in ("domains", "names"):
            names: list[str] = []
            for index, entry in enumerate(reader.array(path, item)):
                entry_path = f"{path}[{index}]"
                name = reader.string(entry_path, entry).strip().lower().rstrip(".")
                if kind == "domains" and not _DOMAIN_PATTERN.fullmatch(name):
                    reader.fail(entry_path, f"{entry!r} is not a domain name")
                if name in names:
                    reader.fail(entry_path, f"{name} is listed twice")
                if kind == "names" and name not in (known := im_app_ids()):
                    reader.fail(entry_path, f"unknown app {name!r} (known: {', '.join(known)})")
                names.append(name)
            parsed[key] = tuple(names)
        elif kind in ("time", "end_time"):
            minutes = reader.time_of_day(path, item, end=kind == "end_time")
            parsed[key] = _format_minutes(minutes)
        elif kind == "ports":  # (ignore_ports too)
            ports: list[int] = []
            for index, port in enumerate(reader.array(path, item)):
                port_path = f"{path}[{index}]"
                number = reader.integer(port_path, port, 1, "ports are 1–65535")
                if number > 65_535:
                    reader.fail(port_path, f"{number} is too large (ports are 1–65535)")
                if number in ports:
                    reader.fail(port_path, f"{number} is listed twice")
                ports.append(number)
            parsed[key] = tuple(sorted(ports))
        else:  # pragma: no cover - a key added to RULE_DEFAULTS without a kind
            raise AssertionError(f"no kind for rule key {key!r}")
    if rule_id == "always-on":
        night_start = parsed.get("night_start", defaults["night_start"])
        night_end = parsed.get("night_end", defaults["night_end"])
        if _minutes_of(night_start) % MINUTES_PER_DAY == _minutes_of(night_end) % MINUTES_PER_DAY:
            reader.fail(
                f"rules.{rule_id}.night_end",
                f"{night_end} is the same time as night_start {night_start} (the night "
                "must have a length; an end earlier than the start crosses midnight)",
            )
    return parsed


def _is_subnet(net: IPNetwork, block: IPNetwork) -> bool:
    if isinstance(net, ipaddress.IPv4Network) and isinstance(block, ipaddress.IPv4Network):
        return net.subnet_of(block)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(block, ipaddress.IPv6Network):
        return net.subnet_of(block)
    return False


def _policy_from_document(
    reader: _Reader, document: Mapping[str, Any], source: str | None
) -> Policy:
    for name, value in document.items():
        if name not in _SECTION_KEYS:
            reader.fail(name, f"unknown section (allowed: {', '.join(sorted(_SECTION_KEYS))})")
        reader.table(name, value, _SECTION_KEYS[name], "rule" if name == "rules" else "key")

    warnings: list[str] = []
    site_name, timezone = _read_site(reader, document.get("site", {}))
    if timezone is None:
        timezone = machine_timezone()
        warnings.append(
            f"{reader.file_name}: site.timezone is not set: using this machine's time zone "
            f"{timezone} for business hours"
        )
    zone = _load_zone(timezone) or zoneinfo.ZoneInfo("UTC")
    days, start, end, holidays = _read_business_hours(reader, document.get("business_hours", {}))

    networks = document.get("networks", {})
    internal = DEFAULT_INTERNAL
    if "internal" in networks:
        internal = reader.networks("networks.internal", networks["internal"])
        if not internal:
            reader.fail(
                "networks.internal",
                "is empty (list your internal networks, or leave the key out for "
                "the default RFC 1918 + fc00::/7)",
            )
    isolated = reader.networks("networks.isolated", networks.get("isolated", []))
    internal_blocks = [ipaddress.ip_network(block) for block in internal.canonical()]
    for index, net in enumerate(isolated):
        inside = any(_is_subnet(net, block) for block in internal_blocks)
        if not inside:
            reader.fail(
                f"networks.isolated[{index}]",
                f"{str(net)!r} is not inside the internal networks ({internal}): "
                "isolated hosts are internal by definition; add it to networks.internal",
            )
    isolated_peers = reader.networks("networks.isolated_peers", networks.get("isolated_peers", []))
    if isolated_peers and not isolated:
        warnings.append(
            f"{reader.file_name}: networks.isolated_peers is set but networks.isolated is "
            "empty: the peers have no effect"
        )

    allowlist = document.get("allowlist", {})
    destinations = reader.networks("allowlist.destinations", allowlist.get("destinations", []))
    domains: list[str] = []
    for index, item in enumerate(reader.array("allowlist.domains", allowlist.get("domains", []))):
        path = f"allowlist.domains[{index}]"
        name = reader.string(path, item).strip().lower().rstrip(".")
        if not _DOMAIN_PATTERN.fullmatch(name):
            reader.fail(path, f"{item!r} is not a domain name (such as updates.example.org)")
        if name in domains:
            reader.fail(path, f"{name} is listed twice")
        domains.append(name)

    inspection = document.get("inspection", {})
    max_packets = 8
    if "max_packets" in inspection:
        max_packets = reader.integer("inspection.max_packets", inspection["max_packets"], 0,
                                     "0 (no payload inspection) to 255", 255)  # fmt: skip
    max_bytes = 2048
    if "max_bytes" in inspection:
        max_bytes = reader.integer("inspection.max_bytes", inspection["max_bytes"], 0,
                                   "0 or more", 65535)  # fmt: skip

    window_minutes = _DEFAULT_WINDOW_MINUTES
    if "window_minutes" in document.get("features", {}):
        path = "features.window_minutes"
        window_minutes = reader.integer(
            path, document["features"]["window_minutes"], 1, "1–1440, dividing 1440"
        )
        if window_minutes > MINUTES_PER_DAY or MINUTES_PER_DAY % window_minutes:
            reader.fail(
                path,
                f"{window_minutes} does not divide a day (use 1–1440 dividing 1440, "
                "such as 5, 10, 15, 30, 60)",
            )

    percentile = _DEFAULT_PERCENTILE
    if "percentile" in document.get("model", {}):
        path = "model.percentile"
        value = document["model"]["percentile"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            reader.expect(path, value, "a number")
        if not 0 < value <= 100:
            reader.fail(path, f"{value} is out of range (above 0, at most 100; e.g. 99.5)")
        percentile = float(value)

    rules_given = document.get("rules", {})
    rules = MappingProxyType(
        {
            rule_id: _rule_settings(
                rule_id,
                _read_rule(reader, rule_id, rules_given[rule_id]) if rule_id in rules_given else {},
            )
            for rule_id in RULE_IDS
        }
    )

    return Policy(
        site_name=site_name,
        timezone=timezone,
        zone=zone,
        business_days=days,
        business_start=start,
        business_end=end,
        holidays=holidays,
        internal=internal,
        isolated=isolated,
        isolated_peers=isolated_peers,
        allowlist_destinations=destinations,
        window_minutes=window_minutes,
        model_percentile=percentile,
        rules=rules,
        source=source,
        warnings=tuple(warnings),
        allowlist_domains=tuple(domains),
        inspect_max_packets=max_packets,
        inspect_max_bytes=max_bytes,
    )


def parse_policy(text: str, name: str = "policy.toml") -> Policy:
    """A policy from TOML text; ``name`` stands for the file in messages and
    becomes ``source``."""
    reader = _Reader(name)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{name}: not valid TOML: {error}") from None
    return _policy_from_document(reader, document, name)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and check a policy file; any problem raises one-line ``PolicyError``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as error:
        reason = error.strerror or str(error)
        raise PolicyError(f"{name}: cannot read the policy file: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(
            f"{name}: not UTF-8 text (byte {error.start}): a policy is a TOML text file"
        ) from None
    return parse_policy(text, name)
