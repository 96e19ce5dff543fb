"""Folding the long tail of a flood: what keeps a scan's memory bounded.

A spoofed-source flood makes every packet a new conversation with a new
outside address. Counted one row per (conversation, minute), it grows the
activity table, and everything built on it, by about a kilobyte a packet
until the machine runs out of memory: an adversary's cheapest way to blind
the sensor before an upload.

When the rows an :class:`~detector.flows.activity.ActivityTable` holds pass
its budget, the table merges them and *folds* them: every address the caller
says may be folded (a scan: outside the site, not allowlisted, not an
isolated network's sanctioned peer) that carried at most ``FOLD_PACKETS``
packets in all the rows held is replaced by one stand-in address,
``FOLDED_ADDRESS`` (``100::``, in RFC 6666's discard-only prefix, which no
real traffic uses), with port 0; rows that then share a key are merged. So:

* packets and bytes are kept exactly, per (internal host, minute) and per
  direction: the volume rules see every byte a host sent, also to folded
  addresses, which they name as ``100::``;
* what is lost is which outside address a few-packet conversation had (and
  so the count of distinct outside addresses in those minutes); the table
  counts the addresses it folded, per minute, for the ``sensor-flood`` alert;
* an address with more packets than ``FOLD_PACKETS`` in the rows held, or
  any address inside the site, keeps its rows: an upload (thousands of
  packets) to one outside address is never folded, even in a flood.

Folding happens only under pressure (more than the budget's rows, a million
by default: far above an ordinary day of a site's conversation-minutes), so an
ordinary scan's results do not depend on it.

A flood inside the site (a host on an isolated segment sending from a new port
a packet: forged cards, a SYN scan of a neighbour) folds no address, since
every address is the site's. If the rows are still over half the budget once
merged, :func:`fold_ports` drops the higher port (the client's; a service's
is the lower, 53 or 443) of every conversation of at most ``FOLD_PACKETS``
packets in all the rows held, where ``MANY_CONVERSATIONS`` such conversations
or more reach one pair of addresses and one service (a scan or a flood, not a
browser's dozen connections), so their rows in one minute merge into one:
what is lost is which client ports those few-packet conversations used. A conversation of more
packets keeps its ports in every minute, also one that had just begun. The
table counts them per minute (``folded_conversations``) for ``sensor-flood``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._kernels import activity as ak
from ..networks import FOLDED_ADDRESS, FOLDED_HI, FOLDED_LO, address_ids, is_folded

# A SYN, its SYN-ACK and up to two retransmissions: more is a conversation.
FOLD_PACKETS = 4
# Few-packet conversations to one pair of addresses and one service in the rows
# held from which their client ports are dropped: a scan or a flood, not a
# browser's dozen connections to a server.
MANY_CONVERSATIONS = 100

__all__ = ["FOLDED_ADDRESS", "FOLD_PACKETS", "Foldable", "fold_ports", "fold_rows", "is_folded"]

Foldable = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (hi, lo) uint64 → bool


def fold_rows(
    rows: np.ndarray, foldable: Foldable, *, max_packets: int = FOLD_PACKETS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold activity rows ``rows`` (n, ≥ ``USED_COLUMNS``), as the table drains
    them, merged or not (module docstring). Returns (rows, bins, sources): the
    rows with folded addresses replaced (a new array when anything was
    folded; not merged: rows that now share a key are the caller's to merge),
    and for each bin that had addresses folded, how many distinct addresses
    were folded in it (``bins`` ascending)."""
    import pandas as pd

    n = rows.shape[0]
    empty = np.empty(0, dtype=np.int64)
    if n == 0:
        return rows, empty, empty
    # Each distinct address once, its packets over every row it is in (hashing,
    # not a sort of 16-byte keys: 10x faster).
    hi = np.concatenate([rows[:, ak.C_A_HI], rows[:, ak.C_B_HI]]).view(np.uint64)
    lo = np.concatenate([rows[:, ak.C_A_LO], rows[:, ak.C_B_LO]]).view(np.uint64)
    codes, u_hi, u_lo = address_ids(hi, lo)
    del hi, lo
    packets = rows[:, ak.C_AB_PACKETS] + rows[:, ak.C_BA_PACKETS]
    total = np.bincount(codes[:n], weights=packets, minlength=len(u_lo))
    total += np.bincount(codes[n:], weights=packets, minlength=len(u_lo))
    fold = (total <= max_packets) & ~is_folded(u_hi, u_lo)
    if fold.any():
        fold &= np.asarray(foldable(u_hi, u_lo), dtype=bool)
    fold_a = fold[codes[:n]]
    fold_b = fold[codes[n:]]
    if not (fold_a.any() or fold_b.any()):
        return rows, empty, empty

    # Distinct folded addresses per bin (an address folded in two bins counts in each).
    bin_ = rows[:, ak.C_BIN]
    which = np.concatenate([codes[:n][fold_a], codes[n:][fold_b]])
    in_bin = np.concatenate([bin_[fold_a], bin_[fold_b]])
    low = int(in_bin.min())
    key = (in_bin - low) * np.int64(len(u_lo)) + which
    distinct = pd.unique(key)
    bins, sources = np.unique(distinct // np.int64(len(u_lo)) + low, return_counts=True)
    del codes, which, in_bin, key, distinct

    out = np.array(rows[:, : ak.USED_COLUMNS], order="C")  # the caller's rows stay as they were
    a_hi = out[:, ak.C_A_HI].view(np.uint64)
    a_lo = out[:, ak.C_A_LO].view(np.uint64)
    b_hi = out[:, ak.C_B_HI].view(np.uint64)
    b_lo = out[:, ak.C_B_LO].view(np.uint64)
    meta = out[:, ak.C_META].view(np.uint64)
    a_port = meta >> np.uint64(48)
    b_port = (meta >> np.uint64(32)) & np.uint64(0xFFFF)
    rest = meta & np.uint64(0xFFFF_FFFF)  # protocol and VLAN
    na_hi = np.where(fold_a, np.uint64(FOLDED_HI), a_hi)
    na_lo = np.where(fold_a, np.uint64(FOLDED_LO), a_lo)
    na_port = np.where(fold_a, np.uint64(0), a_port)
    nb_hi = np.where(fold_b, np.uint64(FOLDED_HI), b_hi)
    nb_lo = np.where(fold_b, np.uint64(FOLDED_LO), b_lo)
    nb_port = np.where(fold_b, np.uint64(0), b_port)
    # A stays the endpoint with the smaller (address, port); where folding
    # changed that, the endpoints and their directions swap.
    swap = (na_hi > nb_hi) | (
        (na_hi == nb_hi) & ((na_lo > nb_lo) | ((na_lo == nb_lo) & (na_port > nb_port)))
    )
    out[:, ak.C_A_HI] = np.where(swap, nb_hi, na_hi).view(np.int64)
    out[:, ak.C_A_LO] = np.where(swap, nb_lo, na_lo).view(np.int64)
    out[:, ak.C_B_HI] = np.where(swap, na_hi, nb_hi).view(np.int64)
    out[:, ak.C_B_LO] = np.where(swap, na_lo, nb_lo).view(np.int64)
    new_a_port = np.where(swap, nb_port, na_port)
    new_b_port = np.where(swap, na_port, nb_port)
    new_meta = (new_a_port << np.uint64(48)) | (new_b_port << np.uint64(32)) | rest
    out[:, ak.C_META] = new_meta.view(np.int64)
    for ab, ba in ((ak.C_AB_PACKETS, ak.C_BA_PACKETS), (ak.C_AB_BYTES, ak.C_BA_BYTES)):
        first, second = out[swap, ab], out[swap, ba]
        out[swap, ab], out[swap, ba] = second, first
    return out, bins.astype(np.int64), sources.astype(np.int64)


def _key_hash(cols: np.ndarray, meta: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """A 64-bit hash of the conversation key (addresses and ``meta``) of
    ``rows`` of ``cols`` (all of them when None)."""

    def column(c: int) -> np.ndarray:
        values = cols[c].view(np.uint64)
        return values if rows is None else values[rows]

    with np.errstate(over="ignore"):
        h = column(ak.C_A_LO) * np.uint64(0x9E3779B97F4A7C15)
        h ^= column(ak.C_B_LO) * np.uint64(0xC2B2AE3D27D4EB4F)
        h ^= column(ak.C_A_HI) * np.uint64(0x165667B19E3779F9)
        h ^= column(ak.C_B_HI) * np.uint64(0xD6E8FEB86659FD93)
        h ^= meta * np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(29)
    return h  # type: ignore[no-any-return]


def fold_ports(
    cols: np.ndarray, *, max_packets: int = FOLD_PACKETS, many: int = MANY_CONVERSATIONS
) -> tuple[np.ndarray, np.ndarray]:
    """Drop, in place, the higher port (the client's) of every conversation
    of at most ``max_packets`` packets in all of ``cols`` (merged activity
    columns, (≥ ``USED_COLUMNS``, n), as ``ActivityTable.merged_columns``
    holds them; module docstring) to a pair of addresses and a service that
    ``many`` such conversations or more reach: a flood's, not a busy host's
    few. Returns (bins, conversations): for each bin (ascending) how many rows
    lost a port; the caller merges the rows that now share a key. A and B
    keep their order, which is by address (a host talking to itself, ordered
    by port, keeps its ports)."""
    import pandas as pd

    empty = np.empty(0, dtype=np.int64)
    packets = cols[ak.C_AB_PACKETS] + cols[ak.C_BA_PACKETS]
    meta = cols[ak.C_META].view(np.uint64)
    # Each conversation once, by a 64-bit hash of its key (one column to
    # factorise, not five: a third of the memory; two keys of the ~million
    # held share a hash with odds of about 1 in 10^7).
    codes, _ = pd.factorize(_key_hash(cols, meta))
    total = np.bincount(codes, weights=packets)[codes]
    a_port = meta >> np.uint64(48)
    b_port = (meta >> np.uint64(32)) & np.uint64(0xFFFF)
    # The higher port is the one dropped: the client's (a service's is the
    # lower, as a rule: 53, 443). A host talking to itself keeps both (the
    # order of its ends is by port).
    itself = (cols[ak.C_A_LO] == cols[ak.C_B_LO]) & (cols[ak.C_A_HI] == cols[ak.C_B_HI])
    few = np.flatnonzero((total <= max_packets) & (a_port != b_port) & ~itself)
    if not len(few):
        return empty, empty
    higher = np.where(a_port[few] > b_port[few], np.uint64(0xFFFF) << np.uint64(48),
                      np.uint64(0xFFFF) << np.uint64(32))  # fmt: skip
    folded_meta = meta[few] & ~higher
    # How many distinct conversations reach each (pair, service) they would merge into.
    group, _ = pd.factorize(_key_hash(cols, folded_meta, few))
    span = np.int64(codes.max()) + 1
    distinct = pd.unique(group.astype(np.int64) * span + codes[few])
    per_group = np.bincount(distinct // span, minlength=int(group.max()) + 1)
    chosen = per_group[group] >= many
    if not chosen.any():
        return empty, empty
    rows = few[chosen]
    meta[rows] = folded_meta[chosen]
    bins, counts = np.unique(cols[ak.C_BIN][rows], return_counts=True)
    return bins.astype(np.int64), counts.astype(np.int64)
