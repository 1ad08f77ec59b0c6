"""Runs by error text (search, /api/v1/search/runs, /api/v1/tasks?error=) read the failed
runs only, newest first, and stop at the page.

`status = 3 AND lower(error) LIKE '%text%' ORDER BY id DESC LIMIT n` left PostgreSQL to
guess the text's share of rows from the pattern's length: for a short one it walked the
primary key through every task when no run held it (280-510 ms at 1,000,000 tasks in
bench.web_pages), for a long one it read and sorted every failed run even when the newest
hundred filled the page. Now the test is `strpos(lower(error), text) > 0` (default share)
and migration 0013's `ix_task_fail_id` (status, id) holds the failed runs by id. Here:
300,000 tasks, 3% failed (9,000), vacuumed and analyzed as autovacuum leaves them; the
statement search_tasks sends is explained (ANALYZE) with its parameters.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import T0

from fss.store.views import TaskFilter, search_tasks

TASKS = 300_000
FAILED = TASKS * 3 // 100


@pytest.fixture(scope="module")
def loaded(pg_engine: Engine) -> Engine:
    t0 = T0.replace(tzinfo=None)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO task (id, task_group_id, job_name, start_at, status, client_id, "
            "finish_at, error, create_at) "
            "SELECT i, 1 + i %% 1000, 'job-' || (i %% 50), %(t0)s, "
            "CASE WHEN i %% 100 < 3 THEN 3 ELSE 4 END, 'worker-' || (i %% 20), %(t0)s, "
            "CASE WHEN i %% 100 < 3 THEN 'RuntimeError: failed run ' || i || E'\\nTraceback' "
            f"END, %(t0)s FROM generate_series(1, {TASKS}) AS i",
            {"t0": t0},
        )
    # As autovacuum leaves a table (the visibility map lets the chunks be index-only).
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE task")
    return pg_engine


def _statements(engine: Engine, wanted: TaskFilter) -> list[tuple[str, Any]]:
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", keep)
    try:
        with engine.connect() as conn:
            search_tasks(conn, wanted)
    finally:
        sa.event.remove(engine, "before_cursor_execute", keep)
    return sent


def _reads(plan: dict[str, Any]) -> list[tuple[str, str | None, int]]:
    """(node, index, rows it went through, kept or not) of every node reading task."""
    found = []
    index = plan.get("Index Name") or ""
    if plan.get("Relation Name") == "task" or index.startswith("ix_task_") or index == "pk_task":
        rows = (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
                + plan.get("Rows Removed by Index Recheck", 0)) * plan["Actual Loops"]
        found.append((plan["Node Type"], plan.get("Index Name"), int(rows)))
    for child in plan.get("Plans", []):
        found += _reads(child)
    return found


def _plan_reads(engine: Engine, wanted: TaskFilter) -> list[tuple[str, str | None, int]]:
    [(statement, parameters)] = _statements(engine, wanted)
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
        ).scalar_one()[0]["Plan"]
    return _reads(plan)


@pytest.mark.parametrize("text", ["failed run 1", "failed run 12345", "job-7", "no such text",
                                  "runtimeerror: failed run"])
def test_runs_by_error_text_read_the_failed_runs_only(loaded: Engine, text: str) -> None:
    for wanted in (TaskFilter(error=text, limit=10),
                   TaskFilter(error=text, limit=50, before_id=TASKS // 2)):
        reads = _plan_reads(loaded, wanted)
        assert reads and {index for _, index, _ in reads} == {"ix_task_fail_id"}, reads
        assert sum(rows for _, _, rows in reads) <= FAILED, reads


def test_a_text_the_newest_runs_hold_reads_one_page(loaded: Engine) -> None:
    """Every failed run holds this text: the page is the newest 100, read and no more
    (before: all 9,000 read and sorted)."""
    reads = _plan_reads(loaded, TaskFilter(error="RuntimeError: failed", limit=100))
    assert [index for _, index, _ in reads] == ["ix_task_fail_id"]
    assert sum(rows for _, _, rows in reads) <= 101 + 10, reads


def test_runs_by_error_text_page_by_cursor_as_a_scan_would(loaded: Engine) -> None:
    text = "failed run 1200"  # 1200, 12000-12002, 120000-120002
    with loaded.connect() as conn:
        expected = [i for i in range(TASKS, 0, -1)
                    if i % 100 < 3 and text in f"failed run {i}"]
        assert len(expected) == 7
        got: list[int] = []
        before = None
        while True:
            items, cursor = search_tasks(conn, TaskFilter(error=text.upper(), limit=3,
                                                          before_id=before))
            got += [int(i["id"]) for i in items]
            if cursor is None:
                break
            before = got[-1]
    assert got == expected
