"""The overlap policy in the recorder's plan after a finish (and the supervisor's fail path):
`skip` skips the slots a long run covered, `buffer_one` and `replace` run one of them right
after the run ends, then the group is back on its grid; plus the supervisor's look for runs
`replace` stops. SQLite, PostgreSQL and MariaDB, times from a manual clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    SECOND,
    T0,
    add_interval_group,
    dispatch,
    group_raw,
    log_rows,
    pending,
    statements_of,
    task_row,
    task_rows,
)

from fss import kills
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.overlap import clock_time
from fss.domain.status import TaskStatus
from fss.events import Event, TaskFinished, TaskStarted
from fss.kills import Outcome
from fss.store import groups, overlap, recording, supervision
from fss.store.tables import task_group

MS = timedelta(milliseconds=1)


def _record(engine: Engine, events: Sequence[Event], now: datetime) -> None:
    with engine.begin() as conn:
        recording.record(conn, events, now)


def _group(engine: Engine, policy: str, interval_ms: int = 1000, **changes: Any) -> int:
    """A group whose first slot is T0."""
    return add_interval_group(
        engine, T0 - SECOND, interval_ms=interval_ms, start_at=T0, overlap=policy, **changes
    )


def _run(engine: Engine, group_id: int, seconds: float, **finish: Any) -> tuple[int, datetime]:
    """Dispatch the group's waiting task at its start, run it `seconds`, record the finish
    then: (task id, when it ended)."""
    waiting = pending(engine, group_id)
    begin = waiting["start_at"]
    attempt = dispatch(engine, waiting["id"], begin)
    end = begin + timedelta(seconds=seconds)
    _record(engine, [
        TaskStarted(waiting["id"], attempt, CLIENT, begin),
        TaskFinished(waiting["id"], attempt, CLIENT, True, int(seconds * 1000), end, **finish),
    ], end)
    return waiting["id"], end


def _starts(engine: Engine, group_id: int, runs: Sequence[float]) -> list[datetime]:
    """Run the group's tasks one after the other for these durations: when each started."""
    starts = []
    for seconds in runs:
        starts.append(pending(engine, group_id)["start_at"])
        _run(engine, group_id, seconds)
    return starts


def _lines(engine: Engine, task_id: int) -> list[str]:
    return [r["content"] for r in log_rows(engine, task_id)]


def test_buffer_one_runs_one_passed_slot_right_after_then_the_grid(engine: Engine) -> None:
    """A 1 s group whose run takes 3.5 s: slots T0+1, +2, +3 passed while it ran; exactly
    one extra run starts when it ends, and the next ones are on the grid again."""
    group_id = _group(engine, "buffer_one")

    starts = _starts(engine, group_id, [3.5, 0.1, 0.1, 0.1])

    assert starts == [T0, T0 + 3.5 * SECOND, T0 + 4 * SECOND, T0 + 5 * SECOND]
    assert pending(engine, group_id)["start_at"] == T0 + 6 * SECOND
    extra = task_rows(engine, group_id)[1]
    assert extra["kind"] == "scheduled"
    assert _lines(engine, extra["id"]) == [
        f"buffer_one: slot {clock_time(T0 + SECOND)} passed while running; runs now"
    ]
    assert [len(_lines(engine, t["id"])) for t in task_rows(engine, group_id)] == [0, 1, 0, 0, 0]
    assert group_raw(engine, group_id)["buffered_at"] is None


def test_the_extra_run_stands_for_the_passed_slot(engine: Engine) -> None:
    """While it waits, the group's next_at (and buffered_at) is the slot that passed."""
    group_id = _group(engine, "buffer_one")

    _run(engine, group_id, 3.5)

    group = group_raw(engine, group_id)
    assert (group["next_at"], group["buffered_at"]) == (T0 + SECOND, T0 + SECOND)
    assert pending(engine, group_id)["start_at"] == T0 + 3.5 * SECOND


