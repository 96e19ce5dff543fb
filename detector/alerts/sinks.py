"""Where alerts go: a table for a person, JSON lines (ECS) for a SIEM, CSV for a
spreadsheet. Every format carries the same alerts in the same order (worst
first).

Names in alerts come from the traffic, so they may hold anything a hostile
packet puts there: the table writes control characters as ``\x1b``
(:func:`~detector.alerts.mask.printable`, so a name cannot retitle or clear
the terminal), and so does CSV, where a cell also cannot start as a formula
(:func:`~detector.alerts.mask.csv_cell`); JSON lines escape DEL and C1 as
JSON escapes C0 (:func:`~detector.alerts.mask.json_text`). ID numbers are
already masked in the alert itself (record.py)."""

from __future__ import annotations

import csv
import io
import shlex
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from ..units import human_bytes
from .mask import csv_cell, json_text, printable
from .record import SEVERITY_NAMES, Alert, Observer, initiator_is_host, local_time, to_ecs

ALERT_FORMATS = ("table", "jsonl", "csv")
# An output file's format by its extension, when none is given.
ALERT_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}

CSV_COLUMNS = (
    "@timestamp",
    "severity",
    "severity_name",
    "rule_id",
    "rule_name",
    "start",
    "end",
    "source_ip",
    "source_bytes",
    "source_packets",
    "source_port",
    "destination_ip",
    "destination_port",
    "destination_domain",
    "destination_bytes",
    "destination_packets",
    "transport",
    "direction",
    "community_id",
    "site",
    "message",
    "event_id",  # ECS event.id: the same incident has the same one in every output
    "created",  # ECS event.created: when this file was written
    "observer_hostname",
)


def alert_format(fmt: str | None, output: str | None) -> str:
    """The format to write alerts in: ``fmt`` when given, else the one of
    ``output``'s extension (``ALERT_SUFFIXES``), else a table."""
    if fmt:
        return fmt
    suffix = Path(output).suffix.lower() if output else ""
    return ALERT_SUFFIXES.get(suffix, "table")


def write_alerts(
    alerts: Sequence[Alert],
    fmt: str,
    output: str | None,
    zone: ZoneInfo,
    site_name: str,
    *,
    created_ns: int | None = None,
    observer: Observer | None = None,
) -> None:
    """Write ``alerts`` as ``fmt`` to the file ``output`` (stdout when None).
    ``created_ns`` and ``observer``: ECS ``event.created`` (now when None) and
    ``observer.*`` (:func:`~detector.alerts.record.to_ecs`)."""
    if fmt not in ALERT_FORMATS:
        raise ValueError(f"unknown alert format {fmt!r} (one of {', '.join(ALERT_FORMATS)})")
    created = time.time_ns() if created_ns is None else created_ns
    sensor = observer or Observer()
    if output is None:
        _write(alerts, fmt, sys.stdout, zone, site_name, created, sensor)
        sys.stdout.flush()
        return
    with open(output, "w", encoding="utf-8", newline="") as stream:
        _write(alerts, fmt, stream, zone, site_name, created, sensor)


def _write(
    alerts: Sequence[Alert],
    fmt: str,
    stream: IO[str],
    zone: ZoneInfo,
    site: str,
    created_ns: int,
    observer: Observer,
) -> None:
    if fmt == "jsonl":
        for alert in alerts:
            doc = to_ecs(alert, zone, site, created_ns=created_ns, observer=observer)
            stream.write(json_text(doc) + "\n")
    elif fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for alert in alerts:
            row = _csv_row(alert, zone, site, created_ns, observer)
            writer.writerow([csv_cell(cell) for cell in row])
    else:
        stream.write(format_table(alerts, zone, site))


