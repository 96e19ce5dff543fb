"""The transform: a host window → the columns the forest sees
(``MODEL_COLUMNS``), against the host's history."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import MODEL_COLUMNS, SITE_NOVELTY_FEATURE, SITE_NOVELTY_RECEIVED
from .frames import complete_features

if TYPE_CHECKING:
    import pandas as pd

    from .history import History


def model_matrix(features: pd.DataFrame, history: History) -> np.ndarray:
    """FEATURE_NAMES → the model's matrix (columns ``MODEL_COLUMNS``)."""
    features = complete_features(features)
    n = len(features)
    hod = np.mod(features["hour_of_week"].to_numpy(dtype=np.int64), 24)
    index = history.host_index(features["host"].to_numpy(dtype=str))
    columns = []
    for name in ("bytes_out", SITE_NOVELTY_FEATURE):
        # Bytes out against this hour's usual; bytes to never-seen addresses
        # against the host's usual such bytes (any hour: most windows send none).
        usual = history.usual(name, index, hod)[:, 1]
        excess = np.log1p(features[name].to_numpy(dtype=np.float64)) - np.log1p(usual)
        # Sending less than usual is not egress: only the excess may isolate a window.
        columns.append(np.maximum(excess, 0.0))
    columns.append(np.log1p(features["upload_download_ratio"].to_numpy(dtype=np.float64)))
    columns.append(features["off_hours"].to_numpy(dtype=np.float64))
    columns.append(one_way(features))
    matrix = np.column_stack(columns) if n else np.zeros((0, len(MODEL_COLUMNS)))
    return np.asarray(matrix, dtype=np.float64)


def one_way(features: pd.DataFrame) -> np.ndarray:
    """log1p(sent / received) between the host and the never-seen address it
    sent most to (0 where it sent to none): about 0 for a web site that took
    an upload and answered with pages, log(51) for 50 bytes sent per byte
    received."""
    sent = features[SITE_NOVELTY_FEATURE].to_numpy(dtype=np.float64)
    received = features[SITE_NOVELTY_RECEIVED].to_numpy(dtype=np.float64)
    return np.where(sent > 0, np.log1p(sent / np.maximum(received, 1.0)), 0.0)


def sends_outside(features: pd.DataFrame) -> np.ndarray:
    """Windows in which the host sent at least one packet to an outside address:
    the only ones the model learns from and scores."""
    return np.asarray(features["packets_out"].to_numpy() > 0)
