"""The model file: a zip of ``meta.json``, ``history.npz`` (plain arrays),
``forest.skops`` (skops, no pickle) and ``devices.npz`` (plain arrays; from
format 6), written and read without running code from it, and read as
something an attacker may have written: sizes capped before decompression
(archive), meta.json against its schema (meta), the history's and the
devices' arrays and the forest's trees checked before they are used
(history, devices, forest). Every refusal is one ModelError line naming the
file and the member."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ModelError
from ...features.hosts import FEATURE_NAMES
from .archive import (
    Refusal,
    ViewFile,
    check_entry,
    check_entry_count,
    open_inner,
    read_entry,
    read_npz,
    size_text,
)
from .constants import MODEL_COLUMNS
from .devices import DEVICE_ARRAYS, device_arrays, devices_from_arrays
from .estimator import EgressModel
from .forest import check_forest
from .history import History
from .meta import (
    MODEL_FORMAT,
    MODEL_KIND,
    MODEL_POLICY_SECTIONS,
    READ_FORMATS,
    check_meta,
    json_shape,
    parse_meta,
)

if TYPE_CHECKING:
    from ...policy import Policy

# Skops may rebuild only these types beyond its own safe defaults.
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
MEMBERS = ("meta.json", "history.npz", "forest.skops", "devices.npz")
# The members of each format this version reads (format 5: no device baseline).
FORMAT_MEMBERS: dict[int, tuple[str, ...]] = {5: MEMBERS[:3], 6: MEMBERS}
# The most each member may hold uncompressed, so that refusing a member (read
# in full and found wrong) stays within about 600 MB of memory: meta.json is
# about 250 kB; the forest of train's 200 trees of 2,048 samples about 13 MB
# (its trees average about 540 nodes; 4,095 each, impossible in practice,
# would be 72 MB); the history 32 bytes per known (host, destination) pair,
# so 128 MiB is some 4 million pairs; the device baseline 8 bytes per card,
# so 1 MiB is some 130,000 cards on isolated segments (a site's isolated
# segments hold tens to hundreds). A larger member is refused unread.
MEMBER_BYTES: dict[str, int] = {
    "meta.json": 4 << 20,
    "history.npz": 128 << 20,
    "forest.skops": 64 << 20,
    "devices.npz": 1 << 20,
}
MAX_FILE_BYTES = sum(MEMBER_BYTES.values()) + (1 << 20)
# skops writes 6 arrays per tree, and a schema.json of about 15 kB and 350
# values (brackets and commas) per tree, nested 13 levels: parsing it costs
# about 150 bytes a value, so these bound what a crafted one can cost.
SKOPS_FILES_PER_TREE = 8
SKOPS_SCHEMA_BYTES_PER_TREE = 64 << 10
SKOPS_VALUES_PER_TREE = 1_000
SKOPS_MAX_DEPTH = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


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
    """Write ``model`` as a zip of ``meta.json``, ``history.npz`` (plain arrays),
    ``forest.skops`` (skops, no pickle) and ``devices.npz`` (plain arrays),
    with each member's sha256 in the meta, to ``path`` itself: a file being
    made (:func:`save_model` makes one), whose ``name`` the error messages
    give (default: ``path``)."""
    import sklearn
    import skops.io as sio

    from ... import __version__

    model._check_fitted()
    history_bytes = io.BytesIO()
    np.savez(history_bytes, **model.history_.arrays())  # type: ignore[arg-type]
    devices = getattr(model, "devices_", np.empty(0, dtype="<u8"))
    devices_bytes = io.BytesIO()
    np.savez(devices_bytes, **device_arrays(devices))  # type: ignore[arg-type]
    members = {
        "history.npz": history_bytes.getvalue(),
        "forest.skops": sio.dumps(model.forest_),
        "devices.npz": devices_bytes.getvalue(),
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
            "devices": len(devices),
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


def load_model(
    path: str | os.PathLike[str], policy: Policy | None = None, *, sha256: str | None = None
) -> EgressModel:
    """Read a model file without executing anything from it, as something an
    attacker may have written; check (given ``sha256``) that it is the file an
    administrator pinned, then its members' sizes before decompressing them,
    meta.json against its schema, the checksums, versions and feature schema,
    (given ``policy``) that it was trained under the same site settings, and
    the history's arrays and every tree before anything uses them. Problems
    are ModelErrors of one line naming the file and, where there is one, the
    member."""
    name = os.fspath(path)
    try:
        return _load(name, policy, sha256)
    except ModelError as exc:
        raise ModelError(_one_line(str(exc))) from None


def _one_line(text: str) -> str:
    """``text`` with control characters (line breaks among them) escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _refused(name: str, refusal: Refusal) -> ModelError:
    return ModelError(f"model {name}: {refusal}; copy it again or {_retrain(name)}")


