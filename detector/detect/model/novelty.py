"""Novelty: which (host, outside address) pairs and addresses of a scan the
baseline knew, and the bytes each window sent to pairs new to the host and to
addresses no host of the site had used."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ...arrays import sorted_unique
from ...features.hosts import window_starts
from ...units import MINUTE_NS
from ..rules import bulk_upload_new_destination
from .constants import (
    SANCTIONED_BYTES,
    SITE_NOVELTY_FEATURE,
    SITE_NOVELTY_RECEIVED,
    TRAFFIC_FEATURES,
)
from .frames import window_keys, window_minutes

if TYPE_CHECKING:
    import pandas as pd

    from ...features.hosts import HostTraffic
    from ...policy import Policy
    from .estimator import EgressModel
    from .history import History


def known_pairs(model: EgressModel, traffic: HostTraffic) -> pd.MultiIndex:
    """The (host_id, peer_id) pairs of this scan that were in the baseline."""
    import pandas as pd

    model._check_fitted()
    history = model.history_
    scan = traffic.external_pairs()
    known = pd.DataFrame({
        "host_hi": history.known_host_hi, "host_lo": history.known_host_lo,
        "peer_hi": history.known_peer_hi, "peer_lo": history.known_peer_lo,
    })  # fmt: skip
    both = scan.merge(known, on=["host_hi", "host_lo", "peer_hi", "peer_lo"], how="inner")
    return pd.MultiIndex.from_arrays(
        [both["host_id"].to_numpy(), both["peer_id"].to_numpy()], names=["host_id", "peer_id"]
    )


def known_peers(model: EgressModel, traffic: HostTraffic) -> np.ndarray:
    """The outside addresses (peer ids) of this scan that some host of the
    baseline used."""
    model._check_fitted()
    history = model.history_
    f = traffic.frame
    peers = sorted_unique(f["peer_id"].to_numpy(dtype=np.int64)[f["peer_external"].to_numpy()])
    if len(peers) == 0 or len(history.known_peer_lo) == 0:
        return np.zeros(0, dtype=np.int64)
    import pandas as pd

    known = pd.MultiIndex.from_arrays([history.known_peer_hi, history.known_peer_lo])
    scan = pd.MultiIndex.from_arrays([traffic.address_hi[peers], traffic.address_lo[peers]])
    return peers[scan.isin(known)]


def baseline_users(
    model: EgressModel, traffic: HostTraffic
) -> Callable[[np.ndarray], pd.DataFrame]:
    """Which hosts of the baseline used given outside addresses of this scan:
    a function of peer ids (this scan's) giving (``host_hi``, ``host_lo``,
    ``peer_id``) rows. How many hosts of the site use an address (RITA's
    "prevalence") tells a meeting service the office shares from a server
    one host alone reaches. A function, so that only the few addresses a rule
    asks about are looked up (the history holds millions of pairs)."""
    model._check_fitted()
    return partial(traffic.users_of, partial(_baseline_users_of, model.history_))


def _baseline_users_of(history: History, peer_hi: np.ndarray, peer_lo: np.ndarray) -> pd.DataFrame:
    """The baseline's (host, outside address) pairs near given addresses (by
    their low halves: the exact match is the caller's merge)."""
    import pandas as pd

    near = np.isin(history.known_peer_lo, peer_lo)
    return pd.DataFrame({
        "host_hi": history.known_host_hi[near], "host_lo": history.known_host_lo[near],
        "peer_hi": history.known_peer_hi[near], "peer_lo": history.known_peer_lo[near],
    })  # fmt: skip


