"""always-on: a computer that keeps sending through the whole night (bulletin No. 3
lists computers left on 24 hours a day)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from ...alerts.record import Alert
from ...networks import NetworkSet
from ...units import HOUR_NS, minutes_of
from ..declare import COUNT, TRAFFIC, Detection, Networks, Rule, Setting, TimeOfDay
from .common import local_datetime

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..context import ScanContext
    from ..declare import Reader


def _night_has_a_length(reader: Reader, path: str, settings: Mapping[str, Any]) -> None:
    night_start, night_end = settings["night_start"], settings["night_end"]
    if minutes_of(night_start) % 1440 == minutes_of(night_end) % 1440:
        reader.fail(
            f"{path}.night_end",
            f"{night_end} is the same time as night_start {night_start} (the night "
            "must have a length; an end earlier than the start crosses midnight)",
        )


DETECTION = Detection(
    rule_id="always-on",
    title="Host active all night",
    severity=1,
    catches="a host sending in every hour of a whole night (00:00–06:00 local)",
    why_it_matters=(
        "Computers should not be left on all night (bulletin No. 3): an unattended "
        "computer that keeps talking at night can be used without anyone noticing."
    ),
    description="""\
Bulletin No. 3 lists computers left on 24 hours a day. Fires when a host sent at
least `min_packets` (default 1) packets in **every** hour of a night from
`night_start` to `night_end` (default 00:00–06:00 local; a night may cross
midnight, e.g. 22:00–06:00). Only nights the capture saw whole are judged: the
scan must hold traffic in every hour of the night. On a daylight-saving
change night the night has its real length (5 or 7 hours for 6 on the clock).
Consecutive nights are one alert.""",
    false_positives=(
        "servers (gateways, resolvers, file servers) are on all night by design: list "
        "them in `exempt` (networks)."
    ),
    settings=(
        Setting(
            "night_start", TimeOfDay(), "00:00", "Start of the night, local time, `00:00`–`23:59`."
        ),
        # Earlier than night_start: the night crosses midnight.
        Setting(
            "night_end",
            TimeOfDay(end=True),
            "06:00",
            "End of the night, local time, `00:00`–`24:00`. Earlier than `night_start` "
            "means the night crosses midnight; the two may not be equal.",
        ),
        Setting(
            "min_packets",
            COUNT,
            1,
            'Packets a host must send in an hour for that hour to count as "on".',
        ),
        Setting(
            "exempt",
            Networks(),
            (),
            "Hosts meant to run all night (gateways, resolvers, servers): never "
            "reported by this rule.",
        ),
    ),  # fmt: skip
    policy_example="""\
[rules.always-on]
night_start = "22:00"   # 22:00 to 06:00, crossing midnight
night_end = "06:00"
min_packets = 20        # a few stray packets an hour do not make a computer "on"
exempt = ["10.8.0.1/32", "10.8.40.5/32"]   # the gateway and the isolated file server""",
    validate=_night_has_a_length,
)


def _nights(ctx: ScanContext, start_ns: int, end_ns: int) -> list[tuple[date, list[int]]]:
    """Each local night touching [start_ns, end_ns]: its date and the UTC start
    of each of its hours (5 or 7 on a daylight-saving change night)."""
    settings = ctx.policy.rule(DETECTION.rule_id)
    zone = ctx.policy.zone
    night_start = minutes_of(str(settings["night_start"]))
    night_end = minutes_of(str(settings["night_end"]))
    length = (night_end - night_start) % 1440 or 1440
    nights = []
    day = local_datetime(start_ns, ctx.policy).date() - timedelta(days=1)
    last_day = local_datetime(end_ns, ctx.policy).date()
    while day <= last_day:
        local_start = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(
            minutes=night_start
        )
        begin = _instant_ns(local_start)
        local_end = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(
            minutes=night_start + length
        )
        finish = _instant_ns(local_end)
        hours = list(range(begin, finish, HOUR_NS))
        nights.append((day, hours))
        day += timedelta(days=1)
    return nights


def _instant_ns(local: datetime) -> int:
    # Adding a timedelta to an aware datetime moves its wall time; timestamp()
    # then applies the offset in force at that wall time, so a night across a
    # daylight-saving change has its real length (5 or 7 hours for 6 on the clock).
    return int(round(local.timestamp())) * 1_000_000_000


@DETECTION.checks(over=TRAFFIC)
def check_always_on(ctx: ScanContext, rule: Rule) -> list[Alert]:
    traffic = ctx.traffic
    f = traffic.frame
    if f.empty or traffic.first_ns is None or traffic.last_ns is None:
        return []
    min_packets = int(rule["min_packets"])
    exempt = NetworkSet(rule["exempt"])
    seen_minutes = np.unique(f["minute_ns"].to_numpy())
    sent = f[f["packets_out"].to_numpy() > 0]
    per_minute = sent.groupby(["host_id", "minute_ns"], sort=True)["packets_out"].sum()
    alerts: list[Alert] = []
    streaks: dict[int, list[tuple[date, list[int], int]]] = {}
    for day, hours in _nights(ctx, traffic.first_ns, traffic.last_ns):
        if not hours:
            continue
        # Judge only nights the capture saw whole: traffic in every hour.
        covered = all(np.any((seen_minutes >= h) & (seen_minutes < h + HOUR_NS)) for h in hours)
        if not covered:
            continue
        edges = np.array([*hours, hours[-1] + HOUR_NS], dtype=np.int64)
        for host, counts in per_minute.groupby(level=0, sort=False):
            host_id = int(host)  # type: ignore[arg-type]
            if exempt and exempt.contains_text(traffic.text(host_id)):
                continue
            minutes = counts.index.get_level_values(1).to_numpy()
            inside = (minutes >= edges[0]) & (minutes < edges[-1])
            if not inside.any():
                continue
            slot = np.searchsorted(edges, minutes[inside], side="right") - 1
            per_hour = np.bincount(slot, weights=counts.to_numpy()[inside], minlength=len(hours))
            if np.all(per_hour >= min_packets):
                streaks.setdefault(host_id, []).append((day, hours, int(per_hour.sum())))
    for host, nights in streaks.items():
        runs: list[list[tuple[date, list[int], int]]] = []
        for night in nights:
            if runs and (night[0] - runs[-1][-1][0]).days == 1:
                runs[-1].append(night)
            else:
                runs.append([night])
        for run in runs:
            start, end = run[0][1][0], run[-1][1][-1] + HOUR_NS
            packets = sum(n[2] for n in run)
            label = (
                f"the night of {run[0][0]:%a %Y-%m-%d}"
                if len(run) == 1
                else f"{len(run)} nights from {run[0][0]:%a %Y-%m-%d}"
            )
            alerts.append(
                rule.alert(
                    start,
                    end - 1,
                    traffic.text(host),
                    source_packets=packets,
                    text=(
                        f"{traffic.text(host)} was active in every hour of {label} "
                        f"({rule['night_start']}–{rule['night_end']} local time, "
                        f"{packets:,} packets sent); computers should not stay on all night"
                    ),
                    evidence={
                        "nights": len(run),
                        "night_start": rule["night_start"],
                        "night_end": rule["night_end"],
                    },  # fmt: skip
                )
            )
    return alerts
