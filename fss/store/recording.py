"""Writes worker events into the FSS tables: guarded, batched, idempotent.

A replayed or stale event changes nothing: every UPDATE names the task's expected attempt,
client and status, logs are keyed by their event id, and the next task of a group is only
created by the transition that actually finished the current one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from fss.domain.schedule import Schedule, next_run_at
from fss.domain.status import TaskStatus, sources_of
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
)
from fss.store.tables import client, insert_waiting_task, run_log, task, task_group

MAX_ERROR_CHARS = 8000


@dataclass
class RecordStats:
    started: int = 0
    progressed: int = 0
    logged: int = 0
    finished: int = 0
    ignored: int = 0
    heartbeats: int = 0


def record(conn: Connection, events: Sequence[Event], now: datetime) -> RecordStats:
    """Apply a batch in the caller's transaction, in lifecycle order."""
    stats = RecordStats()
    by_kind: dict[type[Event], list[Any]] = {}
    for event in events:
        by_kind.setdefault(type(event), []).append(event)
    stats.heartbeats = _heartbeats(conn, by_kind.get(ClientHeartbeat, []), now)
    _clients_left(conn, by_kind.get(ClientLeft, []))
    stats.started = _started(conn, by_kind.get(TaskStarted, []), now)
    stats.progressed = _progressed(conn, by_kind.get(TaskProgressed, []), now)
    stats.logged = _logged(conn, by_kind.get(TaskLogged, []))
    stats.finished = finish_tasks(conn, by_kind.get(TaskFinished, []), now)
    total = len(events) - stats.heartbeats - len(by_kind.get(ClientLeft, []))
    stats.ignored = total - stats.started - stats.progressed - stats.logged - stats.finished
    return stats


def status_in(statuses: Iterable[TaskStatus]) -> Any:
    """An OR of equalities: unlike IN, it works in executemany statements."""
    return sa.or_(*(task.c.status == int(s) for s in sorted(statuses)))


def _current_attempt(event_task_id: Any, event_attempt: Any, client_id: Any) -> Any:
    return sa.and_(
        task.c.id == event_task_id,
        task.c.attempt == event_attempt,
        task.c.client_id == client_id,
    )


def _started(conn: Connection, events: list[TaskStarted], now: datetime) -> int:
    if not events:
        return 0
    statement = (
        task.update()
        .where(
            _current_attempt(
                sa.bindparam("b_task"), sa.bindparam("b_attempt"), sa.bindparam("b_client")
            ),
            status_in(sources_of(TaskStatus.WORKING)),
        )
        .values(status=TaskStatus.WORKING, run_at=sa.bindparam("b_at"), reported_at=now)
    )
    params = [
        {"b_task": e.task_id, "b_attempt": e.attempt, "b_client": e.client_id, "b_at": e.at}
        for e in events
    ]
    return _count(conn.execute(statement, params).rowcount, len(events))


def _progressed(conn: Connection, events: list[TaskProgressed], now: datetime) -> int:
    if not events:
        return 0
    statement = (
        task.update()
        .where(
            _current_attempt(
                sa.bindparam("b_task"), sa.bindparam("b_attempt"), sa.bindparam("b_client")
            ),
            status_in([TaskStatus.SCHEDULER, TaskStatus.WORKING]),
        )
        .values(progress=sa.bindparam("b_progress"), reported_at=now)
    )
    params = [
        {
            "b_task": e.task_id,
            "b_attempt": e.attempt,
            "b_client": e.client_id,
            "b_progress": e.progress,
        }
        for e in events
    ]
    return _count(conn.execute(statement, params).rowcount, len(events))


def _logged(conn: Connection, events: list[TaskLogged]) -> int:
    if not events:
        return 0
    fresh = list({e.event_id: e for e in events}.values())
    known = set(
        conn.execute(
            sa.select(run_log.c.event_id).where(run_log.c.event_id.in_([e.event_id for e in fresh]))
        ).scalars()
    )
    fresh = [e for e in fresh if e.event_id not in known]
    if not fresh:
        return 0
    owners = {
        (r.id, r.attempt, r.client_id): r.task_group_id
        for r in conn.execute(
            sa.select(task.c.id, task.c.attempt, task.c.client_id, task.c.task_group_id).where(
                task.c.id.in_({e.task_id for e in fresh})
            )
        )
    }
    rows = [
        {
            "task_id": e.task_id,
            "task_group_id": owners[(e.task_id, e.attempt, e.client_id)],
            "log_level": e.level,
            "content": e.content,
            "create_at": e.at,
            "event_id": e.event_id,
        }
        for e in fresh
        if (e.task_id, e.attempt, e.client_id) in owners
    ]
    if rows:
        conn.execute(run_log.insert(), rows)
    return len(rows)


