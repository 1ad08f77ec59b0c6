"""The recorder's SQL side (fss.store.recording.record): guarded, idempotent, batched."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    SECOND,
    T0,
    TARGET,
    UTC,
    add_interval_group,
    claim_one,
    client_rows,
    dispatch,
    get_group,
    group_raw,
    log_rows,
    open_tasks,
    pending,
    task_row,
    task_rows,
)

from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    from_dict,
)
from fss.store import groups, recording, tasks
from fss.store.recording import RecordStats
from fss.store.tables import task_group

MS = timedelta(milliseconds=1)


def _record(engine: Engine, events: Sequence[Event], now: datetime) -> RecordStats:
    with engine.begin() as conn:
        return recording.record(conn, events, now)


def _dispatched(engine: Engine, now: datetime = T0, **group: Any) -> tuple[int, int, int]:
    """A group whose first task (due at T0) is dispatched to CLIENT: (group, task, attempt)."""
    group.setdefault("start_at", T0)
    group_id = add_interval_group(engine, T0 - MINUTE, **group)
    task_id = pending(engine, group_id)["id"]
    return group_id, task_id, dispatch(engine, task_id, now)


def _finished(
    task_id: int,
    attempt: int,
    at: datetime,
    *,
    success: bool = True,
    speed: int = 1500,
    **kw: Any,
) -> TaskFinished:
    return TaskFinished(task_id, attempt, CLIENT, success, speed, at, **kw)


# --- started / progress / log ---------------------------------------------------------------


def test_started_moves_to_working_with_run_at(engine: Engine) -> None:
    _, task_id, attempt = _dispatched(engine)
    plus2 = timezone(timedelta(hours=2))
    at = (T0 + 300 * MS).astimezone(plus2)  # an aware non-UTC time is stored as the same instant

    stats = _record(engine, [TaskStarted(task_id, attempt, CLIENT, at)], T0 + SECOND)

    assert stats.started == 1
    assert stats.ignored == 0
    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.WORKING
    assert row["run_at"] == T0 + 300 * MS
    assert row["run_at"].tzinfo == UTC
    assert row["reported_at"] == T0 + SECOND


def test_progress_is_stored(engine: Engine) -> None:
    _, task_id, attempt = _dispatched(engine)
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, T0)], T0)

    stats = _record(
        engine, [TaskProgressed(task_id, attempt, CLIENT, 42, T0 + SECOND)], T0 + SECOND
    )

    assert stats.progressed == 1
    assert task_row(engine, task_id)["progress"] == 42
    assert task_row(engine, task_id)["status"] == TaskStatus.WORKING


def test_log_line_is_stored_with_level_content_and_group(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    content = "línea ✓ " + "x" * 5000
    event = TaskLogged(task_id, attempt, CLIENT, group_id, 4, content, T0 + 7 * MS)

    stats = _record(engine, [event], T0 + SECOND)

    assert stats.logged == 1
    (line,) = log_rows(engine, task_id)
    assert line["log_level"] == 4
    assert line["content"] == content
    assert line["task_group_id"] == group_id
    assert line["create_at"] == T0 + 7 * MS
    assert line["event_id"] == event.event_id
    with engine.connect() as conn:
        (read,) = tasks.task_logs(conn, task_id)
    assert read.content == content


# --- finished -------------------------------------------------------------------------------


def test_success_closes_the_task_and_schedules_the_next_on_the_grid(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, T0 + MS)], T0 + MS)
    _record(engine, [TaskProgressed(task_id, attempt, CLIENT, 60, T0 + SECOND)], T0 + SECOND)
    done = T0 + 10 * SECOND

    stats = _record(engine, [_finished(task_id, attempt, done, speed=9999)], done + MS)

    assert stats.finished == 1
    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.SUCCESS
    assert row["progress"] == 100
    assert row["run_speed"] == 9999
    assert row["finish_at"] == done
    assert row["open_group_id"] is None
    assert row["error"] is None
    (nxt,) = open_tasks(engine, group_id)
    assert nxt["start_at"] == T0 + MINUTE
    assert nxt["status"] == TaskStatus.NONE
    assert nxt["open_group_id"] == group_id
    assert nxt["attempt"] == 0
    group = get_group(engine, group_id)
    assert group.run_count == 1
    assert group.run_speed_avg == 9999
    assert group.last_run_at == done
    assert group.task_id == nxt["id"]
    assert group.next_at == T0 + MINUTE


def test_a_late_finish_skips_the_missed_slots(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    done = T0 + 150 * SECOND  # slots T0+60 s and T0+120 s were missed

    _record(engine, [_finished(task_id, attempt, done)], done)

    (nxt,) = open_tasks(engine, group_id)
    assert nxt["start_at"] == T0 + 180 * SECOND
    assert get_group(engine, group_id).next_at == T0 + 180 * SECOND


def test_run_speed_avg_is_the_mean_of_successful_runs(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [_finished(task_id, attempt, T0 + SECOND, speed=100)], T0 + SECOND)
    second = pending(engine, group_id)["id"]
    attempt = dispatch(engine, second, T0 + MINUTE)
    _record(engine, [_finished(second, attempt, T0 + MINUTE, speed=300)], T0 + MINUTE)

    group = get_group(engine, group_id)
    assert group.run_count == 2
    assert group.run_speed_avg == 200
    assert type(group.run_speed_avg) is int


def test_run_speed_avg_stays_a_whole_number(engine: Engine) -> None:
    """100 ms then 201 ms: the average is stored in a BIGINT column, so 150 or 151, an int."""
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [_finished(task_id, attempt, T0 + SECOND, speed=100)], T0 + SECOND)
    second = pending(engine, group_id)["id"]
    attempt = dispatch(engine, second, T0 + MINUTE)
    _record(engine, [_finished(second, attempt, T0 + MINUTE, speed=201)], T0 + MINUTE)

    avg = group_raw(engine, group_id)["run_speed_avg"]
    assert type(avg) is int, f"run_speed_avg read back as {avg!r} ({type(avg).__name__})"
    assert avg in (150, 151)


def test_failure_keeps_progress_stores_error_and_still_schedules(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(
        engine,
        [
            TaskStarted(task_id, attempt, CLIENT, T0),
            TaskProgressed(task_id, attempt, CLIENT, 40, T0 + SECOND),
        ],
        T0 + SECOND,
    )
    done = T0 + 5 * SECOND

    stats = _record(
        engine,
        [_finished(task_id, attempt, done, success=False, speed=5000, error="Boom: it broke")],
        done,
    )

    assert stats.finished == 1
    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.FAIL
    assert row["progress"] == 40
    assert row["error"] == "Boom: it broke"
    assert row["run_speed"] == 5000
    assert row["open_group_id"] is None
    group = get_group(engine, group_id)
    assert group.run_count == 0
    assert group.run_speed_avg == 0
    (nxt,) = open_tasks(engine, group_id)
    assert nxt["start_at"] == T0 + MINUTE
    assert group.task_id == nxt["id"]
    assert group.next_at == T0 + MINUTE


def test_a_long_error_keeps_its_tail(engine: Engine) -> None:
    _, task_id, attempt = _dispatched(engine)
    error = "head" + "e" * 20_000 + "THE END"

    _record(engine, [_finished(task_id, attempt, T0, success=False, error=error)], T0)

    stored = task_row(engine, task_id)["error"]
    assert stored == error[-recording.MAX_ERROR_CHARS :]
    assert stored.endswith("THE END")


def test_a_finish_straight_from_scheduler_is_accepted(engine: Engine) -> None:
    """A fast job's finish can overtake its start."""
    group_id, task_id, attempt = _dispatched(engine)

    _record(engine, [_finished(task_id, attempt, T0 + SECOND)], T0 + SECOND)

    assert task_row(engine, task_id)["status"] == TaskStatus.SUCCESS
    assert len(open_tasks(engine, group_id)) == 1


