"""Finishing many runs in one batch: the set-based path (PostgreSQL) keeps every guard of
the per-event path (other backends), so both give the same rows."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    SECOND,
    T0,
    add_interval_group,
    dispatch,
    group_raw,
    open_tasks,
    pending,
    statements_of,
    task_row,
)

from fss.domain.status import TaskStatus
from fss.events import Event, TaskFinished, TaskLogged, TaskProgressed, TaskStarted
from fss.store import groups, recording
from fss.store.tables import task_group


def _dispatched(engine: Engine) -> tuple[int, int, int]:
    group_id = add_interval_group(engine, T0 - MINUTE, start_at=T0)
    task_id = pending(engine, group_id)["id"]
    return group_id, task_id, dispatch(engine, task_id, T0)


def _record(engine: Engine, events: list[Event]) -> recording.RecordStats:
    with engine.begin() as conn:
        return recording.record(conn, events, T0 + SECOND)


def test_a_batch_finishes_the_current_attempts_only_and_keeps_each_guard(engine: Engine) -> None:
    runs = [_dispatched(engine) for _ in range(5)]
    (g1, t1, a1), (g2, t2, a2), (g3, t3, a3), (g4, t4, a4), (g5, t5, a5) = runs
    _record(engine, [TaskStarted(t3, a3, CLIENT, T0), TaskProgressed(t3, a3, CLIENT, 40, T0)])
    _record(engine, [TaskFinished(t5, a5, CLIENT, True, 10, T0 + SECOND)])  # already done
    events: list[Event] = [
        TaskFinished(t1, a1, CLIENT, True, 1200, T0 + SECOND),
        TaskFinished(t2, a2 + 1, CLIENT, True, 5, T0 + SECOND),  # stale attempt
        TaskFinished(t3, a3, CLIENT, False, 700, T0 + SECOND, error="boom"),
        TaskFinished(t4, a4, "another-client", True, 5, T0 + SECOND),  # not its client
        TaskFinished(t5, a5, CLIENT, False, 9, T0 + 2 * SECOND, error="late"),  # replay-ish
        TaskFinished(t1, a1, CLIENT, True, 1200, T0 + SECOND),  # duplicate in the batch
    ]

    stats = _record(engine, events)

    assert stats.finished == 2
    one, three = task_row(engine, t1), task_row(engine, t3)
    assert (one["status"], one["progress"], one["run_speed"], one["error"]) == (
        TaskStatus.SUCCESS, 100, 1200, None,
    )
    assert one["finish_at"] == T0 + SECOND and one["open_group_id"] is None
    assert (three["status"], three["progress"], three["error"]) == (TaskStatus.FAIL, 40, "boom")
    assert task_row(engine, t2)["status"] == TaskStatus.SCHEDULER
    assert task_row(engine, t4)["status"] == TaskStatus.SCHEDULER
    five = task_row(engine, t5)
    assert (five["status"], five["error"]) == (TaskStatus.SUCCESS, None)
    # Exactly one unfinished task per group: the winners got their next one, nobody two.
    assert [len(open_tasks(engine, g)) for g in (g1, g2, g3, g4, g5)] == [1, 1, 1, 1, 1]
    assert pending(engine, g1)["start_at"] == T0 + MINUTE


def test_replaying_a_finished_batch_changes_nothing(engine: Engine) -> None:
    runs = [_dispatched(engine) for _ in range(3)]
    events: list[Event] = [TaskFinished(t, a, CLIENT, True, 50, T0 + SECOND) for _, t, a in runs]
    assert _record(engine, events).finished == 3
    before = [pending(engine, g)["id"] for g, _, _ in runs]

    assert _record(engine, events).finished == 0

    assert [pending(engine, g)["id"] for g, _, _ in runs] == before
    assert all(len(open_tasks(engine, g)) == 1 for g, _, _ in runs)


def test_a_batch_of_starts_moves_current_attempts_once_and_keeps_the_first_time(
    engine: Engine,
) -> None:
    runs = [_dispatched(engine) for _ in range(3)]
    (_, t1, a1), (_, t2, a2), (_, t3, a3) = runs
    events: list[Event] = [
        TaskStarted(t1, a1, CLIENT, T0 + SECOND),
        TaskStarted(t1, a1, CLIENT, T0 + 2 * SECOND),  # duplicate: the first one counts
        TaskStarted(t2, a2 + 1, CLIENT, T0),  # stale attempt
        TaskStarted(t3, a3, "another-client", T0),  # not its client
    ]

    assert _record(engine, events).started == 1

    assert task_row(engine, t1)["status"] == TaskStatus.WORKING
    assert task_row(engine, t1)["run_at"] == T0 + SECOND
    assert task_row(engine, t2)["status"] == TaskStatus.SCHEDULER
    assert task_row(engine, t3)["status"] == TaskStatus.SCHEDULER
    assert _record(engine, events).started == 0  # a replay changes nothing


def test_a_batch_updates_each_groups_stats_data_and_next_task(engine: Engine) -> None:
    """The group bookkeeping of a batch (one set-based UPDATE on PostgreSQL, one per group
    elsewhere) gives every group exactly what finishing its run alone would."""
    runs = [_dispatched(engine) for _ in range(4)]
    (g1, t1, a1), (g2, t2, a2), (g3, t3, a3), (g4, t4, a4) = runs
    with engine.begin() as conn:  # g1 has run 3 times before, 100 ms on average
        conn.execute(
            sa.update(task_group)
            .where(task_group.c.id == g1)
            .values(run_count=3, run_speed_avg=100)
        )
    groups.set_enabled(engine, g3, False, T0)  # disabled while its run is out: no next task
    events: list[Event] = [
        TaskFinished(t1, a1, CLIENT, True, 301, T0 + SECOND),
        TaskFinished(t2, a2, CLIENT, False, 50, T0 + SECOND, error="boom"),
        TaskFinished(t3, a3, CLIENT, True, 40, T0 + SECOND, data={"k": "é"}),
        TaskFinished(t4, a4, CLIENT, True, 20, T0 + SECOND, next_at=T0 + 30 * SECOND),
    ]

    assert _record(engine, events).finished == 4

    one, two, three, four = (group_raw(engine, g) for g in (g1, g2, g3, g4))
    assert (one["run_count"], one["run_speed_avg"]) == (4, (3 * 100 + 301) // 4)
    assert (two["run_count"], two["run_speed_avg"]) == (0, 0)  # a failure counts no run
    assert (three["run_count"], three["run_speed_avg"], three["data"]) == (1, 40, '{"k":"é"}')
    assert (four["run_count"], four["run_speed_avg"]) == (1, 20)
    assert all(g["last_run_at"] == T0 + SECOND for g in (one, two, three, four))
    assert (one["next_at"], four["next_at"]) == (T0 + MINUTE, T0 + 30 * SECOND)
    for group_id, row in ((g1, one), (g2, two), (g4, four)):
        assert row["task_id"] == pending(engine, group_id)["id"]
        assert row["next_at"] == pending(engine, group_id)["start_at"]
    assert three["task_id"] == t3 and open_tasks(engine, g3) == []  # kept: no next task
    assert one["data"] == two["data"] == four["data"] == "{}"  # untouched without data


def test_runs_that_start_and_finish_in_one_batch_end_finished_with_their_start_time(
    engine: Engine,
) -> None:
    """A run's `started` and `finished` mostly arrive in one message: the batch locks their
    rows once (PostgreSQL) and applies the start before the finish, as separate batches do."""
    runs = [_dispatched(engine) for _ in range(3)]
    (g1, t1, a1), (g2, t2, a2), (_, t3, a3) = runs
    events: list[Event] = [
        TaskStarted(t2, a2, CLIENT, T0 + SECOND),
        TaskFinished(t2, a2, CLIENT, True, 30, T0 + 2 * SECOND),
        TaskStarted(t1, a1, CLIENT, T0 + SECOND),
        TaskFinished(t1, a1, CLIENT, False, 20, T0 + 2 * SECOND, error="boom"),
        TaskStarted(t3, a3, CLIENT, T0 + SECOND),
    ]

    with engine.begin() as conn:
        stats = recording.record(conn, events, T0 + 2 * SECOND)

    assert (stats.started, stats.finished) == (3, 2)
    one, two, three = (task_row(engine, t) for t in (t1, t2, t3))
    assert (one["status"], one["run_at"], one["error"]) == (TaskStatus.FAIL, T0 + SECOND, "boom")
    assert (two["status"], two["run_at"], two["progress"]) == (TaskStatus.SUCCESS, T0 + SECOND, 100)
    assert (three["status"], three["run_at"]) == (TaskStatus.WORKING, T0 + SECOND)
    assert [len(open_tasks(engine, g)) for g in (g1, g2)] == [1, 1]


def _statements_of(engine: Engine, events: list[Event]) -> tuple[list[str], recording.RecordStats]:
    stats: list[recording.RecordStats] = []
    seen = statements_of(engine, lambda: stats.append(_record(engine, events)))
    return seen, stats[0]


def _short_run(task_id: int, attempt: int, success: bool, progress: bool) -> list[Event]:
    events: list[Event] = [TaskStarted(task_id, attempt, CLIENT, T0)]
    if progress:
        events.append(TaskProgressed(task_id, attempt, CLIENT, 30, T0))
    events.append(TaskLogged(task_id, attempt, CLIENT, 3, 1, f"line of {task_id}", T0))
    if progress:
        events.append(TaskProgressed(task_id, attempt, CLIENT, 70, T0))
    events.append(TaskFinished(task_id, attempt, CLIENT, success, 5, T0,
                               error=None if success else "boom"))
    return events


def test_a_short_run_s_progress_and_sign_of_life_cost_nothing_beside_its_success(
    engine: Engine,
) -> None:
    """A run that starts, reports progress, logs and succeeds in one batch: its Success
    writes progress 100 and reported_at, so its progress and its log line's sign of life
    cost no statement (the same statements as a run that reports no progress); a failure in
    the same shape keeps its last progress."""
    _, plain_task, plain_attempt = _dispatched(engine)
    plain, _ = _statements_of(engine, _short_run(plain_task, plain_attempt, True, False))
    _, ok_task, ok_attempt = _dispatched(engine)
    busy, stats = _statements_of(engine, _short_run(ok_task, ok_attempt, True, True))
    assert len(busy) == len(plain), busy
    assert (stats.progressed, stats.logged, stats.finished, stats.ignored) == (2, 1, 1, 0)
    assert task_row(engine, ok_task)["progress"] == 100
    _, failed_task, failed_attempt = _dispatched(engine)
    _, stats = _statements_of(engine, _short_run(failed_task, failed_attempt, False, True))
    assert (stats.progressed, stats.finished) == (2, 1)
    row = task_row(engine, failed_task)
    assert (row["status"], row["progress"]) == (TaskStatus.FAIL, 70)