def test_skip_is_unchanged_the_covered_slots_are_skipped(engine: Engine) -> None:
    group_id = _group(engine, "skip")

    starts = _starts(engine, group_id, [3.5, 0.1, 0.1])

    assert starts == [T0, T0 + 4 * SECOND, T0 + 5 * SECOND]
    assert not any(_lines(engine, t["id"]) for t in task_rows(engine, group_id))
    assert group_raw(engine, group_id)["buffered_at"] is None


def test_runs_that_each_cover_a_slot_go_back_to_back_on_buffer_one(engine: Engine) -> None:
    """Every run takes 2.5 s of a 1 s grid: each one starts when the one before ends."""
    group_id = _group(engine, "buffer_one")

    starts = _starts(engine, group_id, [2.5] * 4)

    assert starts == [T0 + 2.5 * k * SECOND for k in range(4)]
    assert pending(engine, group_id)["start_at"] == T0 + 10 * SECOND


def test_no_extra_run_when_no_slot_passed(engine: Engine) -> None:
    group_id = _group(engine, "buffer_one")

    starts = _starts(engine, group_id, [0.5, 1.0, 0.2])

    # A run ending exactly on a slot covered none: that slot is its next run, due now.
    assert starts == [T0, T0 + SECOND, T0 + 2 * SECOND]
    assert not any(_lines(engine, t["id"]) for t in task_rows(engine, group_id))


def test_replace_plans_the_same_as_buffer_one_with_its_own_line(engine: Engine) -> None:
    """The run a replace group's stopped run leaves behind starts now, for the slot that
    came (the supervisor stops the run; the recorder plans the same as for buffer_one)."""
    group_id = _group(engine, "replace", interval_ms=2000)

    starts = _starts(engine, group_id, [2.3, 0.1])

    assert starts == [T0, T0 + 2.3 * SECOND]
    assert pending(engine, group_id)["start_at"] == T0 + 4 * SECOND
    second = task_rows(engine, group_id)[1]
    assert _lines(engine, second["id"]) == [
        f"replace: slot {clock_time(T0 + 2 * SECOND)} came while the previous run went on; "
        "runs now"
    ]


def test_a_cron_group_buffers_one_passed_slot(engine: Engine) -> None:
    group_id = groups.add_group(
        engine,
        _spec(cron="* * * * *", overlap="buffer_one", start_at=T0.replace(second=0, microsecond=0)
              + timedelta(minutes=1)),
        T0,
    )
    first = pending(engine, group_id)["start_at"]

    starts = _starts(engine, group_id, [150, 1, 1])

    minute = timedelta(minutes=1)
    assert starts == [first, first + 150 * SECOND, first + 3 * minute]


def _spec(**values: Any) -> Any:
    from fss.domain.group_spec import GroupSpec

    return GroupSpec(caption="cron", job_name="demo.job", **values)


def test_a_job_that_sets_its_next_time_decides(engine: Engine) -> None:
    group_id = _group(engine, "buffer_one")

    _run(engine, group_id, 3.5, next_at=T0 + 10 * SECOND)

    assert pending(engine, group_id)["start_at"] == T0 + 10 * SECOND


def test_a_disabled_group_plans_nothing_and_keeps_no_buffered_slot(engine: Engine) -> None:
    group_id = _group(engine, "buffer_one")
    waiting = pending(engine, group_id)
    attempt = dispatch(engine, waiting["id"], T0)
    groups.set_enabled(engine, group_id, False, T0 + SECOND)
    end = T0 + 3.5 * SECOND
    _record(engine, [TaskFinished(waiting["id"], attempt, CLIENT, True, 3500, end)], end)

    assert group_raw(engine, group_id)["buffered_at"] is None
    assert [t["status"] for t in task_rows(engine, group_id)] == [TaskStatus.SUCCESS]


