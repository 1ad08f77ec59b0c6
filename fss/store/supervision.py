"""The supervisor's guarded SQL: leases, dead nodes and clients, orphaned, stale and hung
tasks, retention. Every change names the state it expects, so sweeps running twice, or
racing a late event, change nothing twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from fss.domain.alerts import DEFAULT_POLICY, AlertPolicy
from fss.domain.broadcast import BROADCAST_CLIENT
from fss.domain.status import TaskStatus
from fss.store.alerts import RunEnd, note_run_ends
from fss.store.audit import prune_audit
from fss.store.dead_letters import delete_dead_letters
from fss.store.departures import delete_departed, remove_client
from fss.store.recording import schedule_next, status_in
from fss.store.reports import delete_report_hours
from fss.store.retries import (
    Failure,
    archive_final,
    archive_resent,
    locked_dispatch,
    requeue_failures,
)
from fss.store.tables import client, lease, run_log, server_node, task, task_group, task_run

ERROR_LEVEL = 4
WARNING_LEVEL = 3
IN_FLIGHT = (TaskStatus.SCHEDULER, TaskStatus.WORKING)


def take_lease(engine: Engine, name: str, holder: str, now: datetime, duration: timedelta) -> bool:
    """Hold (or keep holding) the lease `name` until now + duration; False if another holds it."""
    free = sa.or_(lease.c.holder.is_(None), lease.c.holder == holder, lease.c.until < now)
    with engine.begin() as conn:
        taken = conn.execute(
            lease.update()
            .where(lease.c.name == name, free)
            .values(holder=holder, until=now + duration)
        ).rowcount
        if taken:
            return True
        exists = conn.execute(sa.select(lease.c.name).where(lease.c.name == name)).first()
        if exists:
            return False
        try:
            with conn.begin_nested():
                conn.execute(lease.insert().values(name=name, holder=holder, until=now + duration))
        except IntegrityError:
            return False
        return True


def release_lease(engine: Engine, name: str, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            lease.update()
            .where(lease.c.name == name, lease.c.holder == holder)
            .values(holder=None, until=None)
        )


def dead_node_ids(conn: Connection, alive_since: datetime) -> list[str]:
    """Nodes about to be marked dead: alive by their row, silent since `alive_since`."""
    return list(
        conn.execute(
            sa.select(server_node.c.id).where(
                server_node.c.heartbeat_at < alive_since, server_node.c.is_alive == sa.true()
            )
        ).scalars()
    )


def mark_dead_nodes(conn: Connection, alive_since: datetime) -> int:
    return conn.execute(
        server_node.update()
        .where(server_node.c.heartbeat_at < alive_since, server_node.c.is_alive == sa.true())
        .values(is_alive=False)
    ).rowcount


@dataclass(frozen=True)
class OpenTask:
    id: int
    attempt: int
    status: TaskStatus
    client_id: str | None
    group_id: int
    start_at: datetime
    dispatched_at: datetime | None
    run_at: datetime | None
    reported_at: datetime | None
    timeout_s: int | None
    run_speed_avg: int
    # The group's time limit: a run Working past max_run_s + 2 x grace is failed by the
    # supervisor (the worker's hard limit, max_run_s + grace, did not end it).
    max_run_s: int | None = None
    # scheduled | manual | child | backfill (a backfill run ended moves its backfill on).
    kind: str = "scheduled"
    # When the task was made (the run of a slot that passed began then; fss.store.overlap).
    create_at: datetime | None = None

    def hung_after(self, default_s: float) -> timedelta:
        return hung_after(self.timeout_s, self.run_speed_avg, default_s)

    def over_time_limit(self, now: datetime, grace_s: float) -> bool:
        """Still Working a grace after its hard time limit: nothing stopped it (a threads or
        solo pool, which Celery cannot time-limit; a gRPC client that ignored `cancel`)."""
        if not self.max_run_s or self.status != TaskStatus.WORKING or self.run_at is None:
            return False
        return now - self.run_at > timedelta(seconds=self.max_run_s + 2 * grace_s)


def hung_after(timeout_s: int | None, run_speed_avg_ms: int, default_s: float) -> timedelta:
    """The group's timeout, else max(2.5 x its average run time, the default), as in FSS."""
    if timeout_s:
        return timedelta(seconds=timeout_s)
    return timedelta(seconds=max(default_s, 2.5 * run_speed_avg_ms / 1000))


