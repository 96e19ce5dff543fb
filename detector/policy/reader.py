"""Reading a policy file: TOML in, a checked ``Policy`` out.

``load_policy`` checks the file completely before any traffic is read; any
problem is one ``PolicyError`` line naming the file, the key path, what was
wrong and what is allowed. ``[rules.<id>]`` is checked against each rule's
declared settings (detector/detect/rules/): their kinds read and normalise the
values, so a new rule's settings are checked without a line here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

from ..alerts.record import SEVERITY_NAMES
from ..detect.declare import DOMAIN_PATTERN
from ..detect.rules import BY_ID, POLICY_RULES
from ..errors import PolicyError
from ..networks import DEFAULT_INTERNAL, IPNetwork, NetworkSet, Triple, network_triple
from ..units import MINUTES_PER_DAY, format_minutes
from .site import (
    DAY_NAMES,
    DEFAULT_DAYS,
    DEFAULT_END,
    DEFAULT_PERCENTILE,
    DEFAULT_RECURRING_DAYS,
    DEFAULT_SITE_NAME,
    DEFAULT_START,
    DEFAULT_WINDOW_MINUTES,
    RULE_IDS,
    Policy,
    rule_settings,
)
from .suppress import read_suppressions
from .zones import load_zone, machine_timezone

_SEVERITY_BY_NAME = {name: level for level, name in SEVERITY_NAMES.items()}
MAX_POLICY_BYTES = 256 << 20
_INT64_MAX = (1 << 63) - 1  # TOML integers are 64-bit; rules compute in int64

_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "site": ("name", "timezone", "sensor"),
    "business_hours": ("days", "start", "end", "holidays"),
    "networks": ("internal", "isolated", "isolated_peers"),
    "allowlist": ("destinations", "domains"),
    "features": ("window_minutes",),
    "inspection": ("max_packets", "max_bytes"),
    "model": ("percentile",),
    "rules": RULE_IDS,
    "report": ("why", "recurring_days"),
    "suppress": (),  # an array of tables, read by policy/suppress.py
}
_TIME_PATTERN = re.compile(r"(\d\d):(\d\d)")


# TOML's name for each type tomllib gives, most specific first (bool is an int,
# datetime a date), for error messages.
_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (list, "array"),
    (dict, "table"), (dt.datetime, "date-time"), (dt.date, "date"), (dt.time, "time"),
)  # fmt: skip


def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for error messages."""
    return next((name for kind, name in _TOML_TYPES if isinstance(value, kind)),
                type(value).__name__)  # fmt: skip


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

    def typed(self, path: str, value: object, kind: type, expected: str) -> Any:
        """``value`` if it is of ``kind``, else a complaint that ``expected`` was."""
        if not isinstance(value, kind):
            self.expect(path, value, expected)
        return value

    def boolean(self, path: str, value: object) -> bool:
        return self.typed(path, value, bool, "true or false")

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
        return self.typed(path, value, str, "a string")

    def array(self, path: str, value: object) -> list[Any]:
        return self.typed(path, value, list, "an array")

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

    def network(self, path: str, value: object) -> Triple:
        if not isinstance(value, str):
            self.expect(path, value, 'a network as a string ("10.8.40.0/24")')
        text = value.strip()
        try:
            return network_triple(text)
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
        """A list of networks, each once: a site's allowlist may hold a million,
        so each is checked without making an object and repeats are found by hash."""
        items = self.array(path, value)
        seen: dict[Triple, None] = {}
        for index, item in enumerate(items):
            triple = self.network(f"{path}[{index}]", item)
            if triple in seen:
                net = NetworkSet([triple]).networks[0]
                self.fail(f"{path}[{index}]", f"{str(net)!r} is listed twice")
            seen[triple] = None
        return NetworkSet(seen)


def _read_site(reader: _Reader, section: Mapping[str, Any]) -> tuple[str, str | None]:
    name = DEFAULT_SITE_NAME
    if "name" in section:
        name = reader.string("site.name", section["name"]).strip()
        if not name or not name.isprintable():
            reader.fail("site.name", "must be one line of printable text, not empty")
    if "sensor" in section:
        sensor = reader.string("site.sensor", section["sensor"]).strip()
        if not sensor or not sensor.isprintable():
            reader.fail("site.sensor", "must be one line of printable text, not empty")
    timezone = None
    if "timezone" in section:
        timezone = reader.string("site.timezone", section["timezone"])
        if load_zone(timezone) is None:
            reader.fail(
                "site.timezone",
                f"unknown time zone {timezone!r} (an IANA name such as Asia/Taipei, "
                "Europe/Paris, UTC)",
            )
    return name, timezone


