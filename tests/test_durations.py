from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_engine.durations import format_duration, parse_duration
from backup_engine.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4 hours", 14400),
        ("1 hour", 3600),
        ("30 minutes", 1800),
        ("15 min", 900),
        ("1h 30m", 5400),
        ("1 hour and 30 minutes", 5400),
        ("90 seconds", 90),
        ("0.5 s", 0.5),
        ("2 days", 172800),
    ],
)
def test_plan_style_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "4", "4 fortnights", "hours 4", "4 hours later"])
def test_unreadable_durations_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


@given(hours=st.integers(0, 1000), minutes=st.integers(0, 59), seconds=st.integers(0, 59))
def test_composed_durations_add_up(hours: int, minutes: int, seconds: int) -> None:
    text = f"{hours} hours {minutes} minutes {seconds} seconds"
    assert parse_duration(text) == hours * 3600 + minutes * 60 + seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.84, "0.84 s"), (12.34, "12.3 s"), (245, "4 min 05 s"), (7380, "2 h 03 min")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
