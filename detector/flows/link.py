"""LinkInspector: what the link layer of isolated segments shows (issue 20, item 9).

Fed like the payload inspector, while a batch's records are still in the
reader's buffer (``read_packets(..., inspector=...)``); the kernel is
``detector._kernels.link.link_events``. It only looks at frames about the
isolated networks it is given, ARP, DHCP replies and router advertisements,
and keeps one row per distinct fact with when it was first and last seen and
how often:

==============  ===============================================================
column          meaning
==============  ===============================================================
kind            device, forwarder, arp, dhcp-server, dhcp6-server, router-advert
mac             the frame's Ethernet source (48-bit integer)
a_hi, a_lo      its source address (ARP: the sender's protocol address)
b_hi, b_lo      ARP: the target address; DHCP: the server identifier (option 54)
c_lo, d_lo      DHCP: the offered address and the router of option 3 (IPv4)
code            ARP operation; DHCP message type; router lifetime in seconds
other_mac       ARP: sender hardware address; DHCP: the client's
vlan            802.1Q VLAN id (65535: none)
first_ns ..     first and last frame's time, and ``count``: frames (arp, dhcp,
                router-advert), or minutes with frames (device, forwarder: every
                packet of a busy host is one of these, so the kernel reports each
                once a minute)
==============  ===============================================================

Memory: distinct facts are held up to ``LINK_BUDGET``. A flood of forged cards
(macof fills a switch's table with a random source address a frame) makes
every frame a new fact; past the budget, the facts of *fleeting cards* (every
fact of the card within one minute) are dropped and counted per minute
(``folded_cards``), first those that say nothing a rule needs (a device, an
ARP inside the isolated networks), then, if still over, all of them.
``sensor-flood`` reports the count. Real devices talk over minutes and keep
their facts; folding happens only under pressure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._kernels import link as lk
from ..capture.batch import PacketBatch
from ..capture.files import RecordBuffer

if TYPE_CHECKING:
    import pandas as pd

    from ..networks import NetworkSet

EVENT_ROWS = 1 << 14
KEY = ["kind", "mac", "a_hi", "a_lo", "b_hi", "b_lo", "c_lo", "d_lo", "code", "other_mac", "vlan"]
COLUMNS = [*KEY, "first_ns", "last_ns", "count"]
COMPACT_ROWS = 1 << 16  # raw rows held before they are merged into distinct facts
# Distinct facts held before fleeting cards are folded (module docstring).
LINK_BUDGET = 1 << 18
MINUTE_NS = 60_000_000_000


def network_rows(networks: NetworkSet) -> np.ndarray:
    """The kernel's form of ``networks``: rows of (hi, lo, mask_hi, mask_lo)."""
    rows = []
    for net in networks.networks:
        if net.version == 4:
            value = (0xFFFF << 32) | int(net.network_address)
            mask = ((1 << 128) - 1) ^ ((1 << (32 - net.prefixlen)) - 1)
        else:
            value = int(net.network_address)
            mask = ((1 << 128) - 1) ^ ((1 << (128 - net.prefixlen)) - 1)
        rows.append((value >> 64, value & (2**64 - 1), mask >> 64, mask & (2**64 - 1)))
    return np.array(rows, dtype=np.uint64).reshape(-1, 4)


