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

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..networks import LOCAL_SCOPE, NetworkSet, address_ids
from ..units import MINUTE_NS

if TYPE_CHECKING:
    from ..capture.batch import PacketBatch
    from ..policy import Policy

Sighting = tuple[Any, ...]  # (host hi, host lo, what else tells it apart ...)


class RunningTotals:
    """Amounts per key per minute, kept between batches, for the volume rules'
    looks: when a key's total over its last ``span_minutes`` minutes (a span of
    whole minutes, as ``detect/rules/common.py: dense_spans`` slides it), or over
    its current episode (minutes less than ``gap_ns`` apart, as
    ``minute_runs``), goes from under ``threshold`` to at least it.

    Memory: per key, only the minutes of its current span or its last minute;
    keys whose minutes are older than the oldest span are dropped as time goes
    on (:meth:`forget_before`)."""

    def __init__(self) -> None:
        # name → key → {minute_ns: amount} (spans) or [last minute, episode total]
        self._spans: dict[str, dict[Hashable, dict[int, int]]] = {}
        self._episodes: dict[str, dict[Hashable, list[int]]] = {}

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
        if (span_minutes is None) == (gap_ns is None):
            raise ValueError("crossed() takes exactly one of span_minutes and gap_ns")
        if not len(minute_ns):
            return []
        # The batch's rows summed per (key, minute) in numpy (a batch holds
        # thousands of packets of a few conversations), then in time order.
        columns = [np.asarray(c, dtype=np.uint64) for c in keys]
        columns.append(np.asarray(minute_ns, dtype=np.int64).astype(np.uint64))
        table = np.empty(len(minute_ns), dtype=[(f"f{i}", np.uint64) for i in range(len(columns))])
        for i, column in enumerate(columns):
            table[f"f{i}"] = column
        unique, inverse = np.unique(table, return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=amounts, minlength=len(unique))
        last = f"f{len(columns) - 1}"
        order = np.argsort(unique[last], kind="stable")
        found: list[tuple[tuple[Any, ...], int]] = []
        for row, amount in zip(unique[order].tolist(), sums[order].tolist(), strict=True):
            key, minute, amount = tuple(row[:-1]), int(np.int64(np.uint64(row[-1]))), int(amount)
            if span_minutes is not None:
                if self._add_to_span(name, key, minute, amount, span_minutes * MINUTE_NS,
                                     threshold):  # fmt: skip
                    found.append((key, minute))
            elif self._add_to_episode(name, key, minute, amount, int(gap_ns or 0), threshold):
                found.append((key, minute))
        return found

    def _add_to_span(
        self, name: str, key: Hashable, minute: int, amount: int, width: int, threshold: int
    ) -> bool:
        minutes = self._spans.setdefault(name, {}).setdefault(key, {})
        for old in [m for m in minutes if m <= minute - width]:
            del minutes[old]
        before = sum(v for m, v in minutes.items() if m <= minute)
        minutes[minute] = minutes.get(minute, 0) + amount
        return before < threshold <= before + amount

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
        for table in self._spans.values():
            for key in [k for k, minutes in table.items() if max(minutes, default=0) < minute_ns]:
                del table[key]
        for episodes in self._episodes.values():
            for key in [k for k, last in episodes.items() if last[0] < minute_ns]:
                del episodes[key]


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

    def _in(self, networks: NetworkSet) -> tuple[np.ndarray, np.ndarray]:
        """Whether each packet's source, and its destination, is in ``networks``."""
        ids, hi_of, lo_of = self._addresses
        inside = networks.contains(hi_of, lo_of)[ids]
        n = len(self.batch)
        return inside[:n] & self.ip, inside[n:] & self.ip

    @cached_property
    def _internal(self) -> tuple[np.ndarray, np.ndarray]:
        return self._in(self.policy.internal)

    @cached_property
    def _isolated(self) -> tuple[np.ndarray, np.ndarray]:
        return self._in(self.policy.isolated)

    @property
    def src_internal(self) -> np.ndarray:
        return self._internal[0]

    @property
    def dst_internal(self) -> np.ndarray:
        return self._internal[1]

    @cached_property
    def dst_external(self) -> np.ndarray:
        """Outside the internal networks and not local scope (Policy.is_external)."""
        return self.ip & ~self.dst_internal & ~self._in(LOCAL_SCOPE)[1]  # type: ignore[no-any-return]

    @property
    def src_isolated(self) -> np.ndarray:
        return self._isolated[0]

    @property
    def dst_isolated(self) -> np.ndarray:
        return self._isolated[1]

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
        mask = self.src_internal & self.dst_external
        if mask.any() and self.policy.allowlist_destinations:
            mask &= ~self._in(self.policy.allowlist_destinations)[1]
        return np.flatnonzero(mask)
