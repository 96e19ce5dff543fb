"""The core egress rules. Each is declared once in ``RULES`` (id, name, what it
catches) and implemented by one function over the per-host traffic view.

Thresholds and severities come from the site policy (docs/policy.md); what each
rule catches, its known false positives and its regression captures are in
docs/rules.md. Every rule merges consecutive minutes of the same (host,
destination) — gaps up to one feature window — into one alert with a start and
an end, so a long transfer is one alert, not a flood.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..alerts.record import Alert
from ..features.hosts import HOUR_NS, MINUTE_NS, HostTraffic
from ..flows.community_id import community_id_v1
from ..flows.records import TRANSPORT_NAMES
from ..flows.write import human_bytes
from ..policy import NetworkSet

if TYPE_CHECKING:
    from ..policy import Policy

# Beyond this many destinations for one (rule, host), the rest are summed into
# one more alert: a host sweeping the internet must not bury the console.
MAX_ALERTS_PER_HOST = 20


@dataclass
class ScanContext:
    policy: Policy
    traffic: HostTraffic
    window_minutes: int
    # (host_id, peer_id) pairs known from a trained model's baseline: never "new"
    # to bulk-upload-new-destination (None: first contact in this scan decides).
    known_destinations: pd.MultiIndex | None = None
    # First contacts recorded before this traffic's earliest minutes (a live
    # sensor forgets old minutes but not when a host first reached an
    # address): first_ns by (host_id, peer_id); the earlier time wins.
    first_contacts: pd.Series | None = None

    @property
    def gap_ns(self) -> int:
        """Minutes closer than this belong to the same alert."""
        return self.window_minutes * MINUTE_NS


@dataclass(frozen=True)
class Rule:
    rule_id: str
    name: str
    catches: str
    check: Callable[[ScanContext], list[Alert]]


# -- shared helpers ----------------------------------------------------------------


def _runs(minutes: np.ndarray, gap_ns: int) -> np.ndarray:
    """Run number of each sorted minute: a new run starts after a gap > ``gap_ns``."""
    if len(minutes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(np.diff(minutes) > gap_ns)]).astype(np.int64)


def _dense_spans(
    minutes: np.ndarray, volume: np.ndarray, span_ns: int, threshold: int, gap_ns: int
) -> list[tuple[int, int]]:
    """Index ranges [first, last] of ``minutes`` (sorted, unique) covered by some
    span of ``span_ns`` whose ``volume`` reaches ``threshold``, merged when
    closer than ``gap_ns``.

    A span is a run of whole minutes: the one ending at minute t covers
    (t - span, t]. Every minute is tried as an end, so where window or hour
    boundaries fall cannot hide a transfer.
    """
    if len(minutes) == 0:
        return []
    total = np.concatenate([[0], np.cumsum(volume, dtype=np.int64)])
    starts = np.searchsorted(minutes, minutes - span_ns + MINUTE_NS, side="left")
    sums = total[1:] - total[starts]
    hits = np.flatnonzero(sums >= threshold)
    spans: list[tuple[int, int]] = []
    for end in hits:
        first = int(starts[end])
        # Trim minutes that carried nothing at the front of the span.
        while first < end and volume[first] == 0:
            first += 1
        if spans and minutes[first] - minutes[spans[-1][1]] <= gap_ns:
            spans[-1] = (spans[-1][0], int(end))
        else:
            spans.append((first, int(end)))
    return spans


def _between(rows: pd.DataFrame, first_minute: int, last_minute: int) -> pd.DataFrame:
    minutes = rows["minute_ns"].to_numpy()
    return rows[(minutes >= first_minute) & (minutes <= last_minute)]


def _groups_reaching(
    rows: pd.DataFrame, keys: list[str], volume: str, span_ns: int, threshold: int
) -> pd.DataFrame:
    """The rows of every group (by ``keys``) in which some span of ``span_ns``
    (whole minutes) carries at least ``threshold`` of ``volume``.

    One vectorised pass over all groups, so the per-group work that follows
    (building alerts) runs only for the few groups that fire, not for every
    (host, destination) pair of a busy site.
    """
    if rows.empty:
        return rows
    per = rows.groupby([*keys, "minute_ns"], sort=True)[volume].sum()
    per = per[per.to_numpy() > 0]
    if per.empty:
        return rows.iloc[:0]
    group = per.index.droplevel(-1)  # type: ignore[arg-type]
    group_id = _run_ids(per.index)
    minutes = per.index.get_level_values(-1).to_numpy().astype(np.int64)
    # Minute number within the scan, and group in the upper bits: one sorted key.
    step = (minutes - minutes.min()) // MINUTE_NS
    composite = (group_id << 32) | step
    span = span_ns // MINUTE_NS
    lowest = (group_id << 32) | np.maximum(step - span + 1, 0)
    starts = np.searchsorted(composite, lowest, side="left")
    total = np.concatenate([[0], np.cumsum(per.to_numpy(), dtype=np.int64)])
    sums = total[1:] - total[starts]
    firing = np.unique(group_id[sums >= threshold])
    if len(firing) == 0:
        return rows.iloc[:0]
    wanted = group[np.isin(group_id, firing)].unique()
    index = pd.MultiIndex.from_frame(rows[keys]) if len(keys) > 1 else pd.Index(rows[keys[0]])
    return rows[index.isin(wanted)]


def _run_ids(index: pd.Index) -> np.ndarray:
    """For an index sorted by all but its last level: the number of each
    row's group (the levels before the last), 0, 1, ... in order, as
    ``pd.factorize`` numbers them. From the level codes: factorizing the
    groups themselves builds a tuple per row (seconds on a busy day)."""
    n = len(index)
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
    codes = index.codes[:-1] if isinstance(index, pd.MultiIndex) else []
    for level in codes:
        level = np.asarray(level)
        new[1:] |= level[1:] != level[:-1]
    return np.cumsum(new, dtype=np.int64) - 1


def _threshold(n: int) -> str:
    """'50 MB' rather than '50.0 MB' for the round numbers thresholds are."""
    return human_bytes(n).replace(".0 ", " ")


def _ids(key: Any) -> tuple[int, ...]:
    """A groupby key of integer ids as plain ints."""
    return tuple(int(k) for k in key)


def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def _transport(proto: int) -> str:
    return TRANSPORT_NAMES.get(int(proto), str(int(proto)))


def _sums_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``keys`` in order of first appearance and the sum of ``values``
    per key. numpy, not a pandas groupby: rules call this once per alert, and
    a groupby's fixed cost (milliseconds) made a day of thousands of alerts
    take minutes."""
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=values, minlength=len(unique))
    order = np.argsort(first, kind="stable")
    return unique[order], sums[order]


