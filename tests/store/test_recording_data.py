"""Group data is saved by a successful run, or when the job saved it explicitly
(ctx.save_data -> TaskDataSaved); a failed run leaves it as it was."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Engine
from store_helpers import CLIENT, SECOND, T0, add_interval_group, dispatch, group_raw, pending

from fss.events import Event, TaskDataSaved, TaskFinished, TaskStarted, from_dict, to_dict
from fss.store import recording


def _record(engine: Engine, events: Sequence[Event], now: datetime) -> recording.RecordStats:
    with engine.begin() as conn:
        return recording.record(conn, events, now)


def _running(engine: Engine) -> tuple[int, int, int]:
    group_id = add_interval_group(engine, T0, data={"cursor": 1}, start_at=T0)
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, T0)
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, T0)], T0)
    return group_id, task_id, attempt


def _finished(task_id: int, attempt: int, success: bool, data: dict[str, int]) -> TaskFinished:
    return TaskFinished(task_id, attempt, CLIENT, success, 5, T0 + SECOND, data=data,
                        error=None if success else "boom")


def test_a_failed_run_does_not_save_its_data(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    _record(engine, [_finished(task_id, attempt, False, {"cursor": 2})], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == '{"cursor":1}'


def test_a_successful_run_saves_its_data(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    _record(engine, [_finished(task_id, attempt, True, {"cursor": 2})], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == '{"cursor":2}'


def test_data_the_job_saved_explicitly_stays_when_the_run_then_fails(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    saved = TaskDataSaved(task_id, attempt, CLIENT, group_id, {"cursor": 7}, T0)
    assert _record(engine, [saved], T0).data_saved == 1
    assert group_raw(engine, group_id)["data"] == '{"cursor":7}'
    _record(engine, [saved, _finished(task_id, attempt, False, {"cursor": 9})], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == '{"cursor":7}'


def test_a_save_of_a_stale_attempt_or_a_finished_task_changes_nothing(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    stale = TaskDataSaved(task_id, attempt + 1, CLIENT, group_id, {"cursor": 5}, T0)
    stats = _record(engine, [stale], T0)
    assert (stats.data_saved, stats.ignored) == (0, 1)
    _record(engine, [_finished(task_id, attempt, True, {"cursor": 2})], T0 + SECOND)
    late = TaskDataSaved(task_id, attempt, CLIENT, group_id, {"cursor": 3}, T0)
    assert _record(engine, [late], T0 + 2 * SECOND).data_saved == 0
    assert group_raw(engine, group_id)["data"] == '{"cursor":2}'


def test_a_data_event_travels_as_json() -> None:
    event = TaskDataSaved(1, 1, CLIENT, 2, {"cursor": "x"}, T0)
    assert from_dict(to_dict(event)) == event