def _read_business_hours(
    reader: _Reader, section: Mapping[str, Any]
) -> tuple[frozenset[int], int, int, frozenset[dt.date]]:
    days = DEFAULT_DAYS
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
    start, end = DEFAULT_START, DEFAULT_END
    if "start" in section:
        start = reader.time_of_day("business_hours.start", section["start"], end=False)
    if "end" in section:
        end = reader.time_of_day("business_hours.end", section["end"], end=True)
    if start >= end:
        reader.fail(
            "business_hours",
            f"start {format_minutes(start)} is not before end {format_minutes(end)} "
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


def _read_report(reader: _Reader, section: Mapping[str, Any]) -> tuple[dict[str, str], int]:
    """``[report]``: the site's own words for "why it matters" by rule id
    (``[report.why]``), and how many days back an alert counts as recurring."""
    why: dict[str, str] = {}
    given = section.get("why", {})
    for rule_id, text in reader.table("report.why", given, BY_ID, "rule").items():
        words = reader.string(f"report.why.{rule_id}", text).strip()
        if not words:
            reader.fail(f"report.why.{rule_id}", "is empty (leave the key out for the rule's own "
                        "words)")  # fmt: skip
        why[rule_id] = words
    days = DEFAULT_RECURRING_DAYS
    if "recurring_days" in section:
        days = reader.integer("report.recurring_days", section["recurring_days"], 1,
                              "at least 1 day", 3660)  # fmt: skip
    return why, days


def _read_rule(reader: _Reader, rule_id: str, value: object) -> dict[str, Any]:
    detection = POLICY_RULES[rule_id]
    defaults = detection.defaults()
    section = reader.table(f"rules.{rule_id}", value, defaults)
    parsed = {
        key: detection.setting(key).kind.read(reader, f"rules.{rule_id}.{key}", item)
        for key, item in section.items()
    }
    if detection.validate is not None:
        detection.validate(reader, f"rules.{rule_id}", {**defaults, **parsed})
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
        if name != "suppress":
            reader.table(name, value, _SECTION_KEYS[name], "rule" if name == "rules" else "key")

    warnings: list[str] = []
    site_name, timezone = _read_site(reader, document.get("site", {}))
    if timezone is None:
        timezone = machine_timezone()
        warnings.append(
            f"{reader.file_name}: site.timezone is not set: using this machine's time zone "
            f"{timezone} for business hours"
        )
    zone = load_zone(timezone) or zoneinfo.ZoneInfo("UTC")
    sensor = str(document.get("site", {}).get("sensor", "")).strip() or None
    today = dt.datetime.now(zone).date()
    suppressions = read_suppressions(
        reader, document.get("suppress", []), tuple(BY_ID), DOMAIN_PATTERN, today, warnings
    )
    report_why, recurring_days = _read_report(reader, document.get("report", {}))
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
    domains: dict[str, None] = {}  # in order; a set for the look-ups (lists may be long)
    for index, item in enumerate(reader.array("allowlist.domains", allowlist.get("domains", []))):
        path = f"allowlist.domains[{index}]"
        name = reader.string(path, item).strip().lower().rstrip(".")
        if not DOMAIN_PATTERN.fullmatch(name):
            reader.fail(path, f"{item!r} is not a domain name (such as updates.example.org)")
        if name in domains:
            reader.fail(path, f"{name} is listed twice")
        domains[name] = None

    inspection = document.get("inspection", {})
    max_packets = 8
    if "max_packets" in inspection:
        max_packets = reader.integer("inspection.max_packets", inspection["max_packets"], 0,
                                     "0 (no payload inspection) to 255", 255)  # fmt: skip
    max_bytes = 2048
    if "max_bytes" in inspection:
        max_bytes = reader.integer("inspection.max_bytes", inspection["max_bytes"], 0,
                                   "0 or more", 65535)  # fmt: skip

    window_minutes = DEFAULT_WINDOW_MINUTES
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

    percentile = DEFAULT_PERCENTILE
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
            rule_id: rule_settings(
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
        sensor=sensor,
        suppressions=suppressions,
        report_why=MappingProxyType(report_why),
        recurring_days=recurring_days,
    )


def parse_policy(text: str, name: str = "policy.toml") -> Policy:
    """A policy from TOML text; ``name`` stands for the file in messages and
    becomes ``source``."""
    reader = _Reader(name)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{name}: not valid TOML: {error}") from None
    except RecursionError:
        # tomllib reads nested arrays and inline tables by recursion: a value
        # nested a thousand deep would otherwise end the process with a traceback.
        raise PolicyError(
            f"{name}: not a policy: arrays or tables nested too deeply (a policy nests "
            "at most three deep, as in [rules.<id>] ports = [25, 465])"
        ) from None
    return _policy_from_document(reader, document, name)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and check a policy file; any problem raises one-line ``PolicyError``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            # Read at most the cap and one byte more: /dev/zero, a FIFO that
            # never ends or a huge file must not take the machine's memory.
            data = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as error:
        reason = error.strerror or str(error)
        raise PolicyError(f"{name}: cannot read the policy file: {reason}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(
            f"{name}: larger than {MAX_POLICY_BYTES >> 20} MiB: not a policy file (a "
            "million-entry allowlist is about 20 MB); check the --policy path"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(
            f"{name}: not UTF-8 text (byte {error.start}): a policy is a TOML text file"
        ) from None
    return parse_policy(text, name)