def _main_conversation(rows: Any) -> Any:
    """The conversation (peer port, host port, proto) that carried most bytes
    (the first seen of equals)."""
    peer_port = np.asarray(rows["peer_port"]).astype(np.int64)
    host_port = np.asarray(rows["host_port"]).astype(np.int64)
    proto = np.asarray(rows["proto"]).astype(np.int64)
    total = (np.asarray(rows["bytes_out"]) + np.asarray(rows["bytes_in"])).astype(np.float64)
    keys, sums = _sums_by_key((peer_port << 24) | (host_port << 8) | proto, total)
    best = int(keys[int(np.argmax(sums))])
    return best >> 24, (best >> 8) & 0xFFFF, best & 0xFF


def _local(ts_ns: int, policy: Policy) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).astimezone(policy.zone)


def _when(start_ns: int, end_ns: int, policy: Policy) -> str:
    """'from 02:13 to 02:19 local time (Wed 2026-02-04)' in the site's zone."""
    a, b = _local(start_ns, policy), _local(end_ns, policy)
    if a.date() == b.date():
        return f"from {a:%H:%M} to {b:%H:%M} local time ({a:%a %Y-%m-%d})"
    return f"from {a:%a %Y-%m-%d %H:%M} to {b:%a %Y-%m-%d %H:%M} local time"


def _hours_phrase(start_ns: int, end_ns: int, policy: Policy) -> str:
    minutes = np.arange(start_ns - start_ns % MINUTE_NS, end_ns + 1, MINUTE_NS, dtype=np.int64)
    business = policy.is_business_time(minutes)
    if not business.any():
        return "outside business hours"
    if business.all():
        return "during business hours"
    return "partly outside business hours"


