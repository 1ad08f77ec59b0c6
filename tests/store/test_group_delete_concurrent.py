"""Deleting a busy group while the recorder finishes its runs: never a deadlock error.

A group at a 1 ms interval is recorded (dispatch, started, log line, finished, next task,
as the recorder writes them) in one thread while another deletes it; many groups in a row,
on PostgreSQL and MariaDB. Before, the delete locked the group row first and the recorder
the task row first: `deadlock detected` for about 1 delete in 4. And is_deadlock knows a real
deadlock of each backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from store_helpers import CLIENT, NODE, T0, TARGET, add_interval_group, emptied, module_engine

from fss.events import Event, TaskFinished, TaskLogged, TaskStarted
from fss.store import groups, recording, tasks
from fss.store.deadlocks import in_transaction_retrying, is_deadlock
from fss.store.tables import task, task_group

GROUPS = 12
MS = timedelta(milliseconds=1)


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def busy_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    yield from module_engine(request, tmp_path_factory)


def _run_once(engine: Engine, group_id: int, n: int) -> bool:
    """Dispatch the group's open task and record its whole run; False once it is gone."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(task.c.id).where(task.c.open_group_id == group_id)).first()
    if row is None:
        return False
    now = T0 + n * MS
    try:
        claimed = tasks.claim_due(engine, NODE, now + timedelta(days=1), timedelta(days=2),
                                  timedelta(seconds=30))
        mine = [c for c in claimed if c.id == row.id]
        if not mine:
            return True
        with engine.begin() as conn:
            attempt = tasks.mark_dispatched(conn, mine[0], NODE, TARGET, now)
    except DBAPIError as exc:  # the dispatcher's loop retries its iteration
        if is_deadlock(exc):
            return True
        raise
    if attempt is None:
        return True
    events: list[Event] = [
        TaskStarted(row.id, attempt, CLIENT, now),
        TaskLogged(row.id, attempt, CLIENT, group_id, 2, f"run {n}", now),
        TaskFinished(row.id, attempt, CLIENT, True, 1, now),
    ]
    # The recorder retries a deadlock (and says so); a delete must never need it to.
    in_transaction_retrying(engine, lambda conn: recording.record(conn, events, now))
    return True


def test_deleting_a_group_while_its_runs_are_recorded_never_deadlocks(
    busy_engine: Engine,
) -> None:
    engine = emptied(busy_engine)
    failures: list[BaseException] = []
    for g in range(GROUPS):
        group_id = add_interval_group(engine, T0, interval_ms=1, caption=f"busy {g}", start_at=T0)
        running = threading.Event()

        def recorder(group_id: int = group_id, running: threading.Event = running) -> None:
            n = 0
            try:
                while _run_once(engine, group_id, n) and n < 400:
                    n += 1
                    if n == 3:
                        running.set()
            except Exception as exc:
                failures.append(RuntimeError(f"recorder side: {exc}"))
            finally:
                running.set()

        thread = threading.Thread(target=recorder)
        thread.start()
        running.wait(timeout=30)
        try:
            groups.delete_group(engine, group_id)
        except Exception as exc:
            failures.append(exc)
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert failures == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(task_group)).scalar_one() == 0


def test_a_real_deadlock_is_known_as_one(busy_engine: Engine) -> None:
    engine = emptied(busy_engine)
    a, b = (add_interval_group(engine, T0, caption=c) for c in ("a", "b"))
    lock = sa.select(task_group.c.id).with_for_update()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def cross(first: int, second: int) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(lock.where(task_group.c.id == first)).all()
                barrier.wait(timeout=10)
                conn.execute(lock.where(task_group.c.id == second)).all()
        except DBAPIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=cross, args=pair) for pair in ((a, b), (b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 1 and is_deadlock(errors[0])
    assert not is_deadlock(ValueError("deadlock"))


def test_a_delete_meeting_a_finish_in_flight_waits_for_it_instead_of_deadlocking(
    busy_engine: Engine,
) -> None:
    """The finish as the recorder writes it: the task row first, then the group row. A
    delete arriving in between used to take the group row, then wait for the task: the
    deadlock, every time. Now it waits for the task first, and both go through."""
    engine = emptied(busy_engine)
    group_id = add_interval_group(engine, T0, interval_ms=1, caption="busy", start_at=T0)
    claimed = tasks.claim_due(engine, NODE, T0, timedelta(seconds=1), timedelta(seconds=30))[0]
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(conn, claimed, NODE, TARGET, T0)
    assert attempt is not None
    events: list[Event] = [TaskStarted(claimed.id, attempt, CLIENT, T0),
                           TaskFinished(claimed.id, attempt, CLIENT, True, 1, T0)]
    errors: list[BaseException] = []

    def delete() -> None:
        try:
            groups.delete_group(engine, group_id)
        except Exception as exc:
            errors.append(exc)

    deleter = threading.Thread(target=delete)
    with engine.begin() as conn:
        tasks.lock_tasks_in_id_order(conn, [claimed.id])  # the finish's first step
        deleter.start()
        deleter.join(timeout=0.5)  # the delete is under way, waiting for a lock
        assert deleter.is_alive()
        assert recording.record(conn, events, T0).finished == 1  # locks the group row
    deleter.join(timeout=30)
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(task)).scalar_one() == 0
