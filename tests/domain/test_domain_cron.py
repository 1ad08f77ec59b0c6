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
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc, arg-type]


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


# -- wrap-around ranges ------------------------------------------------------------------------


def local_firings(expression: str, after: datetime, count: int, zone: str) -> list[str]:
    """Firings as ISO 8601 in the zone, the way `fss group next` prints them."""
    return [
        f.astimezone(ZoneInfo(zone)).isoformat() for f in firings(expression, after, count, zone)
    ]


def test_given_an_hour_range_wrapping_midnight_with_a_step_then_it_fires_at_23_1_and_3() -> None:
    # croniter alone expands 23-3/2 to {2, 23}: from 00:30 it fired at 02:00.
    assert next_cron_time("* * 23-3/2 * * *", at(2024, 1, 1, 0, 30)) == at(2024, 1, 1, 1, 0)
    hours = {f.hour for f in firings("0 0 23-3/2 * * *", at(2024, 1, 1), 6)}
    assert hours == {23, 1, 3}


def test_given_a_month_range_wrapping_the_year_with_a_step_then_months_are_9_12_3_6() -> None:
    fired = firings("0 0 0 1 9-8/3 *", at(2024, 1, 1), 4)

    assert [f.month for f in fired] == [3, 6, 9, 12]
    assert next_cron_time("* * * * 9-8/3 *", at(2024, 1, 1)) == at(2024, 3, 1)


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("0 0 * * FRI-MON", [5, 6, 7, 8, 12]),  # 2024-01-05 is a Friday
        ("0 0 * * 5-1/2", [5, 7, 12, 14, 19]),  # Fridays and Sundays
        ("0 0 30-2 * *", [30, 31, 1, 2, 1]),  # January 30 to February 2, then March 1
    ],
)
def test_given_a_day_range_wrapping_around_then_it_runs_through_the_end_of_the_cycle(
    expression: str, days: list[int]
) -> None:
    fired = firings(expression, at(2024, 1, 4), 5)

    assert [f.day for f in fired] == days


# -- DST: Vixie cron's rule --------------------------------------------------------------------


def test_given_a_fixed_time_when_clocks_fall_back_then_it_fires_once() -> None:
    # 2016-11-06 in New York: 01:00-01:59 happens at -04:00 and again at -05:00.
    fired = local_firings("0 0 1 * * *", at(2016, 11, 5, 12), 3, "America/New_York")

    assert fired == [
        "2016-11-06T01:00:00-04:00",
        "2016-11-07T01:00:00-05:00",
        "2016-11-08T01:00:00-05:00",
    ]


def test_given_a_fixed_time_already_run_in_the_first_pass_then_the_second_pass_skips_it() -> None:
    # A run that ended during the repeated hour (01:10 EST, second pass) plans the next day.
    after = datetime(2016, 11, 6, 1, 10, tzinfo=ZoneInfo("America/New_York"), fold=1)

    fired = next_cron_time("0 30 1 * * *", after, "America/New_York")

    assert fired == at(2016, 11, 7, 6, 30)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "0 */30 1 * * *",
            ["01:00:00-04:00", "01:30:00-04:00", "01:00:00-05:00", "01:30:00-05:00"],
        ),
        ("0 0 * * * *", ["01:00:00-04:00", "01:00:00-05:00", "02:00:00-05:00"]),
        ("*/30 0 1 * * *", ["01:00:00-04:00", "01:00:30-04:00", "01:00:00-05:00"]),
    ],
)
def test_given_a_time_field_starting_with_a_star_when_clocks_fall_back_then_both_passes_fire(
    expression: str, expected: list[str]
) -> None:
    fired = local_firings(expression, at(2016, 11, 6, 4, 30), len(expected), "America/New_York")

    assert fired == [f"2016-11-06T{t}" for t in expected]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 1-2 * * *", ["01:00:00-04:00", "02:00:00-05:00"]),  # a range is still fixed-time
        ("0 30 1/1 * * *", ["01:30:00-04:00", "02:30:00-05:00"]),
        ("0 0,30 1 * * *", ["01:00:00-04:00", "01:30:00-04:00"]),
    ],
)
def test_given_no_time_field_starting_with_a_star_when_clocks_fall_back_then_once(
    expression: str, expected: list[str]
) -> None:
    # Debian cron: only a minute or hour field starting with '*' makes a wildcard job.
    fired = local_firings(expression, at(2016, 11, 6, 4, 30), len(expected), "America/New_York")

    assert fired == [f"2016-11-06T{t}" for t in expected]


