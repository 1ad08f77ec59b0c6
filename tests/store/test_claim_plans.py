"""A scheduler's claim statements find their rows by key on a table the planner has no
statistics for yet.

Right after a bulk load (`fss group apply` of many groups, a restore) and before autovacuum
has analyzed the table, PostgreSQL expects a handful of tasks with status 0 where there are
all of them. The claim statements that name their rows by id and also test `status = 0` were
planned as a bitmap scan of every status-0 index entry: renewing a scheduler's claims took
90 ms per statement at a million groups (bench.scale), delaying every run due meanwhile.
Here the table holds 20,000 waiting tasks, autovacuum off, never analyzed; every statement
the real claim functions send with an id list is explained on its own connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import T0, migrated_engine

from fss.domain.alerts import AlertPolicy
from fss.domain.group_file import GroupEntry
from fss.domain.group_spec import GroupSpec
from fss.store import alert_checks, group_files, groups, tasks
from fss.store.tables import client

STATUS_INDEXES = ("ix_task_status_start_at", "ix_task_status_finish_at")
WAITING = 20_000
NODE = "sched-a"


@pytest.fixture(scope="module")
def bulk_loaded(pg_engine: Engine) -> Engine:
    """WAITING groups, each with its waiting task one second apart from T0, as a bulk load
    leaves them: no statistics, autovacuum off so none appear during the test."""
    t0 = T0.replace(tzinfo=None)
    with pg_engine.begin() as conn:
        for table in ("task_group", "task"):
            conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        conn.exec_driver_sql(
            "INSERT INTO task_group (id, caption, job_name, data, start_at, next_at, task_id, "
            "activate_at, interval_ms, created_at) "
            "SELECT g, 'bulk', 'job', '{}', %(t0)s + g * interval '1 second', "
            "%(t0)s + g * interval '1 second', g, %(t0)s, 60000, %(t0)s "
            f"FROM generate_series(1, {WAITING}) g",
            {"t0": t0},
        )
        conn.exec_driver_sql(
            "INSERT INTO task (id, task_group_id, job_name, start_at, status, open_group_id, "
            "create_at) SELECT g, g, 'job', %(t0)s + g * interval '1 second', 0, g, %(t0)s "
            f"FROM generate_series(1, {WAITING}) g",
            {"t0": t0},
        )
    with pg_engine.connect() as conn:
        analyzed = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'task' AND attname = 'status'"
        ).scalar_one()
    assert analyzed == 0, "the table must be without statistics for this test"
    return pg_engine


class PlanRecorder:
    """Explains, on a connection of its own, every statement that names task rows by id."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.plans: list[tuple[str, str]] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "task.id IN" not in statement:
            return
        with self.engine.connect() as own:
            cur = own.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plan = cur.fetchone()[0]
        self.plans.append((statement, plan if isinstance(plan, str) else json.dumps(plan)))

    def status_index_users(self) -> list[str]:
        return [s for s, plan in self.plans if any(f'"{i}"' in plan for i in STATUS_INDEXES)]


@pytest.fixture
def recorder(bulk_loaded: Engine) -> Iterator[PlanRecorder]:
    recorder = PlanRecorder(bulk_loaded)
    sa.event.listen(bulk_loaded, "before_cursor_execute", recorder)
    try:
        yield recorder
    finally:
        sa.event.remove(bulk_loaded, "before_cursor_execute", recorder)


def test_claim_renew_and_release_probe_by_key(
    bulk_loaded: Engine, recorder: PlanRecorder
) -> None:
    now = T0 + timedelta(seconds=300)
    claimed = tasks.claim_due(
        bulk_loaded, NODE, now, lookahead=timedelta(seconds=2), lease=timedelta(seconds=10)
    )
    assert len(claimed) == 302  # start_at T0+1 s ... T0+302 s
    ids = [c.id for c in claimed]
    tasks.extend_claims(bulk_loaded, NODE, ids, now + timedelta(seconds=20))
    assert tasks.release_claims(bulk_loaded, NODE, ids[:100]) == 100

    assert len(recorder.plans) == 4  # claim's UPDATE and SELECT, renew, release
    assert recorder.status_index_users() == []
    with bulk_loaded.connect() as conn:
        held = conn.exec_driver_sql(
            "SELECT min(claimed_until), count(*) FROM task WHERE claimed_by = %(n)s", {"n": NODE}
        ).one()
    assert held == ((now + timedelta(seconds=20)).replace(tzinfo=None), 202)