def finish_tasks(conn: Connection, events: list[TaskFinished], now: datetime) -> int:
    """Close the tasks, update their groups' stats and data, and create their next tasks.

    One guarded UPDATE per event (its row count says whether this event finished the task;
    a replayed or stale one changes nothing), then for all winners together: one read of
    their planned times, one locked read of their groups, one INSERT of the next tasks and
    one UPDATE of the groups, instead of five statements per event.
    """
    # Task rows are locked in id order, as groups are, so two recorders never deadlock.
    unique = sorted({(e.task_id, e.attempt): e for e in events}.values(), key=lambda e: e.task_id)
    won_events = [
        e for e in unique if conn.execute(_FINISH_STATEMENT, _finish_params(e, now)).rowcount == 1
    ]
    if not won_events:
        return 0
    starts = {
        r.id: r
        for r in conn.execute(
            sa.select(task.c.id, task.c.task_group_id, task.c.start_at).where(
                task.c.id.in_([e.task_id for e in won_events])
            )
        )
    }
    _schedule_after(conn, [(e, starts[e.task_id]) for e in won_events], now)
    return len(won_events)


def _finish_params(event: TaskFinished, now: datetime) -> dict[str, Any]:
    return {
        "b_task": event.task_id,
        "b_attempt": event.attempt,
        "b_client": event.client_id,
        "b_status": int(TaskStatus.SUCCESS if event.success else TaskStatus.FAIL),
        "b_success": event.success,
        "b_at": event.at,
        "b_speed": event.run_speed_ms,
        "b_error": event.error[-MAX_ERROR_CHARS:] if event.error else None,
        "b_now": now,
    }


_FINISH_STATEMENT = (
    task.update()
    .where(
        task.c.id == sa.bindparam("b_task"),
        task.c.attempt == sa.bindparam("b_attempt"),
        task.c.client_id == sa.bindparam("b_client"),
        # Scheduler or Working: the sources of both Success and Fail.
        status_in((TaskStatus.SCHEDULER, TaskStatus.WORKING)),
    )
    .values(
        status=sa.bindparam("b_status"),
        finish_at=sa.bindparam("b_at"),
        run_speed=sa.bindparam("b_speed"),
        error=sa.func.coalesce(sa.bindparam("b_error", type_=sa.Text()), task.c.error),
        progress=sa.case(
            (sa.bindparam("b_success", type_=sa.Boolean()) == sa.true(), 100),
            else_=task.c.progress,
        ),
        reported_at=sa.bindparam("b_now"),
        open_group_id=None,
    )
)


@dataclass
class _GroupOutcome:
    successes: int = 0
    speed_sum: int = 0
    last_run_at: datetime | None = None
    next_at: datetime | None = None
    data: str | None = None


def _schedule_after(conn: Connection, won: list[tuple[TaskFinished, Any]], now: datetime) -> None:
    group_ids = sorted({row.task_group_id for _, row in won})
    groups = {
        g.id: g
        for g in conn.execute(
            sa.select(
                task_group.c.id,
                task_group.c.is_enable,
                task_group.c.interval_ms,
                task_group.c.cron,
                task_group.c.time_zone,
                task_group.c.job_name,
            )
            .where(task_group.c.id.in_(group_ids))
            .order_by(task_group.c.id)  # one lock order for every recorder: no deadlocks
            .with_for_update()
        )
    }
    outcomes: dict[int, _GroupOutcome] = {}
    for event, row in sorted(won, key=lambda pair: pair[0].at):
        group = groups.get(row.task_group_id)
        if group is None:
            continue  # deleted meanwhile
        finished_at = max(event.at, row.start_at)
        outcome = outcomes.setdefault(group.id, _GroupOutcome())
        if event.success:
            outcome.successes += 1
            outcome.speed_sum += event.run_speed_ms
        outcome.last_run_at = finished_at
        schedule = Schedule(group.interval_ms, group.cron, group.time_zone)
        outcome.next_at = next_run_at(schedule, row.start_at, finished_at, event.next_at)
        if event.data is not None:
            outcome.data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    if not outcomes:
        return
    enabled = [gid for gid in outcomes if groups[gid].is_enable]
    if enabled:
        conn.execute(
            task.insert(),
            [
                {
                    "task_group_id": gid,
                    "job_name": groups[gid].job_name,
                    "start_at": outcomes[gid].next_at,
                    "status": TaskStatus.NONE,
                    "open_group_id": gid,
                    "create_at": outcomes[gid].last_run_at,
                }
                for gid in enabled
            ],
        )
    next_ids = (
        {
            r.open_group_id: r.id
            for r in conn.execute(
                sa.select(task.c.id, task.c.open_group_id).where(task.c.open_group_id.in_(enabled))
            )
        }
        if enabled
        else {}
    )
    conn.execute(
        _GROUP_STATEMENT,
        [
            {
                "b_group": gid,
                "b_inc": o.successes,
                "b_speed_sum": o.speed_sum,
                "b_last": o.last_run_at,
                "b_next": o.next_at,
                "b_data": o.data,
                "b_task_id": next_ids.get(gid),
            }
            for gid, o in outcomes.items()
        ],
    )


