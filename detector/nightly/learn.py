"""``nightly --learn``: the model's baseline follows the site, from clean days.

After each finished day, the day's host windows that no alert touched (no
alert of that host, of any rule or the model, overlaps the window) are kept
beside the state, with the (host, outside address) pairs of the day that no
alert named. Once at least ``MIN_DAYS`` days are kept, the model is fitted
again on the last ``LEARN_DAYS`` of them (the destinations it knew are kept),
with the parameters of the model given, and written over ``--model``
atomically. A window that raised an alert is never learned from.

Each day's files are written before the day is committed and are the same
bytes when a day is redone; the refit after the commit depends only on those
files, so a run killed between the commit and the new model redoes the refit
and gets the same model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..alerts.record import Alert
from ..networks import address_text
from ..outputs import replacing

if TYPE_CHECKING:
    import pandas as pd

    from ..detect.model import EgressModel
    from ..pipelines.scan import ScanResult
    from ..policy import Policy

LEARN_DAYS = 28  # the baseline: the last four weeks of clean days
MIN_DAYS = 7  # a week: every weekday and hour before the model is replaced


def learned_dir(state_path: str) -> Path:
    return Path(f"{state_path}.learned")


def keep_clean_day(
    folder: Path,
    day: dt.date,
    scan: ScanResult,
    policy: Policy,
    model: EgressModel,
    start_ns: int,
    end_ns: int,
) -> int:
    """Write the day's clean windows and destinations; returns the windows kept."""
    import pandas as pd

    from ..detect.model import destinations_of, known_pairs, known_peers, with_novelty

    features = scan.features
    if len(features) and len(model.history_.known_peer_lo):
        # As the scan scored them: novelty against what the model knows.
        features = with_novelty(
            features,
            scan.traffic,
            policy,
            known=known_pairs(model, scan.traffic),
            known_site=known_peers(model, scan.traffic),
        )
    clean = features[clean_mask(features, scan.alerts, start_ns, end_ns)]
    pairs = destinations_of(scan.traffic)
    named = {(a.source_ip, a.destination_ip) for a in scan.alerts if a.destination_ip}
    if len(pairs) and named:
        texts = [
            (address_text(int(h), int(lo)), address_text(int(ph), int(pl)))
            for h, lo, ph, pl in pairs[["host_hi", "host_lo", "peer_hi", "peer_lo"]].itertuples(
                index=False
            )
        ]
        pairs = pairs[np.array([t not in named for t in texts], dtype=bool)]
    folder.mkdir(parents=True, exist_ok=True)
    _write_parquet(clean.reset_index(drop=True), folder / f"{day}.windows.parquet")
    _write_parquet(pd.DataFrame(pairs).reset_index(drop=True), folder / f"{day}.pairs.parquet")
    return len(clean)


def clean_mask(features: pd.DataFrame, alerts: Sequence[Alert], start_ns: int, end_ns: int):  # type: ignore[no-untyped-def]
    """Windows that start within the day and that no alert of their host overlaps."""
    from ..detect.model.frames import utc_ns

    starts = utc_ns(features["window_start"])
    ends = utc_ns(features["window_end"])
    hosts = features["host"].to_numpy(dtype=str)
    keep = (starts >= start_ns) & (starts < end_ns)
    for alert in alerts:
        keep &= ~((hosts == alert.source_ip) & (starts <= alert.end_ns) & (ends > alert.start_ns))
    return keep


def refit(
    folder: Path, upto: dt.date, model: EgressModel, policy: Policy, path: str
) -> EgressModel | None:
    """Fit the model again on the last LEARN_DAYS kept days up to ``upto`` and
    write it to ``path``; None (and nothing written) with fewer than MIN_DAYS."""
    import pandas as pd

    from ..detect.model import EgressModel, save_model

    days = sorted(
        p.name.removesuffix(".windows.parquet")
        for p in folder.glob("*.windows.parquet")
        if p.name.removesuffix(".windows.parquet") <= str(upto)
    )[-LEARN_DAYS:]
    if len(days) < MIN_DAYS:
        return None
    features = pd.concat(
        [pd.read_parquet(folder / f"{d}.windows.parquet") for d in days], ignore_index=True
    )
    history = model.history_
    known = pd.DataFrame({
        "host_hi": history.known_host_hi, "host_lo": history.known_host_lo,
        "peer_hi": history.known_peer_hi, "peer_lo": history.known_peer_lo,
    })  # fmt: skip
    pairs = pd.concat(
        [known, *(pd.read_parquet(folder / f"{d}.pairs.parquet") for d in days)],
        ignore_index=True,
    ).drop_duplicates(ignore_index=True)
    for column in pairs.columns:
        pairs[column] = pairs[column].astype(np.uint64)
    # In one order whatever model the refit started from (a redone refit starts
    # from the model it wrote before it was killed, which knows the same pairs).
    pairs = pairs.sort_values(list(pairs.columns), ignore_index=True)
    # The cards of the model's baseline stay known (the nightly's own are in its state).
    fresh = EgressModel(**model.get_params()).fit(
        features, destinations=pairs, devices=model.known_devices()
    )
    save_model(fresh, path, policy)
    return fresh


def _write_parquet(frame: pd.DataFrame, target: Path) -> None:
    with replacing(target, mode=0o600) as path:
        frame.to_parquet(path, index=False)
