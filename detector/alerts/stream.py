"""Alert sinks for a live sensor: each alert is written the moment it is raised.

* ``table``: the scan's table layout, one alert (and its message) at a time;
* ``jsonl``: one ECS document per line (as ``scan --format jsonl``), flushed;
* syslog (RFC 5424): to the local daemon (``/dev/log``) or over UDP to a
  collector; the message is the alert's ECS JSON, so a SIEM parses it as it
  parses the JSON lines. Severity maps to syslog severity (critical → crit,
  high → err, medium → warning, low → notice); the facility is local0.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from collections.abc import Sequence
from typing import IO
from zoneinfo import ZoneInfo

from ..errors import DetectorError
from ..units import human_bytes
from .mask import json_text, printable
from .record import ALERT_UPDATED, SEVERITY_NAMES, Alert, local_time, to_ecs

STREAM_FORMATS = ("table", "jsonl")
SYSLOG_FACILITY_LOCAL0 = 16
# RFC 5424 severities: 2 critical, 3 error, 4 warning, 5 notice
SYSLOG_SEVERITY = {4: 2, 3: 3, 2: 4, 1: 5}
SYSLOG_PORT = 514
SYSLOG_LOCAL = "/dev/log"
SYSLOG_MAX_BYTES = 8192  # what rsyslog accepts by default; longer messages are cut


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
    return head.rstrip() + "\n" + body


class AlertStream:
    """Writes alerts as they come to a text stream (``table`` or ``jsonl``)
    and, optionally, to syslog."""

    def __init__(
        self,
        fmt: str,
        stream: IO[str] | None,
        zone: ZoneInfo,
        site_name: str,
        *,
        syslog: SyslogSender | None = None,
    ) -> None:
        if fmt not in STREAM_FORMATS:
            raise ValueError(f"unknown live alert format {fmt!r} (one of table, jsonl)")
        self.fmt = fmt
        self.stream = stream
        self.zone = zone
        self.site_name = site_name
        self.syslog = syslog
        self._header_written = False

    def write(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            doc = to_ecs(alert, self.zone, self.site_name)
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
            if self.syslog is not None:
                self.syslog.send(alert, doc)
        if self.stream is not None:
            self.stream.flush()

    def close(self) -> None:
        if self.syslog is not None:
            self.syslog.close()
        if self.stream is not None and self.stream not in (sys.stdout, sys.stderr):
            self.stream.close()


class SyslogSender:
    """RFC 5424 messages over a Unix datagram socket (``local``: ``/dev/log``;
    or a socket path starting with ``/``, for daemons that listen elsewhere,
    e.g. ``/run/systemd/journal/syslog``) or UDP (``HOST[:PORT]``, port 514
    by default)."""

    def __init__(self, target: str, *, app_name: str = "egress-detector") -> None:
        self.app_name = app_name
        self.hostname = socket.gethostname() or "-"
        self.target = target
        try:
            if target == "local" or target.startswith("/"):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.sock.connect(SYSLOG_LOCAL if target == "local" else target)
            else:
                host, port = _host_port(target)
                family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
                self.sock = socket.socket(family[0], socket.SOCK_DGRAM)
                self.sock.connect(family[4])
        except OSError as exc:
            raise DetectorError(f"--syslog {target}: cannot reach the collector: {exc}") from None

    def format(self, alert: Alert, doc: dict[str, object]) -> bytes:
        """One RFC 5424 message: PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID
        MSGID STRUCTURED-DATA MSG."""
        severity = SYSLOG_SEVERITY.get(alert.severity, 5)
        pri = SYSLOG_FACILITY_LOCAL0 * 8 + severity
        stamp = str(doc.get("@timestamp", "-"))
        msgid = alert.rule_id[:32] or "-"
        header = f"<{pri}>1 {stamp} {self.hostname[:255]} {self.app_name} {os.getpid()} {msgid} -"
        body = json_text(doc)
        message = (header + " ").encode() + b"\xef\xbb\xbf" + body.encode()  # BOM: UTF-8 MSG
        return message[:SYSLOG_MAX_BYTES]

    def send(self, alert: Alert, doc: dict[str, object]) -> None:
        try:
            self.sock.send(self.format(alert, doc))
        except OSError as exc:  # a collector that went away must not stop the sensor
            print(f"egress-detector: warning: syslog {self.target}: {exc}", file=sys.stderr)

    def close(self) -> None:
        self.sock.close()


def _host_port(target: str) -> tuple[str, int]:
    if target.startswith("["):  # [2001:db8::1]:514
        host, _, rest = target[1:].partition("]")
        return host, int(rest.lstrip(":") or SYSLOG_PORT)
    if target.count(":") == 1:
        host, port = target.split(":")
        if not port.isdigit():
            raise DetectorError(f"--syslog {target}: the port must be a number")
        return host, int(port)
    return target, SYSLOG_PORT