def _open_tasks(conn: Connection, *conditions: Any) -> list[OpenTask]:
    rows = conn.execute(
        sa.select(
            task.c.id,
            task.c.attempt,
            task.c.status,
            task.c.client_id,
            task.c.task_group_id,
            task.c.start_at,
            task.c.dispatched_at,
            task.c.run_at,
            task.c.reported_at,
            task_group.c.timeout_s,
            task_group.c.run_speed_avg,
            task_group.c.max_run_s,
            task.c.kind,
            task.c.create_at,
        )
        .join(task_group, task_group.c.id == task.c.task_group_id, isouter=True)
        # A broadcast run is judged shard by shard (fss.store.shards.open_shards).
        .where(status_in(IN_FLIGHT), task.c.client_id != BROADCAST_CLIENT, *conditions)
        .order_by(task.c.id)
    )
    return [
        OpenTask(
            r.id,
            r.attempt,
            TaskStatus(r.status),
            r.client_id,
            r.task_group_id,
            r.start_at,
            r.dispatched_at,
            r.run_at,
            r.reported_at,
            r.timeout_s,
            r.run_speed_avg or 0,
            r.max_run_s,
            r.kind,
            r.create_at,
        )
        for r in rows
    ]


def live_client_ids(alive_since: datetime) -> Any:
    return sa.select(client.c.id).where(client.c.heartbeat_at >= alive_since)


def orphaned_tasks(conn: Connection, alive_since: datetime) -> list[OpenTask]:
    """Dispatched or running tasks whose client is gone or silent."""
    return _open_tasks(conn, task.c.client_id.not_in(live_client_ids(alive_since)))


def stale_dispatches(conn: Connection, dispatched_before: datetime) -> list[OpenTask]:
    """Sent but not reported as started: the order has expired by now."""
    return _open_tasks(
        conn, task.c.status == TaskStatus.SCHEDULER, task.c.dispatched_at < dispatched_before
    )


def sent_to_earlier_processes(conn: Connection, alive_since: datetime) -> list[OpenTask]:
    """In flight on a live client id whose worker process restarted after the dispatch."""
    restarted = (
        sa.select(client.c.id)
        .where(
            client.c.heartbeat_at >= alive_since,
            client.c.id == task.c.client_id,
            client.c.registered_at > task.c.dispatched_at,
        )
        .exists()
    )
    return _open_tasks(conn, restarted)


def incarnations(conn: Connection) -> dict[str, str | None]:
    return {r.id: r.incarnation for r in conn.execute(sa.select(client.c.id, client.c.incarnation))}


def sent_by_silent_nodes(
    conn: Connection, node_alive_since: datetime, sent_before: datetime, me: str
) -> list[OpenTask]:
    """Dispatched by a scheduler that stopped: it may have died between the SQL and the send."""
    live_nodes = sa.select(server_node.c.id).where(
        server_node.c.heartbeat_at >= node_alive_since, server_node.c.is_alive == sa.true()
    )
    return _open_tasks(
        conn,
        task.c.status == TaskStatus.SCHEDULER,
        task.c.dispatched_at < sent_before,
        task.c.server_node.not_in(live_nodes),
        task.c.server_node != me,
    )


def sent_by_node(conn: Connection, node: str) -> list[OpenTask]:
    """Dispatched by `node` and not started. Read by a scheduler before its first dispatch,
    these are its previous process's: it may have died between the SQL and the send."""
    return _open_tasks(
        conn, task.c.status == TaskStatus.SCHEDULER, task.c.server_node == node
    )


def in_flight_tasks(conn: Connection) -> list[OpenTask]:
    return _open_tasks(conn)


def return_to_waiting(conn: Connection, open_task: OpenTask, reason: str, now: datetime) -> bool:
    """Scheduler -> None for a re-dispatch; the caller has revoked the attempt first. The
    attempt taken back stays in task_run (it was sent, never started)."""
    dispatch = locked_dispatch(conn, open_task.id, open_task.attempt)
    moved = conn.execute(
        task.update()
        .where(
            task.c.id == open_task.id,
            task.c.attempt == open_task.attempt,
            task.c.status == TaskStatus.SCHEDULER,
        )
        .values(
            status=TaskStatus.NONE,
            client_id=None,
            client_host=None,
            client_ip=None,
            claimed_by=None,
            claimed_until=None,
            dispatched_at=None,
        )
    ).rowcount
    if moved:
        archive_resent(conn, dispatch, reason, now)
        _log(conn, open_task, WARNING_LEVEL, reason, now)
    return moved == 1


