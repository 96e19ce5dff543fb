"""The day's report: what the nightly scan found, gathered for one local day.

:func:`build_day_report` reduces a :class:`~detector.pipelines.scan.ScanResult` to
plain, frozen records (numbers, texts and instants, nothing the page has to
compute), :func:`~detector.report.html.render_html` turns them into one
self-contained HTML file, and :func:`write_report` writes it atomically.

The day is the site's local calendar day (``policy.zone``): from local midnight
to the next local midnight, 23 or 25 hours on a daylight-saving change. Alerts
are those that overlap the day; traffic figures count the minutes inside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..alerts.record import SEVERITY_NAMES, Alert
from ..detect.rules import detection_of
from ..errors import DetectorError
from ..flows.records import endpoint_columns, flow_columns
from ..forensics.timeline import Timeline, host_timeline
from ..networks import address_pair

if TYPE_CHECKING:
    import pandas as pd

    from ..flows.table import FlowTable
    from ..pipelines.scan import ScanResult
    from ..policy import Policy
    from ..policy.suppress import Suppressed

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_NS = 60 * MINUTE_NS
# Between rotated files a quiet network sends nothing for a while; a minute
# without packets between two files is worth a look, less is ordinary.
GAP_NS = 60 * NS
EVIDENCE_FLOWS = 5  # flows shown per alert, largest upload first
TOP_ROWS = 10  # rows of the top destinations and top uploaders tables
NEW_HOSTS_SHOWN = 50
# Alerts detailed one by one (worst first). A flood day (a sweep, a misconfigured
# policy) can raise thousands; beyond these the table by rule counts the rest,
# and every alert is in the alerts file anyway.
DETAILED_ALERTS = 200

WHY_DEFAULT = "A policy rule fired on this computer's traffic; see docs/rules.md for the rule."


@dataclass(frozen=True)
class CaptureFile:
    """One capture file the nightly scan read."""

    path: str
    bytes: int
    first_ns: int  # first packet time, UTC nanoseconds
    last_ns: int  # last packet time
    packets: int
    kernel_drops: int | None = None  # where the capture records it (pcapng ISB), else None


@dataclass(frozen=True)
class EvidenceFlow:
    """One flow behind an alert, seen from the site's host."""

    first_ns: int
    last_ns: int
    host: str
    host_port: int
    peer: str
    peer_port: int
    transport: str
    bytes_out: int  # host → peer
    packets_out: int
    bytes_in: int  # peer → host
    packets_in: int
    community_id: str


@dataclass(frozen=True)
class HourBar:
    """The host's egress in one hour of the day."""

    start_ns: int
    label: str  # local clock time of the hour's start, "02:00"
    bytes_out: int  # to external addresses


@dataclass(frozen=True)
class AlertEntry:
    alert: Alert
    severity_name: str
    host_role: str  # "isolated", "internal"
    other_side: str  # '203.0.113.140:443 (files.example.net)' or ''
    why: str
    flows: tuple[EvidenceFlow, ...]
    hours: tuple[HourBar, ...]
    too_many_flows: bool = False  # the host's flows were too many to read (a flood's target)


@dataclass(frozen=True)
class Destination:
    address: str
    name: str  # the first name the scan saw for it, '' when none
    bytes_received: int  # sent to it by the site's hosts
    bytes_sent: int  # sent by it to the site's hosts
    hosts: int  # site hosts that talked to it
    allowlisted: bool


@dataclass(frozen=True)
class Uploader:
    host: str
    host_role: str
    bytes_out: int  # to external addresses
    off_hours_bytes: int
    destinations: int


@dataclass(frozen=True)
class NewHost:
    host: str
    host_role: str
    first_ns: int
    bytes_out: int
    bytes_in: int
    peers: int


@dataclass(frozen=True)
class CoverageGap:
    start_ns: int
    end_ns: int
    before: str  # the file that ends at start_ns ('' at the start of the day)
    after: str  # the file that begins at end_ns ('' at the end of the day)


@dataclass(frozen=True)
class SensorHealth:
    files: tuple[CaptureFile, ...]  # in order of first packet
    gaps: tuple[CoverageGap, ...]
    covered_ns: int  # of the day, inside a file's packet span (less the gaps)
    capture_bytes: int
    packets: int
    kernel_drops: int | None  # summed where recorded; None when no file records it
    files_without_drops: int  # files that do not record drops
    flows: int
    processing_seconds: float


