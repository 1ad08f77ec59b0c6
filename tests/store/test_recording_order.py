"""Two recorders writing the same runs' events in opposite orders never deadlock: every
batch statement takes its task rows in id order (real PostgreSQL and MariaDB, two threads)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    SECOND,
    T0,
    add_interval_group,
    dispatch,
    emptied,
    module_engine,
    pending,
)

from fss.events import Event, TaskProgressed, TaskStarted
from fss.store import recording

RUNS = 40
ROUNDS = 25


@pytest.fixture(scope="module", params=["mysql", "postgres"])
def order_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    yield from module_engine(request, tmp_path_factory)


def _dispatched_runs(engine: Engine) -> list[tuple[int, int]]:
    runs = []
    for n in range(RUNS):
        group_id = add_interval_group(engine, T0, caption=f"g{n}", start_at=T0)
        task_id = pending(engine, group_id)["id"]
        runs.append((task_id, dispatch(engine, task_id, T0)))
    return runs


def _events(runs: list[tuple[int, int]], at: datetime, round_: int) -> list[Event]:
    events: list[Event] = []
    for task_id, attempt in runs:
        events.append(TaskStarted(task_id, attempt, CLIENT, at))
        events.append(TaskProgressed(task_id, attempt, CLIENT, round_ % 100, at))
    return events


def test_two_recorders_writing_opposite_orders_never_deadlock(order_engine: Engine) -> None:
    engine = emptied(order_engine)
    runs = _dispatched_runs(engine)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def recorder(order: list[tuple[int, int]]) -> None:
        start.wait()
        for round_ in range(ROUNDS):
            try:
                with engine.begin() as conn:
                    recording.record(conn, _events(order, T0 + SECOND, round_), T0 + SECOND)
            except Exception as exc:  # a deadlock is the failure this test looks for
                errors.append(exc)
                return

    threads = [threading.Thread(target=recorder, args=(order,))
               for order in (runs, runs[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
