"""fss's cron against cronsim, an independent evaluator that follows Debian cron.

Random expressions from the whole grammar both accept (values, names, ranges, steps, lists,
`*`, `L`, `LW`, `n#k`, `nL`, 5 and 6 fields) in zones with and without daylight saving time,
from start times around their clock changes: the next COUNT firings must be the same.

Where fss differs, the test does not filter the case out: it states the rule (the `RULE_*`
names below, listed with examples in docs/cron.md, "Differences from cronsim") and compares
with cronsim's answer transformed by that rule.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fss.domain.cron import MAX_CRON_LENGTH, next_cron_time, validate_cron
from fss.errors import InvalidField

cronsim = pytest.importorskip("cronsim")  # in the dev extra; the runtime venv does not need it
CronSim = cronsim.CronSim
CronSimError = cronsim.CronSimError

UTC = timezone.utc
COUNT = 20
# cronsim gives up after 50 years without a firing; fss searches 400. Compare within 40.
HORIZON = timedelta(days=40 * 365)
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute shift
    "America/Santiago",  # changes at midnight: the skipped hour is 00:00-00:59
    "Asia/Shanghai",  # no DST since 1991
    "Europe/Dublin",  # "negative" DST in tzdata
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/St_Johns",
    "Pacific/Apia",  # skipped 2011-12-30 entirely (a 24-hour jump)
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

# The documented differences (docs/cron.md, "Differences from cronsim"), as applied below.
RULE_QUESTION_MARK = "fss reads Quartz's '?' as '*'; cronsim refuses '?'"
RULE_WRAP_AROUND = "fss accepts a range that wraps round its field's end (23-3); cronsim refuses"
RULE_WIDE_STEP = "fss refuses a step larger than the field for new crons; cronsim accepts it"
RULE_QUARTZ_DAYS = "fss refuses 6 fields restricting both day fields for new crons"
RULE_SIX_FIELD_DST = "fss applies Debian's DST rule to 6 fields too; cronsim only to 5 fields"
RULE_SECOND_PASS = "cronsim may return a time before the start in a repeated hour's 2nd pass"
RULE_HALF_HOUR_SHIFT = "cronsim steps hours in UTC: after a 30-minute change it lands on :30"
RULE_MIDNIGHT_JUMP = "cronsim starts a day at 00:00 even when its clocks skip 00:00-00:59"
# Zones whose clocks change by other than whole hours (RULE_HALF_HOUR_SHIFT).
PART_HOUR_SHIFTS = ("Australia/Lord_Howe",)
# Zones whose clocks spring forward at midnight (RULE_MIDNIGHT_JUMP).
MIDNIGHT_SHIFTS = ("America/Santiago",)


@dataclass(frozen=True)
class Kind:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    @property
    def cycle_top(self) -> int:
        return 6 if self.name == "day-of-week" else self.high


SECOND = Kind("second", 0, 59)
MINUTE = Kind("minute", 0, 59)
HOUR = Kind("hour", 0, 23)
DAY = Kind("day-of-month", 1, 31)
MONTH = Kind("month", 1, 12, MONTHS, 1)
WEEKDAY = Kind("day-of-week", 0, 7, DAYS)


@dataclass(frozen=True)
class Term:
    fss: str  # as fss reads it
    cronsim: str  # the same term in cronsim's grammar (RULE_WRAP_AROUND rewrites wraps)
    wide_step: bool = False


@dataclass(frozen=True)
class Cron:
    fields: tuple[str, ...]  # fss's text per field
    cronsim_fields: tuple[str, ...]
    wide_step: bool

    @property
    def text(self) -> str:
        return " ".join(self.fields)

    @property
    def six(self) -> bool:
        return len(self.fields) == 6

    @property
    def wildcard(self) -> bool:
        """Debian's wildcard job: a time field starts with '*' (with 6 fields, fss's rule
        counts the seconds field too)."""
        time_fields = self.fields[:3] if self.six else self.fields[:2]
        return any(f[0] in "*?" for f in time_fields)

    @property
    def both_days(self) -> bool:
        return all(f[0] not in "*?" for f in (self.fields[-3], self.fields[-1]))


# -- expressions ------------------------------------------------------------------------------


def _value_text(draw: st.DrawFn, kind: Kind, value: int) -> str:
    use_name: bool = draw(st.booleans())
    if kind.names and use_name:
        name_index = value - kind.name_base
        if 0 <= name_index < len(kind.names):
            name = kind.names[name_index]
            return draw(st.sampled_from((name, name.lower(), name.title())))
    return str(value)


def _values(kind: Kind) -> st.SearchStrategy[int]:
    if kind is HOUR:  # clocks change between 00:00 and 03:00 local: make those hours common
        return st.one_of(st.integers(0, 3), st.integers(kind.low, kind.high))
    return st.integers(kind.low, kind.high)


def _wrapped(kind: Kind, first: int, last: int, step: int) -> list[int]:
    """RULE_WRAP_AROUND: first..top then bottom..last, every step-th (day of week 7 = 0)."""
    if first > kind.cycle_top:
        cycle = list(range(kind.low, last + 1))
    else:
        cycle = list(range(first, kind.cycle_top + 1)) + list(range(kind.low, last + 1))
    return cycle[::step]


SHAPES = ("value", "range", "star-step", "value-step", "range-step")


@st.composite
def terms(draw: st.DrawFn, kind: Kind, *, star: bool = True) -> Term:
    shape = draw(st.sampled_from(SHAPES if star else SHAPES[:2] + SHAPES[3:]))
    step = draw(st.one_of(st.integers(1, 6), st.integers(1, kind.high + 3)))
    wide = step > kind.high
    if shape == "value":
        value = draw(_values(kind))
        text = _value_text(draw, kind, value)
        return Term(text, text)
    if shape == "star-step":
        return Term(f"*/{step}", f"*/{step}", wide)
    first = draw(_values(kind))
    if shape == "value-step":
        text = f"{_value_text(draw, kind, first)}/{step}"
        return Term(text, text, wide)
    last = draw(_values(kind))
    text = f"{_value_text(draw, kind, first)}-{_value_text(draw, kind, last)}"
    suffix = f"/{step}" if shape == "range-step" else ""
    if first <= last:
        return Term(text + suffix, text + suffix, wide and bool(suffix))
    values = _wrapped(kind, first, last, step if suffix else 1)
    return Term(text + suffix, ",".join(map(str, values)), wide and bool(suffix))


@st.composite
def day_terms(draw: st.DrawFn, kind: Kind) -> Term:
    if kind is DAY and draw(st.integers(0, 5)) == 0:
        text = draw(st.sampled_from(("L", "LW", "l", "lw")))
        return Term(text, text.upper())
    if kind is WEEKDAY and draw(st.integers(0, 4)) == 0:
        day = draw(st.integers(0, 7))
        if draw(st.booleans()):
            text = f"{_value_text(draw, kind, day)}#{draw(st.integers(1, 5))}"
        else:
            text = f"{day}L"  # cronsim takes digits only before L (fss takes names too)
        return Term(text, text)
    return draw(terms(kind))


@st.composite
def fields(draw: st.DrawFn, kind: Kind, *, star: bool = True) -> Term:
    """A field; `star=False`: one that does not start with '*' (a fixed-time job's)."""
    choice = draw(st.integers(0, 9))
    if choice == 0 and star:
        return Term("*", "*")
    if not star:
        first = draw(terms(kind, star=False))
        rest = draw(st.lists(terms(kind), max_size=2))
        items = [first, *rest]
        return Term(
            ",".join(t.fss for t in items),
            ",".join(t.cronsim for t in items),
            any(t.wide_step for t in items),
        )
    if choice == 1 and kind in (DAY, WEEKDAY):
        return Term("?", "*")  # RULE_QUESTION_MARK
    make = day_terms if kind in (DAY, WEEKDAY) else terms
    items = draw(st.lists(make(kind), min_size=1, max_size=3))
    return Term(
        ",".join(t.fss for t in items),
        ",".join(t.cronsim for t in items),
        any(t.wide_step for t in items),
    )


@st.composite
def crons(draw: st.DrawFn, *, six: bool | None = None, fixed_time: bool = False) -> Cron:
    """An expression; `fixed_time`: no time field starts with '*'."""
    kinds = [MINUTE, HOUR, DAY, MONTH, WEEKDAY]
    if six if six is not None else draw(st.booleans()):
        kinds.insert(0, SECOND)
    time_fields = len(kinds) - 3
    drawn = [
        draw(fields(kind, star=not (fixed_time and index < time_fields)))
        for index, kind in enumerate(kinds)
    ]
    cron = Cron(
        tuple(t.fss for t in drawn),
        tuple(t.cronsim for t in drawn),
        any(t.wide_step for t in drawn),
    )
    assume(len(cron.text) <= MAX_CRON_LENGTH)
    return cron


# -- start times around clock changes ---------------------------------------------------------


@functools.cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """The instants (UTC, to the hour) at which the zone's offset changes, 2000-2037."""
    zone = ZoneInfo(zone_name)
    found = []
    moment = datetime(2000, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year < 2038:
        later = moment + timedelta(days=1)
        if later.astimezone(zone).utcoffset() != offset:
            hour = moment
            while hour.astimezone(zone).utcoffset() == offset:
                hour += timedelta(minutes=15)
            found.append(hour)
            offset = later.astimezone(zone).utcoffset()
        moment = later
    return tuple(found)


@st.composite
def starts(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    changes = transitions(zone)
    if changes and draw(st.integers(0, 4)) > 0:
        around = draw(st.sampled_from(changes))
    else:
        around = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 13000)))
    offset = draw(st.one_of(st.integers(-3 * 3600, 3 * 3600), st.integers(-40 * 86400, 2 * 86400)))
    return zone, around + timedelta(seconds=offset)