def test_job_returned_next_at_wins_over_the_interval(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    wanted = T0 + 7 * SECOND + 123 * MS

    _record(engine, [_finished(task_id, attempt, T0 + SECOND, next_at=wanted)], T0 + SECOND)

    (nxt,) = open_tasks(engine, group_id)
    assert nxt["start_at"] == wanted
    assert get_group(engine, group_id).next_at == wanted


def test_job_sets_next_group_uses_the_returned_time(engine: Engine) -> None:
    spec = GroupSpec(caption="job", job_name="demo.job", job_sets_next=True, start_at=T0)
    group_id = groups.add_group(engine, spec, T0 - MINUTE)
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, T0)
    wanted = T0 + timedelta(hours=5)

    _record(engine, [_finished(task_id, attempt, T0 + SECOND, next_at=wanted)], T0 + SECOND)

    assert pending(engine, group_id)["start_at"] == wanted


def test_finished_data_is_saved_to_the_group(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine, data={"cursor": 1})
    new_data = {"cursor": 2, "seen": ["ä", "b"]}

    _record(engine, [_finished(task_id, attempt, T0 + SECOND, data=new_data)], T0 + SECOND)

    assert get_group(engine, group_id).data == new_data
    assert json.loads(claim_one(engine, pending(engine, group_id)["id"], T0 + MINUTE).data) == (
        new_data
    )


