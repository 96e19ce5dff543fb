"""What a rule's look "on the packet" is given in a live sensor.

A live sensor analyses its traffic at the end of each feature window; a rule
whose alert must not wait that long (an isolated host's first packet out, a
P2P handshake, an upload crossing its threshold) declares ``on_packets``
beside its check (``Detection.on_packets``, detector/detect/declare.py). Each
capture worker calls it on every batch it has just counted, with a
:class:`PacketContext`; the function returns *sightings*: hashable keys naming
what the rule may now alert on (a host, a host and its other side, a host and
the minute its upload crossed the threshold). A sighting the sensor has not
had before asks for an analysis at once; the analysis, the same as a window's,
decides and raises the alert (so its figures and event.id are those of a
scan), and the window's analysis later only updates it.

A sighting is a necessary condition, cheaply checked: it may be had without the
rule then firing (a destination allowlisted by name, a destination that is not
new), which costs one analysis, never a wrong alert. What the checks share
(which addresses are internal, isolated, outside) is computed once per batch,
on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..networks import LOCAL_SCOPE
from ..units import MINUTE_NS

if TYPE_CHECKING:
    from ..capture.batch import PacketBatch
    from ..policy import Policy

Sightings = Iterable[Hashable]


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
        keys: list[Hashable],
        minute_ns: np.ndarray,
        amounts: np.ndarray,
        threshold: int,
        *,
        span_minutes: int | None = None,
        gap_ns: int | None = None,
    ) -> list[tuple[Hashable, int]]:
        """Add ``amounts`` (one per row, with its key and minute) to the totals of
        ``name`` and return (key, minute) for each key whose total reached
        ``threshold`` at that minute, having been under it just before. Exactly
        one of ``span_minutes`` (a sliding span) or ``gap_ns`` (an episode)."""
        if (span_minutes is None) == (gap_ns is None):
            raise ValueError("crossed() takes exactly one of span_minutes and gap_ns")
        # The batch's rows summed per (key, minute), in time order.
        per: dict[tuple[Hashable, int], int] = {}
        for key, minute, amount in zip(keys, minute_ns.tolist(), amounts.tolist(), strict=True):
            per[(key, minute)] = per.get((key, minute), 0) + amount
        found: list[tuple[Hashable, int]] = []
        if span_minutes is not None:
            table = self._spans.setdefault(name, {})
            width = span_minutes * MINUTE_NS
            for (key, minute), amount in sorted(per.items(), key=lambda item: item[0][1]):
                minutes = table.setdefault(key, {})
                for old in [m for m in minutes if m <= minute - width]:
                    del minutes[old]
                before = sum(v for m, v in minutes.items() if m <= minute)
                minutes[minute] = minutes.get(minute, 0) + amount
                if before < threshold <= before + amount:
                    found.append((key, minute))
        else:
            assert gap_ns is not None
            episodes = self._episodes.setdefault(name, {})
            for (key, minute), amount in sorted(per.items(), key=lambda item: item[0][1]):
                last = episodes.get(key)
                if last is None or minute - last[0] > gap_ns:
                    last = episodes[key] = [minute, 0]
                before = last[1]
                last[0], last[1] = max(last[0], minute), before + amount
                if before < threshold <= before + amount:
                    found.append((key, minute))
        return found

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
    def src_internal(self) -> np.ndarray:
        b = self.batch
        return self.ip & self.policy.internal.contains(b.src_hi, b.src_lo)  # type: ignore[no-any-return]

    @cached_property
    def dst_internal(self) -> np.ndarray:
        b = self.batch
        return self.ip & self.policy.internal.contains(b.dst_hi, b.dst_lo)  # type: ignore[no-any-return]

    @cached_property
    def dst_external(self) -> np.ndarray:
        """Outside the internal networks and not local scope (Policy.is_external)."""
        b = self.batch
        local = LOCAL_SCOPE.contains(b.dst_hi, b.dst_lo)
        return self.ip & ~self.dst_internal & ~local  # type: ignore[no-any-return]

    @cached_property
    def src_isolated(self) -> np.ndarray:
        b = self.batch
        return self.ip & self.policy.isolated.contains(b.src_hi, b.src_lo)  # type: ignore[no-any-return]

    @cached_property
    def dst_isolated(self) -> np.ndarray:
        b = self.batch
        return self.ip & self.policy.isolated.contains(b.dst_hi, b.dst_lo)  # type: ignore[no-any-return]

    @cached_property
    def minute_ns(self) -> np.ndarray:
        """Each packet's minute bin (the activity table's, ``bin_seconds=60``)."""
        ts = self.batch.ts_ns
        return ts - np.mod(ts, MINUTE_NS)  # type: ignore[no-any-return]

    def uploads(self, rows: np.ndarray) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
        """For packets ``rows`` (indices) sent by an internal host to an outside
        address: each one's (host hi, host lo, peer hi, peer lo), minute and
        bytes on the wire (the activity table's bytes)."""
        b = self.batch
        keys: list[Hashable] = list(
            zip(b.src_hi[rows].tolist(), b.src_lo[rows].tolist(), b.dst_hi[rows].tolist(),
                b.dst_lo[rows].tolist(), strict=True)
        )  # fmt: skip
        return keys, self.minute_ns[rows], b.wire_len[rows].astype(np.int64)

    def sent_outside(self) -> np.ndarray:
        """Indices of packets from an internal host to an outside address not in
        ``allowlist.destinations`` (a name allowlisted by ``allowlist.domains``
        is not known here: its bytes count, the analysis leaves them out)."""
        b = self.batch
        mask = self.src_internal & self.dst_external
        if mask.any():
            rows = np.flatnonzero(mask)
            allowed = self.policy.allowlist_destinations.contains(b.dst_hi[rows], b.dst_lo[rows])
            return rows[~allowed]  # type: ignore[no-any-return]
        return np.flatnonzero(mask)