# -- the two evaluators -----------------------------------------------------------------------


def fss_firings(expression: str, start: datetime, zone: str) -> list[datetime]:
    found: list[datetime] = []
    moment = start
    while len(found) < COUNT:
        moment = next_cron_time(expression, moment, zone)
        if moment > start + HORIZON:
            break
        found.append(moment)
    return found


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def cronsim_firings(expression: str, start: datetime, zone: str) -> list[datetime]:
    local = start.astimezone(_zone(zone))
    return _collect((t.astimezone(UTC) for t in CronSim(expression, local)), start)


def debian_fixed_time_firings(expression: str, start: datetime, zone: str) -> list[datetime]:
    """RULE_SIX_FIELD_DST: cronsim's matches on wall-clock time, mapped to instants by the
    rule Debian cron (and cronsim, for 5 fields) applies to fixed-time jobs: a skipped wall
    time fires at the jump, a repeated one the first time; one run per instant."""
    tz = _zone(zone)
    walls = CronSim(expression, start.astimezone(tz).replace(tzinfo=None))  # naive: no zone
    return _collect((_first_instant(wall, tz) for wall in walls), start)


def _collect(instants: Iterator[datetime], start: datetime) -> list[datetime]:
    found: list[datetime] = []
    try:
        for instant in instants:
            if instant <= start:  # RULE_SECOND_PASS: already run in the first pass
                continue
            if instant > start + HORIZON:
                break
            if not found or instant != found[-1]:  # skipped times share the jump's run
                found.append(instant)
            if len(found) == COUNT:
                break
    except StopIteration:  # cronsim: nothing within 50 years
        pass
    return found


