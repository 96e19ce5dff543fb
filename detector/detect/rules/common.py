"""What the rules share: sliding spans over per-minute traffic, one alert per
episode, and the plain-words pieces of their messages (when, where, how much).

Every rule merges consecutive minutes of the same (host, destination) — gaps up
to one feature window — into one alert with a start and an end, so a long
transfer is one alert, not a flood.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...alerts.record import Alert
from ...arrays import sorted_unique
from ...flows.community_id import community_id_v1
from ...flows.records import TRANSPORT_NAMES
from ...units import DAY_NS, MINUTE_NS, human_bytes
from ..declare import PERCENT, Integer, Setting

if TYPE_CHECKING:
    from ...policy import Policy
    from ..context import ScanContext
    from ..declare import Check, Rule


def minute_runs(minutes: np.ndarray, gap_ns: int) -> np.ndarray:
    """Run number of each sorted minute: a new run starts after a gap > ``gap_ns``."""
    if len(minutes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(np.diff(minutes) > gap_ns)]).astype(np.int64)


def dense_spans(
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


def groups_reaching(
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
    # A group whose whole volume is under the threshold has no span that
    # reaches it: only the others are grouped by minute (on a busy day, few).
    codes = group_codes(rows, keys)
    totals = np.bincount(codes, weights=rows[volume].to_numpy(dtype=np.float64))
    rows = rows[totals[codes] >= threshold]
    if rows.empty:
        return rows
    per = rows.groupby([*keys, "minute_ns"], sort=True)[volume].sum()
    per = per[per.to_numpy() > 0]
    if per.empty:
        return rows.iloc[:0]
    group = per.index.droplevel(-1)  # type: ignore[arg-type]
    group_id = run_ids(per.index)
    minutes = per.index.get_level_values(-1).to_numpy().astype(np.int64)
    # Minute number within the scan, and group in the upper bits: one sorted key.
    step = (minutes - minutes.min()) // MINUTE_NS
    composite = (group_id << 32) | step
    span = span_ns // MINUTE_NS
    lowest = (group_id << 32) | np.maximum(step - span + 1, 0)
    starts = np.searchsorted(composite, lowest, side="left")
    total = np.concatenate([[0], np.cumsum(per.to_numpy(), dtype=np.int64)])
    sums = total[1:] - total[starts]
    firing = sorted_unique(group_id[sums >= threshold])
    if len(firing) == 0:
        return rows.iloc[:0]
    wanted = group[np.isin(group_id, firing)].unique()
    index = pd.MultiIndex.from_frame(rows[keys]) if len(keys) > 1 else pd.Index(rows[keys[0]])
    return rows[index.isin(wanted)]


def group_codes(rows: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """One int64 per row, equal where the rows' ``keys`` (non-negative integer
    columns: ids, periods) are equal, and small enough to count with
    ``np.bincount``: a group-by without pandas' factorizing."""
    codes = np.zeros(len(rows), dtype=np.int64)
    for key in keys:
        values = rows[key].to_numpy().astype(np.int64, copy=False)
        if len(values) == 0:
            break
        if values.min() < 0:
            values = np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)
        width = int(values.max()) + 1
        if int(codes.max()) >= (1 << 62) // width:  # keep the product in 63 bits
            codes = np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.int64)
        codes = codes * width + values
    if len(codes) and int(codes.max()) >= 4 * len(codes):  # sparse: renumber densely
        codes = np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return codes


def run_ids(index: pd.Index) -> np.ndarray:
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


def threshold_phrase(threshold: int, minutes: int) -> str:
    """'(threshold 50 MB within 60 minutes)'."""
    return f"(threshold {threshold_text(threshold)} within {minutes} minutes)"


def threshold_text(n: int) -> str:
    """'50 MB' rather than '50.0 MB' for the round numbers thresholds are."""
    return human_bytes(n).replace(".0 ", " ")


def ids(key: Any) -> tuple[int, ...]:
    """A groupby key of integer ids as plain ints."""
    return tuple(int(k) for k in key)


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def transport_name(proto: int) -> str:
    return TRANSPORT_NAMES.get(int(proto), str(int(proto)))