def test_one_batch_buffers_some_groups_and_skips_others(engine: Engine) -> None:
    """The set-based path (PostgreSQL: one statement per step for the batch)."""
    buffering = [_group(engine, "buffer_one") for _ in range(3)]
    skipping = [_group(engine, "skip") for _ in range(3)]
    end = T0 + 3.5 * SECOND
    events: list[Event] = []
    for group_id in buffering + skipping:
        waiting = pending(engine, group_id)
        attempt = dispatch(engine, waiting["id"], T0)
        events.append(TaskFinished(waiting["id"], attempt, CLIENT, True, 3500, end))

    _record(engine, events, end)

    for group_id in buffering:
        assert pending(engine, group_id)["start_at"] == end
        assert group_raw(engine, group_id)["buffered_at"] == T0 + SECOND
    for group_id in skipping:
        assert pending(engine, group_id)["start_at"] == T0 + 4 * SECOND
        assert group_raw(engine, group_id)["buffered_at"] is None


def test_claim_next_hands_the_extra_run_over_due_now(engine: Engine) -> None:
    group_id = _group(engine, "buffer_one")
    waiting = pending(engine, group_id)
    attempt = dispatch(engine, waiting["id"], T0)
    end = T0 + 3.5 * SECOND
    claim = recording.ClaimNext("node-a", end + 5 * SECOND, end + 2 * SECOND)
    with engine.begin() as conn:
        recording.record(
            conn, [TaskFinished(waiting["id"], attempt, CLIENT, True, 3500, end)], end, claim
        )

    (claimed,) = claim.claimed
    assert (claimed.id, claimed.start_at) == (pending(engine, group_id)["id"], end)


def test_the_supervisor_failing_a_run_buffers_the_passed_slot_too(engine: Engine) -> None:
    """A run the supervisor fails (hung, client gone, not stopped by a replace) is planned
    after the same way: the passed slot runs now."""
    group_id = _group(engine, "buffer_one")
    waiting = pending(engine, group_id)
    dispatch(engine, waiting["id"], T0)
    now = T0 + 3.5 * SECOND
    with engine.begin() as conn:
        (open_task,) = [t for t in supervision.in_flight_tasks(conn) if t.id == waiting["id"]]
        assert supervision.fail_task(conn, open_task, "hung", now)

    extra = pending(engine, group_id)
    assert extra["start_at"] == now
    assert group_raw(engine, group_id)["next_at"] == T0 + SECOND
    assert _lines(engine, extra["id"]) == [
        f"buffer_one: slot {clock_time(T0 + SECOND)} passed while running; runs now"
    ]



def test_the_policy_costs_a_finish_no_statement_unless_a_slot_passed(engine: Engine) -> None:
    """skip and buffer_one finishes run the same statements; a run that covered a slot on
    buffer_one adds one INSERT (its run log line)."""
    counts = {}
    for name, policy, seconds in (("skip", "skip", 3.5), ("buffer_one on time", "buffer_one",
                                  0.5), ("buffer_one late", "buffer_one", 3.5)):
        group_id = _group(engine, policy)
        waiting = pending(engine, group_id)
        attempt = dispatch(engine, waiting["id"], T0)
        end = T0 + seconds * SECOND
        event = TaskFinished(waiting["id"], attempt, CLIENT, True, 10, end)
        counts[name] = statements_of(engine, lambda e=event, n=end: _record(engine, [e], n))
    assert counts["buffer_one on time"] == counts["skip"]
    assert len(counts["buffer_one late"]) == len(counts["skip"]) + 1
    assert "INSERT INTO run_log" in counts["buffer_one late"][-1] or any(
        "INSERT INTO run_log" in s for s in counts["buffer_one late"]
    )


# The supervisor's look for runs `replace` stops (fss.store.overlap).


def _working(engine: Engine, group_id: int, at: datetime) -> int:
    waiting = pending(engine, group_id)
    attempt = dispatch(engine, waiting["id"], at)
    _record(engine, [TaskStarted(waiting["id"], attempt, CLIENT, at)], at)
    return int(waiting["id"])


def _replaceable(engine: Engine, now: datetime) -> list[overlap.Replaceable]:
    with engine.connect() as conn:
        return overlap.replaceable_runs(conn, now)


