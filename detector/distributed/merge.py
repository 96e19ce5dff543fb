"""Merging parts' flow rows into the flows one reader would have made.

Each part was counted by a fresh flow table and closed its open flows as
``end``. Taken in stream order, a part's first flow of a key continues the
open flow of the same key before it when a single table would have kept it
open (docs/flows.md): its first packet is at most ``idle`` after the open
flow's last one and at most ``active`` after the open flow's *real* first
packet. The merged flow keeps the earlier side's first packet, initiator and
IP version, sums packets and bytes per direction, takes the earliest first and
latest last per direction and ORs the TCP flags.

One case cannot be settled from the rows: a continued flow that a single
table would have closed for the active timeout *inside* the part (the part's
table counted from the part's first packet, not the flow's). The fold then
asks for the part again, counted from the open flows before it
(``FlowTable.resume``), which is exactly what a single table did. That is
rare: a flow longer than the active timeout (30 minutes) straddling a cut.

Exactness assumes the parts are in time order (no part has packets earlier
than the latest packet before it), as rotated captures and ranges of one
time-ordered file are. A part out of order is recounted too, but a single
table's idle sweeps, which then matter, cannot be replayed: flows may split
differently (the per-minute activity, hence features and the traffic rules,
does not depend on order). The scan says so (``out_of_order``).

The fold runs over parts in stream order. After each part it holds exactly
what a single table would have closed and still hold open at that point, so
how the stream is cut (which files, which ranges) does not change the result:
the merge is associative over consecutive parts (the tests cut one input into
files and ranges and compare with the whole). Flows no later packet can
continue (idle at the latest time so far) leave the open set at each step, so
it holds only live flows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..flows import layout
from ..flows.link import KEY, merge_link_frames
from ..flows.table import DEFAULT_MAX_FLOWS
from ..units import MINUTE_NS
from .count import PartResult

if TYPE_CHECKING:
    import pandas as pd

KEY_COLUMNS = (layout.C_A_HI, layout.C_A_LO, layout.C_B_HI, layout.C_B_LO, layout.C_META)
KEY_BYTES = 8 * len(KEY_COLUMNS)


def flow_keys(rows: np.ndarray) -> np.ndarray:
    """One sortable 40-byte key per row (the flow table's key columns, big-endian)."""
    keys = np.empty((len(rows), len(KEY_COLUMNS)), dtype=">u8")
    for j, c in enumerate(KEY_COLUMNS):
        keys[:, j] = rows[:, c].view(np.uint64)
    return keys.view(np.dtype((np.void, KEY_BYTES))).ravel()


def continue_flows(earlier: np.ndarray, later: np.ndarray, reason: np.ndarray) -> np.ndarray:
    """Rows of ``earlier`` flows continued by ``later`` ones (same keys, row by
    row), closed with ``reason``."""
    merged = earlier.copy()
    merged[:, layout.C_LAST] = np.maximum(earlier[:, layout.C_LAST], later[:, layout.C_LAST])
    merged[:, layout.C_FIRST] = np.minimum(earlier[:, layout.C_FIRST], later[:, layout.C_FIRST])
    for d in (0, 1):
        base = layout.C_DIR + d * layout.DIR_WIDTH
        p, b = base + layout.D_PACKETS, base + layout.D_BYTES
        first, last, flags = base + layout.D_FIRST, base + layout.D_LAST, base + layout.D_FLAGS
        e_has = earlier[:, p] > 0
        l_has = later[:, p] > 0
        merged[:, p] = earlier[:, p] + later[:, p]
        merged[:, b] = earlier[:, b] + later[:, b]
        merged[:, flags] = earlier[:, flags] | later[:, flags]
        merged[:, first] = np.where(
            e_has & l_has,
            np.minimum(earlier[:, first], later[:, first]),
            np.where(e_has, earlier[:, first], later[:, first]),
        )
        merged[:, last] = np.where(
            e_has & l_has,
            np.maximum(earlier[:, last], later[:, last]),
            np.where(e_has, earlier[:, last], later[:, last]),
        )
    layout.continue_tcp(earlier, later, merged)  # payload bytes, TCP state and history
    merged[:, layout.C_REASON] = reason
    return merged


def match_first_flows(open_rows: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which ``open_rows`` have a flow of their key in ``rows`` (a mask), and
    for those, the row (index in ``rows``) of that key's earliest flow."""
    found = _match_hashed(open_rows, rows)
    return found if found is not None else _match_sorted(open_rows, rows)


def _match_sorted(open_rows: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # The part's first flow of each key: by key, then by first packet.
    by_time = np.argsort(rows[:, layout.C_FIRST], kind="stable")
    keys = flow_keys(rows)[by_time]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first_keys = sorted_keys[starts]
    first_rows = by_time[order[starts]]  # row index in ``rows``
    at, matched = _look_up(first_keys, flow_keys(open_rows))
    return matched, first_rows[at[matched]]


def _look_up(sorted_values: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``wanted`` is in ``sorted_values`` (unique, sorted): an
    index that is always valid, and whether the value there is the one wanted."""
    at = np.searchsorted(sorted_values, wanted)
    valid = np.minimum(at, max(len(sorted_values) - 1, 0))
    found = (at < len(sorted_values)) & (sorted_values[valid] == wanted)
    return valid, found


_MIX = np.uint64(0x9E3779B97F4A7C15)


def key_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's key (equal keys, equal hashes)."""
    h = np.zeros(len(rows), dtype=np.uint64)
    for c in KEY_COLUMNS:
        h ^= rows[:, c].view(np.uint64)
        h *= _MIX
        h ^= h >> np.uint64(31)
    return h


def _match_hashed(open_rows: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`match_first_flows` by sorting 64-bit key hashes, five times
    faster than sorting 40-byte keys. None when two of the part's keys share
    a hash (the caller then sorts the keys themselves): exact either way."""
    n = len(rows)
    hashes = key_hashes(rows)
    order = np.lexsort((rows[:, layout.C_FIRST], hashes))  # by hash, then first packet
    sorted_hashes = hashes[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    for c in KEY_COLUMNS:
        column = rows[order, c]
        if np.any(column != column[run_start]):
            return None  # one hash, two keys
    first_hashes = sorted_hashes[starts]
    first_rows = order[starts]
    at, matched = _look_up(first_hashes, key_hashes(open_rows))
    candidate = first_rows[at]
    for c in KEY_COLUMNS:
        # An open key whose hash is a part key's but not its key: no match.
        matched &= open_rows[:, c] == rows[candidate, c]
    return matched, first_rows[at[matched]]


@dataclass
class FlowFold:
    """Folds parts' rows in stream order (``add``), then ``finish`` gives every
    flow as one table reading the whole stream closes it."""

    idle_ns: int
    active_ns: int
    max_flows: int = DEFAULT_MAX_FLOWS
    closed: list[np.ndarray] = field(default_factory=list)
    open: np.ndarray = field(default_factory=lambda: np.empty((0, layout.FLOW_COLUMNS), np.int64))
    latest_ns: int | None = None
    recounted: int = 0  # parts counted again from the open flows before them
    out_of_order: int = 0  # parts with packets earlier than the latest before them

    def add(
        self,
        result: PartResult,
        recount: Callable[[np.ndarray, int | None], PartResult],
        earliest_ns: int | None,
    ) -> None:
        """Take the next part's rows; ``recount(open_rows, latest_ns)`` counts the
        part again from the open flows before it (when the rows cannot say);
        ``earliest_ns``: the part's earliest packet time."""
        self.add_rows(result.rows, result.latest_ns, lambda o, t: recount(o, t).rows, earliest_ns)

    def add_rows(
        self,
        rows: np.ndarray,
        latest_ns: int | None,
        recount: Callable[[np.ndarray, int | None], np.ndarray],
        earliest_ns: int | None,
    ) -> None:
        """:meth:`add` of a part's ``rows`` and latest packet time ``latest_ns``
        (None: no packet); ``recount`` gives the part's rows counted again."""
        if latest_ns is None:
            return  # no packet: nothing changes
        unordered = (
            self.latest_ns is not None and earliest_ns is not None and earliest_ns < self.latest_ns
        )
        self.out_of_order += unordered
        if len(self.open) and (unordered or not self._merge(rows)):
            self._evict_beyond_max_flows()
            again = recount(self.open, self.latest_ns)
            self.recounted += 1
            self.open = np.empty((0, layout.FLOW_COLUMNS), np.int64)
            self._take(again)
        elif not len(self.open):
            self._take(rows)
        self.latest_ns = latest_ns if self.latest_ns is None else max(self.latest_ns, latest_ns)
        self._retire_idle()

    def _merge(self, rows: np.ndarray) -> bool:
        """Merge the part's rows with the open flows; False (and nothing done)
        when a continued flow would time out inside the part."""
        if not len(rows):
            return True
        matched, later_at = match_first_flows(self.open, rows)
        o = self.open[matched]
        f = rows[later_at]
        idle = f[:, layout.C_FIRST] - o[:, layout.C_LAST] > self.idle_ns
        active = ~idle & (f[:, layout.C_FIRST] - o[:, layout.C_FIRST] > self.active_ns)
        goes_on = ~idle & ~active
        if np.any(goes_on & (f[:, layout.C_LAST] - o[:, layout.C_FIRST] > self.active_ns)):
            return False
        ended = o[~goes_on].copy()
        ended[:, layout.C_REASON] = np.where(
            idle[~goes_on], layout.REASON_IDLE, layout.REASON_ACTIVE
        )
        self.closed.append(ended)
        rows = rows.copy()
        rows[later_at[goes_on]] = continue_flows(
            o[goes_on], f[goes_on], f[goes_on][:, layout.C_REASON]
        )
        still_open = self.open[~matched]
        self.open = still_open
        self._take(rows)
        return True

    def _evict_beyond_max_flows(self) -> None:
        """More open flows than a table holds (a recount starts from them): the
        least recently seen close as ``evicted``, as in a full table."""
        extra = len(self.open) - self.max_flows
        if extra <= 0:
            return
        oldest = np.argsort(self.open[:, layout.C_LAST], kind="stable")
        gone = self.open[oldest[:extra]].copy()
        gone[:, layout.C_REASON] = layout.REASON_EVICTED
        self.closed.append(gone)
        self.open = self.open[np.sort(oldest[extra:])]

    def _take(self, rows: np.ndarray) -> None:
        """Rows of a part whose beginning is settled: the ``end`` ones stay open."""
        ends = rows[:, layout.C_REASON] == layout.REASON_END
        self.closed.append(rows[~ends])
        self.open = np.concatenate([self.open, rows[ends]]) if len(self.open) else rows[ends]

    def _retire_idle(self) -> None:
        """Open flows idle at the latest time so far: no later packet continues them."""
        if self.latest_ns is None or not len(self.open):
            return
        idle = self.latest_ns - self.open[:, layout.C_LAST] > self.idle_ns
        if np.any(idle):
            done = self.open[idle].copy()
            done[:, layout.C_REASON] = layout.REASON_IDLE
            self.closed.append(done)
            self.open = self.open[~idle]

    def finish(self) -> np.ndarray:
        """Every flow's row (the open ones closed as a single table's flush does)."""
        self._retire_idle()
        rows = np.concatenate([*self.closed, self.open])
        self.closed, self.open = [], rows[:0]
        return rows[in_stream_order(rows)]


def in_stream_order(rows: np.ndarray) -> np.ndarray:
    """The order of ``rows`` by first packet, then key: a stable order whatever
    the grouping of parts. Sorting 40-byte keys is slow (a second per million
    flows) and first-packet times rarely tie, so the rows are sorted by time
    and only the runs of equal times by key."""
    first = rows[:, layout.C_FIRST]
    order = np.argsort(first, kind="stable")
    times = first[order]
    tied = np.zeros(len(order), dtype=bool)
    same = times[1:] == times[:-1]
    tied[1:] |= same
    tied[:-1] |= same
    if np.any(tied):
        # A run of equal times stays in its place; within it, keys in order.
        at = np.flatnonzero(tied)
        sub = order[at]
        by_key = np.argsort(flow_keys(rows[sub]), kind="stable")
        by_time = np.argsort(first[sub][by_key], kind="stable")
        order[at] = sub[by_key[by_time]]
    return order


# Link facts counted once a minute, not once a frame (detector/flows/link.py).
PER_MINUTE_KINDS = ("device", "forwarder")


def link_in_stream_order(parts: list[PartResult]) -> pd.DataFrame | None:
    """The link facts of ``parts`` (in stream order) as one reader's
    :class:`~detector.flows.link.LinkInspector` gives them: a fact seen in
    several parts is one row (earliest first, latest last, counts summed),
    except that a device or forwarder fact counts minutes with frames, and a
    minute the fact had frames in on both sides of a cut was counted by both
    parts: once per such cut is taken off. None: the link layer was not
    looked at."""
    import pandas as pd

    frames = [p.link for p in parts if p.link is not None]
    if not frames:
        return None
    seen = [f for f in frames if len(f)]
    if not seen:
        return frames[0]
    merged = merge_link_frames(seen)
    if len(seen) == 1:
        return merged
    tagged = pd.concat([f.assign(part=k) for k, f in enumerate(seen)], ignore_index=True)
    tagged = tagged[tagged["kind"].isin(PER_MINUTE_KINDS).to_numpy()]
    tagged = tagged.sort_values([*KEY, "part"], kind="stable", ignore_index=True)
    same_key = np.ones(len(tagged), dtype=bool)
    for column in KEY:
        values = tagged[column].to_numpy()
        same_key[1:] &= values[1:] == values[:-1]
    same_key[0] = False
    minute_first = tagged["first_ns"].to_numpy(np.int64) // MINUTE_NS
    minute_last = tagged["last_ns"].to_numpy(np.int64) // MINUTE_NS
    twice = same_key.copy()
    twice[1:] &= minute_first[1:] == minute_last[:-1]
    if not twice.any():
        return merged
    extra = tagged[twice].groupby(KEY, sort=False, as_index=False).size()
    both = merged.merge(extra, on=KEY, how="left", sort=False)
    taken = both["size"].fillna(0).to_numpy(np.int64)
    merged["count"] = merged["count"].to_numpy(np.int64) - taken
    return merged