def _imaginary(wall: datetime, tz: tzinfo) -> bool:
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall


def _first_instant(wall: datetime, tz: tzinfo) -> datetime:
    if _imaginary(wall, tz):
        while _imaginary(wall, tz):  # minute steps to the far side of the gap, as cronsim does
            wall += timedelta(minutes=1)
        while not _imaginary(wall - timedelta(seconds=1), tz):  # back to the gap's end exactly
            wall -= timedelta(seconds=1)
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def debian_wildcard_firings(expression: str, start: datetime, zone: str) -> list[datetime]:
    """RULE_HALF_HOUR_SHIFT: cronsim's matches on wall-clock time, mapped to instants by
    Debian's rule for wildcard jobs: a skipped wall time never fires, a repeated one fires in
    both passes. When the clocks fall back within 3 hours the walls are read from that much
    earlier (their second pass is still to come)."""
    tz = _zone(zone)
    local = start.astimezone(tz)
    back = _offset(local) - _offset((start + timedelta(hours=3)).astimezone(tz))
    early = local.replace(tzinfo=None) - max(back, timedelta(0))
    found: list[datetime] = []
    try:
        for wall in CronSim(expression, early):
            if _imaginary(wall, tz):
                continue
            passes = {wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)}
            found.extend(t for t in passes if start < t <= start + HORIZON)
            latest = wall.replace(tzinfo=tz).astimezone(UTC)
            if latest > start + HORIZON:
                break
            if len(found) >= COUNT and latest > sorted(found)[COUNT - 1] + timedelta(hours=3):
                break
    except StopIteration:  # nothing within 50 years
        pass
    return sorted(found)[:COUNT]


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or timedelta(0)