class LinkInspector:
    """Collects link-layer facts about ``isolated`` networks from every batch."""

    def __init__(self, isolated: NetworkSet) -> None:
        self.nets = network_rows(isolated)
        self._events = np.zeros((EVENT_ROWS, lk.EVENT_COLUMNS), dtype=np.int64)
        self._seen = np.zeros(lk.SEEN_SLOTS, dtype=np.uint64)
        self._seen_minute = np.zeros(lk.SEEN_SLOTS, dtype=np.int64)
        self._chunks: list[dict[str, np.ndarray]] = []
        self._held = 0
        self._compact_at = COMPACT_ROWS  # raw rows held before the next merge
        self.folded_cards: dict[int, int] = {}  # minute (ns) → fleeting cards folded

    @classmethod
    def warm_up(cls, isolated: NetworkSet) -> LinkInspector:
        """Compile the kernel on a few made-up packets, for both kinds of buffer
        the readers hand it (a file's read-only records, a capture ring's)."""
        from ..capture.live import sample_records

        records, batch = sample_records(40)
        inspector = cls(isolated)
        inspector.inspect(records, batch)
        inspector.inspect(records._replace(buf=records.buf.copy()), batch)
        inspector.frame()
        return cls(isolated)

    def inspect(self, records: RecordBuffer, batch: PacketBatch) -> None:
        """Record the link facts of ``batch``'s frames, whose records lie in ``records``."""
        n = len(batch)
        start = 0
        lts = np.ascontiguousarray(records.if_linktypes, dtype=np.int64)
        while start < n:
            start, n_events = lk.link_events(
                records.buf, records.base, batch.arrays(), start, n, records.pcapng,
                records.linktype, lts, self.nets, self._events, self._seen, self._seen_minute,
            )  # fmt: skip
            if n_events:
                self._collect(batch, self._events[: int(n_events)])

    def _collect(self, batch: PacketBatch, events: np.ndarray) -> None:
        rows = events[:, lk.E_ROW]
        ts = batch.ts_ns[rows].astype(np.int64)
        chunk = {
            "kind": events[:, lk.E_KIND].copy(),
            "mac": events[:, lk.E_MAC].copy(),
            "a_hi": events[:, lk.E_A_HI].view(np.uint64).copy(),
            "a_lo": events[:, lk.E_A_LO].view(np.uint64).copy(),
            "b_hi": events[:, lk.E_B_HI].view(np.uint64).copy(),
            "b_lo": events[:, lk.E_B_LO].view(np.uint64).copy(),
            "c_lo": events[:, lk.E_C_LO].view(np.uint64).copy(),
            "d_lo": events[:, lk.E_D_LO].view(np.uint64).copy(),
            "code": events[:, lk.E_CODE].copy(),
            "other_mac": events[:, lk.E_OTHER_MAC].copy(),
            "vlan": events[:, lk.E_VLAN].copy(),
            "first_ns": ts,
            "last_ns": ts.copy(),
            "count": np.ones(len(events), dtype=np.int64),
        }
        self._chunks.append(chunk)
        self._held += len(events)
        if self._held > self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Merge the rows held into one per distinct fact, and past the budget
        fold fleeting cards (bounded memory). The next merge waits until the
        rows held double, so a table of many distinct facts is not merged again
        at every batch."""
        frame = self._merged()
        if len(frame) > LINK_BUDGET:
            frame = self._fold(frame)
        self._chunks = [{c: frame[c].to_numpy() for c in COLUMNS}]
        self._held = len(frame)
        self._compact_at = max(COMPACT_ROWS, 2 * self._held)

    def _fold(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` without the facts of fleeting cards (module docstring),
        counted in ``folded_cards``."""
        mac = frame["mac"].to_numpy(np.int64)
        by_card = frame.groupby("mac", sort=False).agg(first=("first_ns", "min"),
                                                       last=("last_ns", "max"))  # fmt: skip
        fleeting = by_card.index[(by_card["last"] - by_card["first"]) < MINUTE_NS].to_numpy()
        of_fleeting = np.isin(mac, fleeting)
        kind = frame["kind"].to_numpy()
        quiet = kind == lk.KIND_NAMES.index("device")
        arp = kind == lk.KIND_NAMES.index("arp")
        if arp.any():  # an ARP inside the isolated networks is no rule's evidence
            quiet |= arp & _inside(self.nets, frame["b_hi"].to_numpy(np.uint64),
                                   frame["b_lo"].to_numpy(np.uint64))  # fmt: skip
        drop = of_fleeting & quiet
        if len(frame) - int(drop.sum()) > LINK_BUDGET // 2:
            drop = of_fleeting
        gone = frame[drop]
        cards = gone.groupby("mac", sort=False)["first_ns"].min()
        minutes = cards.to_numpy(np.int64) // MINUTE_NS * MINUTE_NS
        for minute, n in zip(*np.unique(minutes, return_counts=True), strict=True):
            self.folded_cards[int(minute)] = self.folded_cards.get(int(minute), 0) + int(n)
        return frame[~drop].reset_index(drop=True)

    def _merged(self) -> pd.DataFrame:
        import pandas as pd

        if not self._chunks:
            return pd.DataFrame({c: np.array([], dtype=np.int64) for c in COLUMNS})
        raw = pd.DataFrame({c: np.concatenate([chunk[c] for chunk in self._chunks])
                            for c in COLUMNS})  # fmt: skip
        merged = raw.groupby(KEY, sort=False, as_index=False).agg(
            first_ns=("first_ns", "min"), last_ns=("last_ns", "max"), count=("count", "sum")
        )
        return merged.sort_values(["first_ns", *KEY], kind="stable", ignore_index=True)

    def forget_folded_before(self, ts_ns: int) -> None:
        """Drop the counts of cards folded in minutes before ``ts_ns`` (a live
        sensor's history)."""
        self.folded_cards = {m: n for m, n in self.folded_cards.items() if m >= ts_ns}

    def frame(self) -> pd.DataFrame:
        """One row per distinct fact, earliest first; ``kind`` as its name."""
        self._compact()
        frame = self._merged()
        frame["kind"] = np.array(lk.KIND_NAMES, dtype=object)[frame["kind"].to_numpy()]
        return frame


def merge_link_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Several inspectors' :meth:`LinkInspector.frame` as one (a fact seen by two
    workers is one row)."""
    import pandas as pd

    if len(frames) == 1:
        return frames[0]
    both = pd.concat(frames, ignore_index=True)
    merged = both.groupby(KEY, sort=False, as_index=False).agg(
        first_ns=("first_ns", "min"), last_ns=("last_ns", "max"), count=("count", "sum")
    )
    return merged.sort_values(["first_ns", *KEY], kind="stable", ignore_index=True)


class Inspectors:
    """Several inspectors fed by one reader (the reader takes one)."""

    def __init__(self, *inspectors: object) -> None:
        self.inspectors = [i for i in inspectors if i is not None]

    def inspect(self, records: RecordBuffer, batch: PacketBatch) -> None:
        for inspector in self.inspectors:
            inspector.inspect(records, batch)  # type: ignore[attr-defined]


def _inside(nets: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Which (hi, lo) addresses lie in ``nets`` (network_rows)."""
    inside = np.zeros(len(hi), dtype=bool)
    for net_hi, net_lo, mask_hi, mask_lo in nets.tolist():
        inside |= ((hi & np.uint64(mask_hi)) == np.uint64(net_hi)) & (
            (lo & np.uint64(mask_lo)) == np.uint64(net_lo)
        )
    return inside
