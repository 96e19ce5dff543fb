"""Alert sinks for a live sensor: each alert is written the moment it is raised.

* ``table``: the scan's table layout, one alert (and its message) at a time;
* ``jsonl``: one ECS document per line (as ``scan --format jsonl``), flushed;
* syslog (RFC 5424): to the local daemon (``/dev/log``), over UDP, or over
  TCP (RFC 6587 octet counting) or TLS (RFC 5425) to a collector; the message
  is the alert's ECS JSON, so a SIEM parses it as it parses the JSON lines.
  Severity maps to syslog severity (critical → crit, high → err, medium →
  warning, low → notice); the facility is local0. A message is at most
  8,192 bytes: a longer alert has its longest texts and lists shortened (and
  ``egress.truncated: true``), never its JSON cut (:func:`fit_json`).
"""

from __future__ import annotations

import bisect
import os
import re
import socket
import sys
import textwrap
from collections.abc import Sequence
from typing import IO, Any
from zoneinfo import ZoneInfo

from ..errors import DetectorError
from ..units import human_bytes
from .mask import json_text, printable
from .record import ALERT_UPDATED, SEVERITY_NAMES, Alert, Observer, local_time, to_ecs
from .sending import AlertSender

STREAM_FORMATS = ("table", "jsonl")
SYSLOG_FACILITY_LOCAL0 = 16
# RFC 5424 severities: 2 critical, 3 error, 4 warning, 5 notice
SYSLOG_SEVERITY = {4: 2, 3: 3, 2: 4, 1: 5}
SYSLOG_PORT = 514
SYSLOG_LOCAL = "/dev/log"
SYSLOG_MAX_BYTES = 8192  # what rsyslog accepts by default; longer alerts are shortened to fit
SYSLOG_TLS_PORT = 6514  # RFC 5425
# Where a text was shortened to fit (U+2026, three bytes in UTF-8).
ELLIPSIS = "\u2026"


def table_line(alert: Alert, zone: ZoneInfo, width: int = 100) -> str:
    """One alert in the scan table's columns, with its message below; control
    characters from the traffic written as ``\x1b`` (a console shows them, it
    does not act on them)."""
    start = local_time(alert.start_ns, zone, digits=0)
    end = local_time(alert.end_ns, zone, digits=0)
    when = f"{start[:10]} {start[11:16]}–{end[11:16]}"
    other = printable(alert.destination_ip or "")
    if other and alert.destination_port is not None:
        other = (f"[{other}]" if ":" in other else other) + f":{alert.destination_port}"
    sent = human_bytes(alert.source_bytes) if alert.source_bytes else ""
    head = (
        f"{SEVERITY_NAMES.get(alert.severity, '?').upper():<9}{printable(alert.rule_id):<29}"
        f"{when:<28}{printable(alert.source_ip):<17}{other:<23}{sent}"
    )
    message = printable(alert.message)
    if alert.event_action == ALERT_UPDATED:
        # The same incident, written again because it went on.
        message = f"update {alert.event_sequence} (figures so far): {message}"
    body = "".join(f"    {line}\n" for line in textwrap.wrap(message, width=width - 4))
    return head.rstrip() + "\n" + body + f"    event.id {alert.ecs_id}\n"