def _csv_row(
    alert: Alert, zone: ZoneInfo, site: str, created_ns: int, observer: Observer
) -> list[Any]:
    # source_* and destination_* as in ECS: source is the side that started
    # the conversation (the other side, when the site's host was the server).
    if alert.destination_ip and not initiator_is_host(alert):
        alert = replace(
            alert,
            **{f"{side}_{part}": getattr(alert, f"{other}_{part}")
               for side, other in (("source", "destination"), ("destination", "source"))
               for part in ("ip", "port", "bytes", "packets")},
        )  # fmt: skip
    return [
        local_time(alert.start_ns, zone),
        alert.severity,
        SEVERITY_NAMES.get(alert.severity, ""),
        alert.rule_id,
        alert.rule_name,
        local_time(alert.start_ns, zone),
        local_time(alert.end_ns, zone),
        alert.source_ip,
        alert.source_bytes,
        alert.source_packets,
        "" if alert.source_port is None else alert.source_port,
        alert.destination_ip or "",
        "" if alert.destination_port is None else alert.destination_port,
        alert.destination_domain or "",
        alert.destination_bytes if alert.destination_ip else "",
        alert.destination_packets if alert.destination_ip else "",
        alert.transport or "",
        alert.direction or "",
        alert.community_id or "",
        site,
        alert.message,
        alert.ecs_id,
        local_time(created_ns, zone),
        alert.observer_hostname or observer.hostname or "",
    ]


def carve_command(alert: Alert, zone: ZoneInfo, captures: Sequence[str] = ("CAPTURE...",)) -> str:
    """The `egress-detector carve` command that writes the packets behind
    ``alert``: every flow of its host (and other side) with a packet in its
    span, from ``captures``."""
    words = ["egress-detector", "carve", "--host", alert.source_ip]
    if alert.destination_ip:
        words += ["--peer", alert.destination_ip]
    # Whole seconds: --to takes in the second of the last packet.
    start = local_time(alert.start_ns, zone, digits=0)
    end = local_time(alert.end_ns, zone, digits=0)
    name = f"{alert.rule_id}-{alert.source_ip}".replace(":", "_") + ".pcap"
    words += ["--from", start, "--to", end, "-o", name]
    return shlex.join(words) + " " + " ".join(shlex.quote(c) if c != "CAPTURE..." else c
                                              for c in captures)  # fmt: skip


def format_table(alerts: Sequence[Alert], zone: ZoneInfo, site: str, width: int = 100) -> str:
    """Alerts for a person: worst first, local times, sizes in kB/MB/GB."""
    out = io.StringIO()
    site = printable(site)
    if not alerts:
        out.write(f"no alerts ({site})\n")
        return out.getvalue()
    header = f"{'SEVERITY':<9}{'RULE':<29}{'WHEN (local)':<28}{'HOST':<17}{'OTHER SIDE':<23}SENT"
    out.write(header + "\n")
    for alert in alerts:
        start = local_time(alert.start_ns, zone, digits=0)
        end = local_time(alert.end_ns, zone, digits=0)
        when = f"{start[:10]} {start[11:16]}–{end[11:16]}"
        if start[:10] != end[:10]:
            when = f"{start[5:10]} {start[11:16]}–{end[5:10]} {end[11:16]}"
        other = printable(alert.destination_ip or "")
        if other and alert.destination_port is not None:
            other = f"[{other}]" if ":" in other else other
            # An ephemeral port on the other side says nothing: show the service's.
            if alert.source_port is None or alert.destination_port <= alert.source_port:
                other += f":{alert.destination_port}"
        sent = human_bytes(alert.source_bytes) if alert.source_bytes else ""
        out.write(
            f"{SEVERITY_NAMES.get(alert.severity, '?').upper():<9}{printable(alert.rule_id):<29}"
            f"{when:<28}{printable(alert.source_ip):<17}{other:<23}{sent}\n"
        )
        for line in textwrap.wrap(printable(alert.message), width=width - 4):
            out.write(f"    {line}\n")
        out.write(f"    event.id {alert.ecs_id}\n")
        if alert.source_ip:
            out.write(f"    packets: {printable(carve_command(alert, zone))}\n")
    counts: dict[str, int] = {}
    for alert in alerts:
        name = SEVERITY_NAMES.get(alert.severity, "?")
        counts[name] = counts.get(name, 0) + 1
    summary = ", ".join(
        f"{counts[name]} {name}" for name in ("critical", "high", "medium", "low") if name in counts
    )
    out.write(f"\n{len(alerts)} alert(s) for {site}: {summary}; times are {zone.key} local time\n")
    return out.getvalue()