def _alert_for_rows(
    ctx: ScanContext,
    rule: Rule,
    severity: int,
    host: int,
    peer: int | None,
    rows: Any,  # a DataFrame or a dict of numpy columns
    message: str,
    direction: str | None,
    evidence: dict[str, Any],
) -> Alert:
    traffic = ctx.traffic
    alert = Alert(
        rule_id=rule.rule_id,
        rule_name=rule.name,
        severity=severity,
        start_ns=int(np.asarray(rows["first_ns"]).min()),
        end_ns=int(np.asarray(rows["last_ns"]).max()),
        source_ip=traffic.text(host),
        message=message,
        source_bytes=int(np.asarray(rows["bytes_out"]).sum()),
        source_packets=int(np.asarray(rows["packets_out"]).sum()),
        direction=direction,
        evidence=evidence,
    )
    if peer is not None:
        peer_port, host_port, proto = _main_conversation(rows)
        alert.destination_ip = traffic.text(peer)
        if int(proto) in PORTED:
            alert.source_port = int(host_port)
            alert.destination_port = int(peer_port)
        alert.destination_bytes = int(np.asarray(rows["bytes_in"]).sum())
        alert.destination_packets = int(np.asarray(rows["packets_in"]).sum())
        alert.transport = _transport(proto)
        alert.community_id = community_id_v1(
            _packed(alert.source_ip),
            _packed(alert.destination_ip),
            int(proto),
            int(host_port),
            int(peer_port),
        )
    return alert


PORTED = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite


def _service_port(alert: Alert) -> int | None:
    """The port that names the service: the peer's, unless the host is the
    server (its port is the lower one, e.g. 445 against an ephemeral 51682)."""
    if alert.destination_port is None:
        return None
    if alert.source_port is not None and alert.source_port < alert.destination_port:
        return alert.source_port
    return alert.destination_port


def _endpoint(alert: Alert) -> str:
    """'203.0.113.140:443' when the other side offers the service, else
    '10.8.10.44 (to tcp/445 on the host)'."""
    if alert.destination_ip is None:
        return "?"
    ip = alert.destination_ip
    text = f"[{ip}]" if ":" in ip else ip
    service = _service_port(alert)
    if service is None:
        return text
    if service == alert.destination_port:
        return f"{text}:{service}"
    return f"{text} (to {alert.transport}/{service} on {alert.source_ip})"


def _services(rows: Any) -> str:
    """' over tcp/445, tcp/3389' — each conversation's service port, most bytes first."""
    total = (np.asarray(rows["bytes_out"]) + np.asarray(rows["bytes_in"])).astype(np.float64)
    service = np.minimum(np.asarray(rows["host_port"]), np.asarray(rows["peer_port"]))
    proto = np.asarray(rows["proto"]).astype(np.int64)
    keys, sums = _sums_by_key((proto << 16) | service.astype(np.int64), total)
    keys = keys[np.argsort(-sums, kind="stable")]
    names = [
        f"{_transport(key >> 16)}/{key & 0xFFFF}"
        if (key >> 16) in PORTED
        else _transport(key >> 16)
        for key in keys[:4].tolist()
    ]
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    return " over " + ", ".join(dict.fromkeys(names)) + more


def _limit_per_host(alerts: list[Alert], rule: Rule) -> list[Alert]:
    by_host: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_host.setdefault(alert.source_ip, []).append(alert)
    kept: list[Alert] = []
    for host, group in by_host.items():
        group.sort(key=lambda a: a.sort_key)
        kept.extend(group[:MAX_ALERTS_PER_HOST])
        rest = group[MAX_ALERTS_PER_HOST:]
        if rest:
            peers = sorted({a.destination_ip or "" for a in rest})
            kept.append(
                Alert(
                    rule_id=rule.rule_id,
                    rule_name=rule.name,
                    severity=max(a.severity for a in rest),
                    start_ns=min(a.start_ns for a in rest),
                    end_ns=max(a.end_ns for a in rest),
                    source_ip=host,
                    message=f"{host}: {len(rest)} more {rule.rule_id} findings with "
                    f"{len(peers)} more destinations (the {MAX_ALERTS_PER_HOST} largest are "
                    "separate alerts)",
                    source_bytes=sum(a.source_bytes for a in rest),
                    source_packets=sum(a.source_packets for a in rest),
                    evidence={"more_destinations": len(peers), "examples": peers[:10]},
                )
            )
    return kept