def test_given_a_first_pass_moment_then_the_second_pass_of_earlier_times_still_fires() -> None:
    # 01:40 EDT (first pass); 01:00 and 01:30 EST (second pass) are still to come.
    after = datetime(2016, 11, 6, 1, 40, tzinfo=ZoneInfo("America/New_York"))

    fired = local_firings("0 */30 1 * * *", after, 3, "America/New_York")

    assert fired == [
        "2016-11-06T01:00:00-05:00",
        "2016-11-06T01:30:00-05:00",
        "2016-11-07T01:00:00-05:00",
    ]


def test_berlin_daily_0230_in_march_fires_once_right_after_the_jump() -> None:
    # 2026-03-29: 02:00 -> 03:00; 02:30 does not exist.
    fired = local_firings("0 30 2 * * *", at(2026, 3, 27, 12), 4, "Europe/Berlin")

    assert fired == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_berlin_daily_0230_in_october_fires_once_on_the_day_0230_happens_twice() -> None:
    # 2026-10-25: 03:00 -> 02:00; 02:30 happens at +02:00 and again at +01:00.
    fired = local_firings("0 30 2 * * *", at(2026, 10, 23, 12), 4, "Europe/Berlin")

    assert fired == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_given_several_skipped_times_then_they_fire_once_together_after_the_jump() -> None:
    fired = local_firings("0 0,15,30,45 2,3 * * *", at(2026, 3, 29, 0, 50), 3, "Europe/Berlin")

    assert fired == [
        "2026-03-29T03:00:00+02:00",  # 02:00, 02:15, 02:30, 02:45 and 03:00: one run
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Debian cron: a wildcard job runs at the new time only, no extra run at the jump.
        ("*/15 * * * *", ["29T01:45:00+01:00", "29T03:00:00+02:00", "29T03:15:00+02:00"]),
        ("30 * * * *", ["29T03:30:00+02:00", "29T04:30:00+02:00"]),
        ("* 2 * * *", ["30T02:00:00+02:00", "30T02:01:00+02:00"]),  # 29th: 02:xx skipped
        ("0 */2 * * *", ["29T04:00:00+02:00", "29T06:00:00+02:00"]),
    ],
)
def test_given_a_wildcard_job_when_clocks_spring_forward_then_skipped_times_do_not_fire(
    expression: str, expected: list[str]
) -> None:
    # 2026-03-29 in Berlin: 02:00 -> 03:00. Minute or hour starting with '*' = wildcard job.
    fired = local_firings(expression, at(2026, 3, 29, 0, 40), len(expected), "Europe/Berlin")

    assert fired == ["2026-03-" + t for t in expected]


@pytest.mark.parametrize("expression", ["30 2 * * *", "30 1-3 * * *", "30 2,4 * * *"])
def test_given_a_fixed_time_job_when_clocks_spring_forward_then_it_runs_at_the_jump(
    expression: str,
) -> None:
    # No time field starts with '*' (a range or a list still counts as fixed, as in Debian).
    fired = next_cron_time(expression, at(2026, 3, 29, 0, 40), "Europe/Berlin")

    assert fired == at(2026, 3, 29, 1, 0)  # 03:00+02:00, the instant the clocks jumped


def test_given_a_lord_howe_half_hour_jump_then_only_fixed_time_jobs_run_at_it() -> None:
    # Australia/Lord_Howe 2024-10-06: 02:00 +10:30 -> 02:30 +11:00.
    zone = "Australia/Lord_Howe"
    assert local_firings("15 2 * * *", at(2024, 10, 5, 15), 1, zone) == [
        "2024-10-06T02:30:00+11:00"
    ]
    assert local_firings("*/20 2 * * *", at(2024, 10, 5, 15), 2, zone) == [
        "2024-10-06T02:40:00+11:00",
        "2024-10-07T02:00:00+11:00",
    ]


