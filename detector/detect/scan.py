"""A scan: read captures once, build per-host traffic and features, run the rules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..alerts.record import Alert
from ..capture import CaptureProblem, CaptureStats
from ..features.hosts import HostTraffic, host_traffic, host_windows
from ..flows.activity import ActivityTable
from ..flows.table import FlowTable, count_flows
from .rules import ScanContext, run_rules

if TYPE_CHECKING:
    import pandas as pd

    from ..policy import Policy
    from .model import EgressModel


@dataclass
class ScanResult:
    alerts: list[Alert]
    features: pd.DataFrame
    traffic: HostTraffic
    flows: FlowTable
    activity: ActivityTable


def scan_captures(
    paths: Iterable[str | os.PathLike[str]],
    policy: Policy,
    *,
    window_minutes: int | None = None,
    threads: int = 1,
    on_problem: Callable[[CaptureProblem], None] | None = None,
    stats_out: list[CaptureStats] | None = None,
    progress: Callable[[Iterator[int]], Iterator[int]] | None = None,
    model: EgressModel | None = None,
) -> ScanResult:
    """Scan captures (one stream, in the order given) against ``policy`` (and a
    trained ``model``, whose verdicts join the rule alerts)."""
    activity = ActivityTable(bin_seconds=60)
    flows = count_flows(
        paths,
        threads=threads,
        on_problem=on_problem,
        stats_out=stats_out,
        progress=progress,
        also=[activity],
    )
    return scan_activity(activity, flows, policy, window_minutes=window_minutes, model=model)


def scan_activity(
    activity: ActivityTable,
    flows: FlowTable,
    policy: Policy,
    *,
    window_minutes: int | None = None,
    model: EgressModel | None = None,
) -> ScanResult:
    """The analysis half of a scan, once the captures have been counted."""
    minutes = window_minutes or policy.window_minutes
    traffic = host_traffic(activity.columns(), policy)
    features = host_windows(traffic, policy, minutes)
    if model is None:
        alerts = run_rules(ScanContext(policy, traffic, minutes))
    else:
        from .model import known_pairs, model_alerts, score_scan

        known = known_pairs(model, traffic)
        alerts = run_rules(ScanContext(policy, traffic, minutes, known_destinations=known))
        verdict = score_scan(model, features, traffic, policy, known)
        alerts = model_alerts(model, verdict, traffic, policy, alerts)
    return ScanResult(alerts, features, traffic, flows, activity)
