"""Cron text to explicit value sets: fields, names, ranges (also wrap-around), steps.

Every field becomes the sorted tuple of the values it allows, so no later step has to
understand cron syntax: `23-3/2` in the hour field is (1, 3, 23), `9-8/3` in the month field
is (3, 6, 9, 12). Day of month and day of week keep their specials (`L`, `15W`, `5#3`,
`5L`) for the calendar (fss.domain.cron_calendar).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fss.errors import InvalidField

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class FieldKind:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    @property
    def cycle_high(self) -> int:
        """The last value of the field's cycle: day of week 7 is Sunday again (0), so `*` and
        a wrap-around range (`FRI-MON`) go round 0-6."""
        return 6 if self is WEEKDAY else self.high


SECOND = FieldKind("second", 0, 59)
MINUTE = FieldKind("minute", 0, 59)
HOUR = FieldKind("hour", 0, 23)
DAY = FieldKind("day-of-month", 1, 31)
MONTH = FieldKind("month", 1, 12, MONTH_NAMES, name_base=1)
WEEKDAY = FieldKind("day-of-week", 0, 7, DAY_NAMES)


@dataclass(frozen=True)
class DayRule:
    """Which days of a month fire: the day-of-month and day-of-week fields together."""

    month_days: frozenset[int] = frozenset()
    last_day: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday_to: tuple[int, ...] = ()  # 15W
    weekdays: frozenset[int] = frozenset()  # 0 = Sunday
    nth_weekdays: tuple[tuple[int, int], ...] = ()  # 5#3: (weekday, n)
    last_weekdays: tuple[int, ...] = ()  # 5L
    either: bool = True  # classic cron: both fields restricted => a day matching either fires
    _cache: dict[tuple[int, int], tuple[int, ...]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )


@dataclass(frozen=True)
class CronSpec:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    days: DayRule
    # No time field starts with `*` (Debian cron's fixed-time job): a skipped local time fires
    # at the jump, a repeated one once. Otherwise a wildcard job: neither (fss.domain.cron).
    fixed_time: bool


def parse_cron(expression: str, *, strict: bool) -> CronSpec:
    """The value sets of a normalized 5- or 6-field expression.

    `strict` adds the rules fss introduced later (steps wider than the field, Quartz's day
    rule): new expressions must follow them, stored ones keep running as before.
    """
    fields = expression.split()
    six = len(fields) == 6
    if not six:
        fields = ["0", *fields]
    second, minute, hour, dom, month, dow = fields
    parser = _FieldParser(expression, strict)
    dom_star, dow_star = _is_star(dom), _is_star(dow)
    if six and strict and not dom_star and not dow_star:
        raise InvalidField(
            "cron",
            f"{expression!r} restricts both the day of month ({dom}) and the day of week "
            f"({dow}); with 6 fields (Quartz) put '?' in one of them",
        )
    return CronSpec(
        seconds=parser.values(second, SECOND),
        minutes=parser.values(minute, MINUTE),
        hours=parser.values(hour, HOUR),
        months=parser.values(month, MONTH),
        days=parser.day_rule(dom, dow, either=not dom_star and not dow_star),
        fixed_time=not any(_is_star(f) for f in (second, minute, hour)),
    )


def _is_star(text: str) -> bool:
    # Vixie cron's rule: a field that begins with * (also */2) does not restrict the day.
    return text[0] in "*?"


def _is_number(text: str) -> bool:
    # Not str.isdigit(): it is true for '²' and '٣', which int() refuses or reads as 3.
    return text != "" and all(char in "0123456789" for char in text)


class _FieldParser:
    def __init__(self, expression: str, strict: bool) -> None:
        self._expression = expression
        self._strict = strict

    def fail(self, kind: FieldKind, reason: str) -> InvalidField:
        return InvalidField("cron", f"{self._expression!r}: {kind.name} field: {reason}")

    def values(self, text: str, kind: FieldKind) -> tuple[int, ...]:
        found: set[int] = set()
        for item in text.split(","):
            found.update(self.item(item, kind))
        if kind is WEEKDAY and 7 in found:
            found = (found - {7}) | {0}
        return tuple(sorted(found))

    def item(self, item: str, kind: FieldKind) -> list[int]:
        body, slash, step_text = item.partition("/")
        step = self.step(step_text, kind) if slash else 1
        if body in ("*", "?"):
            first, last = kind.low, kind.cycle_high
        elif "-" in body:
            low_text, _, high_text = body.partition("-")
            first, last = self.value(low_text, kind), self.value(high_text, kind)
        else:
            first = self.value(body, kind)
            # `a/n` runs to the field's end; for the day of week that is 7 (Sunday), as in
            # cronie and cronsim: `5/2` is Friday and Sunday.
            last = kind.high if slash else first
        return _cycle(first, last, kind)[::step]

    def step(self, text: str, kind: FieldKind) -> int:
        if not _is_number(text) or int(text) == 0:
            raise self.fail(kind, f"step {text!r} is not a whole number from 1")
        step = int(text)
        if self._strict and step > kind.high:
            # Quartz refuses these; croniter silently ran `*/60` as minute 0 only.
            raise self.fail(kind, f"step {step} is larger than its range {_span(kind)}")
        return step

    def value(self, text: str, kind: FieldKind) -> int:
        upper = text.upper()
        if upper in kind.names:
            return kind.names.index(upper) + kind.name_base
        if _is_number(text) and kind.low <= int(text) <= kind.high:
            return int(text)
        names = f" or {kind.names[0]}-{kind.names[-1]}" if kind.names else ""
        raise self.fail(kind, f"{text!r} is not {_span(kind)}{names}")

    def day_rule(self, dom: str, dow: str, *, either: bool) -> DayRule:
        month_days: set[int] = set()
        nearest: list[int] = []
        last_day = last_weekday = False
        for item in dom.split(","):
            upper = item.upper()
            if upper == "L":
                last_day = True
            elif upper == "LW":
                last_weekday = True
            elif upper.endswith("W"):
                nearest.append(self.value(item[:-1], DAY))
            else:
                month_days.update(self.item(item, DAY))
        weekdays: set[int] = set()
        nth: list[tuple[int, int]] = []
        last_of: list[int] = []
        for item in dow.split(","):
            if "#" in item:
                nth.append(self.nth_weekday(item))
            elif len(item) > 1 and item.upper().endswith("L"):
                last_of.append(self.value(item[:-1], WEEKDAY) % 7)
            else:
                weekdays.update(v % 7 for v in self.item(item, WEEKDAY))
        return DayRule(
            frozenset(month_days),
            last_day,
            last_weekday,
            tuple(nearest),
            frozenset(weekdays),
            tuple(nth),
            tuple(last_of),
            either,
        )

    def nth_weekday(self, item: str) -> tuple[int, int]:
        day_text, _, n_text = item.partition("#")
        if not _is_number(n_text) or not 1 <= int(n_text) <= 5:
            raise self.fail(WEEKDAY, f"{item!r} needs a week 1-5 after '#'")
        return self.value(day_text, WEEKDAY) % 7, int(n_text)


def _span(kind: FieldKind) -> str:
    return f"{kind.low}-{kind.high}"


def _cycle(first: int, last: int, kind: FieldKind) -> list[int]:
    """first..last, wrapping around the field's end when first > last (hours 23-3: 23,0..3).

    Day of week 7 stays 7 here (the caller reads it as Sunday); only a wrap-around range
    starting at 7 (`7-2`) starts at Sunday 0 instead, since 7 is past the cycle's end (6).
    """
    if kind is WEEKDAY and first == 7 and last < first:
        first = 0
    if first <= last:
        return list(range(first, last + 1))
    return list(range(first, kind.cycle_high + 1)) + list(range(kind.low, last + 1))
