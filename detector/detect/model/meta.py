"""meta.json: what a model file says about itself, read as data an attacker
may have written. Its nesting is measured before the JSON parser can recurse,
and every key, type and range is checked before anything uses a value
(:func:`check_meta`): a file that passes holds exactly what :func:`save_model`
writes, in the types it writes them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .archive import Refusal
from .constants import QUANTILE_GRID

# The file format this version writes, and those it reads; each change and
# why: docs/model.md. Format 6 added devices.npz (the device baseline); a
# format 5 file is read as a model that knows no devices.
MODEL_FORMAT = 6
READ_FORMATS = (5, 6)
MODEL_KIND = "egress-detector-model"
# Policy settings the features and the model depend on: a model trained under
# different ones is refused. Rule thresholds and the model percentile (the
# threshold is recalibrated from the stored baseline scores) may change freely.
MODEL_POLICY_SECTIONS: tuple[str, ...] = (
    "site.timezone",
    "business_hours",
    "networks",
    "features",
)
# meta.json nests 4 levels (the policy's business hours' holidays); 32 leaves room.
MAX_DEPTH = 32
# and holds about 10,100 values (10,001 quantiles); the policy's networks and
# holidays may add some. Parsing costs at most about 150 bytes a value.
MAX_VALUES = 200_000

MEMBER = "meta.json"
_STRING = re.compile(rb'"(?:[^"\\]|\\[\s\S]?)*+(?:"|\Z)')  # to its end if never closed
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_VERSION = re.compile(r"[A-Za-z0-9.+!_-]{1,64}")
_HEX = re.compile(r"[0-9a-f]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def json_shape(data: bytes | bytearray) -> tuple[int, int]:
    """(how deep the brackets of a JSON text nest, how many values it holds:
    brackets opened and commas), strings left out: linear time, no recursion
    (an unclosed string runs to the end). What parsing it would cost, known
    before parsing: each value is a Python object."""
    skeleton = _STRING.sub(b"", bytes(data))
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    opens = (codes == ord("[")) | (codes == ord("{"))
    closes = (codes == ord("]")) | (codes == ord("}"))
    values = int(opens.sum() + (codes == ord(",")).sum())
    if not opens.any():
        return 0, values
    return int(np.cumsum(opens.astype(np.int64) - closes).max()), values


def nesting_depth(data: bytes | bytearray) -> int:
    """How deep the brackets of a JSON text nest (:func:`json_shape`)."""
    return json_shape(data)[0]


def parse_meta(data: bytes | bytearray, most_depth: int = MAX_DEPTH) -> Any:
    """meta.json's value; nested deeper than ``most_depth``, more values than
    ``MAX_VALUES``, not UTF-8, not JSON, a key twice or a NaN/Infinity: a
    Refusal."""
    depth, values = json_shape(data)
    if depth > most_depth:
        raise Refusal(
            MEMBER, f"nested {depth:,} levels deep (this version writes 4; at most {most_depth})"
        )
    if values > MAX_VALUES:
        raise Refusal(
            MEMBER, f"{values:,} values (this version writes about 10,100; at most {MAX_VALUES:,})"
        )
    try:
        text = bytes(data).decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_repeats, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise Refusal(MEMBER, "not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise Refusal(MEMBER, f"not valid JSON ({exc})") from None


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {_shown(key)} twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


# -- the schema: one check per value, each saying what it found -------------------------

Check = Callable[[Any, str], None]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(low: int, high: int) -> Check:
    def check(value: Any, at: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Refusal(MEMBER, f"{at} is {_kind(value)} ({_shown(value)}), not a whole number")
        if not low <= value <= high:
            raise Refusal(MEMBER, f"{at} is {_shown(value)}, not between {low:,} and {high:,}")

    return check


def number(low: float, high: float, *, above_low: bool = False) -> Check:
    def check(value: Any, at: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Refusal(MEMBER, f"{at} is {_kind(value)} ({_shown(value)}), not a number")
        ok = (low < value if above_low else low <= value) and value <= high
        if not (math.isfinite(value) and ok):
            side = "above" if above_low else "from"
            raise Refusal(
                MEMBER, f"{at} is {_shown(value)}, not a number {side} {low:g} to {high:g}"
            )

    return check


def text(pattern: re.Pattern[str] | None, longest: int = 1000) -> Check:
    def check(value: Any, at: str) -> None:
        if not isinstance(value, str):
            raise Refusal(MEMBER, f"{at} is {_kind(value)} ({_shown(value)}), not text")
        if len(value) > longest or (pattern is not None and not pattern.fullmatch(value)):
            raise Refusal(MEMBER, f"{at} is {_shown(value)}, not what this version writes there")

    return check


def optional(inner: Check) -> Check:
    def check(value: Any, at: str) -> None:
        if value is not None:
            inner(value, at)

    return check


def listing(item: Check, most: int) -> Check:
    def check(value: Any, at: str) -> None:
        if not isinstance(value, list):
            raise Refusal(MEMBER, f"{at} is {_kind(value)}, not a list")
        if len(value) > most:
            raise Refusal(MEMBER, f"{at} has {len(value):,} items, at most {most:,}")
        for i, each in enumerate(value):
            item(each, f"{at}[{i}]")

    return check


def anything(value: Any, at: str) -> None:
    """Any JSON value (its nesting is already bounded)."""


def mapping(fields: Mapping[str, Check]) -> Check:
    """Exactly these keys, each value passing its check."""

    def check(value: Any, at: str) -> None:
        where = f"{at}." if at else ""
        if not isinstance(value, dict):
            raise Refusal(MEMBER, f"{at or 'the top level'} is {_kind(value)}, not a mapping")
        unknown = [k for k in value if k not in fields]
        if unknown:
            raise Refusal(
                MEMBER, f"unknown key {_shown(where + unknown[0])} (this version does not write it)"
            )
        missing = [k for k in fields if k not in value]
        if missing:
            raise Refusal(MEMBER, f"missing key {where}{missing[0]}")
        for key, inner in fields.items():
            inner(value[key], where + key)

    return check


def quantiles(value: Any, at: str) -> None:
    listing(number(0.0, 1.0), len(QUANTILE_GRID))(value, at)
    if len(value) != len(QUANTILE_GRID):
        raise Refusal(MEMBER, f"{at} has {len(value):,} numbers, not {len(QUANTILE_GRID):,}")
    if any(b < a for a, b in zip(value, value[1:], strict=False)):
        raise Refusal(MEMBER, f"{at} are not in increasing order")


def window_minutes(value: Any, at: str) -> None:
    integer(1, 1440)(value, at)
    if 1440 % value:
        raise Refusal(MEMBER, f"{at} is {value}, which does not divide a day")


COUNT = integer(0, 10**12)
NS = integer(-(2**63), 2**63 - 1)


def _schema(file_format: int) -> Check:
    """meta.json's schema in ``file_format``."""
    devices = file_format >= 6
    training: dict[str, Check] = {
        "first_window_utc_ns": NS,
        "last_window_utc_ns": NS,
        "windows": COUNT,
        "hosts": COUNT,
        "host_days": COUNT,
        "known_destinations": COUNT,
        "window_minutes": window_minutes,
    }
    sums = {"history.npz": text(_SHA256), "forest.skops": text(_SHA256)}
    if devices:
        training["devices"] = COUNT
        sums["devices.npz"] = text(_SHA256)
    return mapping(
        {
            "kind": text(None, 64),
            "format": integer(0, 10**6),
            "features": listing(text(_NAME), 256),
            "model_columns": listing(text(_NAME), 256),
            "egress_detector_version": text(_VERSION),
            "sklearn_version": text(_VERSION),
            "numpy_version": text(_VERSION),
            "policy_fingerprint": text(_HEX),
            "policy_site": text(None, 1000),
            "policy_settings": mapping({key: anything for key in MODEL_POLICY_SECTIONS}),
            "params": mapping(
                {
                    "n_estimators": integer(1, 500),
                    "max_samples": integer(1, 10**9),
                    "percentile": number(0.0, 100.0, above_low=True),
                    "random_state": optional(integer(0, 2**32 - 1)),
                }
            ),
            "training": mapping(training),
            "threshold": number(0.0, 1.0),
            "calibration_host_days": COUNT,
            "baseline_quantiles": quantiles,
            "sha256": mapping(sums),
        }
    )


SCHEMAS = {file_format: _schema(file_format) for file_format in READ_FORMATS}
META = SCHEMAS[MODEL_FORMAT]


def check_meta(meta: Any) -> None:
    """Every key this version writes in the file's format (one of
    ``READ_FORMATS``: its ``format`` is checked first), no other, each of its
    type and range; a Refusal naming the first that is not."""
    SCHEMAS[meta["format"]](meta, "")
    training = meta["training"]
    if training["first_window_utc_ns"] > training["last_window_utc_ns"]:
        raise Refusal(MEMBER, "training.first_window_utc_ns is after last_window_utc_ns")