def test_finished_without_data_keeps_the_group_data(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine, data={"cursor": 1})

    _record(engine, [_finished(task_id, attempt, T0 + SECOND)], T0 + SECOND)

    assert get_group(engine, group_id).data == {"cursor": 1}


def test_cron_group_next_task_at_the_next_cron_time_after_the_finish(engine: Engine) -> None:
    spec = GroupSpec(caption="cron", job_name="demo.cron", cron="*/10 * * * * *")
    group_id = groups.add_group(engine, spec, T0)  # T0 is 09:26:53.589793
    first = pending(engine, group_id)
    assert first["start_at"] == datetime(2031, 3, 14, 9, 27, 0, tzinfo=UTC)
    attempt = dispatch(engine, first["id"], first["start_at"])
    done = datetime(2031, 3, 14, 9, 27, 23, 500000, tzinfo=UTC)

    _record(engine, [_finished(first["id"], attempt, done)], done)

    (nxt,) = open_tasks(engine, group_id)
    assert nxt["start_at"] == datetime(2031, 3, 14, 9, 27, 30, tzinfo=UTC)
    assert get_group(engine, group_id).next_at == nxt["start_at"]

    # A quick run: the next firing after the planned time.
    attempt = dispatch(engine, nxt["id"], nxt["start_at"])
    quick = nxt["start_at"] + 200 * MS
    _record(engine, [_finished(nxt["id"], attempt, quick)], quick)
    assert pending(engine, group_id)["start_at"] == datetime(2031, 3, 14, 9, 27, 40, tzinfo=UTC)


# --- idempotence and fencing ----------------------------------------------------------------


def _full_run(task_id: int, attempt: int, group_id: int) -> list[Event]:
    return [
        TaskStarted(task_id, attempt, CLIENT, T0 + MS),
        TaskProgressed(task_id, attempt, CLIENT, 30, T0 + 2 * MS),
        TaskLogged(task_id, attempt, CLIENT, group_id, 2, "working", T0 + 3 * MS),
        TaskLogged(task_id, attempt, CLIENT, group_id, 3, "careful", T0 + 4 * MS),
        _finished(task_id, attempt, T0 + 5 * MS, speed=4),
    ]


def test_one_batch_with_start_progress_log_and_finish(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)

    stats = _record(engine, _full_run(task_id, attempt, group_id), T0 + SECOND)

    assert (stats.started, stats.progressed, stats.logged, stats.finished) == (1, 1, 2, 1)
    assert stats.ignored == 0
    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.SUCCESS
    assert row["progress"] == 100
    assert row["run_at"] == T0 + MS
    assert [(r["log_level"], r["content"]) for r in log_rows(engine, task_id)] == [
        (2, "working"),
        (3, "careful"),
    ]
    assert len(open_tasks(engine, group_id)) == 1