# -- the rules -----------------------------------------------------------------------


def check_isolated_egress(ctx: ScanContext) -> list[Alert]:
    rule = RULES["isolated-egress"]
    settings = ctx.policy.rule(rule.rule_id)
    f = ctx.traffic.frame
    mask = (
        f["host_isolated"].to_numpy()
        & ~f["peer_isolated"].to_numpy()
        & ~f["peer_isolated_peer"].to_numpy()
    )
    if settings["ignore_local_scope"]:
        mask &= ~f["peer_local_scope"].to_numpy()
    alerts: list[Alert] = []
    # Columns as numpy arrays sorted by (host, peer, minute), cut into episodes
    # by index: a flood day has thousands, and pandas per episode took minutes.
    sel = f[mask]
    names = ["host_id", "peer_id", "minute_ns", "first_ns", "last_ns", "bytes_out",
             "packets_out", "bytes_in", "packets_in", "peer_port", "host_port", "proto",
             "peer_external"]  # fmt: skip
    order = np.lexsort(
        (sel["minute_ns"].to_numpy(), sel["peer_id"].to_numpy(), sel["host_id"].to_numpy())
    )
    cols = {name: sel[name].to_numpy()[order] for name in names}
    host_ids, peer_ids, minutes = cols["host_id"], cols["peer_id"], cols["minute_ns"]
    new_episode = np.ones(len(order), dtype=bool)
    new_episode[1:] = (
        (host_ids[1:] != host_ids[:-1])
        | (peer_ids[1:] != peer_ids[:-1])
        | (np.diff(minutes) > ctx.gap_ns)
    )
    starts = np.flatnonzero(new_episode)
    stops = [*starts[1:].tolist(), len(order)] if len(order) else []
    for start, stop in zip(starts.tolist(), stops, strict=True):
        episode = {name: values[start:stop] for name, values in cols.items()}
        host, peer = int(host_ids[start]), int(peer_ids[start])
        external = bool(episode["peer_external"][0])
        severity = settings.severity if external else settings["internal_severity"]
        alert = _alert_for_rows(
            ctx, rule, severity, int(host), int(peer), episode, "",
            "egress" if external else "internal", {"host_role": "isolated"},
        )  # fmt: skip
        kind = "outside address" if external else "internal host (not isolated)"
        alert.message = (
            f"{alert.source_ip} (isolated) exchanged packets with {kind} "
            f"{alert.destination_ip}{_services(episode)}: sent "
            f"{human_bytes(alert.source_bytes)}, received "
            f"{human_bytes(alert.destination_bytes)} "
            f"{_when(alert.start_ns, alert.end_ns, ctx.policy)}, "
            f"{_hours_phrase(alert.start_ns, alert.end_ns, ctx.policy)}"
        )
        if not external:
            alert.message += "; a bridge between the isolated and the internet side?"
        alerts.append(alert)
    return _limit_per_host(alerts, rule)


def _off_hours_rows(ctx: ScanContext, rows: pd.DataFrame) -> np.ndarray:
    minutes = rows["minute_ns"].to_numpy()
    unique, inverse = np.unique(minutes, return_inverse=True)
    return ~ctx.policy.is_business_time(unique)[inverse.reshape(-1)]


