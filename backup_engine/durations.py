"""Durations as people write them in recovery plans: "4 hours", "30 minutes", "1h 30m"."""

from __future__ import annotations

import re

from backup_engine.errors import UsageError

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")


def parse_duration(text: str) -> float:
    """Seconds in `text`; every part must be a number with a known unit."""
    cleaned = text.strip().lower().replace(" and ", " ").replace(",", " ")
    total = 0.0
    position = 0
    for match in _PART.finditer(cleaned):
        if cleaned[position : match.start()].strip():
            break
        unit = _UNITS.get(match.group(2))
        if unit is None:
            raise UsageError(f"unknown time unit {match.group(2)!r} in {text!r}")
        total += float(match.group(1)) * unit
        position = match.end()
    if position == 0 or cleaned[position:].strip():
        raise UsageError(
            f"cannot read the duration {text!r}", hint='write it like "4 hours" or "1h 30m"'
        )
    return total


def format_duration(seconds: float) -> str:
    """Short human form: 0.84 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
