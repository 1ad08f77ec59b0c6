"""Retries in SQL (fss.store.retries through the recorder and the supervisor): a failed
attempt with attempts left is the same task back in waiting; on SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    NODE,
    SECOND,
    T0,
    TARGET,
    add_interval_group,
    claim_one,
    dispatch,
    group_raw,
    log_rows,
    pending,
    statements_of,
    task_row,
    task_rows,
)

from fss.domain.alerts import DEFAULT_POLICY, AlertPolicy
from fss.domain.status import TaskStatus
from fss.events import Event, TaskFinished, TaskLogged, TaskStarted
from fss.store import groups, recording, retries, supervision, tasks
from fss.store.tables import task_group, task_run

MS = timedelta(milliseconds=1)
BOOM = 'Traceback (most recent call last):\n  File "job.py", line 3\nValueError: boom\n'


def _group(engine: Engine, **policy: Any) -> tuple[int, int]:
    """An interval group (60 s, first slot T0) with a retry policy set in SQL: (group, task)."""
    group_id = add_interval_group(engine, T0 - MINUTE, start_at=T0)
    values = {"retries": 3, "retry_delay_ms": 1000, "retry_backoff": 2.0, "retry_jitter": False}
    values.update(policy)
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(**values))
    return group_id, pending(engine, group_id)["id"]


def _record(
    engine: Engine, events: Sequence[Event], now: datetime, alerting: AlertPolicy = DEFAULT_POLICY
) -> recording.RecordStats:
    with engine.begin() as conn:
        return recording.record(conn, events, now, alerting=alerting)


def _failed(task_id: int, attempt: int, at: datetime, **kw: Any) -> TaskFinished:
    kw.setdefault("error", BOOM)
    return TaskFinished(task_id, attempt, CLIENT, False, 200, at, **kw)


def _runs(engine: Engine, task_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(task_run).where(task_run.c.task_id == task_id).order_by(task_run.c.attempt)
        )
        return [dict(r._mapping) for r in rows]


def _run_and_fail(engine: Engine, task_id: int, now: datetime, **kw: Any) -> int:
    attempt = dispatch(engine, task_id, now)
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, now), _failed(task_id, attempt,
                                                                        now + 100 * MS, **kw)],
            now + 200 * MS)
    return attempt


def test_a_failure_with_attempts_left_is_the_same_task_back_in_waiting(engine: Engine) -> None:
    group_id, task_id = _group(engine)
    before = group_raw(engine, group_id)

    attempt = _run_and_fail(engine, task_id, T0)

    row = task_row(engine, task_id)
    assert attempt == 1
    assert row["status"] == TaskStatus.NONE
    assert row["attempt"] == 1  # the dispatcher makes the retry attempt 2
    assert row["start_at"] == T0 + 200 * MS + SECOND
    assert (row["client_id"], row["claimed_by"], row["open_group_id"]) == (None, None, group_id)
    assert row["finish_at"] == T0 + 100 * MS and row["error"] == BOOM
    assert len(task_rows(engine, group_id)) == 1  # no next task while retrying
    after = group_raw(engine, group_id)
    for column in ("run_count", "next_at", "last_run_at", "task_id", "data"):
        assert after[column] == before[column], column
    (line,) = [r for r in log_rows(engine, task_id) if "retry" in r["content"]]
    assert line["content"] == "attempt 1 failed: ValueError: boom; retry 1 of 3 in 1 s"
    assert line["attempt"] == 1
    (run,) = _runs(engine, task_id)
    assert (run["attempt"], run["status"], run["client_id"]) == (1, TaskStatus.FAIL, CLIENT)
    assert run["dispatched_at"] == T0 and run["run_at"] == T0
    assert run["finish_at"] == T0 + 100 * MS and run["error"] == BOOM


def test_the_retry_is_claimed_as_a_retry_and_dispatched_as_the_next_attempt(
    engine: Engine,
) -> None:
    _, task_id = _group(engine)
    _run_and_fail(engine, task_id, T0)
    due = T0 + 200 * MS + SECOND

    claimed = claim_one(engine, task_id, due)
    assert claimed.retrying and claimed.attempt == 1 and claimed.start_at == due
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(conn, claimed, NODE, TARGET, due)

    row = task_row(engine, task_id)
    assert attempt == 2
    assert (row["status"], row["client_id"]) == (TaskStatus.SCHEDULER, CLIENT)
    assert row["finish_at"] is None and row["error"] is None  # the new attempt's own


def test_replaying_the_failure_changes_nothing(engine: Engine) -> None:
    _, task_id = _group(engine)
    _run_and_fail(engine, task_id, T0)
    row = task_row(engine, task_id)
    lines = log_rows(engine, task_id)

    stats = _record(engine, [_failed(task_id, 1, T0 + 100 * MS)], T0 + 5 * SECOND)

    assert stats.finished == 0 and stats.ignored == 1
    assert task_row(engine, task_id) == row
    assert log_rows(engine, task_id) == lines
    assert len(_runs(engine, task_id)) == 1


def test_delays_back_off_and_the_last_attempt_fails_the_task_and_plans_from_the_slot(
    engine: Engine,
) -> None:
    group_id, task_id = _group(engine, retries=2, retry_delay_ms=1000, retry_backoff=3.0)
    now = T0
    starts = []
    for _ in range(2):
        _run_and_fail(engine, task_id, now)
        now = task_row(engine, task_id)["start_at"]
        starts.append(now)
    assert starts == [T0 + 200 * MS + SECOND, starts[0] + 200 * MS + 3 * SECOND]

    attempt = _run_and_fail(engine, task_id, now)

    assert attempt == 3
    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.FAIL and row["open_group_id"] is None
    (next_task,) = [r for r in task_rows(engine, group_id) if r["id"] != task_id]
    # Planned from the slot (T0) on the group's grid, not from the retry's start.
    assert next_task["start_at"] == T0 + MINUTE
    assert group_raw(engine, group_id)["next_at"] == T0 + MINUTE
    assert group_raw(engine, group_id)["run_count"] == 0
    contents = [r["content"] for r in log_rows(engine, task_id)]
    assert "attempt 3 failed: ValueError: boom; no retries left (2 of 2 used)" in contents
    # Every ended attempt is kept, the last one too (the task ran more than one).
    runs = _runs(engine, task_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [
        (1, TaskStatus.FAIL), (2, TaskStatus.FAIL), (3, TaskStatus.FAIL)]
    assert runs[2]["finish_at"] == row["finish_at"] and runs[2]["error"] == BOOM


def test_a_retry_that_succeeds_ends_the_task_and_the_group_goes_on_from_its_slot(
    engine: Engine,
) -> None:
    group_id, task_id = _group(engine, retries=1, retry_delay_ms=30_000)
    _run_and_fail(engine, task_id, T0)
    due = task_row(engine, task_id)["start_at"]
    attempt = dispatch(engine, task_id, due)

    _record(engine, [TaskFinished(task_id, attempt, CLIENT, True, 50, due + 50 * MS)],
            due + 100 * MS)

    row = task_row(engine, task_id)
    assert (row["status"], row["attempt"], row["error"]) == (TaskStatus.SUCCESS, 2, None)
    (next_task,) = [r for r in task_rows(engine, group_id) if r["id"] != task_id]
    assert next_task["start_at"] == T0 + MINUTE  # not the retry's start + 60 s
    assert group_raw(engine, group_id)["run_count"] == 1
    assert [(r["attempt"], r["status"], r["progress"]) for r in _runs(engine, task_id)] == [
        (1, TaskStatus.FAIL, 0), (2, TaskStatus.SUCCESS, 100)]
    with engine.connect() as conn:
        shown = retries.task_attempts(conn, task_id)
    assert [(a.attempt, a.status) for a in shown] == [
        (1, TaskStatus.FAIL), (2, TaskStatus.SUCCESS)]


def test_a_failure_the_job_refuses_to_retry_fails_at_once(engine: Engine) -> None:
    group_id, task_id = _group(engine)
    _run_and_fail(engine, task_id, T0, error="bad input", retry=False)

    assert task_row(engine, task_id)["status"] == TaskStatus.FAIL
    assert len(task_rows(engine, group_id)) == 2
    contents = [r["content"] for r in log_rows(engine, task_id)]
    assert (
        "attempt 1 failed: bad input; not retried (the job refused retries for this failure)"
        in contents
    )
    assert _runs(engine, task_id) == []


def test_a_group_without_retries_fails_as_before(engine: Engine) -> None:
    group_id, task_id = _group(engine, retries=0)
    _run_and_fail(engine, task_id, T0)

    assert task_row(engine, task_id)["status"] == TaskStatus.FAIL
    assert len(task_rows(engine, group_id)) == 2
    assert _runs(engine, task_id) == []
    assert log_rows(engine, task_id) == []


def test_one_batch_retries_some_tasks_and_finishes_others(engine: Engine) -> None:
    """Several finishes in one batch (PostgreSQL's set-based path): each is judged alone."""
    plain_group, plain = _group(engine, retries=0)
    retry_group, retried = _group(engine)
    ok_group, ok = _group(engine)
    attempts = {t: dispatch(engine, t, T0) for t in (plain, retried, ok)}

    stats = _record(
        engine,
        [
            _failed(plain, attempts[plain], T0 + 10 * MS),
            _failed(retried, attempts[retried], T0 + 10 * MS),
            TaskFinished(ok, attempts[ok], CLIENT, True, 10, T0 + 10 * MS),
        ],
        T0 + 20 * MS,
    )

    assert stats.finished == 3
    assert task_row(engine, plain)["status"] == TaskStatus.FAIL
    assert task_row(engine, retried)["status"] == TaskStatus.NONE
    assert task_row(engine, ok)["status"] == TaskStatus.SUCCESS
    assert len(task_rows(engine, plain_group)) == 2
    assert len(task_rows(engine, retry_group)) == 1
    assert len(task_rows(engine, ok_group)) == 2


def test_with_jitter_the_delay_is_drawn_below_its_bound(engine: Engine) -> None:
    _, task_id = _group(engine, retry_jitter=True, retry_delay_ms=10_000)
    dispatch(engine, task_id, T0)
    failure = retries.Failure(task_id, 1, "x", T0, 5, client_id=CLIENT)
    with engine.begin() as conn:
        outcome = retries.requeue_failures(conn, [failure], T0, uniform=lambda: 0.25)
    assert outcome.retried == {(task_id, 1)}
    assert task_row(engine, task_id)["start_at"] == T0 + 2500 * MS


def test_log_lines_keep_the_attempt_that_wrote_them(engine: Engine) -> None:
    group_id, task_id = _group(engine)
    _run_and_fail(engine, task_id, T0)
    due = task_row(engine, task_id)["start_at"]
    attempt = dispatch(engine, task_id, due)

    _record(engine, [TaskLogged(task_id, attempt, CLIENT, group_id, 2, "second try", due)], due)

    (line,) = [r for r in log_rows(engine, task_id) if r["content"] == "second try"]
    assert line["attempt"] == 2


def _open(engine: Engine, task_id: int) -> supervision.OpenTask:
    with engine.connect() as conn:
        (found,) = [t for t in supervision.in_flight_tasks(conn) if t.id == task_id]
    return found


def test_a_run_the_supervisor_fails_is_retried_while_attempts_are_left(engine: Engine) -> None:
    group_id, task_id = _group(engine, retries=1)
    dispatch(engine, task_id, T0)
    _record(engine, [TaskStarted(task_id, 1, CLIENT, T0)], T0)
    lost = f"client {CLIENT} went silent (> 10 s) while running attempt 1; marked failed"

    seen = _open(engine, task_id)
    with engine.begin() as conn:
        assert supervision.fail_task(conn, seen, lost, T0 + 20 * SECOND)

    row = task_row(engine, task_id)
    assert (row["status"], row["start_at"]) == (TaskStatus.NONE, T0 + 21 * SECOND)
    assert len(task_rows(engine, group_id)) == 1
    assert f"attempt 1 failed: {lost}; retry 1 of 1 in 1 s" in [
        r["content"] for r in log_rows(engine, task_id)
    ]
    assert _runs(engine, task_id)[0]["error"] == lost

    attempt = dispatch(engine, task_id, T0 + 21 * SECOND)
    seen = _open(engine, task_id)
    with engine.begin() as conn:
        assert supervision.fail_task(conn, seen, "hung", T0 + 60 * SECOND)
    assert attempt == 2
    assert task_row(engine, task_id)["status"] == TaskStatus.FAIL
    assert len(task_rows(engine, group_id)) == 2
    assert "attempt 2 failed: hung; no retries left (1 of 1 used)" in [
        r["content"] for r in log_rows(engine, task_id)
    ]
    assert [(r["attempt"], r["error"]) for r in _runs(engine, task_id)] == [
        (1, lost), (2, "hung")]


def test_a_hung_check_that_lost_its_race_retries_nothing(engine: Engine) -> None:
    _, task_id = _group(engine)
    dispatch(engine, task_id, T0)
    seen = _open(engine, task_id)
    _record(engine, [TaskStarted(task_id, 1, CLIENT, T0 + SECOND)], T0 + SECOND)  # alive again

    with engine.begin() as conn:
        failed = supervision.fail_task(conn, seen, "hung", T0 + MINUTE,
                                       unchanged_since=seen.reported_at)

    assert not failed
    assert task_row(engine, task_id)["status"] == TaskStatus.WORKING
    assert _runs(engine, task_id) == []


def test_an_order_sent_again_keeps_its_attempt_in_the_history(engine: Engine) -> None:
    _, task_id = _group(engine)
    dispatch(engine, task_id, T0)
    reason = "attempt 1 was not started within 30 s (the order expired); dispatching again"

    seen = _open(engine, task_id)
    with engine.begin() as conn:
        assert supervision.return_to_waiting(conn, seen, reason, T0 + MINUTE)

    (run,) = _runs(engine, task_id)
    assert (run["attempt"], run["status"], run["client_id"]) == (1, TaskStatus.NONE, CLIENT)
    assert run["error"] == reason
    assert not claim_one(engine, task_id, T0 + MINUTE).retrying  # not a failure: plain fence


def test_an_attempt_sent_again_before_it_started_uses_no_retry(engine: Engine) -> None:
    """Found by an outside check (kill -9 of the only worker during a retry wait): the
    retry's order went to the dead worker and was sent again as attempt 3, and attempt 3's
    failure read 'no retries left (2 of 2 used)' after the job had run twice. Retries count
    the attempts that ran, not the attempt numbers."""
    _, task_id = _group(engine, retries=2, retry_delay_ms=1000, retry_backoff=3.0)
    _run_and_fail(engine, task_id, T0)  # attempt 1 ran and failed
    due = task_row(engine, task_id)["start_at"]
    dispatch(engine, task_id, due)  # attempt 2 goes to a client that vanishes
    seen = _open(engine, task_id)
    with engine.begin() as conn:
        assert supervision.return_to_waiting(conn, seen, "gone", due)

    assert _run_and_fail(engine, task_id, due + SECOND) == 3

    row = task_row(engine, task_id)
    # The first retry failed: the second is left, after the second delay (1 s x 3).
    assert (row["status"], row["start_at"]) == (TaskStatus.NONE,
                                                due + SECOND + 200 * MS + 3 * SECOND)
    contents = [r["content"] for r in log_rows(engine, task_id)]
    assert "attempt 3 failed: ValueError: boom; retry 2 of 2 in 3 s" in contents
    assert _run_and_fail(engine, task_id, row["start_at"]) == 4
    assert task_row(engine, task_id)["status"] == TaskStatus.FAIL
    assert "attempt 4 failed: ValueError: boom; no retries left (2 of 2 used)" in [
        r["content"] for r in log_rows(engine, task_id)]
    assert [(r["attempt"], r["status"]) for r in _runs(engine, task_id)] == [
        (1, TaskStatus.FAIL), (2, TaskStatus.NONE), (3, TaskStatus.FAIL), (4, TaskStatus.FAIL)]



def test_retries_cost_a_successful_run_no_statement_and_a_plain_failure_one_read(
    engine: Engine,
) -> None:
    """The success path is the same statements whatever the policy; a failure of a group
    without retries adds one read (no lock, no write). Alerts off: what a final failure
    costs in alerts is tests/store/test_alerts.py's."""
    counts = {}
    quiet = AlertPolicy(rules=frozenset())
    for name, policy, success in (("plain ok", 0, True), ("retrying ok", 3, True),
                                  ("plain fail", 0, False)):
        _, task_id = _group(engine, retries=policy)
        attempt = dispatch(engine, task_id, T0)
        event = TaskFinished(task_id, attempt, CLIENT, success, 10, T0, error=None if success
                             else "x")
        counts[name] = statements_of(engine, lambda e=event: _record(engine, [e], T0, quiet))
    assert counts["retrying ok"] == counts["plain ok"]
    extra = len(counts["plain fail"]) - len(counts["plain ok"])
    assert extra == 1
    assert "task_group.retries >" in " ".join(counts["plain fail"])


def test_pruning_a_retried_task_or_deleting_its_group_removes_its_attempts(
    engine: Engine,
) -> None:
    pruned_group, pruned = _group(engine, retries=1)
    _run_and_fail(engine, pruned, T0)
    _run_and_fail(engine, pruned, task_row(engine, pruned)["start_at"])  # the last attempt
    deleted_group, deleted = _group(engine)
    _run_and_fail(engine, deleted, T0)
    assert len(_runs(engine, pruned)) == 2 and len(_runs(engine, deleted)) == 1

    policy = supervision.RetentionPolicy(fail_max_age=timedelta(days=1))
    assert supervision.prune(engine, T0 + timedelta(days=2), policy) >= 1
    groups.delete_group(engine, deleted_group)

    assert _runs(engine, pruned) == [] and _runs(engine, deleted) == []
    assert task_rows(engine, pruned_group)  # its next task stays


def test_disabling_a_group_during_a_retry_wait_ends_the_task_failed_with_its_attempts(
    engine: Engine,
) -> None:
    group_id, task_id = _group(engine)
    _run_and_fail(engine, task_id, T0)

    groups.set_enabled(engine, group_id, False, T0 + SECOND)

    row = task_row(engine, task_id)
    assert (row["status"], row["open_group_id"], row["error"]) == (TaskStatus.FAIL, None, BOOM)
    assert [r["attempt"] for r in _runs(engine, task_id)] == [1]
    assert task_rows(engine, group_id) == [row]  # no waiting task left, no retry
    groups.set_enabled(engine, group_id, True, T0 + 2 * SECOND)
    assert pending(engine, group_id)["id"] != task_id


def test_an_attempt_taken_back_when_its_send_failed_uses_no_retry(engine: Engine) -> None:
    """The dispatcher takes an attempt back when its order could not be sent (the broker
    down): the number is used, nothing ran, no task_run row is kept. The failure of the
    attempt that then runs is the first retry's, not the second's."""
    _, task_id = _group(engine, retries=2, retry_delay_ms=1000, retry_backoff=3.0)
    _run_and_fail(engine, task_id, T0)
    due = task_row(engine, task_id)["start_at"]
    for _ in range(2):  # two sends that failed
        attempt = dispatch(engine, task_id, due)
        with engine.begin() as conn:
            assert tasks.undo_dispatch(conn, task_id, attempt)

    assert _run_and_fail(engine, task_id, due + SECOND) == 4

    assert task_row(engine, task_id)["status"] == TaskStatus.NONE
    assert "attempt 4 failed: ValueError: boom; retry 2 of 2 in 3 s" in [
        r["content"] for r in log_rows(engine, task_id)]


def test_slots_that_passed_while_retrying_are_a_misfire_run_once_by_default(
    engine: Engine,
) -> None:
    """Issue 17: a slot passed while retrying follows the group's misfire rule. The next
    task is the first passed slot (T0 + 1 min, in the past), which the claim runs at once
    (run-once) or moves to the next slot (skip); after that one catch-up run the grid goes
    on: no burst for the second passed slot."""
    group_id, task_id = _group(engine, retries=1, retry_delay_ms=150_000)
    _run_and_fail(engine, task_id, T0)
    due = task_row(engine, task_id)["start_at"]  # T0 + 2.5 min: slots T0+1, T0+2 min pass
    attempt = dispatch(engine, task_id, due)
    _record(engine, [TaskFinished(task_id, attempt, CLIENT, True, 50, due + 50 * MS)],
            due + 100 * MS)

    (catch_up,) = [r for r in task_rows(engine, group_id) if r["id"] != task_id]
    assert catch_up["start_at"] == T0 + MINUTE
    now = due + SECOND
    attempt = dispatch(engine, catch_up["id"], now)
    _record(engine, [TaskFinished(catch_up["id"], attempt, CLIENT, True, 50, now)],
            now + 100 * MS)
    (after,) = [r for r in task_rows(engine, group_id) if r["status"] == TaskStatus.NONE]
    assert after["start_at"] == T0 + 3 * MINUTE


def test_a_retry_that_ends_before_the_next_slot_plans_that_slot_as_before(
    engine: Engine,
) -> None:
    group_id, task_id = _group(engine, retries=1, retry_delay_ms=1000)
    _run_and_fail(engine, task_id, T0)
    due = task_row(engine, task_id)["start_at"]
    attempt = dispatch(engine, task_id, due)
    _record(engine, [TaskFinished(task_id, attempt, CLIENT, True, 50, due + 50 * MS)],
            due + 100 * MS)
    (next_task,) = [r for r in task_rows(engine, group_id) if r["id"] != task_id]
    assert next_task["start_at"] == T0 + MINUTE


def test_the_supervisor_failing_a_retried_task_past_its_slots_plans_the_missed_slot(
    engine: Engine,
) -> None:
    group_id, task_id = _group(engine, retries=1, retry_delay_ms=150_000)
    _run_and_fail(engine, task_id, T0)
    due = task_row(engine, task_id)["start_at"]
    dispatch(engine, task_id, due)
    _record(engine, [TaskStarted(task_id, 2, CLIENT, due)], due)
    seen = _open(engine, task_id)
    with engine.begin() as conn:
        assert supervision.fail_task(conn, seen, "hung", due + 20 * SECOND)
    assert task_row(engine, task_id)["status"] == TaskStatus.FAIL
    assert group_raw(engine, group_id)["next_at"] == T0 + MINUTE
