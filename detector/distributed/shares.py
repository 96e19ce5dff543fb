"""The analysis spread over the workers: each worker analyses a share of the
internal hosts (docs/distributed.md, "The analysis, by host").

A host's features and the rules over its traffic read only rows of which it
is one end, so the internal hosts are dealt into ``count`` shares by a hash
of their address and each counted part's flow and activity rows are dealt
the same way (a row goes to the share of each internal end: a conversation
between hosts of two shares goes to both). One task per share then, on a
worker:

* folds its flows over the parts in stream order, counting a part again
  from the share's open flows where the rows cannot say where the active
  timeout cuts a flow (:class:`~detector.distributed.merge.FlowFold`): the
  recount runs on the worker, with the share's open flows, not in the client;
* analyses its hosts with the single-process scan's own function
  (:func:`detector.pipelines.scan.scan_activity`, given a :class:`HostShare`):
  the traffic of every host is built from the share's rows, then narrowed to
  the share's hosts, and the rules, features and flow rules (beacon) run as
  in one process;
* sends back its alerts, its features, and the few rows the one rule over
  two hosts needs (``pivot-chain``: what isolated hosts sent to internal
  hosts, and what those internal hosts sent outside).

The side-channel rules (``LINK_RULES``) read no host's traffic but the link
facts of isolated segments, which each counting task collects for its part:
the client merges them (:func:`~detector.distributed.merge.link_in_stream_order`)
and runs those rules itself. The client then runs ``pivot-chain`` on the
shares' rows, folds the chain's legs
and orders alerts and feature rows as one process does: alert ids, like the
feature order, follow the addresses (``detector.features.hosts``), so any
share orders its hosts and peers as the whole scan would.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import time
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..alerts.record import Alert
from ..arrays import sorted_unique
from ..detect.declare import TRAFFIC
from ..detect.rules import (
    DETECTIONS,
    _run,
    arp_outside_segment,
    new_device_isolated,
    pivot_chain,
    rogue_dhcp_server,
    rogue_router,
)
from ..flows import activity as activity_rows
from ..flows import layout
from ..flows.activity import ActivityTable
from ..flows.table import FlowTable
from ..networks import NetworkSet, address_ids, address_pair, is_folded
from ..pipelines.before import NOTHING_BEFORE, Before
from .count import FACT_COLUMNS, PartResult, Settings, count_part
from .merge import FlowFold
from .parts import Part

if TYPE_CHECKING:
    import pandas as pd

    from ..detect.context import ScanContext
    from ..features.hosts import HostTraffic
    from ..policy import Policy


def read_only(mapping: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(mapping)


def _mapping_proxy(m: types.MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return read_only, (dict(m),)


def _network_set(networks: NetworkSet) -> tuple[Any, tuple[tuple[Any, ...]]]:
    return NetworkSet, (networks._triples,)


# The site policy travels to the workers: its read-only mappings pickle as
# the dicts they wrap, its network sets as their networks.
copyreg.pickle(types.MappingProxyType, _mapping_proxy)  # type: ignore[arg-type]
copyreg.pickle(NetworkSet, _network_set)

_MIX = np.uint64(0x9E3779B97F4A7C15)
# The rules over the link facts of isolated segments only (detect/rules/segment.py):
# the shares have no link facts (they return nothing there); the client runs them.
LINK_RULES = (new_device_isolated.DETECTION, rogue_dhcp_server.DETECTION,
              rogue_router.DETECTION, arp_outside_segment.DETECTION)  # fmt: skip
PIVOT_COLUMNS = ("minute_ns", "bytes_out", "packets_out", "bytes_in", "packets_in", "first_ns",
                 "last_ns", "host_isolated", "peer_external", "peer_allowlisted", "peer_isolated",
                 "peer_isolated_peer", "peer_local_scope")  # fmt: skip


def address_shares(hi: np.ndarray, lo: np.ndarray, count: int) -> np.ndarray:
    """The share (0 … ``count`` - 1) each address (``hi``, ``lo``) falls in."""
    h = np.asarray(hi).view(np.uint64) * _MIX
    h ^= np.asarray(lo).view(np.uint64)
    h *= _MIX
    h ^= h >> np.uint64(29)
    return (h % np.uint64(count)).astype(np.int64)


def end_shares(
    a_hi: np.ndarray, a_lo: np.ndarray, b_hi: np.ndarray, b_lo: np.ndarray,
    internal: NetworkSet, count: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each row's shares by its two ends: the end's share when it is an
    internal host, else -1. A row with no internal end goes to A's share (its
    flows are kept, though no host analysis reads them)."""
    a_hi, a_lo = np.asarray(a_hi).view(np.uint64), np.asarray(a_lo).view(np.uint64)
    b_hi, b_lo = np.asarray(b_hi).view(np.uint64), np.asarray(b_lo).view(np.uint64)
    share_a = address_shares(a_hi, a_lo, count)
    a_inside = internal.contains(a_hi, a_lo)
    b_inside = internal.contains(b_hi, b_lo)
    share_b = np.where(b_inside, address_shares(b_hi, b_lo, count), -1)
    share_a = np.where(a_inside | ~b_inside, share_a, -1)
    return share_a, share_b