def check_offhours_bulk_egress(ctx: ScanContext) -> list[Alert]:
    rule = RULES["offhours-bulk-egress"]
    settings = ctx.policy.rule(rule.rule_id)
    span_ns = int(settings["span_minutes"]) * MINUTE_NS
    threshold = int(settings["min_bytes"])
    f = ctx.traffic.frame
    sel = f[
        f["peer_external"].to_numpy()
        & ~f["peer_allowlisted"].to_numpy()
        & (f["bytes_out"].to_numpy() > 0)
    ]
    sel = sel[_off_hours_rows(ctx, sel)]
    sel = _groups_reaching(sel, ["host_id"], "bytes_out", span_ns, threshold)
    alerts: list[Alert] = []
    for host, rows in sel.groupby("host_id", sort=False):
        per_minute = rows.groupby("minute_ns", sort=True)["bytes_out"].sum()
        minutes = per_minute.index.to_numpy()
        for first, last in _dense_spans(minutes, per_minute.to_numpy(), span_ns, threshold,
                                        ctx.gap_ns):  # fmt: skip
            lo, hi = minutes[first], minutes[last]
            episode = rows[
                (rows["minute_ns"] >= lo).to_numpy() & (rows["minute_ns"] <= hi).to_numpy()
            ]
            by_peer = (
                episode.groupby("peer_id", sort=False)["bytes_out"]
                .sum()
                .sort_values(ascending=False)
            )
            top = int(by_peer.index.to_numpy()[0])
            top_rows = episode[episode["peer_id"].to_numpy() == top]
            alert = _alert_for_rows(
                ctx, rule, settings.severity, _ids([host])[0], top, top_rows, "", "egress", {}
            )
            # The rule is about everything the host sent out in the span.
            alert.start_ns = int(episode["first_ns"].min())
            alert.end_ns = int(episode["last_ns"].max())
            alert.source_bytes = int(episode["bytes_out"].sum())
            alert.source_packets = int(episode["packets_out"].sum())
            destinations = [
                {"ip": ctx.traffic.text(int(p)), "bytes": int(b)}
                for p, b in by_peer.head(5).items()
            ]
            alert.evidence = {
                "threshold_bytes": threshold,
                "span_minutes": int(settings["span_minutes"]),
                "destinations": destinations,
                "destination_count": len(by_peer),
            }
            others = len(by_peer) - 1
            alert.message = (
                f"{alert.source_ip} sent {human_bytes(alert.source_bytes)} to "
                + (
                    f"{_endpoint(alert)}"
                    if not others
                    else f"{others + 1:,} outside addresses (most to {_endpoint(alert)}, "
                    f"{human_bytes(int(by_peer.iloc[0]))})"
                )  # fmt: skip
                + f" {_when(alert.start_ns, alert.end_ns, ctx.policy)}, outside business hours"
                f" (threshold {_threshold(threshold)} within {settings['span_minutes']} minutes)"
            )
            alerts.append(alert)
    return _limit_per_host(alerts, rule)


def check_bulk_upload_new_destination(ctx: ScanContext) -> list[Alert]:
    rule = RULES["bulk-upload-new-destination"]
    settings = ctx.policy.rule(rule.rule_id)
    span_ns = int(settings["span_minutes"]) * MINUTE_NS
    threshold = int(settings["min_bytes"])
    new_for_ns = int(round(float(settings["new_for_hours"]) * HOUR_NS))
    f = ctx.traffic.frame
    sel = f[f["peer_external"].to_numpy() & ~f["peer_allowlisted"].to_numpy()]
    pair = ["host_id", "peer_id"]
    if ctx.known_destinations is not None and len(ctx.known_destinations):
        sel = sel[~pd.MultiIndex.from_frame(sel[pair]).isin(ctx.known_destinations)]
    first_contact_of = sel.groupby(pair, sort=False)["first_ns"].transform("min").to_numpy()
    if ctx.first_contacts is not None and len(ctx.first_contacts) and len(sel):
        recorded = ctx.first_contacts.reindex(pd.MultiIndex.from_frame(sel[pair])).to_numpy()
        known = ~np.isnan(recorded)
        first_contact_of = first_contact_of.copy()
        first_contact_of[known] = np.minimum(
            first_contact_of[known], recorded[known].astype(np.int64)
        )
    sel = sel.assign(first_contact=first_contact_of)
    sel = sel[sel["minute_ns"].to_numpy() < first_contact_of + new_for_ns]
    sel = _groups_reaching(sel, pair, "bytes_out", span_ns, threshold)
    alerts: list[Alert] = []
    for key, rows in sel.groupby(pair, sort=False):
        host, peer = _ids(key)
        first_contact = int(rows["first_contact"].to_numpy()[0])
        per_minute = rows.groupby("minute_ns", sort=True)["bytes_out"].sum()
        if int(per_minute.sum()) < threshold:
            continue
        minutes = per_minute.index.to_numpy()
        for first, last in _dense_spans(minutes, per_minute.to_numpy(), span_ns, threshold,
                                        ctx.gap_ns):  # fmt: skip
            lo, hi = minutes[first], minutes[last]
            episode = rows[
                (rows["minute_ns"] >= lo).to_numpy() & (rows["minute_ns"] <= hi).to_numpy()
            ]
            alert = _alert_for_rows(
                ctx, rule, settings.severity, int(host), int(peer), episode, "", "egress",
                {"threshold_bytes": threshold, "span_minutes": int(settings["span_minutes"]),
                 "first_contact": first_contact},
            )  # fmt: skip
            first_local = _local(first_contact, ctx.policy)
            alert.message = (
                f"{alert.source_ip} uploaded {human_bytes(alert.source_bytes)} to "
                f"{_endpoint(alert)}, a destination it first reached at "
                f"{first_local:%H:%M} local time ({first_local:%a %Y-%m-%d}) in this scan"
                f"{'' if ctx.known_destinations is None else ' (not in the model baseline)'}, "
                f"{_when(alert.start_ns, alert.end_ns, ctx.policy)}, "
                f"{_hours_phrase(alert.start_ns, alert.end_ns, ctx.policy)} "
                f"(threshold {_threshold(threshold)} within {settings['span_minutes']} minutes)"
            )
            alerts.append(alert)
    return _limit_per_host(alerts, rule)