def test_a_replace_groups_run_is_found_once_its_next_slot_came(engine: Engine) -> None:
    group_id = _group(engine, "replace", interval_ms=2000)
    skipping = _group(engine, "skip", interval_ms=2000)
    buffering = _group(engine, "buffer_one", interval_ms=2000)
    task_id = _working(engine, group_id, T0)
    for other in (skipping, buffering):
        _working(engine, other, T0)

    assert _replaceable(engine, T0 + 2 * SECOND - MS) == []
    (found,) = _replaceable(engine, T0 + 2 * SECOND)
    assert (found.open_task.id, found.slot, found.kill_requested_at) == (
        task_id, T0 + 2 * SECOND, None
    )
    assert found.running.client_id == CLIENT


def test_the_kill_is_asked_for_once(engine: Engine) -> None:
    group_id = _group(engine, "replace", interval_ms=2000)
    task_id = _working(engine, group_id, T0)
    now = T0 + 2 * SECOND
    (found,) = _replaceable(engine, now)

    with engine.begin() as conn:
        assert overlap.request_replace(conn, found, "replace: asked", now)
    with engine.begin() as conn:
        assert not overlap.request_replace(conn, found, "replace: asked", now + SECOND)

    assert task_row(engine, task_id)["kill_requested_at"] == now
    assert _lines(engine, task_id) == ["replace: asked"]
    (again,) = _replaceable(engine, now + SECOND)
    assert again.kill_requested_at == now


def test_the_run_of_a_passed_slot_is_replaced_at_the_slot_after_it(engine: Engine) -> None:
    """The run a replaced run left behind stands for the slot that came (next_at), started
    later: its own next slot is the grid's next one, not one already behind it."""
    group_id = _group(engine, "replace", interval_ms=2000)
    _run(engine, group_id, 2.5)  # ended (stopped) at T0+2.5: T0+2's run starts now
    _working(engine, group_id, T0 + 2.5 * SECOND)

    assert _replaceable(engine, T0 + 4 * SECOND - MS) == []
    (found,) = _replaceable(engine, T0 + 4 * SECOND)
    assert found.slot == T0 + 4 * SECOND


def test_a_replaced_run_is_not_retried(engine: Engine) -> None:
    """A run stopped for the next slot's run is not run again by the group's retries: the
    next slot's run is what replaces it."""
    group_id = _group(engine, "replace", interval_ms=2000)
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(retries=3))
    task_id = _working(engine, group_id, T0)
    now = T0 + 2 * SECOND
    (found,) = _replaceable(engine, now)
    with engine.begin() as conn:
        overlap.request_replace(conn, found, "replace: asked", now)
    attempt = task_row(engine, task_id)["attempt"]
    end = now + 100 * MS
    _record(engine, [TaskFinished(task_id, attempt, CLIENT, False, 2100, end,
                                  error="replaced by the run of ...")], end)

    assert task_row(engine, task_id)["status"] == TaskStatus.FAIL
    assert pending(engine, group_id)["start_at"] == end


def _fail_and_retry(engine: Engine, group_id: int, begin: datetime, fail_at: datetime) -> int:
    """The waiting task runs from `begin` and fails at `fail_at`; the group retries it
    100 ms later (retries 1, no jitter): its start_at moves to the retry's time."""
    waiting = pending(engine, group_id)
    attempt = dispatch(engine, waiting["id"], begin)
    _record(engine, [
        TaskStarted(waiting["id"], attempt, CLIENT, begin),
        TaskFinished(waiting["id"], attempt, CLIENT, False, 1700, fail_at, error="boom"),
    ], fail_at)
    assert task_row(engine, waiting["id"])["start_at"] == fail_at + 100 * MS
    return int(waiting["id"])


def _retrying_group(engine: Engine, policy: str) -> int:
    """A 2 s group with one retry whose first run covered T0+2: the run of that passed slot
    is waiting, due at T0+2.5."""
    group_id = _group(engine, policy, interval_ms=2000)
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(
            retries=1, retry_delay_ms=100, retry_jitter=False))
    _run(engine, group_id, 2.5)
    assert pending(engine, group_id)["start_at"] == T0 + 2.5 * SECOND
    return group_id