class AlertStream:
    """Writes alerts as they come to a text stream (``table`` or ``jsonl``)
    and, optionally, sends them on (syslog, a webhook: ``syslog``, an
    :class:`AlertSender`)."""

    def __init__(
        self,
        fmt: str,
        stream: IO[str] | None,
        zone: ZoneInfo,
        site_name: str,
        *,
        syslog: AlertSender | None = None,
        observer: Observer | None = None,
    ) -> None:
        if fmt not in STREAM_FORMATS:
            raise ValueError(f"unknown live alert format {fmt!r} (one of table, jsonl)")
        self.fmt = fmt
        self.stream = stream
        self.zone = zone
        self.site_name = site_name
        self.syslog = syslog
        self.observer = observer  # ECS observer.*: the sensor's name and interface
        self._header_written = False

    def write(self, alerts: Sequence[Alert]) -> None:
        pairs = []
        for alert in alerts:
            # event.created: now, when this document is written (an update too).
            doc = to_ecs(alert, self.zone, self.site_name, observer=self.observer)
            if self.stream is not None:
                if self.fmt == "jsonl":
                    self.stream.write(json_text(doc) + "\n")
                else:
                    if not self._header_written:
                        self.stream.write(
                            f"{'SEVERITY':<9}{'RULE':<29}{'WHEN (local)':<28}{'HOST':<17}"
                            f"{'OTHER SIDE':<23}SENT\n"
                        )
                        self._header_written = True
                    self.stream.write(table_line(alert, self.zone))
            pairs.append((alert, doc))
        if self.stream is not None:
            self.stream.flush()
        if self.syslog is not None and pairs:
            self.syslog.send_all(pairs)  # together: a spool syncs the disk once

    def reopen(self, stream: IO[str]) -> None:
        """Write to ``stream`` from now on (the file at the path the old one
        had, after logrotate renamed it); the old one is closed."""
        old, self.stream = self.stream, stream
        self._header_written = False  # a new table file starts with its header
        if old is not None and old not in (sys.stdout, sys.stderr):
            old.close()

    def close(self) -> None:
        if self.syslog is not None:
            self.syslog.close()
        if self.stream is not None and self.stream not in (sys.stdout, sys.stderr):
            self.stream.close()


