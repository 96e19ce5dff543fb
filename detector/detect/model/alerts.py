"""The model's alerts: flagged windows joined into episodes, attached to the
rule alerts about the same egress or raised as ``model-anomaly`` alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ...alerts.record import Alert
from ...features.hosts import window_starts
from ...units import MINUTE_NS, human_bytes
from ..rules import low_and_slow, model_anomaly
from ..rules.common import when
from .candidates import unseen_record
from .constants import ALLOWLISTED_SHARE
from .frames import utc_ns, window_keys, window_minutes

if TYPE_CHECKING:
    import pandas as pd

    from ...features.hosts import HostTraffic
    from ...policy import Policy
    from .estimator import EgressModel
    from .verdict import ModelVerdict

# The verdict's id, title and severity are declared with the rules.
RULE_ID = model_anomaly.DETECTION.rule_id
RULE_NAME = model_anomaly.DETECTION.title
SEVERITY = model_anomaly.DETECTION.severity
LOW_AND_SLOW = low_and_slow.DETECTION.rule_id


def model_alerts(
    model: EgressModel,
    verdict: ModelVerdict,
    traffic: HostTraffic | None,
    policy: Policy,
    rule_alerts: Sequence[Alert],
) -> list[Alert]:
    """Rule alerts with the model's verdict attached where it flagged the same
    host at the same time, plus ``model-anomaly`` alerts for the rest.

    Flagged windows of one host closer together than one window are one
    episode. An episode overlapping egress rule alerts of its host (network
    direction egress) adds ``evidence["model"]`` and the model's reason to each
    of them (one alert, both reasons); otherwise it becomes one
    ``model-anomaly`` alert.
    """
    alerts = _with_history(model, list(rule_alerts), policy, window_minutes(verdict.features))
    if not verdict.flagged.any():
        return alerts
    features = verdict.features
    rows = np.flatnonzero(verdict.flagged)
    flagged = features.iloc[rows].assign(
        _score=verdict.scores[rows], _pct=verdict.percentiles[rows],
        _start=utc_ns(features["window_start"].iloc[rows]),
        _end=utc_ns(features["window_end"].iloc[rows]),
    )  # fmt: skip
    minutes = window_minutes(features)
    outside = (
        None
        if traffic is None
        else _outside_of(
            traffic, set(flagged["host"]), int(flagged["_start"].min()), int(flagged["_end"].max())
        )
    )
    upload = _upload_minutes(flagged, outside, policy, minutes) if outside is not None else None
    flagged = flagged.assign(
        _why=model.explain(flagged, upload_minutes=upload)  # type: ignore[arg-type]
    )
    by_host: dict[str, list[int]] = {}  # positions in ``alerts``
    for position, alert in enumerate(alerts):
        by_host.setdefault(alert.source_ip, []).append(position)
        chain = alert.evidence.get("chain")  # pivot-chain: the bridge's upload is its too
        if isinstance(chain, list) and len(chain) == 3:
            by_host.setdefault(str(chain[1]), []).append(position)
    gap = minutes * MINUTE_NS
    outside_of_host = (
        {} if outside is None else dict(tuple(outside.groupby("host", sort=False)))  # type: ignore[arg-type]
    )
    attached: dict[int, str] = {}  # rule alert position -> the model note it carries
    raised: list[Alert] = []  # model-anomaly alerts, in order of host and time
    for host, windows in flagged.sort_values(["host", "_start"]).groupby("host", sort=False):
        starts = windows["_start"].to_numpy()
        episode_of = np.concatenate([[0], np.cumsum(np.diff(starts) > gap)])
        for _, episode in windows.groupby(episode_of, sort=True):
            worst = episode.iloc[int(np.argmax(episode["_score"].to_numpy()))]
            start, end = int(episode["_start"].min()), int(episode["_end"].max())
            score, pct = float(worst["_score"]), round(float(worst["_pct"]), 3)
            verdict_doc: dict[str, Any] = {
                "score": round(score, 4),
                "percentile": pct,
                "threshold": round(float(verdict.threshold), 4),
                "explanation": str(worst["_why"]),
                "windows": len(episode),
            }
            where = (
                "beyond every host-day of the baseline"
                if pct >= 100
                else f"above {pct:.2f} % of the baseline's host-days"
            )
            reason = (
                f"the model finds this unusual for the site: {worst['_why']} (anomaly score "
                f"{score:.3f}, {where})"
            )
            # The same finding: a rule alert about this host's egress at that time
            # (not, say, always-on's whole night, which must not hide a leak).
            overlapping = [k for k in by_host.get(str(host), []) if alerts[k].direction == "egress"
                           and alerts[k].start_ns < end and alerts[k].end_ns >= start]  # fmt: skip
            if overlapping:
                for k in overlapping:  # one alert, both reasons
                    alerts[k], attached[k] = _attach(alerts[k], attached.get(k), reason,
                                                     verdict_doc)  # fmt: skip
                continue
            ext = (
                None if outside is None else _between_ns(outside_of_host.get(str(host)), start, end)
            )
            if ext is not None and len(ext):
                # What the site sanctioned (allowlist.destinations) is not an
                # anomaly to report, however unusual its timing.
                sent = ext["bytes_out"].to_numpy()
                sanctioned = sent[ext["peer_allowlisted"].to_numpy()].sum()
                # Unless an upload to a never-seen address beside it made a
                # window a candidate (issue 20, item 7).
                if sanctioned >= ALLOWLISTED_SHARE * max(int(sent.sum()), 1) and not (
                    unseen_record(episode, model.history_).any()
                ):
                    continue
            alert = _anomaly_alert(
                str(host), episode, verdict_doc, reason, traffic, ext, start, end
            )
            if raised and _same_incident(raised[-1], alert, policy):
                raised[-1] = _grown(raised[-1], alert, policy)
            else:
                raised.append(alert)
    alerts.extend(raised)
    alerts.sort(key=lambda a: a.sort_key)
    return alerts


def _with_history(
    model: EgressModel, alerts: list[Alert], policy: Policy, minutes: int
) -> list[Alert]:
    """Each ``low-and-slow-egress`` alert compared with the host's earlier
    nights (issue 20, behaviour 1): what its baseline sent to all outside
    addresses at most (95th percentile of each window) in the same hours of
    the day, in ``egress.baseline_bytes`` and a note."""
    history = getattr(model, "history_", None)
    if history is None or not alerts:
        return alerts
    step = minutes * MINUTE_NS
    for k, alert in enumerate(alerts):
        if alert.rule_id != LOW_AND_SLOW:
            continue
        starts = np.arange(alert.start_ns - alert.start_ns % step, alert.end_ns + 1, step,
                           dtype=np.int64)  # fmt: skip
        local = starts + policy.utc_offset_ns(starts)
        hours = (local // (60 * MINUTE_NS)) % 24
        where = history.host_index(np.array([alert.source_ip]))
        usual = history.usual("bytes_out", np.repeat(where, len(starts)), hours)
        baseline = int(usual[:, 1].sum())
        whose = "its baseline" if where[0] >= 0 else "the site's baseline (a host not in it)"
        if baseline:
            ratio = f"; this upload alone is {alert.source_bytes / baseline:,.1f} times that"
        else:
            ratio = ": it sent nothing then"
        note = (
            f"in the same hours of earlier nights {whose} sent at most "
            f"{human_bytes(baseline)} to all outside addresses (95th percentile of each "
            f"{minutes}-minute window){ratio}"
        )
        alerts[k] = alert.with_note(note, baseline_bytes=baseline)
    return alerts


# Flagged episodes of one host to one outside address this close together,
# or in one off-hours period, are one incident (issue 20, item 8): a transfer
# every half hour through the night is one alert, not nineteen.
SAME_INCIDENT_NS = 60 * MINUTE_NS


def _same_incident(before: Alert, after: Alert, policy: Policy) -> bool:
    if before.destination_ip is None or before.source_ip != after.source_ip:
        return False
    if before.destination_ip != after.destination_ip:
        return False
    if after.start_ns - before.end_ns <= SAME_INCIDENT_NS:
        return True
    # Off-hours all the way between them: one night (weekend, holiday), not two.
    between = np.arange(before.end_ns, after.start_ns + 1, MINUTE_NS, dtype=np.int64)
    return not policy.is_business_time(between).any()


def _grown(before: Alert, after: Alert, policy: Policy) -> Alert:
    """One model-anomaly alert for two episodes of one incident: the figures
    added up, the span from the first to the last, the worse verdict kept."""
    model = dict(before.evidence["model"])
    later = after.evidence["model"]
    transfers = int(model.get("transfers", 1)) + 1
    worse = later if later["score"] > model["score"] else model
    merged = {**worse, "windows": int(model["windows"]) + int(later["windows"]),
              "transfers": transfers}  # fmt: skip
    sent = before.source_bytes + after.source_bytes
    start, end = min(before.start_ns, after.start_ns), max(before.end_ns, after.end_ns)
    reason = (before.text if worse is model else after.text).split("; ", 1)[1]
    text = (
        f"{before.source_ip} sent {human_bytes(sent)} to {before.destination_ip} in "
        f"{transfers} transfers ({merged['windows']} windows) {when(start, end, policy)}; "
        f"{reason}"
    )
    return replace(
        before,
        start_ns=start,
        end_ns=end,
        text=text,
        source_bytes=sent,
        source_packets=before.source_packets + after.source_packets,
        destination_bytes=before.destination_bytes + after.destination_bytes,
        destination_packets=before.destination_packets + after.destination_packets,
        evidence={**before.evidence, "model": merged},
    )


def _attach(
    alert: Alert, note: str | None, reason: str, verdict_doc: dict[str, Any]
) -> tuple[Alert, str]:
    """The rule alert with the model's verdict: the first episode's as a note;
    later episodes of the same alert (a night-long low-and-slow alert overlaps
    many) count their windows in and keep the worse verdict, still one note."""
    if note is None:
        return alert.with_note(reason, model=verdict_doc), reason
    model = alert.evidence["model"]
    windows = int(model["windows"]) + int(verdict_doc["windows"])
    if verdict_doc["score"] > model["score"]:
        notes = tuple(reason if n == note else n for n in alert.notes)
        doc = {**verdict_doc, "windows": windows}
        return replace(alert, notes=notes, evidence={**alert.evidence, "model": doc}), reason
    doc = {**model, "windows": windows}
    return replace(alert, evidence={**alert.evidence, "model": doc}), note


def _outside_of(traffic: HostTraffic, hosts: set[str], start: int, end: int) -> pd.DataFrame:
    """Traffic of ``hosts`` with outside addresses in [start, end), with a
    ``host`` text column: cut once, so each episode looks in a small frame."""
    import pandas as pd

    f = traffic.frame
    minute = f["minute_ns"].to_numpy()
    ext = f[f["peer_external"].to_numpy() & (minute >= start) & (minute < end)]
    ids = pd.unique(ext["host_id"].to_numpy())
    wanted = ids[np.isin(traffic.texts(ids), list(hosts))] if len(ids) else ids
    ext = ext[np.isin(ext["host_id"].to_numpy(), wanted)]
    return ext.assign(host=traffic.texts(ext["host_id"].to_numpy()) if len(ext) else "")


def _between_ns(rows: pd.DataFrame | None, start: int, end: int) -> pd.DataFrame | None:
    """``rows`` whose minute is in [start, end)."""
    if rows is None:
        return None
    minute = rows["minute_ns"].to_numpy()
    return rows[(minute >= start) & (minute < end)]


def _anomaly_alert(
    host: str,
    episode: pd.DataFrame,
    verdict_doc: dict[str, Any],
    reason: str,
    traffic: HostTraffic | None,
    ext: pd.DataFrame | None,
    start: int,
    end: int,
) -> Alert:
    sent = int(episode["bytes_out"].sum())
    start_ns, end_ns = start, end - 1
    destination: dict[str, Any] = {}
    beside = ""
    if traffic is not None and ext is not None and len(ext):
        start_ns, end_ns = int(ext["first_ns"].min()), int(ext["last_ns"].max())
        # The news is not the sanctioned backup beside it (issue 20, item 7):
        # name the destination that received most outside the allowlist.
        allowlisted = ext["peer_allowlisted"].to_numpy()
        unsanctioned = ext[~allowlisted]
        if int(unsanctioned["bytes_out"].sum()) > 0 and int(ext["bytes_out"][allowlisted].sum()):
            ext, beside = unsanctioned, " outside the allowlist"
        by_peer = ext.groupby("peer_id", sort=False)["bytes_out"].sum()
        top = int(by_peer.index.to_numpy()[int(np.argmax(by_peer.to_numpy()))])
        top_rows = ext[ext["peer_id"].to_numpy() == top]
        destination = {
            "destination_ip": traffic.text(top),
            "destination_bytes": int(top_rows["bytes_in"].sum()),
            "destination_packets": int(top_rows["packets_in"].sum()),
        }
    windows = len(episode)
    span = f"{windows} window{'s' if windows > 1 else ''}"
    to = f" (most{beside} to {destination['destination_ip']})" if destination else ""
    text = f"{host} sent {human_bytes(sent)}{to} in {span}; {reason}"
    return model_anomaly.DETECTION.alert(
        SEVERITY, start_ns, end_ns, host, text,
        source_bytes=sent,
        source_packets=int(episode["packets_out"].sum()),
        direction="egress",
        evidence={"model": verdict_doc},
        **destination,
    )  # fmt: skip


def _upload_minutes(
    features: pd.DataFrame, outside: pd.DataFrame, policy: Policy, minutes: int
) -> np.ndarray:
    """Minutes of each window that carried the host's outside upload: those
    with at least 5 % of the busiest minute's bytes out. ``outside``: the
    hosts' outside traffic (:func:`_outside_of`)."""
    import pandas as pd

    hosts, starts = window_keys(features)
    sent = outside[outside["bytes_out"].to_numpy() > 0]
    if sent.empty:
        return np.zeros(len(features), dtype=np.int64)
    per = sent.groupby(["host", "minute_ns"], sort=False)["bytes_out"].sum().reset_index()
    per["window"] = window_starts(per["minute_ns"].to_numpy(dtype=np.int64), policy, minutes)
    peak = per.groupby(["host", "window"])["bytes_out"].transform("max")
    busy = per[per["bytes_out"] >= 0.05 * peak].groupby(["host", "window"]).size()
    at = pd.MultiIndex.from_arrays([hosts, starts])
    return busy.reindex(at).fillna(0).to_numpy(dtype=np.int64)
