"""What each flow was, from the payload facts: its service and the server name seen.

The payload inspector (``flows/payload.py``) records facts per packet; a flow
record takes those of its packets:

* ``service``: the protocols found in the flow, comma-separated and sorted, as
  Zeek's conn.log writes its ``service`` set: ``dns`` (a DNS message on port
  53), ``http`` (an HTTP/1.x request), ``tls`` (a TLS ClientHello; Zeek says
  ``ssl``), ``smtp`` (a MAIL FROM with SIZE=), ``ssh`` (an SSH identification
  string from either side), ``quic`` (a QUIC long-header packet of version 1,
  2 or a draft), ``bittorrent`` (handshake, DHT, uTP, tracker, local peer
  discovery), ``edonkey``, ``gnutella``; empty when nothing was recognised.
* ``server_name``: the TLS server name (SNI) of the flow, else its HTTP Host
  (without a port), else for a DNS flow its first question name, else the
  name a DNS answer gave the responder's address (the latest answer before the
  flow began, else the first after). ID numbers in it are masked as alerts
  mask them (``alerts/mask.py``: ``A123456789`` -> ``A12*****89``).

A fact belongs to the flow with its addresses, ports and protocol (either way
round) whose first and last packet enclose it. Facts carry no VLAN id, so the
same five values on two VLANs at once share their facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._kernels import flowtable as fk
from ..alerts.mask import mask_personal, printable
from .payload import ANSWER_HI, ANSWER_LO, P2P_SIGNATURE

if TYPE_CHECKING:
    import pandas as pd

# Service bits, in the order their names are written.
SERVICES = ("bittorrent", "dns", "edonkey", "gnutella", "http", "quic", "smtp", "ssh", "tls")
_BIT = {name: 1 << i for i, name in enumerate(SERVICES)}
_KIND_SERVICE = {"dns": "dns", "tls-sni": "tls", "tls-alpn": "tls", "http": "http",
                 "smtp-size": "smtp", "ssh": "ssh", "quic": "quic"}  # fmt: skip
# P2P signature numbers (flows/payload.py P2P_NAMES) → service.
_P2P_SERVICE = {1: "bittorrent", 2: "bittorrent", 3: "bittorrent", 4: "bittorrent",
                5: "bittorrent", 6: "edonkey", 7: "gnutella"}  # fmt: skip
_SERVICE_TEXT = np.array(
    [
        ",".join(n for i, n in enumerate(SERVICES) if bits >> i & 1)
        for bits in range(1 << len(SERVICES))
    ],
    dtype=object,
)
# Which name a flow shows when it has several: lower is better.
_NAME_RANK = {"tls-sni": 0, "http": 1, "dns": 2}

_K = [np.uint64(k) for k in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                             0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD)]  # fmt: skip


def _hash(a_hi: Any, a_lo: Any, b_hi: Any, b_lo: Any, rest: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (  # type: ignore[no-any-return]
            (a_lo * _K[0]) ^ (b_lo * _K[1]) ^ (a_hi * _K[2]) ^ (b_hi * _K[3]) ^ (rest * _K[4])
        )


def _address_hash(hi: Any, lo: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (hi * _K[2]) ^ (lo * _K[0])  # type: ignore[no-any-return]


class FlowNames:
    """Service and server name of flow rows, from one run's payload facts
    (``PayloadInspector.frame()``, or its ``fact_columns()``: no pandas)."""

    def __init__(self, facts: pd.DataFrame | Mapping[str, np.ndarray] | None) -> None:
        self._masked: dict[str, str] = {}
        n = 0 if facts is None else len(np.asarray(facts["ts_ns"]))
        self.empty = n == 0
        if self.empty or facts is None:
            return
        kind = np.asarray(facts["kind"]).astype(str)
        src_hi = np.asarray(facts["src_hi"]).astype(np.uint64)
        src_lo = np.asarray(facts["src_lo"]).astype(np.uint64)
        dst_hi = np.asarray(facts["dst_hi"]).astype(np.uint64)
        dst_lo = np.asarray(facts["dst_lo"]).astype(np.uint64)
        sport = np.asarray(facts["sport"]).astype(np.uint64)
        dport = np.asarray(facts["dport"]).astype(np.uint64)
        proto = np.asarray(facts["proto"]).astype(np.uint64)
        texts = np.asarray(facts["text"], dtype=object)
        ts_ns = np.asarray(facts["ts_ns"]).astype(np.int64)
        # The flow table's key order: A is the end with the smaller (address, port).
        src_first = (src_hi < dst_hi) | (
            (src_hi == dst_hi) & ((src_lo < dst_lo) | ((src_lo == dst_lo) & (sport <= dport)))
        )
        a_hi, b_hi = np.where(src_first, src_hi, dst_hi), np.where(src_first, dst_hi, src_hi)
        a_lo, b_lo = np.where(src_first, src_lo, dst_lo), np.where(src_first, dst_lo, src_lo)
        a_port, b_port = np.where(src_first, sport, dport), np.where(src_first, dport, sport)
        rest = (a_port << np.uint64(48)) | (b_port << np.uint64(32)) | (proto << np.uint64(16))
        bits = np.zeros(n, dtype=np.int64)
        for fact_kind, service in _KIND_SERVICE.items():
            bits[kind == fact_kind] = _BIT[service]
        p2p = np.flatnonzero(kind == "p2p-signature")
        signatures = np.asarray(facts[P2P_SIGNATURE])[p2p]
        bits[p2p] = [_BIT[_P2P_SERVICE[int(s)]] if int(s) in _P2P_SERVICE else 0
                     for s in signatures]  # fmt: skip
        rank = np.full(n, len(_NAME_RANK), dtype=np.int64)
        has_text = np.array([bool(t) for t in texts], dtype=bool)
        for fact_kind, r in _NAME_RANK.items():
            rank[(kind == fact_kind) & has_text] = r
        keep = (bits != 0) | (rank < len(_NAME_RANK))
        self._key = _hash(a_hi, a_lo, b_hi, b_lo, rest)[keep]
        self._ts = ts_ns[keep]
        self._bits = bits[keep]
        self._rank = rank[keep]
        self._text = texts[keep]
        # DNS answers: the address named, when, by what name.
        answers = np.flatnonzero(kind == "dns-answer")
        hi = np.asarray(facts[ANSWER_HI])[answers].astype(np.uint64)
        lo = np.asarray(facts[ANSWER_LO])[answers].astype(np.uint64)
        order = np.lexsort((ts_ns[answers], _address_hash(hi, lo)))
        self._answer_key = _address_hash(hi, lo)[order]
        self._answer_ts = ts_ns[answers][order]
        self._answer_text = texts[answers][order]

    def _mask(self, name: str) -> str:
        masked = self._masked.get(name)
        if masked is None:
            # Names come from the traffic: ID numbers masked as in alerts, and
            # control characters written as \xNN (ESC ]0; would retitle the
            # terminal of whoever prints the flows).
            masked = self._masked[name] = printable(mask_personal(name))
        return masked

    def columns(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``service`` and ``server_name`` (object arrays of str) of flow rows."""
        n = len(rows)
        service = np.full(n, "", dtype=object)
        names = np.full(n, "", dtype=object)
        if self.empty or n == 0:
            return service, names
        u = rows.view(np.uint64)
        meta = u[:, fk.C_META] & ~np.uint64(0xFFFF)  # the key without the VLAN id
        flow_key = _hash(u[:, fk.C_A_HI], u[:, fk.C_A_LO], u[:, fk.C_B_HI], u[:, fk.C_B_LO], meta)
        first, last = rows[:, fk.C_FIRST], rows[:, fk.C_LAST]
        order = np.argsort(flow_key, kind="stable")
        sorted_key = flow_key[order]
        lo = np.searchsorted(sorted_key, self._key, "left")
        hi = np.searchsorted(sorted_key, self._key, "right")
        fact_flow = np.full(len(self._key), -1, dtype=np.int64)
        one = np.flatnonzero(hi - lo == 1)
        candidate = order[lo[one]]
        inside = (first[candidate] <= self._ts[one]) & (self._ts[one] <= last[candidate])
        fact_flow[one[inside]] = candidate[inside]
        for j in np.flatnonzero(hi - lo > 1).tolist():  # the same key in several flows
            for i in order[lo[j] : hi[j]].tolist():
                if first[i] <= self._ts[j] <= last[i]:
                    fact_flow[j] = i
                    break
        matched = fact_flow >= 0
        bits = np.zeros(n, dtype=np.int64)
        np.bitwise_or.at(bits, fact_flow[matched], self._bits[matched])
        service = _SERVICE_TEXT[bits]
        # The best-ranked name of each flow, the earliest of that rank.
        named = np.flatnonzero(matched & (self._rank < len(_NAME_RANK)))
        best = named[np.lexsort((self._ts[named], self._rank[named], fact_flow[named]))]
        flows_named, firsts = np.unique(fact_flow[best], return_index=True)
        for i, j in zip(flows_named.tolist(), best[firsts].tolist(), strict=True):
            text = str(self._text[j])
            names[i] = self._mask(text.split(":")[0] if self._rank[j] == 1 else text)
        # Else the name a DNS answer gave the responder's address.
        if len(self._answer_key):
            init_a = rows[:, fk.C_INIT_IS_A] == 1
            resp_hi = np.where(init_a, u[:, fk.C_B_HI], u[:, fk.C_A_HI])
            resp_lo = np.where(init_a, u[:, fk.C_B_LO], u[:, fk.C_A_LO])
            resp_key = _address_hash(resp_hi, resp_lo)
            lo = np.searchsorted(self._answer_key, resp_key, "left")
            hi = np.searchsorted(self._answer_key, resp_key, "right")
            wanted = np.flatnonzero((hi > lo) & (names == ""))
            # The last answer of the address at or before the flow's first
            # packet: answers are sorted by (address, time); number the times
            # densely so that (address rank, time rank) is one sortable int64.
            times, ranks = np.unique(
                np.concatenate([self._answer_ts, first[wanted]]), return_inverse=True
            )
            span = len(times) + 1
            answer_rank = np.searchsorted(np.unique(self._answer_key), self._answer_key)
            flow_rank = answer_rank[lo[wanted]]
            answer_order = answer_rank * span + ranks[: len(self._answer_ts)]
            flow_order = flow_rank * span + ranks[len(self._answer_ts) :]
            pick = np.searchsorted(answer_order, flow_order, "right") - 1
            pick = np.where(pick >= lo[wanted], pick, lo[wanted])  # none before: the first after
            for i, k in zip(wanted.tolist(), pick.tolist(), strict=True):
                names[i] = self._mask(str(self._answer_text[k]))
        return service, names
