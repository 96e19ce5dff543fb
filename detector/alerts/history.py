"""Earlier alerts, for telling a new alert from a recurring one.

The nightly keeps its own history (its state file). A ``scan`` has none: it
says every alert is new, unless given earlier alerts as ECS JSON lines (the
nightly's ``--jsonl`` file, an earlier scan's ``--format jsonl`` output) with
``scan --history FILE``. An alert recurs when an earlier document has the same
rule and the same two addresses (either way round: ECS ``source`` is whoever
started the conversation) and started on one of the ``days`` local days
before the alert's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import DetectorError
from .lines import json_lines
from .record import Alert

Key = tuple[str, frozenset[str]]
NOT_AN_ALERT = (
    " (one a line, with rule.id and event.start, as scan --format jsonl and nightly write)"
)


def _key(rule: str, a: str | None, b: str | None) -> Key:
    return rule, frozenset(x for x in (a, b) if x)


class AlertHistory:
    """The local days each (rule, pair of addresses) alerted on."""

    def __init__(self) -> None:
        self.days: dict[Key, set[dt.date]] = {}

    @classmethod
    def from_jsonl(cls, paths: Iterable[str]) -> AlertHistory:
        """Read ECS JSON lines; a line that is not one is an error naming the
        file and its byte offset."""
        history = cls()
        for path in paths:
            for offset, doc in json_lines(path, "--history", hint=NOT_AN_ALERT):
                history._take(path, offset, doc)
        return history

    def _take(self, path: str, offset: int, doc: Any) -> None:
        try:
            rule = str(doc["rule"]["id"])
            start = dt.datetime.fromisoformat(str(doc["event"]["start"]))
            a = doc.get("source", {}).get("ip")
            b = doc.get("destination", {}).get("ip")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DetectorError(
                f"--history {path}: byte offset {offset}: not an alert in ECS JSON{NOT_AN_ALERT}"
            ) from None
        # The day as the document wrote it: in the site's offset of its time.
        self.days.setdefault(_key(rule, a, b), set()).add(start.date())

    def mark(self, alerts: Sequence[Alert], zone: ZoneInfo, days: int) -> list[Alert]:
        """``alerts``, each that recurs given its last earlier day
        (``previously_seen``)."""
        out = []
        for alert in alerts:
            seen = self.days.get(_key(alert.rule_id, alert.source_ip, alert.destination_ip))
            if seen:
                day = dt.datetime.fromtimestamp(alert.start_ns // 1_000_000_000, tz=zone).date()
                earlier = [d for d in seen if day - dt.timedelta(days=days) <= d < day]
                if earlier:
                    alert = replace(alert, previously_seen=max(earlier).isoformat())
            out.append(alert)
        return out
