"""The day's report as one self-contained HTML page.

Everything is inline: the style sheet (allowed by its hash in a strict
Content-Security-Policy, so the page can load nothing from anywhere and runs no
script), and the plots, drawn here as SVG. Every text that comes from the
traffic (addresses, names, messages, file names) passes through :func:`_text`,
which masks national ID numbers and HTML-escapes it: a hostile DNS name is
shown, never interpreted.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import os
from collections.abc import Iterable

from ..alerts.mask import mask_personal
from ..outputs import replacing
from ..units import human_bytes
from .day import NS, AlertEntry, DayReport, HourBar

# The previous/next links of a day's page sit between these marks, so the
# nightly can rewrite them when a neighbouring day's report appears (nav_html).
NAV_START, NAV_END = "<!-- days -->", "<!-- /days -->"
INDEX_NAME = "index.html"


def report_name(day: dt.date) -> str:
    """The file name of ``day``'s report in the report directory."""
    return f"egress-report-{day.isoformat()}.html"


def nav_html(previous: dt.date | None, following: dt.date | None, index: bool = True) -> str:
    """The links to the day before, the index (``index``: a report directory
    has one) and the day after (those that have a report), between
    :data:`NAV_START` and :data:`NAV_END`."""
    links = []
    if previous is not None:
        links.append(f'<a rel="prev" href="{report_name(previous)}">← {previous.isoformat()}</a>')
    if index:
        links.append(f'<a href="{INDEX_NAME}">all days</a>')
    if following is not None:
        links.append(f'<a rel="next" href="{report_name(following)}">{following.isoformat()} →</a>')
    return f'{NAV_START}<nav class="days">{" · ".join(links)}</nav>{NAV_END}'


def _text(value: object) -> str:
    """Data → safe HTML text: masked, then escaped (quotes too, for attributes).

    Alerts already carry ID numbers masked; masking here too, with the same
    function, is the last line of defence for a number that reached the report
    some other way (bulletin No. 4: the report must not become a new leak)."""
    return html.escape(mask_personal(str(value)), quote=True)


def _wrap(value: object) -> str:
    """A long text (a DNS name, a file path) that may break anywhere in a table."""
    return f'<span class="wrap">{_text(value)}</span>'


def _n(value: int) -> str:
    return f"{value:,}"


def _size(value: int) -> str:
    """'62.7 MB' with the exact count for a tooltip-less reader: '62.7 MB (62,712,345 B)'."""
    human = human_bytes(value)
    if value < 1000:
        return human
    return f'{human} <span class="exact">({_n(value)} B)</span>'


STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 auto; max-width: 1000px; padding: 16px 24px 48px; color: #1b1f24;
  background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de;
  padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0 0 6px; }