def sums_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``keys`` in order of first appearance and the sum of ``values``
    per key. numpy, not a pandas groupby: rules call this once per alert, and
    a groupby's fixed cost (milliseconds) made a day of thousands of alerts
    take minutes."""
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=values, minlength=len(unique))
    order = np.argsort(first, kind="stable")
    return unique[order], sums[order]


def main_conversation(rows: Any) -> Any:
    """The conversation (peer port, host port, proto) that carried most bytes
    (the first seen of equals)."""
    peer_port = np.asarray(rows["peer_port"]).astype(np.int64)
    host_port = np.asarray(rows["host_port"]).astype(np.int64)
    proto = np.asarray(rows["proto"]).astype(np.int64)
    total = (np.asarray(rows["bytes_out"]) + np.asarray(rows["bytes_in"])).astype(np.float64)
    keys, sums = sums_by_key((peer_port << 24) | (host_port << 8) | proto, total)
    best = int(keys[int(np.argmax(sums))])
    return best >> 24, (best >> 8) & 0xFFFF, best & 0xFF


def local_datetime(ts_ns: int, policy: Policy) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).astimezone(policy.zone)


def when(start_ns: int, end_ns: int, policy: Policy) -> str:
    """'from 02:13 to 02:19 local time (Wed 2026-02-04)' in the site's zone."""
    a, b = local_datetime(start_ns, policy), local_datetime(end_ns, policy)
    if a.date() == b.date():
        return f"from {a:%H:%M} to {b:%H:%M} local time ({a:%a %Y-%m-%d})"
    return f"from {a:%a %Y-%m-%d %H:%M} to {b:%a %Y-%m-%d %H:%M} local time"


def hours_phrase(start_ns: int, end_ns: int, policy: Policy) -> str:
    minutes = np.arange(start_ns - start_ns % MINUTE_NS, end_ns + 1, MINUTE_NS, dtype=np.int64)
    business = policy.is_business_time(minutes)
    if not business.any():
        return "outside business hours"
    if business.all():
        return "during business hours"
    return "partly outside business hours"


@dataclass(frozen=True)
class Conversation:
    """What an alert says about one host, and maybe one other side, over some
    rows of its traffic: every field of the alert but its words. A rule reads
    these to write its sentence, then makes the alert once (:meth:`alert`)."""

    source_ip: str
    start_ns: int
    end_ns: int
    source_bytes: int
    source_packets: int
    destination_ip: str | None = None
    source_port: int | None = None
    destination_port: int | None = None
    destination_bytes: int = 0
    destination_packets: int = 0
    transport: str | None = None
    community_id: str | None = None

    def when(self, policy: Policy) -> str:
        """'from 02:13 to 02:19 local time (Wed 2026-02-04)'."""
        return when(self.start_ns, self.end_ns, policy)

    def when_and_hours(self, policy: Policy) -> str:
        """'from 02:13 to 02:19 local time (Wed 2026-02-04), outside business hours'."""
        return f"{self.when(policy)}, {hours_phrase(self.start_ns, self.end_ns, policy)}"

    def alert(
        self,
        rule: Rule,
        text: str,
        direction: str | None,
        evidence: dict[str, Any],
        severity: int | None = None,
    ) -> Alert:
        """The alert: these figures, ``text``, at the site's severity for the
        rule unless ``severity`` says otherwise."""
        own = {f.name: getattr(self, f.name) for f in fields(self)}
        start, end, host = own.pop("start_ns"), own.pop("end_ns"), own.pop("source_ip")
        return rule.alert(
            start, end, host, text, severity, direction=direction, evidence=evidence, **own
        )


def conversation(ctx: ScanContext, host: int, peer: int | None, rows: Any) -> Conversation:
    """The conversation of ``host`` in ``rows`` (a DataFrame or a dict of numpy
    columns); with ``peer``, the other side as seen in the conversation (peer
    port, host port, protocol) that carried most bytes."""
    traffic = ctx.traffic
    own = Conversation(
        source_ip=traffic.text(host),
        start_ns=int(np.asarray(rows["first_ns"]).min()),
        end_ns=int(np.asarray(rows["last_ns"]).max()),
        source_bytes=int(np.asarray(rows["bytes_out"]).sum()),
        source_packets=int(np.asarray(rows["packets_out"]).sum()),
    )
    if peer is None:
        return own
    peer_port, host_port, proto = main_conversation(rows)
    destination = traffic.text(peer)
    ported = int(proto) in PORTED
    return replace(
        own,
        destination_ip=destination,
        source_port=int(host_port) if ported else None,
        destination_port=int(peer_port) if ported else None,
        destination_bytes=int(np.asarray(rows["bytes_in"]).sum()),
        destination_packets=int(np.asarray(rows["packets_in"]).sum()),
        transport=transport_name(proto),
        community_id=community_id_v1(
            packed(own.source_ip), packed(destination), int(proto), int(host_port), int(peer_port)
        ),
    )


