"""Aggregates behind /metrics: counted in SQL, so a scrape costs a few indexed queries at
10,000 groups and 1,000,000 tasks, and every `fss web` replica reports the same numbers.

Windows are bounded by `start_at` (planned time), which ix_task_status_start_at covers
together with the status. Nothing here counts all the Success rows (see
fss.store.views.tasks_by_status): that is the one count that grows with the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from fss.domain.status import TaskStatus
from fss.store.tables import client, server_node, task, task_group

# Upper bounds in seconds; fixed so histograms from every replica and scrape add up.
LATENESS_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts: `buckets[i]` observations <= `bounds[i]`; `count` and `total` (sum)."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    count: int
    total: float


def groups_by_enabled(conn: Connection) -> dict[bool, int]:
    counts = {True: 0, False: 0}
    rows = conn.execute(
        sa.select(task_group.c.is_enable, sa.func.count()).group_by(task_group.c.is_enable)
    )
    for enabled, number in rows:
        counts[bool(enabled)] += int(number)
    return counts


def successes_by_job(conn: Connection) -> dict[str, int]:
    """Successful runs per job name from the groups' run_count: retention never lowers it
    (only deleting a group does), so it is a proper counter."""
    rows = conn.execute(
        sa.select(task_group.c.job_name, sa.func.sum(task_group.c.run_count)).group_by(
            task_group.c.job_name
        )
    )
    return {job: int(total or 0) for job, total in rows}


def failures_by_job(conn: Connection) -> dict[str, int]:
    """Failed runs per job name among the tasks the store holds (retention prunes failed
    tasks after fail_max_age_s, 7 days by default, so this counter can go down then)."""
    # The status inline, not as a parameter: SQLite uses the partial ix_task_fail_job_name
    # only when it can see that the query's WHERE implies the index's.
    failed = task.c.status == sa.literal_column(str(int(TaskStatus.FAIL)))
    rows = conn.execute(
        sa.select(task.c.job_name, sa.func.count()).where(failed).group_by(task.c.job_name)
    )
    return {job: int(number) for job, number in rows}


def client_ids(conn: Connection) -> list[str]:
    """Every registered client (live or not yet dropped), for their queue depths."""
    return [str(r[0]) for r in conn.execute(sa.select(client.c.id).order_by(client.c.id))]


def nodes_alive(conn: Connection, alive_since: datetime) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                server_node.c.is_alive == sa.true(), server_node.c.heartbeat_at >= alive_since
            )
        ).scalar_one()
    )


def finished_histograms(conn: Connection, planned_since: datetime) -> tuple[Histogram, Histogram]:
    """Dispatch lateness (seconds from planned start_at to dispatch) and run time (run_speed,
    ms, in seconds) of the finished tasks planned since `planned_since` (a bounded window:
    not counters). One pass over the window's rows for both: they are the same rows, and
    each needs a heap fetch, so two queries read them twice."""
    lateness = seconds_between(task.c.dispatched_at, task.c.start_at, conn.dialect.name)
    duration = task.c.run_speed / sa.literal(1000.0)
    columns = [*_histogram_columns(lateness, LATENESS_BUCKETS_S),
               *_histogram_columns(duration, DURATION_BUCKETS_S)]
    row = conn.execute(
        sa.select(*columns).where(
            task.c.status.in_([int(TaskStatus.SUCCESS), int(TaskStatus.FAIL)]),
            task.c.start_at >= planned_since,
        )
    ).one()
    values = list(row)
    first = len(LATENESS_BUCKETS_S) + 2
    return (
        _histogram(LATENESS_BUCKETS_S, values[:first]),
        _histogram(DURATION_BUCKETS_S, values[first:]),
    )


def dispatch_lateness(conn: Connection, planned_since: datetime) -> Histogram:
    return finished_histograms(conn, planned_since)[0]


def run_duration(conn: Connection, planned_since: datetime) -> Histogram:
    return finished_histograms(conn, planned_since)[1]


def _histogram_columns(
    value: ColumnElement[Any], bounds: Sequence[float]
) -> list[ColumnElement[Any]]:
    """Cumulative bucket counts, then count and sum, of the rows where `value` is not NULL
    (NULL <= bound is not true, count() and sum() skip NULLs)."""
    return [
        *(sa.func.coalesce(sa.func.sum(sa.case((value <= bound, 1), else_=0)), 0)
          for bound in bounds),
        sa.func.count(value),
        sa.func.coalesce(sa.func.sum(value), 0),
    ]


def _histogram(bounds: Sequence[float], values: Sequence[Any]) -> Histogram:
    return Histogram(
        bounds=tuple(bounds),
        buckets=tuple(int(v) for v in values[: len(bounds)]),
        count=int(values[len(bounds)]),
        total=float(values[len(bounds) + 1]),
    )


def seconds_between(
    later: ColumnElement[Any], earlier: ColumnElement[Any], dialect: str
) -> ColumnElement[Any]:
    """`later - earlier` in seconds (float) on PostgreSQL, MySQL/MariaDB and SQLite."""
    if dialect == "postgresql":
        return sa.extract("epoch", later - earlier)
    if dialect in ("mysql", "mariadb"):
        return sa.func.timestampdiff(sa.text("MICROSECOND"), earlier, later) / sa.literal(1e6)
    # SQLite keeps the naive UTC datetimes as text, which julianday() reads.
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * sa.literal(86400.0)
