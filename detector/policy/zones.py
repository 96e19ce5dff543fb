"""Time zones: the site's UTC offset for every instant, and this machine's zone.

Business hours are always judged in the site's own zone: the case this tool
exists for happened at 02:13 local time, which is 18:13 UTC the day before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import zoneinfo

import numpy as np

from ..units import SECOND_NS

NAT = np.iinfo(np.int64).min  # numpy's and pandas' "not a time"


# Offsets are probed once a day and each change is then bisected to the second
# (tz transitions fall on whole seconds). This is exact as long as a zone never
# changes its offset twice within a day: in the IANA data since 1900 the closest
# two offset changes of any zone are four days apart (Africa/Freetown, 1939).
_PROBE_SECONDS = 86_400


def _offset_seconds_at(zone: zoneinfo.ZoneInfo, seconds: int) -> int:
    offset = dt.datetime.fromtimestamp(seconds, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset.days * 86_400 + offset.seconds


def _offset_table(zone: zoneinfo.ZoneInfo, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(change points, offsets) in seconds covering every instant in ``seconds``:
    the offset at t is offsets[i] for the last change point i ≤ t."""
    steps = seconds // _PROBE_SECONDS
    first = int(steps.min())
    # The whole int64-nanosecond range is about 213,000 days: counting is cheap.
    occupied = np.flatnonzero(np.bincount(steps - first)) + first
    probes = np.union1d(occupied, occupied + 1) * _PROBE_SECONDS
    points: list[int] = []
    offsets: list[int] = []
    before: int | None = None
    previous = 0
    for probe in probes.tolist():
        offset = _offset_seconds_at(zone, probe)
        if before is not None and offset != before:
            # Bisect (previous, probe] for the first second with a new offset.
            low, high = previous, probe
            while high - low > 1:
                middle = (low + high) // 2
                if _offset_seconds_at(zone, middle) == before:
                    low = middle
                else:
                    high = middle
            points.append(high)
            offsets.append(_offset_seconds_at(zone, high))
            if offsets[-1] != offset:  # more than one change between probes (no instants there)
                points.append(probe)
                offsets.append(offset)
        elif before is None:
            points.append(probe)
            offsets.append(offset)
        before, previous = offset, probe
    return np.array(points, dtype=np.int64), np.array(offsets, dtype=np.int64)


def as_utc_ns(ts_ns: np.ndarray) -> np.ndarray:
    """int64 nanoseconds since the epoch; datetime64 arrays are converted."""
    values = np.asarray(ts_ns)
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]").view(np.int64)
    return values.astype(np.int64, copy=False)


def utc_offset_ns(zone: zoneinfo.ZoneInfo, ts_ns: np.ndarray) -> np.ndarray:
    ts = as_utc_ns(ts_ns)
    out = np.zeros(ts.shape, dtype=np.int64)
    valid = ts != NAT
    if not valid.any():
        return out
    seconds = np.floor_divide(ts[valid], SECOND_NS)
    points, offsets = _offset_table(zone, seconds)
    if len(points) == 1:  # one offset over the whole span (most zones, most captures)
        out[valid] = offsets[0] * SECOND_NS
    else:
        index = np.searchsorted(points, seconds, side="right") - 1
        out[valid] = offsets[index] * SECOND_NS
    return out


def load_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone for an IANA name, or None if there is no such zone here."""
    if not name or name.startswith("/") or name == "localtime":
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone_name_from_path(path: str) -> str | None:
    marker = "zoneinfo/"
    if marker not in path:
        return None
    name = path.rsplit(marker, 1)[1]
    for variant in ("posix/", "right/"):  # the same zones with POSIX or leap-second clocks
        name = name.removeprefix(variant)
    return name


def machine_timezone() -> str:
    """This machine's IANA zone name: $TZ if it names one (``:Europe/Paris`` and
    ``/usr/share/zoneinfo/Europe/Paris`` count), else /etc/timezone, else the
    target of the /etc/localtime link after ``zoneinfo/``, else ``UTC``."""
    candidates: list[str | None] = []
    tz = os.environ.get("TZ", "").strip().removeprefix(":")
    candidates.append(_zone_name_from_path(tz) if tz.startswith("/") else tz)
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            candidates.append(handle.readline().strip())
    except (OSError, UnicodeDecodeError):
        pass
    with contextlib.suppress(OSError):
        candidates.append(_zone_name_from_path(os.readlink("/etc/localtime")))
    for name in candidates:
        if name and load_zone(name) is not None:
            return name
    return "UTC"
