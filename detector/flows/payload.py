"""PayloadInspector: facts from the first payload packets of each flow.

Fed by the capture reader while a batch's records are still in its buffer
(``read_packets(..., inspector=...)``); the kernel is
``detector._kernels.payload.inspect_packets``. Facts come out as one table:

=========  ==============================================================
column     meaning
=========  ==============================================================
ts_ns      time of the packet the fact was seen in
src_hi ..  the packet's addresses (128-bit halves), ports and protocol
kind       dns, dns-answer, tls-sni, tls-alpn, http, p2p, pii
a, b, c, d kind-specific integers (see the kernel module)
text       the name, Host, SNI or ALPN; for ``pii`` the *masked* number
secret     for ``pii`` only: a keyed hash of the number (distinct counts
           without keeping the number); empty otherwise
=========  ==============================================================

Memory: facts are held up to a budget (``FACT_BUDGET``, about 100 MB). Past
it (a flood of names: a DNS tunnel at full speed, forged answers) the
inspector *folds* what it holds, as the activity table folds a flood of
addresses (docs/architecture.md, "Memory under a flood"):

* a name fact that repeats one held (same kind, addresses, number ``a`` and
  text: a question asked again, the same server name to the same server) is
  dropped: the rules ask which names a host used, not how often;
* if the facts left are still over half the budget, each host (the asker, or
  the receiver of an answer) keeps at most an equal share of them, its
  earliest; those past its share are counted in :class:`FactOverflow` (per
  host and kind: how many, first and last time), which ``sensor-flood``
  reports. Hosts with few facts keep them all: only the flood is cut.

Folding happens only under pressure, so an ordinary scan's results do not
depend on it.

Personal data: ID numbers exist in full only in the kernel's arena, for the
moment between the kernel and :meth:`PayloadInspector._collect`, which keeps the
masked form (``A12*****89``) and a hash keyed by a random per-run key. Nothing
written anywhere can carry a full number (bulletin No. 4).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._kernels import payload as pk
from ..capture.batch import PacketBatch
from ..capture.files import RecordBuffer

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_PACKETS = 8
# A fact's four numbers are a, b, c and d; what each holds depends on its kind
# (detector/_kernels/payload.py). Read them by these names:
DNS_QTYPE, DNS_RCODE, DNS_IS_RESPONSE, DNS_ANSWERS = "a", "b", "c", "d"  # kind "dns"
ANSWER_IP_VERSION, ANSWER_HI, ANSWER_LO, ANSWER_TTL = "a", "b", "c", "d"  # kind "dns-answer"
HTTP_METHOD, HTTP_CONTENT_LENGTH = "a", "b"  # kind "http"
P2P_SIGNATURE = "a"  # kind "p2p-signature": an index into P2P_NAMES
PII_KIND = "a"  # kind "pii": 1 national ID, 2 resident certificate
SMTP_DECLARED_SIZE = "a"  # kind "smtp-size": bytes (RFC 1870 SIZE=)
# What each P2P signature fact's number means (the p2p rule names them in alerts).
P2P_NAMES = pk.P2P_NAMES
DEFAULT_MAX_BYTES = 2048
BUDGET_SLOTS = 1 << 18  # flows whose budget is remembered at once (one word each: 2 MB)
FACT_ROWS = 1 << 14
ARENA_BYTES = 1 << 21

_WORDS = (
    b"host:",
    b"content-length:",
    b"info_hash=",
    b"\r\n",
    b"\x13BitTorrent protocol",
    b"2:id20:",
    b"BT-SEARCH * ",
    b"GNUTELLA",
    b"\x00\x00\x04\x17\x27\x10\x19\x80",  # BEP 15 UDP tracker protocol id
    b"mail from:",  # SMTP (RFC 5321) ...
    b" size=",  # ... with the ESMTP SIZE parameter (RFC 1870)
    b"SSH-",  # the SSH identification string (RFC 4253 §4.2): payload.WORD_SSH
    *(m.encode() + b" " for m in pk.HTTP_METHODS),
)


# Facts held before they are folded (module docstring): about 100 MB of them.
FACT_BUDGET = 1 << 19
# Kinds whose repeats tell the rules nothing once one is held.
NAME_KINDS = ("dns", "dns-answer", "tls-sni", "tls-alpn", "http")
# Hosts whose facts past their share are counted one by one; the rest together
# under the address ``::`` (hi = lo = 0).
OVERFLOW_HOSTS = 4096


@dataclass(frozen=True)
class FactOverflow:
    """Facts past the inspector's budget, counted but not kept: per host
    (``hi``, ``lo``) and ``kind``, how many and the first and last time."""

    hi: np.ndarray  # uint64
    lo: np.ndarray  # uint64
    kind: np.ndarray  # object (str)
    facts: np.ndarray  # int64
    first_ns: np.ndarray  # int64
    last_ns: np.ndarray  # int64

    @classmethod
    def none(cls) -> FactOverflow:
        u, i = np.empty(0, np.uint64), np.empty(0, np.int64)
        return cls(u, u, np.empty(0, object), i, i, i)

    def __len__(self) -> int:
        return len(self.facts)

    @property
    def total(self) -> int:
        return int(self.facts.sum())

    def plus(self, other: FactOverflow) -> FactOverflow:
        """Both, summed per host and kind; past OVERFLOW_HOSTS hosts, the
        fewest-facts ones together under ``::``."""
        if not len(other):
            return self
        if not len(self):
            return other
        return _overflow_of(
            np.concatenate([self.hi, other.hi]), np.concatenate([self.lo, other.lo]),
            np.concatenate([self.kind, other.kind]), np.concatenate([self.facts, other.facts]),
            np.concatenate([self.first_ns, other.first_ns]),
            np.concatenate([self.last_ns, other.last_ns]),
        )  # fmt: skip


def _overflow_of(hi: np.ndarray, lo: np.ndarray, kind: np.ndarray, facts: np.ndarray,
                 first_ns: np.ndarray, last_ns: np.ndarray) -> FactOverflow:  # fmt: skip
    """Rows summed per (host, kind), at most OVERFLOW_HOSTS hosts."""
    import pandas as pd

    frame = pd.DataFrame({"hi": hi, "lo": lo, "kind": kind, "facts": facts,
                          "first_ns": first_ns, "last_ns": last_ns})  # fmt: skip
    for _ in range(2):  # the second pass merges the hosts put under ::
        per = frame.groupby(["hi", "lo", "kind"], sort=False).agg(
            facts=("facts", "sum"), first_ns=("first_ns", "min"), last_ns=("last_ns", "max")
        )
        frame = per.reset_index()
        by_host = frame.groupby(["hi", "lo"], sort=False)["facts"].transform("sum")
        hosts = frame[["hi", "lo"]].drop_duplicates()
        if len(hosts) <= OVERFLOW_HOSTS:
            break
        level = np.sort(by_host.to_numpy())[::-1]
        cut = level[min(OVERFLOW_HOSTS, len(level)) - 1]
        rest = (by_host.to_numpy() < cut) | (by_host.to_numpy() == cut)
        frame.loc[rest, ["hi", "lo"]] = 0
    return FactOverflow(
        frame["hi"].to_numpy(np.uint64), frame["lo"].to_numpy(np.uint64),
        frame["kind"].to_numpy(object), frame["facts"].to_numpy(np.int64),
        frame["first_ns"].to_numpy(np.int64), frame["last_ns"].to_numpy(np.int64),
    )  # fmt: skip


def water_level(counts: np.ndarray, room: int) -> int:
    """The largest share ``c`` such that every host keeping ``min(count, c)``
    of its facts keeps ``room`` or fewer in all."""
    low, high = 0, int(counts.max()) if len(counts) else 0
    while low < high:
        mid = (low + high + 1) // 2
        if int(np.minimum(counts, mid).sum()) <= room:
            low = mid
        else:
            high = mid - 1
    return low


# The fact table's columns (see the module's docstring).
FACT_NAMES = ["ts_ns", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "proto",
              "kind", "a", "b", "c", "d", "text", "secret"]  # fmt: skip


def mask_id(number: str) -> str:
    """'A123456789' → 'A12*****89': enough for a reviewer to tell two apart."""
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


class PayloadInspector:
    """Looks at the first ``max_packets`` payload packets of each flow, at most
    ``max_bytes`` bytes of each; holds what it found up to ``budget`` facts
    (default ``FACT_BUDGET``), then folds them (module docstring;
    ``drop_repeats=False``: only the hosts' shares are cut, for readers that
    need every flow's own facts)."""

    def __init__(
        self,
        *,
        max_packets: int = DEFAULT_MAX_PACKETS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        budget: int | None = None,
        drop_repeats: bool = True,
    ) -> None:
        if not 0 <= max_packets <= pk.MAX_BUDGET or max_bytes < 0:
            raise ValueError(
                f"max_packets must be 0–{pk.MAX_BUDGET} and max_bytes 0 or more "
                f"(got {max_packets}, {max_bytes})"
            )
        self.params = np.zeros(pk.P_FIELDS, dtype=np.int64)
        self.params[pk.P_MAX_PACKETS] = max_packets
        self.params[pk.P_MAX_BYTES] = max_bytes
        self._facts = np.zeros((FACT_ROWS, pk.FACT_COLUMNS), dtype=np.int64)
        self._arena = np.zeros(ARENA_BYTES, dtype=np.uint8)
        self._arrays = pk.InspectorArrays(
            seen=np.zeros(BUDGET_SLOTS, dtype=np.uint64),
            params=self.params,
            words=tuple(np.frombuffer(w, dtype=np.uint8).copy() for w in _WORDS),
            letters=pk.letter_codes(),
            facts=self._facts,
            arena=self._arena,
            keys=np.zeros(pk.RING, dtype=np.uint64),
        )
        self._key = os.urandom(16)  # per run: hashes of ID numbers cannot be looked up
        self._chunks: list[dict[str, np.ndarray]] = []
        # Facts held, and the budget past which they are folded (None: never).
        self._held = 0
        self.budget: int | None = budget or FACT_BUDGET
        self.drop_repeats = drop_repeats
        self.overflow = FactOverflow.none()  # counted past the budget, not kept
        self.repeats_dropped = 0  # name facts dropped as repeats of one held
        # Called with each new chunk of facts (the columns of ``frame``) as it is
        # found: a live sensor's rules look at them at once (detect/packets.py).
        self.on_facts: Callable[[dict[str, np.ndarray]], None] | None = None

    @classmethod
    def warm_up(cls) -> PayloadInspector:
        """Compile the inspection kernel, on a few made-up packets, for both kinds
        of buffer the readers hand it: read-only (a file's or a stream's records)
        and writable (a capture ring); returns the inspector."""
        from ..capture.live import sample_records

        records, batch = sample_records(40)
        inspector = cls()
        inspector.inspect(records, batch)
        inspector.inspect(records._replace(buf=records.buf.copy()), batch)
        return inspector

    def inspect(self, records: RecordBuffer, batch: PacketBatch) -> None:
        """Look at the payloads of ``batch``'s packets, whose records lie in ``records``."""
        n = len(batch)
        start = 0
        lts = np.ascontiguousarray(records.if_linktypes, dtype=np.int64)
        while start < n:
            start, n_facts, n_arena, _why = pk.inspect_packets(
                records.buf, records.base, batch.arrays(), start, n, records.pcapng,
                records.linktype, lts, self._arrays, 0, 0,
            )  # fmt: skip
            if n_facts:
                self._collect(batch, int(n_facts), int(n_arena))

    def _collect(self, batch: PacketBatch, n_facts: int, n_arena: int) -> None:
        facts = self._facts[:n_facts]
        rows = facts[:, pk.F_ROW]
        kinds = facts[:, pk.F_KIND]
        arena = self._arena[:n_arena].tobytes()
        texts = np.empty(n_facts, dtype=object)
        secrets = np.empty(n_facts, dtype=object)
        for j, (at, length, kind) in enumerate(
            zip(facts[:, pk.F_AT], facts[:, pk.F_LEN], kinds, strict=True)
        ):
            raw = arena[at : at + length] if length else b""
            text = raw.decode("ascii", errors="replace")
            if kind == pk.KIND_PII:
                secrets[j] = hashlib.blake2b(raw, key=self._key, digest_size=8).hexdigest()
                text = mask_id(text)
            else:
                secrets[j] = ""
            texts[j] = text
        self._arena[:n_arena] = 0  # the full numbers do not outlive this call
        self.take(
            {
                "ts_ns": batch.ts_ns[rows].astype(np.int64),
                "src_hi": batch.src_hi[rows].astype(np.uint64),
                "src_lo": batch.src_lo[rows].astype(np.uint64),
                "dst_hi": batch.dst_hi[rows].astype(np.uint64),
                "dst_lo": batch.dst_lo[rows].astype(np.uint64),
                "sport": batch.sport[rows].astype(np.int32),
                "dport": batch.dport[rows].astype(np.int32),
                "proto": batch.proto[rows].astype(np.int32),
                "kind": np.array([pk.KIND_NAMES[k] for k in kinds], dtype=object),
                "a": facts[:, pk.F_A].copy(),
                "b": facts[:, pk.F_B].copy(),
                "c": facts[:, pk.F_C].copy(),
                "d": facts[:, pk.F_D].copy(),
                "text": texts,
                "secret": secrets,
            }
        )

    def take(self, chunk: dict[str, np.ndarray]) -> None:
        """Hold a chunk of facts (the columns of ``frame``), as found; fold
        past the budget."""
        self._chunks.append(chunk)
        if self.on_facts is not None:
            self.on_facts(chunk)
        self._held += len(chunk["ts_ns"])
        if self.budget is not None and self._held > self.budget:
            self.fold()

    def fold(self) -> None:
        """Fold the facts held (module docstring): repeats of names dropped,
        then, over half the budget, each host's facts cut to an equal share,
        the rest counted in ``overflow``."""
        import pandas as pd

        from ..networks import address_ids

        cols = self.fact_columns()
        n = len(cols["ts_ns"])
        keep = np.ones(n, dtype=bool)
        named = np.flatnonzero(pd.Series(cols["kind"]).isin(NAME_KINDS).to_numpy())
        if len(named) and self.drop_repeats:
            fields = ("kind", "src_hi", "src_lo", "dst_hi", "dst_lo", "a", "text")
            key = pd.DataFrame({c: cols[c][named] for c in fields})
            repeats = named[key.duplicated().to_numpy()]
            keep[repeats] = False
            self.repeats_dropped += len(repeats)
        room = (self.budget if self.budget is not None else n) // 2
        held = np.flatnonzero(keep)
        if len(held) > room:
            kind = cols["kind"][held]
            # Whose fact it is: the asker's, or for an answer its receiver's.
            to_dst = (kind == "dns-answer") | ((kind == "dns") & (cols[DNS_IS_RESPONSE][held] == 1))
            hi = np.where(to_dst, cols["dst_hi"][held], cols["src_hi"][held]).astype(np.uint64)
            lo = np.where(to_dst, cols["dst_lo"][held], cols["src_lo"][held]).astype(np.uint64)
            ids, _hi, _lo = address_ids(hi, lo)
            counts = np.bincount(ids)
            share = water_level(counts, room)
            # Each fact's place among its host's, in the order held (time order).
            order = np.argsort(ids, kind="stable")
            rank = np.empty(len(ids), dtype=np.int64)
            rank[order] = np.arange(len(ids)) - np.repeat(np.cumsum(counts) - counts, counts)
            over = rank >= share
            ts = cols["ts_ns"][held][over]
            one = np.ones(len(ts), dtype=np.int64)
            self.overflow = self.overflow.plus(
                _overflow_of(hi[over], lo[over], kind[over], one, ts, ts)
            )
            keep[held[over]] = False
        self._chunks = [{c: v[keep] for c, v in cols.items()}]
        self._held = int(keep.sum())

    def forget_before(self, ts_ns: int) -> None:
        """Drop the facts seen before ``ts_ns`` (a live sensor's history: its
        rules look back at most a day; docs/live.md)."""
        if not self._chunks:
            return
        cols = self.fact_columns()
        recent = cols["ts_ns"] >= ts_ns
        if not recent.all():
            self._chunks = [{c: v[recent] for c, v in cols.items()}]
            self._held = int(recent.sum())
        if len(self.overflow):
            self.overflow = _forget_overflow(self.overflow, ts_ns)

    @property
    def held(self) -> int:
        """Facts held now."""
        return self._held

    def frame(self) -> pd.DataFrame:
        """Every fact so far, in the order seen."""
        import pandas as pd

        if not self._chunks:
            return pd.DataFrame({c: [] for c in FACT_NAMES})
        return pd.DataFrame(self.fact_columns())

    def fact_columns(self) -> dict[str, np.ndarray]:
        """The columns of :meth:`frame` as numpy arrays (no pandas)."""
        if not self._chunks:
            return {c: np.array([]) for c in FACT_NAMES}
        merged = {c: np.concatenate([chunk[c] for chunk in self._chunks]) for c in FACT_NAMES}
        self._chunks = [merged]
        return merged


def _forget_overflow(overflow: FactOverflow, ts_ns: int) -> FactOverflow:
    """``overflow`` without the hosts and kinds last counted before ``ts_ns``."""
    recent = overflow.last_ns >= ts_ns
    return FactOverflow(*(getattr(overflow, f)[recent] for f in
                          ("hi", "lo", "kind", "facts", "first_ns", "last_ns")))  # fmt: skip
