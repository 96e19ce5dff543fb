"""What a rule's look "on the packet" is given in a live sensor.

A live sensor analyses its traffic at the end of each feature window; a rule
whose alert must not wait that long (an isolated host's first packet out, a
P2P handshake, an upload crossing its threshold) declares ``on_packets``
beside its check (``Detection.on_packets``, detector/detect/declare.py). Each
capture worker calls it on every batch it has just counted, with a
:class:`PacketContext`; the function returns *sightings*: tuples naming what
the rule may now alert on, the internal host's address (hi, lo) first, then
what else tells it apart (the other side, an app, the minute an upload
crossed the threshold). A sighting the sensor has not had before asks for an
analysis at once, of that host's traffic (all of it the sensor keeps) and of
that rule's alerts; the analysis is the window's own, so it decides and
raises the alert with the figures and event.id of a scan, and the window's
analysis later only updates it.

A sighting is a necessary condition, cheaply checked: it may be had without the
rule then firing (a destination allowlisted by name, a destination that is not
new), which costs one analysis, never a wrong alert. What the checks share
(which addresses are internal, isolated, outside) is computed once per batch,
on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..networks import LOCAL_SCOPE, NetworkSet, address_ids
from ..units import MINUTE_NS

if TYPE_CHECKING:
    from ..capture.batch import PacketBatch
    from ..policy import Policy

Sighting = tuple[Any, ...]  # (host hi, host lo, what else tells it apart ...)


class Sides(NamedTuple):
    """Per packet of a batch: whether its source, and its destination, is in a
    set of networks (the internal ones, the isolated ones)."""

    src: np.ndarray
    dst: np.ndarray


class _Spans:
    """Per key, its amounts in the last ``width`` minutes: a ring of ``width``
    slots (minute mod width), one row per key, so a batch's keys are added and
    their span totals read in numpy. The ring turns for every key at once: when
    the newest minute moves on, the slots of the minutes it passed are emptied
    (packets come in time order, give or take a worker's batch). ``ids`` maps a
    key to its row; rows of keys dropped are reused.

    A minute's amount is kept up to ``threshold`` (in 32 bits when the threshold
    fits): a minute with that much crosses alone, so whether a span reaches
    the threshold is decided exactly, in half the memory (on a busy link this
    holds every pair of the last hour)."""

    def __init__(self, width: int, threshold: int) -> None:
        self.width = width
        self.threshold = threshold
        self.dtype = np.int32 if threshold <= np.iinfo(np.int32).max else np.int64
        self.ids: dict[Hashable, int] = {}
        self.keys: list[Hashable] = []
        self.free: list[int] = []
        self.amount = np.zeros((0, width), dtype=self.dtype)
        self.newest = np.zeros(0, dtype=np.int64)  # each key's newest minute
        self.now: int | None = None  # the newest minute of all

    def _rows_of(self, keys: Sequence[Hashable], minute: int) -> np.ndarray:
        rows = np.empty(len(keys), dtype=np.int64)
        ids = self.ids
        for i, key in enumerate(keys):
            row = ids.get(key)
            if row is None:
                row = self.free.pop() if self.free else len(self.keys)
                if row == len(self.keys):
                    self.keys.append(key)
                else:
                    self.keys[row] = key
                ids[key] = row
                if row >= len(self.newest):
                    self._grow(max(1024, 2 * len(self.newest)))
                self.amount[row] = 0
            rows[i] = row
        return rows

    def _grow(self, capacity: int) -> None:
        more = capacity - len(self.newest)
        self.amount = np.concatenate([self.amount, np.zeros((more, self.width), self.dtype)])
        self.newest = np.concatenate([self.newest, np.zeros(more, np.int64)])

    def _turn_to(self, minute: int) -> None:
        """Empty the slots of the minutes after ``now`` up to ``minute``."""
        if self.now is None:
            self.now = minute
            return
        if minute <= self.now:
            return
        passed = range(self.now + 1, minute + 1)[-self.width :]
        self.amount[:, [m % self.width for m in passed]] = 0
        self.now = minute

    def add(
        self, keys: Sequence[Hashable], minute: int, amounts: np.ndarray, threshold: int
    ) -> np.ndarray:
        """Add each key's amount (keys distinct) at ``minute`` (a minute number);
        True where the key's span total went from under ``threshold`` to it."""
        self._turn_to(minute)
        assert self.now is not None
        rows = self._rows_of(keys, minute)
        if minute <= self.now - self.width:  # older than every span the ring holds
            return np.zeros(len(rows), dtype=bool)
        held = self.amount[rows]
        if minute < self.now:  # a late batch: only the minutes up to its own count
            ahead = [m % self.width for m in range(minute + 1, self.now + 1)]
            held = held.copy()
            held[:, ahead] = 0
        before = held.sum(axis=1, dtype=np.int64)
        slot = minute % self.width
        now = np.minimum(self.amount[rows, slot].astype(np.int64) + amounts, self.threshold)
        self.amount[rows, slot] = now.astype(self.dtype)
        self.newest[rows] = np.maximum(self.newest[rows], minute)
        return (before < threshold) & (before + amounts >= threshold)  # type: ignore[no-any-return]

    def drop_before(self, minute: int) -> None:
        """Drop the keys whose newest minute is before ``minute`` (a minute number)."""
        used = np.zeros(len(self.newest), dtype=bool)
        used[list(self.ids.values())] = True
        for row in np.flatnonzero(used & (self.newest < minute)).tolist():
            del self.ids[self.keys[row]]
            self.free.append(row)