.sub { color: #57606a; margin: 0 0 12px; }
.calm { background: #e6f4ea; border: 1px solid #a6d8b5; padding: 10px 14px;
  border-radius: 6px; }
.summary { list-style: none; padding: 0; margin: 8px 0; }
.summary li { margin: 4px 0; }
.badge { display: inline-block; min-width: 64px; text-align: center; font-weight: 600;
  font-size: 12px; padding: 1px 6px; border-radius: 4px; color: #fff;
  text-transform: uppercase; margin-right: 6px; }
.sev-critical { background: #8b0000; }
.sev-high { background: #cf222e; }
.sev-medium { background: #bf8700; }
.sev-low { background: #57606a; }
.counts { font-size: 16px; margin: 8px 0; }
.alert { border: 1px solid #d0d7de; border-radius: 6px; padding: 12px 14px; margin: 14px 0;
  break-inside: avoid; }
.alert.sev-critical, .alert.sev-high, .alert.sev-medium, .alert.sev-low {
  background: #fff; border-left-width: 6px; }
.alert.sev-critical { border-left-color: #8b0000; }
.alert.sev-high { border-left-color: #cf222e; }
.alert.sev-medium { border-left-color: #bf8700; }
.alert.sev-low { border-left-color: #57606a; }
dl.facts { display: grid; grid-template-columns: 9em 1fr; gap: 2px 12px; margin: 8px 0; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; font-size: 13px; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eaeef2;
  vertical-align: top; }
dd, li, p { overflow-wrap: break-word; }
.wrap { overflow-wrap: anywhere; }
th { background: #f6f8fa; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.exact { color: #57606a; font-size: 12px; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; }
.muted { color: #57606a; }
.warn { color: #9a6700; font-weight: 600; }
svg.timeline { display: block; margin: 6px 0 0; max-width: 100%; height: auto; }
.legend { font-size: 12px; margin: 0 0 8px; }
svg .off { fill: #e8ebef; }
svg .bar { fill: #0969da; }
svg .bar.hot { fill: #cf222e; }
svg .span { fill: none; stroke: #cf222e; stroke-width: 1.5; stroke-dasharray: 3 2; }
svg text { font: 10px system-ui, sans-serif; fill: #57606a; }
svg .axis { stroke: #8c959f; stroke-width: 1; }
footer { margin-top: 32px; color: #57606a; font-size: 12px; }
nav.days { font-size: 13px; margin: 0 0 8px; }
.recurring { color: #57606a; font-size: 12px; }
.new { color: #8b0000; font-size: 12px; font-weight: 600; }
svg .count { fill: #cf222e; }
@media print { body { max-width: none; } }
""".strip()


def _style_hash() -> str:
    digest = hashlib.sha256(STYLE.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


# Nothing may load or run: no scripts, no fetches, no frames, no forms; only the
# one inline style sheet (by hash). SVG is inline markup, not an image load.
CSP = f"default-src 'none'; style-src '{_style_hash()}'; base-uri 'none'; form-action 'none'"


def page_head(title: str) -> list[str]:
    """The start of every page, up to ``<body>``: no scripts, no outside resources
    (the CSP forbids both), no referrer."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_text(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
    ]


def _local(report: DayReport, ts_ns: int, fmt: str = "%H:%M") -> str:
    from zoneinfo import ZoneInfo

    moment = dt.datetime.fromtimestamp(ts_ns // NS, tz=ZoneInfo(report.timezone))
    return moment.strftime(fmt)


def _when(report: DayReport, start_ns: int, end_ns: int) -> str:
    """'02:13–02:19' on the report's day, with the date when it is another day."""
    fmt_day = "%a %Y-%m-%d %H:%M"

    def one(ts: int) -> str:
        if ts == report.day_end_ns:
            return "24:00"
        in_day = report.day_start_ns <= ts < report.day_end_ns
        return _local(report, ts, "%H:%M" if in_day else fmt_day)

    first, last = one(start_ns), one(end_ns)
    return first if first == last else f"{first}–{last}"


def _zone_label(report: DayReport) -> str:
    """'Asia/Taipei, UTC+08:00'; both offsets on a daylight-saving change day."""

    def offset(ts_ns: int) -> str:
        text = _local(report, ts_ns, "%z")
        return f"UTC{text[:3]}:{text[3:]}"

    first, last = offset(report.day_start_ns), offset(report.day_end_ns - NS)
    if first == last:
        return f"{report.timezone}, {first}"
    return f"{report.timezone}, {first} then {last}"


def render_html(
    report: DayReport,
    previous: dt.date | None = None,
    following: dt.date | None = None,
    *,
    index: bool = False,
) -> str:
    """The whole page as a string; ``previous``/``following``: the days before
    and after it that have a report (linked); ``index``: link to the report
    directory's index.html (the nightly writes one)."""
    title = f"Egress report {report.day.isoformat()} — {report.site}"
    parts = [*page_head(title), nav_html(previous, following, index)]
    parts += _header(report)
    parts += _summary(report)
    parts += _alerts(report)
    parts += _host_minutes(report)
    parts += _suppressed(report)
    parts += _top_tables(report)
    parts += _new_hosts(report)
    parts += _health(report)
    parts.append(
        "<footer>Made by egress-detector. Times are local to the site "
        f"({_text(_zone_label(report))}); sizes are bytes on the wire "
        "(1 kB = 1,000 B). ID numbers are shown masked.</footer>"
    )
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _header(report: DayReport) -> list[str]:
    day = report.day.strftime("%A %Y-%m-%d")
    sensor = f", sensor {_text(report.sensor)}" if report.sensor else ""
    return [
        f"<h1>Egress report for {_text(day)}</h1>",
        f'<p class="sub">Site {_text(report.site)}{sensor}. '
        f"Local time: {_text(_zone_label(report))}. "
        f"Business hours: {_text(report.business_hours)}.</p>",
    ]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


BY_RULE_FROM = 10  # a table by rule once the list of alerts is longer than this
FULL_COVERAGE = 0.99  # below this share of the day covered, the summary warns


def _blind_spots(report: DayReport) -> list[str]:
    """A warning when the day was not seen whole: a calm report must not
    reassure about hours the sensor did not see."""
    h = report.health
    day_ns = report.day_end_ns - report.day_start_ns
    if not h.packets:
        if report.alerts_total:  # the caller described no files; the alerts say enough
            return []
        return [
            '<p class="warn" id="blind">The captures hold no packets of this day: nothing '
            "was checked. See sensor health.</p>"
        ]
    notes = []
    if h.covered_ns < day_ns * FULL_COVERAGE:
        notes.append(
            f"the captures cover {100.0 * h.covered_ns / day_ns:.1f} % of the day "
            f"({_plural(len(h.gaps), 'gap')} of over a minute)"
        )
    if h.kernel_drops:
        notes.append(f"the capture lost {h.kernel_drops:,} packets (kernel drops)")
    if not notes:
        return []
    return [
        f'<p class="warn" id="blind">Careful: {"; ".join(notes)}. What was not captured '
        "was not checked; see sensor health.</p>"
    ]


def _summary(report: DayReport) -> list[str]:
    out = ['<section id="summary">', "<h2>Summary</h2>"]
    blind = _blind_spots(report)
    if not report.health.packets and not report.alerts_total:
        out += blind  # nothing seen: no calm words about it
    elif not report.alerts_total:
        out.append(
            '<p class="calm" id="no-alerts">No alerts today. '
            f"{_plural(report.hosts, 'internal host')} sent "
            f"{human_bytes(report.egress_bytes)} to the outside; nothing broke the "
            "site's policy.</p>"
        )
        out += blind
    else:
        counts = ", ".join(
            f'<span class="badge sev-{name}">{_text(name)}</span>{n:,}'
            for name, n in report.severity_counts
        )
        out.append(
            f'<p class="counts" id="alert-counts">{_plural(report.alerts_total, "alert")}: '
            f"{counts}</p>"
        )
        out += blind
        hidden = report.alerts_total - len(report.alerts)
        if hidden:
            out.append(
                f'<p class="warn" id="more-alerts">The {len(report.alerts):,} worst are listed '
                f"and detailed below; the other {hidden:,} are counted in the table by rule, "
                "and every alert is in the alerts file (JSON lines).</p>"
            )
        out.append('<ul class="summary">')
        for i, entry in enumerate(report.alerts):
            a = entry.alert
            when = _when(report, a.start_ns, a.end_ns)
            other = f" → {_text(entry.other_side)}" if entry.other_side else ""
            out.append(
                f'<li><span class="badge sev-{_text(entry.severity_name)}">'
                f"{_text(entry.severity_name)}</span>"
                f'<a href="#alert-{i + 1}">{_text(when)}</a> '
                f"{_text(a.rule_name)}: {_who(a.source_ip, entry.host_role)}{other}"
                + (f", sent {human_bytes(a.source_bytes)}" if a.source_bytes else "")
                + f" · {_recurrence(report, entry)}</li>"
            )
        out.append("</ul>")
        if report.alerts_total > BY_RULE_FROM:
            rows = [
                [
                    f'<span class="badge sev-{_text(r.severity_name)}">'
                    f"{_text(r.severity_name)}</span>",
                    f'{_text(r.rule_name)} <span class="muted mono">{_text(r.rule_id)}</span>',
                    _n(r.alerts),
                    _n(r.hosts),
                    human_bytes(r.bytes_out),
                ]
                for r in report.by_rule
            ]
            out.append('<h3 id="by-rule">By rule</h3>')
            out += _table([("severity", False), ("rule", False), ("alerts", True),
                           ("hosts", True), ("sent", True)], rows)  # fmt: skip
        out.append(
            f'<p class="muted">{_plural(report.hosts, "internal host")} sent '
            f"{human_bytes(report.egress_bytes)} to the outside in all.</p>"
        )
    out.append("</section>")
    return out


def _alerts(report: DayReport) -> list[str]:
    if not report.alerts:
        return []
    out = ['<section id="alerts">', "<h2>Alerts, worst first</h2>"]
    for i, entry in enumerate(report.alerts):
        out += _alert(report, i + 1, entry)
    out.append("</section>")
    return out


def _who(host: str, role: str, suffix: str = "") -> str:
    """The host an alert is about and its role; an alert about the sensor
    itself has no host."""
    return _text(f"{host} ({role}{suffix})" if host else role)


def _alert(report: DayReport, number: int, entry: AlertEntry) -> list[str]:
    a = entry.alert
    sev = _text(entry.severity_name)
    start = _local(report, a.start_ns, "%a %Y-%m-%d %H:%M:%S")
    end = _local(report, a.end_ns, "%a %Y-%m-%d %H:%M:%S")
    how_much = f"sent {_size(a.source_bytes)} in {_n(a.source_packets)} packets"
    if a.destination_ip:
        how_much += f"; received {_size(a.destination_bytes)}"
    out = [
        f'<article class="alert sev-{sev}" id="alert-{number}">',
        f'<h3><span class="badge sev-{sev}">{sev}</span>{_text(a.rule_name)} '
        f'<span class="muted mono">{_text(a.rule_id)}</span></h3>',
        f"<p>{_text(a.message)}</p>",
        '<dl class="facts">',
        f"<dt>Who</dt><dd>{_who(a.source_ip, entry.host_role, ' host')}</dd>",
    ]
    if entry.other_side:
        out.append(f"<dt>Other side</dt><dd>{_text(entry.other_side)}</dd>")
    out += [
        f"<dt>When</dt><dd>{_text(start)} to {_text(end)} local</dd>",
        f"<dt>How much</dt><dd>{how_much}</dd>",
        f"<dt>Why it matters</dt><dd>{_text(entry.why)}</dd>",
        f"<dt>Seen before</dt><dd>{_seen_before(report, entry)}</dd>",
    ]
    if a.source_ip:
        # The nightly's state knows which capture files reach the alert's span.
        carve = (f"egress-detector carve --event-id {a.ecs_id} --state STATE.db "
                 f"-o {a.ecs_id}.pcap")  # fmt: skip
        out.append(
            f'<dt>Packets</dt><dd><code>{_text(carve)}</code> <span class="muted">(STATE.db: '
            "the nightly's --state file; the packets may contain personal data)</span></dd>"
        )
    if a.evidence:
        details = "; ".join(
            f"{key.replace('_', ' ')}: {_evidence_value(value)}"
            for key, value in a.evidence.items()
        )
        out.append(f"<dt>Details</dt><dd>{_text(_clip(details, 600))}</dd>")
    out.append("</dl>")
    if not a.source_ip:  # about the sensor: no host, no hours of its own
        out.append("</article>")
        return out
    out.append(_timeline(report, entry))
    if any(h.bytes_out for h in entry.hours):
        out.append(
            f'<p class="legend muted">Bytes {_text(a.source_ip)} sent to outside addresses in '
            "each local hour of the day; shaded: outside business hours; red: the hours of "
            "this alert (its span outlined).</p>"
        )
    else:
        out.append(
            f'<p class="legend muted">{_text(a.source_ip)} sent nothing to outside addresses '
            "today; shaded: outside business hours; outlined: this alert's span.</p>"
        )
    if entry.flows:
        out += [
            '<table><caption class="muted">Evidence flows (largest upload first)</caption>',
            "<tr><th>first packet</th><th>last packet</th><th>host port</th>"
            '<th>other side</th><th>transport</th><th class="num">sent</th>'
            '<th class="num">received</th><th>community id</th></tr>',
        ]
        for f in entry.flows:
            out.append(
                f"<tr><td>{_text(_local(report, f.first_ns, '%H:%M:%S'))}</td>"
                f"<td>{_text(_local(report, f.last_ns, '%H:%M:%S'))}</td>"
                f"<td>{f.host_port}</td><td>{_text(_endpoint(f.peer, f.peer_port))}</td>"
                f"<td>{_text(f.transport)}</td>"
                f'<td class="num">{_size(f.bytes_out)}</td>'
                f'<td class="num">{_size(f.bytes_in)}</td>'
                f'<td class="mono">{_text(f.community_id)}</td></tr>'
            )
        out.append("</table>")
    elif entry.too_many_flows:
        out.append(
            '<p class="muted">This host has too many flows today to list here (the '
            "target of a flood?): carve them with the command above.</p>"
        )
    else:
        out.append('<p class="muted">No flow records behind this alert.</p>')
    out.append("</article>")
    return out


def _host_minutes(report: DayReport) -> list[str]:
    """Each alerted host's day minute by minute: the chart (bytes out above the
    axis, in below, alerts shaded) and where its bytes went."""
    if not report.host_timelines:
        return []
    from zoneinfo import ZoneInfo

    from ..forensics.timeline import timeline_svg

    zone = ZoneInfo(report.timezone)
    out = ['<section id="hosts-by-minute">', "<h2>Alerted hosts, minute by minute</h2>"]
    for timeline in report.host_timelines:
        svg = timeline_svg(timeline, zone).split("\n", 1)[1]  # without the XML declaration
        out += [f"<h3>{_text(timeline.host)}</h3>", f'<div class="chart">{svg}</div>', "<table>",
                "<tr><th>other side</th><th>services</th><th class=\"num\">sent</th>"
                '<th class="num">received</th><th>from</th><th>to</th></tr>']  # fmt: skip
        for d in timeline.destinations[:8]:
            names = f" ({', '.join(d.names[:3])})" if d.names else ""
            out.append(
                f"<tr><td>{_text(d.address + names)}</td><td>{_text(d.services)}</td>"
                f'<td class="num">{_size(d.bytes_out)}</td><td class="num">{_size(d.bytes_in)}</td>'
                f"<td>{_text(_local(report, d.first_ns, '%H:%M'))}</td>"
                f"<td>{_text(_local(report, d.last_ns, '%H:%M'))}</td></tr>"
            )
        out.append("</table>")
    out.append("</section>")
    return out


def _recurrence(report: DayReport, entry: AlertEntry) -> str:
    """'new' (what changed since yesterday) or 'recurring (last 2026-02-03)'."""
    seen = entry.alert.previously_seen
    if seen:
        return f'<span class="recurring">recurring (last {_text(seen)})</span>'
    return '<span class="new">new</span>'


def _seen_before(report: DayReport, entry: AlertEntry) -> str:
    seen = entry.alert.previously_seen
    if seen:
        return (f"recurring: the same rule, host and other side alerted on {_text(seen)} "
                f"(within {report.recurring_days} days)")  # fmt: skip
    return (f"new: not alerted in the {report.recurring_days} days before (for this rule, "
            "host and other side)")  # fmt: skip


def _suppressed(report: DayReport) -> list[str]:
    """The alerts the policy's [[suppress]] tables held back: not alerted, but
    listed, so what a suppression hides is seen every day it hides it."""
    if not report.suppressed:
        return []
    out = [
        '<section id="suppressed">',
        f"<h2>Suppressed by the policy ({len(report.suppressed):,})</h2>",
        '<p class="muted">Alerts a <span class="mono">[[suppress]]</span> table of the '
        "policy accepts: not in the alerts file, not sent, not counted above.</p>",
    ]
    rows = [
        [
            f'<span class="badge sev-{_text(h.severity_name)}">{_text(h.severity_name)}</span>',
            f'<span class="mono">{_text(h.rule_id)}</span>',
            _text(h.host),
            _wrap(h.other_side),
            _text(_when(report, h.start_ns, h.end_ns)),
            human_bytes(h.source_bytes) if h.source_bytes else "",
            _text(h.reason),
            _text(h.until.isoformat()),
        ]
        for h in report.suppressed
    ]
    out += _table([("severity", False), ("rule", False), ("host", False), ("other side", False),
                   ("when (local)", False), ("sent", True), ("reason", False),
                   ("until", False)], rows)  # fmt: skip
    out.append("</section>")
    return out


def _evidence_value(value: object, depth: int = 0) -> str:
    """An alert's evidence (egress.*) as short plain text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict) and depth < 2:
        inner = ", ".join(
            f"{str(k).replace('_', ' ')}: {_evidence_value(v, depth + 1)}" for k, v in value.items()
        )
        return f"({inner})"
    if isinstance(value, list | tuple) and depth < 2:
        shown = [_evidence_value(v, depth + 1) for v in value[:10]]
        return ", ".join(shown) + (" …" if len(value) > 10 else "")
    return str(value)


def _endpoint(address: str, port: int) -> str:
    """'203.0.113.140:443', '[2001:db8::1]:443' (RFC 3986 brackets for IPv6)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timeline(report: DayReport, entry: AlertEntry) -> str:
    """Bars of the host's egress per hour, off-hours shaded, the alert's span outlined."""
    hours: tuple[HourBar, ...] = entry.hours
    width, height, left, top, bottom = 600, 110, 54, 8, 20
    plot_w, plot_h = width - left - 8, height - top - bottom
    span_ns = max(report.day_end_ns - report.day_start_ns, 1)

    def x(ts: int) -> float:
        clipped = min(max(ts, report.day_start_ns), report.day_end_ns)
        return left + plot_w * (clipped - report.day_start_ns) / span_ns

    peak = max((h.bytes_out for h in hours), default=0)
    parts = [
        f'<svg class="timeline" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_text(entry.alert.source_ip)}: bytes sent outside per hour "
        "(shaded: outside business hours)</title>",
    ]
    for start, end in report.off_minutes:
        parts.append(
            f'<rect class="off" x="{x(start):.1f}" y="{top}" '
            f'width="{x(end) - x(start):.1f}" height="{plot_h}"/>'
        )
    a = entry.alert
    for h in hours:
        if h.bytes_out <= 0 or peak <= 0:
            continue
        bar_h = max(plot_h * h.bytes_out / peak, 1.0)
        x0, x1 = x(h.start_ns), x(h.start_ns + 3600 * NS)
        hot = " hot" if h.start_ns + 3600 * NS > a.start_ns and h.start_ns <= a.end_ns else ""
        parts.append(
            f'<rect class="bar{hot}" x="{x0 + 1:.1f}" y="{top + plot_h - bar_h:.1f}" '
            f'width="{max(x1 - x0 - 2, 1):.1f}" height="{bar_h:.1f}">'
            f"<title>{_text(h.label)}: {human_bytes(h.bytes_out)}</title></rect>"
        )
    if a.end_ns >= report.day_start_ns and a.start_ns < report.day_end_ns:
        x0, x1 = x(a.start_ns), x(a.end_ns)
        parts.append(
            f'<rect class="span" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 2):.1f}" '
            f'height="{plot_h}"/>'
        )
    base = top + plot_h
    parts.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}"/>')
    for i, h in enumerate(hours):
        if i % 3 == 0:
            parts.append(f'<text x="{x(h.start_ns):.1f}" y="{height - 6}">{_text(h.label)}</text>')
    parts.append(f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">24:00</text>')
    parts.append(f'<text x="2" y="{top + 10}">{human_bytes(peak)}</text>')
    parts.append(f'<text x="2" y="{base}">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Iterable[tuple[str, bool]], rows: list[list[str]]) -> list[str]:
    cells = "".join(f'<th class="num">{h}</th>' if num else f"<th>{h}</th>" for h, num in header)
    out = ["<table>", f"<tr>{cells}</tr>"]
    numeric = [num for _, num in header]
    for row in rows:
        out.append(
            "<tr>"
            + "".join(
                f'<td class="num">{c}</td>' if num else f"<td>{c}</td>"
                for c, num in zip(row, numeric, strict=True)
            )
            + "</tr>"
        )
    out.append("</table>")
    return out


def _top_tables(report: DayReport) -> list[str]:
    out = ['<section id="top-destinations">', "<h2>Top external destinations</h2>"]
    if report.top_destinations:
        rows = [
            [
                _text(d.address),
                _wrap(d.name) if d.name else '<span class="muted">—</span>',
                _size(d.bytes_received),
                _size(d.bytes_sent),
                _n(d.hosts),
                "allowlisted" if d.allowlisted else "",
            ]
            for d in report.top_destinations
        ]
        header = [("address", False), ("name", False), ("received from the site", True),
                  ("sent to the site", True), ("hosts", True), ("", False)]  # fmt: skip
        out += _table(header, rows)
    else:
        out.append('<p class="muted">No traffic to external addresses today.</p>')
    out += ["</section>", '<section id="top-uploaders">', "<h2>Top uploaders</h2>"]
    if report.top_uploaders:
        rows = [
            [
                f'{_text(u.host)} <span class="muted">({_text(u.host_role)})</span>',
                _size(u.bytes_out),
                _size(u.off_hours_bytes),
                _n(u.destinations),
            ]
            for u in report.top_uploaders
        ]
        header = [("host", False), ("sent outside", True), ("of which off-hours", True),
                  ("destinations", True)]  # fmt: skip
        out += _table(header, rows)
    else:
        out.append('<p class="muted">No internal host sent anything outside today.</p>')
    out.append("</section>")
    return out


def _new_hosts(report: DayReport) -> list[str]:
    out = ['<section id="new-hosts">', "<h2>Hosts first seen today</h2>"]
    if not report.hosts:
        out.append('<p class="muted">None: no internal host sent anything today.</p>')
    elif not report.new_hosts:
        out.append('<p class="muted">None: every internal host with traffic today was '
                   "seen on an earlier day.</p>")  # fmt: skip
    else:
        rows = [
            [
                f'{_text(h.host)} <span class="muted">({_text(h.host_role)})</span>',
                _text(_local(report, h.first_ns, "%H:%M:%S")),
                _size(h.bytes_out),
                _size(h.bytes_in),
                _n(h.peers),
            ]
            for h in report.new_hosts
        ]
        header = [("host", False), ("first packet", False), ("sent", True),
                  ("received", True), ("peers", True)]  # fmt: skip
        out += _table(header, rows)
        if report.new_hosts_total > len(report.new_hosts):
            out.append(
                f'<p class="muted">… and {report.new_hosts_total - len(report.new_hosts):,} '
                "more.</p>"
            )
    out.append("</section>")
    return out


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {sec:02d} s"


def _health(report: DayReport) -> list[str]:
    h = report.health
    day_ns = report.day_end_ns - report.day_start_ns
    percent = 100.0 * h.covered_ns / day_ns if day_ns else 0.0
    if h.kernel_drops is None:
        drops = '<span class="muted">not recorded by these captures</span>'
    else:
        drops = _n(h.kernel_drops)
        if h.kernel_drops:
            drops = f'<span class="warn">{drops}</span>'
        if h.files_without_drops:
            drops += (
                f' <span class="muted">({h.files_without_drops} file(s) do not record drops)</span>'
            )
    gb = h.capture_bytes / 1e9
    rate = f"{gb / (h.processing_seconds / 3600):,.1f} GB/hour" if h.processing_seconds > 0 else "—"
    out = [
        '<section id="sensor-health">',
        "<h2>Sensor health</h2>",
        '<dl class="facts">',
        f'<dt>Coverage</dt><dd id="coverage">{percent:.1f} % of the day '
        f"({_duration(h.covered_ns / NS)} of {_duration(day_ns / NS)})</dd>",
        f"<dt>Capture files</dt><dd>{_n(len(h.files))} ({_size(h.capture_bytes)})</dd>",
        f'<dt>Packets</dt><dd id="packets">{_n(h.packets)}</dd>',
        f'<dt>Flows</dt><dd id="flows">{_n(h.flows)}</dd>',
        f'<dt>Kernel drops</dt><dd id="drops">{drops}</dd>',
        f'<dt>Processing</dt><dd id="processing">{_duration(h.processing_seconds)} '
        f'<span class="muted">({rate})</span></dd>',
        "</dl>",
    ]
    if h.gaps:
        rows = []
        for g in h.gaps:
            rows.append(
                [
                    _text(_when(report, g.start_ns, g.end_ns)),
                    _text(_duration((g.end_ns - g.start_ns) / NS)),
                    _wrap(g.before) if g.before else '<span class="muted">start of day</span>',
                    _wrap(g.after) if g.after else '<span class="muted">end of day</span>',
                ]
            )
        out.append('<h3 id="gaps">Gaps in coverage (no packets for over a minute)</h3>')
        out += _table([("local time", False), ("length", False), ("after file", False),
                       ("before file", False)], rows)  # fmt: skip
    else:
        out.append('<p class="muted" id="gaps">No gaps: the captures cover the whole day.</p>')
    if h.files:
        rows = [
            [
                _wrap(f.path),
                _text(_when(report, f.first_ns, f.last_ns)),
                _size(f.bytes),
                _n(f.packets),
                '<span class="muted">—</span>' if f.kernel_drops is None else _n(f.kernel_drops),
            ]
            for f in h.files
        ]
        out += _table([("file", False), ("packets from–to (local)", False), ("size", True),
                       ("packets", True), ("kernel drops", True)], rows)  # fmt: skip
    out.append("</section>")
    return out


def write_report(
    report: DayReport,
    path: str | os.PathLike[str],
    previous: dt.date | None = None,
    following: dt.date | None = None,
    *,
    index: bool = False,
) -> None:
    """Write the report's HTML to ``path`` atomically: a reader (or a crash)
    sees the old file or the new one, never half of one."""
    write_page(render_html(report, previous, following, index=index), path)


def write_page(text: str, path: str | os.PathLike[str]) -> None:
    with replacing(path, mode=0o644) as partial, open(partial, "w", encoding="utf-8") as stream:
        stream.write(text)


def relink(
    path: str | os.PathLike[str], previous: dt.date | None, following: dt.date | None
) -> bool:
    """Rewrite the previous/next links of the report at ``path`` (atomically);
    False when it has none to rewrite (missing, or from before the links)."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError:
        return False
    start, end = text.find(NAV_START), text.find(NAV_END)
    if start < 0 or end < start:
        return False
    updated = text[:start] + nav_html(previous, following) + text[end + len(NAV_END) :]
    if updated != text:
        write_page(updated, path)
    return True