def test_replaying_the_same_batch_changes_nothing(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    batch = _full_run(task_id, attempt, group_id)
    _record(engine, batch, T0 + SECOND)
    tasks_before = task_rows(engine)
    group_before = group_raw(engine, group_id)
    logs_before = log_rows(engine)

    again = _record(engine, batch, T0 + MINUTE)
    in_pieces = [_record(engine, [event], T0 + 2 * MINUTE) for event in batch]

    assert task_rows(engine) == tasks_before
    assert group_raw(engine, group_id) == group_before
    assert log_rows(engine) == logs_before
    assert len(tasks_before) == 2
    assert get_group(engine, group_id).run_count == 1
    assert (again.started, again.progressed, again.logged, again.finished) == (0, 0, 0, 0)
    assert sum(s.ignored for s in in_pieces) == len(batch)


def test_duplicate_log_events_in_one_batch_are_written_once(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    line = TaskLogged(task_id, attempt, CLIENT, group_id, 2, "once", T0)

    _record(engine, [line, line, line], T0)

    assert [r["content"] for r in log_rows(engine, task_id)] == ["once"]


def _redispatched(engine: Engine) -> tuple[int, int, int]:
    """A task dispatched, undone and dispatched again: (group, task, current attempt 2)."""
    group_id, task_id, attempt = _dispatched(engine)
    with engine.begin() as conn:
        assert tasks.undo_dispatch(conn, task_id, attempt)
    current = dispatch(engine, task_id, T0 + SECOND)
    assert current == attempt + 1 == 2
    return group_id, task_id, current


def test_events_of_a_stale_attempt_are_ignored(engine: Engine) -> None:
    group_id, task_id, current = _redispatched(engine)
    stale = current - 1

    stats = _record(engine, _full_run(task_id, stale, group_id), T0 + 2 * SECOND)

    assert stats.ignored == 5
    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.SCHEDULER
    assert row["progress"] == 0
    assert row["attempt"] == current
    assert log_rows(engine) == []
    assert get_group(engine, group_id).run_count == 0
    assert len(task_rows(engine, group_id)) == 1
    # The current attempt still goes through.
    stats = _record(engine, _full_run(task_id, current, group_id), T0 + 3 * SECOND)
    assert stats.finished == 1
    assert task_row(engine, task_id)["status"] == TaskStatus.SUCCESS


def test_events_from_another_client_are_ignored(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    other = "client-2"
    events: list[Event] = [
        TaskStarted(task_id, attempt, other, T0),
        TaskProgressed(task_id, attempt, other, 80, T0),
        TaskLogged(task_id, attempt, other, group_id, 2, "not mine", T0),
        TaskFinished(task_id, attempt, other, True, 1, T0),
    ]

    stats = _record(engine, events, T0 + SECOND)

    assert stats.ignored == 4
    row = task_row(engine, task_id)
    assert (row["status"], row["progress"], row["client_id"]) == (
        TaskStatus.SCHEDULER,
        0,
        TARGET.client_id,
    )
    assert log_rows(engine) == []
    assert len(task_rows(engine, group_id)) == 1


def test_events_after_finish_do_not_move_the_task_back(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [_finished(task_id, attempt, T0 + SECOND, success=False, error="x")], T0)

    stats = _record(
        engine,
        [
            TaskStarted(task_id, attempt, CLIENT, T0 + 2 * SECOND),
            TaskProgressed(task_id, attempt, CLIENT, 99, T0 + 2 * SECOND),
            _finished(task_id, attempt, T0 + 3 * SECOND),
        ],
        T0 + 3 * SECOND,
    )

    assert stats.ignored == 3
    row = task_row(engine, task_id)
    assert (row["status"], row["progress"]) == (TaskStatus.FAIL, 0)
    assert len(task_rows(engine, group_id)) == 2


def test_finish_for_a_disabled_group_creates_no_next_task(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, T0)], T0)
    groups.set_enabled(engine, group_id, False, T0 + SECOND)

    stats = _record(engine, [_finished(task_id, attempt, T0 + 2 * SECOND)], T0 + 2 * SECOND)

    assert stats.finished == 1
    assert task_row(engine, task_id)["status"] == TaskStatus.SUCCESS
    assert open_tasks(engine, group_id) == []
    assert len(task_rows(engine, group_id)) == 1
    assert get_group(engine, group_id).run_count == 1
    # Enabling it again schedules exactly one task.
    groups.set_enabled(engine, group_id, True, T0 + 3 * SECOND)
    assert len(open_tasks(engine, group_id)) == 1


def test_events_for_a_deleted_group_break_nothing(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    groups.delete_group(engine, group_id)

    stats = _record(engine, _full_run(task_id, attempt, group_id), T0 + SECOND)

    assert stats.ignored == 5
    assert task_rows(engine) == []
    assert log_rows(engine) == []


def test_finish_after_the_group_row_vanished_closes_the_task_only(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    with engine.begin() as conn:
        conn.execute(task_group.delete().where(task_group.c.id == group_id))

    stats = _record(engine, _full_run(task_id, attempt, group_id), T0 + SECOND)

    assert stats.finished == 1
    assert task_row(engine, task_id)["status"] == TaskStatus.SUCCESS
    assert len(task_rows(engine)) == 1


# --- clients --------------------------------------------------------------------------------


def _beat(client_id: str = CLIENT, pid: int = 100, jobs: tuple[str, ...] = ("b", "a")) -> Event:
    return ClientHeartbeat(client_id, "worker-host", "10.0.0.7", pid, jobs, f"fss.{client_id}", T0)


def test_heartbeat_registers_then_updates_one_client_row(engine: Engine) -> None:
    stats = _record(engine, [_beat()], T0)
    assert stats.heartbeats == 1
    (row,) = client_rows(engine)
    assert row["id"] == CLIENT
    assert row["registered_at"] == T0
    assert row["heartbeat_at"] == T0
    assert json.loads(row["job_names"]) == ["a", "b"]
    assert row["queue"] == f"fss.{CLIENT}"
    assert row["language"] == "python"

    _record(engine, [_beat(pid=101, jobs=("c",))], T0 + 3 * SECOND)
    _record(engine, [_beat(pid=101, jobs=("c",))], T0 + 3 * SECOND)  # unchanged values

    (row,) = client_rows(engine)
    assert row["heartbeat_at"] == T0 + 3 * SECOND
    assert row["registered_at"] == T0
    assert row["pid"] == 101
    assert json.loads(row["job_names"]) == ["c"]


def test_several_heartbeats_in_one_batch_make_one_row_each(engine: Engine) -> None:
    _record(engine, [_beat(), _beat("client-2"), _beat(pid=7)], T0)

    rows = client_rows(engine)
    assert [(r["id"], r["pid"]) for r in rows] == [(CLIENT, 7), ("client-2", 100)]


def test_client_left_deletes_it(engine: Engine) -> None:
    _record(engine, [_beat(), _beat("client-2")], T0)

    _record(engine, [ClientLeft(CLIENT, T0 + SECOND), ClientLeft("nobody", T0)], T0 + SECOND)

    assert [r["id"] for r in client_rows(engine)] == ["client-2"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM client")).scalar_one() == 1


# --- batches over several tasks -------------------------------------------------------------


def test_one_batch_over_several_tasks_counts_and_applies_each(engine: Engine) -> None:
    runs = [_dispatched(engine) for _ in range(3)]
    (g1, t1, a1), (g2, t2, a2), (g3, t3, a3) = runs
    events: list[Event] = [TaskStarted(t, a, CLIENT, T0) for _, t, a in runs]
    events += [
        TaskStarted(t1, a1 + 1, CLIENT, T0),  # not an attempt that exists
        TaskProgressed(t1, a1, CLIENT, 30, T0 + MS),
        TaskProgressed(t1, a1, CLIENT, 70, T0 + 2 * MS),
        TaskProgressed(t2, a2, CLIENT, 10, T0 + MS),
        TaskLogged(t1, a1, CLIENT, g1, 2, "one", T0),
        TaskLogged(t3, a3, CLIENT, g3, 2, "three", T0),
        _finished(t2, a2, T0 + SECOND),
        _finished(t3, a3, T0 + SECOND, success=False, error="bad"),
    ]

    stats = _record(engine, events, T0 + SECOND)

    assert (stats.started, stats.progressed, stats.logged, stats.finished) == (3, 3, 2, 2)
    assert stats.ignored == 1
    assert (task_row(engine, t1)["status"], task_row(engine, t1)["progress"]) == (
        TaskStatus.WORKING,
        70,
    )
    assert task_row(engine, t2)["status"] == TaskStatus.SUCCESS
    assert task_row(engine, t3)["status"] == TaskStatus.FAIL
    assert [len(open_tasks(engine, g)) for g in (g1, g2, g3)] == [1, 1, 1]
    assert pending(engine, g2)["start_at"] == T0 + MINUTE
    assert pending(engine, g3)["start_at"] == T0 + MINUTE
    assert [r["task_group_id"] for r in log_rows(engine)] == [g1, g3]


def test_a_log_event_with_a_canonical_uuid_id_is_recorded(engine: Engine) -> None:
    """Non-Python clients (the gRPC bridge) naturally send ids like str(uuid4()): 36 characters.

    events.from_dict accepts any string as event_id, so the store must take it too; on
    PostgreSQL and MariaDB run_log.event_id is VARCHAR(32) and the whole batch fails instead
    (the recorder then drops the message, finished events included).
    """
    group_id, task_id, attempt = _dispatched(engine)
    event_id = str(uuid.uuid4())
    wire = {
        "type": "log",
        "task_id": task_id,
        "attempt": attempt,
        "client_id": CLIENT,
        "group_id": group_id,
        "level": 2,
        "content": "from a Go client",
        "at": T0.isoformat(),
        "event_id": event_id,
    }
    events = [from_dict(wire), _finished(task_id, attempt, T0 + SECOND)]

    stats = _record(engine, events, T0 + SECOND)

    assert stats.logged == 1
    assert [r["event_id"] for r in log_rows(engine, task_id)] == [event_id]
    assert task_row(engine, task_id)["status"] == TaskStatus.SUCCESS


def test_late_events_of_a_deleted_task_never_touch_a_newer_task(engine: Engine) -> None:
    """Ids are not reused: the new group's task (same client, attempt 1) ignores them."""
    old_group, old_task, attempt = _dispatched(engine)
    groups.delete_group(engine, old_group)
    new_group, new_task, new_attempt = _dispatched(engine)
    assert new_attempt == attempt

    stats = _record(engine, _full_run(old_task, attempt, old_group), T0 + SECOND)

    assert new_task != old_task
    assert stats.ignored == 5
    row = task_row(engine, new_task)
    assert (row["status"], row["progress"]) == (TaskStatus.SCHEDULER, 0)
    assert log_rows(engine) == []
    assert len(task_rows(engine, new_group)) == 1


# --- liveness: a run that logs is alive -----------------------------------------------------


def _log(task_id: int, attempt: int, group_id: int, at: datetime, text: str = "tick") -> Event:
    return TaskLogged(task_id, attempt, CLIENT, group_id, 2, text, at)


def test_a_log_line_refreshes_the_liveness_time_of_its_run(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, T0)], T0)

    _record(engine, [_log(task_id, attempt, group_id, T0 + 4 * SECOND)], T0 + 5 * SECOND)

    assert task_row(engine, task_id)["reported_at"] == T0 + 5 * SECOND  # the recorder's time


def test_a_log_line_of_an_entered_run_whose_start_is_late_refreshes_it_too(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)

    _record(engine, [_log(task_id, attempt, group_id, T0)], T0 + 2 * SECOND)

    row = task_row(engine, task_id)
    assert (row["status"], row["reported_at"]) == (TaskStatus.SCHEDULER, T0 + 2 * SECOND)


def test_a_replayed_log_line_is_no_new_sign_of_life(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    line = _log(task_id, attempt, group_id, T0)
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, T0), line], T0 + SECOND)

    _record(engine, [line], T0 + MINUTE)

    assert task_row(engine, task_id)["reported_at"] == T0 + SECOND


