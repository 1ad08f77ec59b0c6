"""fss.store.views on SQLite, PostgreSQL and MySQL/MariaDB: the per-dialect minute buckets,
the newest finished task per group, task search pages and cursors."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import T0, add_interval_group

from fss.domain.status import TaskStatus
from fss.errors import InvalidField
from fss.store import views
from fss.store.tables import task, task_group


def finished(engine: Engine, group_id: int, status: TaskStatus, at: object,
             error: str | None = None, job_name: str = "demo.job",
             client_id: str | None = None) -> int:
    """A finished task of the group, written as the recorder leaves one."""
    with engine.begin() as conn:
        result = conn.execute(task.insert().values(
            task_group_id=group_id, job_name=job_name, start_at=at, status=status,
            finish_at=at, run_speed=10, create_at=at, error=error, client_id=client_id))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def test_runs_per_minute_buckets_by_utc_minute(engine: Engine) -> None:
    group_id = add_interval_group(engine)
    now = T0.replace(minute=30, second=10)
    finished(engine, group_id, TaskStatus.SUCCESS, now.replace(second=0, microsecond=0))
    finished(engine, group_id, TaskStatus.SUCCESS, now - timedelta(minutes=59, seconds=10))
    finished(engine, group_id, TaskStatus.FAIL, now - timedelta(minutes=59, seconds=10))
    finished(engine, group_id, TaskStatus.FAIL, now - timedelta(minutes=60, seconds=11))
    with engine.connect() as conn:
        series = views.runs_per_minute(conn, now)
    assert len(series) == 60
    assert series[0] == {"minute": "2031-03-14T08:31:00+00:00", "success": 1, "fail": 1}
    assert series[-1] == {"minute": "2031-03-14T09:30:00+00:00", "success": 1, "fail": 0}
    assert sum(m["success"] + m["fail"] for m in series) == 3


def test_last_result_is_the_newest_finished_task(engine: Engine) -> None:
    a = add_interval_group(engine)
    b = add_interval_group(engine)
    finished(engine, a, TaskStatus.FAIL, T0, "old\nerror")
    finished(engine, a, TaskStatus.SUCCESS, T0 + timedelta(minutes=1))
    finished(engine, b, TaskStatus.FAIL, T0, "  boom  \nstack")
    with engine.connect() as conn:
        found, total = views.search_groups(conn, views.GroupFilter())
    assert total == 2
    last = {v.group.id: (v.last_status, v.to_json()["last_error"]) for v in found}
    assert last == {a: (TaskStatus.SUCCESS, None), b: (TaskStatus.FAIL, "boom")}


def test_task_pages_follow_the_cursor(engine: Engine) -> None:
    group_id = add_interval_group(engine)
    ids = [finished(engine, group_id, TaskStatus.SUCCESS, T0) for _ in range(5)]
    seen: list[int] = []
    before = None
    with engine.connect() as conn:
        while True:
            items, cursor = views.search_tasks(conn, views.TaskFilter(
                status=TaskStatus.SUCCESS, limit=2, before_id=before))
            seen += [t["id"] for t in items]
            if cursor is None:
                break
            before = views.decode_cursor(cursor)
    assert seen == ids[::-1]


@pytest.mark.parametrize("cursor", ["", "abc", "dDE6eA", "eDE6NQ"])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidField) as refused:
        views.decode_cursor(cursor)
    assert refused.value.field == "cursor"


def test_cursor_round_trip() -> None:
    assert views.decode_cursor(views.encode_cursor(12345)) == 12345


def test_indexes_of_migration_0005_exist(engine: Engine) -> None:
    names = {ix["name"] for ix in sa.inspect(engine).get_indexes("task")}
    assert {"ix_task_status_finish_at", "ix_task_task_group_id_id", "ix_task_job_name_id",
            "ix_task_client_id_id", "ix_task_fail_job_name"} <= names


def test_tasks_by_status_counts_success_as_runs_ever(engine: Engine) -> None:
    group_id = add_interval_group(engine)  # enabled: its waiting task is status None
    finished(engine, group_id, TaskStatus.FAIL, T0)
    finished(engine, group_id, TaskStatus.SUCCESS, T0)  # held, but not what is counted
    with engine.begin() as conn:
        # 5 successful runs recorded, retention kept one of them.
        conn.execute(task_group.update().values(run_count=5))
    with engine.connect() as conn:
        counts = views.tasks_by_status(conn)
    assert counts == {"None": 1, "Scheduler": 0, "Working": 0, "Success": 5, "Fail": 1}


def test_task_search_by_job_and_client_together_pages_newest_first(engine: Engine) -> None:
    group_id = add_interval_group(engine)
    wanted = []
    for i in range(6):
        job, worker = ("a.job" if i % 2 else "b.job"), ("w1" if i % 3 else "w2")
        task_id = finished(engine, group_id, TaskStatus.SUCCESS, T0, job_name=job,
                           client_id=worker)
        if (job, worker) == ("a.job", "w1"):
            wanted.append(task_id)
    seen: list[int] = []
    before = None
    with engine.connect() as conn:
        while True:
            items, cursor = views.search_tasks(conn, views.TaskFilter(
                job_name="a.job", client_id="w1", group_id=group_id, limit=1,
                before_id=before))
            seen += [t["id"] for t in items]
            if cursor is None:
                break
            before = views.decode_cursor(cursor)
        nothing, _ = views.search_tasks(conn, views.TaskFilter(job_name="a.job", client_id="w9"))
    assert len(wanted) == 2 and seen == wanted[::-1]
    assert nothing == []


def test_task_search_by_time_range_alone(engine: Engine) -> None:
    group_id = add_interval_group(engine)  # its waiting task starts at T0 + 1 minute
    early = finished(engine, group_id, TaskStatus.FAIL, T0 - timedelta(hours=2))
    inside = finished(engine, group_id, TaskStatus.SUCCESS, T0 - timedelta(hours=1))
    with engine.connect() as conn:
        items, cursor = views.search_tasks(conn, views.TaskFilter(
            since=T0 - timedelta(hours=1, minutes=1), until=T0))
    assert [t["id"] for t in items] == [inside] and cursor is None and early < inside
