"""Group data is saved by a successful run, or when the job saved it explicitly
(ctx.save_data -> TaskDataSaved); a failed run leaves it as it was."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import pytest
from sqlalchemy.engine import Engine
from store_helpers import CLIENT, SECOND, T0, add_interval_group, dispatch, group_raw, pending

from fss.domain.data_merge import data_patch
from fss.errors import InvalidField
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


# A run sends what it changed (data_patch, fss.domain.data_merge): applied to the group's
# data as it is when recorded, a change made while the run went on is kept.

BASE = {"cursor": 1}


def _edit_data(engine: Engine, group_id: int, data: dict[str, object]) -> None:
    from fss.store.groups import edit_group

    edit_group(engine, group_id, {"data": data}, T0)


def test_a_change_made_while_the_run_went_on_is_kept_by_its_save(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    _edit_data(engine, group_id, {"cursor": 1, "keep": "new"})  # a deploy, meanwhile
    job = {"cursor": 2}
    finished = TaskFinished(task_id, attempt, CLIENT, True, 5, T0 + SECOND, data=job,
                            data_patch=data_patch(BASE, job))
    _record(engine, [finished], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == '{"cursor":2,"keep":"new"}'


def test_an_explicit_save_and_the_finish_both_merge(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    midway = {"cursor": 5, "seen": [1]}
    saved = TaskDataSaved(task_id, attempt, CLIENT, group_id, midway, T0,
                          data_patch=data_patch(BASE, midway))
    _edit_data(engine, group_id, {"cursor": 1, "limit": 9})
    _record(engine, [saved], T0)
    assert group_raw(engine, group_id)["data"] == '{"cursor":5,"limit":9,"seen":[1]}'
    _edit_data(engine, group_id, {"cursor": 5, "limit": 10, "seen": [1]})
    end = {"seen": [1, 2]}  # the job dropped its cursor and saw one more
    finished = TaskFinished(task_id, attempt, CLIENT, True, 5, T0 + SECOND, data=end,
                            data_patch=data_patch(BASE, end))
    _record(engine, [finished], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == '{"limit":10,"seen":[1,2]}'


def test_a_finish_without_a_patch_replaces_the_data_whole_as_older_workers_expect(
    engine: Engine,
) -> None:
    group_id, task_id, attempt = _running(engine)
    _edit_data(engine, group_id, {"cursor": 1, "keep": "new"})
    _record(engine, [_finished(task_id, attempt, True, {"cursor": 2})], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == '{"cursor":2}'


def test_a_failed_run_applies_no_patch(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    job = {"cursor": 2}
    finished = TaskFinished(task_id, attempt, CLIENT, False, 5, T0 + SECOND, data=job,
                            error="boom", data_patch=data_patch(BASE, job))
    _record(engine, [finished], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == '{"cursor":1}'


def test_a_merge_the_group_cannot_hold_saves_the_runs_whole_data(engine: Engine) -> None:
    group_id, task_id, attempt = _running(engine)
    _edit_data(engine, group_id, {"cursor": 1, "blob": "x" * 40_000})
    job = {"cursor": 2, "more": "y" * 40_000}
    finished = TaskFinished(task_id, attempt, CLIENT, True, 5, T0 + SECOND, data=job,
                            data_patch=data_patch(BASE, job))
    _record(engine, [finished], T0 + SECOND)
    assert group_raw(engine, group_id)["data"] == json.dumps(job, separators=(",", ":"))


def test_a_patch_travels_with_its_event_and_a_bad_one_is_refused() -> None:
    event = TaskFinished(1, 1, CLIENT, True, 5, T0, data={"a": 2},
                         data_patch={"set": [[["a"], 2]], "unset": []})
    assert from_dict(to_dict(event)) == event
    assert "data_patch" not in to_dict(_finished(1, 1, True, {"a": 1}))
    body = to_dict(event) | {"data_patch": {"set": "a"}}
    with pytest.raises(InvalidField) as caught:
        from_dict(body)
    assert caught.value.field == "data_patch"
