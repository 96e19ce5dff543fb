"""Carve: the packets behind an alert, as a capture file Wireshark opens.

What is selected is always whole flows: every packet of each chosen flow, in
both directions, later IP fragments with their first one, and nothing else,
in capture order. A flow here is what the flow table counts (docs/flows.md):
the packets of one 5-tuple (addresses, ports, protocol; ICMP by type pair),
cut where the flow is silent for longer than the idle timeout. Which flows:

- ``--community-id ID``: the flows whose Community ID v1 is ID;
- ``--host IP`` (with ``--peer IP``): the flows of the host (with that other
  side) that have a packet within ``--from``/``--to`` when given;
- ``--event-id ID``: the alert's host and other side over its span (its
  ``event.start``..``event.end``), read from a JSON-lines alert file.

The reading keeps every candidate packet of the 5-tuples that may be chosen
(the host's, the Community ID's) in a spill; the flows are cut and chosen once
everything is read, then written (``detector.capture.carve``).

With a nightly's state (``--state``) what is read is the stretch of its
files whose packets reach within an hour of the span (:func:`parts_from_state`):
for an uncompressed file the nightly indexed, only the byte ranges its index
(per MiB: packet times) says reach there, after the file's header (pcapng:
the section header and interface descriptions in force); a gzip file, or one
taken in before the index existed, whole. The alert of an ``--event-id`` is
then looked up in the nightly's --jsonl file. A flow is whole when it lies
within what is read: one that began more than an hour before the span starts
where the reading starts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..alerts.lines import json_lines
from ..capture import CaptureProblem, CaptureStats, PacketBatch, read_packets
from ..capture.carve import KeptPackets, RecordKeeper, write_capture
from ..capture.files import read_reporting
from ..capture.ranges import RangeReader
from ..capture.reading import ONE_THREAD, Reading
from ..errors import DecodeError, DetectorError
from ..flows.community_id import community_id_v1
from ..flows.records import _community_ids  # the flow records' bulk kernel
from ..networks import address_pair, address_text
from ..outputs import replacing

DEFAULT_IDLE_NS = 120 * 1_000_000_000  # the flow table's idle timeout (docs/flows.md)
MS = 1_000_000


@dataclass(frozen=True)
class Selection:
    """Which flows to carve (module docstring). Times are ns since the epoch."""

    community_id: str | None = None
    host: str | None = None
    peer: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    idle_ns: int = DEFAULT_IDLE_NS

    def describe(self) -> str:
        parts = []
        if self.community_id:
            parts.append(f"community id {self.community_id}")
        if self.host:
            parts.append(f"host {self.host}")
        if self.peer:
            parts.append(f"with {self.peer}")
        return ", ".join(parts) or "every flow"


@dataclass
class CarveResult:
    packets: int  # written
    flows: int
    candidates: int  # packets kept while reading (the 5-tuples that might be chosen)
    format: str
    stats: list[CaptureStats] = field(default_factory=list)
    seconds: float = 0.0


def selection_of_alert(path: str, event_id: str) -> Selection:
    """The selection behind alert ``event_id`` in the JSON-lines file ``path``
    (scan's ``--format jsonl``, the nightly's ``--jsonl``): its host, other
    side and span. A bad line or a missing id is a one-line error."""
    for here, doc in json_lines(path, "--alerts", holding=event_id.encode("utf-8")):
        event = doc.get("event") if isinstance(doc, dict) else None
        if not isinstance(event, dict) or event.get("id") != event_id:
            continue
        return selection_of_document(doc, f"--alerts {path}: byte offset {here}")
    raise DetectorError(f"--alerts {path}: no alert has event.id {event_id}")


STATE_CONTEXT_NS = 3600 * 1_000_000_000
# Flows of the alerts' hosts read to record the alerts' spans (256 bytes each).
SPAN_FLOWS = 1_000_000  # read around a span, as the nightly reads a day


def files_from_state(state_path: str, selection: Selection) -> list[str]:
    """The nightly's capture files (``--state``) that can hold the selection's
    flows: those whose packets reach within an hour of its span (the nightly
    reads each day with an hour either side, so a flow it counted lies there),
    in order of first packet; every file without a span."""
    from ..nightly.state import NightlyState

    if not os.path.exists(state_path):
        raise DetectorError(f"--state {state_path}: no such file")
    state = NightlyState(state_path)
    try:
        files = state.files()
    finally:
        state.close()
    low = None if selection.start_ns is None else selection.start_ns - STATE_CONTEXT_NS
    high = None if selection.end_ns is None else selection.end_ns + STATE_CONTEXT_NS
    return [
        f.path
        for f in files
        if f.first_ns is not None
        and f.last_ns is not None
        and (low is None or f.last_ns >= low)
        and (high is None or f.first_ns <= high)
    ]


@dataclass(frozen=True)
class FileRange:
    """Bytes ``start``..``end`` of the capture ``path``, read as a file of
    their own after ``header`` (the file's header; for pcapng the section
    header and interface descriptions in force at ``start``). A path to
    whatever takes paths (``os.fspath``)."""

    path: str
    start: int
    end: int
    header: bytes
    bpf: str | None = None  # the pcap filter its packets pass through

    def __fspath__(self) -> str:
        return self.path


# Carve opens the ranges' files through this (tests count what is read).
open_capture = open

PCAP_HEADER_BYTES = 24
PCAPNG_SHB = 0x0A0D0D0A


def parts_from_state(
    state_path: str,
    selection: Selection,
    bpf: str | None = None,
    event_id: str | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[str | FileRange]:
    """What to read of the nightly's files (``--state``) for ``selection``
    (module docstring): those whose packets reach within an hour of its span,
    or, for the nightly's alert ``event_id``, within the first and last packet
    of its flows as the nightly counted them; in order of first packet; of each
    indexed file only the byte ranges that do, else the whole file; with
    ``bpf``, through that pcap filter. A file that changed since the nightly
    indexed it, or whose index is not usable, is read whole, said to
    ``on_note``."""
    from ..capture.bpf import FilteredPath
    from ..nightly.state import NightlyState, UnusableIndex

    note = on_note or (lambda _line: None)

    if not os.path.exists(state_path):
        raise DetectorError(f"--state {state_path}: no such file")
    low = None if selection.start_ns is None else selection.start_ns - STATE_CONTEXT_NS
    high = None if selection.end_ns is None else selection.end_ns + STATE_CONTEXT_NS
    state = NightlyState(state_path)
    parts: list[str | FileRange] = []
    try:
        span = state.alert_span(event_id) if event_id else None
        if span is not None and selection.idle_ns == DEFAULT_IDLE_NS:
            low, high = span
        for f in state.files():
            if f.first_ns is None or f.last_ns is None:
                continue
            if (low is not None and f.last_ns < low) or (high is not None and f.first_ns > high):
                continue
            if low is None and high is None:
                parts.append(f.path)
                continue
            try:
                now = os.stat(f.path)
            except OSError:
                parts.append(f.path)  # the reading says what is wrong
                continue
            if (now.st_size, now.st_mtime_ns) != (f.size, f.mtime_ns):
                note(f"--state {state_path}: {f.path} changed since the nightly read it "
                     f"({f.size:,} bytes then, {now.st_size:,} now): read whole, "
                     "not through its index")  # fmt: skip
                parts.append(f.path)
                continue
            try:
                ranges = state.file_ranges(f.content_hash, low, high, f.size)
            except UnusableIndex as exc:
                note(f"--state {state_path}: the index of {f.path} is not usable ({exc}): "
                     "read whole")  # fmt: skip
                ranges = None
            if ranges is None:
                parts.append(f.path)
            else:
                parts.extend(_ranges_of(f.path, ranges, state.file_headers(f.content_hash)))
    finally:
        state.close()
    if bpf:
        parts = [
            replace(p, bpf=bpf) if isinstance(p, FileRange) else FilteredPath(p, bpf) for p in parts
        ]
    return parts


def _ranges_of(
    path: str, ranges: list[tuple[int, int]], headers: list[tuple[int, int, int]]
) -> list[str | FileRange]:
    """FileRanges of ``path`` with the header each needs: a pcap file's 24
    bytes, or a pcapng file's section header in force and the interface
    descriptions after it (read by seeking to each)."""
    out: list[str | FileRange] = []
    try:
        with open_capture(path, "rb") as stream:
            if not headers:
                head = stream.read(PCAP_HEADER_BYTES)
            for start, end in ranges:
                if headers:
                    before = [h for h in headers if h[0] < start]
                    sections = [i for i, h in enumerate(before) if h[2] == PCAPNG_SHB]
                    if not sections:
                        return [path]  # not as indexed: read it whole
                    pieces = []
                    for offset, length, _type in before[sections[-1] :]:
                        stream.seek(offset)
                        pieces.append(stream.read(length))
                    head = b"".join(pieces)
                out.append(FileRange(path, start, end, head))
    except OSError:
        return [path]  # the reading says what is wrong, located
    return out


def alert_flow_spans(
    docs: Iterable[dict[str, Any]], table: Any, idle_ns: int = DEFAULT_IDLE_NS
) -> dict[str, tuple[int, int]]:
    """For each alert document that concerns a host (its ``event.id``): the
    first and last packet of the flows carve chooses for it, from the flow
    table that raised it (``FlowTable``): its host's flows (with its other
    side), the table's flows of one 5-tuple chained where they are apart by
    ``idle_ns`` or less (carve cuts flows by silence alone), those whose
    first..last meets the alert's span."""
    from ..flows import layout

    selections: dict[str, Selection] = {}
    for doc in docs:
        try:
            selection = selection_of_document(doc, "")
            address_pair(selection.host or "")
            if selection.peer:
                address_pair(selection.peer)
        except (DetectorError, ValueError):
            continue  # no host (a sensor's alert): carve reads an hour either side
        selections[str(doc["event"]["id"])] = selection
    if not selections:
        return {}
    hosts = {address_pair(s.host) for s in selections.values() if s.host}
    # A flood's target has millions of flows: its alerts get no span (carve
    # then reads an hour either side), and memory stays bounded.
    rows = table.rows_with_ends(hosts, most=SPAN_FLOWS)
    u = rows.view(np.uint64)
    spans: dict[str, tuple[int, int]] = {}
    for event_id, selection in selections.items():
        hi, lo = (np.uint64(x) for x in address_pair(selection.host or ""))
        a = (u[:, layout.C_A_HI] == hi) & (u[:, layout.C_A_LO] == lo)
        b = (u[:, layout.C_B_HI] == hi) & (u[:, layout.C_B_LO] == lo)
        if selection.peer:
            phi, plo = (np.uint64(x) for x in address_pair(selection.peer))
            a &= (u[:, layout.C_B_HI] == phi) & (u[:, layout.C_B_LO] == plo)
            b &= (u[:, layout.C_A_HI] == phi) & (u[:, layout.C_A_LO] == plo)
        mine = rows[a | b]
        if not len(mine):
            continue
        key = [mine[:, c] for c in (layout.C_META, layout.C_B_LO, layout.C_B_HI,
                                    layout.C_A_LO, layout.C_A_HI)]  # fmt: skip
        order = np.lexsort([mine[:, layout.C_FIRST], *key])
        chained: list[list[int]] = []  # [first, last] of each chain
        previous = None
        for row in mine[order].tolist():
            key_of_row = tuple(row[: layout.C_META + 1])
            first, last = row[layout.C_FIRST], row[layout.C_LAST]
            if key_of_row != previous or first - chained[-1][1] > idle_ns:
                chained.append([first, last])
            else:
                chained[-1][1] = max(chained[-1][1], last)
            previous = key_of_row
        meets = [
            (first, last)
            for first, last in chained
            if (selection.start_ns is None or last >= selection.start_ns)
            and (selection.end_ns is None or first <= selection.end_ns)
        ]
        if meets:
            spans[event_id] = (min(f for f, _ in meets), max(la for _, la in meets))
    return spans


