"""Task group administration (fss.store.groups): every change keeps exactly one pending task."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from store_helpers import (
    CLIENT,
    MINUTE,
    NODE,
    SECOND,
    T0,
    UTC,
    add_interval_group,
    claim,
    count,
    dispatch,
    get_group,
    group_raw,
    interval_spec,
    log_rows,
    open_tasks,
    pending,
    task_row,
    task_rows,
)

from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.errors import GroupBusy, GroupNotFound, InvalidField
from fss.events import TaskFinished, TaskLogged, TaskStarted
from fss.store import alert_console, groups, recording
from fss.store.tables import alert_silence, run_log, task, task_group


def _start(engine: Engine, task_id: int, attempt: int, at: datetime) -> None:
    with engine.begin() as conn:
        stats = recording.record(conn, [TaskStarted(task_id, attempt, CLIENT, at)], at)
    assert stats.started == 1


def _running(engine: Engine, group_id: int, status: TaskStatus, now: datetime = T0) -> int:
    """Put the group's pending task into `status` (Scheduler or Working); returns its id."""
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, now)
    if status == TaskStatus.WORKING:
        _start(engine, task_id, attempt, now)
    assert task_row(engine, task_id)["status"] == status
    return task_id


# --- add_group -------------------------------------------------------------------------------


def test_add_interval_group_creates_one_pending_task_now(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)

    rows = task_rows(engine, group_id)
    assert len(rows) == 1
    only = rows[0]
    assert only["status"] == TaskStatus.NONE == 0
    assert only["open_group_id"] == group_id
    assert only["task_group_id"] == group_id
    assert only["job_name"] == "demo.job"
    assert only["start_at"] == T0
    assert only["progress"] == 0
    assert only["attempt"] == 0
    assert only["claimed_by"] is None
    group = get_group(engine, group_id)
    assert group.task_id == only["id"]
    assert group.next_at == T0
    assert group.start_at == T0
    assert group.is_enable is True
    assert group.run_count == 0


def test_add_interval_group_with_future_start_waits_for_it(engine: Engine) -> None:
    start = T0 + timedelta(hours=2)
    group_id = add_interval_group(engine, T0, start_at=start)

    assert pending(engine, group_id)["start_at"] == start
    assert get_group(engine, group_id).next_at == start


def test_add_interval_group_with_past_start_takes_the_next_grid_slot(engine: Engine) -> None:
    # Grid start - 150 s + k * 60 s: the first slot not before T0 is start + 180 s = T0 + 30 s.
    group_id = add_interval_group(engine, T0, start_at=T0 - timedelta(seconds=150))

    assert pending(engine, group_id)["start_at"] == T0 + timedelta(seconds=30)
    assert get_group(engine, group_id).next_at == T0 + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("cron", "time_zone", "expected"),
    [
        # T0 is 09:26:53.589793 UTC.
        ("*/15 * * * *", None, datetime(2031, 3, 14, 9, 30, tzinfo=UTC)),
        ("*/10 * * * * *", None, datetime(2031, 3, 14, 9, 27, 0, tzinfo=UTC)),
        # 09:00 in Tokyo (UTC+9, no DST) is 00:00 UTC: tomorrow's run.
        ("0 9 * * *", "Asia/Tokyo", datetime(2031, 3, 15, 0, 0, tzinfo=UTC)),
    ],
)
def test_add_cron_group_pending_task_at_the_first_cron_time(
    engine: Engine, cron: str, time_zone: str | None, expected: datetime
) -> None:
    spec = GroupSpec(caption="cron", job_name="demo.cron", cron=cron, time_zone=time_zone)
    group_id = groups.add_group(engine, spec, T0)

    row = pending(engine, group_id)
    assert row["start_at"] == expected
    assert row["open_group_id"] == group_id
    assert get_group(engine, group_id).next_at == expected


def test_add_cron_group_with_future_start_takes_the_first_cron_time_after_it(
    engine: Engine,
) -> None:
    spec = GroupSpec(
        caption="cron", job_name="demo.cron", cron="0 * * * *", start_at=T0 + timedelta(hours=3)
    )
    group_id = groups.add_group(engine, spec, T0)

    assert pending(engine, group_id)["start_at"] == datetime(2031, 3, 14, 13, 0, tzinfo=UTC)


