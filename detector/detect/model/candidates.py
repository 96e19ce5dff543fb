"""The pre-condition: which windows are above the host's usual (the forest's
population) and which are egress candidates the forest's score may flag."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import (
    EGRESS_FEATURES,
    EGRESS_GATE,
    NIGHT_HOURS,
    ONE_WAY_FACTOR,
    SANCTIONED_BYTES,
    SITE_NOVELTY_FEATURE,
    SITE_NOVELTY_RECEIVED,
)
from .frames import complete_features

if TYPE_CHECKING:
    import pandas as pd

    from .history import History


def egress_excess(features: pd.DataFrame, history: History) -> np.ndarray:
    """How far above its usual each window's host sent, in log units: the
    largest over ``EGRESS_FEATURES`` of log1p(value) - log1p(usual 95th
    percentile). log(2) means twice the usual."""
    if len(features) == 0:
        return np.zeros(0)
    features = complete_features(features)
    index = history.host_index(features["host"].to_numpy(dtype=str))
    hour = features["hour_of_week"].to_numpy(dtype=np.int64) % 24
    excess = []
    for name in EGRESS_FEATURES:
        usual = history.usual(name, index, hour)[:, 1]
        excess.append(np.log1p(features[name].to_numpy(dtype=np.float64)) - np.log1p(usual))
    return np.max(np.column_stack(excess), axis=1)


def above_usual(features: pd.DataFrame, history: History) -> np.ndarray:
    """Windows in which the host sent at least twice its usual by one egress
    measure (:func:`egress_excess`): the windows the forest learns from."""
    return np.asarray(egress_excess(features, history) >= EGRESS_GATE)


def egress_candidate(
    features: pd.DataFrame, history: History, knows_destinations: bool = True
) -> np.ndarray:
    """Windows the model may flag, if their score is beyond the threshold: the
    host sent at least twice its usual by one egress measure
    (:func:`above_usual`) and broke its own baseline record (a host not in the
    baseline: the site's), either

    * at night (``NIGHT_HOURS``, local): what it sent (in the window, or so far
      to one never-seen address) is more than the most it sent in one baseline
      window at this hour (or the hours either side); or
    * at any hour: what it has sent so far to one address no host of the site
      had used is more than the most it sent to such addresses in one baseline
      window, at least a quarter of what it sent in the window, and more than
      ``ONE_WAY_FACTOR`` times what that address sent back (one way).

    ``knows_destinations`` False (a model trained from feature files: no bytes
    to never-seen addresses are known): a record at this hour, at any hour.
    The test alone flags too much (on the labelled evaluation, 0-8 false
    alerts per 1,000 host-days): it says what could be an exfiltration, the
    forest's score says whether it is unusual enough."""
    if len(features) == 0:
        return np.zeros(0, dtype=bool)
    features = complete_features(features)
    hour = features["hour_of_week"].to_numpy(dtype=np.int64) % 24
    start, end = NIGHT_HOURS
    index = history.host_index(features["host"].to_numpy(dtype=str))
    # What went to one never-seen address counts from its first window on: a
    # 5 MB upload cut in two by a window boundary is still 5 MB.
    unseen = features[SITE_NOVELTY_FEATURE].to_numpy(dtype=np.float64)
    sent = np.maximum(features["bytes_out"].to_numpy(dtype=np.float64), unseen)
    # At night: more than the most it sent in one window at this hour, and
    # more than it sends in a busy window of any hour (95th percentile): a few
    # kilobytes more chatter at night is not a leak.
    busy = history.usual("bytes_out_any_hour", index, hour)[:, 1]
    record_at_hour = sent > np.maximum(history.most_at_hour(index, hour), busy)
    if not knows_destinations:
        return above_usual(features, history) & record_at_hour
    at_night = (hour >= start) | (hour < end)
    record_unseen = unseen_record(features, history)
    return above_usual(features, history) & ((at_night & record_at_hour) | record_unseen)


def unseen_record(features: pd.DataFrame, history: History) -> np.ndarray:
    """Windows in which what the host has sent so far to one address no host
    of the site had used is more than it ever sent to such addresses in one
    baseline window, at least a quarter of what it sent in the window beside
    the allowlisted destinations, and more than ``ONE_WAY_FACTOR`` times what
    that address sent back."""
    features = complete_features(features)
    index = history.host_index(features["host"].to_numpy(dtype=str))
    unseen = features[SITE_NOVELTY_FEATURE].to_numpy(dtype=np.float64)
    # At least a quarter of what it sent (a cloud upload that happens to share
    # its window with a visit to a new web site is not an upload to a
    # never-seen address; an upload to one that shares its window with a cloud
    # upload still is: half missed those on seeds 3, 4 and 6). Not counting
    # the sanctioned backup: 5-30 MB beside a 300-800 MB nightly backup were
    # missed (issue 20, item 7).
    out = features["bytes_out"].to_numpy(dtype=np.float64)
    if SANCTIONED_BYTES in features:
        out = out - features[SANCTIONED_BYTES].fillna(0).to_numpy(dtype=np.float64)
    record = (unseen > history.most(SITE_NOVELTY_FEATURE, index)) & (4 * unseen >= out)
    # One way: a web site no host had visited that took an upload also sent
    # its pages back; an exfiltration gets acknowledgements only.
    back = features[SITE_NOVELTY_RECEIVED].to_numpy(dtype=np.float64)
    return np.asarray(record & (unseen > ONE_WAY_FACTOR * back))
