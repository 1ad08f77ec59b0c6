"""The overlap policy's pure part: which passed slot runs now, and the slot after a run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from fss.domain.overlap import clock_time, passed_slot, replaced_reason, slot_after
from fss.domain.schedule import Schedule, next_run_at

UTC = timezone.utc
slots = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
intervals = st.integers(min_value=1, max_value=86_400_000)
durations = st.integers(min_value=0, max_value=10 * 86_400_000)


@given(slots, intervals, durations)
def test_buffer_one_runs_the_first_passed_slot_exactly_when_one_passed(
    slot: datetime, interval_ms: int, run_ms: int
) -> None:
    schedule = Schedule(interval_ms=interval_ms)
    end = slot + timedelta(milliseconds=run_ms)
    regular = next_run_at(schedule, slot, end)
    first_after = slot + timedelta(milliseconds=interval_ms)

    passed = passed_slot("buffer_one", schedule, slot, slot, regular)

    # A slot passed iff the first one after the run's slot came before the run's end.
    assert (passed is not None) == (first_after < end)
    if passed is not None:
        assert passed == first_after < regular
    assert passed_slot("replace", schedule, slot, slot, regular) == passed
    assert passed_slot("skip", schedule, slot, slot, regular) is None


@given(slots, intervals, durations, durations)
def test_the_run_of_a_passed_slot_counts_only_slots_from_its_own_start(
    slot: datetime, interval_ms: int, wait_ms: int, run_ms: int
) -> None:
    """The extra run stands for `slot` but began later: slots before its start were covered
    by it; one that passed while it ran is on the grid, at or after its start."""
    schedule = Schedule(interval_ms=interval_ms)
    began = slot + timedelta(milliseconds=wait_ms)
    end = began + timedelta(milliseconds=run_ms)
    regular = next_run_at(schedule, slot, end)

    passed = passed_slot("buffer_one", schedule, slot, began, regular)

    if passed is not None:
        assert began <= passed < end
        assert (passed - slot) % timedelta(milliseconds=interval_ms) == timedelta(0)
    else:
        assert slot_after(schedule, slot, began) >= regular  # type: ignore[operator]


def test_cron_and_job_set_schedules() -> None:
    slot = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)
    cron = Schedule(cron="* * * * *")
    end = slot + timedelta(minutes=2, seconds=30)
    assert passed_slot("buffer_one", cron, slot, slot, next_run_at(cron, slot, end)) == (
        slot + timedelta(minutes=1)
    )
    assert slot_after(Schedule(), slot, slot) is None  # the job sets its next time
    assert passed_slot("buffer_one", Schedule(), slot, slot, end) is None
    assert slot_after(Schedule(cron="61 * * * *"), slot, slot) is None  # cannot be evaluated


def test_slots_are_named_by_their_clock_time() -> None:
    assert clock_time(datetime(2031, 1, 1, 9, 0, 2, tzinfo=UTC)) == "09:00:02"
    assert clock_time(datetime(2031, 1, 1, 9, 0, 2, 589793, tzinfo=UTC)) == "09:00:02.589"
    assert replaced_reason(datetime(2031, 1, 1, 9, 0, 2, tzinfo=UTC)) == (
        "replaced by the run of 09:00:02"
    )