class SyslogSender:
    """RFC 5424 messages over a Unix datagram socket (``local``: ``/dev/log``;
    or a socket path starting with ``/``, for daemons that listen elsewhere,
    e.g. ``/run/systemd/journal/syslog``), UDP (``HOST[:PORT]`` or
    ``udp://HOST[:PORT]``, port 514 by default), TCP (``tcp://HOST[:PORT]``,
    514) or TLS (``tls://HOST[:PORT]``, 6514; the collector's certificate is
    checked against ``ca`` or the system's store, and its name against HOST;
    ``cert``/``key``: a client certificate). Over TCP and TLS each message is
    octet-counted (RFC 6587 / RFC 5425: ``MSG-LEN SP SYSLOG-MSG``) and written
    by a sender thread from a bounded queue, which reconnects with backoff
    (:class:`detector.alerts.delivery.SyslogConnection`)."""

    def __init__(
        self,
        target: str,
        *,
        app_name: str = "egress-detector",
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.app_name = app_name
        self.hostname = socket.gethostname() or "-"
        self.target = target
        self.sock: socket.socket | None = None
        scheme, sep, rest = target.partition("://")
        if not sep:
            scheme, rest = "", target
        if scheme not in ("", "udp", "tcp", "tls"):
            raise DetectorError(
                f"--syslog {target}: not a syslog target (local, a socket path, HOST[:PORT] or "
                "udp://HOST[:PORT], tcp://HOST[:PORT], tls://HOST[:PORT])"
            )
        if scheme != "tls" and (ca or cert or key):
            raise DetectorError(
                "--syslog-ca, --syslog-cert and --syslog-key are for --syslog tls://HOST[:PORT]"
            )
        if scheme in ("tcp", "tls"):
            from .delivery import SyslogConnection

            host, port = _host_port(
                rest, target, SYSLOG_TLS_PORT if scheme == "tls" else SYSLOG_PORT
            )
            self.connection: SyslogConnection | None = SyslogConnection(
                target, host, port, tls=scheme == "tls", ca=ca, cert=cert, key=key,
                **(options or {}),
            )  # fmt: skip
            return
        self.connection = None
        try:
            if scheme == "" and (target == "local" or target.startswith("/")):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.sock.connect(SYSLOG_LOCAL if target == "local" else target)
            else:
                host, port = _host_port(rest, target)
                family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
                self.sock = socket.socket(family[0], socket.SOCK_DGRAM)
                self.sock.connect(family[4])
        except OSError as exc:
            raise DetectorError(f"--syslog {target}: cannot reach the collector: {exc}") from None

    def format(self, alert: Alert, doc: dict[str, object]) -> bytes:
        """One RFC 5424 message: PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID
        MSGID STRUCTURED-DATA MSG, at most :data:`SYSLOG_MAX_BYTES` (an alert
        too long for that is shortened by :func:`fit_json`, still valid JSON)."""
        severity = SYSLOG_SEVERITY.get(alert.severity, 5)
        pri = SYSLOG_FACILITY_LOCAL0 * 8 + severity
        stamp = str(doc.get("@timestamp", "-"))
        msgid = alert.rule_id[:32] or "-"
        header = f"<{pri}>1 {stamp} {self.hostname[:255]} {self.app_name} {os.getpid()} {msgid} -"
        head = (header + " ").encode() + b"\xef\xbb\xbf"  # BOM: a UTF-8 MSG
        return head + fit_json(doc, SYSLOG_MAX_BYTES - len(head)).encode()

    def send(self, alert: Alert, doc: dict[str, object]) -> None:
        message = self.format(alert, doc)
        if self.connection is not None:
            self.connection.put(message)
            return
        assert self.sock is not None
        try:
            self.sock.send(message)
        except OSError as exc:  # a collector that went away must not stop the sensor
            print(f"egress-detector: warning: syslog {self.target}: {exc}", file=sys.stderr)

    def send_all(self, pairs: Sequence[tuple[Alert, dict[str, Any]]]) -> None:
        for alert, doc in pairs:
            self.send(alert, doc)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.sock is not None:
            self.sock.close()


# Fields fit_json never shortens: what identifies the alert and says when it was.
_KEPT = frozenset(
    {"@timestamp", "ecs", "event", "id", "ip", "port", "community_id", "severity_name", "truncated",
     "truncated_fields"}
)  # fmt: skip


def fit_json(doc: dict[str, Any], limit: int) -> str:
    """``json_text(doc)``, in at most ``limit`` UTF-8 bytes. A document too long
    is shortened, not cut: every text and list (the message, an evidence list)
    longer than some size is shortened to it, a text to a prefix ending in "…",
    a list to its first items, with that size as large as fits (so a long
    message and a long list both keep a fair share); the result says so
    (``egress.truncated: true``, and ``egress.truncated_fields``: which ones).
    Timestamps, ``event.*``, addresses, ports and ids are never shortened."""
    text = json_text(doc)
    size = len(text.encode())
    if size <= limit:
        return text
    sizes = _Sizes()

    def capped(cap: int) -> tuple[dict[str, Any], str]:
        names: list[str] = []
        out = _cap(doc, cap, (), names, sizes)
        egress = out.get("egress")
        out["egress"] = {**(egress if isinstance(egress, dict) else {}), "truncated": True,
                         "truncated_fields": names}  # fmt: skip
        return out, json_text(out)

    smallest, text = capped(0)
    if len(text.encode()) > limit:
        return _leave_out(smallest, limit)
    low, high = 0, size  # the largest cap that fits, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if len(capped(middle)[1].encode()) <= limit:
            low = middle
        else:
            high = middle - 1
    return capped(low)[1]


class _Sizes:
    """Sizes as JSON, in UTF-8 bytes, of the values of one document (by
    identity: the document is not changed while it is fitted)."""

    def __init__(self) -> None:
        self.known: dict[int, Any] = {}

    def of(self, value: Any) -> int:
        if isinstance(value, str):
            return self.chars(value)[-1] + 2
        return len(json_text(value).encode())

    def items(self, items: list[Any]) -> list[int]:
        key = id(items)
        if key not in self.known:
            self.known[key] = [self.of(item) for item in items]
        return self.known[key]  # type: ignore[no-any-return]

    def chars(self, text: str) -> list[int]:
        """Bytes of ``text``'s JSON form (without the quotes) after each
        character: [0, after the first, …]."""
        key = id(text)
        if key not in self.known:
            if json_text(text) == f'"{text}"':  # nothing escaped: UTF-8 lengths
                widths = [1 if c < "\x80" else len(c.encode()) for c in text]
            else:
                widths = [len(json_text(c).encode()) - 2 for c in text]
            total = [0]
            for width in widths:
                total.append(total[-1] + width)
            self.known[key] = total
        return self.known[key]  # type: ignore[no-any-return]


def _cap(value: Any, cap: int, path: tuple[str, ...], names: list[str], sizes: _Sizes) -> Any:
    """``value`` with every text and list of two or more items longer than
    ``cap`` bytes (as JSON) shortened to fit in it; the dotted names of those
    shortened added to ``names``."""
    if isinstance(value, dict):
        return {k: v if k in _KEPT else _cap(v, cap, (*path, str(k)), names, sizes)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        each = sizes.items(value)
        if len(value) >= 2 and 2 + sum(each) + 2 * (len(value) - 1) > cap:
            used, keep = 2 + each[0], 1
            while keep < len(value) and used + 2 + each[keep] <= cap:
                used += 2 + each[keep]
                keep += 1
            value = value[:keep]
            _named(path, names)
        return [_cap(item, cap, path, names, sizes) for item in value]
    if isinstance(value, str) and len(value) >= 2:
        after = sizes.chars(value)
        if after[-1] + 2 > cap:
            # The longest prefix that fits with "…" after it (just "…" if none),
            # when that is shorter than the text.
            keep = bisect.bisect_right(after, cap - 2 - len(ELLIPSIS.encode())) - 1
            if after[max(keep, 0)] + len(ELLIPSIS.encode()) < after[-1]:
                _named(path, names)
                return value[: max(keep, 0)] + ELLIPSIS
    return value


def _named(path: tuple[str, ...], names: list[str]) -> None:
    name = ".".join(path)
    if name not in names:
        names.append(name)


# Which fields _leave_out leaves out first (higher sooner): the evidence, the
# message, the rest; the list of what was shortened, then the addresses last.
_LEFT_OUT = {"message": 2.0, "truncated_fields": 0.5, "source": 0.0, "destination": 0.0}


def _leave_out(doc: dict[str, Any], limit: int) -> str:
    """A document of many short fields still too long: leave out whole fields
    (named in ``egress.truncated_fields`` while it fits), down to the time, the
    event, the rule and the addresses."""
    egress = doc["egress"]
    names: list[str] | None = egress["truncated_fields"]
    while True:
        text = json_text(doc)
        if len(text.encode()) <= limit:
            return text
        fields = [(3.0, len(json_text(v)), k, egress) for k, v in egress.items()
                  if k not in ("truncated", "truncated_fields", "severity_name")]  # fmt: skip
        if "truncated_fields" in egress:
            fields.append((_LEFT_OUT["truncated_fields"], 0, "truncated_fields", egress))
        fields += [(_LEFT_OUT.get(k, 1.0), len(json_text(v)), k, doc) for k, v in doc.items()
                   if k not in ("@timestamp", "event", "rule", "egress")]  # fmt: skip
        if not fields:
            return text  # only a limit far below any alert's size gets here
        *_, key, parent = max(fields, key=lambda f: f[:2])
        del parent[key]
        if key == "truncated_fields" and parent is egress:
            names = None
        elif names is not None:
            names.append(key if parent is doc else f"egress.{key}")


def _host_port(
    target: str, whole: str | None = None, default: int = SYSLOG_PORT
) -> tuple[str, int]:
    """(host, port) of HOST[:PORT] or [IPv6][:PORT]; a malformed one is a
    usage error now, not a collector that never answers later."""
    whole = printable(whole or target)
    if target.startswith("["):  # [2001:db8::1]:514
        host, bracket, rest = target[1:].partition("]")
        if not bracket:
            raise DetectorError(f"--syslog {whole}: an IPv6 address in [ ] lacks its ]")
        if rest and not rest.startswith(":"):
            raise DetectorError(f"--syslog {whole}: give [IPv6]:PORT")
        port = rest[1:] or str(default)
    elif target.count(":") == 1:
        host, port = target.split(":")
    elif ":" in target:
        raise DetectorError(f"--syslog {whole}: an IPv6 address goes in [ ]: [2001:db8::1]:514")
    else:
        host, port = target, str(default)
    if not host:
        raise DetectorError(f"--syslog {whole}: no host")
    if not _HOST.fullmatch(host) and not (target.startswith("[") and _IPV6.fullmatch(host)):
        raise DetectorError(f"--syslog {whole}: '{printable(host)}' is not a host name or address")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise DetectorError(f"--syslog {whole}: the port must be a number from 1 to 65535")
    return host, int(port)


# A host name (RFC 1123 labels; '_' tolerated) or an IPv4 address; an IPv6
# address in [ ]: hex digits, colons, dots (an embedded IPv4), a %zone.
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?")
