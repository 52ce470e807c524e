"""Five-field cron expressions (minute hour day-of-month month day-of-week), as Temporal
Schedules and crontab read them: numbers, `*`, ranges `a-b`, steps `*/n` and `a-b/n`, lists
`a,b`; day names and month names; day-of-week 0 or 7 is Sunday. Read here to refuse a bad one
when the plan is checked (not at 3 a.m.) and to say when the plan runs next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from backup_engine.errors import ConfigError

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))  # fmt: skip
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES = {3: {m: i + 1 for i, m in enumerate(_MONTHS)}, 4: {d: i for i, d in enumerate(_DAYS)}}


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 Sunday .. 6 Saturday
    any_day: bool  # day of month was `*`
    any_weekday: bool  # day of week was `*`

    def _date_ok(self, moment: datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = (moment.weekday() + 1) % 7 in self.weekdays
        # crontab: when both day fields are restricted, either one matching is enough
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def matches(self, moment: datetime) -> bool:
        return (moment.minute in self.minutes and moment.hour in self.hours
                and moment.month in self.months and self._date_ok(moment))  # fmt: skip

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The first matching minute after `moment`, in `zone` (None within 5 years: Feb 30)."""
        local = moment.astimezone(zone).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = local + timedelta(days=5 * 366)
        while local < end:
            if local.month not in self.months:  # the first minute of the next month
                local = (local.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._date_ok(local):  # of the next day
                local = local.replace(hour=0, minute=0) + timedelta(days=1)
            elif local.hour not in self.hours:  # of the next hour
                local = local.replace(minute=0) + timedelta(hours=1)
            elif local.minute not in self.minutes:
                local += timedelta(minutes=1)
            else:
                return local
        return None


def _field(text: str, index: int) -> frozenset[int]:
    name, low, high = _FIELDS[index]
    values: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = _number(step_text, index) if step_text else 1
        if step < 1:
            raise ConfigError(f"cron {name} {part!r}: a step must be at least 1")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _number(a, index), _number(b, index)
        else:
            start = _number(body, index)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise ConfigError(f"cron {name} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def _number(text: str, index: int) -> int:
    names = _NAMES.get(index, {})
    if text in names:
        return names[text]
    if not text.isdigit():
        raise ConfigError(f"cron {_FIELDS[index][0]}: {text!r} is not a number")
    return int(text)


def parse_cron(text: str) -> Cron:
    parts = text.split()
    if len(parts) != 5:
        raise ConfigError(
            f"cron {text!r} has {len(parts)} fields, not 5",
            hint='minute hour day-of-month month day-of-week, e.g. "0 3 * * *" for 03:00 daily',
        )
    minutes, hours, days, months, weekdays = (_field(part, i) for i, part in enumerate(parts))
    return Cron(text, minutes, hours, days, months, weekdays, parts[2] == "*", parts[4] == "*")
