"""A run whose `started` and successful `finished` come in one batch is written by one UPDATE
on PostgreSQL (fss.store.recording.FoldedStarts): the same rows and counts as a start and a
finish written apart, on every backend, replays and stale starts included."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    SECOND,
    T0,
    add_interval_group,
    dispatch,
    pending,
    statements_of,
    task_row,
)

from fss.domain.status import TaskStatus
from fss.events import Event, TaskFinished, TaskStarted
from fss.store import recording
from fss.store.recording import RecordStats

MS = timedelta(milliseconds=1)


def _record(engine: Engine, events: Sequence[Event], now: datetime) -> RecordStats:
    with engine.begin() as conn:
        return recording.record(conn, events, now)


def _dispatched(engine: Engine, **group: object) -> tuple[int, int]:
    group_id = add_interval_group(engine, T0 - MINUTE, start_at=T0, **group)
    task_id = pending(engine, group_id)["id"]
    return task_id, dispatch(engine, task_id, T0)


def _batch(runs: list[tuple[int, int]], fail_last: bool = False) -> list[Event]:
    starts: list[Event] = [
        TaskStarted(task_id, attempt, CLIENT, T0 + (n + 1) * MS)
        for n, (task_id, attempt) in enumerate(runs)
    ]
    ends: list[Event] = [
        TaskFinished(task_id, attempt, CLIENT, not (fail_last and n == len(runs) - 1), 5,
                     T0 + 100 * MS)
        for n, (task_id, attempt) in enumerate(runs)
    ]
    return starts + ends


def test_runs_that_start_and_end_in_one_batch_get_their_start_and_end(engine: Engine) -> None:
    runs = [_dispatched(engine) for _ in range(3)]
    # A fourth run whose start was recorded by an earlier batch: its start comes again
    # (a replay) with its end; the replay is no start and leaves run_at as it was.
    replayed = _dispatched(engine)
    _record(engine, [TaskStarted(*replayed, CLIENT, T0 + 50 * MS)], T0 + SECOND)
    batch = [
        *_batch(runs, fail_last=True),
        TaskStarted(*replayed, CLIENT, T0 + 60 * MS),
        TaskFinished(*replayed, CLIENT, True, 5, T0 + 100 * MS),
    ]

    stats = _record(engine, batch, T0 + 2 * SECOND)

    assert (stats.started, stats.finished, stats.ignored) == (3, 4, 1)
    for n, (task_id, _) in enumerate(runs):
        row = task_row(engine, task_id)
        assert row["run_at"] == T0 + (n + 1) * MS
        expected = TaskStatus.FAIL if n == 2 else TaskStatus.SUCCESS
        assert (row["status"], row["finish_at"]) == (expected, T0 + 100 * MS)
    row = task_row(engine, replayed[0])
    assert (row["status"], row["run_at"]) == (TaskStatus.SUCCESS, T0 + 50 * MS)


def test_a_replayed_batch_of_starts_and_ends_changes_nothing(engine: Engine) -> None:
    runs = [_dispatched(engine) for _ in range(2)]
    batch = _batch(runs)
    first = _record(engine, batch, T0 + SECOND)
    rows = [task_row(engine, task_id) for task_id, _ in runs]

    again = _record(engine, batch, T0 + MINUTE)

    assert (first.started, first.finished) == (2, 2)
    assert (again.started, again.finished, again.ignored) == (0, 0, len(batch))
    assert [task_row(engine, task_id) for task_id, _ in runs] == rows


def test_a_start_whose_end_is_retried_instead_is_written_by_its_own_update(
    engine: Engine,
) -> None:
    """Two ends in the batch, one a failure its group retries: one end is left to write,
    below the set-based path; the successful run's start is still written, first."""
    runs = [_dispatched(engine), _dispatched(engine, retries=2)]
    stats = _record(engine, _batch(runs, fail_last=True), T0 + SECOND)

    assert stats.started == 2
    assert task_row(engine, runs[0][0])["run_at"] == T0 + MS
    assert task_row(engine, runs[0][0])["status"] == TaskStatus.SUCCESS
    retried = task_row(engine, runs[1][0])
    assert retried["status"] == TaskStatus.NONE and retried["attempt"] == runs[1][1]


def test_on_postgresql_a_run_that_starts_and_ends_in_one_batch_costs_one_update(
    pg_engine: Engine,
) -> None:
    from store_helpers import emptied

    engine = emptied(pg_engine)
    runs = [_dispatched(engine) for _ in range(3)]
    running = _dispatched(engine)  # starts in this batch, ends in a later one

    sent = statements_of(
        engine,
        lambda: _record(engine, [*_batch(runs), TaskStarted(*running, CLIENT, T0)],
                        T0 + SECOND),
    )

    updates = [s for s in sent if s.lstrip().startswith("UPDATE task SET")]
    # One UPDATE for the three ends with their starts, one for the start of the run going on.
    assert len(updates) == 2, updates
    assert sum("v.started_at" in s for s in updates) == 1
    assert task_row(engine, running[0])["status"] == TaskStatus.WORKING
    assert all(task_row(engine, t)["run_at"] == T0 + (n + 1) * MS for n, (t, _) in
               enumerate(runs))

    more = [_dispatched(engine) for _ in range(2)]
    sent = statements_of(engine, lambda: _record(engine, _batch(more), T0 + 2 * SECOND))
    assert len([s for s in sent if s.lstrip().startswith("UPDATE task SET")]) == 1