def test_log_lines_of_a_stale_attempt_or_a_finished_run_refresh_nothing(engine: Engine) -> None:
    group_id, task_id, current = _redispatched(engine)
    before = task_row(engine, task_id)["reported_at"]

    _record(engine, [_log(task_id, current - 1, group_id, T0)], T0 + 9 * SECOND)
    assert task_row(engine, task_id)["reported_at"] == before

    done = T0 + 10 * SECOND
    _record(engine, [_finished(task_id, current, done)], done)
    late = _log(task_id, current, group_id, done + SECOND, "after the end")
    stats = _record(engine, [late], done + MINUTE)

    row = task_row(engine, task_id)
    assert (row["status"], row["reported_at"]) == (TaskStatus.SUCCESS, done)
    assert stats.logged == 1  # the line itself is kept: it belongs to the run


def test_log_lines_of_many_runs_refresh_each_in_one_batch(engine: Engine) -> None:
    runs = [_dispatched(engine) for _ in range(3)]
    lines = [_log(t, a, g, T0 + SECOND, f"line {i}") for g, t, a in runs for i in range(4)]

    stats = _record(engine, lines, T0 + 3 * SECOND)

    assert stats.logged == 12
    assert [task_row(engine, t)["reported_at"] for _, t, _ in runs] == [T0 + 3 * SECOND] * 3