def _explaining_group_reads(engine: Engine, plans: list[str]) -> Callable[..., None]:
    """A before_cursor_execute listener: the JSON plan of every SELECT reading task_group,
    explained on a connection of its own, appended to `plans`."""

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "task_group" in statement:
            with engine.connect() as own:
                cur = own.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plans.append(json.dumps(cur.fetchone()[0]))

    return explain


def test_the_every_second_enable_check_reads_only_groups_disabled_until_a_time(
    bulk_loaded: Engine,
) -> None:
    """`fss group disable --until`: each supervisor sweep (every second) looks for groups whose
    time came. Planned as a scan of the whole task_group it took ~0.3 s at a million groups,
    every second (PostgreSQL's active queries sampled under bench.scale)."""
    with bulk_loaded.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE task_group SET is_enable = false, enable_at = %(at)s WHERE id IN (7, 3)",
            {"at": (T0 + timedelta(seconds=1)).replace(tzinfo=None)},
        )
    plans: list[str] = []
    explain = _explaining_group_reads(bulk_loaded, plans)
    sa.event.listen(bulk_loaded, "before_cursor_execute", explain)
    try:
        assert groups.enable_due_groups(bulk_loaded, T0) == []  # not yet: the usual sweep
        assert len(plans) == 1  # one probe, nothing else read
        assert '"ix_task_group_enable_at"' in plans[0]
        assert '"Seq Scan"' not in plans[0]
        enabled = groups.enable_due_groups(bulk_loaded, T0 + timedelta(seconds=5))
    finally:
        sa.event.remove(bulk_loaded, "before_cursor_execute", explain)
    assert enabled == [3, 7]  # in id order: the order rows are locked in
    assert groups.enable_due_groups(bulk_loaded, T0 + timedelta(seconds=6)) == []


def test_a_bulk_apply_leaves_statistics_behind(postgres_server: Any) -> None:
    """`fss group apply` of many groups analyzes what it loaded, so the planner does not wait
    minutes for autovacuum to learn that the table holds them."""
    url = postgres_server.create_database()
    try:
        with migrated_engine(url) as engine:
            with engine.begin() as conn:
                for table in ("task_group", "task"):
                    conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            spec = GroupSpec(caption="bulk", job_name="job", interval_ms=60_000).validated()
            few = [GroupEntry(f"few{i}", spec) for i in range(10)]
            many = [GroupEntry(f"k{i}", spec) for i in range(group_files.ANALYZE_AFTER_CREATES)]

            group_files.apply_groups(engine, few, T0)
            assert _status_statistics(engine) == 0
            group_files.apply_groups(engine, few + many, T0)
            assert _status_statistics(engine) == 1
    finally:
        postgres_server.drop_database(url)


def _status_statistics(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stats WHERE tablename = 'task' AND attname = 'status'"
            ).scalar_one()
        )


def test_the_unserved_job_check_walks_the_job_tag_index_not_every_group(
    bulk_loaded: Engine,
) -> None:
    """The alert sender's job_unserved check (every 15 s): with its job served it reads no
    group, only index probes; it was one aggregate over every enabled group (0.6-1 s of
    PostgreSQL each time at a million groups)."""
    with bulk_loaded.begin() as conn:
        conn.execute(client.insert().values(
            id="w1", host="h", ip="127.0.0.1", pid=1, job_names='["job"]', queue="q.w1",
            registered_at=T0, heartbeat_at=T0,
        ))
    plans: list[str] = []
    explain = _explaining_group_reads(bulk_loaded, plans)
    sa.event.listen(bulk_loaded, "before_cursor_execute", explain)
    try:
        with bulk_loaded.connect() as conn:
            assert alert_checks.unserved_needs(conn, T0, AlertPolicy()) == []
    finally:
        sa.event.remove(bulk_loaded, "before_cursor_execute", explain)
        with bulk_loaded.begin() as conn:
            conn.execute(client.delete())
    assert len(plans) == 4  # first job, its untagged probe, its first tag, the next job
    for plan in plans:
        assert '"ix_task_group_job_tag"' in plan and '"Seq Scan"' not in plan, plan
