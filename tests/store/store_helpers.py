"""Shared helpers for the store tests: migrated databases, fixed times, row readers.

Imported by the ``tests/store/test_*.py`` modules as ``from store_helpers import ...``
(pytest's default import mode puts this directory on ``sys.path``).

Speed: an alembic upgrade costs 0.1-0.4 s per database on PostgreSQL/MariaDB (more with every
revision), which per test would eat most of the time budget. So the behaviour tests (groups,
claims, recording) share one engine per module and backend, on a private database created by
the server helpers of ``tests/servers.py`` (``fss_test_<hex>``, dropped after the module),
migrated once with ``fss.store.migrate.upgrade``; every fss table is emptied before each test.
test_migrations.py (``database_url``) and the concurrency tests (``pg_database_url``,
``mysql_database_url``, ``sqlite_url``) get a fresh empty database per test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.rows import GroupRow
from fss.store.tables import client, metadata, run_log, task, task_group
from fss.store.tasks import ClaimedTask, DispatchTarget

UTC = timezone.utc
# A fixed instant with microseconds: every test builds its times from it, never from the wall clock.
T0 = datetime(2031, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
LOOKAHEAD = timedelta(seconds=5)
LEASE = timedelta(seconds=30)
NODE = "node-a"
CLIENT = "client-1"
TARGET = DispatchTarget(client_id=CLIENT, host="worker-host", ip="10.0.0.7")
BACKENDS = ["sqlite", "postgres", "mysql"]


@contextmanager
def migrated_engine(url: str) -> Iterator[Engine]:
    """An fss engine on `url`, a fresh empty database this test created, with the schema at
    head (a copy of the session's migrated template: tests/servers.py); always disposed."""
    migrated_copy(url)
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def module_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """Body of a module-scoped fixture parametrized over BACKENDS: an engine on a private
    database with the schema at head (a copy of the session's template migrated with
    upgrade(), see tests/servers.py); the database is dropped and the engine disposed after."""
    backend: str = request.param
    server: Any = None
    templates: Any = request.getfixturevalue("schema_templates")  # tests/servers.py
    if backend == "sqlite":
        url = templates.fill(f"sqlite:///{tmp_path_factory.mktemp('store') / 'fss.db'}")
    else:
        server = request.getfixturevalue(f"{backend}_server")
        url = templates.new_database(backend)  # a copy of the migrated template
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        if server is not None:
            server.drop_database(url)


def emptied(engine: Engine) -> Engine:
    """Delete every row of every fss table (the schema and alembic_version stay)."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    return engine


def interval_spec(interval_ms: int = 60_000, **changes: Any) -> GroupSpec:
    values: dict[str, Any] = {"caption": "every minute", "job_name": "demo.job"}
    values.update(changes)
    return GroupSpec(interval_ms=interval_ms, **values)


def add_interval_group(
    engine: Engine, now: datetime = T0, interval_ms: int = 60_000, **changes: Any
) -> int:
    return groups.add_group(engine, interval_spec(interval_ms, **changes), now)


def task_rows(engine: Engine, group_id: int | None = None) -> list[dict[str, Any]]:
    """Every column of the group's tasks (all tasks when group_id is None), oldest first."""
    query = sa.select(task).order_by(task.c.id)
    if group_id is not None:
        query = query.where(task.c.task_group_id == group_id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def task_row(engine: Engine, task_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(task).where(task.c.id == task_id)).one()._mapping)


def open_tasks(engine: Engine, group_id: int) -> list[dict[str, Any]]:
    unfinished = (TaskStatus.NONE, TaskStatus.SCHEDULER, TaskStatus.WORKING)
    return [r for r in task_rows(engine, group_id) if r["status"] in unfinished]


def pending(engine: Engine, group_id: int) -> dict[str, Any]:
    """The group's single waiting task; fails unless there is exactly one."""
    rows = [r for r in task_rows(engine, group_id) if r["status"] == TaskStatus.NONE]
    assert len(rows) == 1, rows
    return rows[0]


def group_raw(engine: Engine, group_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(task_group).where(task_group.c.id == group_id)).one()
        return dict(row._mapping)


def get_group(engine: Engine, group_id: int) -> GroupRow:
    with engine.connect() as conn:
        return groups.get_group(conn, group_id)


def log_rows(engine: Engine, task_id: int | None = None) -> list[dict[str, Any]]:
    query = sa.select(run_log).order_by(run_log.c.id)
    if task_id is not None:
        query = query.where(run_log.c.task_id == task_id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def client_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(client).order_by(client.c.id))]


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def claim(engine: Engine, now: datetime, node: str = NODE, **options: Any) -> list[ClaimedTask]:
    options.setdefault("lookahead", LOOKAHEAD)
    options.setdefault("lease", LEASE)
    return tasks.claim_due(engine, node, now, **options)


def claim_one(engine: Engine, task_id: int, now: datetime, node: str = NODE) -> ClaimedTask:
    """Claim `task_id`; claims taken on other due tasks along the way are given back."""
    everything = claim(engine, now, node)
    tasks.release_claims(engine, node, [c.id for c in everything if c.id != task_id])
    claimed = [c for c in everything if c.id == task_id]
    assert len(claimed) == 1, f"task {task_id} was not claimable by {node} at {now}"
    return claimed[0]


def dispatch(
    engine: Engine,
    task_id: int,
    now: datetime,
    node: str = NODE,
    target: DispatchTarget = TARGET,
) -> int:
    """Claim and dispatch the task the way the dispatcher does; returns the attempt."""
    claimed = claim_one(engine, task_id, now, node)
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(conn, claimed, node, target, now)
    assert attempt is not None, f"dispatch of task {task_id} lost"
    return attempt


def statements_of(engine: Engine, action: Callable[[], object]) -> list[str]:
    """The SQL statements `action` sends through `engine`, in order (executemany once)."""
    seen: list[str] = []

    def note(*args: Any) -> None:
        seen.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    return seen
