"""fss group run --data: the run gets its own data (task.run_data, kind 'manual'); the group's
data stays unless the job changes it; bad data is refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    NODE,
    SECOND,
    T0,
    add_interval_group,
    claim_one,
    dispatch,
    get_group,
    pending,
    task_row,
)

from fss.errors import InvalidField
from fss.events import TaskFinished
from fss.store import groups, recording, tasks

GROUP_DATA = {"cursor": 41, "name": "nightly"}


def finish(engine: Engine, task_id: int, data: dict[str, Any] | None = None) -> None:
    tasks.release_claims(engine, NODE)  # claimed by a check before: dispatch claims anew
    attempt = dispatch(engine, task_id, T0 + SECOND)
    event = TaskFinished(task_id, attempt, CLIENT, True, 10, T0 + 2 * SECOND, data=data)
    with engine.begin() as conn:
        assert recording.record(conn, [event], T0 + 2 * SECOND).finished == 1


def test_a_run_with_data_carries_it_and_leaves_the_groups_data(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + 3600 * SECOND, data=GROUP_DATA)
    task_id = groups.run_now(engine, group_id, T0, {"cursor": 0, "reindex": True})

    row = task_row(engine, task_id)
    assert (row["kind"], row["start_at"]) == ("manual", T0)
    assert claim_one(engine, task_id, T0).data == '{"cursor":0,"reindex":true}'
    finish(engine, task_id)  # the job left ctx.data as it got it: no data in the event

    assert get_group(engine, group_id).data == GROUP_DATA
    following = pending(engine, group_id)
    assert (following["kind"], following["run_data"]) == ("scheduled", None)
    assert claim_one(engine, following["id"], following["start_at"]).data == (
        '{"cursor":41,"name":"nightly"}'
    )


def test_data_the_job_changed_is_saved_to_the_group(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, data=GROUP_DATA)
    task_id = groups.run_now(engine, group_id, T0, {"cursor": 0})
    finish(engine, task_id, data={"cursor": 5})
    assert get_group(engine, group_id).data == {"cursor": 5}


def test_a_run_without_data_is_manual_and_gets_the_groups_data(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, data=GROUP_DATA)
    task_id = groups.run_now(engine, group_id, T0, {"once": 1})
    assert groups.run_now(engine, group_id, T0 + SECOND) == task_id  # the latest run wins
    row = task_row(engine, task_id)
    assert (row["kind"], row["run_data"]) == ("manual", None)
    assert claim_one(engine, task_id, T0 + SECOND).data == '{"cursor":41,"name":"nightly"}'


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ({"blob": "x" * 70_000}, "larger than"),
        ({"x": float("nan")}, "data"),
    ],
)
def test_bad_data_is_refused_naming_the_field_and_nothing_changes(
    engine: Engine, data: Any, reason: str
) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + 3600 * SECOND)
    before = pending(engine, group_id)
    with pytest.raises(InvalidField) as caught:
        groups.run_now(engine, group_id, T0, data)
    assert caught.value.field == "data" and reason in str(caught.value)
    assert pending(engine, group_id) == before
