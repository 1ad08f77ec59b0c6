"""Next-run computation: job-returned > cron > interval > 30 s fallback; fixed-rate grid."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fss.domain.clock import ManualClock
from fss.domain.schedule import (
    FALLBACK_DELAY,
    NextRun,
    Schedule,
    finish_time,
    initial_run_at,
    job_time_is_past,
    next_on_grid,
    next_run_at,
    plan_next_run,
)

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ms(value: int) -> timedelta:
    return timedelta(milliseconds=value)


# -- priority ---------------------------------------------------------------------------------


def test_given_a_job_returned_time_then_it_wins_over_cron_and_interval() -> None:
    schedule = Schedule(interval_ms=1000, cron="0 * * * *")
    wanted = T0 + timedelta(minutes=7, seconds=3)

    assert next_run_at(schedule, T0, T0 + ms(200), job_next_at=wanted) == wanted


def test_given_cron_and_interval_then_cron_wins() -> None:
    schedule = Schedule(interval_ms=1000, cron="0 * * * *")

    assert next_run_at(schedule, T0, T0 + ms(200)) == T0 + timedelta(hours=1)


def test_given_only_an_interval_then_the_next_slot_of_the_grid() -> None:
    assert next_run_at(Schedule(interval_ms=5000), T0, T0 + ms(1200)) == T0 + ms(5000)


def test_given_no_schedule_and_no_job_time_then_thirty_seconds_after_finishing() -> None:
    finished = T0 + ms(4321)

    assert next_run_at(Schedule(), T0, finished) == finished + timedelta(seconds=30)
    assert timedelta(seconds=30) == FALLBACK_DELAY


def test_given_no_schedule_and_a_job_time_then_the_job_time() -> None:
    wanted = T0 + timedelta(hours=3)

    assert next_run_at(Schedule(), T0, T0 + ms(10), job_next_at=wanted) == wanted


def test_schedule_kind_follows_the_same_priority() -> None:
    assert Schedule(interval_ms=10, cron="* * * * *").kind == "cron"
    assert Schedule(interval_ms=10).kind == "interval"
    assert Schedule().kind == "job"


# -- cron after a run -------------------------------------------------------------------------


def test_given_cron_and_a_run_that_overran_then_the_first_firing_after_it_finished() -> None:
    schedule = Schedule(cron="*/10 * * * * *")
    finished = T0 + ms(25_500)

    assert next_run_at(schedule, T0, finished) == T0 + timedelta(seconds=30)


def test_given_cron_with_a_zone_then_the_zone_applies() -> None:
    schedule = Schedule(cron="0 8 * * *", time_zone="Asia/Shanghai")

    # 08:00 in Shanghai is 00:00 UTC.
    assert next_run_at(schedule, T0, T0 + ms(1)) == datetime(2024, 5, 2, 0, 0, tzinfo=UTC)


# -- interval: fixed rate on the grid start_at + k * interval --------------------------------


def test_given_runs_shorter_than_the_interval_then_a_thousand_runs_never_drift() -> None:
    schedule = Schedule(interval_ms=333)
    planned = T0
    for k in range(1, 1001):
        duration = ms((k * 37) % 333)  # 0..332 ms, never a full interval
        planned = next_run_at(schedule, planned, planned + duration)
        assert planned == T0 + k * ms(333)


def test_given_a_clock_driven_loop_then_every_run_starts_on_the_grid() -> None:
    clock = ManualClock(T0)
    schedule = Schedule(interval_ms=10_000)
    planned = T0
    for k in range(1, 50):
        clock.set(planned)
        clock.advance(ms(1234 + k))  # the run takes a little longer each time
        planned = next_run_at(schedule, planned, clock.now())
        assert (planned - T0) % ms(10_000) == timedelta(0)
        assert planned == T0 + k * ms(10_000)


@pytest.mark.parametrize(
    ("finish_offset_ms", "expected_slot"),
    [
        (10_001, 2),  # just past slot 1: slot 1 is skipped
        (25_000, 3),  # slots 1 and 2 covered
        (29_999, 3),
        (30_001, 4),
        (95_000, 10),
    ],
)
def test_given_an_overrunning_run_then_covered_slots_are_skipped_and_the_grid_kept(
    finish_offset_ms: int, expected_slot: int
) -> None:
    schedule = Schedule(interval_ms=10_000)
    finished = T0 + ms(finish_offset_ms)

    nxt = next_run_at(schedule, T0, finished)

    assert nxt == T0 + expected_slot * ms(10_000)
    assert nxt >= finished
    assert nxt - finished < ms(10_000)


def test_given_a_run_finishing_exactly_on_a_slot_then_that_slot_is_used() -> None:
    schedule = Schedule(interval_ms=10_000)

    assert next_run_at(schedule, T0, T0 + ms(20_000)) == T0 + ms(20_000)


def test_an_interval_never_returns_a_time_before_the_finish() -> None:
    schedule = Schedule(interval_ms=7_000)
    for offset in range(1, 100_000, 997):
        finished = T0 + ms(offset)
        nxt = next_run_at(schedule, T0, finished)
        assert nxt >= finished
        assert nxt > T0
        assert (nxt - T0) % ms(7_000) == timedelta(0)
        assert nxt - finished < ms(7_000)


def test_next_on_grid_counts_from_the_anchor_with_k_at_least_one() -> None:
    interval = ms(1000)

    assert next_on_grid(T0, interval, T0 - timedelta(hours=1)) == T0 + interval
    assert next_on_grid(T0, interval, T0) == T0 + interval
    assert next_on_grid(T0, interval, T0 + ms(1)) == T0 + interval
    assert next_on_grid(T0, interval, T0 + ms(1001)) == T0 + 2 * interval
    assert next_on_grid(T0, interval, T0 + ms(3000)) == T0 + 3 * interval


def test_next_on_grid_handles_sub_millisecond_remainders() -> None:
    interval = ms(1000)
    not_before = T0 + ms(2000) + timedelta(microseconds=1)

    assert next_on_grid(T0, interval, not_before) == T0 + ms(3000)


# -- the first run of a group -----------------------------------------------------------------


def test_given_a_future_start_then_the_first_run_is_the_start() -> None:
    start = T0 + timedelta(days=2, milliseconds=17)

    assert initial_run_at(Schedule(interval_ms=60_000), start, T0) == start
    assert initial_run_at(Schedule(), start, T0) == start


def test_given_a_start_equal_to_now_then_it_runs_now() -> None:
    assert initial_run_at(Schedule(interval_ms=60_000), T0, T0) == T0


def test_given_a_past_start_and_an_interval_then_the_next_grid_point_from_now() -> None:
    start = T0 - timedelta(seconds=95)  # grid: start + k * 60 s -> T0 - 35 s, T0 + 25 s

    first = initial_run_at(Schedule(interval_ms=60_000), start, T0)

    assert first == T0 + timedelta(seconds=25)
    assert (first - start) % timedelta(seconds=60) == timedelta(0)


def test_given_a_past_start_exactly_on_the_grid_then_now() -> None:
    start = T0 - timedelta(seconds=120)

    assert initial_run_at(Schedule(interval_ms=60_000), start, T0) == T0


def test_given_a_past_start_and_no_schedule_then_now() -> None:
    assert initial_run_at(Schedule(), T0 - timedelta(days=3), T0) == T0


def test_given_a_future_start_and_cron_then_the_first_firing_at_or_after_the_start() -> None:
    schedule = Schedule(cron="0 * * * *")

    assert initial_run_at(schedule, T0 + timedelta(minutes=10), T0) == T0 + timedelta(hours=1)
    # a start that is itself a firing counts
    assert initial_run_at(schedule, T0 + timedelta(hours=2), T0) == T0 + timedelta(hours=2)


def test_given_a_past_start_and_cron_then_the_first_firing_at_or_after_now() -> None:
    schedule = Schedule(cron="*/2 * * * * *")
    now = T0 + ms(1500)

    assert initial_run_at(schedule, T0 - timedelta(days=1), now) == T0 + ms(2000)
    assert initial_run_at(schedule, T0 - timedelta(days=1), T0) == T0


def test_given_cron_in_a_zone_then_the_first_run_uses_the_zone() -> None:
    schedule = Schedule(cron="0 8 * * *", time_zone="Asia/Shanghai")

    assert initial_run_at(schedule, T0, T0) == datetime(2024, 5, 2, 0, 0, tzinfo=UTC)


def test_describe_names_the_schedule() -> None:
    assert Schedule(interval_ms=2000).describe() == "every 2000 ms"
    assert Schedule(cron="*/2 * * * * *").describe() == "cron */2 * * * * *"
    assert Schedule(cron="0 8 * * *", time_zone="Asia/Shanghai").describe() == (
        "cron 0 8 * * * (Asia/Shanghai)"
    )
    assert Schedule().describe() == "set by job"


# -- the scheduler side's clock judges a worker's times ---------------------------------------


def test_given_a_worker_clock_running_fast_then_the_finish_is_the_scheduler_now() -> None:
    now = T0 + ms(300)

    assert finish_time(T0, now + timedelta(seconds=60), T0 + ms(200), now) == now


def test_given_a_worker_clock_running_slow_then_the_finish_is_dispatch_plus_duration() -> None:
    earliest_end = T0 + ms(5000)  # dispatched at T0, ran 5 s

    assert finish_time(T0, T0 - timedelta(seconds=55), earliest_end, T0 + ms(5100)) == (
        earliest_end
    )


def test_given_agreeing_clocks_then_the_worker_time_is_kept() -> None:
    assert finish_time(T0, T0 + ms(700), T0 + ms(500), T0 + ms(900)) == T0 + ms(700)


def test_given_a_bogus_duration_then_the_finish_is_never_after_now() -> None:
    now = T0 + ms(900)

    assert finish_time(T0, T0 + ms(700), T0 + timedelta(days=9), now) == now


def test_the_finish_is_never_before_the_planned_time() -> None:
    assert finish_time(T0, T0 - ms(5), T0 - ms(5), T0 - ms(1)) == T0


@pytest.mark.parametrize("worker_offset", [timedelta(0), timedelta(seconds=60)])
def test_given_a_fast_worker_clock_then_an_interval_group_skips_no_slot(
    worker_offset: timedelta,
) -> None:
    schedule = Schedule(interval_ms=1000)
    planned = T0
    for k in range(1, 20):
        scheduler_end = planned + ms(100)
        finished = finish_time(planned, scheduler_end + worker_offset, scheduler_end, scheduler_end)
        planned = next_run_at(schedule, planned, finished)
        assert planned == T0 + k * ms(1000)


# -- a job-returned time in the past ----------------------------------------------------------


def test_a_job_time_before_the_planned_time_and_the_run_is_past() -> None:
    assert job_time_is_past(T0 - ms(1), T0, T0 + ms(50))
    assert not job_time_is_past(T0, T0, T0 + ms(50))
    assert not job_time_is_past(T0 + ms(20), T0, T0 + ms(50))  # e.g. start_at + 20 ms: not past


def test_again_at_once_from_a_slow_worker_clock_is_not_past() -> None:
    worker_began = T0 - timedelta(seconds=60)  # the worker's clock is a minute slow

    assert not job_time_is_past(worker_began + ms(30), T0, worker_began)


def test_given_a_job_time_in_the_future_then_it_is_used() -> None:
    wanted = T0 + timedelta(minutes=3)

    planned = plan_next_run(Schedule(interval_ms=1000), planned_at=T0, finished_at=T0 + ms(10),
                            now=T0 + ms(20), job_next_at=wanted, catch_up=True)

    assert planned == NextRun(wanted)


def test_given_again_at_once_then_the_job_time_is_used_without_catch_up() -> None:
    finished = T0 + ms(10)

    planned = plan_next_run(Schedule(), planned_at=T0, finished_at=finished, now=finished,
                            job_next_at=finished, run_began_at=T0 + ms(2))

    assert planned == NextRun(finished)


def test_given_a_past_job_time_then_a_catch_up_run_is_due_now() -> None:
    now = T0 + ms(30)

    planned = plan_next_run(Schedule(interval_ms=60_000), planned_at=T0, finished_at=T0 + ms(10),
                            now=now, job_next_at=T0 - timedelta(days=1))

    assert planned == NextRun(now, catch_up=True)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Schedule(cron="*/10 * * * * *", interval_ms=1000), T0 + ms(10_000)),
        (Schedule(interval_ms=4000), T0 + ms(4000)),
        (Schedule(), T0 + ms(10) + FALLBACK_DELAY),
    ],
)
def test_given_a_catch_up_run_returning_a_past_time_again_then_the_schedule_decides(
    schedule: Schedule, expected: datetime
) -> None:
    planned = plan_next_run(schedule, planned_at=T0, finished_at=T0 + ms(10), now=T0 + ms(30),
                            job_next_at=T0 - timedelta(hours=1), catch_up=True)

    assert planned == NextRun(expected)


def test_a_job_always_returning_a_past_time_runs_twice_per_schedule_period() -> None:
    """Given a job-only group whose job always returns yesterday, when it runs for 7 s of
    quick runs, then it ran a handful of times, not hundreds (no tight loop)."""
    clock = ManualClock(T0)
    planned, catch_up, runs = T0, False, 0
    while planned <= T0 + timedelta(seconds=7):
        clock.set(planned)
        runs += 1
        finished = clock.advance(ms(15))
        nxt = plan_next_run(Schedule(), planned_at=planned, finished_at=finished, now=finished,
                            job_next_at=T0 - timedelta(days=1), catch_up=catch_up)
        planned, catch_up = nxt.at, nxt.catch_up

    assert runs == 2
    assert planned == T0 + ms(30) + FALLBACK_DELAY