def check_mail_egress(ctx: ScanContext) -> list[Alert]:
    rule = RULES["mail-egress"]
    settings = ctx.policy.rule(rule.rule_id)
    ports = np.array(sorted(int(p) for p in settings["ports"]), dtype=np.int32)
    threshold = int(settings["min_bytes"])
    f = ctx.traffic.frame
    # The host is the mail client: the well-known port is on the other side.
    # Mail that stays within the isolated zone (to an isolated host or an
    # isolated peer) is the zone's own business and is not egress.
    sel = f[
        (f["proto"].to_numpy() == 6)
        & np.isin(f["peer_port"].to_numpy(), ports)
        & ~f["peer_isolated"].to_numpy()
        & ~f["peer_isolated_peer"].to_numpy()
    ]
    # Only mail from isolated hosts, or to outside addresses adding up to the
    # threshold, can fire: drop the rest before the per-conversation loop.
    keys = ["host_id", "peer_id", "peer_port"]
    group_total = sel.groupby(keys, sort=False)["bytes_out"].transform("sum").to_numpy()
    # Allowlisted destinations never trigger the volume half of the rule.
    sel = sel[
        sel["host_isolated"].to_numpy()
        | (
            sel["peer_external"].to_numpy()
            & ~sel["peer_allowlisted"].to_numpy()
            & (group_total >= threshold)
        )
    ]
    alerts: list[Alert] = []
    for (host, peer, peer_port), rows in sel.groupby(["host_id", "peer_id", "peer_port"],
                                                      sort=False):  # fmt: skip
        isolated = bool(rows["host_isolated"].iloc[0])
        external = bool(rows["peer_external"].iloc[0])
        if not isolated and not external:
            continue
        rows = rows.sort_values("minute_ns", kind="stable")
        runs = _runs(rows["minute_ns"].to_numpy(), ctx.gap_ns)
        bounds = np.flatnonzero(np.diff(runs)) + 1
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(rows)], strict=True):
            episode = rows.iloc[start:stop]
            sent = int(episode["bytes_out"].sum())
            if not isolated and sent < threshold:
                continue
            severity = settings.severity if isolated else settings["large_severity"]
            alert = _alert_for_rows(
                ctx, rule, severity, int(host), int(peer), episode, "",
                "egress" if external else "internal",
                {"threshold_bytes": threshold, "host_role": "isolated" if isolated else "internal"},
            )  # fmt: skip
            who = f"{alert.source_ip} (isolated)" if isolated else alert.source_ip
            why = (
                "isolated computers must not send mail"
                if isolated
                else f"over the {_threshold(threshold)} threshold for outbound mail"
            )
            alert.message = (
                f"{who} sent mail (TCP {int(peer_port)}) to {_endpoint(alert)}: "
                f"{human_bytes(sent)} {_when(alert.start_ns, alert.end_ns, ctx.policy)}; {why}"
            )
            alerts.append(alert)
    return _limit_per_host(alerts, rule)


