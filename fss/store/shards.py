"""Broadcast runs in SQL: one task_run row per shard of the attempt, each with its own
client, status, progress and times; the task row holds the whole run (client
BROADCAST_CLIENT, progress the shards' mean, Working once a shard started).

Every writer of a broadcast task's shard rows first locks the task row (id order, as every
batch write does), so the shard that ends last sees the others ended and ends the task:
its verdict goes back to the caller as a TaskFinished of the task (client
BROADCAST_CLIENT), which the ordinary finish path records (retries, next run, children).
Nothing here runs for other tasks: their events never name a shard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.broadcast import (
    BROADCAST_CLIENT,
    MAX_ERROR_CHARS,
    ShardOutcome,
    ShardPlan,
    mean_progress,
    verdict,
)
from fss.domain.status import TaskStatus
from fss.events import (
    Event,
    TaskDataSaved,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
)
from fss.store.data_saves import locked_group_data, saved_data_text
from fss.store.kills import RunningAttempt
from fss.store.tables import client, run_log, task, task_group, task_run, version_after_data
from fss.store.tasks import ClaimedTask, DispatchTarget, lock_tasks, mark_dispatched

IN_FLIGHT = (int(TaskStatus.SCHEDULER), int(TaskStatus.WORKING))
ERROR_LEVEL = 4


def _in_flight(column: Any) -> Any:
    return sa.or_(*(column == s for s in IN_FLIGHT))


# --- dispatch ----------------------------------------------------------------------------


def succeeded_shards(conn: Connection, task_id: int) -> set[int]:
    """The shards of the task that succeeded in an earlier attempt (a retry skips them)."""
    return set(
        conn.execute(
            sa.select(task_run.c.shard_index).where(
                task_run.c.task_id == task_id, task_run.c.status == int(TaskStatus.SUCCESS)
            )
        ).scalars()
    )


def shard_total(conn: Connection, task_id: int) -> int | None:
    return conn.execute(sa.select(task.c.shard_total).where(task.c.id == task_id)).scalar()


def mark_dispatched_shards(
    conn: Connection,
    claimed: ClaimedTask,
    node: str,
    plan: ShardPlan,
    targets: dict[str, DispatchTarget],
    now: datetime,
) -> bool:
    """None -> Scheduler for this node's claim of a broadcast task, and one task_run row per
    shard of the attempt (Scheduler, its client); False (nothing written) if the claim was
    lost."""
    whole = DispatchTarget(BROADCAST_CLIENT, "", "")
    attempt = mark_dispatched(conn, claimed, node, whole, now)
    if attempt is None:
        return False
    conn.execute(
        task.update()
        .where(task.c.id == claimed.id, task.c.attempt == attempt)
        .values(shard_total=plan.total, progress=mean_progress([0] * len(plan.assignments),
                                                               plan.total))
    )
    conn.execute(
        task_run.insert(),
        [
            {
                "task_id": claimed.id,
                "attempt": attempt,
                "shard_index": shard,
                "task_group_id": claimed.group_id,
                "client_id": client_id,
                "status": int(TaskStatus.SCHEDULER),
                "progress": 0,
                "dispatched_at": now,
                "reported_at": now,
            }
            for shard, client_id in plan.assignments
            if client_id in targets
        ],
    )
    return True


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardEnd:
    """One shard of an attempt ends (its finished event, or the supervisor's verdict)."""

    task_id: int
    attempt: int
    shard: int
    success: bool
    error: str | None
    at: datetime
    retry: bool = True
    # Guarded when given: an event names its client; the supervisor may not.
    client_id: str | None = None
    # The supervisor's hung check: only if the shard reported nothing since it looked.
    unchanged_since: datetime | None = None


@dataclass
class ShardRecord:
    """What record_events did: counts per kind, and the tasks whose last shard ended."""

    started: int = 0
    progressed: int = 0
    logged: int = 0
    data_saved: int = 0
    finished: int = 0
    task_finishes: list[TaskFinished] | None = None


def record_events(
    conn: Connection, events: Sequence[Event], now: datetime, locked: set[int]
) -> ShardRecord:
    """Apply the events of broadcast shards (events naming a shard), their task rows locked
    first in id order (`locked` grows by them)."""
    result = ShardRecord(task_finishes=[])
    if not events:
        return result
    lock_tasks(conn, (e.task_id for e in events if hasattr(e, "task_id")), locked)
    by_kind: dict[type[Event], list[Any]] = {}
    for event in events:
        by_kind.setdefault(type(event), []).append(event)
    result.started = _started(conn, by_kind.get(TaskStarted, []), now)
    result.progressed = _progressed(conn, by_kind.get(TaskProgressed, []), now)
    result.logged = _logged(conn, by_kind.get(TaskLogged, []), now)
    result.data_saved = _data_saved(conn, by_kind.get(TaskDataSaved, []))
    finished: list[TaskFinished] = by_kind.get(TaskFinished, [])
    saves = [
        TaskDataSaved(
            e.task_id, e.attempt, e.client_id, 0, e.data, e.at, shard=e.shard,
            data_patch=e.data_patch,
        )
        for e in finished
        if e.success and e.data is not None
    ]
    _data_saved(conn, saves)
    ends = [
        ShardEnd(
            task_id=e.task_id,
            attempt=e.attempt,
            shard=int(e.shard or 0),
            success=e.success,
            error=e.error,
            at=e.at,
            retry=e.retry,
            client_id=e.client_id,
        )
        for e in finished
    ]
    won, result.task_finishes = end_shards(conn, ends, now, locked)
    result.finished = won
    return result


def _shard_row(event: Any) -> Any:
    return sa.and_(
        task_run.c.task_id == event.task_id,
        task_run.c.attempt == event.attempt,
        task_run.c.shard_index == int(event.shard or 0),
        task_run.c.client_id == event.client_id,
    )


def _started(conn: Connection, events: list[TaskStarted], now: datetime) -> int:
    count = 0
    for event in sorted(events, key=lambda e: (e.task_id, e.shard or 0)):
        moved = conn.execute(
            task_run.update()
            .where(_shard_row(event), task_run.c.status == int(TaskStatus.SCHEDULER))
            .values(status=int(TaskStatus.WORKING), run_at=event.at, reported_at=now)
        ).rowcount
        if not moved:
            continue
        count += 1
        # The task is Working from its first shard's start.
        conn.execute(
            task.update()
            .where(
                task.c.id == event.task_id,
                task.c.attempt == event.attempt,
                task.c.client_id == BROADCAST_CLIENT,
                task.c.status == int(TaskStatus.SCHEDULER),
            )
            .values(status=int(TaskStatus.WORKING), run_at=event.at, reported_at=now)
        )
    return count


def _progressed(conn: Connection, events: list[TaskProgressed], now: datetime) -> int:
    count = 0
    touched: set[tuple[int, int]] = set()
    for event in sorted(events, key=lambda e: (e.task_id, e.shard or 0)):  # the last one wins
        moved = conn.execute(
            task_run.update()
            .where(_shard_row(event), _in_flight(task_run.c.status))
            .values(progress=event.progress, reported_at=now)
        ).rowcount
        if moved:
            count += 1
            touched.add((event.task_id, event.attempt))
    for task_id, attempt in sorted(touched):
        _update_task_progress(conn, task_id, attempt, now)
    return count


def _update_task_progress(conn: Connection, task_id: int, attempt: int, now: datetime) -> None:
    total = shard_total(conn, task_id) or 0
    progresses = list(
        conn.execute(
            sa.select(task_run.c.progress).where(
                task_run.c.task_id == task_id, task_run.c.attempt == attempt
            )
        ).scalars()
    )
    _set_task_progress(conn, task_id, attempt, progresses, total, now)


def _set_task_progress(
    conn: Connection,
    task_id: int,
    attempt: int,
    progresses: list[int],
    total: int,
    now: datetime,
) -> None:
    conn.execute(
        task.update()
        .where(task.c.id == task_id, task.c.attempt == attempt, _in_flight(task.c.status))
        .values(progress=mean_progress(progresses, total), reported_at=now)
    )


def _logged(conn: Connection, events: list[TaskLogged], now: datetime) -> int:
    fresh = list({e.event_id: e for e in events}.values())
    if not fresh:
        return 0
    known = set(
        conn.execute(
            sa.select(run_log.c.event_id).where(run_log.c.event_id.in_([e.event_id for e in fresh]))
        ).scalars()
    )
    fresh = [e for e in fresh if e.event_id not in known]
    if not fresh:
        return 0
    owners = {
        (r.task_id, r.attempt, r.shard_index, r.client_id): r.task_group_id
        for r in conn.execute(
            sa.select(
                task_run.c.task_id, task_run.c.attempt, task_run.c.shard_index,
                task_run.c.client_id, task_run.c.task_group_id,
            ).where(task_run.c.task_id.in_({e.task_id for e in fresh}))
        )
    }

    def owner(e: TaskLogged) -> tuple[int, int, int, str]:
        return (e.task_id, e.attempt, int(e.shard or 0), e.client_id)

    current = [e for e in fresh if owner(e) in owners]
    if not current:
        return 0
    conn.execute(
        run_log.insert(),
        [
            {
                "task_id": e.task_id,
                "task_group_id": owners[owner(e)],
                "log_level": e.level,
                "content": e.content,
                "create_at": e.at,
                "event_id": e.event_id,
                "seq": e.seq,
                "attempt": e.attempt,
                "shard_index": int(e.shard or 0),
            }
            for e in current
        ],
    )
    # A shard that logs is alive (its hung check reads reported_at).
    for key in sorted({owner(e) for e in current}):
        task_id, attempt, shard, client_id = key
        conn.execute(
            task_run.update()
            .where(
                task_run.c.task_id == task_id,
                task_run.c.attempt == attempt,
                task_run.c.shard_index == shard,
                task_run.c.client_id == client_id,
                _in_flight(task_run.c.status),
            )
            .values(reported_at=now)
        )
    return len(current)


def _data_saved(conn: Connection, events: list[TaskDataSaved]) -> int:
    """A shard's saved data goes to its group while the shard is in flight (shards of one
    run saving at once: the last one recorded wins)."""
    count = 0
    for event in sorted(events, key=lambda e: (e.task_id, e.shard or 0)):
        text = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
        if event.data_patch is not None:
            # What this shard changed, applied to the data as the shards before it left it.
            group_id = conn.execute(
                sa.select(task.c.task_group_id).where(task.c.id == event.task_id)
            ).scalar()
            if group_id is not None:
                current = locked_group_data(conn, [group_id]).get(group_id)
                text = saved_data_text(event.data, event.data_patch, current)
        count += conn.execute(
            task_group.update()
            .where(
                task_group.c.id
                == sa.select(task.c.task_group_id)
                .where(task.c.id == event.task_id)
                .scalar_subquery(),
                sa.exists().where(_shard_row(event), _in_flight(task_run.c.status)),
            )
            # The version first: MySQL assigns in order (see version_after_data).
            .ordered_values(
                (task_group.c.version, version_after_data(sa.literal(text, sa.Text()))),
                (task_group.c.data, text),
            )
        ).rowcount
    return count


# --- ends --------------------------------------------------------------------------------


def end_shards(
    conn: Connection, ends: Sequence[ShardEnd], now: datetime, locked: set[int]
) -> tuple[int, list[TaskFinished]]:
    """End these shards (guarded: each only while in flight in its attempt); the number
    that ended, and a TaskFinished for each task whose attempt has no shard in flight
    left, for the caller to record with the ordinary finishes."""
    if not ends:
        return 0, []
    lock_tasks(conn, (e.task_id for e in ends), locked)
    won = 0
    tasks_touched: dict[int, int] = {}
    for end in sorted(ends, key=lambda e: (e.task_id, e.shard)):
        conditions = [
            task_run.c.task_id == end.task_id,
            task_run.c.attempt == end.attempt,
            task_run.c.shard_index == end.shard,
            _in_flight(task_run.c.status),
        ]
        if end.client_id is not None:
            conditions.append(task_run.c.client_id == end.client_id)
        if end.unchanged_since is not None:
            conditions.append(task_run.c.reported_at == end.unchanged_since)
        values: dict[str, Any] = {
            "status": int(TaskStatus.SUCCESS if end.success else TaskStatus.FAIL),
            "finish_at": end.at,
            "error": end.error[-MAX_ERROR_CHARS:] if end.error else None,
            "retry": end.retry,
            "reported_at": now,
        }
        if end.success:
            values["progress"] = 100
        if conn.execute(task_run.update().where(*conditions).values(**values)).rowcount:
            won += 1
            tasks_touched[end.task_id] = end.attempt
    finishes = []
    for task_id, attempt in sorted(tasks_touched.items()):
        finish = _task_end(conn, task_id, attempt, now)
        if finish is not None:
            finishes.append(finish)
    return won, finishes


def _task_end(conn: Connection, task_id: int, attempt: int, now: datetime) -> TaskFinished | None:
    """The task's finish when no shard of its attempt is in flight; else None, and the
    task's progress follows its shards' (one read of the shards serves both)."""
    shards = conn.execute(
        sa.select(
            task_run.c.shard_index, task_run.c.client_id, task_run.c.status,
            task_run.c.error, task_run.c.retry, task_run.c.run_at, task_run.c.finish_at,
            task_run.c.progress,
        ).where(task_run.c.task_id == task_id, task_run.c.attempt == attempt)
    ).all()
    total = shard_total(conn, task_id) or len(shards)
    if any(s.status in IN_FLIGHT for s in shards):
        _set_task_progress(conn, task_id, attempt, [s.progress for s in shards], total, now)
        return None
    outcome = verdict(
        [
            ShardOutcome(
                s.shard_index, s.client_id, s.status == int(TaskStatus.SUCCESS), s.error,
                bool(s.retry),
            )
            for s in shards
        ],
        total,
    )
    spans = [
        (s.finish_at - s.run_at) for s in shards if s.run_at is not None and s.finish_at is not None
    ]
    run_speed_ms = int(max(spans, default=timedelta(0)).total_seconds() * 1000)
    return TaskFinished(
        task_id=task_id,
        attempt=attempt,
        client_id=BROADCAST_CLIENT,
        success=outcome.success,
        run_speed_ms=max(0, run_speed_ms),
        at=now,
        error=outcome.error,
        retry=outcome.retry,
    )


# --- the supervisor's view ---------------------------------------------------------------


@dataclass(frozen=True)
class OpenShard:
    task_id: int
    attempt: int
    shard: int
    status: TaskStatus
    client_id: str | None
    client_host: str | None
    group_id: int
    dispatched_at: datetime | None
    run_at: datetime | None
    reported_at: datetime | None
    timeout_s: int | None
    run_speed_avg: int
    max_run_s: int | None
    kill_requested_at: datetime | None
    language: str | None = None

    def running(self) -> RunningAttempt:
        """The shard as a kill addresses it (fss.kills.send_kill)."""
        return RunningAttempt(
            self.task_id, self.attempt, self.group_id, self.client_id or "",
            self.client_host or "", self.language, shard=self.shard,
        )


def open_shards(conn: Connection) -> list[OpenShard]:
    """Every shard in flight of a broadcast task's current attempt."""
    rows = conn.execute(
        sa.select(
            task_run.c.task_id, task_run.c.attempt, task_run.c.shard_index, task_run.c.status,
            task_run.c.client_id, client.c.host, task_run.c.task_group_id,
            task_run.c.dispatched_at, task_run.c.run_at, task_run.c.reported_at,
            task_group.c.timeout_s, task_group.c.run_speed_avg, task_group.c.max_run_s,
            task.c.kill_requested_at, client.c.language,
        )
        .join(task, sa.and_(task.c.id == task_run.c.task_id, task.c.attempt == task_run.c.attempt))
        .join(task_group, task_group.c.id == task_run.c.task_group_id, isouter=True)
        .join(client, client.c.id == task_run.c.client_id, isouter=True)
        .where(_in_flight(task_run.c.status), task.c.client_id == BROADCAST_CLIENT)
        .order_by(task_run.c.task_id, task_run.c.shard_index)
    )
    return [
        OpenShard(
            r.task_id, r.attempt, r.shard_index, TaskStatus(r.status), r.client_id, r.host,
            r.task_group_id, r.dispatched_at, r.run_at, r.reported_at, r.timeout_s,
            r.run_speed_avg or 0, r.max_run_s, r.kill_requested_at, r.language,
        )
        for r in rows
    ]


def log_line(
    conn: Connection, shard: OpenShard, level: int, content: str, now: datetime
) -> None:
    conn.execute(
        run_log.insert().values(
            task_id=shard.task_id,
            task_group_id=shard.group_id,
            log_level=level,
            content=content,
            create_at=now,
            attempt=shard.attempt,
            shard_index=shard.shard,
        )
    )


def running_shards(conn: Connection, task_id: int) -> list[OpenShard]:
    """The shards of the task's current attempt that are Working (a kill's targets)."""
    return [
        s for s in open_shards(conn) if s.task_id == task_id and s.status == TaskStatus.WORKING
    ]