def expected_firings(cron: Cron, start: datetime, zone: str) -> list[datetime]:
    expression = " ".join(cron.cronsim_fields)
    if cron.six and not cron.wildcard and zone != "UTC":
        return debian_fixed_time_firings(expression, start, zone)  # RULE_SIX_FIELD_DST
    if cron.wildcard and zone in PART_HOUR_SHIFTS + MIDNIGHT_SHIFTS:
        # RULE_HALF_HOUR_SHIFT, RULE_MIDNIGHT_JUMP
        return debian_wildcard_firings(expression, start, zone)
    return cronsim_firings(expression, start, zone)


def cronsim_refuses(cron: Cron) -> bool:
    try:
        CronSim(" ".join(cron.cronsim_fields), datetime(2000, 1, 1))
    except CronSimError:
        return True
    return False


# -- the properties ---------------------------------------------------------------------------

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@SETTINGS
@given(cron=crons(), start=starts())
def test_fss_fires_when_cronsim_does_apart_from_the_documented_rules(
    cron: Cron, start: tuple[str, datetime]
) -> None:
    zone, moment = start
    try:
        fired = fss_firings(cron.text, moment, zone)
    except InvalidField as error:  # both see that no such date exists
        assert "never fires" in error.reason
        assert cronsim_refuses(cron) or expected_firings(cron, moment, zone) == []
        return

    assert fired == expected_firings(cron, moment, zone), (cron.text, zone, moment)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(cron=crons())
def test_new_crons_are_refused_only_by_the_documented_rules(cron: Cron) -> None:
    try:
        validate_cron(cron.text)
        refusal = None
    except InvalidField as error:
        refusal = error.reason

    if cron.six and cron.both_days:  # checked first
        assert refusal is not None and "put '?' in one of them" in refusal  # RULE_QUARTZ_DAYS
    elif cron.wide_step:
        assert refusal is not None and "larger than" in refusal  # RULE_WIDE_STEP
    elif refusal is not None:
        assert "never fires" in refusal
    # What fss accepts, cronsim accepts too (with '?' as '*' and wraps spelt out).
    assert refusal is not None or not cronsim_refuses(cron)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(cron=crons(), start=starts())
def test_the_wildcard_rule_of_the_reference_is_cronsims_own_in_whole_hour_zones(
    cron: Cron, start: tuple[str, datetime]
) -> None:
    """The mapping RULE_HALF_HOUR_SHIFT and RULE_MIDNIGHT_JUMP apply is the one cronsim
    applies elsewhere."""
    zone, moment = start
    assume(cron.wildcard and zone not in PART_HOUR_SHIFTS + MIDNIGHT_SHIFTS)
    assume(not cronsim_refuses(cron))
    expression = " ".join(cron.cronsim_fields)

    assert debian_wildcard_firings(expression, moment, zone) == cronsim_firings(
        expression, moment, zone
    )


@settings(max_examples=25, deadline=None, derandomize=True)
@given(cron=crons(six=False, fixed_time=True), start=starts())
def test_the_fixed_time_rule_of_the_reference_is_cronsims_own_for_five_fields(
    cron: Cron, start: tuple[str, datetime]
) -> None:
    """The mapping RULE_SIX_FIELD_DST applies is the one cronsim applies to 5 fields."""
    zone, moment = start
    assert not cron.wildcard
    assume(zone != "UTC" and not cronsim_refuses(cron))
    expression = " ".join(cron.cronsim_fields)

    assert debian_fixed_time_firings(expression, moment, zone) == cronsim_firings(
        expression, moment, zone
    )


# -- each documented difference, by example ---------------------------------------------------


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc, arg-type]


@pytest.mark.parametrize(
    ("expression", "rule"),
    [
        ("0 0 ? * MON", RULE_QUESTION_MARK),
        ("0 23-3 * * *", RULE_WRAP_AROUND),
        ("0 0 * * FRI-MON", RULE_WRAP_AROUND),
        ("0 0 15W * *", "fss takes Quartz's 15W (nearest weekday); cronsim refuses it"),
        ("0 0 * * FRIL", "fss takes a day name before L (Quartz does); cronsim digits only"),
    ],
)
def test_fss_accepts_what_cronsim_refuses(expression: str, rule: str) -> None:
    validate_cron(expression)
    with pytest.raises(CronSimError):
        CronSim(expression, datetime(2024, 1, 1))


