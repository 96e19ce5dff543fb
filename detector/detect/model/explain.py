"""Explanations: the measures that moved most against a host's (else the
site's) baseline, in plain words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...features.hosts import FEATURE_LABELS
from ...units import human_bytes
from .constants import (
    COUNT_FEATURES,
    EGRESS_GATE,
    NOVELTY_FEATURE,
    NOVELTY_FEATURES,
    SITE_NOVELTY_FEATURE,
    SITE_NOVELTY_RECEIVED,
)
from .frames import complete_features

if TYPE_CHECKING:
    import pandas as pd

    from .history import History

LABELS: dict[str, str] = {
    **FEATURE_LABELS,
    NOVELTY_FEATURE: "sent to outside addresses it had never used",
    SITE_NOVELTY_FEATURE: "sent to outside addresses no host of the site had used",
}
BYTE_FEATURES = ("bytes_out", "bytes_in", "largest_upload", "internal_bytes", *NOVELTY_FEATURES)


def explain_windows(
    history: History,
    features: pd.DataFrame,
    *,
    upload_minutes: np.ndarray | None = None,
    top: int = 3,
) -> list[str]:
    """For each window, the features that moved most against this host's
    (else the site's) baseline in ``history``, in plain words (see
    :meth:`EgressModel.explain`)."""
    features = complete_features(features)
    index = history.host_index(features["host"].to_numpy(dtype=str))
    hour = features["hour_of_week"].to_numpy(dtype=np.int64) % 24
    values = {name: features[name].to_numpy(dtype=np.float64) for name in COUNT_FEATURES}
    off_hours = features["off_hours"].to_numpy(dtype=np.int64)
    received = features[SITE_NOVELTY_RECEIVED].to_numpy(dtype=np.float64)
    moved: dict[str, np.ndarray] = {}
    usual: dict[str, np.ndarray] = {}
    for name in COUNT_FEATURES:
        usual[name] = history.usual(name, index, hour)
        moved[name] = np.log1p(values[name]) - np.log1p(usual[name][:, 1])
    texts = []
    for i in range(len(features)):
        reasons: list[str] = []
        if index[i] < 0:
            reasons.append("a host not seen in the baseline")
        ranked = sorted(COUNT_FEATURES, key=lambda name: -moved[name][i])
        chosen = [n for n in ranked[:top] if moved[n][i] >= EGRESS_GATE]
        # Most moved first, but the total before what it went to.
        if SITE_NOVELTY_FEATURE in chosen and NOVELTY_FEATURE in chosen:
            # New to the site says more than new to the host: one phrase.
            chosen.remove(NOVELTY_FEATURE)
        chosen.sort(key=lambda n: (n != "bytes_out", n not in NOVELTY_FEATURES))
        for name in chosen:
            count = int(values["new_destinations"][i])
            reasons.append(_phrase(name, values[name][i], usual[name][i], count))
            if name == SITE_NOVELTY_FEATURE:
                # One way or both: what the forest weighs for such bytes.
                reasons[-1] += f" ({human_bytes(float(received[i]))} back)"
            if name == "bytes_out" and upload_minutes is not None and upload_minutes[i] > 0:
                minutes = int(upload_minutes[i])
                rate = values["bytes_out"][i] * 8 / (minutes * 60) / 1e6
                reasons.append(f"{minutes}-minute transfer at {rate:.1f} Mbit/s")
        if not reasons or (len(reasons) == 1 and index[i] < 0):
            reasons.append("an unusual mix of traffic for this host and hour")
        if off_hours[i]:
            reasons.append("outside business hours")
        texts.append("; ".join(reasons))
    return texts


def _phrase(name: str, value: float, usual: np.ndarray, new_count: int) -> str:
    """One reason in plain words, e.g. 'bytes out 212.0 MB vs usual 0–3.0 MB at
    this hour'."""
    if name == "new_destinations":
        n = int(value)
        return f"{n} new outside destination{'s' if n != 1 else ''}"
    if name == NOVELTY_FEATURE:
        to = (
            f"{new_count} new outside destination{'s' if new_count != 1 else ''}"
            if new_count
            else "outside destinations it had never used"
        )
        return f"{human_bytes(value)} to {to}"
    if name == SITE_NOVELTY_FEATURE:
        return f"{human_bytes(value)} to an outside address no host of the site had used"
    label = LABELS.get(name, name)
    fmt = human_bytes if name in BYTE_FEATURES else (lambda v: f"{v:,.0f}")
    at_hour = " at this hour" if name == "bytes_out" else ""
    if usual[1] <= 0:
        return f"{label} {fmt(value)} vs usually none{at_hour}"
    return f"{label} {fmt(value)} vs usual {_range(usual, fmt)}{at_hour}"


def _range(usual: np.ndarray, fmt: Any) -> str:
    low, high = str(fmt(float(usual[0]))), str(fmt(float(usual[1])))
    if low == high:
        return low
    if float(usual[0]) == 0:
        return f"0–{high}"
    # '0.1–3.0 MB' rather than '0.1 MB–3.0 MB' when the units agree
    low_parts, high_parts = low.split(" "), high.split(" ")
    if len(low_parts) == 2 and len(high_parts) == 2 and low_parts[1] == high_parts[1]:
        return f"{low_parts[0]}–{high}"
    return f"{low}–{high}"