# --- the scheduler side's clock decides the next run ----------------------------------------

FAST = timedelta(seconds=60)  # the worker's clock runs a minute ahead of the recorder's


def test_a_worker_clock_a_minute_fast_makes_an_interval_group_skip_no_slot(
    engine: Engine,
) -> None:
    group_id, task_id, attempt = _dispatched(engine, interval_ms=1000)
    planned = T0
    for k in range(1, 6):
        ended = planned + 100 * MS  # by the recorder's clock
        _record(engine, [_finished(task_id, attempt, ended + FAST, speed=100)], ended)

        nxt = pending(engine, group_id)
        assert nxt["start_at"] == T0 + k * SECOND
        group = get_group(engine, group_id)
        assert (group.next_at, group.last_run_at) == (T0 + k * SECOND, ended)
        assert task_row(engine, task_id)["finish_at"] == ended + FAST  # the worker's account
        planned, task_id = nxt["start_at"], nxt["id"]
        attempt = dispatch(engine, task_id, planned)


def test_a_worker_clock_a_minute_fast_makes_a_cron_group_skip_no_slot(engine: Engine) -> None:
    spec = GroupSpec(caption="cron", job_name="demo.cron", cron="*/10 * * * * *")
    group_id = groups.add_group(engine, spec, T0)
    first = pending(engine, group_id)
    planned = first["start_at"]
    attempt = dispatch(engine, first["id"], planned)
    ended = planned + 200 * MS

    _record(engine, [_finished(first["id"], attempt, ended + FAST, speed=200)], ended)

    assert pending(engine, group_id)["start_at"] == planned + 10 * SECOND
    assert get_group(engine, group_id).last_run_at == ended