_INC = sa.bindparam("b_inc", type_=sa.BigInteger())
_GROUP_STATEMENT = (
    task_group.update()
    .where(task_group.c.id == sa.bindparam("b_group"))
    .values(
        run_count=task_group.c.run_count + _INC,
        # Floor division keeps the column integral on every backend (SQLite's / is real).
        run_speed_avg=sa.case(
            (_INC == 0, task_group.c.run_speed_avg),
            else_=(
                task_group.c.run_speed_avg * task_group.c.run_count
                + sa.bindparam("b_speed_sum", type_=sa.BigInteger())
            )
            // (task_group.c.run_count + _INC),
        ),
        last_run_at=sa.bindparam("b_last"),
        next_at=sa.bindparam("b_next"),
        data=sa.func.coalesce(sa.bindparam("b_data", type_=sa.Text()), task_group.c.data),
        task_id=sa.func.coalesce(
            sa.bindparam("b_task_id", type_=sa.BigInteger()), task_group.c.task_id
        ),
    )
)


def schedule_next(
    conn: Connection,
    *,
    group_id: int,
    planned_at: datetime,
    finished_at: datetime,
    success: bool,
    run_speed_ms: int,
    job_next_at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> int | None:
    """Group bookkeeping after a task ended; returns the id of the next task, if any."""
    group = conn.execute(
        sa.select(
            task_group.c.is_enable,
            task_group.c.interval_ms,
            task_group.c.cron,
            task_group.c.time_zone,
            task_group.c.job_name,
        )
        .where(task_group.c.id == group_id)
        .with_for_update()
    ).first()
    if group is None:
        return None
    schedule = Schedule(group.interval_ms, group.cron, group.time_zone)
    next_at = next_run_at(schedule, planned_at, finished_at, job_next_at)
    changes: dict[str, Any] = {"last_run_at": finished_at, "next_at": next_at}
    if success:
        changes["run_count"] = task_group.c.run_count + 1
        # Floor division keeps the column integral on every backend (SQLite's / is real).
        changes["run_speed_avg"] = (
            task_group.c.run_speed_avg * task_group.c.run_count + run_speed_ms
        ) // (task_group.c.run_count + 1)
    if data is not None:
        changes["data"] = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    next_task_id: int | None = None
    if group.is_enable:
        next_task_id = insert_waiting_task(conn, group_id, group.job_name, next_at, finished_at)
        changes["task_id"] = next_task_id
    conn.execute(task_group.update().where(task_group.c.id == group_id).values(**changes))
    return next_task_id


def _heartbeats(conn: Connection, events: list[ClientHeartbeat], now: datetime) -> int:
    latest = {e.client_id: e for e in events}
    for beat in latest.values():
        upsert_client(conn, beat, now)
    return len(events)


def upsert_client(conn: Connection, beat: ClientHeartbeat, now: datetime) -> None:
    values = {
        "host": beat.host,
        "ip": beat.ip,
        "pid": beat.pid,
        "language": beat.language,
        "job_names": json.dumps(sorted(beat.job_names)),
        "queue": beat.queue,
        "heartbeat_at": now,
        "accepting": beat.accepting,
    }
    restarted = sa.and_(client.c.incarnation.is_not(None), client.c.incarnation != beat.incarnation)
    # A kicked client is healthy again once it runs nothing (its hung run ended) or restarted.
    healthy = sa.or_(sa.literal(beat.active) == 0, client.c.pid != beat.pid, restarted)
    updated = conn.execute(
        client.update()
        .where(client.c.id == beat.client_id)
        .values(
            **values,
            kicked_at=sa.case((healthy, None), else_=client.c.kicked_at),
            hung_count=sa.case((healthy, 0), else_=client.c.hung_count),
            registered_at=sa.case((restarted, now), else_=client.c.registered_at),
            incarnation=beat.incarnation,
        )
    ).rowcount
    if updated:
        return
    try:
        with conn.begin_nested():
            conn.execute(
                client.insert().values(
                    id=beat.client_id, registered_at=now, incarnation=beat.incarnation, **values
                )
            )
    except IntegrityError:
        conn.execute(client.update().where(client.c.id == beat.client_id).values(**values))


def _clients_left(conn: Connection, events: list[ClientLeft]) -> None:
    ids = [e.client_id for e in events]
    if ids:
        conn.execute(client.delete().where(client.c.id.in_(ids)))


def _count(rowcount: int, fallback: int) -> int:
    # Some drivers report -1 for executemany; the guarded statements stay correct either way.
    return rowcount if rowcount >= 0 else fallback