def fail_task(
    conn: Connection,
    open_task: OpenTask,
    reason: str,
    now: datetime,
    *,
    unchanged_since: datetime | None = None,
    alerting: AlertPolicy = DEFAULT_POLICY,
) -> bool:
    """In flight -> Fail with `reason`; the group's next task is created as after any run.
    With attempts left (the group's retries), the task goes back to waiting for its next
    attempt instead (fss.store.retries): a hung or lost run counts as a failure."""
    retried, notes = _retried(conn, open_task, reason, now, unchanged_since)
    if retried:
        return True
    conditions = [
        task.c.id == open_task.id,
        task.c.attempt == open_task.attempt,
        status_in(IN_FLIGHT),
    ]
    if unchanged_since is not None:
        conditions.append(task.c.reported_at == unchanged_since)
    began = open_task.run_at or open_task.dispatched_at or now
    run_speed_ms = max(0, int((now - began).total_seconds() * 1000))
    failed = conn.execute(
        task.update()
        .where(*conditions)
        .values(
            status=TaskStatus.FAIL,
            finish_at=now,
            run_speed=run_speed_ms,
            error=reason,
            open_group_id=None,
            reported_at=now,
        )
    ).rowcount
    if not failed:
        return False
    _log(conn, open_task, ERROR_LEVEL, reason, now)
    for note in notes:
        _log(conn, open_task, ERROR_LEVEL, note, now)
    if open_task.attempt > 1:
        archive_final(conn, [open_task.id])
    schedule_next(
        conn,
        group_id=open_task.group_id,
        planned_at=open_task.start_at,
        finished_at=max(now, open_task.start_at),
        success=False,
        run_speed_ms=run_speed_ms,
        attempt=open_task.attempt,
        kind=open_task.kind,
        created_at=open_task.create_at,
    )
    group = conn.execute(
        sa.select(task_group.c.alert_rules, task_group.c.alert_open).where(
            task_group.c.id == open_task.group_id
        )
    ).first()
    end = RunEnd(
        group_id=open_task.group_id,
        task_id=open_task.id,
        attempt=open_task.attempt,
        success=False,
        error=reason,
        planned_at=open_task.start_at,
        client_id=open_task.client_id,
    )
    note_run_ends(conn, [end], {open_task.group_id: group} if group else {}, now, alerting)
    return True


def _retried(
    conn: Connection,
    open_task: OpenTask,
    reason: str,
    now: datetime,
    unchanged_since: datetime | None,
) -> tuple[bool, list[str]]:
    """Whether the failure went back to waiting for a retry (its row locked first, as the
    recorder's retries lock theirs); if not, the lines saying why it is not retried when
    the group retries (written once the task really fails)."""
    locked_dispatch(conn, open_task.id, open_task.attempt)
    began = open_task.run_at or open_task.dispatched_at or now
    failure = Failure(
        task_id=open_task.id,
        attempt=open_task.attempt,
        error=reason,
        ended_at=now,
        run_speed_ms=max(0, int((now - began).total_seconds() * 1000)),
        unchanged_since=unchanged_since,
    )
    outcome = requeue_failures(conn, [failure], now)
    return bool(outcome.retried), list(outcome.final_notes.values())


def _log(conn: Connection, open_task: OpenTask, level: int, content: str, now: datetime) -> None:
    conn.execute(
        run_log.insert().values(
            task_id=open_task.id,
            task_group_id=open_task.group_id,
            log_level=level,
            content=content,
            create_at=now,
            attempt=open_task.attempt,
        )
    )


def registered_client_ids(conn: Connection) -> list[str]:
    return list(conn.execute(sa.select(client.c.id)).scalars())


def dead_client_ids(conn: Connection, alive_since: datetime) -> list[str]:
    rows = conn.execute(sa.select(client.c.id).where(client.c.heartbeat_at < alive_since))
    return [r.id for r in rows]