def test_a_slot_that_passed_while_the_run_of_a_passed_slot_was_retried_runs_right_after(
    engine: Engine,
) -> None:
    """Found by an outside check (real scheduler and worker): the run of a passed slot
    failed its first attempt past the next slot and its retry succeeded before the one after;
    that slot was skipped, counted from the retry's start instead of when the run began."""
    group_id = _retrying_group(engine, "buffer_one")
    task_id = _fail_and_retry(engine, group_id, T0 + 2.5 * SECOND, T0 + 4.2 * SECOND)
    attempt = dispatch(engine, task_id, T0 + 4.3 * SECOND)
    end = T0 + 4.5 * SECOND
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, T0 + 4.3 * SECOND),
                     TaskFinished(task_id, attempt, CLIENT, True, 200, end)], end)

    extra = pending(engine, group_id)
    assert extra["start_at"] == end  # T0+4 passed while it ran: its run starts now
    assert group_raw(engine, group_id)["next_at"] == T0 + 4 * SECOND
    assert _lines(engine, extra["id"]) == [
        f"buffer_one: slot {clock_time(T0 + 4 * SECOND)} passed while running; runs now"
    ]


def test_the_supervisor_failing_a_retried_run_of_a_passed_slot_buffers_the_slot_too(
    engine: Engine,
) -> None:
    group_id = _retrying_group(engine, "buffer_one")
    task_id = _fail_and_retry(engine, group_id, T0 + 2.5 * SECOND, T0 + 4.2 * SECOND)
    dispatch(engine, task_id, T0 + 4.3 * SECOND)
    now = T0 + 5 * SECOND
    with engine.begin() as conn:
        (open_task,) = [t for t in supervision.in_flight_tasks(conn) if t.id == task_id]
        assert supervision.fail_task(conn, open_task, "hung", now)

    extra = pending(engine, group_id)
    assert extra["start_at"] == now
    assert group_raw(engine, group_id)["next_at"] == T0 + 4 * SECOND


def test_the_retry_of_a_replacing_run_is_replaced_once_the_slot_after_its_own_came(
    engine: Engine,
) -> None:
    """The run of T0+2 (started T0+2.5) whose retry goes on past T0+4 is stopped for T0+4's
    run, as a run that was not retried would be: not only at T0+6."""
    group_id = _retrying_group(engine, "replace")
    task_id = _fail_and_retry(engine, group_id, T0 + 2.5 * SECOND, T0 + 4.2 * SECOND)
    _working(engine, group_id, T0 + 4.3 * SECOND)

    (found,) = _replaceable(engine, T0 + 4.4 * SECOND)
    assert (found.open_task.id, found.slot) == (task_id, T0 + 4 * SECOND)


def test_a_killed_run_of_a_replace_group_whose_end_is_recorded_before_the_mark_is_not_retried(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`fss task kill` of a replace group's run: not retried. Found by an outside check (real
    scheduler and prefork worker, 1 kill in 3): the kill was sent before kill_requested_at
    was set, the worker killed the run and its failure was recorded first, unmarked, and was
    retried. Here the worker's side answers only after recording the failure."""
    group_id = _group(engine, "replace", interval_ms=3_600_000)
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(
            retries=2, retry_delay_ms=100))
    task_id = _working(engine, group_id, T0)
    now = T0 + SECOND

    def killed_at_once(settings: Settings, running: Any, reason: str) -> tuple[Outcome, str]:
        _record(engine, [TaskFinished(task_id, running.attempt, CLIENT, False, 1000, now,
                                      error=reason)], now)
        return Outcome.SENT, "killed"

    monkeypatch.setattr(kills, "send_kill", killed_at_once)
    result = kills.kill_task(engine, Settings(), ManualClock(now), task_id, "tester")

    assert result.outcome is Outcome.SENT
    row = task_row(engine, task_id)
    assert (row["status"], row["attempt"], row["error"]) == (
        TaskStatus.FAIL, 1, "killed by tester")
    assert row["kill_requested_at"] == now
