"""A host's night at a glance: minute by minute bytes out and in, the outside
addresses it talked to with their names, and its alerts, in the site's local
time; as a table for the terminal, CSV, or a hand-written SVG chart.

Built from a scan (``ScanResult``): its per-minute traffic of internal hosts
(``HostTraffic``), the names payload inspection found (``Names``) and its
alerts, so the figures are the ones the rules judged.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from ..alerts.mask import mask_personal, printable
from ..alerts.record import SEVERITY_NAMES, Alert
from ..alerts.sinks import carve_command
from ..errors import DetectorError
from ..networks import address_pair
from ..units import MINUTE_NS, human_bytes

if TYPE_CHECKING:
    from ..pipelines.scan import ScanResult
    from ..policy import Policy

PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
NAMES_SHOWN = 3


@dataclass(frozen=True)
class Minute:
    minute_ns: int  # start of the minute (UTC ns)
    bytes_out: int
    bytes_in: int
    packets_out: int
    packets_in: int
    top_peer: str  # the outside address (or else the address) with most bytes that minute


@dataclass(frozen=True)
class Destination:
    address: str
    names: tuple[str, ...]
    services: str  # 'tcp/443, udp/53'
    bytes_out: int
    bytes_in: int
    first_ns: int
    last_ns: int
    outside: bool


@dataclass(frozen=True)
class Timeline:
    host: str
    minutes: list[Minute]
    destinations: list[Destination]  # most bytes first
    alerts: list[Alert]  # earliest first


def host_timeline(
    scan: ScanResult, host: str, policy: Policy, span: tuple[int, int] | None = None
) -> Timeline:
    """The timeline of ``host`` (an internal address) in ``scan``; with
    ``span`` (UTC ns, start included), only its minutes and alerts there."""
    traffic = scan.traffic
    hi, lo = address_pair(host)
    ids = np.flatnonzero(
        (traffic.address_hi == np.uint64(hi)) & (traffic.address_lo == np.uint64(lo))
    )
    frame = traffic.frame
    rows = frame[frame["host_id"].to_numpy() == ids[0]] if len(ids) else frame.iloc[:0]
    if span is not None and len(rows):
        minute_ns = rows["minute_ns"].to_numpy(dtype=np.int64)
        rows = rows[(minute_ns >= span[0]) & (minute_ns < span[1])]
    if not len(rows):
        internal = bool(
            policy.internal.contains(np.array([hi], np.uint64), np.array([lo], np.uint64))[0]
        )
        why = "it sent and received nothing in these captures" if internal else (
            "it is not in the policy's internal networks (timelines are of the site's own hosts)"
        )  # fmt: skip
        raise DetectorError(f"--host {host}: no timeline: {why}")
    minute = rows["minute_ns"].to_numpy(dtype=np.int64)
    out_b = rows["bytes_out"].to_numpy(dtype=np.int64)
    in_b = rows["bytes_in"].to_numpy(dtype=np.int64)
    out_p = rows["packets_out"].to_numpy(dtype=np.int64)
    in_p = rows["packets_in"].to_numpy(dtype=np.int64)
    peer = rows["peer_id"].to_numpy(dtype=np.int64)
    external = rows["peer_external"].to_numpy(dtype=bool)
    minutes = []
    for m in np.unique(minute).tolist():
        here = minute == m
        total = out_b[here] + in_b[here]
        # The outside address with most bytes that minute; else any address.
        rank = np.where(external[here], total, -1)
        pick = int(np.argmax(rank)) if (rank >= 0).any() else int(np.argmax(total))
        minutes.append(Minute(int(m), int(out_b[here].sum()), int(in_b[here].sum()),
                              int(out_p[here].sum()), int(in_p[here].sum()),
                              traffic.text(int(peer[here][pick]))))  # fmt: skip
    destinations = []
    names = scan.names
    first = rows["first_ns"].to_numpy(dtype=np.int64)
    last = rows["last_ns"].to_numpy(dtype=np.int64)
    port = rows["peer_port"].to_numpy(dtype=np.int64)
    host_port = rows["host_port"].to_numpy(dtype=np.int64)
    proto = rows["proto"].to_numpy(dtype=np.int64)
    for p in np.unique(peer).tolist():
        here = peer == p
        address = traffic.text(int(p))
        found = tuple(mask_personal(n) for n in (names.of(address) if names else [])[:10])
        service = np.minimum(port[here], host_port[here])
        weight: dict[str, int] = {}
        for s, pr, b in zip(service.tolist(), proto[here].tolist(),
                            (out_b[here] + in_b[here]).tolist(), strict=True):  # fmt: skip
            name = PROTOCOL_NAMES.get(pr, f"proto {pr}")
            key = f"{name}/{s}" if pr in (6, 17, 132) else name
            weight[key] = weight.get(key, 0) + b
        services = ", ".join(k for k, _ in sorted(weight.items(), key=lambda kv: -kv[1])[:4])
        destinations.append(Destination(
            address, found, services, int(out_b[here].sum()), int(in_b[here].sum()),
            int(first[here].min()), int(last[here].max()), bool(external[here].any()),
        ))  # fmt: skip
    destinations.sort(key=lambda d: (-(d.bytes_out + d.bytes_in), d.address))
    alerts = sorted(
        (a for a in scan.alerts if a.source_ip == host
         and (span is None or (a.end_ns >= span[0] and a.start_ns < span[1]))),
        key=lambda a: a.start_ns,
    )  # fmt: skip
    return Timeline(host, minutes, destinations, alerts)


def local(ts_ns: int, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    moment = dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=dt.UTC).astimezone(zone)
    return moment.strftime(fmt)


def timeline_csv(timeline: Timeline, zone: ZoneInfo) -> str:
    """One line per minute with traffic: local minute, bytes and packets each way."""
    lines = ["minute_local,bytes_out,bytes_in,packets_out,packets_in,top_peer"]
    for m in timeline.minutes:
        lines.append(f"{local(m.minute_ns, zone)},{m.bytes_out},{m.bytes_in},"
                     f"{m.packets_out},{m.packets_in},{m.top_peer}")  # fmt: skip
    return "\n".join(lines) + "\n"


def timeline_table(timeline: Timeline, zone: ZoneInfo, captures: Sequence[str] = ()) -> str:
    """The timeline for a terminal: minutes (quiet stretches folded), the
    destinations, the alerts with the command that carves each."""
    out = [
        f"{timeline.host}: {len(timeline.minutes)} active minute(s), local time ({zone.key})",
        "",
    ]
    starts: dict[int, list[Alert]] = {}
    for alert in timeline.alerts:
        starts.setdefault(alert.start_ns - alert.start_ns % MINUTE_NS, []).append(alert)
    peak = max((m.bytes_out + m.bytes_in for m in timeline.minutes), default=0) or 1
    out.append(f"{'MINUTE':16}  {'OUT':>10}  {'IN':>10}  {'':20}  TOP OTHER SIDE")
    previous = None
    for m in timeline.minutes:
        if previous is not None and m.minute_ns - previous > MINUTE_NS:
            quiet = (m.minute_ns - previous) // MINUTE_NS - 1
            out.append(f"{'':16}  … {quiet} quiet minute(s)")
        bar = "#" * max(1, round(20 * (m.bytes_out + m.bytes_in) / peak))
        line = (f"{local(m.minute_ns, zone):16}  {human_bytes(m.bytes_out):>10}  "
                f"{human_bytes(m.bytes_in):>10}  {bar:20}  {m.top_peer}")  # fmt: skip
        for alert in starts.get(m.minute_ns, []):
            line += f"  <- {SEVERITY_NAMES.get(alert.severity, '?')} {alert.rule_id}"
        out.append(line)
        previous = m.minute_ns
    out += ["", f"{'OTHER SIDE':40}  {'SERVICES':20}  {'SENT':>10}  {'RECEIVED':>10}  FROM - TO"]
    for d in timeline.destinations[:30]:
        shown = d.address + (f" ({', '.join(d.names[:NAMES_SHOWN])})" if d.names else "")
        where = "" if d.outside else " [internal]"
        out.append(f"{shown + where:40}  {d.services:20}  {human_bytes(d.bytes_out):>10}  "
                   f"{human_bytes(d.bytes_in):>10}  {local(d.first_ns, zone, '%H:%M')} - "
                   f"{local(d.last_ns, zone, '%H:%M')}")  # fmt: skip
    if len(timeline.destinations) > 30:
        out.append(f"… and {len(timeline.destinations) - 30} more")
    out += ["", f"ALERTS ({len(timeline.alerts)})"]
    for alert in timeline.alerts:
        out.append(f"{SEVERITY_NAMES.get(alert.severity, '?').upper():8} {alert.rule_id:28} "
                   f"{local(alert.start_ns, zone)} - {local(alert.end_ns, zone, '%H:%M')}  "
                   f"{alert.destination_ip or ''}")  # fmt: skip
        out.append(f"    {alert.message}")
        if captures:
            out.append(f"    packets: {carve_command(alert, zone, captures)}")
    # Names and messages come from the traffic: a control sequence in one
    # (ESC ]0; retitles the window, ESC [2J clears it) is shown, not run.
    return "\n".join(printable(line) for line in out) + "\n"


def _svg_text(text: str) -> str:
    """Text from the traffic for the SVG: control characters written as
    ``\\x1b`` (XML 1.0 allows none of them, not even as references, so a
    viewer would refuse the whole chart), then escaped as XML."""
    return html.escape(printable(text))


SVG_WIDTH, SVG_HEIGHT = 960, 360
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 70, 940, 40, 320
OUT_COLOUR, IN_COLOUR, ALERT_COLOUR = "#c0392b", "#2e86c1", "#f5b041"


def timeline_svg(timeline: Timeline, zone: ZoneInfo) -> str:
    """The timeline as an SVG chart: bytes out per minute above the axis, in
    below, alert spans shaded behind, local hour ticks. Hand-written SVG 1.1."""
    minutes = timeline.minutes
    first = minutes[0].minute_ns
    last = minutes[-1].minute_ns + MINUTE_NS
    for alert in timeline.alerts:
        first, last = (
            min(first, alert.start_ns - alert.start_ns % MINUTE_NS),
            max(last, alert.end_ns),
        )
    span = max(last - first, MINUTE_NS)
    width = PLOT_RIGHT - PLOT_LEFT
    axis = (PLOT_TOP + PLOT_BOTTOM) / 2
    half = (PLOT_BOTTOM - PLOT_TOP) / 2
    peak = max(max(m.bytes_out, m.bytes_in) for m in minutes) or 1

    def x(ts: int) -> float:
        return PLOT_LEFT + width * (ts - first) / span

    bar = max(width * MINUTE_NS / span - 0.5, 0.5)
    title = (f"{timeline.host}: bytes per minute, {local(first, zone)} to "
             f"{local(last, zone)} ({zone.key})")  # fmt: skip
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{SVG_HEIGHT}" '
        f'viewBox="0 0 {SVG_WIDTH} {SVG_HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{_svg_text(title)}</title>",
        f'<rect width="{SVG_WIDTH}" height="{SVG_HEIGHT}" fill="white"/>',
        f'<text x="{PLOT_LEFT}" y="20" font-size="13">{_svg_text(title)}</text>',
    ]
    for alert in timeline.alerts:
        left, right = x(alert.start_ns - alert.start_ns % MINUTE_NS), x(alert.end_ns)
        label = f"{alert.rule_id} ({SEVERITY_NAMES.get(alert.severity, '?')})"
        parts.append(
            f'<rect class="alert" x="{left:.1f}" y="{PLOT_TOP}" width="{max(right - left, 1):.1f}" '
            f'height="{PLOT_BOTTOM - PLOT_TOP}" fill="{ALERT_COLOUR}" fill-opacity="0.25">'
            f"<title>{_svg_text(label + ': ' + alert.message)}</title></rect>"
        )
    for m in minutes:
        up = half * m.bytes_out / peak
        down = half * m.bytes_in / peak
        at = x(m.minute_ns)
        when = local(m.minute_ns, zone, "%H:%M")
        if m.bytes_out:
            parts.append(
                f'<rect class="out" x="{at:.1f}" y="{axis - up:.1f}" width="{bar:.1f}" '
                f'height="{up:.1f}" fill="{OUT_COLOUR}"><title>{when} sent '
                f"{human_bytes(m.bytes_out)} (top: {_svg_text(m.top_peer)})</title></rect>"
            )
        if m.bytes_in:
            parts.append(
                f'<rect class="in" x="{at:.1f}" y="{axis:.1f}" width="{bar:.1f}" '
                f'height="{down:.1f}" fill="{IN_COLOUR}"><title>{when} received '
                f"{human_bytes(m.bytes_in)}</title></rect>"
            )
    parts.append(
        f'<line x1="{PLOT_LEFT}" y1="{axis}" x2="{PLOT_RIGHT}" y2="{axis}" stroke="#333"/>'
    )
    # Hour ticks in local time (every 10 minutes when the span is short).
    step = 3_600_000_000_000 if span > 3 * 3_600_000_000_000 else 600_000_000_000
    shift = dt.datetime.fromtimestamp(first // 1_000_000_000, tz=zone).utcoffset()
    offset = int(shift.total_seconds()) * 1_000_000_000 if shift else 0
    tick = first - (first + offset) % step + step
    while tick < last:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{PLOT_BOTTOM}" x2="{x(tick):.1f}" '
            f'y2="{PLOT_BOTTOM + 5}" stroke="#333"/><text x="{x(tick):.1f}" '
            f'y="{PLOT_BOTTOM + 18}" text-anchor="middle">{local(tick, zone, "%H:%M")}</text>'
        )
        tick += step
    left = PLOT_LEFT - 6
    parts += [
        f'<text x="{left}" y="{PLOT_TOP + 10}" text-anchor="end">{human_bytes(peak)}</text>',
        f'<text x="{left}" y="{axis - 4}" text-anchor="end" fill="{OUT_COLOUR}">out</text>',
        f'<text x="{left}" y="{axis + 14}" text-anchor="end" fill="{IN_COLOUR}">in</text>',
        f'<text x="{left}" y="{PLOT_BOTTOM}" text-anchor="end">{human_bytes(peak)}</text>',
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