PORTED = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite


def service_port(alert: Alert | Conversation) -> int | None:
    """The port that names the service: the peer's, unless the host is the
    server (its port is the lower one, e.g. 445 against an ephemeral 51682)."""
    if alert.destination_port is None:
        return None
    if alert.source_port is not None and alert.source_port < alert.destination_port:
        return alert.source_port
    return alert.destination_port


def endpoint(alert: Alert | Conversation) -> str:
    """'203.0.113.140:443' when the other side offers the service, else
    '10.8.10.44 (to tcp/445 on the host)'."""
    if alert.destination_ip is None:
        return "?"
    ip = alert.destination_ip
    text = f"[{ip}]" if ":" in ip else ip
    service = service_port(alert)
    if service is None:
        return text
    if service == alert.destination_port:
        return f"{text}:{service}"
    return f"{text} (to {alert.transport}/{service} on {alert.source_ip})"


def services_phrase(rows: Any) -> str:
    """' over tcp/445, tcp/3389' — each conversation's service port, most bytes first."""
    total = (np.asarray(rows["bytes_out"]) + np.asarray(rows["bytes_in"])).astype(np.float64)
    host_port, peer_port = np.asarray(rows["host_port"]), np.asarray(rows["peer_port"])
    # The lower port is the service's; a row whose client port a flood's fold
    # dropped (flows/fold.py) has only the service's.
    service = np.where((host_port == 0) | (peer_port == 0), np.maximum(host_port, peer_port),
                       np.minimum(host_port, peer_port))  # fmt: skip
    proto = np.asarray(rows["proto"]).astype(np.int64)
    keys, sums = sums_by_key((proto << 16) | service.astype(np.int64), total)
    keys = keys[np.argsort(-sums, kind="stable")]
    names = [
        f"{transport_name(key >> 16)}/{key & 0xFFFF}"
        if (key >> 16) in PORTED
        else transport_name(key >> 16)
        for key in keys[:4].tolist()
    ]
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    return " over " + ", ".join(dict.fromkeys(names)) + more


def over_facts(
    kind: str,
) -> Callable[[Callable[[ScanContext, Rule, pd.DataFrame], list[Alert]]], Check]:
    """Decorator for a check over what payload inspection found of one ``kind``
    (``pii``, ``dns``, ``p2p-signature``, ...): it is given those facts too, and
    runs only when inspection ran and found some."""

    def attach(check: Callable[[ScanContext, Rule, pd.DataFrame], list[Alert]]) -> Check:
        def run(ctx: ScanContext, rule: Rule) -> list[Alert]:
            facts = ctx.facts
            if facts is None or facts.empty:
                return []
            found = facts[facts["kind"].to_numpy() == kind]
            return check(ctx, rule, found) if len(found) else []

        return run

    return attach