def _flow_shares(rows: np.ndarray, internal: NetworkSet, count: int) -> tuple[np.ndarray, ...]:
    c = layout
    return end_shares(rows[:, c.C_A_HI], rows[:, c.C_A_LO], rows[:, c.C_B_HI], rows[:, c.C_B_LO],
                      internal, count)  # fmt: skip


def _activity_shares(cols: np.ndarray, internal: NetworkSet, count: int) -> tuple[np.ndarray, ...]:
    a_hi, a_lo = cols[activity_rows.C_A_HI], cols[activity_rows.C_A_LO]
    return end_shares(
        a_hi, a_lo, cols[activity_rows.C_B_HI], cols[activity_rows.C_B_LO], internal, count
    )


def deal(result: PartResult, internal: NetworkSet, count: int) -> PartResult:
    """``result``'s flow and activity rows dealt into ``count`` shares
    (``result.shares``), in their order (what the share tasks take)."""
    fa, fb = _flow_shares(result.rows, internal, count)
    aa, ab = _activity_shares(result.activity, internal, count)
    result.shares = [
        (result.rows[(fa == k) | (fb == k)], result.activity[:, (aa == k) | (ab == k)])
        for k in range(count)
    ]
    result.rows = result.rows[:0]
    result.activity = result.activity[:, :0]
    return result


def count_part_dealt(
    part: Part, settings: Settings, internal: NetworkSet, count: int
) -> PartResult:
    """A counting task: :func:`~detector.distributed.count.count_part`, its rows
    dealt into ``count`` shares of hosts. The result stays on the worker;
    the client takes only its :meth:`PartResult.summary`."""
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    result = deal(count_part(part, settings), internal, count)
    result.wall_s = time.perf_counter() - wall0
    result.cpu_s = time.thread_time() - cpu0
    return result


@dataclass
class Piece:
    """One part's rows of one share, and what the fold needs of the part."""

    part: Part
    rows: np.ndarray
    activity: np.ndarray
    latest_ns: int | None
    first_ns: int | None


def piece_of(result: PartResult, share: int) -> Piece:
    """A task run where ``result`` is: its rows of ``share``."""
    assert result.shares is not None
    rows, activity = result.shares[share]
    return Piece(result.part, rows, activity, result.latest_ns, result.stats.first_ns)


