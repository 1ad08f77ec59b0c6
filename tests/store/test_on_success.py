"""on_success in the recorder's finish: a run that ends Success starts its child groups' waiting
tasks now (kind 'child'), once; a failure, a replay, a disabled or running child start nothing,
and the parent's run log says what happened to each child."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    SECOND,
    T0,
    add_interval_group,
    dispatch,
    log_rows,
    open_tasks,
    pending,
    task_row,
)

from fss.domain.status import TaskStatus
from fss.events import TaskFinished
from fss.store import groups, recording

NOW = T0 + 10 * SECOND
HOUR_LATER = T0 + timedelta(hours=1)


def child(engine: Engine, key: str, **changes: Any) -> int:
    """A group due in an hour, keyed."""
    changes.setdefault("start_at", HOUR_LATER)
    group_id = add_interval_group(engine, T0, interval_ms=3_600_000, **changes)
    groups.edit_group(engine, group_id, {"key": key}, T0)
    return group_id


def parent(engine: Engine, *on_success: str | int) -> tuple[int, int, int]:
    """A group naming `on_success`, its first run dispatched: (group, task, attempt)."""
    group_id = add_interval_group(engine, T0, start_at=T0, on_success=on_success)
    task_id = pending(engine, group_id)["id"]
    return group_id, task_id, dispatch(engine, task_id, T0 + SECOND)


def finish(engine: Engine, task_id: int, attempt: int, success: bool = True,
           now: datetime = NOW) -> int:
    event = TaskFinished(task_id, attempt, CLIENT, success, 100, now - SECOND)
    with engine.begin() as conn:
        return recording.record(conn, [event], now).finished


def lines(engine: Engine, task_id: int) -> list[str]:
    return [r["content"] for r in log_rows(engine, task_id)]


def test_a_success_starts_the_children_named_by_key_and_by_id_now(engine: Engine) -> None:
    by_key = child(engine, "load")
    by_id = child(engine, "report")
    waiting = {g: pending(engine, g)["id"] for g in (by_key, by_id)}
    _, task_id, attempt = parent(engine, "load", by_id)

    assert finish(engine, task_id, attempt) == 1

    for group_id in (by_key, by_id):
        row = pending(engine, group_id)
        assert row["id"] == waiting[group_id]  # the same waiting task, moved
        assert (row["start_at"], row["kind"], row["claimed_by"]) == (NOW, "child", None)
        assert lines(engine, row["id"]) == [
            f"started by on_success of group {task_row(engine, task_id)['task_group_id']} "
            f"(task {task_id})"
        ]
    assert lines(engine, task_id) == [
        f"on_success: group {by_key} runs now (task {waiting[by_key]})",
        f"on_success: group {by_id} runs now (task {waiting[by_id]})",
    ]


def test_a_replayed_success_starts_nothing_again(engine: Engine) -> None:
    load = child(engine, "load")
    _, task_id, attempt = parent(engine, "load")
    finish(engine, task_id, attempt)
    before = pending(engine, load), log_rows(engine)

    assert finish(engine, task_id, attempt, now=NOW + 5 * SECOND) == 0

    assert (pending(engine, load), log_rows(engine)) == before


def test_a_failure_starts_no_child(engine: Engine) -> None:
    load = child(engine, "load")
    before = pending(engine, load)
    _, task_id, attempt = parent(engine, "load")

    finish(engine, task_id, attempt, success=False)

    assert pending(engine, load) == before
    assert not any("on_success" in line for line in lines(engine, task_id))


def test_a_running_disabled_or_deleted_child_is_left_alone_and_the_log_says_so(
    engine: Engine,
) -> None:
    running = child(engine, "running", start_at=T0)
    dispatch(engine, pending(engine, running)["id"], T0)
    disabled = child(engine, "disabled")
    due = child(engine, "due", start_at=T0)
    gone = child(engine, "gone")
    _, task_id, attempt = parent(engine, "running", "disabled", "due", "gone")
    groups.set_enabled(engine, disabled, False, T0)
    groups.delete_group(engine, gone)
    due_before = pending(engine, due)

    finish(engine, task_id, attempt)

    assert task_row(engine, due_before["id"]) == due_before  # due already: it runs anyway
    assert lines(engine, task_id) == [
        f"on_success: group {running} is running; not started again",
        f"on_success: group {disabled} is disabled; not started",
        f"on_success: group {due} is due already; not started again",
        "on_success: no group has the key 'gone'; nothing started",
    ]
    assert [r["status"] for r in [task_row(engine, t) for t in _open(engine, running)]] == [
        TaskStatus.SCHEDULER
    ]


def test_a_batch_of_successes_starts_every_child_once(engine: Engine) -> None:
    shared = child(engine, "shared")
    own = [child(engine, f"own{i}") for i in range(4)]
    runs = [parent(engine, "shared", f"own{i}") for i in range(4)]
    events = [TaskFinished(t, a, CLIENT, True, 100, NOW - SECOND) for _, t, a in runs]
    with engine.begin() as conn:
        assert recording.record(conn, events, NOW).finished == 4

    for group_id in [shared, *own]:
        row = pending(engine, group_id)
        assert (row["start_at"], row["kind"]) == (NOW, "child")
    assert len(lines(engine, pending(engine, shared)["id"])) == 4  # one per parent's success


def _open(engine: Engine, group_id: int) -> list[int]:
    return [r["id"] for r in open_tasks(engine, group_id)]
