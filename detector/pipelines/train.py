"""Training: baseline captures (or saved feature files) → a fitted EgressModel."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..capture.reading import ONE_THREAD, Reading
from ..detect.model import EgressModel, destinations_of, with_novelty
from ..errors import ModelError
from ..features.hosts import FEATURE_NAMES
from ..units import HOUR_NS

if TYPE_CHECKING:
    import pandas as pd

    from ..policy import Policy

FEATURE_SUFFIXES = (".parquet", ".pq", ".csv")


@dataclass
class Training:
    model: EgressModel
    features: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # things the administrator should know


def read_features(path: str | os.PathLike[str], policy: Policy) -> pd.DataFrame:
    """A feature file written by ``scan --features-out`` (Parquet or CSV)."""
    import pandas as pd

    name = os.fspath(path)
    try:
        csv = Path(name).suffix.lower() == ".csv"
        frame = pd.read_csv(name) if csv else pd.read_parquet(name)
    except (OSError, ValueError) as exc:
        raise ModelError(f"feature file {name}: cannot be read ({exc})") from None
    missing = [c for c in ("host", "window_start", "window_end", *FEATURE_NAMES) if c not in frame]
    if missing:
        raise ModelError(
            f"feature file {name}: lacks the columns {', '.join(missing)} (write it again "
            "with this version's scan --features-out)"
        )
    for column in ("window_start", "window_end"):
        times = pd.to_datetime(frame[column], utc=True)
        frame[column] = times.dt.tz_convert(policy.timezone)
    return frame


def train_model(
    paths: Iterable[str | os.PathLike[str]],
    policy: Policy,
    *,
    model: EgressModel | None = None,
    reading: Reading = ONE_THREAD,
) -> Training:
    """Fit ``model`` (default: ``EgressModel(percentile=policy.model_percentile)``)
    on baseline captures, read as one stream in the order given, and feature files.
    Destinations the baseline's hosts used, and the network cards it saw on
    isolated segments (the model's device baseline), are learned from captures only."""
    import pandas as pd

    from .devices import learned_cards
    from .scan import scan_captures

    names = [os.fspath(p) for p in paths]
    feature_files = [n for n in names if Path(n).suffix.lower() in FEATURE_SUFFIXES]
    captures = [n for n in names if n not in feature_files]
    parts: list[pd.DataFrame] = []
    destinations = None
    devices: list[str] = []
    notes: list[str] = []
    if captures:
        result = scan_captures(captures, policy, reading=reading)
        # A baseline's first day meets every destination for the first time.
        parts.append(
            with_novelty(
                result.features, result.traffic, policy, settle_ns=24 * HOUR_NS, baseline=True
            )
        )
        destinations = destinations_of(result.traffic)
        if result.link is not None:
            devices = learned_cards(result.link, policy)
    parts += [read_features(n, policy) for n in feature_files]
    if feature_files and not captures:
        notes.append(
            "feature files carry no addresses: the model does not know which destinations "
            "the baseline used, nor how much went to new ones (train from captures for that)"
        )
    features = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if len(features) < 2:
        raise ModelError(
            f"the baseline has {len(features)} host window(s): too little to learn from "
            "(give captures of several normal days)"
        )
    if model is None:
        model = EgressModel(percentile=policy.model_percentile)
    model.fit(features, destinations=destinations, devices=devices)
    days = model.n_host_days_ / max(model.n_hosts_, 1)
    if days < 7:
        notes.append(
            f"the baseline covers about {days:.1f} days per host: a week or more of normal "
            "traffic gives the model each weekday and hour"
        )
    return Training(model, features, notes)