def test_add_job_sets_next_group_runs_at_its_start(engine: Engine) -> None:
    now_group = groups.add_group(
        engine, GroupSpec(caption="job", job_name="demo.job", job_sets_next=True), T0
    )
    later = T0 + timedelta(minutes=7)
    later_group = groups.add_group(
        engine,
        GroupSpec(caption="job", job_name="demo.job", job_sets_next=True, start_at=later),
        T0,
    )

    assert pending(engine, now_group)["start_at"] == T0
    assert pending(engine, later_group)["start_at"] == later
    assert get_group(engine, now_group).schedule.kind == "job"


def test_add_disabled_group_has_no_task(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, is_enable=False)

    assert task_rows(engine, group_id) == []
    group = get_group(engine, group_id)
    assert group.is_enable is False
    assert group.task_id is None


def test_add_invalid_group_writes_nothing(engine: Engine) -> None:
    bad = GroupSpec(caption="both", job_name="demo.job", interval_ms=1000, cron="* * * * *")
    with pytest.raises(InvalidField):
        groups.add_group(engine, bad, T0)

    assert count(engine, task_group) == 0
    assert count(engine, task) == 0


def test_group_data_round_trips(engine: Engine) -> None:
    data = {"path": "/srv/ünïcode ✓", "n": [1, 2, {"deep": None}], "flag": True}
    group_id = add_interval_group(engine, T0, data=data)

    assert get_group(engine, group_id).data == data


# --- datetimes ------------------------------------------------------------------------------


def test_datetimes_round_trip_as_aware_utc_with_microseconds(engine: Engine) -> None:
    plus_0530 = timezone(timedelta(hours=5, minutes=30))
    start = datetime(2031, 3, 14, 20, 0, 0, 123456, tzinfo=plus_0530)  # 14:30:00.123456 UTC
    now = datetime(2031, 3, 14, 10, 11, 12, 654321, tzinfo=UTC)
    group_id = add_interval_group(engine, now, start_at=start)

    group = get_group(engine, group_id)
    expected = datetime(2031, 3, 14, 14, 30, 0, 123456, tzinfo=UTC)
    for value in (group.start_at, group.next_at, pending(engine, group_id)["start_at"]):
        assert value == expected
        assert value.tzinfo == UTC
        assert value.microsecond == 123456
    for value in (group.created_at, group.activate_at, pending(engine, group_id)["create_at"]):
        assert value == now
        assert value.tzinfo == UTC
        assert value.microsecond == 654321


def test_naive_datetimes_are_taken_as_utc(engine: Engine) -> None:
    naive = datetime(2031, 3, 14, 11, 0, 0, 5)
    group_id = add_interval_group(engine, T0, start_at=naive)

    assert pending(engine, group_id)["start_at"] == naive.replace(tzinfo=UTC)


# --- edit_group -----------------------------------------------------------------------------


def test_edit_interval_to_cron_moves_the_pending_task_and_clears_its_claim(
    engine: Engine,
) -> None:
    group_id = add_interval_group(engine, T0, interval_ms=3_600_000, start_at=T0 + MINUTE)
    task_id = pending(engine, group_id)["id"]
    assert [c.id for c in claim(engine, T0, lookahead=timedelta(minutes=5))] == [task_id]
    assert task_row(engine, task_id)["claimed_by"] == NODE

    now = T0 + SECOND
    edited = groups.edit_group(engine, group_id, {"cron": "0 */2 * * *"}, now)

    row = pending(engine, group_id)
    assert row["id"] == task_id
    expected = datetime(2031, 3, 14, 10, 0, tzinfo=UTC)
    assert row["start_at"] == expected
    assert row["claimed_by"] is None
    assert row["claimed_until"] is None
    assert edited.cron == "0 */2 * * *"
    assert edited.interval_ms is None
    assert edited.next_at == expected
    assert len(open_tasks(engine, group_id)) == 1


def test_edit_interval_moves_the_pending_task_within_the_new_interval(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, interval_ms=3_600_000, start_at=T0 - 7 * MINUTE)
    assert pending(engine, group_id)["start_at"] == T0 + 53 * MINUTE

    now = T0 + SECOND
    groups.edit_group(engine, group_id, {"interval_ms": 5 * 60_000}, now)

    moved = pending(engine, group_id)["start_at"]
    assert now <= moved <= now + 5 * MINUTE
    group = get_group(engine, group_id)
    assert group.interval_ms == 300_000
    assert group.next_at == moved


