"""What the days before teach a day's scan (docs/nightly.md, "What the days
before teach"): who used each outside address, and each host's habits with it.

A scan without a model knows only its own traffic: a call to the meeting
server three other hosts of the office called last week looks like an upload
to a server new to the host, and a push channel held every night looks like a
beacon. The nightly remembers, for each (internal host, outside address) pair,
when the host first reached it and which *kinds* of traffic it had with it, a
day at a time (:func:`day_contacts`), and gives the next days' scans the
habits of the same kind only (:class:`History`):

* **calls** (two-way conversations of at least ``CALL_MIN_BYTES`` sent, the
  host getting back at least bulk-upload-new-destination's ``two_way_percent``
  of it): the hosts that called an address are its users for the volume
  rules' call exemption (``shared_by_hosts``);
* **beats** (connections beacon would have scored a beacon: its
  ``min_connections``, ``min_hours`` and ``min_score``): a host's beat to an
  address it beat to before is its habit (beacon's ``habits``);
* **uploads** (at least bulk-upload-new-destination's ``min_bytes`` within its
  ``span_minutes``): an address the host uploaded that much to before is not
  new to it (its first contact is given to the scan);
* **any use**: read by one clause only, low-and-slow-egress's single upload
  to "an address no other host of the site used".

Small traffic teaches nothing: days of a few kB to a future exfiltration
server make no call, no beat and no upload, and its first big upload is still
new. A habit is learnt from traffic that was itself reported on its first day
(a beacon, an upload to a new address) or that needed other hosts (calls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..detect.rules import beacon, bulk_upload_new_destination
from ..flows.records import initiator_columns
from ..networks import address_pair, is_folded
from ..units import MINUTE_NS

if TYPE_CHECKING:
    from ..pipelines.scan import ScanResult
    from ..policy import Policy

# A call moves at least this much from the host (a minute of a video call is
# 2-8 MB; a web page or a tracking image a few kB).
CALL_MIN_BYTES = 1_000_000
# How long a habit is remembered: a row whose last day is older is deleted
# (four weeks: every weekday and every night, as the model's baseline).
HISTORY_DAYS = 28
# At most this many (host, outside address) rows: beyond it, the plain
# contacts of the oldest days go first, habits last.
MAX_CONTACTS = 1_000_000

ADDRESS_COLUMNS = ["host_hi", "host_lo", "peer_hi", "peer_lo"]
DAY_COLUMNS = ["host", "peer", "first_ns", "bytes_out", "bytes_in", "call", "beat", "upload"]


@dataclass(frozen=True)
class History:
    """What the days before a day say, as a scan takes it: the (host,
    outside address) pairs of each kind of habit, by address
    (``ADDRESS_COLUMNS``; ``uploads`` with ``first_ns``, the host's first
    packet to the address)."""

    calls: pd.DataFrame
    beats: pd.DataFrame
    uploads: pd.DataFrame
    # Every pair used on those days, whatever the kind: for "no other host of
    # the site used it" (low-and-slow-egress's one upload), not for calls.
    contacts: pd.DataFrame = field(default_factory=lambda: history_frame([]))

    def users_of(self, peer_hi: np.ndarray, peer_lo: np.ndarray) -> pd.DataFrame:
        """The hosts that called given outside addresses before (by their low
        halves: the exact match is the caller's merge; ``scan_activity``'s
        ``other_users``)."""
        return self.calls[np.isin(self.calls["peer_lo"].to_numpy(), peer_lo)]

    def contacts_of(self, peer_hi: np.ndarray, peer_lo: np.ndarray) -> pd.DataFrame:
        """The hosts that used given outside addresses before at all
        (``scan_activity``'s ``earlier_users``)."""
        return self.contacts[np.isin(self.contacts["peer_lo"].to_numpy(), peer_lo)]

    @property
    def empty(self) -> bool:
        return not (len(self.calls) or len(self.beats) or len(self.uploads) or len(self.contacts))


def history_frame(rows: list[tuple[str, str]] | list[tuple[str, str, int]]) -> pd.DataFrame:
    """State rows (host text, address text[, first_ns]) as ``ADDRESS_COLUMNS``
    (uint64; and ``first_ns``). Raises ValueError for text that is no address."""
    frame = pd.DataFrame(np.zeros((len(rows), 4), dtype=np.uint64), columns=ADDRESS_COLUMNS)
    if not rows:
        return frame
    columns = list(zip(*rows, strict=True))
    for side, texts in (("host", columns[0]), ("peer", columns[1])):
        hi, lo = addresses(texts)
        frame[f"{side}_hi"], frame[f"{side}_lo"] = hi, lo
    if len(columns) == 3:
        frame["first_ns"] = np.array([int(v) for v in columns[2]], dtype=np.int64)
    return frame


def addresses(texts: tuple[str, ...] | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) arrays of addresses as text, each distinct one parsed once,
    dotted IPv4 at once (a state of a million rows holds a few hundred
    thousand addresses: 40 s one by one). Raises ValueError for text that is
    no address."""
    codes, unique = pd.factorize(np.asarray(texts, dtype=object), use_na_sentinel=False)
    distinct = pd.Series(unique, dtype=object).astype(str)
    dotted = distinct.str.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}").fillna(False)
    v4: np.ndarray = dotted.to_numpy(dtype=bool)
    hi = np.zeros(len(distinct), dtype=np.uint64)
    lo = np.zeros(len(distinct), dtype=np.uint64)
    if v4.any():
        octets = distinct[v4].str.split(".", expand=True).to_numpy().astype(np.uint64)
        if (octets > 255).any():
            wrong = np.flatnonzero(v4)[(octets > 255).any(axis=1)][0]
            raise ValueError(f"{distinct.iloc[int(wrong)]!r}: no address")
        value = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        lo[v4] = np.uint64(address_pair("0.0.0.0")[1]) | value  # IPv4-mapped, as address_pair
    for at in np.flatnonzero(~v4).tolist():  # IPv6 (and anything else, which raises)
        hi[at], lo[at] = address_pair(distinct.iloc[at])
    return hi[codes], lo[codes]


def day_contacts(scan: ScanResult, policy: Policy, start: int, end: int) -> pd.DataFrame:
    """The day's (internal host, outside address) pairs, from the minutes of
    ``start``..``end`` (the local day; not the hour either side the scan read):
    ``host``, ``peer`` (text), ``first_ns``, ``bytes_out``, ``bytes_in`` and
    whether the day held a ``call``, a ``beat`` or an ``upload`` with it
    (module docstring)."""
    traffic = scan.traffic
    f = traffic.frame
    if not len(f):
        return pd.DataFrame({c: [] for c in DAY_COLUMNS})
    minute = f["minute_ns"].to_numpy(dtype=np.int64)
    peer_ids = f["peer_id"].to_numpy(dtype=np.int64)
    keep = f["peer_external"].to_numpy() & (minute >= start) & (minute < end)
    keep &= ~is_folded(traffic.address_hi[peer_ids], traffic.address_lo[peer_ids])
    rows = f[keep]
    if not len(rows):
        return pd.DataFrame({c: [] for c in DAY_COLUMNS})
    # One row per (host, address, minute), in that order.
    minutes = (
        rows.groupby(["host_id", "peer_id", "minute_ns"], sort=True)
        .agg(
            bytes_out=("bytes_out", "sum"),
            bytes_in=("bytes_in", "sum"),
            first_ns=("first_ns", "min"),
        )  # fmt: skip
        .reset_index()
    )
    host = minutes["host_id"].to_numpy(dtype=np.int64)
    peer = minutes["peer_id"].to_numpy(dtype=np.int64)
    at = minutes["minute_ns"].to_numpy(dtype=np.int64)
    sent = minutes["bytes_out"].to_numpy(dtype=np.int64)
    got = minutes["bytes_in"].to_numpy(dtype=np.int64)
    new_pair = np.ones(len(minutes), dtype=bool)
    new_pair[1:] = (host[1:] != host[:-1]) | (peer[1:] != peer[:-1])
    pair = np.cumsum(new_pair) - 1
    upload = bulk_upload_new_destination.DETECTION.rule_id
    settings = policy.rule(upload)
    # Calls: conversations (minutes closer than a feature window, as the
    # volume rules' call exemption cuts them) two-way and of some size.
    gap = policy.window_minutes * MINUTE_NS
    new_talk = new_pair.copy()
    new_talk[1:] |= np.diff(at) > gap
    talk = np.cumsum(new_talk) - 1
    talk_sent = np.bincount(talk, weights=sent.astype(np.float64))
    talk_got = np.bincount(talk, weights=got.astype(np.float64))
    two_way = int(settings["two_way_percent"])
    is_call = (talk_sent >= CALL_MIN_BYTES) & (100 * talk_got >= two_way * talk_sent)
    call = _any_by(pair, is_call[talk])
    # Uploads: bytes sent within any span_minutes of the pair's minutes.
    span = int(settings["span_minutes"])
    within = _span_sums(pair, (at - at.min()) // MINUTE_NS, sent, span)
    is_upload = _any_by(pair, within >= int(settings["min_bytes"]))
    by_pair = minutes.groupby(pair, sort=True)
    first_rows = np.flatnonzero(new_pair)
    day = pd.DataFrame({
        "host_id": host[first_rows], "peer_id": peer[first_rows],
        "first_ns": by_pair["first_ns"].min().to_numpy(dtype=np.int64),
        "bytes_out": by_pair["bytes_out"].sum().to_numpy(dtype=np.int64),
        "bytes_in": by_pair["bytes_in"].sum().to_numpy(dtype=np.int64),
        "call": call, "upload": is_upload,
    })  # fmt: skip
    beats = _beats(scan, policy, start, end)
    if len(beats):
        ids = pd.DataFrame({
            "host_hi": traffic.address_hi[day["host_id"].to_numpy()],
            "host_lo": traffic.address_lo[day["host_id"].to_numpy()],
            "peer_hi": traffic.address_hi[day["peer_id"].to_numpy()],
            "peer_lo": traffic.address_lo[day["peer_id"].to_numpy()],
        })  # fmt: skip
        known = pd.MultiIndex.from_frame(beats[ADDRESS_COLUMNS])
        day["beat"] = np.asarray(pd.MultiIndex.from_frame(ids).isin(known), dtype=bool)
    else:
        day["beat"] = np.zeros(len(day), dtype=bool)
    day["host"] = traffic.texts(day["host_id"].to_numpy())
    day["peer"] = traffic.texts(day["peer_id"].to_numpy())
    return day[DAY_COLUMNS]


def _any_by(group: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Per group (0..n-1, as ``group`` numbers rows): whether any row's flag is set."""
    return np.bincount(group, weights=flags.astype(np.float64)) > 0


def _span_sums(pair: np.ndarray, minute: np.ndarray, sent: np.ndarray, span: int) -> np.ndarray:
    """For each row (sorted by pair, then minute): what the pair sent in the
    ``span`` minutes ending at the row's minute (a sliding sum, as the rules'
    spans slide minute by minute)."""
    # One sorted key: pair, then minute (a day and its hours either side are
    # well under 2**21 minutes).
    key = pair.astype(np.int64) * (1 << 22) + minute.astype(np.int64)
    total = np.concatenate([[0], np.cumsum(sent, dtype=np.int64)])
    first = np.searchsorted(key, key - (span - 1), side="left")
    return total[1:] - total[first]


def _beats(scan: ScanResult, policy: Policy, start: int, end: int) -> pd.DataFrame:
    """(host, address) pairs (``ADDRESS_COLUMNS``) whose connections started in
    the day made a beat by beacon's thresholds (count, span and score), its
    habits aside."""
    if scan.flows is None:
        return pd.DataFrame(columns=ADDRESS_COLUMNS)
    settings = policy.rule(beacon.DETECTION.rule_id)
    ignored = np.array(sorted(settings["ignore_ports"]), dtype=np.int64)

    def outbound(flow: dict[str, np.ndarray]) -> np.ndarray:
        return (policy.internal.contains(flow["src_hi"], flow["src_lo"])
                & policy.is_external(flow["dst_hi"], flow["dst_lo"])
                & ~np.isin(flow["dst_port"], ignored)
                & (flow["first_ns"] >= start) & (flow["first_ns"] < end))  # fmt: skip

    flow = scan.flows.columns_where(initiator_columns, outbound)
    table = pd.DataFrame({"host_hi": flow["src_hi"], "host_lo": flow["src_lo"],
                          "peer_hi": flow["dst_hi"], "peer_lo": flow["dst_lo"],
                          "start": flow["first_ns"], "sent": flow["sent"]})  # fmt: skip
    counts = table.groupby(ADDRESS_COLUMNS, sort=False)["start"].transform("size").to_numpy()
    table = table[counts >= int(settings["min_connections"])]
    min_span = float(settings["min_hours"]) * 3600e9
    found = []
    for key, group in table.groupby(ADDRESS_COLUMNS, sort=True):
        starts = np.sort(group["start"].to_numpy())
        if starts[-1] - starts[0] < min_span:
            continue
        score, _, _ = beacon.beacon_score(starts, group["sent"].to_numpy())
        if score * 100 >= float(settings["min_score"]):
            found.append(key)
    return pd.DataFrame(np.array(found, dtype=np.uint64).reshape(-1, 4), columns=ADDRESS_COLUMNS)
