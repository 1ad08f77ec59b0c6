"""JobContext on its own: what a job's calls send, and which values it refuses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fss.domain.clock import ManualClock
from fss.errors import InvalidField
from fss.events import Event, TaskLogged, TaskProgressed
from fss.worker_sdk import JobContext

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=timezone.utc)


def _context(sent: list[Event], clock: ManualClock) -> JobContext:
    return JobContext(task_id=7, attempt=2, group_id=3, job_name="j", data={}, start_at=T0,
                      client_id="c", emit=sent.append, clock=clock)


def test_every_progress_call_is_sent_even_with_an_unchanged_value() -> None:
    """Each call is a sign of life for the hung-run check, so none is swallowed."""
    sent: list[Event] = []
    clock = ManualClock(T0)
    ctx = _context(sent, clock)

    for _ in range(3):
        clock.advance(1)
        ctx.set_progress(0)
    ctx.set_progress(40)
    ctx.set_progress(40)

    assert [(e.progress, e.at) for e in sent if isinstance(e, TaskProgressed)] == [
        (0, T0 + timedelta(seconds=1)),
        (0, T0 + timedelta(seconds=2)),
        (0, T0 + timedelta(seconds=3)),
        (40, T0 + timedelta(seconds=3)),
        (40, T0 + timedelta(seconds=3)),
    ]
    assert ctx.progress == 40


def test_every_log_record_is_sent() -> None:
    sent: list[Event] = []
    ctx = _context(sent, ManualClock(T0))

    ctx.log.info("same")
    ctx.log.info("same")

    assert [e.content for e in sent if isinstance(e, TaskLogged)] == ["same", "same"]


def test_a_naive_datetime_for_set_next_at_is_refused_with_a_clear_error() -> None:
    ctx = _context([], ManualClock(T0))

    with pytest.raises(InvalidField) as refused:
        ctx.set_next_at(datetime(2026, 3, 1, 9, 0, 0))

    message = str(refused.value)
    assert message.startswith("set_next_at: 2026-03-01T09:00:00 has no time zone")
    assert "aware datetime" in message and "timedelta" in message
    assert isinstance(refused.value, ValueError)
    assert ctx.next_at is None


def test_an_aware_datetime_is_kept_as_the_same_instant_in_utc() -> None:
    ctx = _context([], ManualClock(T0))
    plus2 = timezone(timedelta(hours=2))

    ctx.set_next_at(datetime(2026, 3, 1, 11, 0, 0, tzinfo=plus2))

    assert ctx.next_at == datetime(2026, 3, 1, 9, 0, 0, tzinfo=timezone.utc)
    assert ctx.next_at is not None and ctx.next_at.utcoffset() == timedelta(0)


def test_a_delay_counts_from_the_worker_clock_and_zero_means_again_at_once() -> None:
    clock = ManualClock(T0)
    ctx = _context([], clock)
    clock.advance(5)

    ctx.set_next_at(timedelta(0))
    assert ctx.next_at == T0 + timedelta(seconds=5)
    ctx.set_next_at(timedelta(minutes=2))
    assert ctx.next_at == T0 + timedelta(minutes=2, seconds=5)


def test_set_next_at_refuses_other_types() -> None:
    ctx = _context([], ManualClock(T0))

    with pytest.raises(TypeError, match="set_next_at takes a datetime or a timedelta"):
        ctx.set_next_at("tomorrow")  # type: ignore[arg-type]
