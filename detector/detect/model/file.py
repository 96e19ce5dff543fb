"""The model file: a zip of ``meta.json``, ``history.npz`` (plain arrays) and
``forest.skops`` (skops, no pickle), written and read without running code
from it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ModelError
from ...features.hosts import FEATURE_NAMES
from .constants import MODEL_COLUMNS
from .estimator import EgressModel
from .history import History

if TYPE_CHECKING:
    from ...policy import Policy

# The file format this version writes and reads; each change and why: docs/model.md.
MODEL_FORMAT = 5
MODEL_KIND = "egress-detector-model"
# Skops may rebuild only these types beyond its own safe defaults.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
# Policy settings the features and the model depend on: a model trained under
# different ones is refused. Rule thresholds and the model percentile (the
# threshold is recalibrated from the stored baseline scores) may change freely.
MODEL_POLICY_SECTIONS: tuple[str, ...] = (
    "site.timezone",
    "business_hours",
    "networks",
    "features",
)
MEMBERS = ("meta.json", "history.npz", "forest.skops")
MAX_MEMBER_BYTES = 1 << 30


def _retrain(path: str | os.PathLike[str]) -> str:
    return f"retrain: egress-detector train --policy POLICY -o {os.fspath(path)} BASELINE..."


def _policy_sections(settings: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in MODEL_POLICY_SECTIONS:
        section, _, item = key.partition(".")
        value = settings.get(section, {})
        out[key] = value.get(item) if item else value
    return out


def save_model(model: EgressModel, path: str | os.PathLike[str], policy: Policy) -> None:
    """Write ``model`` to ``path`` (:func:`write_model`), replacing an earlier
    file only when complete and on disk."""
    from ...outputs import OutputError, replacing

    target = os.fspath(path)
    try:
        with replacing(target) as partial:
            write_model(model, partial, policy, name=target)
    except OutputError as exc:
        raise ModelError(f"cannot write the model to {target}: {exc.reason}") from None
    except OSError as exc:
        raise ModelError(f"cannot write the model to {target}: {exc.strerror or exc}") from None


def write_model(
    model: EgressModel, path: str | os.PathLike[str], policy: Policy, *, name: str | None = None
) -> None:
    """Write ``model`` as a zip of ``meta.json``, ``history.npz`` (plain arrays)
    and ``forest.skops`` (skops, no pickle), with each member's sha256 in the
    meta, to ``path`` itself: a file being made (:func:`save_model` makes one),
    whose ``name`` the error messages give (default: ``path``)."""
    import sklearn
    import skops.io as sio

    from ... import __version__

    model._check_fitted()
    history_bytes = io.BytesIO()
    np.savez(history_bytes, **model.history_.arrays())  # type: ignore[arg-type]
    members = {
        "history.npz": history_bytes.getvalue(),
        "forest.skops": sio.dumps(model.forest_),
    }
    meta = {
        "kind": MODEL_KIND,
        "format": MODEL_FORMAT,
        "features": list(FEATURE_NAMES),
        "model_columns": list(MODEL_COLUMNS),
        "egress_detector_version": __version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "policy_fingerprint": policy.fingerprint(),
        "policy_site": policy.site_name,
        "policy_settings": _policy_sections(policy.settings()),
        "params": model.get_params(),
        "training": {
            "first_window_utc_ns": model.span_[0],
            "last_window_utc_ns": model.span_[1],
            "windows": model.n_windows_,
            "hosts": model.n_hosts_,
            "host_days": model.n_host_days_,
            "known_destinations": len(model.history_.known_peer_lo),
            "window_minutes": model.window_minutes_,
        },
        "threshold": model.threshold_,
        "calibration_host_days": model.n_calibration_days_,
        "baseline_quantiles": [float(v) for v in model.baseline_quantiles_],
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("meta.json", json.dumps(meta, indent=1))
            for member, data in members.items():
                archive.writestr(member, data)
    except OSError as exc:
        shown = name or os.fspath(path)
        raise ModelError(f"cannot write the model to {shown}: {exc.strerror or exc}") from None


def load_model(path: str | os.PathLike[str], policy: Policy | None = None) -> EgressModel:
    """Read a model file without executing anything from it; check its
    checksums, versions, feature schema and (given ``policy``) that it was
    trained under the same site settings. Problems are one-line ModelErrors."""
    name = os.fspath(path)
    try:
        archive = zipfile.ZipFile(name)
    except FileNotFoundError:
        raise ModelError(f"model {name}: no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"model {name}: not an egress-detector model file ({exc})") from None
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        if sorted(infos) != sorted(MEMBERS):
            raise ModelError(
                f"model {name}: not an egress-detector model file (holds "
                f"{', '.join(sorted(infos)) or 'nothing'}; expected {', '.join(MEMBERS)})"
            )
        for info in infos.values():
            if info.file_size > MAX_MEMBER_BYTES:
                raise ModelError(f"model {name}: {info.filename} is implausibly large")
        try:
            data = {member: archive.read(member) for member in MEMBERS}
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelError(f"model {name}: damaged ({exc}); copy it again or "
                             f"{_retrain(name)}") from None  # fmt: skip
    try:
        meta = json.loads(data["meta.json"])
        if not isinstance(meta, dict) or meta.get("kind") != MODEL_KIND:
            raise ValueError("not a model")
    except ValueError:
        raise ModelError(f"model {name}: meta.json is not an egress-detector model "
                         "description") from None  # fmt: skip
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"model {name}: file format {meta.get('format')!r}, this version "
                         f"reads format {MODEL_FORMAT}; {_retrain(name)}")  # fmt: skip
    for member in MEMBERS[1:]:
        expected = meta.get("sha256", {}).get(member)
        if hashlib.sha256(data[member]).hexdigest() != expected:
            raise ModelError(
                f"model {name}: {member} does not match its recorded checksum (the file was "
                f"changed or damaged after training); copy it again or {_retrain(name)}"
            )
    _check_schema(name, meta)
    if policy is not None:
        _check_policy(name, meta, policy)
    return _rebuild(name, meta, data)


def _check_schema(name: str, meta: Mapping[str, Any]) -> None:
    import sklearn

    if meta.get("features") != list(FEATURE_NAMES):
        theirs = meta.get("features") or []
        gone = [f for f in FEATURE_NAMES if f not in theirs]
        extra = [f for f in theirs if f not in FEATURE_NAMES]
        what = "; ".join(
            part
            for part in (
                f"missing {', '.join(gone)}" if gone else "",
                f"unknown {', '.join(extra)}" if extra else "",
                "same features in another order" if not gone and not extra else "",
            )
            if part
        )
        raise ModelError(f"model {name}: trained on other features than this version computes "
                         f"({what}); {_retrain(name)}")  # fmt: skip
    if meta.get("model_columns") != list(MODEL_COLUMNS):
        raise ModelError(f"model {name}: made with another feature transform than this version's; "
                         f"{_retrain(name)}")  # fmt: skip
    theirs = str(meta.get("sklearn_version", "?"))
    if theirs.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(f"model {name}: trained with scikit-learn {theirs}, this is "
                         f"{sklearn.__version__}; {_retrain(name)}")  # fmt: skip


def _check_policy(name: str, meta: Mapping[str, Any], policy: Policy) -> None:
    ours = _policy_sections(policy.settings())
    theirs = meta.get("policy_settings", {})
    differ = [key for key in MODEL_POLICY_SECTIONS if theirs.get(key) != ours[key]]
    if differ:
        raise ModelError(
            f"model {name}: trained under another site policy (fingerprint "
            f"{str(meta.get('policy_fingerprint', '?'))[:12]}, this one "
            f"{policy.fingerprint()[:12]}): {', '.join(differ)} differ; "
            f"{_retrain(name).replace('POLICY', policy.source or 'POLICY')}"
        )


def _rebuild(name: str, meta: Mapping[str, Any], data: Mapping[str, bytes]) -> EgressModel:
    import skops.io as sio
    from sklearn.ensemble import IsolationForest

    try:
        untrusted = [t for t in sio.get_untrusted_types(data=data["forest.skops"])
                     if t not in TRUSTED_TYPES]  # fmt: skip
        if untrusted:
            raise ModelError(f"model {name}: forest.skops holds types that are not trusted "
                             f"({', '.join(untrusted)}); refusing to load it")  # fmt: skip
        forest = sio.loads(data["forest.skops"], trusted=list(TRUSTED_TYPES))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model {name}: forest.skops cannot be read ({type(exc).__name__}: "
                         f"{exc}); {_retrain(name)}") from None  # fmt: skip
    if not isinstance(forest, IsolationForest):
        raise ModelError(f"model {name}: forest.skops holds a {type(forest).__name__}, "
                         "not an IsolationForest")  # fmt: skip
    try:
        with np.load(io.BytesIO(data["history.npz"]), allow_pickle=False) as arrays:
            history = History(**{key: arrays[key] for key in History.__dataclass_fields__})
    except (KeyError, ValueError, OSError, TypeError) as exc:
        raise ModelError(f"model {name}: history.npz is not what this version "
                         f"writes ({exc}); {_retrain(name)}") from None  # fmt: skip
    params = dict(meta.get("params", {}))
    model = EgressModel(**params)
    model.forest_ = forest
    model.history_ = history
    model.baseline_quantiles_ = np.asarray(meta["baseline_quantiles"], dtype=np.float64)
    model.n_calibration_days_ = int(meta["calibration_host_days"])
    model.threshold_ = float(meta["threshold"])
    training = meta["training"]
    model.n_windows_ = int(training["windows"])
    model.n_hosts_ = int(training["hosts"])
    model.n_host_days_ = int(training["host_days"])
    model.span_ = (int(training["first_window_utc_ns"]), int(training["last_window_utc_ns"]))
    model.window_minutes_ = int(training["window_minutes"])
    model.meta_ = dict(meta)
    return model