def test_edit_to_later_start_moves_the_pending_task(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    later = T0 + timedelta(days=1, microseconds=7)

    groups.edit_group(engine, group_id, {"start_at": later}, T0)

    assert pending(engine, group_id)["start_at"] == later
    assert get_group(engine, group_id).start_at == later


def test_edit_caption_and_job_name_keeps_the_schedule(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + MINUTE)

    edited = groups.edit_group(
        engine, group_id, {"caption": "renamed", "job_name": "other.job"}, T0 + SECOND
    )

    row = pending(engine, group_id)
    assert row["start_at"] == T0 + MINUTE
    assert row["job_name"] == "other.job"
    assert edited.caption == "renamed"
    assert edited.interval_ms == 60_000


def test_edit_leaves_a_running_task_alone(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    task_id = _running(engine, group_id, TaskStatus.SCHEDULER)

    groups.edit_group(engine, group_id, {"interval_ms": 1000}, T0 + SECOND)

    rows = open_tasks(engine, group_id)
    assert [r["id"] for r in rows] == [task_id]
    assert rows[0]["status"] == TaskStatus.SCHEDULER
    assert rows[0]["start_at"] == T0


def test_invalid_edit_changes_nothing(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + MINUTE)
    before = group_raw(engine, group_id)

    with pytest.raises(InvalidField):
        groups.edit_group(engine, group_id, {"interval_ms": -5}, T0)

    assert group_raw(engine, group_id) == before
    assert pending(engine, group_id)["start_at"] == T0 + MINUTE


# --- set_enabled ----------------------------------------------------------------------------


def test_disable_deletes_the_waiting_task(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)

    group = groups.set_enabled(engine, group_id, False, T0 + SECOND)

    assert group.is_enable is False
    assert group.activate_at == T0 + SECOND
    assert task_rows(engine, group_id) == []


@pytest.mark.parametrize("status", [TaskStatus.SCHEDULER, TaskStatus.WORKING])
def test_disable_leaves_a_dispatched_or_running_task(engine: Engine, status: TaskStatus) -> None:
    group_id = add_interval_group(engine, T0)
    task_id = _running(engine, group_id, status)

    groups.set_enabled(engine, group_id, False, T0 + SECOND)

    rows = task_rows(engine, group_id)
    assert [(r["id"], r["status"], r["open_group_id"]) for r in rows] == [
        (task_id, status, group_id)
    ]


def test_enable_creates_exactly_one_pending_task(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, is_enable=False)

    now = T0 + 10 * MINUTE + SECOND
    group = groups.set_enabled(engine, group_id, True, now)
    groups.set_enabled(engine, group_id, True, now + SECOND)

    rows = task_rows(engine, group_id)
    assert len(rows) == 1
    # The grid T0 + k minutes: the first slot at or after now.
    assert rows[0]["start_at"] == T0 + 11 * MINUTE
    assert rows[0]["open_group_id"] == group_id
    assert group.is_enable is True
    assert group.task_id == rows[0]["id"]
    assert group.next_at == T0 + 11 * MINUTE


def test_disable_then_enable_gives_one_pending_task(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    for step in range(3):
        now = T0 + step * SECOND
        groups.set_enabled(engine, group_id, False, now)
        groups.set_enabled(engine, group_id, True, now)

    assert len(task_rows(engine, group_id)) == 1
    assert pending(engine, group_id)["status"] == TaskStatus.NONE


def test_enable_while_a_task_runs_adds_no_second_task(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    task_id = _running(engine, group_id, TaskStatus.WORKING)
    groups.set_enabled(engine, group_id, False, T0 + SECOND)

    groups.set_enabled(engine, group_id, True, T0 + 2 * SECOND)

    assert [r["id"] for r in open_tasks(engine, group_id)] == [task_id]


# --- run_now --------------------------------------------------------------------------------


def test_run_now_makes_the_pending_task_due_now(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + timedelta(hours=1))
    task_id = pending(engine, group_id)["id"]
    # Another node holds a claim on it (look-ahead reaches it): run_now frees it.
    assert claim(engine, T0, "node-b", lookahead=timedelta(hours=2))

    now = T0 + 5 * SECOND
    assert groups.run_now(engine, group_id, now) == task_id

    row = pending(engine, group_id)
    assert row["id"] == task_id
    assert row["start_at"] == now
    assert row["claimed_by"] is None
    assert get_group(engine, group_id).next_at == now
    assert [c.id for c in claim(engine, now, lookahead=timedelta(0))] == [task_id]


@pytest.mark.parametrize("status", [TaskStatus.SCHEDULER, TaskStatus.WORKING])
def test_run_now_refuses_while_dispatched_or_running(engine: Engine, status: TaskStatus) -> None:
    group_id = add_interval_group(engine, T0)
    task_id = _running(engine, group_id, status)

    with pytest.raises(GroupBusy) as caught:
        groups.run_now(engine, group_id, T0 + SECOND)

    assert caught.value.group_id == group_id
    assert caught.value.task_id == task_id
    assert [r["id"] for r in task_rows(engine, group_id)] == [task_id]


def test_run_now_on_a_group_without_a_task_creates_one(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, is_enable=False)

    task_id = groups.run_now(engine, group_id, T0 + SECOND)

    row = pending(engine, group_id)
    assert row["id"] == task_id
    assert row["start_at"] == T0 + SECOND
    assert row["open_group_id"] == group_id


# --- delete_group ---------------------------------------------------------------------------


def test_delete_group_removes_group_tasks_and_logs(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    other = add_interval_group(engine, T0)
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, T0)
    with engine.begin() as conn:
        recording.record(
            conn,
            [
                TaskStarted(task_id, attempt, CLIENT, T0),
                TaskLogged(task_id, attempt, CLIENT, group_id, 2, "hello", T0),
                TaskFinished(task_id, attempt, CLIENT, True, 10, T0 + SECOND),
            ],
            T0 + SECOND,
        )
    assert len(task_rows(engine, group_id)) == 2  # the finished one and the next
    assert len(log_rows(engine)) == 1

    groups.delete_group(engine, group_id)

    assert task_rows(engine, group_id) == []
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).where(run_log.c.task_group_id == group_id)
            ).scalar_one()
            == 0
        )
        with pytest.raises(GroupNotFound):
            groups.get_group(conn, group_id)
        assert [g.id for g in groups.list_groups(conn)] == [other]
    assert len(task_rows(engine, other)) == 1


def test_delete_group_removes_its_alert_silence_and_leaves_the_others(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    other = add_interval_group(engine, T0)
    for silenced in (group_id, other):
        alert_console.silence_group(engine, silenced, T0 + MINUTE, "admin", "deploy", T0)

    groups.delete_group(engine, group_id)

    with engine.connect() as conn:
        left = conn.execute(sa.select(alert_silence.c.task_group_id)).scalars().all()
        assert left == [other]
        assert alert_console.silenced_groups(conn, [group_id, other], T0) == {other}


def test_delete_group_keeps_the_silence_when_the_delete_rolls_back(engine: Engine) -> None:
    """The silence goes in the group's own transaction: a delete that fails keeps both."""
    group_id = add_interval_group(engine, T0)
    alert_console.silence_group(engine, group_id, T0 + MINUTE, "admin", None, T0)

    with pytest.raises(RuntimeError), engine.begin() as conn:
        groups.delete_groups(conn, [group_id])
        raise RuntimeError("rolled back")

    with engine.connect() as conn:
        assert alert_console.silenced_groups(conn, [group_id], T0) == {group_id}
    assert get_group(engine, group_id).id == group_id


@pytest.mark.parametrize(
    "call",
    [
        lambda e: groups.edit_group(e, 987_654_321, {"caption": "x"}, T0),
        lambda e: groups.set_enabled(e, 987_654_321, True, T0),
        lambda e: groups.set_enabled(e, 987_654_321, False, T0),
        lambda e: groups.run_now(e, 987_654_321, T0),
        lambda e: groups.delete_group(e, 987_654_321),
        lambda e: get_group(e, 987_654_321),
    ],
    ids=["edit", "enable", "disable", "run_now", "delete", "get"],
)
def test_unknown_group_raises_group_not_found(engine: Engine, call: Any) -> None:
    add_interval_group(engine, T0)
    with pytest.raises(GroupNotFound) as caught:
        call(engine)
    assert caught.value.group_id == 987_654_321
    assert count(engine, task) == 1


# --- the schema's "at most one unfinished task per group" ---------------------------------


def _insert_task(engine: Engine, group_id: int, open_group_id: int | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            task.insert().values(
                task_group_id=group_id,
                job_name="demo.job",
                start_at=T0,
                status=TaskStatus.NONE if open_group_id else TaskStatus.SUCCESS,
                open_group_id=open_group_id,
                create_at=T0,
            )
        )


def test_unique_open_group_id_rejects_a_second_unfinished_task(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)

    with pytest.raises(IntegrityError):
        _insert_task(engine, group_id, group_id)

    assert len(task_rows(engine, group_id)) == 1


def test_finished_tasks_do_not_count_against_the_unique_index(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    _insert_task(engine, group_id, None)
    _insert_task(engine, group_id, None)

    assert len(task_rows(engine, group_id)) == 3
    assert len(open_tasks(engine, group_id)) == 1


def test_enable_cron_group_takes_the_next_cron_time(engine: Engine) -> None:
    spec = GroupSpec(caption="cron", job_name="demo.cron", cron="0 */6 * * *", is_enable=False)
    group_id = groups.add_group(engine, spec, T0 - timedelta(days=3))

    groups.set_enabled(engine, group_id, True, T0)

    assert pending(engine, group_id)["start_at"] == datetime(2031, 3, 14, 12, 0, tzinfo=UTC)


def test_edit_with_an_unchanged_interval_keeps_the_pending_slot(engine: Engine) -> None:
    """Re-saving a group's schedule as it is (a form that sends every field) moves nothing.

    The hourly group started 7 minutes ago: its pending run is at T0 + 53 min, on its grid.
    edit_group reschedules from max(start_at, now), so the grid is lost and the task becomes
    due at once: an extra, unplanned run. add_group and set_enabled keep to the grid.
    """
    group_id = add_interval_group(engine, T0, interval_ms=3_600_000, start_at=T0 - 7 * MINUTE)
    assert pending(engine, group_id)["start_at"] == T0 + 53 * MINUTE

    groups.edit_group(engine, group_id, {"interval_ms": 3_600_000}, T0 + SECOND)

    assert pending(engine, group_id)["start_at"] == T0 + 53 * MINUTE
    assert get_group(engine, group_id).next_at == T0 + 53 * MINUTE


# --- versions: every edit bumps it, a stale edit is refused ----------------------------------


def test_every_edit_bumps_the_version_and_a_stale_one_writes_nothing(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    assert get_group(engine, group_id).version == 1
    groups.edit_group(engine, group_id, {"caption": "a"}, T0, expected_version=1)
    groups.set_enabled(engine, group_id, False, T0)
    assert get_group(engine, group_id).version == 3
    before = group_raw(engine, group_id)

    with pytest.raises(groups.GroupChanged) as refused:
        groups.edit_group(engine, group_id, {"caption": "b"}, T0, expected_version=1)

    assert refused.value.current.version == 3
    assert group_raw(engine, group_id) == before


@pytest.mark.parametrize("how", ["finished", "saved"])
def test_data_a_job_changed_bumps_the_version_so_an_edit_begun_before_is_refused(
    engine: Engine, how: str
) -> None:
    """A form opened on the old data must not overwrite what a run wrote meanwhile."""
    from fss.events import TaskDataSaved

    group_id = add_interval_group(engine, T0, data={"cursor": 1})
    row = pending(engine, group_id)
    task_id, at = row["id"], row["start_at"]
    attempt = dispatch(engine, task_id, at)
    seen = get_group(engine, group_id).version
    events: list[Any] = [TaskStarted(task_id, attempt, CLIENT, at)]
    if how == "saved":
        events.append(TaskDataSaved(task_id, attempt, CLIENT, group_id, {"cursor": 2}, at))
    else:
        events.append(TaskFinished(task_id, attempt, CLIENT, True, 5, at, data={"cursor": 2}))
    with engine.begin() as conn:
        recording.record(conn, events, at)
    if how == "saved":  # saving the same data again changes nothing, the version included
        with engine.begin() as conn:
            recording.record(
                conn, [TaskDataSaved(task_id, attempt, CLIENT, group_id, {"cursor": 2}, at)], at
            )
    after = get_group(engine, group_id)
    assert (after.data, after.version) == ({"cursor": 2}, seen + 1)

    with pytest.raises(groups.GroupChanged):
        groups.edit_group(engine, group_id, {"data": {"cursor": 0}}, at, expected_version=seen)
    assert get_group(engine, group_id).data == {"cursor": 2}


def test_a_run_that_leaves_the_data_as_it_was_keeps_the_version(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, data={"cursor": 1})
    row = pending(engine, group_id)
    task_id, at = row["id"], row["start_at"]
    attempt = dispatch(engine, task_id, at)
    seen = get_group(engine, group_id).version
    with engine.begin() as conn:
        recording.record(conn, [TaskStarted(task_id, attempt, CLIENT, at),
                                TaskFinished(task_id, attempt, CLIENT, True, 5, at)], at)
    assert get_group(engine, group_id).version == seen


def test_an_edit_writes_only_the_fields_it_names(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, data={"counter": 1})
    with engine.begin() as conn:  # a run saved its counter (the recorder writes data)
        conn.execute(task_group.update().values(data='{"counter":9}'))

    edited = groups.edit_group(engine, group_id, {"caption": "renamed"}, T0)

    assert (edited.caption, edited.data) == ("renamed", {"counter": 9})


def test_an_edit_of_a_row_locked_by_another_edit_from_the_same_version_loses(
    engine: Engine,
) -> None:
    """Two edits from version 1: the second runs its guarded UPDATE while the first holds the
    row, and is refused once the first commits (PostgreSQL re-checks the WHERE, InnoDB reads
    the latest row, SQLite waits for the writer)."""
    group_id = add_interval_group(engine, T0)
    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            groups.edit_group(engine, group_id, {"caption": "second"}, T0, expected_version=1)
            outcome.append(None)
        except groups.GroupChanged as exc:
            outcome.append(exc)

    with engine.begin() as conn:
        assert groups._bump_version(conn, group_id, 1, {"caption": "first"})
        racer = threading.Thread(target=second)
        racer.start()
        racer.join(0.5)  # it waits on the row (or the database) meanwhile
    racer.join(10)

    assert len(outcome) == 1 and isinstance(outcome[0], groups.GroupChanged)
    group = get_group(engine, group_id)
    assert (group.caption, group.version) == ("first", 2)


def test_concurrent_edits_from_one_version_exactly_one_wins(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    for round_no in range(1, 6):
        gate = threading.Barrier(2)
        won: list[str] = []

        def edit(
            name: str, version: int = round_no, gate: threading.Barrier = gate,
            won: list[str] = won,
        ) -> None:
            gate.wait()
            try:
                groups.edit_group(engine, group_id, {"caption": name}, T0,
                                  expected_version=version)
                won.append(name)
            except groups.GroupChanged:
                pass

        threads = [threading.Thread(target=edit, args=(f"r{round_no}-{n}",)) for n in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        group = get_group(engine, group_id)
        assert len(won) == 1
        assert (group.caption, group.version) == (won[0], round_no + 1)


# --- run policies --------------------------------------------------------------------------

POLICIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_ms": 250,
    "retry_backoff": 1.1,
    "retry_delay_max_ms": 60_000,
    "retry_jitter": False,
    "max_run_s": 90,
    "overlap": "buffer_one",
    "route": "sticky",
    "client_tag": "gpu",
    "jitter_ms": 5_000,
}


def test_every_run_policy_round_trips(engine: Engine) -> None:
    group_id = add_interval_group(engine, **POLICIES)
    group = get_group(engine, group_id)
    assert {name: getattr(group, name) for name in POLICIES} == POLICIES
    assert groups.spec_of(group).validated() == groups.spec_of(group)


def test_a_new_group_has_the_policy_defaults_that_keep_todays_behaviour(engine: Engine) -> None:
    group = get_group(engine, add_interval_group(engine))
    assert (group.retries, group.retry_delay_ms, group.retry_backoff) == (0, 1000, 2.0)
    assert (group.retry_delay_max_ms, group.retry_jitter, group.max_run_s) == (None, True, None)
    assert (group.overlap, group.route, group.client_tag) == ("skip", "round_robin", None)
    assert (group.on_success, group.jitter_ms, group.disabled_note, group.enable_at) == (
        (), 0, None, None
    )


def test_an_edit_of_one_policy_writes_only_it(engine: Engine) -> None:
    group_id = add_interval_group(engine, retries=2)
    edited = groups.edit_group(engine, group_id, {"route": "failover", "max_run_s": 30}, T0)
    assert (edited.route, edited.max_run_s, edited.retries, edited.version) == (
        "failover", 30, 2, 2
    )
    with pytest.raises(InvalidField, match=r"^overlap: 'later' is not one of skip, buffer_one"):
        groups.edit_group(engine, group_id, {"overlap": "later"}, T0)
    with pytest.raises(InvalidField, match=r"^retry_delay_max_ms: must be >= retry_delay_ms"):
        groups.edit_group(engine, group_id, {"retry_delay_max_ms": 10}, T0)
    assert get_group(engine, group_id).version == 2


# --- alert settings ----------------------------------------------------------------------------


def test_the_alert_settings_round_trip_and_are_stored_as_json_text(engine: Engine) -> None:
    group_id = add_interval_group(
        engine, alert_targets=("ops-slack", "mail.oncall"), alert_rules=("group_late", "hung"),
        late_after_s=5400,
    )
    group = get_group(engine, group_id)
    assert (group.alert_targets, group.alert_rules, group.late_after_s) == (
        ("ops-slack", "mail.oncall"), ("hung", "group_late"), 5400
    )
    raw = group_raw(engine, group_id)
    assert (raw["alert_targets"], raw["alert_rules"], raw["late_after_s"]) == (
        '["ops-slack","mail.oncall"]', '["hung","group_late"]', 5400
    )
    assert groups.spec_of(group).validated() == groups.spec_of(group)
    body = group.to_json()
    assert (body["alert_targets"], body["alert_rules"]) == (
        ["ops-slack", "mail.oncall"], ["hung", "group_late"]
    )
    assert "alert_open" not in body  # the scheduler's own flag, never shown


def test_no_alert_settings_are_null_columns_and_no_alerts_is_an_empty_list(
    engine: Engine,
) -> None:
    plain = add_interval_group(engine)
    raw = group_raw(engine, plain)
    assert (raw["alert_targets"], raw["alert_rules"], raw["late_after_s"]) == (None, None, None)
    group = get_group(engine, plain)
    assert (group.alert_targets, group.alert_rules, group.late_after_s) == ((), None, None)
    quiet = add_interval_group(engine, alert_rules=())
    assert group_raw(engine, quiet)["alert_rules"] == "[]"
    assert get_group(engine, quiet).alert_rules == ()


def test_an_edit_of_an_alert_setting_bumps_the_version_and_null_goes_back_to_the_default(
    engine: Engine,
) -> None:
    group_id = add_interval_group(engine)
    edited = groups.edit_group(
        engine, group_id, {"alert_targets": ("ops",), "alert_rules": (), "late_after_s": 60}, T0
    )
    assert (edited.alert_targets, edited.alert_rules, edited.late_after_s, edited.version) == (
        ("ops",), (), 60, 2
    )
    with pytest.raises(InvalidField, match=r"^alert_rules: unknown rule 'late' \(rules: "):
        groups.edit_group(engine, group_id, {"alert_rules": ("late",)}, T0)
    with pytest.raises(InvalidField, match=r"^alert_targets: 'ops' is listed twice$"):
        groups.edit_group(engine, group_id, {"alert_targets": ("ops", "ops")}, T0)
    with pytest.raises(InvalidField, match=r"^late_after_s: must be 1..31622400, got 0$"):
        groups.edit_group(engine, group_id, {"late_after_s": 0}, T0)
    assert get_group(engine, group_id).version == 2
    cleared = groups.edit_group(
        engine, group_id, {"alert_targets": (), "alert_rules": None, "late_after_s": None}, T0
    )
    assert (cleared.alert_targets, cleared.alert_rules, cleared.late_after_s) == ((), None, None)
    assert cleared.version == 3
    raw = group_raw(engine, group_id)
    assert (raw["alert_targets"], raw["alert_rules"], raw["late_after_s"]) == (None, None, None)


def test_an_edit_of_an_alert_setting_leaves_the_alert_open_flag_alone(engine: Engine) -> None:
    group_id = add_interval_group(engine)
    with engine.begin() as conn:
        conn.execute(
            task_group.update().where(task_group.c.id == group_id).values(alert_open=True)
        )
    groups.edit_group(engine, group_id, {"alert_rules": ("run_failed",)}, T0)
    assert group_raw(engine, group_id)["alert_open"] in (True, 1)


def test_on_success_names_groups_by_key_or_id(engine: Engine) -> None:
    child = add_interval_group(engine)
    keyed = groups.add_group(engine, interval_spec(), T0, key="report")
    parent = add_interval_group(engine, on_success=("report", child))
    assert get_group(engine, parent).on_success == ("report", child)
    assert group_raw(engine, parent)["on_success"] == f'["report",{child}]'
    assert keyed != parent


def test_on_success_refuses_an_unknown_group_and_writes_nothing(engine: Engine) -> None:
    # the added group's id is of an insert that is rolled back: not named
    with pytest.raises(InvalidField, match=r"^on_success: no group has the key 'x'$"):
        add_interval_group(engine, on_success=("x",))
    with pytest.raises(InvalidField, match=r"^on_success: no group has the id 999$"):
        add_interval_group(engine, on_success=(999,))
    assert count(engine, task_group) == 0 and count(engine, task) == 0


def test_on_success_refuses_a_cycle_naming_it(engine: Engine) -> None:
    a = groups.add_group(engine, interval_spec(), T0, key="a")
    groups.add_group(engine, interval_spec(on_success=("a",)), T0, key="b")
    with pytest.raises(InvalidField, match=r"^on_success: cycle a -> b -> a$"):
        groups.edit_group(engine, a, {"on_success": ("b",)}, T0)
    with pytest.raises(InvalidField, match=r"^on_success: cycle a -> a$"):
        groups.edit_group(engine, a, {"on_success": (a,)}, T0)
    group = get_group(engine, a)
    assert (group.on_success, group.version) == ((), 1)
    c = groups.add_group(engine, interval_spec(), T0, key="c")
    groups.edit_group(engine, a, {"on_success": ("c",)}, T0)  # a chain is fine
    with pytest.raises(InvalidField, match=r"^on_success: cycle c -> b -> a -> c$"):
        groups.edit_group(engine, c, {"on_success": ["b"]}, T0)


def test_disable_with_a_note_until_a_time_then_enable_clears_both(engine: Engine) -> None:
    group_id = add_interval_group(engine)
    until = T0 + MINUTE
    group = groups.set_enabled(engine, group_id, False, T0, note="db migration", until=until)
    assert (group.is_enable, group.disabled_note, group.enable_at) == (False, "db migration", until)
    assert open_tasks(engine, group_id) == []
    group = groups.set_enabled(engine, group_id, True, T0 + SECOND)
    assert (group.is_enable, group.disabled_note, group.enable_at) == (True, None, None)
    assert len(open_tasks(engine, group_id)) == 1


@pytest.mark.parametrize(
    ("note", "until", "message"),
    [
        ("x" * 513, None, "^disabled_note: longer than 512"),
        ("a\nb", None, "^disabled_note: must not contain control characters"),
        (None, T0, "^enable_at: .* is not in the future"),
    ],
)
def test_a_bad_note_or_until_is_refused(
    engine: Engine, note: str | None, until: datetime | None, message: str
) -> None:
    group_id = add_interval_group(engine)
    with pytest.raises(InvalidField, match=message):
        groups.set_enabled(engine, group_id, False, T0, note=note, until=until)
    assert get_group(engine, group_id).is_enable


def test_enable_due_groups_enables_each_due_group_once_with_one_waiting_task(
    engine: Engine,
) -> None:
    due = add_interval_group(engine)
    later = add_interval_group(engine)
    forever = add_interval_group(engine)
    groups.set_enabled(engine, due, False, T0, note="deploy", until=T0 + MINUTE)
    groups.set_enabled(engine, later, False, T0, until=T0 + 2 * MINUTE)
    groups.set_enabled(engine, forever, False, T0, note="broken")
    assert groups.enable_due_groups(engine, T0 + MINUTE - SECOND) == []
    assert groups.enable_due_groups(engine, T0 + MINUTE) == [due]
    assert groups.enable_due_groups(engine, T0 + MINUTE) == []
    group = get_group(engine, due)
    assert (group.is_enable, group.disabled_note, group.enable_at) == (True, None, None)
    assert pending(engine, due)["start_at"] >= T0 + MINUTE
    assert open_tasks(engine, later) == [] and open_tasks(engine, forever) == []
    assert get_group(engine, forever).disabled_note == "broken"


def test_enable_due_groups_adds_no_second_task_while_a_run_finishes(engine: Engine) -> None:
    group_id = add_interval_group(engine)
    _running(engine, group_id, TaskStatus.WORKING)
    groups.set_enabled(engine, group_id, False, T0, until=T0 + MINUTE)
    assert groups.enable_due_groups(engine, T0 + MINUTE) == [group_id]
    assert len(open_tasks(engine, group_id)) == 1


def test_enable_due_groups_from_two_schedulers_at_once_enables_once(engine: Engine) -> None:
    ids = [add_interval_group(engine) for _ in range(5)]
    for group_id in ids:
        groups.set_enabled(engine, group_id, False, T0, until=T0 + SECOND)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def enable() -> None:
        try:
            results.append(groups.enable_due_groups(engine, T0 + MINUTE))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enable) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors and engine.dialect.name == "sqlite":  # SQLite: one writer; the other may wait out
        pytest.skip(f"sqlite refused the second writer: {errors[0]}")
    assert not errors
    assert sorted(i for found in results for i in found) == ids
    assert all(len(open_tasks(engine, group_id)) == 1 for group_id in ids)


def test_an_edit_that_enables_and_clears_the_note_itself_is_fine(engine: Engine) -> None:
    group_id = add_interval_group(engine)
    groups.set_enabled(engine, group_id, False, T0, note="why", until=T0 + MINUTE)
    changes = {"is_enable": True, "disabled_note": None, "enable_at": None}
    group = groups.edit_group(engine, group_id, changes, T0)
    assert (group.is_enable, group.disabled_note, group.enable_at) == (True, None, None)
    assert len(open_tasks(engine, group_id)) == 1
