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
from ..flows.payload import PayloadInspector
from ..flows.table import FlowTable, count_flows
from .apps import Names, annotate_mail_sizes, name_alerts, names_from_facts, run_app_rules
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
    facts: pd.DataFrame | None = None  # payload facts (detector/flows/payload.py)
    names: Names | None = None  # what outside addresses are called


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
    inspector = None
    if policy.inspect_max_packets > 0 and policy.inspect_max_bytes > 0:
        inspector = PayloadInspector(
            max_packets=policy.inspect_max_packets, max_bytes=policy.inspect_max_bytes
        )
    flows = count_flows(
        paths,
        threads=threads,
        on_problem=on_problem,
        stats_out=stats_out,
        progress=progress,
        also=[activity],
        inspector=inspector,
    )
    facts = inspector.frame() if inspector is not None else None
    return scan_activity(
        activity, flows, policy, window_minutes=window_minutes, model=model, facts=facts
    )


def scan_activity(
    activity: ActivityTable,
    flows: FlowTable,
    policy: Policy,
    *,
    window_minutes: int | None = None,
    model: EgressModel | None = None,
    facts: pd.DataFrame | None = None,
) -> ScanResult:
    """The analysis half of a scan, once the captures have been counted
    (``facts``: what payload inspection found, if it ran)."""
    minutes = window_minutes or policy.window_minutes
    names = names_from_facts(facts) if facts is not None else Names()
    sanctioned = names.matching(policy.allowlist_domains)
    traffic = host_traffic(activity.columns(), policy, also_allowlisted=sanctioned)
    features = host_windows(traffic, policy, minutes)
    if model is None:
        alerts = run_rules(ScanContext(policy, traffic, minutes))
    else:
        from .model import known_pairs, model_alerts, score_scan

        known = known_pairs(model, traffic)
        alerts = run_rules(ScanContext(policy, traffic, minutes, known_destinations=known))
        verdict = score_scan(model, features, traffic, policy, known)
        alerts = model_alerts(model, verdict, traffic, policy, alerts)
    if facts is not None:
        alerts.extend(run_app_rules(facts, policy, names, traffic, flows))
        annotate_mail_sizes(alerts, facts)
    name_alerts(alerts, names)
    alerts.sort(key=lambda a: a.sort_key)
    return ScanResult(alerts, features, traffic, flows, activity, facts, names)
