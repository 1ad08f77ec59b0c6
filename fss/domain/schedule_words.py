"""A group's schedule in words: "every 2 s", "at 02:30 every day, Asia/Shanghai".

Pure: the words are built from the value sets the scheduler itself fires by
(fss.domain.cron_fields), never from the text, so they cannot say something the cron does not
do. An expression that cannot be read still gets words (saying so), never an exception: the
page shows the raw expression beside them anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from fss.domain.cron import compile_cron
from fss.domain.cron_fields import DAY_NAMES, CronSpec, DayRule, FieldKind
from fss.domain.cron_fields import HOUR as HOUR_FIELD
from fss.domain.cron_fields import MINUTE as MINUTE_FIELD
from fss.domain.cron_fields import SECOND as SECOND_FIELD
from fss.domain.schedule import FALLBACK_DELAY, Schedule
from fss.errors import InvalidField

WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
# Up to this many times a day are listed as clock times ("at 09:00, 12:00 and 18:00").
MAX_LISTED_TIMES = 4
ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 5: "5th"}
_UNITS = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1000, "s"), (1, "ms"))
_SHORT_UNIT = {"second": "s", "minute": "min", "hour": "h"}

assert DAY_NAMES[0] == "SUN"  # WEEKDAYS follows cron's numbering: 0 = Sunday


def schedule_words(schedule: Schedule) -> str:
    """The schedule as an operator would say it; the zone is named for a cron."""
    if schedule.cron:
        return cron_words(schedule.cron, schedule.time_zone)
    if schedule.interval_ms:
        return f"every {duration_words(schedule.interval_ms)}"
    return f"when the job says (else {duration_words(_ms(FALLBACK_DELAY.total_seconds()))} " \
        "after each run)"


def duration_words(ms: int) -> str:
    """A duration as words: "2 s", "1 h 30 min", "1 s 500 ms" (exact, largest unit first)."""
    if ms <= 0:
        return f"{ms} ms"
    parts = []
    for size, unit in _UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts)


def cron_words(expression: str, time_zone: str | None = None) -> str:
    zone = time_zone or "UTC"
    try:
        spec = compile_cron(expression.strip(), strict=False)
    except InvalidField as exc:
        return f"cannot be read ({exc.reason})"
    except (ValueError, IndexError, RecursionError):  # defensive: words must never fail a page
        return "cannot be read"
    when = time_words(spec)
    days = day_words(spec.days)
    if days == "every day" and not _lists_times(spec):
        days = ""  # "every 15 min" needs no "every day"
    return _join(f"{when} {days}".strip(), month_words(spec.months), zone)


# ---- time of day ------------------------------------------------------------------------


def _lists_times(spec: CronSpec) -> bool:
    return len(spec.seconds) * len(spec.minutes) * len(spec.hours) <= MAX_LISTED_TIMES


def time_words(spec: CronSpec) -> str:
    seconds, minutes, hours = spec.seconds, spec.minutes, spec.hours
    if _lists_times(spec):
        show_seconds = seconds != (0,)
        times = [_clock(h, m, s, show_seconds) for h in hours for m in minutes for s in seconds]
        return f"at {_and_list(times)}"
    if seconds == (0,) and minutes == (0,):
        if _is_all(hours, HOUR_FIELD) or _even_step(hours, HOUR_FIELD):
            return _leading(hours, HOUR_FIELD, "hour")
        return f"at minute 0 of {_plural('hour', hours)} {_value_list(hours)}"
    if seconds == (0,):
        lead = _leading(minutes, MINUTE_FIELD, "minute")
        if lead.startswith("at ") and _is_all(hours, HOUR_FIELD):
            lead += " of every hour"
        return _join(lead, _within(hours, HOUR_FIELD, "hour"))
    lead = _leading(seconds, SECOND_FIELD, "second")
    if lead.startswith("at ") and _is_all(minutes, MINUTE_FIELD):
        lead += " of every minute"
    return _join(lead, _within(minutes, MINUTE_FIELD, "minute"), _within(hours, HOUR_FIELD, "hour"))


def _leading(values: tuple[int, ...], kind: FieldKind, unit: str) -> str:
    """The finest field that moves: "every second", "every 5 min", "at minute 5 and 35"."""
    if _is_all(values, kind):
        return f"every {unit}"
    step = _even_step(values, kind)
    if step:
        return f"every {step} {_SHORT_UNIT[unit]}"
    return f"at {_plural(unit, values)} {_value_list(values)}"


def _within(values: tuple[int, ...], kind: FieldKind, unit: str) -> str:
    """A coarser field that narrows the finer one: "in minutes 0-10", "in every 2nd hour"."""
    if _is_all(values, kind):
        return ""
    return f"in {_plural(unit, values)} {_value_list(values)}"


def _clock(hour: int, minute: int, second: int, show_seconds: bool) -> str:
    text = f"{hour:02d}:{minute:02d}"
    return f"{text}:{second:02d}" if show_seconds else text


# ---- days and months --------------------------------------------------------------------


def day_words(days: DayRule) -> str:
    by_date = _date_words(days)
    by_weekday = _weekday_words(days)
    if by_date is None and by_weekday is None:
        return "every day"
    if days.either and (by_date is None or by_weekday is None):
        return "every day"  # either field may hold, and one of them allows every day ('1,*')
    if by_date is None or by_weekday is None:
        return by_date or by_weekday or ""
    # Both fields restricted: classic cron fires on either; `*/2` in one of them (a field
    # starting with '*') makes both have to hold.
    return f"{by_date} {'or' if days.either else 'if also'} {by_weekday}"


def _date_words(days: DayRule) -> str | None:
    """The day-of-month field, or None when it allows every day of every month."""
    plain = tuple(sorted(days.month_days))
    specials = days.last_day or days.last_weekday or days.nearest_weekday_to
    if plain == tuple(range(1, 32)) and not specials:
        return None
    parts = []
    if plain:
        parts.append(f"on {_plural('day', plain)} {_value_list(plain)} of the month")
    if days.last_day:
        parts.append("on the last day of the month")
    if days.last_weekday:
        parts.append("on the last weekday (Mon-Fri) of the month")
    for day in days.nearest_weekday_to:
        parts.append(f"on the weekday (Mon-Fri) nearest day {day}")
    return _and_list(parts)


def _weekday_words(days: DayRule) -> str | None:
    """The day-of-week field, or None when it allows every day of the week."""
    plain = tuple(sorted(days.weekdays))
    if plain == tuple(range(7)) and not days.nth_weekdays and not days.last_weekdays:
        return None
    parts = []
    if plain:
        parts.append(f"on {_weekday_list(plain)}")
    for weekday, n in days.nth_weekdays:
        parts.append(f"on the {ORDINALS.get(n, f'{n}th')} {WEEKDAYS[weekday]} of the month")
    for weekday in days.last_weekdays:
        parts.append(f"on the last {WEEKDAYS[weekday]} of the month")
    return _and_list(parts)


def _weekday_list(values: tuple[int, ...]) -> str:
    # Monday first, so Mon-Fri reads as one range and the weekend as "Saturday and Sunday".
    monday_first = sorted(values, key=lambda d: (d + 6) % 7)
    runs = _runs([(d + 6) % 7 for d in monday_first])
    names = []
    for first, last in runs:
        low, high = WEEKDAYS[(first + 1) % 7], WEEKDAYS[(last + 1) % 7]
        if last - first >= 2:
            names.append(f"{low} to {high}")
        else:
            names.extend([low] if first == last else [low, high])
    return _and_list(names)


def month_words(months: tuple[int, ...]) -> str:
    if months == tuple(range(1, 13)):
        return ""
    names = []
    for first, last in _runs(list(months)):
        if last - first >= 2:
            names.append(f"{MONTHS[first - 1]} to {MONTHS[last - 1]}")
        else:
            names.extend(MONTHS[m - 1] for m in range(first, last + 1))
    return f"in {_and_list(names)}"


# ---- value lists ------------------------------------------------------------------------


def _is_all(values: tuple[int, ...], kind: FieldKind) -> bool:
    return values == tuple(range(kind.low, kind.high + 1))


def _even_step(values: tuple[int, ...], kind: FieldKind) -> int | None:
    """n when the values are every n-th from the field's start and the gap over the field's end
    is n too (*/15 minutes: every 15 min; */7 minutes is not even: 56 -> 0 is 4 minutes)."""
    if len(values) < 2 or values[0] != kind.low:
        return None
    step = values[1] - values[0]
    size = kind.high - kind.low + 1
    if size % step or values != tuple(range(kind.low, kind.high + 1, step)):
        return None
    return step


def _value_list(values: Sequence[int]) -> str:
    """Values as words: "5", "0-10", "1, 3 and 23", "0-56 every 7"."""
    if len(values) > MAX_LISTED_TIMES:
        step = values[1] - values[0]
        if step > 1 and all(b - a == step for a, b in pairwise(values)):
            return f"{values[0]}-{values[-1]} every {step}"
    items = []
    for first, last in _runs(list(values)):
        if last - first >= 2:
            items.append(f"{first}-{last}")
        else:
            items.extend(str(v) for v in range(first, last + 1))
    return _and_list(items)


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted values as (first, last) runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _plural(unit: str, values: Sequence[int]) -> str:
    return unit if len(values) == 1 else f"{unit}s"


def _and_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
