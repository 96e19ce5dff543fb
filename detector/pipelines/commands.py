"""The scan and train commands' work, from their options to their files: each
output is checked before the captures are read (minutes, maybe) and replaces
an earlier file only when complete (detector.outputs)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..capture.reading import AS_FIT, Reading
from ..outputs import replacing

if TYPE_CHECKING:
    import pandas as pd

    from ..alerts.history import AlertHistory
    from ..detect.model import EgressModel
    from ..policy import Policy
    from ..policy.suppress import Suppressed
    from .scan import ScanResult
    from .train import Training


def scan_to_files(
    captures: Sequence[str],
    policy: Policy,
    *,
    alerts_format: str,
    alerts_out: str | None,
    features_out: str | None = None,
    parquet_dir: str | None = None,
    reading: Reading = AS_FIT,
    window_minutes: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    model: EgressModel | None = None,
    created_ns: int | None = None,
    suppressed_out: list[Suppressed] | None = None,
    history: AlertHistory | None = None,
) -> ScanResult:
    """Scan ``captures`` (read as ``reading`` says, in this process, or on a Dask cluster given
    ``workers`` > 1 or a ``scheduler``) and write the alerts as
    ``alerts_format`` to ``alerts_out`` (stdout when None), the host-window
    features to ``features_out`` (CSV for a .csv name, else Parquet) and the
    flows and features to the Parquet dataset at ``parquet_dir``.

    Alerts the policy's ``[[suppress]]`` tables accept are not written: they
    go to ``suppressed_out``, and the result's ``alerts`` are the others.
    ``created_ns``: the documents' ECS ``event.created`` (now when None).
    ``history``: earlier alerts; those written that recur are marked so."""
    from dataclasses import replace

    from ..alerts import write_alerts
    from ..alerts.record import Observer
    from ..policy.suppress import split_suppressed
    from .scan import scan_captures

    with (
        replacing(alerts_out, fsync=False) as alerts_path,
        replacing(features_out, fsync=False) as features_path,
    ):
        scan = scan_captures
        if scheduler or (workers or 1) > 1:
            from functools import partial

            from ..distributed import scan_captures_distributed

            # Flows and activity stay on the workers unless the dataset needs them.
            scan = partial(scan_captures_distributed, workers=workers, scheduler=scheduler,
                           tables=bool(parquet_dir))  # fmt: skip
        result = scan(captures, policy, reading=reading, window_minutes=window_minutes, model=model)
        kept, held = split_suppressed(result.alerts, policy.suppressions, policy.zone)
        if history is not None:
            kept = history.mark(kept, policy.zone, policy.recurring_days)
        result = replace(result, alerts=kept)
        if suppressed_out is not None:
            suppressed_out.extend(held)
        write_alerts(result.alerts, alerts_format, alerts_path, policy.zone, policy.site_name,
                     created_ns=created_ns, observer=Observer(policy.sensor))  # fmt: skip
        if features_out and features_path:
            _write_features(result.features, features_path, csv=_is_csv(features_out))
    if parquet_dir:
        from ..distributed.dataset import write_dataset

        write_dataset(result, policy, parquet_dir)
    return result


def _is_csv(name: str) -> bool:
    return Path(name).suffix.lower() == ".csv"


def _write_features(features: pd.DataFrame, path: str, *, csv: bool) -> None:
    if csv:
        features.to_csv(path, index=False)
    else:
        features.to_parquet(path, index=False, compression="zstd")


def baseline_captures(baseline: Sequence[str]) -> list[str]:
    """The captures among a baseline's files (the others are feature files)."""
    from .train import FEATURE_SUFFIXES

    return [p for p in baseline if Path(p).suffix.lower() not in FEATURE_SUFFIXES]


def train_to_file(
    baseline: Sequence[str],
    output: str | os.PathLike[str],
    policy: Policy,
    *,
    seed: int = 0,
    reading: Reading = AS_FIT,
) -> Training:
    """Learn the site's normal egress from ``baseline`` (captures and feature
    files: :func:`detector.pipelines.train.train_model`) into a forest seeded with
    ``seed``, and write the model to ``output``."""
    from ..detect.model import EgressModel
    from ..detect.model.file import write_model
    from .train import train_model

    with replacing(output) as path:  # checked before training
        training = train_model(
            baseline,
            policy,
            model=EgressModel(percentile=policy.model_percentile, random_state=seed),
            reading=reading,
        )
        write_model(training.model, path, policy, name=os.fspath(output))
    return training