@pytest.mark.parametrize("expression", ["*/60 * * * *", "0 0 * * */8", "0 0 12 1 * MON"])
def test_fss_refuses_new_crons_cronsim_accepts_yet_runs_stored_ones_as_cronsim(
    expression: str,
) -> None:
    # RULE_WIDE_STEP and RULE_QUARTZ_DAYS: stored crons keep running, the way cronsim runs them.
    with pytest.raises(InvalidField):
        validate_cron(expression)

    start = at(2024, 1, 1, 0, 30)
    assert fss_firings(expression, start, "UTC") == cronsim_firings(expression, start, "UTC")


def test_six_fields_keep_debians_dst_rule_where_cronsim_drops_it() -> None:
    # RULE_SIX_FIELD_DST: Berlin 2026-03-29 skips 02:00-03:00; 2026-10-25 repeats 02:00-03:00.
    berlin = ZoneInfo("Europe/Berlin")
    spring, autumn = at(2026, 3, 28, 12), at(2026, 10, 24, 12)

    def local(times: list[datetime]) -> list[str]:
        return [t.astimezone(berlin).isoformat() for t in times[:2]]

    assert local(fss_firings("0 30 2 * * *", spring, "Europe/Berlin")) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert local(cronsim_firings("0 30 2 * * *", spring, "Europe/Berlin")) == [
        "2026-03-30T02:30:00+02:00",  # no run on the 29th
        "2026-03-31T02:30:00+02:00",
    ]
    assert local(fss_firings("0 30 2 * * *", autumn, "Europe/Berlin")) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    assert local(cronsim_firings("0 30 2 * * *", autumn, "Europe/Berlin")) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",  # twice
    ]
    # With 5 fields both follow Debian.
    assert fss_firings("30 2 * * *", spring, "Europe/Berlin") == cronsim_firings(
        "30 2 * * *", spring, "Europe/Berlin"
    )


def test_cronsim_misses_half_an_hour_after_a_30_minute_clock_change() -> None:
    # RULE_HALF_HOUR_SHIFT: Lord Howe 2000-03-26 02:00 +11:00 -> 01:30 +10:30. From 01:30, every
    # minute of hour 0 starts at 00:00 the next day; cronsim, stepping 3600 s in UTC from the
    # old 01:00, reaches hour 0 at 00:30 and skips 00:00-00:29.
    zone, start = "Australia/Lord_Howe", at(2000, 3, 25, 15)
    lord_howe = ZoneInfo(zone)

    fss_first = fss_firings("* 0 * * *", start, zone)[0].astimezone(lord_howe)
    cronsim_first = cronsim_firings("* 0 * * *", start, zone)[0].astimezone(lord_howe)

    assert fss_first.isoformat() == "2000-03-27T00:00:00+10:30"
    assert cronsim_first.isoformat() == "2000-03-27T00:30:00+10:30"


def test_cronsim_fires_a_wildcard_job_at_a_skipped_midnight() -> None:
    # RULE_MIDNIGHT_JUMP: Santiago 2025-09-07 00:00 -04:00 -> 01:00 -03:00. `* */16 * * 0`
    # (hours 0 and 16 on Sundays) is a wildcard job: Debian never fires it in the skipped
    # hour, so its next run is 16:00. cronsim starts the day at a midnight that does not
    # exist, reads it as 00:00 and fires at the jump (01:00), an hour its job does not name.
    zone, start = "America/Santiago", at(2025, 9, 5, 4, 39, 40)
    santiago = ZoneInfo(zone)

    fss_first = fss_firings("* */16 * * 0", start, zone)[0].astimezone(santiago)
    cronsim_first = cronsim_firings("* */16 * * 0", start, zone)[0].astimezone(santiago)
    debian_first = debian_wildcard_firings("* */16 * * 0", start, zone)[0].astimezone(santiago)

    assert fss_first.isoformat() == debian_first.isoformat() == "2025-09-07T16:00:00-03:00"
    assert cronsim_first.isoformat() == "2025-09-07T01:00:00-03:00"


def test_cronsim_can_answer_before_the_start_in_a_repeated_hour() -> None:
    # RULE_SECOND_PASS: from 01:10 EST (second pass), cronsim's next 01:30 is 01:30 EDT, an
    # hour in the past (it forgets the fold). fss plans the next day: that run was the day's.
    start = datetime(2016, 11, 6, 1, 10, tzinfo=ZoneInfo("America/New_York"), fold=1)
    naive_next = next(CronSim("30 1 * * *", start))

    assert naive_next.astimezone(UTC) < start.astimezone(UTC)
    assert next_cron_time("30 1 * * *", start, "America/New_York") == at(2016, 11, 7, 6, 30)