class HostShare:
    """A share of the internal hosts, as :func:`detector.pipelines.scan.scan_activity`
    takes it (``hosts=``): ``narrow`` keeps the traffic of the share's hosts
    (the scan's first and last packet stay the whole scan's), ``run_rules``
    runs the rules over traffic but ``pivot-chain`` (it needs two hosts, which
    may be in two shares: the client runs it) and keeps their alerts in rule
    order (``traffic_alerts``), before the client folds a chain's legs.
    ``elsewhere``: how many hosts of the other shares used each address
    (:func:`merge_users`), which the rules that count an address's users
    (``site_users``) add to the share's own."""

    def __init__(
        self,
        index: int,
        count: int,
        span: tuple[int | None, int | None],
        elsewhere: PeerUsers | None = None,
    ) -> None:
        self.index = index
        self.count = count
        self.span = span
        self.elsewhere = elsewhere
        self.traffic_alerts: list[Alert] = []

    def narrow(self, traffic: HostTraffic) -> HostTraffic:
        mine = address_shares(traffic.address_hi, traffic.address_lo, self.count) == self.index
        frame = traffic.frame
        frame = frame[mine[frame["host_id"].to_numpy()]].reset_index(drop=True)
        return dataclasses.replace(traffic, frame=frame, first_ns=self.span[0],
                                   last_ns=self.span[1])  # fmt: skip

    def run_rules(self, ctx: ScanContext) -> list[Alert]:
        chain = pivot_chain.DETECTION.rule_id
        if self.elsewhere is not None and len(self.elsewhere):
            ctx = dataclasses.replace(
                ctx, users_elsewhere=functools.partial(self.elsewhere.of_ids, ctx.traffic)
            )
        self.traffic_alerts = [a for a in _run(ctx, TRAFFIC) if a.rule_id != chain]
        alerts = pivot_chain.fold_legs(list(self.traffic_alerts))  # no chain: as they are
        alerts.sort(key=lambda a: a.sort_key)
        return alerts


@dataclass
class PeerUsers:
    """How many hosts used each address (``hi``, ``lo``: its halves; ``hosts``:
    how many), one row per address: what the shares tell each other of who
    used an outside address (20 bytes an address)."""

    hi: np.ndarray
    lo: np.ndarray
    hosts: np.ndarray
    cpu_s: float = 0.0  # to make it (a merge's, shared out over its tables)

    def __len__(self) -> int:
        return len(self.hi)

    @property
    def nbytes(self) -> int:
        return int(self.hi.nbytes + self.lo.nbytes + self.hosts.nbytes)

    def subset(self, keep: np.ndarray) -> PeerUsers:
        return PeerUsers(self.hi[keep], self.lo[keep], self.hosts[keep])

    @classmethod
    def concatenated(cls, tables: list[PeerUsers]) -> PeerUsers:
        if not tables:
            return cls(np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.int32))
        return cls(np.concatenate([t.hi for t in tables]), np.concatenate([t.lo for t in tables]),
                   np.concatenate([t.hosts for t in tables]))  # fmt: skip

    def of_ids(self, traffic: HostTraffic, peers: np.ndarray) -> pd.Series:
        """The hosts counted here of given addresses of ``traffic`` (``peers``:
        its ids), by peer id (addresses not here: none)."""
        import pandas as pd

        peers = sorted_unique(np.asarray(peers, dtype=np.int64))
        asked = pd.DataFrame({"hi": traffic.address_hi[peers], "lo": traffic.address_lo[peers],
                              "peer_id": peers})  # fmt: skip
        known = pd.DataFrame({"hi": self.hi, "lo": self.lo, "hosts": self.hosts})
        both = asked.merge(known, on=["hi", "lo"], how="inner")
        return pd.Series(both["hosts"].to_numpy(np.int64), index=both["peer_id"].to_numpy())