class RunningTotals:
    """Amounts per key per minute, kept between batches, for the volume rules'
    looks: when a key's total over its last ``span_minutes`` minutes (a span of
    whole minutes, as ``detect/rules/common.py: dense_spans`` slides it), or over
    its current episode (minutes less than ``gap_ns`` apart, as
    ``minute_runs``), goes from under ``threshold`` to at least it.

    Memory: per key, only the minutes of its current span or its last minute;
    once a minute (of packet time) a name's keys whose newest minute can no
    longer count (older than the span, or than the episode's gap) are dropped,
    so what is held is the keys active within the last span: on a busy link,
    every (host, outside address) pair of the last hour for
    bulk-upload-new-destination (benchmarks/README.md)."""

    def __init__(self) -> None:
        # name → key → {minute_ns: amount} (spans) or [last minute, episode total]
        self._spans: dict[str, _Spans] = {}
        self._episodes: dict[str, dict[Hashable, list[int]]] = {}
        self._pruned: dict[str, int] = {}  # name → the newest minute when last pruned

    def memory_bytes(self) -> int:
        """About what the totals hold: the arrays, and the keys as Python counts them."""
        import sys

        total = 0
        for spans in self._spans.values():
            total += spans.amount.nbytes + spans.newest.nbytes
            total += sys.getsizeof(spans.ids) + sys.getsizeof(spans.keys)
            # A key: a tuple of a few ints (28-36 bytes each, 8 for the tuple's slot).
            total += sum(sys.getsizeof(k) + 40 * len(k) for k in spans.keys)  # type: ignore[arg-type,misc]
        for episodes in self._episodes.values():
            total += sys.getsizeof(episodes)
            total += sum(sys.getsizeof(k) + 40 * len(k) + 88 for k in episodes)  # type: ignore[arg-type,misc]
        return total

    def keys_held(self) -> dict[str, int]:
        """How many keys each name holds now."""
        held = {name: len(spans.ids) for name, spans in self._spans.items()}
        held.update({name: len(table) for name, table in self._episodes.items()})
        return held

    def crossed(
        self,
        name: str,
        keys: tuple[np.ndarray, ...],
        minute_ns: np.ndarray,
        amounts: np.ndarray,
        threshold: int,
        *,
        span_minutes: int | None = None,
        gap_ns: int | None = None,
    ) -> list[tuple[tuple[Any, ...], int]]:
        """Add ``amounts`` (one per row, with its key, given as columns, and its
        minute) to the totals of ``name`` and return (key, minute) for each key
        whose total reached ``threshold`` at that minute, having been under it
        just before; a key is the tuple of its columns' values. Exactly one of
        ``span_minutes`` (a sliding span) or ``gap_ns`` (an episode)."""
        import pandas as pd

        if (span_minutes is None) == (gap_ns is None):
            raise ValueError("crossed() takes exactly one of span_minutes and gap_ns")
        if not len(minute_ns):
            return []
        # The batch's rows summed per (key, minute) (a batch holds thousands of
        # packets of fewer conversations), then minute by minute in time order.
        # The batch's rows summed per (key, minute) (a batch holds thousands of
        # packets of fewer conversations): each column factorised (a hash, not a
        # sort), the codes combined column by column, kept dense.
        key_columns = [np.asarray(c, dtype=np.uint64) for c in keys]
        minutes = np.asarray(minute_ns, dtype=np.int64) // MINUTE_NS
        codes = np.zeros(len(minutes), dtype=np.int64)
        for column in (*key_columns, minutes):
            column_codes, uniques = pd.factorize(column)
            codes, _ = pd.factorize(codes * len(uniques) + column_codes)
        groups = int(codes.max()) + 1
        first = np.full(groups, len(codes), dtype=np.int64)
        np.minimum.at(first, codes, np.arange(len(codes)))
        sums = np.bincount(codes, weights=np.asarray(amounts, dtype=np.float64), minlength=groups)
        sums = np.rint(sums).astype(np.int64)  # exact: bytes of a batch are far below 2**53
        group_minutes = minutes[first]
        found: list[tuple[tuple[Any, ...], int]] = []
        for minute_number in np.unique(group_minutes).tolist():
            minute = int(minute_number)
            mine = np.flatnonzero(group_minutes == minute)
            rows = first[mine]
            key_list = list(zip(*(c[rows].tolist() for c in key_columns), strict=True))
            sent = sums[mine]
            if span_minutes is not None:
                spans = self._spans.get(name)
                if spans is None or (spans.width, spans.threshold) != (span_minutes, threshold):
                    # First use, or the policy changed the rule: counting starts again.
                    spans = self._spans[name] = _Spans(span_minutes, threshold)
                hits = spans.add(key_list, minute, sent, threshold)
                found += [(key_list[i], minute * MINUTE_NS) for i in np.flatnonzero(hits)]
                continue
            for key, amount in zip(key_list, sent.tolist(), strict=True):
                if self._add_to_episode(name, key, minute * MINUTE_NS, amount,
                                        int(gap_ns or 0), threshold):  # fmt: skip
                    found.append((key, minute * MINUTE_NS))
        newest = int(np.max(minute_ns))
        if newest - self._pruned.setdefault(name, newest) >= MINUTE_NS:
            self._pruned[name] = newest
            reach = span_minutes * MINUTE_NS if span_minutes is not None else int(gap_ns or 0)
            self._drop_before(name, newest - reach)
        return found

    def _drop_before(self, name: str, minute_ns: int) -> None:
        """Drop ``name``'s keys whose newest minute is before ``minute_ns``."""
        spans = self._spans.get(name)
        if spans is not None:
            spans.drop_before(minute_ns // MINUTE_NS)
        episodes = self._episodes.get(name, {})
        for key in [k for k, last in episodes.items() if last[0] < minute_ns]:
            del episodes[key]

    def _add_to_episode(
        self, name: str, key: Hashable, minute: int, amount: int, gap_ns: int, threshold: int
    ) -> bool:
        episodes = self._episodes.setdefault(name, {})
        last = episodes.get(key)
        if last is None or minute - last[0] > gap_ns:
            last = episodes[key] = [minute, 0]
        before = last[1]
        last[0], last[1] = max(last[0], minute), before + amount
        return before < threshold <= before + amount

    def forget_before(self, minute_ns: int) -> None:
        """Drop keys with nothing at or after ``minute_ns`` (a live sensor's
        history: what no span or episode can reach any more)."""
        for name in (*self._spans, *self._episodes):
            self._drop_before(name, minute_ns)


@dataclass
class PacketContext:
    """One batch of packets just counted by a live sensor, as the rules' looks
    see it: the packets, the payload facts found in them (the columns of
    ``PayloadInspector.frame``, or None without inspection), the policy in
    force, and state kept between batches (running totals, and ``remember`` for
    what a rule builds once per policy)."""

    policy: Policy
    batch: PacketBatch
    facts: dict[str, np.ndarray] | None
    totals: RunningTotals
    memo: dict[str, Any] = field(default_factory=dict)  # emptied when the policy changes

    def remember(self, name: str, make: Callable[[], Any]) -> Any:
        """``make()``, built once per policy (a NetworkSet of an app's ranges)."""
        if name not in self.memo:
            self.memo[name] = make()
        return self.memo[name]

    @cached_property
    def ip(self) -> np.ndarray:
        return self.batch.ip_version != 0  # type: ignore[no-any-return]

    @cached_property
    def _addresses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each packet's source and destination (sources first) as ids of the
        batch's distinct addresses, and each id's (hi, lo): a batch of thousands
        of packets has a few dozen addresses, so each is classified once."""
        b = self.batch
        return address_ids(
            np.concatenate([b.src_hi, b.dst_hi]), np.concatenate([b.src_lo, b.dst_lo])
        )

    def _in(self, networks: NetworkSet) -> Sides:
        """Whether each packet's source, and its destination, is in ``networks``."""
        ids, hi_of, lo_of = self._addresses
        inside = networks.contains(hi_of, lo_of)[ids]
        n = len(self.batch)
        return Sides(inside[:n] & self.ip, inside[n:] & self.ip)

    @cached_property
    def internal(self) -> Sides:
        return self._in(self.policy.internal)

    @cached_property
    def isolated(self) -> Sides:
        return self._in(self.policy.isolated)

    @cached_property
    def dst_external(self) -> np.ndarray:
        """Outside the internal networks and not local scope (Policy.is_external)."""
        return self.ip & ~self.internal.dst & ~self._in(LOCAL_SCOPE).dst  # type: ignore[no-any-return]

    @cached_property
    def minute_ns(self) -> np.ndarray:
        """Each packet's minute bin (the activity table's, ``bin_seconds=60``)."""
        ts = self.batch.ts_ns
        return ts - np.mod(ts, MINUTE_NS)  # type: ignore[no-any-return]

    def uploads(self, rows: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        """For packets ``rows`` (indices) sent by an internal host to an outside
        address: the key columns (host hi, host lo, peer hi, peer lo), each
        one's minute and its bytes on the wire (the activity table's bytes)."""
        b = self.batch
        keys = (b.src_hi[rows], b.src_lo[rows], b.dst_hi[rows], b.dst_lo[rows])
        return keys, self.minute_ns[rows], b.wire_len[rows].astype(np.int64)

    def sent_outside(self) -> np.ndarray:
        """Indices of packets from an internal host to an outside address not in
        ``allowlist.destinations`` (a name allowlisted by ``allowlist.domains``
        is not known here: its bytes count, the analysis leaves them out)."""
        mask = self.internal.src & self.dst_external
        if mask.any() and self.policy.allowlist_destinations:
            mask &= ~self._in(self.policy.allowlist_destinations)[1]
        return np.flatnonzero(mask)