# -- steps wider than the field ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("*/60 * * * *", "minute"),
        ("*/60 * * * * *", "second"),
        ("* * * 1/13 *", "month"),
        ("* * * * 9-8/13 *", "month"),
        ("* */25 * * *", "hour"),
        ("* */24 * * *", "hour"),
        ("* * */32 * *", "day-of-month"),
        ("* * * * */8", "day-of-week"),
    ],
)
def test_given_a_step_larger_than_the_field_then_invalid_field_names_cron_and_the_field(
    expression: str, field: str
) -> None:
    with pytest.raises(InvalidField) as info:
        validate_cron(expression)

    assert info.value.field == "cron"
    assert f"{field} field: step" in info.value.reason
    assert "larger than" in info.value.reason


@pytest.mark.parametrize(
    "expression", ["*/59 * * * *", "* */23 * * *", "* * */31 * *", "* * * */12 *", "* * * * */7"]
)
def test_given_a_step_within_the_field_then_it_is_accepted(expression: str) -> None:
    assert validate_cron(expression) == expression


def test_given_a_stored_cron_refused_today_then_the_scheduler_still_computes_its_runs() -> None:
    # Stored before fss refused it: croniter ran */60 as minute 0; it keeps doing so.
    with pytest.raises(InvalidField):
        validate_cron("*/60 * * * *")

    assert firings("*/60 * * * *", at(2024, 1, 1, 0, 30), 2) == [
        at(2024, 1, 1, 1),
        at(2024, 1, 1, 2),
    ]
    assert next_cron_time("0 0 0 1 * MON", at(2024, 1, 2)) == at(2024, 1, 8)


# -- day of month and day of week --------------------------------------------------------------


def test_given_five_fields_with_both_days_restricted_then_either_day_fires() -> None:
    # Classic cron: the 1st, the 15th and every Monday of January 2024.
    fired = firings("0 0 1,15 * MON", at(2023, 12, 31), 5)

    assert [f.day for f in fired] == [1, 8, 15, 22, 29]


def test_given_a_day_field_starting_with_a_star_then_both_days_must_match() -> None:
    # Vixie cron: */10 does not restrict the day, so the Sunday must also be day 1, 11, 21, 31.
    fired = firings("0 0 */10 * SUN", at(2024, 1, 1), 2)

    assert fired == [at(2024, 1, 21), at(2024, 2, 11)]


@pytest.mark.parametrize("expression", ["0 0 12 1 * MON", "0 0 12 1,15 * MON-FRI", "0 0 0 L * 5"])
def test_given_six_fields_with_both_days_restricted_then_it_is_refused_asking_for_a_question_mark(
    expression: str,
) -> None:
    with pytest.raises(InvalidField) as info:
        validate_cron(expression)

    assert info.value.field == "cron"
    assert "put '?' in one of them" in info.value.reason


@pytest.mark.parametrize("expression", ["0 0 12 1 * ?", "0 0 12 ? * MON", "0 0 12 * * MON"])
def test_given_six_fields_with_one_day_field_open_then_it_is_accepted(expression: str) -> None:
    validate_cron(expression)


# -- Quartz day specials -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 L * *", [at(2024, 1, 31), at(2024, 2, 29)]),
        ("0 0 LW * *", [at(2024, 1, 31), at(2024, 2, 29), at(2024, 3, 29)]),
        ("0 0 15W * *", [at(2024, 1, 15), at(2024, 2, 15), at(2024, 3, 15), at(2024, 6, 14)]),
        ("0 0 * * FRI#3", [at(2024, 1, 19), at(2024, 2, 16)]),
        ("0 0 * * 5L", [at(2024, 1, 26), at(2024, 2, 23)]),
    ],
)
def test_quartz_last_nearest_weekday_and_nth_weekday(
    expression: str, expected: list[datetime]
) -> None:
    fired = firings(expression, at(2024, 1, 1), 6 if "15W" in expression else len(expected))

    assert [f for f in fired if f in expected] == expected


