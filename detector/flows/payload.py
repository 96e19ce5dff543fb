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

Personal data: ID numbers exist in full only in the kernel's arena, for the
moment between the kernel and :meth:`PayloadInspector._collect`, which keeps the
masked form (``A12*****89``) and a hash keyed by a random per-run key. Nothing
written anywhere can carry a full number (bulletin No. 4).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
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


# The fact table's columns (see the module's docstring).
FACT_NAMES = ["ts_ns", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "proto",
              "kind", "a", "b", "c", "d", "text", "secret"]  # fmt: skip


def mask_id(number: str) -> str:
    """'A123456789' → 'A12*****89': enough for a reviewer to tell two apart."""
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


class PayloadInspector:
    """Looks at the first ``max_packets`` payload packets of each flow, at most
    ``max_bytes`` bytes of each."""

    def __init__(
        self, *, max_packets: int = DEFAULT_MAX_PACKETS, max_bytes: int = DEFAULT_MAX_BYTES
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
        self._chunks.append(
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
        if self.on_facts is not None:
            self.on_facts(self._chunks[-1])

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