def test_a_worker_clock_a_minute_slow_does_not_replay_the_slots_a_long_run_covered(
    engine: Engine,
) -> None:
    group_id, task_id, attempt = _dispatched(engine, interval_ms=1000)
    ended = T0 + 5 * SECOND + 300 * MS  # ran 5.3 s, slots 1..5 are covered

    _record(engine, [_finished(task_id, attempt, ended - FAST, speed=5300)], ended + 50 * MS)

    assert pending(engine, group_id)["start_at"] == T0 + 6 * SECOND


# --- a job-returned time in the past ---------------------------------------------------------

LONG_AGO = T0 - timedelta(days=1)


def test_a_past_job_time_runs_once_as_soon_as_possible_then_the_schedule(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)  # every minute from T0
    ended = T0 + SECOND

    _record(engine, [_finished(task_id, attempt, ended, next_at=LONG_AGO)], ended + MS)

    catch_up = pending(engine, group_id)
    assert (catch_up["start_at"], catch_up["catch_up"]) == (ended + MS, True)
    assert get_group(engine, group_id).next_at == ended + MS

    attempt = dispatch(engine, catch_up["id"], ended + MS)
    again = ended + 2 * SECOND
    _record(engine, [_finished(catch_up["id"], attempt, again, next_at=LONG_AGO)], again)

    following = pending(engine, group_id)
    assert (following["start_at"], following["catch_up"]) == (ended + MS + MINUTE, False)