@dataclass(frozen=True)
class RuleCount:
    """The day's alerts of one rule at one severity."""

    rule_id: str
    rule_name: str
    severity_name: str
    alerts: int
    hosts: int  # distinct site hosts
    bytes_out: int  # summed over the alerts (sent by the site's hosts)


@dataclass(frozen=True)
class HeldAlert:
    """An alert a ``[[suppress]]`` of the policy held back: listed, not alerted."""

    rule_id: str
    rule_name: str
    severity_name: str
    host: str
    other_side: str
    start_ns: int
    end_ns: int
    source_bytes: int
    reason: str
    until: dt.date


@dataclass(frozen=True)
class DayReport:
    site: str
    sensor: str
    day: dt.date
    timezone: str
    day_start_ns: int
    day_end_ns: int
    business_hours: str  # e.g. 'Mon–Fri 08:30–17:30'
    off_minutes: tuple[tuple[int, int], ...]  # off-hours spans of the day (UTC ns)
    alerts: tuple[AlertEntry, ...]  # worst first, at most DETAILED_ALERTS
    alerts_total: int  # all the day's alerts
    by_rule: tuple[RuleCount, ...]  # all the day's alerts, worst severity first
    severity_counts: tuple[tuple[str, int], ...]  # ('critical', 1), … worst first, non-zero
    hosts: int  # internal hosts with traffic in the day
    egress_bytes: int  # from internal hosts to external addresses
    top_destinations: tuple[Destination, ...]
    top_uploaders: tuple[Uploader, ...]
    new_hosts: tuple[NewHost, ...]
    new_hosts_total: int
    health: SensorHealth
    suppressed: tuple[HeldAlert, ...] = ()  # in order of start
    recurring_days: int = 30  # the policy's report.recurring_days (what "recurring" means)
    # Each alerted host's day minute by minute (detector/forensics/timeline.py).
    host_timelines: tuple[Timeline, ...] = ()