def with_novelty(
    features: pd.DataFrame,
    traffic: HostTraffic,
    policy: Policy,
    *,
    known: pd.MultiIndex | None = None,
    known_site: np.ndarray | None = None,
    settle_ns: int = 0,
    baseline: bool = False,
) -> pd.DataFrame:
    """``features`` with ``new_destinations`` and ``new_destination_bytes``
    counted against what the host already used, and
    ``unseen_destination_bytes`` against what the whole site used.

    A (host, outside address) pair is *new* unless it is in ``known`` (the
    model's baseline) or was first reached within ``settle_ns`` of the start of
    the traffic (training: a baseline's first day meets every destination for
    the first time, which says nothing). ``new_destinations`` counts new pairs
    in the window of their first contact; ``new_destination_bytes`` is what the
    host sent to new pairs up to ``new_for_hours`` (policy, rule
    bulk-upload-new-destination) after first reaching them.
    ``unseen_destination_bytes`` is the same for addresses no host used:
    not in ``known_site`` (peer ids some baseline host used), counted up to
    ``new_for_hours`` after the site first reached them. On the ``baseline``
    itself, an address counts as unseen when the site used it only within
    ``new_for_hours`` of first reaching it: what the site uses on other days
    is what a scan after training will know.
    """
    import pandas as pd

    if features.empty:
        return features.assign(
            **{n: np.zeros(0, dtype=np.int64) for n in (*TRAFFIC_FEATURES, SANCTIONED_BYTES)}
        )
    minutes = window_minutes(features)
    new_for_ns = (
        int(policy.rule(bulk_upload_new_destination.DETECTION.rule_id)["new_for_hours"])
        * 60
        * MINUTE_NS
    )
    f = traffic.frame
    ext = f[f["peer_external"].to_numpy()]
    pair = ["host_id", "peer_id"]
    first = ext.groupby(pair, sort=False)["first_ns"].transform("min").to_numpy(dtype=np.int64)
    new = first >= (traffic.first_ns or 0) + settle_ns
    if known is not None and len(known):
        new &= ~pd.MultiIndex.from_frame(ext[pair]).isin(known)
    rows = ext[new]
    first = first[new]
    keys = np.asarray(traffic.texts(rows["host_id"].to_numpy()), dtype=str)
    minute = rows["minute_ns"].to_numpy(dtype=np.int64)
    window = window_starts(minute, policy, minutes)
    recent = minute < first + new_for_ns
    sent = (
        pd.Series(rows["bytes_out"].to_numpy()[recent])
        .groupby([keys[recent], window[recent]])
        .sum()
    )
    first_window = window_starts(first - np.mod(first, MINUTE_NS), policy, minutes)
    firsts = pd.DataFrame(
        {"host": keys, "window": first_window, "peer": rows["peer_id"].to_numpy()}
    )
    counts = firsts.drop_duplicates(["host", "peer"]).groupby(["host", "window"]).size()
    hosts, starts = window_keys(features)
    at = pd.MultiIndex.from_arrays([hosts, starts])
    out = features.copy()
    out["new_destinations"] = counts.reindex(at).fillna(0).to_numpy(dtype=np.int64)
    out["new_destination_bytes"] = sent.reindex(at).fillna(0).to_numpy(dtype=np.int64)
    # The site: first contact by any host.
    by_peer = ext.groupby("peer_id", sort=False)
    site_first = by_peer["first_ns"].transform("min").to_numpy(dtype=np.int64)
    if baseline:
        site_last = by_peer["last_ns"].transform("max")
        unseen = site_last.to_numpy(dtype=np.int64) < site_first + new_for_ns
    else:
        unseen = np.ones(len(ext), dtype=bool)
    if known_site is not None and len(known_site):
        unseen &= ~np.isin(ext["peer_id"].to_numpy(dtype=np.int64), known_site)
    minute = ext["minute_ns"].to_numpy(dtype=np.int64)
    unseen &= minute < site_first + new_for_ns
    # A destination the site sanctioned (allowlist) is no leak's server, new or not.
    unseen &= ~ext["peer_allowlisted"].to_numpy()
    rows = ext[unseen]
    # What the host has sent to one such address so far, in the windows it
    # sends to it: a 20 MB upload spread over three windows is 20 MB to a
    # never-seen server by the third, not three uploads of 7 MB.
    per = pd.DataFrame({
        "host": np.asarray(traffic.texts(rows["host_id"].to_numpy()), dtype=str),
        "peer": rows["peer_id"].to_numpy(dtype=np.int64),
        "window": window_starts(rows["minute_ns"].to_numpy(dtype=np.int64), policy, minutes),
        "sent": rows["bytes_out"].to_numpy(dtype=np.int64),
        "received": rows["bytes_in"].to_numpy(dtype=np.int64),
    })  # fmt: skip
    both = ["sent", "received"]
    per = per.groupby(["host", "peer", "window"], sort=True)[both].sum().reset_index()
    per[both] = per.groupby(["host", "peer"], sort=False)[both].cumsum()
    # The address the host sent most to, and what it received back from it so
    # far: a web page that took a form or an attachment also sent pages and
    # images back; an exfiltration is one way.
    top = per.loc[per.groupby(["host", "window"])["sent"].idxmax()].set_index(["host", "window"])
    out[SITE_NOVELTY_FEATURE] = top["sent"].reindex(at).fillna(0).to_numpy(dtype=np.int64)
    out[SITE_NOVELTY_RECEIVED] = top["received"].reindex(at).fillna(0).to_numpy(dtype=np.int64)
    # What went to sanctioned destinations (the nightly backup): not what the
    # window "sent" when an upload to a never-seen address is weighed.
    sanctioned = ext[ext["peer_allowlisted"].to_numpy()]
    by_window = (
        pd.Series(sanctioned["bytes_out"].to_numpy())
        .groupby([
            np.asarray(traffic.texts(sanctioned["host_id"].to_numpy()), dtype=str),
            window_starts(sanctioned["minute_ns"].to_numpy(dtype=np.int64), policy, minutes),
        ])
        .sum()
    )  # fmt: skip
    out[SANCTIONED_BYTES] = by_window.reindex(at).fillna(0).to_numpy(dtype=np.int64)
    return out