def share_users(
    cols: np.ndarray, internal: NetworkSet, index: int, count: int, before: Before | None = None
) -> list[PeerUsers]:
    """How many of share ``index``'s hosts used each address, from the
    share's activity rows (``cols``: ``ActivityTable.merged_columns``), dealt
    by the address into ``count`` buckets (bucket k: the addresses of share
    k, which merges them: :func:`merge_users`). A host is an internal end of
    a row in this share, as ``host_traffic`` and ``HostShare.narrow`` have
    it; every address it exchanged a row with is one it used. A host that
    ``before`` records as a user of the address is left out: every share's
    analysis counts it already."""
    a_hi, a_lo = (
        cols[activity_rows.C_A_HI].view(np.uint64),
        cols[activity_rows.C_A_LO].view(np.uint64),
    )
    b_hi, b_lo = (
        cols[activity_rows.C_B_HI].view(np.uint64),
        cols[activity_rows.C_B_LO].view(np.uint64),
    )

    def mine(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        inside = internal.contains(hi, lo) & ~is_folded(hi, lo)
        return inside & (address_shares(hi, lo, count) == index)

    a_host, b_host = mine(a_hi, a_lo), mine(b_hi, b_lo)
    h_hi = np.concatenate([a_hi[a_host], b_hi[b_host]])
    h_lo = np.concatenate([a_lo[a_host], b_lo[b_host]])
    p_hi = np.concatenate([b_hi[a_host], a_hi[b_host]])
    p_lo = np.concatenate([b_lo[a_host], a_lo[b_host]])
    n = len(h_hi)
    ids, hi_of, lo_of = address_ids(np.concatenate([h_hi, p_hi]), np.concatenate([h_lo, p_lo]))
    # Each (host, address) pair once, then the hosts of each address.
    pairs = sorted_unique(ids[:n] * np.int64(max(len(hi_of), 1)) + ids[n:])
    peer = pairs % np.int64(max(len(hi_of), 1))
    if before and len(pairs):
        peer = _not_recorded(pairs, peer, hi_of, lo_of, before)
    hosts = np.bincount(peer, minlength=len(hi_of))
    used = np.flatnonzero(hosts)
    table = PeerUsers(hi_of[used], lo_of[used], hosts[used].astype(np.int32))
    bucket = address_shares(table.hi, table.lo, count)
    return [table.subset(bucket == k) for k in range(count)]


def _not_recorded(
    pairs: np.ndarray, peer: np.ndarray, hi_of: np.ndarray, lo_of: np.ndarray, before: Before
) -> np.ndarray:
    """The peers of the (host, address) ``pairs`` (codes: host id * ids + peer
    id) that ``before`` does not record."""
    import pandas as pd

    host = pairs // np.int64(max(len(hi_of), 1))
    frame = pd.DataFrame({"host_hi": hi_of[host], "host_lo": lo_of[host], "peer_hi": hi_of[peer],
                          "peer_lo": lo_of[peer], "row": np.arange(len(pairs))})  # fmt: skip
    recorded = before.users(frame)["row"].to_numpy()
    keep = np.ones(len(pairs), dtype=bool)
    keep[recorded] = False
    return peer[keep]


def merge_users(tables: list[PeerUsers]) -> list[PeerUsers]:
    """Each share's table of one bucket of addresses (``tables[k]``: share k's)
    merged: for each share, its addresses that hosts of other shares used
    too, with how many of those (a host is in one share only, so the counts
    add). Addresses used in one share only are no one else's concern and go
    nowhere."""
    cpu0 = time.thread_time()
    count = len(tables)
    every = PeerUsers.concatenated(tables)
    share = np.repeat(np.arange(count), [len(t) for t in tables])
    order = np.lexsort((every.lo, every.hi))
    hi, lo, hosts, share = every.hi[order], every.lo[order], every.hosts[order], share[order]
    start = np.ones(len(hi), dtype=bool)
    start[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    group = np.cumsum(start) - 1
    total = np.bincount(group, weights=hosts).astype(np.int64)
    shares_of = np.bincount(group)
    others = (total[group] - hosts).astype(np.int32)
    shared = shares_of[group] > 1
    out = [PeerUsers(hi[mine], lo[mine], others[mine])
           for mine in (shared & (share == k) for k in range(count))]  # fmt: skip
    cpu = (time.thread_time() - cpu0) / max(count, 1)
    for table in out:
        table.cpu_s = cpu
    return out


def pick(tables: list[PeerUsers], k: int) -> PeerUsers:
    """A task run where ``tables`` are: the one of share (or bucket) ``k``."""
    return tables[k]


@dataclass
class ShareResult:
    """What a share task sends back (small: no flows, no activity, unless asked)."""

    index: int
    traffic_alerts: list[Alert] = field(default_factory=list)
    other_alerts: list[Alert] = field(default_factory=list)  # payload and flow rules'
    features: pd.DataFrame | None = None
    feature_order: np.ndarray | None = None  # (window_ns, host_hi, host_lo) per row
    pivot_rows: pd.DataFrame | None = None
    rows: np.ndarray | None = None  # the share's own flows and activity, when asked
    activity: np.ndarray | None = None
    recounts: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    fold_cpu_s: float = 0.0
    analysis_cpu_s: float = 0.0
    # Who used an address, across shares (merge_users): the share's count
    # (users_cpu_s), the bytes of its tables sent to the merges and of the
    # merges' tables it got, and its part of the merges' CPU.
    users_cpu_s: float = 0.0
    users_sent_bytes: int = 0
    users_got_bytes: int = 0
    users_merge_cpu_s: float = 0.0
    users_elsewhere: int = 0  # addresses of the share other shares' hosts used too


@dataclass
class FoldedShare:
    """A share's flows folded over the parts and its activity (phase 1 of a
    share task; it stays on its worker), with its hosts' count of each
    address's users dealt into buckets by address (``users``)."""

    index: int
    count: int
    rows: np.ndarray
    activity: ActivityTable
    out: ShareResult
    users: list[PeerUsers] | None = None


def fold_share(
    index: int,
    count: int,
    pieces: list[Piece],
    settings: Settings,
    policy: Policy,
    *,
    users: bool = False,
    before: Before | None = None,
) -> FoldedShare:
    """Phase 1 of a share task: fold the share's flows over ``pieces`` (the
    parts in stream order) and combine its activity; ``users``: count each
    address's users among the share's hosts too (:func:`share_users`; those
    ``before`` records left out)."""
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    out = ShareResult(index)
    fold = FlowFold(
        round(settings.idle_timeout * 1e9), round(settings.active_timeout * 1e9), settings.max_flows
    )
    for piece in pieces:

        def recount(
            open_rows: np.ndarray, latest: int | None, part: Part = piece.part
        ) -> np.ndarray:
            # Here, where the parts are counted: the part again, from this
            # share's open flows; only this share's flows are kept.
            rows = count_part(part, settings, open_rows, latest).rows
            a, b = _flow_shares(rows, policy.internal, count)
            return rows[(a == index) | (b == index)]

        fold.add_rows(piece.rows, piece.latest_ns, recount, piece.first_ns)
    rows = fold.finish()
    out.recounts = fold.recounted
    out.fold_cpu_s = time.thread_time() - cpu0
    activity = ActivityTable.combined(
        [p.activity for p in pieces], bin_seconds=settings.bin_seconds
    )
    folded = FoldedShare(index, count, rows, activity, out)
    if users:
        cpu1 = time.thread_time()
        folded.users = share_users(activity.merged_columns(), policy.internal, index, count,
                                   before)  # fmt: skip
        out.users_cpu_s = time.thread_time() - cpu1
        out.users_sent_bytes = sum(t.nbytes for t in folded.users)
    out.wall_s = time.perf_counter() - wall0
    out.cpu_s = time.thread_time() - cpu0
    return folded


def users_bucket(folded: FoldedShare, bucket: int) -> PeerUsers:
    """A task run where ``folded`` is: its count of the addresses of ``bucket``."""
    assert folded.users is not None
    return folded.users[bucket]


def finish_share(
    folded: FoldedShare,
    elsewhere: list[PeerUsers],
    settings: Settings,
    policy: Policy,
    span: tuple[int | None, int | None],
    *,
    window_minutes: int | None,
    analyse: bool = True,
    tables: bool = False,
    before: Before | None = None,
) -> ShareResult:
    """Phase 2 of a share task, where ``folded`` is: (``analyse``) analyse the
    share's hosts, with ``elsewhere`` (from every bucket's :func:`merge_users`)
    the other shares' users of its addresses and ``before`` what days before
    taught; ``tables``: send its own flows and activity back too (each row
    once over all shares)."""
    from ..pipelines.scan import scan_activity

    wall0, cpu0 = time.perf_counter(), time.thread_time()
    index, count, rows, activity = folded.index, folded.count, folded.rows, folded.activity
    out = dataclasses.replace(folded.out)  # (a task does not change what it is given)
    if tables:
        a, b = _flow_shares(rows, policy.internal, count)
        out.rows = rows[np.where(a >= 0, a, b) == index]
        cols = activity.merged_columns()
        a, b = _activity_shares(cols, policy.internal, count)
        out.activity = cols[:, np.where(a >= 0, a, b) == index]
    if analyse:
        cpu1 = time.thread_time()
        flows = FlowTable.of_rows(
            rows,
            idle_timeout=settings.idle_timeout,
            active_timeout=settings.active_timeout,
            max_flows=settings.max_flows,
        )
        others = PeerUsers.concatenated(elsewhere)
        out.users_got_bytes = sum(t.nbytes for t in elsewhere)
        out.users_merge_cpu_s = sum(t.cpu_s for t in elsewhere)
        out.users_elsewhere = len(others)
        share = HostShare(index, count, span, others)
        facts = no_facts() if settings.inspects else None
        result = scan_activity(activity, flows, policy, window_minutes=window_minutes, facts=facts,
                               hosts=share, before=before or NOTHING_BEFORE)  # fmt: skip
        raw = {id(a) for a in share.traffic_alerts}
        out.traffic_alerts = share.traffic_alerts
        out.other_alerts = [a for a in result.alerts if id(a) not in raw]
        out.features, out.feature_order = result.features, _feature_order(result.features)
        out.pivot_rows = _pivot_rows(result.traffic, policy)
        out.analysis_cpu_s = time.thread_time() - cpu1
    out.wall_s += time.perf_counter() - wall0
    out.cpu_s += time.thread_time() - cpu0
    return out


def no_facts() -> pd.DataFrame:
    """Payload facts when inspection ran and found nothing."""
    import pandas as pd

    return pd.DataFrame({c: [] for c in FACT_COLUMNS})


def _feature_order(features: pd.DataFrame) -> np.ndarray:
    """(window start ns, host address hi, lo) of each feature row: the order of
    a whole scan's rows (by window, then host id, ids in address order)."""
    hosts = features["host"].to_numpy()
    unique, inverse = np.unique(hosts.astype(str), return_inverse=True)
    pairs = np.array([address_pair(str(h)) for h in unique], dtype=np.uint64).reshape(-1, 2)
    inverse = inverse.reshape(-1)
    import pandas as pd

    window = pd.DatetimeIndex(features["window_start"]).asi8
    return np.stack([window.view(np.uint64), pairs[inverse, 0], pairs[inverse, 1]], axis=1)


def _pivot_rows(traffic: HostTraffic, policy: Policy) -> pd.DataFrame | None:
    """The share's rows ``pivot-chain`` reads, by address: what its isolated
    hosts sent to internal hosts (a chain's first leg), and what its hosts
    that received from an isolated host sent outside (a second leg)."""
    if not policy.isolated or not policy.rule(pivot_chain.DETECTION.rule_id).enabled:
        return None
    f = traffic.frame

    def col(name: str) -> np.ndarray:
        return f[name].to_numpy()

    sent = col("bytes_out") > 0
    first = (sent & col("host_isolated") & ~col("peer_external") & ~col("peer_isolated")
             & ~col("peer_isolated_peer") & ~col("peer_local_scope"))  # fmt: skip
    bridges = np.unique(col("host_id")[col("peer_isolated") & (col("bytes_in") > 0)])
    second = (sent & col("peer_external") & ~col("peer_allowlisted")
              & np.isin(col("host_id"), bridges))  # fmt: skip
    rows = f[first | second]
    h = rows["host_id"].to_numpy()
    p = rows["peer_id"].to_numpy()
    out = rows[list(PIVOT_COLUMNS)].reset_index(drop=True)
    out["host_hi"], out["host_lo"] = traffic.address_hi[h], traffic.address_lo[h]
    out["peer_hi"], out["peer_lo"] = traffic.address_hi[p], traffic.address_lo[p]
    return out


def pivot_traffic(frames: list[pd.DataFrame], span: tuple[int | None, int | None]) -> HostTraffic:
    """The shares' pivot rows as one host traffic (ids in address order, rows
    in the whole scan's order): what ``pivot-chain`` reads of the whole scan."""
    import pandas as pd

    from ..features.hosts import HostTraffic

    frame = pd.concat(frames, ignore_index=True)
    n = len(frame)
    hi = np.concatenate(
        [frame["host_hi"].to_numpy(np.uint64), frame["peer_hi"].to_numpy(np.uint64)]
    )
    lo = np.concatenate(
        [frame["host_lo"].to_numpy(np.uint64), frame["peer_lo"].to_numpy(np.uint64)]
    )
    ids, hi_of, lo_of = address_ids(hi, lo)
    by_address = np.lexsort((lo_of, hi_of))
    rank = np.empty(len(by_address), dtype=np.int64)
    rank[by_address] = np.arange(len(by_address), dtype=np.int64)
    frame = frame.drop(columns=["host_hi", "host_lo", "peer_hi", "peer_lo"])
    frame["host_id"], frame["peer_id"] = rank[ids[:n]], rank[ids[n:]]
    frame = frame.sort_values(["minute_ns", "host_id", "peer_id"], kind="stable")
    return HostTraffic(frame.reset_index(drop=True), hi_of[by_address], lo_of[by_address], *span)


def combined_alerts(
    shares: list[ShareResult],
    policy: Policy,
    window_minutes: int,
    span: tuple[int | None, int | None],
    traffic: HostTraffic,
    link: pd.DataFrame | None = None,
    learned_devices: frozenset[str] = frozenset(),
) -> list[Alert]:
    """Every share's alerts, with ``pivot-chain`` over the shares' rows, the
    side-channel rules over the scan's ``link`` facts (``traffic``: what the
    client has of the scan's, which they do not read) and a chain's legs
    folded, in the order of a single-process scan."""
    from ..detect.context import ScanContext
    from ..pipelines.scan import alert_order

    rank = {d.rule_id: k for k, d in enumerate(DETECTIONS)}
    raw = [a for s in shares for a in s.traffic_alerts]
    pivots = [s.pivot_rows for s in shares if s.pivot_rows is not None and len(s.pivot_rows)]
    chain = pivot_chain.DETECTION
    if pivots:
        raw.extend(chain.run(ScanContext(policy, pivot_traffic(pivots, span), window_minutes)))
    if link is not None:
        sides = ScanContext(policy, traffic, window_minutes, link=link,
                            learned_devices=learned_devices)  # fmt: skip
        for rule in LINK_RULES:
            raw.extend(rule.run(sides))
    # As one process runs them: rule after rule (a share's alerts of a rule in its order).
    raw.sort(key=lambda a: rank.get(a.rule_id, len(rank)))
    alerts = pivot_chain.fold_legs(raw)
    alerts.extend(a for s in shares for a in s.other_alerts)
    alerts.sort(key=alert_order)
    return alerts


def combined_features(shares: list[ShareResult]) -> pd.DataFrame:
    """Every share's feature rows in the order of a single-process scan."""
    import pandas as pd

    given = [s for s in shares if s.features is not None and s.feature_order is not None]
    rows = [s for s in given if len(s.features)]  # type: ignore[arg-type]
    if len(rows) < 2:  # (an empty frame's columns have no values to give their types)
        return (rows or given)[0].features.reset_index(drop=True)  # type: ignore[union-attr]
    features = pd.concat([s.features for s in rows], ignore_index=True)
    key = np.concatenate([s.feature_order for s in rows])  # type: ignore[misc]
    order = np.lexsort((key[:, 2], key[:, 1], key[:, 0].view(np.int64)))
    return features.iloc[order].reset_index(drop=True)
