"""The verdict on a scan: every window scored against the model, the
threshold at the policy's percentile, and which windows it flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ModelError
from .frames import window_minutes
from .novelty import known_pairs, known_peers, with_novelty

if TYPE_CHECKING:
    import pandas as pd

    from ...features.hosts import HostTraffic
    from ...policy import Policy
    from .estimator import EgressModel


@dataclass
class ModelVerdict:
    """Scores of every window of a scan and which ones the model flags."""

    features: pd.DataFrame  # with new_destinations against the baseline
    scores: np.ndarray
    percentiles: np.ndarray
    flagged: np.ndarray  # bool
    threshold: float
    # Windows that passed the pre-condition (egress_candidate): flagged are
    # those of them whose score is beyond the threshold.
    candidate: np.ndarray | None = None


def score_scan(
    model: EgressModel,
    features: pd.DataFrame,
    traffic: HostTraffic | None,
    policy: Policy,
    known: pd.MultiIndex | None = None,
) -> ModelVerdict:
    """Score every window; the threshold is the policy's ``[model] percentile``
    of the baseline scores."""
    if len(features) and window_minutes(features) != model.window_minutes_:
        raise ModelError(
            f"the model was trained on {model.window_minutes_}-minute windows, this scan uses "
            f"{window_minutes(features)}-minute ones: scan with --window "
            f"{model.window_minutes_} or retrain"
        )
    if traffic is not None and len(model.history_.known_peer_lo):
        known = known_pairs(model, traffic) if known is None else known
        features = with_novelty(
            features, traffic, policy, known=known, known_site=known_peers(model, traffic)
        )
    # else a model trained from feature files: it knows no destinations, and
    # calling every one of them new would flag everything.
    scores = model.score_samples(features)
    threshold = model.threshold_at(policy.model_percentile)
    candidate = model.candidates(features)
    flagged = (scores > threshold) & candidate
    return ModelVerdict(
        features, scores, model.percentile_of(scores), flagged, threshold, candidate
    )
