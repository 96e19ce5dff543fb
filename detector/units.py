"""Units the whole detector shares: nanosecond spans and byte counts for people.

Times are int64 nanoseconds since the epoch (UTC) everywhere above the kernels;
these names keep ``60 * 1_000_000_000`` from being spelled out module by module.
"""

from __future__ import annotations

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
MINUTES_PER_DAY = 1440


def human_bytes(n: float) -> str:
    """'62.7 MB': decimal units (as disks and network tools count), one decimal."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def minutes_of(text: str) -> int:
    """Minutes after midnight of a checked "HH:MM" (as the policy stores times of day)."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def format_minutes(minutes: int) -> str:
    """ "HH:MM" for minutes after midnight (1440 is "24:00")."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
