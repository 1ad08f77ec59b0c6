"""The first wall-clock time after another that a CronSpec allows (no time zones here).

Field by field, largest first: a month that does not fire skips to the next one that does,
a day to the next matching day, and so on; each step is a bisect on a sorted tuple, so a
search takes a handful of steps whatever the expression.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from datetime import datetime, timedelta

from fss.domain.cron_fields import CronSpec, DayRule

# Feb 29 on a Monday comes every 28 years or so; 400 years holds every calendar pattern.
SEARCH_YEARS = 400
MAX_CACHED_MONTHS = 512


def next_wall_time(spec: CronSpec, after: datetime) -> datetime | None:
    """The first naive time strictly after `after` (whole seconds) that fires; None if none
    within SEARCH_YEARS."""
    start = after.replace(microsecond=0) + timedelta(seconds=1)
    year, month, day = start.year, start.month, start.day
    hour, minute, second = start.hour, start.minute, start.second
    last_year = min(start.year + SEARCH_YEARS, 9998)
    while year <= last_year:
        months = spec.months
        m = _first_at_or_after(months, month)
        if m is None:
            year, month, day, hour, minute, second = year + 1, months[0], 1, 0, 0, 0
            continue
        if m != month:
            month, day, hour, minute, second = m, 1, 0, 0, 0
        d = _first_at_or_after(matching_days(spec.days, year, month), day)
        if d is None:
            month, day, hour, minute, second = month + 1, 1, 0, 0, 0
            if month > 12:
                year, month = year + 1, 1
            continue
        if d != day:
            day, hour, minute, second = d, 0, 0, 0
        h = _first_at_or_after(spec.hours, hour)
        if h is None:
            day, hour, minute, second = day + 1, 0, 0, 0
            continue
        if h != hour:
            hour, minute, second = h, 0, 0
        mi = _first_at_or_after(spec.minutes, minute)
        if mi is None:
            hour, minute, second = hour + 1, 0, 0
            continue
        if mi != minute:
            minute, second = mi, 0
        s = _first_at_or_after(spec.seconds, second)
        if s is None:
            minute, second = minute + 1, 0
            continue
        return datetime(year, month, day, hour, minute, s)
    return None


def _first_at_or_after(values: tuple[int, ...], value: int) -> int | None:
    index = bisect_left(values, value)
    return values[index] if index < len(values) else None


def matching_days(rule: DayRule, year: int, month: int) -> tuple[int, ...]:
    """The days of one month that fire, cached on the rule (a month is asked for often)."""
    key = (year, month)
    days = rule._cache.get(key)
    if days is None:
        if len(rule._cache) >= MAX_CACHED_MONTHS:
            rule._cache.clear()
        days = rule._cache[key] = _compute_days(rule, year, month)
    return days


def _compute_days(rule: DayRule, year: int, month: int) -> tuple[int, ...]:
    length = calendar.monthrange(year, month)[1]
    first = (calendar.weekday(year, month, 1) + 1) % 7  # cron numbering: 0 = Sunday
    by_date = _by_date(rule, length, first)
    by_weekday = _by_weekday(rule, length, first)
    chosen = by_date | by_weekday if rule.either else by_date & by_weekday
    return tuple(sorted(chosen))


def _by_date(rule: DayRule, length: int, first: int) -> set[int]:
    days = {d for d in rule.month_days if d <= length}
    if rule.last_day:
        days.add(length)
    if rule.last_weekday:
        days.add(_nearest_weekday(length, length, first))
    days.update(_nearest_weekday(d, length, first) for d in rule.nearest_weekday_to if d <= length)
    return days


def _by_weekday(rule: DayRule, length: int, first: int) -> set[int]:
    days = {d for d in range(1, length + 1) if (first + d - 1) % 7 in rule.weekdays}
    for weekday, n in rule.nth_weekdays:
        day = 1 + (weekday - first) % 7 + 7 * (n - 1)
        if day <= length:
            days.add(day)
    last = (first + length - 1) % 7
    days.update(length - (last - weekday) % 7 for weekday in rule.last_weekdays)
    return days


def _nearest_weekday(day: int, length: int, first: int) -> int:
    """Quartz's `15W`: the weekday nearest to the day, never leaving the month."""
    weekday = (first + day - 1) % 7
    if weekday == 6:  # Saturday: Friday before, or Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 0:  # Sunday: Monday after, or Friday before on the last day
        return day + 1 if day < length else day - 2
    return day