def day_bounds(day: dt.date, policy: Policy) -> tuple[int, int]:
    """UTC ns of local midnight starting ``day`` and the next one."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=policy.zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=policy.zone)
    return int(start.timestamp()) * NS, int(end.timestamp()) * NS


def local_clock(ts_ns: int, policy: Policy, fmt: str = "%H:%M") -> str:
    return dt.datetime.fromtimestamp(ts_ns // NS, tz=policy.zone).strftime(fmt)


def build_day_report(
    result: ScanResult,
    policy: Policy,
    *,
    day: dt.date,
    files: Sequence[CaptureFile],
    processing_seconds: float,
    known_hosts: Collection[str] = (),
    sensor: str = "",
    suppressed: Sequence[Suppressed] = (),
) -> DayReport:
    """The report of the local ``day`` from a scan of its captures.

    ``known_hosts``: internal host addresses (text) seen on earlier days; the
    others with traffic today are "first seen today". ``files``: the captures
    the scan read (any order), for the sensor's health.
    """
    start_ns, end_ns = day_bounds(day, policy)
    minutes = np.arange(start_ns, end_ns, MINUTE_NS, dtype=np.int64)
    off = ~policy.is_business_time(minutes)
    off_spans = _runs(minutes, off)

    frame = result.traffic.frame
    in_day = (frame["minute_ns"].to_numpy() >= start_ns) & (frame["minute_ns"].to_numpy() < end_ns)
    today = frame[in_day]
    external = today[today["peer_external"].to_numpy()]

    def role(address: str) -> str:
        return "isolated" if policy.isolated.contains_text(address) else "internal"

    names = result.names
    alerts = [a for a in result.alerts if a.end_ns >= start_ns and a.start_ns < end_ns]
    alerts.sort(key=lambda a: a.sort_key)
    every_alert, alerts = alerts, alerts[:DETAILED_ALERTS]
    # The flows of these alerts' hosts only, read a chunk at a time (a flood's
    # flows are on disk: detector/flows/spill.py). An alert about the sensor
    # itself (sensor-flood: a day under a flood) has no host, so no flows.
    of_hosts = [a for a in alerts if a.source_ip]
    # A flood's target has millions of flows: hosts are taken fewest flows
    # first up to REPORT_FLOWS, the rest say how to carve theirs.
    listed = result.flows.ends_within({address_pair(a.source_ip) for a in of_hosts},
                                      REPORT_FLOWS)  # fmt: skip
    rows = result.flows.rows_with_ends(listed)
    too_many = {a.source_ip for a in of_hosts if address_pair(a.source_ip) not in listed}
    hosts = sorted({a.source_ip for a in of_hosts})
    hourly = _hourly_egress(external, result, hosts, start_ns, end_ns, policy)
    evidence = dict(zip(map(id, of_hosts), _evidence_flows(rows, of_hosts), strict=True))
    roles = {host: role(host) for host in hosts}
    entries = tuple(
        AlertEntry(
            alert=replace(a, evidence=dict(a.evidence)),
            severity_name=SEVERITY_NAMES.get(a.severity, str(a.severity)),
            host_role=roles.get(a.source_ip, SENSOR_ROLE),
            other_side=_other_side(a),
            why=_why(a, policy),
            flows=evidence.get(id(a), ()),
            hours=hourly.get(a.source_ip, ()),
            too_many_flows=a.source_ip in too_many,
        )
        for a in alerts
    )
    counts: dict[str, int] = {}
    for a in every_alert:
        name = SEVERITY_NAMES.get(a.severity, str(a.severity))
        counts[name] = counts.get(name, 0) + 1

    destinations: list[Destination] = []
    uploaders: list[Uploader] = []
    egress_bytes = int(external["bytes_out"].sum()) if len(external) else 0
    if len(external):
        by_peer = external.groupby("peer_id", sort=False).agg(
            bytes_out=("bytes_out", "sum"),
            bytes_in=("bytes_in", "sum"),
            hosts=("host_id", "nunique"),
            allowlisted=("peer_allowlisted", "max"),
        )
        by_peer = by_peer.sort_values(["bytes_out", "bytes_in"], ascending=False, kind="stable")
        for peer_id, row in _rows(by_peer.head(TOP_ROWS)):
            address = result.traffic.text(int(peer_id))
            found = names.of(address) if names is not None else []
            destinations.append(
                Destination(
                    address=address,
                    name=found[0] if found else "",
                    bytes_received=int(row["bytes_out"]),
                    bytes_sent=int(row["bytes_in"]),
                    hosts=int(row["hosts"]),
                    allowlisted=bool(row["allowlisted"]),
                )
            )
        off_row = ~policy.is_business_time(external["minute_ns"].to_numpy())
        by_host = external.assign(off_bytes=np.where(off_row, external["bytes_out"], 0))
        by_host = by_host.groupby("host_id", sort=False).agg(
            bytes_out=("bytes_out", "sum"),
            off_hours_bytes=("off_bytes", "sum"),
            destinations=("peer_id", "nunique"),
        )
        by_host = by_host[by_host["bytes_out"] > 0]
        by_host = by_host.sort_values("bytes_out", ascending=False, kind="stable")
        for host_id, row in _rows(by_host.head(TOP_ROWS)):
            address = result.traffic.text(int(host_id))
            uploaders.append(Uploader(address, role(address), **_counts(row)))

    new_hosts: list[NewHost] = []
    host_count = 0
    if len(today):
        # A host is one that sent something: an outside scan of unused internal
        # addresses must not fill the list of new hosts.
        sent = today[today["packets_out"].to_numpy() > 0]
        per_host = today.groupby("host_id", sort=False).agg(
            bytes_out=("bytes_out", "sum"),
            bytes_in=("bytes_in", "sum"),
            peers=("peer_id", "nunique"),
        )
        first_sent = sent.groupby("host_id", sort=False)["first_ns"].min()
        per_host = per_host.loc[first_sent.index].assign(first_ns=first_sent)
        host_count = len(per_host)
        known = set(known_hosts)
        for host_id, row in _rows(per_host.sort_values("first_ns", kind="stable")):
            address = result.traffic.text(int(host_id))
            if address in known:
                continue
            new_hosts.append(NewHost(address, role(address), **_counts(row)))

    return DayReport(
        site=policy.site_name,
        sensor=sensor,
        day=day,
        timezone=policy.timezone,
        day_start_ns=start_ns,
        day_end_ns=end_ns,
        business_hours=_business_hours_text(policy),
        off_minutes=off_spans,
        alerts=entries,
        alerts_total=len(every_alert),
        by_rule=_by_rule(every_alert),
        severity_counts=tuple(
            (name, counts[name]) for name in reversed(SEVERITY_NAMES.values()) if name in counts
        ),
        hosts=host_count,
        egress_bytes=egress_bytes,
        top_destinations=tuple(destinations),
        top_uploaders=tuple(uploaders),
        new_hosts=tuple(new_hosts[:NEW_HOSTS_SHOWN]),
        new_hosts_total=len(new_hosts),
        health=_health(files, result.flows, start_ns, end_ns, processing_seconds),
        suppressed=tuple(
            HeldAlert(
                rule_id=h.alert.rule_id,
                rule_name=h.alert.rule_name,
                severity_name=SEVERITY_NAMES.get(h.alert.severity, str(h.alert.severity)),
                host=h.alert.source_ip,
                other_side=_other_side(h.alert),
                start_ns=h.alert.start_ns,
                end_ns=h.alert.end_ns,
                source_bytes=h.alert.source_bytes,
                reason=h.suppression.reason,
                until=h.suppression.until,
            )
            for h in sorted(suppressed, key=lambda h: (h.alert.start_ns, h.alert.rule_id))
        ),
        recurring_days=policy.recurring_days,
        host_timelines=_host_timelines(result, alerts, policy, start_ns, end_ns),
    )


TIMELINE_HOSTS = 10  # alerted hosts given a minute-by-minute section, worst first


def _host_timelines(
    result: ScanResult, alerts: Sequence[Alert], policy: Policy, start_ns: int, end_ns: int
) -> tuple[Timeline, ...]:
    hosts = [a.source_ip for a in sorted(alerts, key=lambda a: a.sort_key) if a.source_ip]
    out = []
    for host in list(dict.fromkeys(hosts))[:TIMELINE_HOSTS]:
        try:
            out.append(host_timeline(result, host, policy, span=(start_ns, end_ns)))
        except DetectorError:
            continue  # no traffic of its own that day (an alert about a server's peer)
    return tuple(out)


# -- pieces ---------------------------------------------------------------------------


def _runs(minutes: np.ndarray, flags: np.ndarray) -> tuple[tuple[int, int], ...]:
    """(start, end) ns of each run of flagged minutes."""
    if not len(minutes):
        return ()
    edges = np.flatnonzero(np.diff(flags.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [len(minutes)]])
    return tuple(
        (int(minutes[a]), int(minutes[b - 1]) + MINUTE_NS)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if flags[a]
    )


def _rows(frame: pd.DataFrame) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index as int, row as a dict) of a frame indexed by address id."""
    records = [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
    return zip((int(i) for i in frame.index.to_numpy()), records, strict=True)


def _counts(row: dict[str, Any]) -> dict[str, int]:
    """A row of sums and counts as the ints a report record holds (its keys are
    the record's field names)."""
    return {key: int(value) for key, value in row.items()}


def _why(alert: Alert, policy: Policy) -> str:
    """Why the alert matters: the site's own words (the policy's
    ``[report.why]``), else its detection's declared words."""
    own = policy.report_why.get(alert.rule_id)
    if own:
        return own
    detection = detection_of(alert.rule_id)
    return detection.why(alert) if detection is not None else WHY_DEFAULT


def _by_rule(alerts: Sequence[Alert]) -> tuple[RuleCount, ...]:
    groups: dict[tuple[int, str], list[Alert]] = {}
    for a in alerts:
        groups.setdefault((a.severity, a.rule_id), []).append(a)
    return tuple(
        RuleCount(
            rule_id=rule_id,
            rule_name=group[0].rule_name,
            severity_name=SEVERITY_NAMES.get(severity, str(severity)),
            alerts=len(group),
            hosts=len({a.source_ip for a in group}),
            bytes_out=sum(a.source_bytes for a in group),
        )
        for (severity, rule_id), group in sorted(
            groups.items(), key=lambda item: (-item[0][0], -len(item[1]), item[0][1])
        )
    )


def _other_side(alert: Alert) -> str:
    if not alert.destination_ip:
        return ""
    text = alert.destination_ip
    if ":" in text and alert.destination_port is not None:
        text = f"[{text}]"
    if alert.destination_port is not None:
        text += f":{alert.destination_port}"
    if alert.destination_domain:
        text += f" ({alert.destination_domain})"
    return text


# What a report says in place of a host for an alert about the sensor itself.
SENSOR_ROLE = "the sensor"
# Flows of the alerts' hosts read for their evidence (256 bytes each).
REPORT_FLOWS = 1_000_000


def _evidence_flows(rows: np.ndarray, alerts: Sequence[Alert]) -> list[tuple[EvidenceFlow, ...]]:
    """For each alert, the host's flows with the alert's other side (any address
    when it names none) during the alert, most bytes sent by the host first.

    The flow rows are indexed by endpoint once (a busy day has a million flows
    and hundreds of alerts), and the chosen rows are made text in one go.
    """
    if not len(rows) or not alerts:
        return [() for _ in alerts]
    import pandas as pd

    flow = endpoint_columns(rows)
    a_hi, a_lo, b_hi, b_lo = flow["a_hi"], flow["a_lo"], flow["b_hi"], flow["b_lo"]
    wanted = {address_pair(a.source_ip) for a in alerts}
    wanted_lo = np.array(sorted({lo for _, lo in wanted}), dtype=np.uint64)
    # Rows with a host of an alert at one end (by the low half first: cheap).
    a_side = np.flatnonzero(np.isin(a_lo, wanted_lo))
    b_side = np.flatnonzero(np.isin(b_lo, wanted_lo))
    ends = pd.DataFrame(
        {
            "hi": np.concatenate([a_hi[a_side], b_hi[b_side]]),
            "lo": np.concatenate([a_lo[a_side], b_lo[b_side]]),
            "row": np.concatenate([a_side, b_side]),
        }
    )
    groups: dict[Any, Any] = ends.groupby(["hi", "lo"], sort=False).indices
    row_of = ends["row"].to_numpy()
    by_host = {(int(hi), int(lo)): row_of[index] for (hi, lo), index in groups.items()}
    chosen: list[np.ndarray] = []
    host_first: list[np.ndarray] = []
    for alert in alerts:
        host_hi, host_lo = address_pair(alert.source_ip)
        mine = by_host.get((host_hi, host_lo), np.zeros(0, dtype=np.intp))
        host_is_a = (a_hi[mine] == np.uint64(host_hi)) & (a_lo[mine] == np.uint64(host_lo))
        keep = (flow["last_ns"][mine] >= alert.start_ns) & (flow["first_ns"][mine] <= alert.end_ns)
        if alert.destination_ip:
            peer_hi, peer_lo = address_pair(alert.destination_ip)
            peer_hi_col = np.where(host_is_a, b_hi[mine], a_hi[mine])
            peer_lo_col = np.where(host_is_a, b_lo[mine], a_lo[mine])
            keep &= (peer_hi_col == np.uint64(peer_hi)) & (peer_lo_col == np.uint64(peer_lo))
        picked, host_is_a = mine[keep], host_is_a[keep]
        sent = np.where(host_is_a, flow["a_bytes"][picked], flow["b_bytes"][picked])
        order = np.lexsort((flow["first_ns"][picked], -sent))[:EVIDENCE_FLOWS]
        chosen.append(picked[order])
        host_first.append(host_is_a[order])
    every = np.concatenate(chosen)
    if not len(every):
        return [() for _ in alerts]
    columns = flow_columns(rows[every], community_id=True, presorted=True)
    init_is_a = flow["a_started"][every] == 1
    out: list[tuple[EvidenceFlow, ...]] = []
    at = 0
    for host_is_a in host_first:
        flows = []
        for i in range(at, at + len(host_is_a)):
            # The flow's initiator (src) is its A end when A started it.
            host_is_src = bool(host_is_a[i - at] == init_is_a[i])
            fwd = (int(columns["src2dst_bytes"][i]), int(columns["src2dst_packets"][i]))
            rev = (int(columns["dst2src_bytes"][i]), int(columns["dst2src_packets"][i]))
            (bytes_out, packets_out), (bytes_in, packets_in) = (
                (fwd, rev) if host_is_src else (rev, fwd)
            )
            src = (str(columns["src_ip"][i]), int(columns["src_port"][i]))
            dst = (str(columns["dst_ip"][i]), int(columns["dst_port"][i]))
            (host, host_port), (peer, peer_port) = (src, dst) if host_is_src else (dst, src)
            flows.append(
                EvidenceFlow(
                    first_ns=int(columns["first_seen"][i].astype(np.int64)),
                    last_ns=int(columns["last_seen"][i].astype(np.int64)),
                    host=host,
                    host_port=host_port,
                    peer=peer,
                    peer_port=peer_port,
                    transport=str(columns["transport"][i]),
                    bytes_out=bytes_out,
                    packets_out=packets_out,
                    bytes_in=bytes_in,
                    packets_in=packets_in,
                    community_id=str(columns["community_id"][i]),
                )
            )
        out.append(tuple(flows))
        at += len(host_is_a)
    return out


def _hourly_egress(
    external: pd.DataFrame,
    result: ScanResult,
    hosts: Sequence[str],
    start_ns: int,
    end_ns: int,
    policy: Policy,
) -> dict[str, tuple[HourBar, ...]]:
    """Each host's bytes to external addresses in each hour of the day."""
    hour_starts = np.arange(start_ns, end_ns, HOUR_NS, dtype=np.int64)
    labels = [local_clock(int(t), policy) for t in hour_starts]
    # The site's hosts are few next to the outside addresses: name those only.
    wanted = set(hosts)
    senders = np.unique(external["host_id"].to_numpy()) if len(external) else np.zeros(0, np.int64)
    ids = {
        int(host_id): text
        for host_id, text in zip(senders, result.traffic.texts(senders), strict=True)
        if text in wanted
    }
    totals = {host: np.zeros(len(hour_starts), dtype=np.int64) for host in hosts}
    if len(external) and ids:
        known = np.array(sorted(ids), dtype=np.int64)
        host_col = external["host_id"].to_numpy().astype(np.int64)
        mine = np.isin(host_col, known)
        which = np.searchsorted(known, host_col[mine])
        hour = (external["minute_ns"].to_numpy()[mine] - start_ns) // HOUR_NS
        grid = np.zeros((len(known), len(hour_starts)), dtype=np.int64)
        np.add.at(grid, (which, hour), external["bytes_out"].to_numpy()[mine].astype(np.int64))
        for k, host_id in enumerate(known):
            totals[ids[int(host_id)]] = grid[k]
    return {
        host: tuple(
            HourBar(int(t), label, int(b))
            for t, label, b in zip(hour_starts, labels, totals[host], strict=True)
        )
        for host in hosts
    }


def _business_hours_text(policy: Policy) -> str:
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    chosen = sorted(policy.business_days)
    if chosen and chosen == list(range(chosen[0], chosen[-1] + 1)) and len(chosen) > 2:
        day_text = f"{days[chosen[0]]}–{days[chosen[-1]]}"
    else:
        day_text = ", ".join(days[d] for d in chosen) or "no days"

    def clock(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    text = f"{day_text} {clock(policy.business_start)}–{clock(policy.business_end)}"
    if policy.holidays:
        text += f", {len(policy.holidays)} holiday{'s' if len(policy.holidays) > 1 else ''}"
    return text


def _health(
    files: Sequence[CaptureFile],
    table: FlowTable,
    start_ns: int,
    end_ns: int,
    processing_seconds: float,
) -> SensorHealth:
    ordered = tuple(sorted(files, key=lambda f: (f.first_ns, f.last_ns, f.path)))
    gaps: list[CoverageGap] = []
    covered_until = start_ns  # the day is covered up to here
    before = ""
    for f in ordered:
        if f.last_ns < start_ns or f.first_ns >= end_ns:
            before = f.path if f.last_ns < start_ns else before
            continue
        if f.first_ns - covered_until > GAP_NS:
            gaps.append(CoverageGap(covered_until, f.first_ns, before, f.path))
        if f.last_ns >= covered_until:
            covered_until = f.last_ns
            before = f.path
    if end_ns - covered_until > GAP_NS:
        gaps.append(CoverageGap(covered_until, end_ns, before, ""))
    missing = sum(min(g.end_ns, end_ns) - max(g.start_ns, start_ns) for g in gaps)
    recorded = [f.kernel_drops for f in ordered if f.kernel_drops is not None]

    def in_day(rows: np.ndarray) -> np.ndarray:
        ends = endpoint_columns(rows)
        return (ends["first_ns"] < end_ns) & (ends["last_ns"] >= start_ns)

    flows = table.count_where(in_day)
    return SensorHealth(
        files=ordered,
        gaps=tuple(gaps),
        covered_ns=max(end_ns - start_ns - missing, 0),
        capture_bytes=sum(f.bytes for f in ordered),
        packets=sum(f.packets for f in ordered),
        kernel_drops=sum(recorded) if recorded else None,
        files_without_drops=len(ordered) - len(recorded),
        flows=flows,
        processing_seconds=float(processing_seconds),
    )