def internal_side(facts: pd.DataFrame, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
    """Whether each fact's source, and its destination, is an internal address."""
    src_in = policy.internal.contains(facts["src_hi"].to_numpy(), facts["src_lo"].to_numpy())
    dst_in = policy.internal.contains(facts["dst_hi"].to_numpy(), facts["dst_lo"].to_numpy())
    return src_in, dst_in


def off_hours_periods(policy: Policy, minutes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each UTC minute: whether it is off-hours, and the off-hours period it
    belongs to (meaningful where off-hours), so a night, a weekend or a holiday
    run is one period from the end of one business day to the start of the next.

    The period is named by the local day number (days since 1970-01-01) of the
    business day that ends it: Friday evening, the weekend and Monday morning
    share Monday's number; a site with no business days is one period (0).
    """
    minutes = np.asarray(minutes, dtype=np.int64)
    off = ~policy.is_business_time(minutes)
    period = np.zeros(len(minutes), dtype=np.int64)
    if not len(minutes) or not policy.business_days:
        return off, period
    local = minutes + policy.utc_offset_ns(minutes)
    day = np.floor_divide(local, DAY_NS)
    minute_of_day = (local - day * DAY_NS) // MINUTE_NS
    holidays = {(d - date(1970, 1, 1)).days for d in policy.holidays}

    def business(d: int) -> bool:  # 1970-01-01 was a Thursday (weekday 3)
        return (d + 3) % 7 in policy.business_days and d not in holidays

    def next_business(d: int) -> int:
        while not business(d):
            d += 1
        return d

    for d in np.unique(day).tolist():
        on_day = day == d
        if business(d):
            before = on_day & (minute_of_day < policy.business_start)
            period[before] = d
            period[on_day & ~before] = next_business(d + 1)
        else:
            period[on_day] = next_business(d)
    return off, period


def off_hours_rows(policy: Policy, rows: pd.DataFrame, keep_all: bool = False) -> pd.DataFrame:
    """The off-hours ``rows`` (per-minute traffic) with their off-hours
    ``period``; with ``keep_all``, every row, with an ``off`` column and period
    -1 in business hours."""
    if rows.empty:
        return (
            rows.assign(off=np.zeros(0, bool), period=np.zeros(0, np.int64)) if keep_all else rows
        )
    unique, inverse = np.unique(rows["minute_ns"].to_numpy(), return_inverse=True)
    off, period = off_hours_periods(policy, unique)
    inverse = inverse.reshape(-1)
    off, period = off[inverse], period[inverse]
    if keep_all:
        return rows.assign(off=off, period=np.where(off, period, -1))
    return rows[off].assign(period=period[off])


def episodes(
    rows: pd.DataFrame, span_ns: int, threshold: int, gap_ns: int
) -> Iterator[pd.DataFrame]:
    """The ``rows`` (per-minute traffic of one host, or one host and destination)
    of each episode: a run of minutes that some ``span_ns`` with ``threshold``
    bytes out covers, runs closer than ``gap_ns`` merged (``dense_spans``).
    Each episode is one alert."""
    per_minute = rows.groupby("minute_ns", sort=True)["bytes_out"].sum()
    if int(per_minute.sum()) < threshold:
        return
    minutes = per_minute.index.to_numpy()
    minute = rows["minute_ns"].to_numpy()
    for first, last in dense_spans(minutes, per_minute.to_numpy(), span_ns, threshold, gap_ns):
        yield rows[(minute >= minutes[first]) & (minute <= minutes[last])]


def outside_rows(ctx: ScanContext, sending: bool = False) -> pd.DataFrame:
    """The host traffic with outside addresses the site has not allowlisted
    (``sending``: only the minutes in which the host sent them something):
    what the volume rules count."""
    f = ctx.traffic.frame
    keep = f["peer_external"].to_numpy() & ~f["peer_allowlisted"].to_numpy()
    if sending:
        keep &= f["bytes_out"].to_numpy() > 0
    return f[keep]


def upload_episodes(
    ctx: ScanContext, rule: Rule, rows: pd.DataFrame, key: list[str]
) -> Iterator[tuple[tuple[int, ...], pd.DataFrame]]:
    """The bulk rules' uploads: each episode in which a host (``key``
    ``["host_id"]``) or a host and an outside address (``["host_id",
    "peer_id"]``) sent at least the rule's ``min_bytes`` within its
    ``span_minutes`` in ``rows``, calls to a service the site shares left out
    (:func:`without_shared_calls`), with the group's ids."""
    span_ns = rule.ns("span_minutes")
    threshold = int(rule["min_bytes"])
    rows = groups_reaching(rows, key, "bytes_out", span_ns, threshold)
    # A call to the office's meeting service is not an upload; the look-up of
    # who else used an address reads only the groups that could fire.
    rows = without_shared_calls(ctx, rows, rule)
    rows = groups_reaching(rows, key, "bytes_out", span_ns, threshold)
    for group, group_rows in rows.groupby(key, sort=False):
        for episode in episodes(group_rows, span_ns, threshold, ctx.gap_ns):
            yield ids(group), episode


def new_destination_rows(ctx: ScanContext, rows: pd.DataFrame, new_for_ns: int) -> pd.DataFrame:
    """The ``rows`` (host traffic with outside peers) in which the peer was still
    new to the host: not in the model's baseline, and less than ``new_for_ns``
    after the host first reached it (in this scan, or as recorded before),
    with that first contact in a ``first_contact`` column."""
    pair = ["host_id", "peer_id"]
    if ctx.known_destinations is not None and len(ctx.known_destinations):
        rows = rows[~pd.MultiIndex.from_frame(rows[pair]).isin(ctx.known_destinations)]
    first_contact_of = rows.groupby(pair, sort=False)["first_ns"].transform("min").to_numpy()
    if ctx.first_contacts is not None and len(ctx.first_contacts) and len(rows):
        recorded = ctx.first_contacts.reindex(pd.MultiIndex.from_frame(rows[pair])).to_numpy()
        known = ~np.isnan(recorded)
        first_contact_of = first_contact_of.copy()
        first_contact_of[known] = np.minimum(
            first_contact_of[known], recorded[known].astype(np.int64)
        )
    rows = rows.assign(first_contact=first_contact_of)
    return rows[rows["minute_ns"].to_numpy() < first_contact_of + new_for_ns]


# The settings of the volume rules that leave out calls to a shared service
# (issue 20: video calls to meeting servers new to the host were their false alerts).
SHARED_CALL_SETTINGS = (
    Setting(
        "two_way_percent",
        PERCENT,
        50,
        "A conversation in which the host got back at least this share of what it sent "
        "(a call) is not counted …",
    ),
    Setting(
        "shared_by_hosts",
        Integer(0, "must be 0 or more"),
        3,
        "… when at least this many other hosts exchanged packets with the same outside "
        "address in the scan or before it (the model's baseline with `scan --model`, what "
        "a live sensor saw earlier) (a meeting service the site uses); `0` counts every "
        "call.",
    ),
)


def site_users(ctx: ScanContext, peers: np.ndarray) -> pd.Series:
    """How many hosts of the site exchanged packets with each of ``peers``
    (outside address ids), in this traffic or before it (a trained model's
    baseline, the first-contact record: ``ctx.baseline_users``; on a worker,
    the other shares' hosts: ``ctx.users_elsewhere``), indexed by peer id."""
    traffic = ctx.traffic
    f = traffic.frame
    used = np.isin(f["peer_id"].to_numpy(dtype=np.int64), sorted_unique(peers))
    host = f["host_id"].to_numpy(dtype=np.int64)[used]
    users = pd.DataFrame({"host_hi": traffic.address_hi[host], "host_lo": traffic.address_lo[host],
                          "peer_id": f["peer_id"].to_numpy(dtype=np.int64)[used]})  # fmt: skip
    if ctx.baseline_users is not None:
        users = pd.concat([users, ctx.baseline_users(peers)], ignore_index=True)
    counts = users.drop_duplicates().groupby("peer_id", sort=False).size()
    if ctx.users_elsewhere is not None:
        counts = counts.add(ctx.users_elsewhere(peers), fill_value=0).astype(np.int64)
    return counts


def without_shared_calls(ctx: ScanContext, rows: pd.DataFrame, settings: Any) -> pd.DataFrame:
    """``rows`` (per-minute traffic with outside peers) without the calls to a
    service the site uses: conversations (a host and an address, minutes
    closer than a feature window) in which the host got back at least
    ``two_way_percent`` % of what it sent, with an address that at least
    ``shared_by_hosts`` other hosts exchanged packets with, in this traffic
    or before it (:func:`site_users`; the rule's ``settings``,
    ``SHARED_CALL_SETTINGS``).

    A video call moves as much each way, to a meeting server the office
    shares. Either condition alone is cheap to fake: an exfiltration can have
    its server echo the data back, or go to a popular cloud service; both
    together need the echo from an address many hosts of the site use
    (RITA's "prevalence"). ``shared_by_hosts`` 0: no call is left out."""
    two_way_percent = int(settings["two_way_percent"])
    shared_by_hosts = int(settings["shared_by_hosts"])
    if shared_by_hosts <= 0 or rows.empty:
        return rows
    peer = rows["peer_id"].to_numpy(dtype=np.int64)
    hosts_per_peer = site_users(ctx, peer)
    # The host itself is one of the address's users.
    shared_peers = hosts_per_peer.index.to_numpy()[hosts_per_peer.to_numpy() > shared_by_hosts]
    shared = np.isin(peer, shared_peers)
    if not shared.any():
        return rows
    calls = rows[shared].sort_values(["host_id", "peer_id", "minute_ns"], kind="stable")
    host = calls["host_id"].to_numpy(dtype=np.int64)
    other = calls["peer_id"].to_numpy(dtype=np.int64)
    minute = calls["minute_ns"].to_numpy(dtype=np.int64)
    new = np.ones(len(calls), dtype=bool)
    new[1:] = (host[1:] != host[:-1]) | (other[1:] != other[:-1]) | (np.diff(minute) > ctx.gap_ns)
    run = np.cumsum(new) - 1
    sent = np.bincount(run, weights=calls["bytes_out"].to_numpy(dtype=np.float64))
    received = np.bincount(run, weights=calls["bytes_in"].to_numpy(dtype=np.float64))
    two_way = 100 * received >= two_way_percent * sent
    return rows.drop(index=calls.index[two_way[run]])
