"""The set-based UPDATEs of a run's life on PostgreSQL find their rows by key, not through an
index on the status.

A busy task table holds thousands of dead index entries for the statuses a run passed
through, which the planner's statistics do not count: when a batch UPDATE's guard was
written `status = 0`, PostgreSQL chose a bitmap scan of every status-0 entry (1-7 ms per
dispatch in bench.throughput) instead of a probe per id. The table here is built that way:
many dead entries of each status a run passes, few live ones, fresh statistics.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import T0

from fss.domain.status import TaskStatus
from fss.store import recording, tasks
from fss.store.tables import UTCDateTime, task

STATUS_INDEXES = {"ix_task_status_start_at", "ix_task_status_finish_at"}
BATCH = 64


@pytest.fixture(scope="module")
def churned(pg_engine: Engine) -> list[int]:
    """3,000 runs that passed through every status (dead entries of each), 64 live tasks
    waiting; autovacuum off for the table, so the dead entries stay for the test."""
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE task SET (autovacuum_enabled = false)")
        conn.exec_driver_sql(
            "INSERT INTO task (task_group_id, job_name, start_at, status, create_at) "
            "SELECT g, 'job', %(t0)s, 0, %(t0)s FROM generate_series(1, 3000) g",
            {"t0": T0.replace(tzinfo=None)},
        )
        for status in (TaskStatus.SCHEDULER, TaskStatus.WORKING, TaskStatus.SUCCESS):
            conn.exec_driver_sql(f"UPDATE task SET status = {int(status)}")
        conn.exec_driver_sql(
            "INSERT INTO task (task_group_id, job_name, start_at, status, create_at) "
            f"SELECT g, 'job', %(t0)s, 0, %(t0)s FROM generate_series(1, {BATCH}) g",
            {"t0": T0.replace(tzinfo=None)},
        )
    with pg_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE task")
        return [r.id for r in conn.execute(sa.select(task.c.id).where(task.c.status == 0))]


def _indexes_used(engine: Engine, statement: Any, params: dict[str, Any]) -> set[str]:
    text_clause = getattr(statement, "element", statement)  # .columns() wraps the text
    explain = sa.text("EXPLAIN (FORMAT JSON) " + text_clause.text).bindparams(
        sa.bindparam("now", type_=UTCDateTime())
    )
    with engine.connect() as conn:
        plan = conn.execute(explain, params).scalar_one()
    text = plan if isinstance(plan, str) else json.dumps(plan)
    return {name for name in STATUS_INDEXES | {"pk_task"} if f'"{name}"' in text}


def _arrays(ids: list[int], **columns: Any) -> dict[str, Any]:
    return {"ids": ids, **{k: [v] * len(ids) for k, v in columns.items()}, "now": T0}


def test_dispatch_batch_reads_no_status_index(churned: list[int], pg_engine: Engine) -> None:
    params = _arrays(
        churned, attempts=0, starts=T0.replace(tzinfo=None), clients="c", hosts="h", ips="i"
    )
    used = _indexes_used(pg_engine, tasks._DISPATCH_MANY_PG, {**params, "node": "n"})
    assert not used & STATUS_INDEXES, used


def test_started_batch_reads_no_status_index(churned: list[int], pg_engine: Engine) -> None:
    params = _arrays(churned, attempts=1, clients="c", ats=T0.replace(tzinfo=None))
    used = _indexes_used(pg_engine, recording._STARTED_MANY_PG, params)
    assert not used & STATUS_INDEXES, used


def test_finish_batch_reads_no_status_index(churned: list[int], pg_engine: Engine) -> None:
    params = _arrays(
        churned,
        attempts=1,
        clients="c",
        statuses=int(TaskStatus.SUCCESS),
        successes=True,
        ats=(T0 + timedelta(seconds=1)).replace(tzinfo=None),
        speeds=1,
        errors=None,
        started_ats=None,
    )
    used = _indexes_used(pg_engine, recording._FINISH_MANY_PG, params)
    assert not used & STATUS_INDEXES, used
