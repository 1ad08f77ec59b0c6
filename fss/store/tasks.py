"""Task queries and the scheduler's guarded transitions (claim, dispatch, release)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fss.domain.schedule import Schedule
from fss.domain.status import TaskStatus
from fss.errors import TaskNotFound
from fss.store.rows import LogRow, TaskRow
from fss.store.tables import (
    STATUS_UNINDEXED,
    UTCDateTime,
    naive_utc,
    run_log,
    status_unindexed,
    task,
    task_group,
)


@dataclass(frozen=True)
class ClaimedTask:
    id: int
    group_id: int
    job_name: str
    start_at: datetime
    attempt: int
    data: str
    schedule: Schedule = field(default_factory=Schedule)
    misfire: str = "run-once"
    # The previous attempt failed and this one is its retry (the waiting task still holds
    # that attempt's finish_at): its fence may be armed over the ended attempt.
    retrying: bool = False
    # The group's time limit (fss.scheduler.publish.TimeLimit): None runs unlimited.
    max_run_s: int | None = None
    # The group's routing: which live client takes the run (fss.domain.selection).
    route: str = "round_robin"
    client_tag: str | None = None
    # scheduled | manual | child | backfill: a backfill run is due at its past slot, on
    # purpose, and is never a misfire.
    kind: str = "scheduled"


def _listed_rows_only(update: sa.Update) -> sa.Update:
    """An UPDATE of the tasks whose ids it lists, made to read those rows only on MariaDB/MySQL.

    On a small table InnoDB planned such an UPDATE as a scan of the whole primary key and
    locked each row it read while it read it; a peer's claim (SKIP LOCKED) passing by then
    skipped a waiting task nobody claimed, which waited for the next claim round (4 nodes
    claiming 50 of 200 due tasks at once left one behind). With the hint the plan is a range
    over the listed ids. PostgreSQL locks only the rows it updates, SQLite has one writer."""
    return update.with_hint("FORCE INDEX (PRIMARY)", dialect_name="mysql")


def claim_due(
    engine: Engine,
    node: str,
    now: datetime,
    lookahead: timedelta,
    lease: timedelta,
    limit: int = 500,
) -> list[ClaimedTask]:
    """Lease the waiting tasks due before now + lookahead that nobody else holds.

    SKIP LOCKED lets every scheduler claim at once without waiting on each other; SQLite
    has one writer (BEGIN IMMEDIATE), so there the transaction itself serializes claims.
    """
    # Only unheld rows: what this node already holds is in its wheel, and rewriting those
    # rows on every claim was most of the claim cost (extend_claims renews leases instead).
    claimable = sa.or_(task.c.claimed_until.is_(None), task.c.claimed_until < now)
    with engine.begin() as conn:
        query = (
            sa.select(task.c.id)
            .where(task.c.status == TaskStatus.NONE, task.c.start_at <= now + lookahead, claimable)
            .order_by(task.c.start_at)
            .limit(limit)
        )
        if conn.dialect.name != "sqlite":
            query = query.with_for_update(skip_locked=True)
        ids = [r.id for r in conn.execute(query)]
        if not ids:
            return []
        conn.execute(
            _listed_rows_only(task.update())
            .where(task.c.id.in_(ids), status_unindexed == TaskStatus.NONE, claimable)
            .values(claimed_by=node, claimed_until=now + lease)
        )
        rows = conn.execute(
            sa.select(
                task.c.id,
                task.c.task_group_id,
                task.c.job_name,
                task.c.start_at,
                task.c.attempt,
                task.c.finish_at,
                task.c.kind,
                # fss group run --data: this run's own data instead of the group's.
                sa.func.coalesce(task.c.run_data, task_group.c.data).label("data"),
                task_group.c.interval_ms,
                task_group.c.cron,
                task_group.c.time_zone,
                task_group.c.misfire,
                task_group.c.max_run_s,
                task_group.c.route,
                task_group.c.client_tag,
            )
            .join(task_group, task_group.c.id == task.c.task_group_id)
            .where(
                task.c.id.in_(ids),
                task.c.claimed_by == node,
                status_unindexed == TaskStatus.NONE,
            )
            .order_by(task.c.start_at, task.c.id)
        )
        return [
            ClaimedTask(
                r.id,
                r.task_group_id,
                r.job_name,
                r.start_at,
                r.attempt,
                r.data,
                Schedule(r.interval_ms, r.cron, r.time_zone),
                r.misfire,
                retrying=r.finish_at is not None,
                max_run_s=r.max_run_s,
                route=r.route,
                client_tag=r.client_tag or None,  # "" is no tag (never a client's)
                kind=r.kind,
            )
            for r in rows
        ]


def extend_claims(engine: Engine, node: str, task_ids: list[int], until: datetime) -> None:
    if not task_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            _listed_rows_only(task.update())
            .where(
                task.c.id.in_(task_ids),
                task.c.claimed_by == node,
                status_unindexed == TaskStatus.NONE,
            )
            .values(claimed_until=until)
        )


def release_claims(
    engine: Engine, node: str, task_ids: list[int] | None = None, until: datetime | None = None
) -> int:
    """Give claims back (all of this node's when `task_ids` is None), free from `until` on."""
    condition = [task.c.claimed_by == node]
    update = task.update()
    if task_ids is None:
        condition.append(task.c.status == TaskStatus.NONE)
    else:
        if not task_ids:
            return 0
        condition += [task.c.id.in_(task_ids), status_unindexed == TaskStatus.NONE]
        update = _listed_rows_only(update)
    values: dict[str, Any] = (
        {"claimed_by": None, "claimed_until": None} if until is None else {"claimed_until": until}
    )
    with engine.begin() as conn:
        return conn.execute(update.where(*condition).values(**values)).rowcount


@dataclass(frozen=True)
class DispatchTarget:
    client_id: str
    host: str
    ip: str


def mark_dispatched(
    conn: Connection,
    claimed: ClaimedTask,
    node: str,
    target: DispatchTarget,
    now: datetime,
) -> int | None:
    """None -> Scheduler for this node's claim; the new attempt number, or None if lost.
    Stamped dispatched at the later of `now` and its start_at: an order readied ahead of its
    time (Settings.dispatch_lead_ms) is sent at start_at."""
    attempt = claimed.attempt + 1
    sent_at = max(now, claimed.start_at)
    won = conn.execute(
        task.update()
        .where(
            task.c.id == claimed.id,
            task.c.status == TaskStatus.NONE,
            task.c.claimed_by == node,
            task.c.start_at == claimed.start_at,
            task.c.attempt == claimed.attempt,
        )
        .values(
            status=TaskStatus.SCHEDULER,
            attempt=attempt,
            client_id=target.client_id,
            client_host=target.host,
            client_ip=target.ip,
            server_node=node,
            dispatched_at=sent_at,
            reported_at=sent_at,
            claimed_by=None,
            claimed_until=None,
            # A retry's row still holds the failed attempt's end and error (see
            # fss.store.retries): this attempt starts without them.
            finish_at=None,
            error=None,
        )
    ).rowcount
    return attempt if won == 1 else None


def lock_tasks_in_id_order(conn: Connection, ids: list[int]) -> None:
    """Lock these task rows in id order, as every batch write does, so two batches over
    overlapping rows wait for each other instead of deadlocking. PostgreSQL: a fixed text
    (no IN list rendered per batch size)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_TASKS_PG, {"ids": ids}).all()
        return
    conn.execute(
        sa.select(task.c.id).where(task.c.id.in_(ids)).order_by(task.c.id).with_for_update()
    ).all()


def lock_tasks(conn: Connection, ids: Iterable[int], locked: set[int]) -> None:
    """Lock these task rows in id order, as every batch write does (two recorders
    replaying overlapping batches wait for each other instead of deadlocking), unless this
    transaction holds them already (`locked`, which grows by them)."""
    todo = sorted(set(ids) - locked)
    if todo:
        lock_tasks_in_id_order(conn, todo)
        locked.update(todo)


_LOCK_TASKS_PG = sa.text(
    "SELECT id FROM task WHERE id = ANY(CAST(:ids AS BIGINT[])) ORDER BY id FOR UPDATE"
)


def mark_dispatched_many(
    conn: Connection,
    items: list[tuple[ClaimedTask, DispatchTarget]],
    node: str,
    now: datetime,
) -> set[int]:
    """mark_dispatched for several claims at once: the ids of the tasks this call moved.

    Rows are taken in id order on every backend, so two calls over overlapping claims wait
    for each other instead of deadlocking. PostgreSQL: one guarded UPDATE for all (arrays
    unnested into rows, RETURNING the winners), after locking the rows; elsewhere one UPDATE
    per task."""
    items = sorted(items, key=lambda item: item[0].id)
    if conn.dialect.name != "postgresql" or len(items) < 2:
        return {
            claimed.id
            for claimed, target in items
            if mark_dispatched(conn, claimed, node, target, now) is not None
        }
    ids = [claimed.id for claimed, _ in items]
    lock_tasks_in_id_order(conn, ids)
    params = {
        "ids": ids,
        "attempts": [claimed.attempt for claimed, _ in items],
        "starts": [naive_utc(claimed.start_at) for claimed, _ in items],
        "clients": [target.client_id for _, target in items],
        "hosts": [target.host for _, target in items],
        "ips": [target.ip for _, target in items],
        "node": node,
        "now": now,
    }
    return {row.id for row in conn.execute(_DISPATCH_MANY_PG, params)}


# mark_dispatched's guard and values, for a batch: one array per field, unnested into rows;
# a fixed text, compiled once whatever the batch size.
_DISPATCH_MANY_PG = sa.text(
    f"""
    UPDATE task SET status = {int(TaskStatus.SCHEDULER)}, attempt = v.attempt + 1,
        client_id = v.client_id, client_host = v.host, client_ip = v.ip,
        server_node = :node, dispatched_at = GREATEST(:now, v.start_at),
        reported_at = GREATEST(:now, v.start_at),
        claimed_by = NULL, claimed_until = NULL, finish_at = NULL, error = NULL
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:attempts AS INTEGER[]),
                CAST(:starts AS TIMESTAMP[]), CAST(:clients AS VARCHAR[]),
                CAST(:hosts AS VARCHAR[]), CAST(:ips AS VARCHAR[]))
        AS v(id, attempt, start_at, client_id, host, ip)
    WHERE task.id = v.id AND {STATUS_UNINDEXED} = {int(TaskStatus.NONE)}
        AND task.claimed_by = :node AND task.start_at = v.start_at
        AND task.attempt = v.attempt
    RETURNING task.id
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


