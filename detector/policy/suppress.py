"""Suppressions: alerts the site has looked at and accepted, for a while.

A ``[[suppress]]`` table in the policy names a rule, a host (an address or a
network), optionally the other side (an address, a network or a DNS name,
which covers its subdomains), the last day it holds (``until``, in the site's
local time) and why (``reason``, required: the next reader must know who
accepted what). An alert that matches one is *suppressed*: it is not written
as an alert (no line in the JSON lines, the table or the CSV, nothing sent to
syslog or the webhook, no exit status 1) but counted in scan's summary, the
nightly's summary and live's status line, and listed with its reason in the
daily report, so nothing disappears unseen (docs/policy.md).

``until`` is compared with the alert's own start, not with today: a scan of
last month's captures suppresses what the policy accepted then, and a nightly
day redone gives the same output. A suppression whose day has passed makes a
warning when the policy is read, so it is renewed or removed, not forgotten.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from ..alerts.record import Alert
    from .reader import _Reader

SUPPRESS_KEYS = ("rule", "host", "destination", "until", "reason")


@dataclass(frozen=True)
class Suppression:
    """One ``[[suppress]]`` table, checked."""

    rule: str
    host: ipaddress.IPv4Network | ipaddress.IPv6Network
    until: dt.date  # the last local day it holds
    reason: str
    # The other side: a network, or a DNS name (and its subdomains); None: any.
    destination_network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    destination_name: str | None = None

    @property
    def destination(self) -> str:
        """The other side as the policy gave it ('' for any)."""
        if self.destination_network is not None:
            return str(self.destination_network)
        return self.destination_name or ""

    def matches(self, alert: Alert, zone: ZoneInfo) -> bool:
        """Whether ``alert`` is one this suppression accepts: its rule, its host
        in ``host``, its other side matching ``destination`` (by address, or by
        a name the scan saw for it), starting on or before ``until`` (local)."""
        if alert.rule_id != self.rule or not _in(alert.source_ip, self.host):
            return False
        start = dt.datetime.fromtimestamp(alert.start_ns // 1_000_000_000, tz=zone).date()
        if start > self.until:
            return False
        if self.destination_network is not None:
            return _in(alert.destination_ip, self.destination_network)
        if self.destination_name is not None:
            names = [alert.destination_domain or "", *alert.destination_names]
            return any(_under(name, self.destination_name) for name in names if name)
        return True


@dataclass(frozen=True)
class Suppressed:
    """An alert held back by a suppression."""

    alert: Alert
    suppression: Suppression


def split_suppressed(
    alerts: Sequence[Alert], suppressions: Sequence[Suppression], zone: ZoneInfo
) -> tuple[list[Alert], list[Suppressed]]:
    """``alerts`` in two: those to write (in their order), and those a
    suppression accepts (each with the first that does)."""
    if not suppressions:
        return list(alerts), []
    kept: list[Alert] = []
    held: list[Suppressed] = []
    for alert in alerts:
        match = next((s for s in suppressions if s.matches(alert, zone)), None)
        if match is None:
            kept.append(alert)
        else:
            held.append(Suppressed(alert, match))
    return kept, held


def _in(address: str | None, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def _under(name: str, domain: str) -> bool:
    name = name.lower().rstrip(".")
    return name == domain or name.endswith("." + domain)


def read_suppressions(
    reader: _Reader,
    value: object,
    known_rules: Sequence[str],
    domain_pattern: Any,
    today: dt.date,
    warnings: list[str],
) -> tuple[Suppression, ...]:
    """The ``[[suppress]]`` array of tables, checked key by key with the policy
    reader's one-line errors (``suppress[2].until: ...``); a suppression whose
    ``until`` is before ``today`` adds a warning."""
    items = reader.typed("suppress", value, list, "an array of tables ([[suppress]])")
    out: list[Suppression] = []
    for index, item in enumerate(items):
        path = f"suppress[{index}]"
        table = reader.table(path, item, SUPPRESS_KEYS)
        for key in ("rule", "host", "until", "reason"):
            if key not in table:
                reader.fail(path, f"{key!r} is missing (a suppression needs rule, host, until "
                            "and reason; destination is optional)")  # fmt: skip
        rule = reader.string(f"{path}.rule", table["rule"]).strip()
        if rule not in known_rules:
            reader.fail(f"{path}.rule", f"unknown rule {rule!r} (known: {', '.join(known_rules)})")
        host = _network(reader, f"{path}.host", table["host"])
        until = _date(reader, f"{path}.until", table["until"])
        reason = reader.string(f"{path}.reason", table["reason"]).strip()
        if not reason or not reason.isprintable():
            reader.fail(f"{path}.reason", "must say why, in one line of printable text")
        network = name = None
        if "destination" in table:
            text = reader.string(f"{path}.destination", table["destination"]).strip()
            if _looks_like_address(text):
                network = _network(reader, f"{path}.destination", text)
            else:
                name = text.lower().rstrip(".")
                if not domain_pattern.fullmatch(name):
                    reader.fail(
                        f"{path}.destination",
                        f"{text!r} is not an address, a network or a DNS name "
                        "(203.0.113.7, 203.0.113.0/24, files.example.net)",
                    )
        if until < today:
            warnings.append(
                f"{reader.file_name}: {path}: expired on {until} ({rule} for {host}"
                f"{' to ' + (str(network) if network else name or '') if network or name else ''}"
                f": {reason}): alerts after it are raised again; renew or remove it"
            )
        out.append(Suppression(rule, host, until, reason, network, name))
    return tuple(out)


def _looks_like_address(text: str) -> bool:
    head = text.split("/", 1)[0]
    try:
        ipaddress.ip_address(head)
    except ValueError:
        return False
    return True


def _network(
    reader: _Reader, path: str, value: object
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address (one host) or a network in CIDR, host bits not allowed."""
    if not isinstance(value, str):
        reader.expect(path, value, 'an address or a network as a string ("10.8.40.31", '
                      '"10.8.40.0/24")')  # fmt: skip
    reader.network(path, value)  # the policy's one check of a network, and its advice
    return ipaddress.ip_network(value.strip())


def _date(reader: _Reader, path: str, value: object) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value)
        except ValueError:
            pass
        reader.fail(path, f"{value!r} is not a date (use YYYY-MM-DD)")
    reader.expect(path, value, 'a date (2026-03-31 or "2026-03-31")')
