"""The web UI at scale: every page and API endpoint with 10,000 groups and 1,000,000 tasks.

    python3 -m bench.web_pages [--groups 10000] [--tasks 1000000] [--logs 200000] [--requests 20]
        [--report-days 90] [--only REGEX]

On a throw-away PostgreSQL database (`fss_bench_<hex>`, dropped afterwards) it creates the
schema with alembic, fills it server-side with INSERT ... SELECT generate_series (seconds, not
minutes): N groups over 50 job names (every tenth disabled, a third cron), the tasks spread
evenly over the groups across the last 7 days (96% Success, 3% Fail, one waiting task per
enabled group, a few running), run logs on the newest tasks, 20 clients and 2 scheduler nodes;
then ANALYZE. The run counts of the reports (run_report) are rebuilt from those tasks, and
`--report-days` (90) days of hourly counts are added before that week for every slot of the
overall and client rows and for one group: the most rows a 90-day report reads. Each
endpoint is requested `--requests` times in-process through Starlette's TestClient (HTTP
Basic, plain password: no scrypt per request), after one warm-up request, and the table
shows p50/p95/max in ms and the status. The target is < 300 ms each; the CSV exports are
downloads of up to 10,000 rows, timed to the last byte, and have no target. `--only` times
the paths matching a regular expression (after the same fill).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from fastapi.testclient import TestClient

from bench.common import (
    create_database,
    drop_database,
    percentile,
    print_header,
    redis_db,
    table,
)
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.store import migrate, reports
from fss.store.engine import create_engine
from fss.web import WebSettings, WebUser, create_web_app

TARGET_MS = 300.0
JOBS = 50


def fill(engine: sa.Engine, groups: int, tasks: int, logs: int, now: datetime) -> None:
    """Server-side bulk inserts; ids are dense, so the sequences are set afterwards."""
    week_s = 7 * 24 * 3600
    naive_now = now.replace(tzinfo=None)
    params = {"now": naive_now, "groups": groups, "tasks": tasks, "logs": logs, "week": week_s}
    statements = [
        f"""
        INSERT INTO task_group (id, caption, job_name, data, key, start_at, next_at, activate_at,
            last_run_at, run_speed_avg, run_count, is_enable, interval_ms, cron, time_zone,
            created_at, misfire)
        SELECT i, 'group ' || i, 'job-' || (i % {JOBS}), '{{"n": ' || i || '}}', 'g-' || i,
            :now - interval '8 days', :now + (i % 60) * interval '1 second',
            :now - interval '8 days', :now - (i % 600) * interval '1 second', 50 + i % 900,
            :tasks / :groups, i % 10 <> 0,
            CASE WHEN i % 3 <> 0 THEN 60000 + (i % 7) * 1000 END,
            CASE WHEN i % 3 = 0 THEN '0 */5 * * * *' END,
            CASE WHEN i % 3 = 0 THEN 'Europe/Berlin' END,
            :now - interval '8 days', 'run-once'
        FROM generate_series(1, :groups) AS i
        """,
        """
        INSERT INTO task (id, task_group_id, job_name, start_at, status, progress, attempt,
            run_speed, client_id, client_host, client_ip, server_node, dispatched_at, run_at,
            finish_at, error, create_at)
        SELECT i, g, 'job-' || (g % 50), t, s,
            CASE WHEN s IN (3, 4) THEN 100 ELSE 0 END, 1,
            CASE WHEN s IN (3, 4) THEN 20 + i % 5000 END,
            'worker-' || (i % 20), 'host-' || (i % 20), '10.0.0.' || (i % 20), 'node-' || (i % 2),
            t + (i % 50) * interval '1 millisecond', t + interval '60 milliseconds',
            CASE WHEN s IN (3, 4) THEN t + (20 + i % 5000) * interval '1 millisecond' END,
            CASE WHEN s = 3 THEN 'RuntimeError: failed run ' || i || E'\\nTraceback ...' END,
            t - interval '1 second'
        FROM (
            SELECT i, 1 + i % :groups AS g,
                :now - ((:tasks - i) * (CAST(:week AS float8) / :tasks)) * interval '1 second' AS t,
                CASE WHEN i % 100 < 3 THEN 3 WHEN i > :tasks - 5 THEN 2 ELSE 4 END AS s
            FROM generate_series(1, :tasks) AS i
        ) AS planned
        """,
        # One waiting task per enabled group (the unique open_group_id holds).
        """
        INSERT INTO task (id, task_group_id, job_name, start_at, status, open_group_id,
            create_at)
        SELECT :tasks + g.id, g.id, g.job_name, g.next_at, 0, g.id, :now
        FROM task_group AS g WHERE g.is_enable
        """,
        """
        INSERT INTO run_log (id, task_id, task_group_id, log_level, content, create_at)
        SELECT i, :tasks - i / 5, 1 + (:tasks - i / 5) % :groups, i % 5,
            'log line ' || i || ' <script>alert(1)</script>', :now - i * interval '1 second'
        FROM generate_series(1, :logs) AS i
        """,
        """
        INSERT INTO client (id, host, ip, pid, language, job_names, queue, registered_at,
            heartbeat_at, accepting, hung_count)
        SELECT 'worker-' || i, 'host-' || i, '10.0.0.' || i, 1000 + i, 'python',
            '["job-' || i || '"]', 'fss.client.worker-' || i, :now - interval '1 hour',
            :now - interval '1 second', true, 0
        FROM generate_series(0, 19) AS i
        """,
        """
        INSERT INTO server_node (id, host, pid, started_at, heartbeat_at, is_alive)
        SELECT 'node-' || i, 'host-' || i, 100 + i, :now - interval '1 hour',
            :now - interval '1 second', true
        FROM generate_series(0, 1) AS i
        """,
        "UPDATE task_group SET task_id = :tasks + id WHERE is_enable",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)
        for table_name in ("task_group", "task", "run_log"):
            conn.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), "
                f"(SELECT MAX(id) FROM {table_name}))"
            ))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def fill_reports(engine: sa.Engine, group: int, days: int, now: datetime) -> float:
    """The run counts the trigger would have made: rebuilt from the loaded tasks (a bulk
    INSERT bypasses the trigger; the same work as migration 0012's back-fill), then, for the
    `days` before the load's week, every hour of every slot of the "all" and "client" rows
    and every hour of `group`: the most rows a 90-day report reads. Returns the rebuild's
    seconds."""
    started = time.perf_counter()
    with engine.begin() as conn:
        reports.rebuild(conn)
    rebuilt = time.perf_counter() - started
    if days:
        with engine.begin() as conn:
            conn.execute(sa.text(
                """
                INSERT INTO run_report (kind, subject, slot, hour_at, success, fail)
                SELECT k.kind, k.subject, k.slot, h.at, 40, 1
                FROM generate_series(:first, :last, interval '1 hour') AS h(at)
                CROSS JOIN (
                    SELECT 'all' AS kind, '' AS subject, s AS slot
                    FROM generate_series(0, 3) AS s
                    UNION ALL SELECT 'client', 'worker-' || c, s
                    FROM generate_series(0, 19) AS c, generate_series(0, 3) AS s
                    UNION ALL SELECT 'group', CAST(:group AS text), 0
                ) AS k
                ON CONFLICT DO NOTHING
                """
            ), {"first": now.replace(tzinfo=None, minute=0, second=0) - timedelta(days=days),
                "last": now.replace(tzinfo=None, minute=0, second=0) - timedelta(days=7),
                "group": group})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE run_report")
    return rebuilt


def endpoints(groups: int, tasks: int) -> list[str]:
    group = groups // 2
    task = tasks - 10  # a recent finished task with logs
    return [
        "/", "/groups", f"/groups/{group}", "/tasks", f"/tasks/{task}", "/clients", "/nodes",
        "/api/v1/me",
        "/api/v1/overview",
        "/api/v1/groups",
        "/api/v1/groups?sort=run_count&order=desc",
        "/api/v1/groups?q=group%2012&enabled=true",
        "/api/v1/groups?job_name=job-7&sort=last_run_at",
        f"/api/v1/groups?offset={max(groups - 100, 0)}",  # the last page
        "/api/v1/groups?sort=run_count&order=desc&limit=500",  # the largest page
        f"/api/v1/groups/{group}",
        f"/api/v1/groups/{group}/runs?limit=100",
        "/api/v1/tasks",
        "/api/v1/tasks?status=Fail",
        f"/api/v1/tasks?group_id={group}",
        "/api/v1/tasks?job_name=job-7",
        "/api/v1/tasks?client_id=worker-7",
        # job-7 never ran on worker-7 (the fill's ids make them exclusive): nothing matches
        "/api/v1/tasks?job_name=job-7&client_id=worker-7",
        "/api/v1/tasks?job_name=job-7&client_id=worker-6",  # 10,000 tasks match
        "/api/v1/tasks?status=Working",
        "/api/v1/tasks?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
        "/api/v1/tasks?cursor=CURSOR&limit=50",
        f"/api/v1/tasks/{task}",
        f"/api/v1/tasks/{task}/logs",
        "/api/v1/clients",
        "/api/v1/nodes",
        "/api/v1/dead-letters",
        "/metrics",
        "/readyz",
        "/reports",
        "/api/v1/reports/runs?days=7",
        "/api/v1/reports/runs?days=30&tz=Asia/Shanghai",
        "/api/v1/reports/runs?days=90&tz=America/New_York",
        f"/api/v1/reports/runs?days=7&group_id={group}",
        f"/api/v1/reports/runs?days=90&tz=Asia/Shanghai&group_id={group}",
        "/api/v1/reports/clients?days=7",
        "/api/v1/reports/clients?days=90&tz=Asia/Shanghai",
        # Search (the top bar): groups by key, caption, job or data text, failed runs by
        # error text, a task by id. "group 12" and "nothing-matches" match no error: the runs
        # part then reads every failed run (30,000) for nothing.
        "/search?q=group%2012",
        "/api/v1/search?q=group%2012",
        "/api/v1/search?q=g-4321",
        "/api/v1/search?q=job-7",
        "/api/v1/search?q=%22n%22%3A%20777",
        "/api/v1/search?q=failed%20run%2099",
        f"/api/v1/search?q={task}",
        "/api/v1/search?q=nothing-matches",
        "/api/v1/search?q=nothing-matches&limit=100",
        "/api/v1/search/runs?q=runtimeerror&limit=100",
        "/api/v1/search/runs?q=failed%20run%2012345",  # one old run: read back to it
        "/api/v1/search/runs?q=nothing-matches",
        f"/api/v1/search/runs?q=failed&group_id={group}",
        "/api/v1/search/runs?q=failed&job_name=job-7",
        "/api/v1/tasks?error=failed%20run%2012345",
        # "Cannot run" (disabled, no live client, late) on the groups list and the glance:
        # the 20 clients serve job-0..job-19, so the groups of the other 30 jobs are unserved.
        "/api/v1/groups?enabled=false",
        "/api/v1/groups?job_name=job-33&limit=500",
        "/api/v1/health/glance",
        # CSV exports: downloads (up to 10,000 rows by default), no target.
        "/api/v1/export/groups.csv?q=group%201&sort=run_count&order=desc",
        "/api/v1/export/groups.csv",
        "/api/v1/export/tasks.csv?status=Fail&rows=1000",
        "/api/v1/export/tasks.csv?error=failed%20run%2012",
        "/api/v1/export/tasks.csv",
    ]


def has_target(path: str) -> bool:
    return not path.startswith("/api/v1/export/")


def measure(client: TestClient, path: str, requests: int) -> tuple[list[float], int]:
    client.get(path)  # warm-up: first-use costs (engine, templates) are not the page's
    times = []
    status = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        status = response.status_code
    return times, status


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--logs", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--report-days", type=int, default=90,
                        help="days of hourly run counts to add before the tasks' week")
    parser.add_argument("--only", default=None,
                        help="time only the paths matching this regular expression")
    args = parser.parse_args(argv)
    print_header("web UI pages and API at scale", ["bench.web_pages", *sys.argv[1:]])
    now = datetime.now(timezone.utc).replace(microsecond=0)
    url = create_database()
    try:
        engine = create_engine(url)
        migrate.upgrade(engine)
        started = time.perf_counter()
        fill(engine, args.groups, args.tasks, args.logs, now)
        print(f"filled {args.groups} groups, {args.tasks} tasks, {args.logs} run logs in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        rebuilt = fill_reports(engine, args.groups // 2, args.report_days, now)
        print(f"run counts rebuilt from the tasks in {rebuilt:.1f} s; {args.report_days} days "
              "of hourly counts for every slot, client and one group\n", flush=True)
        engine.dispose()
        web = WebSettings(users=(WebUser("bench", "bench"),))
        rows = []
        with redis_db() as broker, TestClient(
            create_web_app(Settings(database_url=url, broker_url=broker), web, ManualClock(now)),
            headers={"Authorization": "Basic YmVuY2g6YmVuY2g="},
        ) as client:
            first = client.get("/api/v1/tasks?limit=50").json().get("next_cursor") or ""
            for path in endpoints(args.groups, args.tasks):
                if args.only and not re.search(args.only, path):
                    continue
                path = path.replace("CURSOR", first)
                times, status = measure(client, path, args.requests)
                p95 = percentile(times, 95) * 1000
                rows.append([
                    path if len(path) < 70 else path[:67] + "...", status,
                    f"{percentile(times, 50) * 1000:.1f}", f"{p95:.1f}",
                    f"{max(times) * 1000:.1f}",
                    ("ok" if p95 < TARGET_MS else "SLOW") if has_target(path) else "-",
                ])
                print(".", end="", flush=True)
        print()
        print(table(["path", "status", "p50 ms", "p95 ms", "max ms", "< 300 ms"], rows))
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