def alert_files_of_state(state_path: str) -> list[str]:
    """The JSON-lines alert files the nightly of ``state_path`` writes (--jsonl)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT path FROM outputs").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise DetectorError(f"--state {state_path}: not a nightly state file ({exc})") from None
    return [str(r[0]) for r in rows]


def selection_of_state_alert(state_path: str, event_id: str) -> Selection:
    """Alert ``event_id`` as the nightly of ``state_path`` wrote it (its --jsonl)."""
    files = alert_files_of_state(state_path)
    for path in files:
        try:
            return selection_of_alert(path, event_id)
        except DetectorError as exc:
            if "no alert has event.id" not in str(exc):
                raise
    raise DetectorError(
        f"--state {state_path}: no alert has event.id {event_id} in its alert file(s) "
        f"({', '.join(files) or 'none: the nightly ran without --jsonl; give --alerts FILE'})"
    )


def selection_of_document(doc: dict, where: str) -> Selection:
    """An alert's ECS document → the flows of its host and other side in its span."""
    try:
        host = doc["source"]["ip"]
        start = parse_time(doc["event"]["start"])
        # ECS times are written to the millisecond: the span reaches to the
        # end of the millisecond of its last packet.
        end = parse_time(doc["event"]["end"]) + MS - 1
    except (KeyError, TypeError, ValueError) as exc:
        raise DetectorError(
            f"{where}: the alert lacks source.ip or event.start/end ({exc}): it concerns no "
            "host (a sensor alert?); carve by --host and --from/--to instead"
        ) from None
    peer = (doc.get("destination") or {}).get("ip")
    return Selection(host=host, peer=peer, start_ns=start, end_ns=end)