def undo_dispatch(
    conn: Connection,
    task_id: int,
    attempt: int,
    claim_for: str | None = None,
    claimed_until: datetime | None = None,
) -> bool:
    """Scheduler -> None when the message could not be sent; only if nothing happened since.
    `claim_for` keeps the task claimed by that node until `claimed_until`: the dispatcher
    retries it from its wheel, and a claim lost here would refuse that retry."""
    return (
        conn.execute(
            task.update()
            .where(
                task.c.id == task_id,
                task.c.attempt == attempt,
                task.c.status == TaskStatus.SCHEDULER,
            )
            .values(
                status=TaskStatus.NONE,
                client_id=None,
                client_host=None,
                client_ip=None,
                claimed_by=claim_for,
                claimed_until=claimed_until if claim_for is not None else None,
            )
        ).rowcount
        == 1
    )


def warn_no_client_once(
    conn: Connection, claimed: ClaimedTask, now: datetime, why: str | None = None
) -> bool:
    """Write the 'nobody can run this job' warning the first time only (`why`: the text,
    when it is not that no client registered the job, e.g. none has the group's tag)."""
    first = conn.execute(
        task.update()
        .where(task.c.id == claimed.id, task.c.no_client_warned == sa.false())
        .values(no_client_warned=True)
    ).rowcount
    if first == 1:
        conn.execute(
            run_log.insert().values(
                task_id=claimed.id,
                task_group_id=claimed.group_id,
                log_level=3,
                content=why
                or (
                    f"no live client has registered job {claimed.job_name!r}; "
                    "the task waits until one does"
                ),
                create_at=now,
            )
        )
    return first == 1