def _nights(ctx: ScanContext, start_ns: int, end_ns: int) -> list[tuple[date, list[int]]]:
    """Each local night touching [start_ns, end_ns]: its date and the UTC start
    of each of its hours (5 or 7 on a daylight-saving change night)."""
    settings = ctx.policy.rule("always-on")
    zone = ctx.policy.zone
    night_start = _minutes_of(str(settings["night_start"]))
    night_end = _minutes_of(str(settings["night_end"]))
    length = (night_end - night_start) % 1440 or 1440
    nights = []
    day = _local(start_ns, ctx.policy).date() - timedelta(days=1)
    last_day = _local(end_ns, ctx.policy).date()
    while day <= last_day:
        local_start = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(
            minutes=night_start
        )
        begin = _utc_ns(local_start)
        local_end = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(
            minutes=night_start + length
        )
        finish = _utc_ns(local_end)
        hours = list(range(begin, finish, HOUR_NS))
        nights.append((day, hours))
        day += timedelta(days=1)
    return nights


def _minutes_of(text: str) -> int:
    hh, mm = text.split(":")
    return int(hh) * 60 + int(mm)


def _utc_ns(local: datetime) -> int:
    # Adding a timedelta to an aware datetime moves its wall time; timestamp()
    # then applies the offset in force at that wall time, so a night across a
    # daylight-saving change has its real length (5 or 7 hours for 6 on the clock).
    return int(round(local.timestamp())) * 1_000_000_000


def check_always_on(ctx: ScanContext) -> list[Alert]:
    rule = RULES["always-on"]
    settings = ctx.policy.rule(rule.rule_id)
    traffic = ctx.traffic
    f = traffic.frame
    if f.empty or traffic.first_ns is None or traffic.last_ns is None:
        return []
    min_packets = int(settings["min_packets"])
    exempt = NetworkSet(settings["exempt"])
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
                Alert(
                    rule_id=rule.rule_id,
                    rule_name=rule.name,
                    severity=settings.severity,
                    start_ns=start,
                    end_ns=end - 1,
                    source_ip=traffic.text(host),
                    source_packets=packets,
                    message=(
                        f"{traffic.text(host)} was active in every hour of {label} "
                        f"({settings['night_start']}–{settings['night_end']} local time, "
                        f"{packets:,} packets sent); computers should not stay on all night"
                    ),
                    evidence={
                        "nights": len(run),
                        "night_start": settings["night_start"],
                        "night_end": settings["night_end"],
                    },  # fmt: skip
                )
            )
    return alerts


RULES: dict[str, Rule] = {
    rule.rule_id: rule
    for rule in (
        Rule(
            "isolated-egress",
            "Isolated host talked to a non-isolated address",
            "an isolated host exchanging any packet with an address that is neither "
            "isolated nor an isolated peer: critical when outside, high when internal "
            "(a bridge to an internet computer)",
            check_isolated_egress,
        ),
        Rule(
            "offhours-bulk-egress",
            "Bulk upload outside business hours",
            "a host sending at least min_bytes to non-allowlisted outside addresses "
            "within any span_minutes outside business hours",
            check_offhours_bulk_egress,
        ),
        Rule(
            "bulk-upload-new-destination",
            "Large upload to a new destination",
            "a large upload (min_bytes within span_minutes) to an outside address the "
            "host first reached less than new_for_hours before",
            check_bulk_upload_new_destination,
        ),
        Rule(
            "mail-egress",
            "Outbound mail from an isolated host, or large outbound mail",
            "SMTP/submission from an isolated host (any size), or an outbound mail "
            "transfer of at least min_bytes from any host",
            check_mail_egress,
        ),
        Rule(
            "always-on",
            "Host active all night",
            "a host that sent packets in every hour of a whole night (night_start to "
            "night_end, local time)",
            check_always_on,
        ),
    )
}


def run_rules(ctx: ScanContext) -> list[Alert]:
    """Every enabled rule, alerts worst first."""
    alerts: list[Alert] = []
    for rule_id, rule in RULES.items():
        if ctx.policy.rule(rule_id).enabled:
            alerts.extend(rule.check(ctx))
    alerts.sort(key=lambda a: a.sort_key)
    return alerts