def _load(name: str, policy: Policy | None, pinned: str | None) -> EgressModel:
    try:
        file = open(name, "rb")  # noqa: SIM115 (closed below, also by the ZipFile)
    except FileNotFoundError:
        raise ModelError(f"model {name}: no such file") from None
    except OSError as exc:
        raise ModelError(f"model {name}: cannot read it ({exc.strerror or exc})") from None
    with file:
        size = os.fstat(file.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise ModelError(
                f"model {name}: {size_text(size)}, over the {size_text(MAX_FILE_BYTES)}"
                " a model file may be; not an egress-detector model file"
            )
        if pinned is not None:
            # The bytes the rest reads, from the same open file (not hashed when too
            # large to be a model).
            digest = hashlib.sha256()
            while chunk := file.read(1 << 20):
                digest.update(chunk)
            if digest.hexdigest() != pinned.lower():
                raise ModelError(
                    f"model {name}: its SHA-256 is {digest.hexdigest()}, not the "
                    f"pinned {pinned.lower()} (--model-sha256); not loaded"
                )
        try:
            check_entry_count(file, None, 16)
            archive = zipfile.ZipFile(file)
        except Refusal as refusal:
            raise ModelError(
                f"model {name}: not an egress-detector model file ({refusal.what}; "
                f"expected {', '.join(MEMBERS)})"
            ) from None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelError(f"model {name}: not an egress-detector model file ({exc})") from None
        with archive:
            try:
                return _read(name, archive, policy)
            except Refusal as refusal:
                raise _refused(name, refusal) from None


def _read(name: str, archive: zipfile.ZipFile, policy: Policy | None) -> EgressModel:
    infos = archive.infolist()
    held = sorted(info.filename for info in infos)
    if not any(held == sorted(members) for members in FORMAT_MEMBERS.values()):
        extra = next((n for n in held if n not in MEMBERS or held.count(n) > 1), None)
        raise ModelError(
            f"model {name}: not an egress-detector model file (holds "
            f"{', '.join(held) or 'nothing'}; expected {', '.join(MEMBERS)})"
            + (
                f"; {extra} {'twice' if extra in MEMBERS else 'is not one of them'}"
                if extra
                else ""
            )
        )
    info = {i.filename: i for i in infos}
    for member in held:  # none read before every size is known to be sane
        check_entry(info[member], member, MEMBER_BYTES[member])
    raw, _ = read_entry(archive, info["meta.json"], "meta.json", MEMBER_BYTES["meta.json"])
    meta = parse_meta(raw)
    if not isinstance(meta, dict) or meta.get("kind") != MODEL_KIND:
        raise ModelError(f"model {name}: meta.json is not an egress-detector model description")
    file_format = meta.get("format")
    if isinstance(file_format, bool) or file_format not in READ_FORMATS:
        shown = repr(file_format)
        shown = shown if len(shown) <= 20 else shown[:17] + "..."
        raise ModelError(
            f"model {name}: file format {shown}, this version reads formats "
            f"{', '.join(map(str, READ_FORMATS[:-1]))} and {READ_FORMATS[-1]}; {_retrain(name)}"
        )
    if held != sorted(FORMAT_MEMBERS[file_format]):
        raise ModelError(
            f"model {name}: not an egress-detector model file (a format {file_format} "
            f"file holds {', '.join(FORMAT_MEMBERS[file_format])}, this one "
            f"{', '.join(held)})"
        )
    check_meta(meta)
    _check_schema(name, meta)
    if policy is not None:
        _check_policy(name, meta, policy)
    history = _history(name, archive, info["history.npz"], meta)
    devices = np.empty(0, dtype="<u8")  # format 5: no device baseline
    if "devices.npz" in info:
        devices = _devices(name, archive, info["devices.npz"], meta)
    forest = _forest(name, archive, info["forest.skops"], meta)  # the costliest, last
    return _rebuild(meta, history, forest, devices)


def _member(
    name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, meta: Mapping[str, Any]
) -> bytearray:
    """A member's bytes, once they match the checksum meta.json records. The
    checksums catch a file damaged or changed by mistake after training, not
    someone who edits meta.json too (that is what --model-sha256 is for)."""
    member = info.filename
    data, digest = read_entry(archive, info, member, MEMBER_BYTES[member])
    if digest != meta["sha256"][member]:
        raise ModelError(
            f"model {name}: {member} does not match its recorded checksum (the file was "
            f"changed or damaged after training); copy it again or {_retrain(name)}"
        )
    return data


def _history(
    name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, meta: Mapping[str, Any]
) -> History:
    data = _member(name, archive, info, meta)
    arrays = read_npz(
        data, "history.npz", History.__dataclass_fields__, MEMBER_BYTES["history.npz"]
    )
    try:
        history = History.from_arrays(arrays)
    except Exception as exc:  # ValueError says which array; anything else is a surprise
        raise Refusal("history.npz", str(exc)[:200]) from None
    training = meta["training"]
    if len(history.hosts) != training["hosts"]:
        raise Refusal(
            "history.npz", f"{len(history.hosts):,} hosts; meta.json says {training['hosts']:,}"
        )
    if len(history.known_peer_lo) != training["known_destinations"]:
        raise Refusal(
            "history.npz",
            f"{len(history.known_peer_lo):,} known destinations; "
            f"meta.json says {training['known_destinations']:,}",
        )
    return history


def _devices(
    name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, meta: Mapping[str, Any]
) -> np.ndarray:
    data = _member(name, archive, info, meta)
    arrays = read_npz(data, "devices.npz", DEVICE_ARRAYS, MEMBER_BYTES["devices.npz"])
    try:
        devices = devices_from_arrays(arrays)
    except Exception as exc:  # ValueError says what; anything else is a surprise
        raise Refusal("devices.npz", str(exc)[:200]) from None
    if len(devices) != meta["training"]["devices"]:
        raise Refusal(
            "devices.npz",
            f"{len(devices):,} devices; meta.json says {meta['training']['devices']:,}",
        )
    return devices


def _check_skops(data: bytearray, trees: int) -> None:
    """forest.skops's zip and schema.json, before skops parses them: as many
    files, bytes, values and levels as a forest of ``trees`` trees can have."""
    most = SKOPS_FILES_PER_TREE * trees + 64
    with open_inner(data, "forest.skops", MEMBER_BYTES["forest.skops"], most) as inner:
        schema = next((i for i in inner.infolist() if i.filename == "schema.json"), None)
        if schema is None:
            raise Refusal("forest.skops", "has no schema.json: not a skops file")
        most_bytes = SKOPS_SCHEMA_BYTES_PER_TREE * trees + (1 << 20)
        if schema.file_size > most_bytes:
            raise Refusal(
                "forest.skops",
                f"schema.json is {size_text(schema.file_size)}; a "
                f"forest of {trees} trees needs about {size_text(15_000 * trees)}, "
                f"at most {size_text(most_bytes)}",
            )
        text, _ = read_entry(inner, schema, "forest.skops", most_bytes)
        depth, values = json_shape(text)
        if depth > SKOPS_MAX_DEPTH:
            raise Refusal(
                "forest.skops",
                f"schema.json nests {depth:,} levels deep (a forest "
                f"needs about 13; at most {SKOPS_MAX_DEPTH})",
            )
        most_values = SKOPS_VALUES_PER_TREE * trees + 10_000
        if values > most_values:
            raise Refusal(
                "forest.skops",
                f"schema.json holds {values:,} values; a forest of "
                f"{trees} trees about {350 * trees:,}, at most {most_values:,}",
            )


def _forest(
    name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, meta: Mapping[str, Any]
) -> Any:
    data = _member(name, archive, info, meta)
    _check_skops(data, meta["params"]["n_estimators"])

    import skops.io as sio  # only now: refusing the zip above needs neither
    from sklearn.ensemble import IsolationForest

    # What scikit-learn warns while skops rebuilds the forest (another patch
    # version) is said only for a forest that passes every check: a refusal
    # stays one line.
    with warnings.catch_warnings(record=True) as said:
        try:
            untrusted = [
                t
                for t in sio.get_untrusted_types(file=ViewFile(data))  # type: ignore[arg-type]
                if t not in TRUSTED_TYPES
            ]
            if untrusted:
                raise ModelError(
                    f"model {name}: forest.skops holds types that are not trusted "
                    f"({', '.join(untrusted)}); refusing to load it"
                )
            forest = sio.load(ViewFile(data), trusted=list(TRUSTED_TYPES))  # type: ignore[arg-type]
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"model {name}: forest.skops cannot be read ({type(exc).__name__}: "
                f"{str(exc)[:200]}); {_retrain(name)}"
            ) from None
        if type(forest) is not IsolationForest:
            raise ModelError(
                f"model {name}: forest.skops holds a {type(forest).__name__}, not an "
                "IsolationForest"
            )
        try:
            check_forest(forest, meta["params"])
        except Refusal:
            raise
        except Exception as exc:  # an attribute of a type no check expected
            raise Refusal(
                "forest.skops",
                f"not a forest this version writes ({type(exc).__name__}: {str(exc)[:100]})",
            ) from None
    for warning in said:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return forest


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
        raise ModelError(
            f"model {name}: trained on other features than this version computes "
            f"({what}); {_retrain(name)}"
        )
    if meta.get("model_columns") != list(MODEL_COLUMNS):
        raise ModelError(
            f"model {name}: made with another feature transform than this version's; "
            f"{_retrain(name)}"
        )
    theirs = str(meta.get("sklearn_version", "?"))
    if theirs.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            f"model {name}: trained with scikit-learn {theirs}, this is "
            f"{sklearn.__version__}; {_retrain(name)}"
        )


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


def _rebuild(
    meta: Mapping[str, Any], history: History, forest: Any, devices: np.ndarray
) -> EgressModel:
    """The model of a file every check passed."""
    model = EgressModel(**meta["params"])
    model.forest_ = forest
    model.history_ = history
    model.devices_ = devices
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