def skip_missed(
    conn: Connection, claimed: ClaimedTask, node: str, next_at: datetime, now: datetime
) -> bool:
    """misfire=skip: move a run missed during an outage to the next slot instead of running it."""
    moved = conn.execute(
        task.update()
        .where(
            task.c.id == claimed.id,
            task.c.status == TaskStatus.NONE,
            task.c.claimed_by == node,
            task.c.start_at == claimed.start_at,
        )
        .values(start_at=next_at, claimed_by=None, claimed_until=None)
    ).rowcount
    if moved != 1:
        return False
    conn.execute(
        task_group.update().where(task_group.c.id == claimed.group_id).values(next_at=next_at)
    )
    conn.execute(
        run_log.insert().values(
            task_id=claimed.id,
            task_group_id=claimed.group_id,
            log_level=3,
            content=(
                f"run planned at {claimed.start_at.isoformat()} was missed "
                f"(misfire=skip); next run at {next_at.isoformat()}"
            ),
            create_at=now,
        )
    )
    return True


def get_task(conn: Connection, task_id: int) -> TaskRow:
    row = conn.execute(sa.select(task).where(task.c.id == task_id)).first()
    if row is None:
        raise TaskNotFound(task_id)
    return TaskRow.from_row(row)


def run_data_of(stored: str | None) -> dict[str, Any] | None:
    """The data given to this run only (`fss group run --data`, task.run_data); None when
    the run had the group's data."""
    return None if stored is None else dict(json.loads(stored))


def task_run_data(conn: Connection, task_id: int) -> dict[str, Any] | None:
    """run_data_of the task (TaskNotFound if there is none)."""
    row = conn.execute(sa.select(task.c.run_data).where(task.c.id == task_id)).first()
    if row is None:
        raise TaskNotFound(task_id)
    return run_data_of(row.run_data)


def list_tasks(
    conn: Connection,
    group_id: int | None = None,
    status: TaskStatus | None = None,
    limit: int = 50,
) -> list[TaskRow]:
    query = sa.select(task).order_by(task.c.id.desc()).limit(limit)
    if group_id is not None:
        query = query.where(task.c.task_group_id == group_id)
    if status is not None:
        query = query.where(task.c.status == status)
    return [TaskRow.from_row(r) for r in conn.execute(query)]


def task_logs(conn: Connection, task_id: int, after_id: int = 0, limit: int = 1000) -> list[LogRow]:
    rows = conn.execute(
        sa.select(run_log)
        .where(run_log.c.task_id == task_id, run_log.c.id > after_id)
        .order_by(run_log.c.id)
        .limit(limit)
    )
    return [LogRow.from_row(r) for r in rows]