def remove_client_if_silent(
    conn: Connection, client_id: str, alive_since: datetime, why: str = "silent",
    now: datetime | None = None,
) -> bool:
    """Delete the registration unless a heartbeat arrived since the sweep looked; the row
    goes to client_departed with `why` (fss.store.departures)."""
    guard = [client.c.id == client_id, client.c.heartbeat_at < alive_since]
    return remove_client(conn, guard, why, now or alive_since)


def count_hung(conn: Connection, client_id: str, kick_after: int, now: datetime) -> bool:
    """Count a hung run against the client; True when this one gets it kicked."""
    conn.execute(
        client.update().where(client.c.id == client_id).values(hung_count=client.c.hung_count + 1)
    )
    return (
        conn.execute(
            client.update()
            .where(
                client.c.id == client_id,
                client.c.hung_count >= kick_after,
                client.c.kicked_at.is_(None),
            )
            .values(kicked_at=now)
        ).rowcount
        == 1
    )


@dataclass(frozen=True)
class RetentionPolicy:
    keep_success_per_group: int = 100
    success_max_age: timedelta = timedelta(days=1)
    fail_max_age: timedelta = timedelta(days=7)
    # Departed clients are shown as offline this long (FSS_CLIENT_OFFLINE_KEEP_S); run
    # counts per hour (run_report) cover the longest report range, 90 days, and a day more.
    departed_max_age: timedelta = timedelta(hours=24)
    report_max_age: timedelta = timedelta(days=91)
    audit_max_age: timedelta = timedelta(days=90)
    batch: int = 1000


def prune(engine: Engine, now: datetime, policy: RetentionPolicy) -> int:
    """Delete old finished tasks (and their run logs), keeping the newest N successes per group."""
    # One windowed query over all groups (PostgreSQL, MariaDB >= 10.2, SQLite >= 3.25), not
    # one query per group: 10,000 groups took 18 s per sweep that way.
    ranked = (
        sa.select(
            task.c.id,
            task.c.finish_at,
            sa.func.row_number()
            .over(partition_by=task.c.task_group_id, order_by=task.c.id.desc())
            .label("newest_first"),
        )
        .where(task.c.status == TaskStatus.SUCCESS)
        .subquery()
    )
    removed = _prune_ids(
        engine,
        sa.select(ranked.c.id)
        .where(
            ranked.c.newest_first > policy.keep_success_per_group,
            ranked.c.finish_at < now - policy.success_max_age,
        )
        .limit(policy.batch),
    )
    removed += _prune_ids(
        engine,
        sa.select(task.c.id)
        .where(task.c.status == TaskStatus.FAIL, task.c.finish_at < now - policy.fail_max_age)
        .limit(policy.batch),
    )
    # Tasks of deleted groups keep no history worth keeping. NOT EXISTS, not NOT IN: PostgreSQL
    # ran NOT IN as a hashed subplan of every group id (over a second at a million groups,
    # sampled under bench.scale), NOT EXISTS lets it probe the primary key per finished task
    # (task_group_id is NOT NULL, so the two select the same rows).
    removed += _prune_ids(
        engine,
        sa.select(task.c.id)
        .where(
            status_in((TaskStatus.SUCCESS, TaskStatus.FAIL)),
            ~sa.exists().where(task_group.c.id == task.c.task_group_id),
        )
        .limit(policy.batch),
    )
    # Dead letters are kept as long as failed runs: long enough for an operator to look.
    with engine.begin() as conn:
        delete_dead_letters(conn, received_before=now - policy.fail_max_age)
        delete_departed(conn, left_before=now - policy.departed_max_age)
        delete_report_hours(conn, before=now - policy.report_max_age)
    # The audit trail, batch by batch as the tasks (not counted in what is returned).
    prune_audit(engine, now - policy.audit_max_age, policy.batch)
    return removed


def _prune_ids(engine: Engine, query: Any) -> int:
    removed = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(query).scalars())
            if not ids:
                return removed
            conn.execute(run_log.delete().where(run_log.c.task_id.in_(ids)))
            conn.execute(task_run.delete().where(task_run.c.task_id.in_(ids)))
            removed += conn.execute(task.delete().where(task.c.id.in_(ids))).rowcount
