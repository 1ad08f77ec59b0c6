"""Cron expressions: 5 fields minute first, 6 fields seconds first, Quartz '?', time zones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from fss.domain.cron import next_cron_time, validate_cron
from fss.errors import InvalidField

UTC = timezone.utc


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def firings(
    expression: str, after: datetime, count: int, zone: str | None = None
) -> list[datetime]:
    result = []
    moment = after
    for _ in range(count):
        moment = next_cron_time(expression, moment, zone)
        result.append(moment)
    return result


# -- field order ------------------------------------------------------------------------------


def test_given_five_fields_then_the_first_is_the_minute() -> None:
    assert next_cron_time("5 * * * *", at(2024, 1, 1, 10, 0)) == at(2024, 1, 1, 10, 5)


def test_given_five_fields_then_every_minute_fires_on_whole_minutes_strictly_after() -> None:
    assert firings("* * * * *", at(2024, 1, 1, 10, 0, 0), 3) == [
        at(2024, 1, 1, 10, 1),
        at(2024, 1, 1, 10, 2),
        at(2024, 1, 1, 10, 3),
    ]


def test_given_six_fields_then_the_first_is_the_second() -> None:
    # seconds-first: second 30 of every minute, not minute 30
    assert firings("30 * * * * *", at(2024, 1, 1, 10, 0, 0), 2) == [
        at(2024, 1, 1, 10, 0, 30),
        at(2024, 1, 1, 10, 1, 30),
    ]


def test_given_every_two_seconds_then_it_fires_on_even_seconds_only() -> None:
    fired = firings("*/2 * * * * *", at(2024, 1, 1, 10, 0, 1, 500_000), 5)

    assert fired == [at(2024, 1, 1, 10, 0, s) for s in (2, 4, 6, 8, 10)]
    assert all(f.second % 2 == 0 and f.microsecond == 0 for f in fired)


def test_given_a_moment_exactly_on_a_firing_then_the_next_one_is_strictly_later() -> None:
    assert next_cron_time("*/2 * * * * *", at(2024, 1, 1, 10, 0, 2)) == at(2024, 1, 1, 10, 0, 4)
    assert next_cron_time("0 * * * *", at(2024, 1, 1, 10, 0)) == at(2024, 1, 1, 11, 0)


def test_given_six_fields_with_minute_and_hour_then_seconds_minutes_hours_apply_in_order() -> None:
    assert next_cron_time("15 30 12 * * *", at(2024, 1, 1, 0, 0)) == at(2024, 1, 1, 12, 30, 15)


def test_results_are_aware_utc() -> None:
    fired = next_cron_time("0 8 * * *", at(2024, 1, 1), "Asia/Shanghai")

    assert fired.tzinfo is not None
    assert fired.utcoffset() == timedelta(0)


# -- Quartz -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quartz", "plain"),
    [
        ("0 12 ? * MON", "0 12 * * MON"),
        ("0 0 12 ? * MON", "0 0 12 * * MON"),
        ("0 0 1 * ?", "0 0 1 * *"),
    ],
)
def test_given_quartz_question_mark_then_it_means_any(quartz: str, plain: str) -> None:
    assert validate_cron(quartz) == plain
    start = at(2024, 1, 3)  # a Wednesday
    assert firings(quartz, start, 3) == firings(plain, start, 3)


def test_given_quartz_monday_noon_then_it_fires_on_mondays_at_noon() -> None:
    fired = firings("0 0 12 ? * MON", at(2024, 1, 3), 2)

    assert fired == [at(2024, 1, 8, 12), at(2024, 1, 15, 12)]


def test_validate_cron_strips_and_normalizes_whitespace() -> None:
    assert validate_cron("  */5   *  * * *  ") == "*/5 * * * *"


# -- time zones -------------------------------------------------------------------------------


def test_given_asia_shanghai_then_local_eight_oclock_is_midnight_utc() -> None:
    fired = firings("0 8 * * *", at(2024, 1, 1, 0, 0, 1), 2, "Asia/Shanghai")

    assert fired == [at(2024, 1, 2, 0, 0), at(2024, 1, 3, 0, 0)]
    shanghai = ZoneInfo("Asia/Shanghai")
    assert all(f.astimezone(shanghai).hour == 8 for f in fired)


def test_given_no_zone_then_utc_is_used() -> None:
    assert next_cron_time("0 8 * * *", at(2024, 1, 1)) == at(2024, 1, 1, 8)
    assert next_cron_time("0 8 * * *", at(2024, 1, 1), "UTC") == at(2024, 1, 1, 8)


def test_given_a_dst_zone_then_local_wall_time_is_kept_across_spring_forward() -> None:
    # Europe/Berlin goes from UTC+1 to UTC+2 on 2024-03-31.
    fired = firings("0 9 * * *", at(2024, 3, 29, 12), 3, "Europe/Berlin")

    assert fired == [at(2024, 3, 30, 8), at(2024, 3, 31, 7), at(2024, 4, 1, 7)]


def test_given_a_dst_zone_then_local_wall_time_is_kept_across_fall_back() -> None:
    # America/New_York goes from UTC-4 to UTC-5 on 2024-11-03.
    fired = firings("0 9 * * *", at(2024, 11, 2, 0), 2, "America/New_York")

    assert fired == [at(2024, 11, 2, 13), at(2024, 11, 3, 14)]


def test_given_a_dst_fall_back_night_then_a_half_hourly_cron_keeps_going_forward() -> None:
    # 2024-10-27 in Berlin: local 02:00-03:00 happens twice. Firings stay 30 min apart in UTC.
    fired = firings("*/30 * * * *", at(2024, 10, 26, 23, 0), 6, "Europe/Berlin")

    assert fired == [at(2024, 10, 26, 23, 30) + timedelta(minutes=30 * i) for i in range(6)]


def test_given_a_local_time_skipped_by_dst_then_the_day_still_fires_once_after_the_gap() -> None:
    # 02:30 does not exist in Berlin on 2024-03-31 (02:00 -> 03:00).
    berlin = ZoneInfo("Europe/Berlin")
    fired = firings("30 2 * * *", at(2024, 3, 30, 12), 2, "Europe/Berlin")

    first, second = (f.astimezone(berlin) for f in fired)
    assert first.date().isoformat() == "2024-03-31"
    assert first.hour >= 3
    assert (second.date().isoformat(), second.hour, second.minute) == ("2024-04-01", 2, 30)


@pytest.fixture
def host_zone_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("host_zone_tokyo")
def test_given_a_naive_time_then_it_is_read_as_utc_whatever_the_host_zone() -> None:
    # fss convention (fss.domain.clock.as_utc): a naive datetime is UTC already.
    fired = next_cron_time("0 * * * *", datetime(2024, 1, 1, 0, 30))

    assert fired == at(2024, 1, 1, 1, 0)


# -- invalid expressions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "a b c d e",
        "*/0 * * * *",
        "60 * * * * *",
        "L * * * *",
        "0 0 * * FOO",
        "x" * 200,
    ],
)
def test_given_an_invalid_expression_then_invalid_field_names_cron(expression: str) -> None:
    with pytest.raises(InvalidField) as info:
        validate_cron(expression)

    assert info.value.field == "cron"
    assert str(info.value).startswith("cron: ")


@pytest.mark.parametrize(
    "expression", ["", "   ", "*", "* * * *", "* * * * * * *", "0 0 12 ? * MON 2024", "@daily"]
)
def test_given_the_wrong_number_of_fields_then_invalid_field_names_cron_and_the_count(
    expression: str,
) -> None:
    with pytest.raises(InvalidField) as info:
        validate_cron(expression)

    assert info.value.field == "cron"
    assert f"has {len(expression.split())} fields" in info.value.reason


def test_given_an_invalid_expression_then_next_cron_time_raises_invalid_field_too() -> None:
    with pytest.raises(InvalidField) as info:
        next_cron_time("99 * * * *", at(2024, 1, 1))

    assert info.value.field == "cron"


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 2 *"])
def test_given_a_date_that_never_exists_then_it_is_rejected_as_an_invalid_cron(
    expression: str,
) -> None:
    # February 30th / April 31st never come: accepting the expression means every later
    # next-run computation for the group fails (CroniterBadDateError escapes).
    with pytest.raises(InvalidField) as info:
        validate_cron(expression)
        next_cron_time(expression, at(2024, 1, 1))

    assert info.value.field == "cron"


def test_given_an_unknown_zone_then_invalid_field_names_time_zone() -> None:
    with pytest.raises(InvalidField) as info:
        next_cron_time("* * * * *", at(2024, 1, 1), "Mars/Olympus_Mons")

    assert info.value.field == "time_zone"