def test_given_a_comma_list_of_plain_values_then_fall_back_fires_each_once() -> None:
    fired = local_firings("0 0,30 1 * * *", at(2016, 11, 6, 4, 30), 3, "America/New_York")

    assert fired == [
        "2016-11-06T01:00:00-04:00",
        "2016-11-06T01:30:00-04:00",
        "2016-11-07T01:00:00-05:00",
    ]


# -- day of week 7 (issue 16, A4) --------------------------------------------------------------


def weekdays_fired(expression: str) -> set[str]:
    """The days of the week of the days it fires on, over January and February 2024."""
    days = [at(2024, 1, 1) + timedelta(days=n) for n in range(60)]
    return {
        day.strftime("%a")
        for day in days
        if next_cron_time(expression, day - timedelta(seconds=1)) < day + timedelta(days=1)
    }


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("0 0 * * 7", {"Sun"}),  # fired every day: _cycle(7, 7) was 0..7
        ("0 0 * * 5,7", {"Fri", "Sun"}),
        ("* * * * * 3,5,7", {"Wed", "Fri", "Sun"}),  # 6 fields: seconds first
        ("0 0 * * 7-7", {"Sun"}),
        ("0 0 * * 5-7", {"Fri", "Sat", "Sun"}),
        ("0 0 * * 6-7/2", {"Sat"}),
        ("0 0 * * 5/2", {"Fri", "Sun"}),  # a/n runs to 7, as in cronie and cronsim
        ("0 0 * * 7/3", {"Sun"}),
        ("0 0 * * */7", {"Sun"}),
        ("0 0 * * 7-2", {"Sun", "Mon", "Tue"}),  # wrap-around from Sunday
        ("0 0 * * SUN", {"Sun"}),
        ("0 0 * * sun,7,0", {"Sun"}),
        ("0 0 * * 7#2", {"Sun"}),
        ("0 0 * * 7L", {"Sun"}),
    ],
)
def test_given_day_of_week_7_then_it_is_sunday_only(expression: str, days: set[str]) -> None:
    validate_cron(expression)

    assert weekdays_fired(expression) == days


def test_given_sunday_as_7_then_it_fires_on_the_same_days_as_0() -> None:
    start = at(2024, 1, 1)
    assert firings("0 0 * * 7", start, 10) == firings("0 0 * * 0", start, 10)
    assert firings("0 0 * * 7", start, 2) == [at(2024, 1, 7), at(2024, 1, 14)]


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("0 0 * * 8", "day-of-week"),
        ("0 0 32 * *", "day-of-month"),
        ("0 0 0 * *", "day-of-month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * 0 *", "month"),
        ("0 24 * * *", "hour"),
        ("60 * * * *", "minute"),
        ("\u00b2 * * * *", "minute"),  # superscript two: str.isdigit() is true, int() fails
        ("\u0663 * * * *", "minute"),  # Arabic-Indic three: was read as 3
        ("*/\u00b2 * * * *", "minute"),
        ("0 0 \u00b3W * *", "day-of-month"),
        ("0 0 * * 1#\u00b2", "day-of-week"),
    ],
)
def test_given_a_value_outside_its_field_then_one_line_error_names_the_field(
    expression: str, field: str
) -> None:
    with pytest.raises(InvalidField) as info:
        validate_cron(expression)

    assert info.value.field == "cron"
    assert f"{field} field" in info.value.reason
    assert "\n" not in info.value.reason


@pytest.mark.parametrize(
    "expression", ["0 0 31 12 *", "0 0 L DEC *", "0 0 1 JAN-DEC SUN-SAT", "59 23 31 12 7"]
)
def test_given_the_last_value_of_each_field_then_it_is_accepted(expression: str) -> None:
    validate_cron(expression)
    assert next_cron_time(expression, at(2024, 12, 30)) <= at(2025, 1, 6)
