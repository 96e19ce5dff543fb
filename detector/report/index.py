"""The report directory's ``index.html``: the last 30 days at a glance.

One row per calendar day (newest first) from the latest finished day back:
its alerts (by severity of the worst is not kept, so the count, how many were
new, how many the policy suppressed) and a link to the day's report; a day
with no report says so (a sensor that stopped shows as a run of such days).
Above it, a bar per day of alerts. The page is built like a day's report: one
file, no scripts, nothing loaded, the same style sheet and
Content-Security-Policy (detector/report/html.py).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .html import INDEX_NAME, _text, page_head, report_name, write_page

INDEX_DAYS = 30


@dataclass(frozen=True)
class DayLine:
    """One finished day, as the index shows it."""

    day: dt.date
    alerts: int
    new_alerts: int  # of them, new (not recurring) — see docs/report.md
    suppressed: int
    report: str  # the report's file name in the directory ('' when none)


def render_index(site: str, days: Sequence[DayLine], last: dt.date | None = None) -> str:
    """The index page of the :data:`INDEX_DAYS` days up to ``last`` (default:
    the latest of ``days``)."""
    by_day = {d.day: d for d in days}
    if last is None:
        last = max(by_day, default=None)
    shown = [last - dt.timedelta(days=i) for i in range(INDEX_DAYS)] if last else []
    parts = [*page_head(f"Egress reports — {site}"), f"<h1>Egress reports for {_text(site)}</h1>"]
    if last is None:
        parts.append('<p class="muted">No day is finished yet.</p>')
    else:
        total = sum(by_day[d].alerts for d in shown if d in by_day)
        parts.append(
            f'<p class="sub">The {INDEX_DAYS} days to {last.isoformat()}: {total:,} alert(s).</p>'
        )
        parts.append(_bars(shown, by_day))
        parts += [
            '<table id="days">',
            '<tr><th>day</th><th class="num">alerts</th><th class="num">new</th>'
            '<th class="num">suppressed</th><th>report</th></tr>',
        ]
        for day in shown:
            line = by_day.get(day)
            label = day.strftime("%a %Y-%m-%d")
            if line is None:
                parts.append(
                    f'<tr><td>{_text(label)}</td><td class="num muted">—</td>'
                    '<td class="num muted">—</td><td class="num muted">—</td>'
                    '<td class="muted">no report</td></tr>'
                )
                continue
            link = (
                f'<a href="{_text(line.report)}">{_text(line.report)}</a>'
                if line.report
                else '<span class="muted">no report</span>'
            )
            parts.append(
                f'<tr id="day-{day.isoformat()}"><td>{_text(label)}</td>'
                f'<td class="num">{line.alerts:,}</td><td class="num">{line.new_alerts:,}</td>'
                f'<td class="num">{line.suppressed:,}</td><td>{link}</td></tr>'
            )
        parts.append("</table>")
    parts += ["<footer>Made by egress-detector nightly.</footer>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _bars(shown: Sequence[dt.date], by_day: dict[dt.date, DayLine]) -> str:
    """Alerts per day as an SVG bar chart, oldest on the left."""
    ordered = list(reversed(shown))
    top = max((by_day[d].alerts for d in ordered if d in by_day), default=0) or 1
    width, height, step = 620, 90, 20
    bars = []
    for i, day in enumerate(ordered):
        count = by_day[day].alerts if day in by_day else 0
        h = round(60 * count / top)
        x = 10 + i * step
        bars.append(
            f'<rect class="count" x="{x}" y="{70 - h}" width="14" height="{h}">'
            f"<title>{day.isoformat()}: {count} alert(s)</title></rect>"
        )
        if i % 7 == 0 or i == len(ordered) - 1:
            bars.append(f'<text x="{x}" y="84">{day.strftime("%m-%d")}</text>')
    return (
        f'<svg class="timeline" width="{width}" height="{height}" role="img" '
        f'aria-label="alerts per day">{"".join(bars)}'
        f'<line class="axis" x1="8" y1="70" x2="{width - 8}" y2="70"/></svg>'
    )


def write_index(report_dir: str | os.PathLike[str], site: str, days: Sequence[DayLine]) -> str:
    """Write ``index.html`` in ``report_dir`` (atomically); its path."""
    path = os.path.join(os.fspath(report_dir), INDEX_NAME)
    write_page(render_index(site, days), path)
    return path


__all__ = ["INDEX_DAYS", "DayLine", "render_index", "report_name", "write_index"]
