"""Helpers over host-window frames: the novelty columns filled in, local days,
UTC instants, the window length."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...units import DAY_NS, MINUTE_NS
from .constants import TRAFFIC_FEATURES

if TYPE_CHECKING:
    import pandas as pd

    from ...policy import Policy


def complete_features(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with the novelty columns (zeros where the traffic that gives
    them is not at hand, e.g. features read from a file)."""
    import pandas as pd

    missing = [n for n in TRAFFIC_FEATURES if n not in features or features[n].isna().any()]
    if not missing:
        return features
    zeros = pd.Series(0, index=features.index)
    return features.assign(**{
        n: features.get(n, zeros).fillna(0).to_numpy(dtype=np.int64) for n in missing
    })  # fmt: skip


def local_day(ts_ns: int, policy: Policy) -> str:
    """'Mon 2026-02-02': the site-local date of a UTC instant."""
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).astimezone(policy.zone)
    return f"{moment:%a %Y-%m-%d}"


def local_days(column: pd.Series) -> np.ndarray:
    """Local day number (days since 1970-01-01 on the site's calendar)."""
    import pandas as pd

    values = pd.DatetimeIndex(column)
    if values.tz is not None:
        values = values.tz_localize(None)  # wall time in the site's zone
    return np.asarray(values.as_unit("ns").asi8 // DAY_NS, dtype=np.int64)


def utc_ns(column: pd.Series) -> np.ndarray:
    import pandas as pd

    values = pd.DatetimeIndex(column)
    if values.tz is None:
        values = values.tz_localize("UTC")
    return np.asarray(values.tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)


def window_minutes(features: pd.DataFrame) -> int:
    """The window length of a features frame (all its windows have one length)."""
    first = features.iloc[:1]
    span = utc_ns(first["window_end"])[0] - utc_ns(first["window_start"])[0]
    return int(span // MINUTE_NS)


def window_keys(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return features["host"].to_numpy(dtype=str), utc_ns(features["window_start"])