def test_again_at_once_is_no_catch_up_run(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    ended = T0 + SECOND

    _record(engine, [_finished(task_id, attempt, ended, next_at=ended, speed=900)], ended)

    nxt = pending(engine, group_id)
    assert (nxt["start_at"], nxt["catch_up"]) == (ended, False)


def test_a_catch_up_run_may_still_ask_for_a_future_time(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [_finished(task_id, attempt, T0 + SECOND, next_at=LONG_AGO)], T0 + SECOND)
    catch_up = pending(engine, group_id)
    attempt = dispatch(engine, catch_up["id"], T0 + SECOND)
    wanted = T0 + timedelta(hours=2)

    _record(engine, [_finished(catch_up["id"], attempt, T0 + 2 * SECOND, next_at=wanted)],
            T0 + 2 * SECOND)

    nxt = pending(engine, group_id)
    assert (nxt["start_at"], nxt["catch_up"]) == (wanted, False)


def test_a_job_that_always_returns_a_past_time_never_spins_its_group(engine: Engine) -> None:
    """Given a job-only group whose job returns yesterday every time, when 7 s pass with
    quick runs, then the group ran twice (once, then once to catch up), not hundreds of times."""
    spec = GroupSpec(caption="job", job_name="demo.job", job_sets_next=True, start_at=T0)
    group_id = groups.add_group(engine, spec, T0 - MINUTE)
    runs = 0
    while (waiting := pending(engine, group_id))["start_at"] <= T0 + 7 * SECOND:
        now = max(waiting["start_at"], T0)
        attempt = dispatch(engine, waiting["id"], now)
        _record(engine, [_finished(waiting["id"], attempt, now + 15 * MS, speed=15,
                                   next_at=LONG_AGO)], now + 15 * MS)
        runs += 1

    assert runs == 2
    assert pending(engine, group_id)["start_at"] == T0 + 30 * MS + timedelta(seconds=30)


def test_schedule_next_applies_the_same_catch_up_rule(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched(engine)
    _record(engine, [_finished(task_id, attempt, T0 + SECOND)], T0 + SECOND)  # a next task
    with engine.begin() as conn:
        conn.execute(sa.update(task_group).values(task_id=None))
        conn.execute(sa.delete(recording.task).where(recording.task.c.open_group_id == group_id))

    with engine.begin() as conn:
        first = recording.schedule_next(conn, group_id=group_id, planned_at=T0,
                                        finished_at=T0 + SECOND, success=True, run_speed_ms=5,
                                        job_next_at=LONG_AGO)
    assert first is not None
    assert (task_row(engine, first)["start_at"], task_row(engine, first)["catch_up"]) == (
        T0 + SECOND, True)
    with engine.begin() as conn:
        conn.execute(sa.delete(recording.task).where(recording.task.c.id == first))
        second = recording.schedule_next(conn, group_id=group_id, planned_at=T0 + SECOND,
                                         finished_at=T0 + 2 * SECOND, success=True,
                                         run_speed_ms=5, job_next_at=LONG_AGO, catch_up=True)
    assert second is not None
    assert (task_row(engine, second)["start_at"], task_row(engine, second)["catch_up"]) == (
        T0 + SECOND + MINUTE, False)


@pytest.mark.parametrize(
    "broken", [{"cron": "61 * * * *"}, {"cron": "0 0 * * *", "time_zone": "Mars/Olympus"}]
)
def test_a_stored_schedule_that_cannot_be_evaluated_still_finishes_the_run(
    engine: Engine, caplog: pytest.LogCaptureFixture, broken: dict[str, str]
) -> None:
    """A cron or zone edited by hand in SQL (or a zone gone from the system) must not make the
    finished event fail: the run is recorded and the group goes on 30 s later, saying why."""
    group_id, task_id, attempt = _dispatched(engine)
    with engine.begin() as conn:
        conn.execute(
            task_group.update()
            .where(task_group.c.id == group_id)
            .values(interval_ms=None, **broken)
        )

    stats = _record(engine, [_finished(task_id, attempt, T0 + SECOND)], T0 + SECOND)

    assert stats.finished == 1
    assert task_row(engine, task_id)["status"] == TaskStatus.SUCCESS
    assert pending(engine, group_id)["start_at"] == T0 + SECOND + timedelta(seconds=30)
    assert any(
        "schedule cannot be evaluated" in r.getMessage() and r.levelname == "ERROR"
        for r in caplog.records
    )


def test_a_batch_of_lines_keeps_its_order_and_drops_replays_and_stale_attempts(
    engine: Engine,
) -> None:
    group_id, task_id, current = _redispatched(engine)
    stored = _log(task_id, current, group_id, T0, "stored before")
    _record(engine, [stored], T0 + SECOND)
    batch = [
        _log(task_id, current, group_id, T0, "first"),
        _log(task_id, current - 1, group_id, T0, "of the attempt before"),
        stored,  # a replay
        _log(task_id, current, group_id, T0, "second"),
        TaskLogged(task_id, current, "another-client", group_id, 2, "not its client", T0),
        _log(task_id, current, group_id, T0, "third"),
    ]
    stats = _record(engine, batch, T0 + 2 * SECOND)
    assert stats.logged == 3
    assert [r["content"] for r in log_rows(engine, task_id)] == [
        "stored before", "first", "second", "third"]
    assert {r["attempt"] for r in log_rows(engine, task_id)} == {current}