def parse_time(text: str, zone: dt.tzinfo | None = None, *, end: bool = False) -> int:
    """ISO 8601 ('2026-02-04T02:13:40.127+08:00', '2026-02-04 02:13') → ns
    since the epoch; a time without an offset is in ``zone`` (default: UTC).
    With ``end``, the last instant the text names: '02:19:15' reaches to
    02:19:15.999999999, '02:19' to the minute's end, a date to the day's."""
    text = text.strip()
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone or dt.UTC)
    whole = int(moment.replace(microsecond=0).timestamp())
    ns = whole * 1_000_000_000 + moment.microsecond * 1000
    if end:
        clock = text[10:].lstrip("T ").split("+")[0].split("-")[0].rstrip("Z")
        if "." in clock:
            ns += 999  # microseconds given: the rest of the microsecond
        elif clock.count(":") >= 2:
            ns += 1_000_000_000 - 1
        elif clock.count(":") == 1:
            ns += 60 * 1_000_000_000 - 1
        else:
            ns += 86_400 * 1_000_000_000 - 1
    return ns


class _Chooser:
    """Which packets to keep while reading: those of a 5-tuple that may be
    chosen. Later fragments follow their first fragment (same addresses,
    protocol and identification), as the flow table attributes them."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.host = address_pair(selection.host) if selection.host else None
        self.peer = address_pair(selection.peer) if selection.peer else None
        self._seen = np.empty(0, dtype=np.uint64)  # 5-tuple hashes whose ID is known
        self._matching = np.empty(0, dtype=np.uint64)  # … of which the ID is the one wanted
        self._tuple: tuple[Any, ...] | None = None  # the wanted ID's 5-tuple, once met
        self._first_fragments: set[tuple[int, ...]] = set()

    def __call__(self, batch: PacketBatch) -> np.ndarray:
        ip = batch.ip_version != 0
        wanted = ip.copy()
        if self.host is not None:
            hi, lo = np.uint64(self.host[0]), np.uint64(self.host[1])
            src = (batch.src_hi == hi) & (batch.src_lo == lo)
            dst = (batch.dst_hi == hi) & (batch.dst_lo == lo)
            if self.peer is not None:
                phi, plo = np.uint64(self.peer[0]), np.uint64(self.peer[1])
                psrc = (batch.src_hi == phi) & (batch.src_lo == plo)
                pdst = (batch.dst_hi == phi) & (batch.dst_lo == plo)
                wanted &= (src & pdst) | (dst & psrc)
            else:
                wanted &= src | dst
        if self.selection.community_id is not None:
            wanted &= self._community(batch, wanted)
        return wanted

    def _community(self, batch: PacketBatch, candidates: np.ndarray) -> np.ndarray:
        """Packets whose flow has the Community ID: each distinct 5-tuple's ID is
        computed once (in bulk, by the flow records' kernel) and its verdict kept
        by a 64-bit hash of the tuple; ``chosen_packets`` checks the chosen
        flows' IDs again exactly, so a hash collision cannot add a flow."""
        out = np.zeros(len(batch), dtype=bool)
        later = candidates & (batch.frag == 1)
        whole = np.flatnonzero(candidates & ~later)
        if len(whole) and self._tuple is not None:
            # The ID's 5-tuple is known (an ID names one tuple): compare with it.
            rows = PacketBatch(*(a[whole] for a in batch.arrays()))
            sport, dport = _flow_ports(rows)
            s_hi, s_lo, d_hi, d_lo, sp, dp, proto = self._tuple
            same_proto = rows.proto == proto
            forward = (rows.src_hi == s_hi) & (rows.src_lo == s_lo) & (rows.dst_hi == d_hi)
            forward &= (rows.dst_lo == d_lo) & (sport == sp) & (dport == dp)
            backward = (rows.src_hi == d_hi) & (rows.src_lo == d_lo) & (rows.dst_hi == s_hi)
            backward &= (rows.dst_lo == s_lo) & (sport == dp) & (dport == sp)
            out[whole] = same_proto & (forward | backward)
        elif len(whole):
            rows = PacketBatch(*(a[whole] for a in batch.arrays()))
            sport, dport = _flow_ports(rows)
            keys = _tuple_hashes(rows, sport, dport)
            unique, first = np.unique(keys, return_index=True)
            new = ~np.isin(unique, self._seen, assume_unique=True)
            if new.any():
                at = first[new]
                ids = _community_ids(
                    rows.src_hi[at], rows.src_lo[at], rows.dst_hi[at], rows.dst_lo[at],
                    rows.proto[at].astype(np.int64), sport[at], dport[at],
                    rows.ip_version[at] == 4,
                )  # fmt: skip
                found = ids == self.selection.community_id
                if found.any():
                    i = int(at[np.flatnonzero(found)[0]])
                    self._tuple = (rows.src_hi[i], rows.src_lo[i], rows.dst_hi[i],
                                   rows.dst_lo[i], sport[i], dport[i], rows.proto[i])  # fmt: skip
                self._matching = np.union1d(self._matching, unique[new][found])
                self._seen = np.union1d(self._seen, unique[new])
            out[whole] = np.isin(keys, self._matching)
        for i in np.flatnonzero(out & ((batch.frag & 2) != 0)).tolist():
            self._first_fragments.add(_fragment_key(batch, i))
        for i in np.flatnonzero(later).tolist():
            out[i] = _fragment_key(batch, i) in self._first_fragments
        return out


def _flow_ports(rows: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
    """Ports as a flow has them: ICMP request/reply types as (type, counterpart
    type), as Community ID v1 pairs them; other ICMP as (type, code)."""
    sport = rows.sport.astype(np.int64)
    dport = rows.dport.astype(np.int64)
    for number, pairs in ICMP_COUNTERPART.items():
        icmp = rows.proto == number
        if icmp.any():
            counterpart = pairs[sport[icmp] & 0xFF]
            dport[icmp] = np.where(counterpart >= 0, counterpart, dport[icmp])
    return sport, dport


def flow_ports(rows: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
    """Each packet's flow ports (rows in capture order): later fragments take
    their first fragment's (same addresses, protocol and identification), as
    the flow table attributes them; ICMP as :func:`_flow_ports`."""
    sport = rows.sport.astype(np.int64)
    dport = rows.dport.astype(np.int64)
    ports: dict[tuple[int, ...], tuple[int, int]] = {}
    for i in np.flatnonzero(rows.frag != 0).tolist():
        key = _fragment_key(rows, i)
        if rows.frag[i] & 2:
            ports[key] = (int(sport[i]), int(dport[i]))
        elif key in ports:
            sport[i], dport[i] = ports[key]
    fixed = PacketBatch(*rows.arrays())
    fixed.sport, fixed.dport = sport, dport
    return _flow_ports(fixed)


def _tuple_hashes(rows: PacketBatch, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each packet's 5-tuple, the same in both directions."""
    s = _mix(_mix(rows.src_hi) ^ rows.src_lo) ^ _mix(sport.astype(np.uint64) + np.uint64(1))
    d = _mix(_mix(rows.dst_hi) ^ rows.dst_lo) ^ _mix(dport.astype(np.uint64) + np.uint64(1))
    with np.errstate(over="ignore"):
        return _mix((s + d) ^ (rows.proto.astype(np.uint64) << np.uint64(56)))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _fragment_key(batch: PacketBatch, i: int) -> tuple[int, ...]:
    return (int(batch.src_hi[i]), int(batch.src_lo[i]), int(batch.dst_hi[i]),
            int(batch.dst_lo[i]), int(batch.proto[i]), int(batch.frag_id[i]))  # fmt: skip


def _packed(hi: int, lo: int) -> bytes:
    """Packed address bytes (4 for IPv4, as Community ID hashes them)."""
    return ipaddress.ip_address(address_text(hi, lo)).packed


ICMP_PAIRS = {
    1: {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10},
    58: {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133, 135: 136, 136: 135,
         139: 140, 140: 139, 144: 145, 145: 144},
}  # fmt: skip
ICMP_COUNTERPART = {
    proto: np.array([pairs.get(t, -1) for t in range(256)], dtype=np.int64)
    for proto, pairs in ICMP_PAIRS.items()
}


def flow_numbers(rows: PacketBatch, idle_ns: int) -> np.ndarray:
    """A flow number for each packet (rows in capture order): packets of one
    5-tuple (the table's key: ICMP by type pair, later fragments by their first)
    belong to one flow until a silence longer than ``idle_ns``."""
    n = len(rows)
    sport, dport = flow_ports(rows)
    proto = rows.proto.astype(np.int64)
    a_first = (rows.src_hi < rows.dst_hi) | (
        (rows.src_hi == rows.dst_hi)
        & ((rows.src_lo < rows.dst_lo) | ((rows.src_lo == rows.dst_lo) & (sport <= dport)))
    )
    a_hi = np.where(a_first, rows.src_hi, rows.dst_hi)
    a_lo = np.where(a_first, rows.src_lo, rows.dst_lo)
    b_hi = np.where(a_first, rows.dst_hi, rows.src_hi)
    b_lo = np.where(a_first, rows.dst_lo, rows.src_lo)
    meta = (np.where(a_first, sport, dport) << 48) | (np.where(a_first, dport, sport) << 32)
    meta |= (proto << 16) | rows.vlan.astype(np.int64)
    order = np.lexsort((rows.ts_ns, meta, b_lo, b_hi, a_lo, a_hi))
    new_key = np.ones(n, dtype=bool)
    if n > 1:
        same = (
            (a_hi[order][1:] == a_hi[order][:-1]) & (a_lo[order][1:] == a_lo[order][:-1])
            & (b_hi[order][1:] == b_hi[order][:-1]) & (b_lo[order][1:] == b_lo[order][:-1])
            & (meta[order][1:] == meta[order][:-1])
        )  # fmt: skip
        gap = np.diff(rows.ts_ns[order]) > idle_ns
        new_key[1:] = ~same | gap
    numbers = np.empty(n, dtype=np.int64)
    numbers[order] = np.cumsum(new_key) - 1
    return numbers


def chosen_packets(kept: KeptPackets, selection: Selection) -> tuple[np.ndarray, int]:
    """Indices of the kept packets that belong to a chosen flow (in capture
    order), and how many flows."""
    rows, *_ = kept.columns()
    if not len(rows):
        return np.empty(0, dtype=np.int64), 0
    numbers = flow_numbers(rows, selection.idle_ns)
    ts = rows.ts_ns
    inside = np.ones(len(rows), dtype=bool)
    if selection.start_ns is not None:
        inside &= ts >= selection.start_ns
    if selection.end_ns is not None:
        inside &= ts <= selection.end_ns
    flows = np.unique(numbers[inside])
    if selection.community_id is not None and len(flows):
        # The reading matched 5-tuples by a hash of them: check each chosen
        # flow's Community ID exactly, on its first packet with ports.
        sport, dport = flow_ports(rows)
        exact = []
        for number in flows.tolist():
            i = int(np.flatnonzero((numbers == number) & (rows.frag != 1))[:1].sum())
            text = community_id_v1(
                _packed(int(rows.src_hi[i]), int(rows.src_lo[i])),
                _packed(int(rows.dst_hi[i]), int(rows.dst_lo[i])),
                int(rows.proto[i]), int(sport[i]), int(dport[i]),
            )  # fmt: skip
            if text == selection.community_id:
                exact.append(number)
        flows = np.array(exact, dtype=np.int64)
    chosen = np.flatnonzero(np.isin(numbers, flows))
    return chosen, len(flows)


def output_format(output: str, linktypes: np.ndarray) -> str:
    """pcapng when the output is named so, or when the packets have several
    link types; pcap otherwise."""
    if output.lower().endswith((".pcapng", ".pcapng.tmp", ".ntar")):
        return "pcapng"
    return "pcap" if len(np.unique(linktypes)) <= 1 else "pcapng"


def carve(
    paths: Sequence[str | os.PathLike[str]],
    selection: Selection,
    output: str,
    *,
    headers_only: bool = False,
    reading: Reading = ONE_THREAD,
) -> CarveResult:
    """Read ``paths`` (one stream, in the order given; ``reading``: what says
    each problem and shows progress) and write the packets of the flows
    ``selection`` chooses to ``output`` (module docstring)."""
    on_problem, progress = reading.on_problem, reading.progress
    started = time.perf_counter()
    keeper = RecordKeeper(_Chooser(selection), headers_only=headers_only)
    stats: list[CaptureStats] = []
    # The output is made first: an unwritable path is said before the reading.
    with replacing(output) as into:
        for index, path in enumerate(paths):
            keeper.source = index
            batches = (
                _read_range(path, keeper, on_problem, stats)
                if isinstance(path, FileRange)
                else read_packets([path], reuse_batch=True, inspector=keeper,
                                  on_problem=on_problem, stats_out=stats)
            )  # fmt: skip
            steps = _positions(batches, stats)
            for _ in progress(steps) if progress is not None else steps:
                pass
        chosen, flows = chosen_packets(keeper.kept, selection)
        _rows, _at, linktype, _source, _length = keeper.kept.columns()
        fmt = output_format(output, linktype[chosen])
        written = write_capture(output, keeper.kept, chosen, fmt=fmt, into=into)
    return CarveResult(
        packets=written,
        flows=flows,
        candidates=len(linktype),
        format=fmt,
        stats=stats,
        seconds=time.perf_counter() - started,
    )


def _read_range(
    part: FileRange,
    keeper: RecordKeeper,
    on_problem: Callable[[CaptureProblem], None] | None,
    stats: list[CaptureStats],
) -> Iterator[PacketBatch]:
    """The batches of a byte range (as ``read_packets`` gives a file's); a
    problem's offset is in the whole file."""
    # open_capture as it is now: tests count the files a carve opens through it.
    reader = RangeReader(part.path, part.start, part.end, part.header, inspector=keeper,
                         bpf=part.bpf, opener=open_capture)  # fmt: skip
    stats.append(reader.stats)
    if not (yield from read_reporting(reader, on_problem)):
        return
    for problem in reader.stats.problems:  # as read_packets says a file's
        if on_problem is not None:
            on_problem(problem)
        elif problem.fatal:
            raise DecodeError(str(problem))


def _positions(batches: Iterable[PacketBatch], stats: list[CaptureStats]) -> Iterator[int]:
    """Bytes of the file on disk read at each batch (for progress bars)."""
    done = 0
    for _batch in batches:
        position = stats[-1].disk_position if stats else 0
        yield position - done
        done = position
