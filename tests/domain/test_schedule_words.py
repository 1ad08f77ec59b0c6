"""Schedules in words: exact wording for the common cases; for generated expressions (values,
ranges, steps, lists, names, L, W, #, 5 and 6 fields, garbage) the words never fail, and what
they claim holds for the next firings the scheduler itself computes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fss.domain.cron import compile_cron, next_cron_time
from fss.domain.schedule import Schedule
from fss.domain.schedule_words import MONTHS, WEEKDAYS, cron_words, duration_words, schedule_words
from fss.errors import InvalidField

UTC = timezone.utc
FIRINGS = 25


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        (Schedule(interval_ms=2000), "every 2 s"),
        (Schedule(interval_ms=500), "every 500 ms"),
        (Schedule(interval_ms=5_400_000), "every 1 h 30 min"),
        (Schedule(), "when the job says (else 30 s after each run)"),
        (Schedule(cron="30 2 * * *", time_zone="Asia/Shanghai"),
         "at 02:30 every day, Asia/Shanghai"),
        (Schedule(cron="*/2 * * * * *"), "every 2 s, UTC"),
        (Schedule(cron="*/15 * * * *", time_zone="Europe/Berlin"), "every 15 min, Europe/Berlin"),
        (Schedule(cron="0 */3 * * *"), "every 3 h, UTC"),
        (Schedule(cron="* * * * *"), "every minute, UTC"),
        (Schedule(cron="5,35 * * * *"), "at minutes 5 and 35 of every hour, UTC"),
        (Schedule(cron="*/7 * * * *"), "at minutes 0-56 every 7 of every hour, UTC"),
        (Schedule(cron="0 9-17 * * MON-FRI"),
         "at minute 0 of hours 9-17 on Monday to Friday, UTC"),
        (Schedule(cron="0 0 9,12,18 * * ?"), "at 09:00, 12:00 and 18:00 every day, UTC"),
        (Schedule(cron="15 30 2 * * *"), "at 02:30:15 every day, UTC"),
        (Schedule(cron="0 0 L * *"), "at 00:00 on the last day of the month, UTC"),
        (Schedule(cron="0 0 0 LW * ?"),
         "at 00:00 on the last weekday (Mon-Fri) of the month, UTC"),
        (Schedule(cron="0 0 15W * *"), "at 00:00 on the weekday (Mon-Fri) nearest day 15, UTC"),
        (Schedule(cron="0 0 * * 5#3"), "at 00:00 on the 3rd Friday of the month, UTC"),
        (Schedule(cron="0 0 * * 5L"), "at 00:00 on the last Friday of the month, UTC"),
        (Schedule(cron="0 0 1,15 * 1"),
         "at 00:00 on days 1 and 15 of the month or on Monday, UTC"),
        (Schedule(cron="0 0 12 ? JAN-MAR,DEC SAT,SUN"),
         "at 12:00 on Saturday and Sunday, in January to March and December, UTC"),
        (Schedule(cron="10-20/5 * 9-17 * * ?"),
         "at seconds 10, 15 and 20 of every minute, in hours 9-17, UTC"),
    ],
)
def test_words_for_common_schedules(schedule: Schedule, words: str) -> None:
    assert schedule_words(schedule) == words


def test_an_unreadable_cron_says_so_and_why() -> None:
    assert cron_words("61 * * * *") == (
        "cannot be read ('61 * * * *': minute field: '61' is not 0-59)"
    )
    assert cron_words("0 0 31 2 *").startswith("cannot be read (")


def test_durations_are_exact() -> None:
    assert duration_words(1500) == "1 s 500 ms"
    assert duration_words(86_400_000 + 1000) == "1 d 1 s"
    assert duration_words(0) == "0 ms"


# ---- generated expressions ----------------------------------------------------------------


def field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    number = st.integers(low, high).map(str)
    value = st.one_of(number, st.sampled_from(names).map(str)) if names else number
    one = st.one_of(
        st.just("*"),
        value,
        st.tuples(value, value).map("-".join),
        st.tuples(st.sampled_from(["*", str(low)]), st.integers(1, high - low + 1))
        .map(lambda t: f"{t[0]}/{t[1]}"),
        st.tuples(number, number, st.integers(1, 9)).map(lambda t: f"{t[0]}-{t[1]}/{t[2]}"),
    )
    return st.lists(one, min_size=1, max_size=3).map(",".join)


DAY_OF_MONTH = st.one_of(field(1, 31), st.sampled_from(["L", "LW", "15W", "1W", "31W", "L,15"]))
DAY_OF_WEEK = st.one_of(
    field(0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
    st.sampled_from(["5#3", "1#1", "0#5", "5L", "MON#2,FRI", "6L", "?"]),
)
EXPRESSIONS = st.tuples(
    st.booleans(), field(0, 59), field(0, 59), field(0, 23), DAY_OF_MONTH,
    field(1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                  "DEC")),
    DAY_OF_WEEK,
).map(lambda t: " ".join(t[1:] if t[0] else t[2:]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(EXPRESSIONS, st.text(max_size=40)), st.sampled_from([None, "Asia/Shanghai"]))
def test_words_never_fail(expression: str, zone: str | None) -> None:
    words = cron_words(expression, zone)
    assert words
    assert words.startswith("cannot be read") or words.endswith(f", {zone or 'UTC'}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1)))
def test_what_the_words_claim_holds_for_the_next_firings(expression: str, start: datetime) -> None:
    try:  # as a stored cron runs (fss.domain.cron.next_cron_time): the lenient parse
        compile_cron(expression, strict=False)
    except InvalidField:
        assert cron_words(expression).startswith("cannot be read")
        return
    words = cron_words(expression)
    firings = []
    at = start.replace(tzinfo=UTC)
    for _ in range(FIRINGS):
        try:
            at = next_cron_time(expression, at)
        except InvalidField:
            break
        firings.append(at)
    for claim in claims(words):
        for firing in firings:
            assert claim(firing), f"{expression!r}: {words!r} is false for {firing}"


def claims(words: str) -> list[Callable[[datetime], bool]]:
    """Checks for what the words say: clock times, 'every N unit', weekdays, months."""
    found: list[Callable[[datetime], bool]] = []
    times = re.match(r"at ((?:\d\d:\d\d(?::\d\d)?(?:, | and )?)+)(?: |,|$)", words)
    if times:
        listed = set(re.findall(r"\d\d:\d\d(?::\d\d)?", times.group(1)))
        shape = "%H:%M:%S" if any(len(t) == 8 for t in listed) else "%H:%M"
        found.append(lambda f: f.strftime(shape) in listed)
    every = re.match(r"every (\d+) (s|min|h)(?:,|$)", words)
    if every:
        step, unit = int(every.group(1)), every.group(2)
        found.append(lambda f: {"s": f.second, "min": f.minute, "h": f.hour}[unit] % step == 0)
    if words.startswith("every second") or words.startswith("every minute"):
        found.append(lambda f: True)
    plain_weekdays = not any(t in words for t in (" or ", "of the month", " if also ", " to "))
    names = {d for d in WEEKDAYS if d in words}  # ranges ("to"): the exact wordings above
    if names and plain_weekdays:
        found.append(lambda f: WEEKDAYS[(f.weekday() + 1) % 7] in names)
    months = re.search(r", in ((?:[A-Z][a-z]+(?:, | and | to )?)+),", words)
    if months and " to " not in months.group(1):
        named = {m for m in MONTHS if m in months.group(1)}
        found.append(lambda f: MONTHS[f.month - 1] in named)
    return found


def test_claims_catch_false_words() -> None:
    """The checker itself can fail: a wrong time, step, weekday or month is caught."""
    friday_noon = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)  # a Friday in May
    assert not all(c(friday_noon) for c in claims("at 02:30 every day, UTC"))
    assert not all(c(friday_noon.replace(minute=7)) for c in claims("every 15 min, UTC"))
    assert not all(c(friday_noon) for c in claims("at 12:00 on Monday, UTC"))
    assert not all(c(friday_noon) for c in claims("at 12:00, in January, UTC"))
    assert all(c(friday_noon) for c in claims("at 12:00 on Friday, in May, UTC"))


def test_words_and_next_firings_agree_on_a_dst_zone() -> None:
    start = datetime(2024, 3, 30, 23, 0, tzinfo=UTC)
    first = next_cron_time("30 2 * * *", start, "Asia/Shanghai")
    assert first.astimezone(timezone(timedelta(hours=8))).strftime("%H:%M") == "02:30"
    assert cron_words("30 2 * * *", "Asia/Shanghai") == "at 02:30 every day, Asia/Shanghai"
