"""Retries in SQL: a failed attempt with attempts left goes back to waiting.

A retry is the next attempt of the same task: one guarded UPDATE moves the task from
Scheduler/Working back to None with `start_at = now + delay`, keeps its attempt number (the
dispatcher's next dispatch makes it attempt + 1, under a fence of its own) and leaves the
group alone: its stats, data and next task wait for the last attempt. The ended attempt is
kept in `task_run` (its client, times, error), so a task shows every attempt; the task row
holds the latest. A waiting task whose `finish_at` is set is such a retry: its previous
attempt ended, so the dispatcher may arm the next one over it (fss.fence `replacing`).

Everything here runs on the failure path only: a run that succeeds, or a group without
retries whose run fails, costs no statement more than before (one read on a failure).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.retry import RetryPolicy, failure_summary
from fss.domain.status import TaskStatus
from fss.store.tables import run_log, task, task_group, task_run

MAX_ERROR_CHARS = 8000
ERROR_LEVEL = 4
WARNING_LEVEL = 3
IN_FLIGHT = (int(TaskStatus.SCHEDULER), int(TaskStatus.WORKING))


@dataclass(frozen=True)
class Failure:
    """One attempt that ended failed, as its reporter saw it."""

    task_id: int
    attempt: int
    error: str | None
    # When it ended (the worker's time for a finished event, as task.finish_at keeps it).
    ended_at: datetime
    run_speed_ms: int
    # False: the job refused retries for this failure (fss.Fail(retry=False)).
    retry: bool = True
    # The client the attempt was sent to, guarded when given (events name theirs).
    client_id: str | None = None
    # The supervisor's hung check: only if nothing was reported since it looked.
    unchanged_since: datetime | None = None


@dataclass
class RetryOutcome:
    # (task id, attempt) of the failures moved back to waiting.
    retried: set[tuple[int, int]] = field(default_factory=set)
    # Lines for the failures that end their task although the group retries (no attempts
    # left, or refused by the job): written by the caller for the finishes that win.
    final_notes: dict[tuple[int, int], str] = field(default_factory=dict)


_POLICY_COLUMNS = (
    task.c.id,
    task.c.attempt,
    task.c.status,
    task.c.client_id,
    task.c.task_group_id,
    task.c.progress,
    task.c.dispatched_at,
    task.c.run_at,
    task_group.c.retries,
    task_group.c.retry_delay_ms,
    task_group.c.retry_backoff,
    task_group.c.retry_delay_max_ms,
    task_group.c.retry_jitter,
    task.c.shard_total,
    # The earlier attempts that ran (kept in task_run; a broadcast attempt has a row per
    # shard). Attempt numbers count more: an order sent again before it started (a row with
    # status None) or taken back when its send failed (no row) ran nothing and uses no retry.
    sa.select(sa.func.count(sa.distinct(task_run.c.attempt)))
    .where(
        task_run.c.task_id == task.c.id,
        task_run.c.attempt < task.c.attempt,
        task_run.c.status != int(TaskStatus.NONE),
    )
    .scalar_subquery()
    .label("ran_before"),
)


# A run the overlap policy `replace` stopped (its kill asked for, in a `replace` group) is
# not retried: the next slot's run replaces it (fss.store.overlap).
_NOT_REPLACED = sa.or_(task.c.kill_requested_at.is_(None), task_group.c.overlap != "replace")


def _policy_rows(conn: Connection, task_ids: Iterable[int]) -> dict[int, Any]:
    """The failed tasks whose group retries, with what the retry needs of them."""
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(*_POLICY_COLUMNS)
        .join(task_group, task_group.c.id == task.c.task_group_id)
        .where(task.c.id.in_(ids), task_group.c.retries > 0, _NOT_REPLACED)
    )
    return {r.id: r for r in rows}


def retrying_tasks(conn: Connection, task_ids: Iterable[int]) -> set[int]:
    """Those of these tasks whose group retries (one indexed read, no lock)."""
    ids = sorted(set(task_ids))
    if not ids:
        return set()
    return set(
        conn.execute(
            sa.select(task.c.id)
            .join(task_group, task_group.c.id == task.c.task_group_id)
            .where(task.c.id.in_(ids), task_group.c.retries > 0, _NOT_REPLACED)
        ).scalars()
    )


def policy_of(row: Any) -> RetryPolicy:
    return RetryPolicy(
        retries=int(row.retries),
        delay_ms=int(row.retry_delay_ms),
        backoff=float(row.retry_backoff),
        max_delay_ms=None if row.retry_delay_max_ms is None else int(row.retry_delay_max_ms),
        jitter=bool(row.retry_jitter),
    )


def requeue_failures(
    conn: Connection,
    failures: Sequence[Failure],
    now: datetime,
    uniform: Callable[[], float] = random.random,
) -> RetryOutcome:
    """Move each failure with attempts left (and retries allowed) back to waiting.

    The caller holds the task rows locked in id order (or is the only writer), so what is
    read here is what the guarded UPDATEs find; a replay finds its attempt gone from
    Scheduler/Working and changes nothing."""
    outcome = RetryOutcome()
    rows = _policy_rows(conn, (f.task_id for f in failures))
    archive: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for failure in sorted(failures, key=lambda f: f.task_id):
        row = rows.get(failure.task_id)
        if row is None or not _current(row, failure):
            continue
        policy = policy_of(row)
        summary = failure_summary(failure.error)
        key = (failure.task_id, failure.attempt)
        if not failure.retry:
            outcome.final_notes[key] = (
                f"attempt {failure.attempt} failed: {summary}; not retried (the job refused "
                "retries for this failure)"
            )
            continue
        # Which try this was (attempt numbers also count orders that never ran).
        ran = int(row.ran_before or 0) + 1
        if not policy.allows(ran):
            outcome.final_notes[key] = (
                f"attempt {failure.attempt} failed: {summary}; no retries left "
                f"({policy.retries} of {policy.retries} used)"
            )
            continue
        delay_ms = policy.delay_ms_after(ran, uniform)
        if not _requeue(conn, failure, now + timedelta(milliseconds=delay_ms), now):
            continue
        outcome.retried.add(key)
        if row.shard_total is None:  # a broadcast attempt's shards are in task_run already
            archive.append(_archived(row, failure))
        lines.append(
            {
                "task_id": failure.task_id,
                "task_group_id": row.task_group_id,
                "log_level": WARNING_LEVEL,
                "content": (
                    f"attempt {failure.attempt} failed: {summary}; retry {ran} "
                    f"of {policy.retries} in {delay_ms / 1000:g} s"
                ),
                "create_at": now,
                "attempt": failure.attempt,
            }
        )
    if archive:
        conn.execute(task_run.insert(), archive)
    if lines:
        conn.execute(run_log.insert(), lines)
    return outcome


def write_notes(
    conn: Connection, notes: dict[tuple[int, int], str], groups: dict[int, int], now: datetime
) -> None:
    """The final-failure lines of RetryOutcome for the finishes that won ({task id: group})."""
    rows = [
        {
            "task_id": task_id,
            "task_group_id": groups[task_id],
            "log_level": ERROR_LEVEL,
            "content": text,
            "create_at": now,
            "attempt": attempt,
        }
        for (task_id, attempt), text in sorted(notes.items())
        if task_id in groups
    ]
    if rows:
        conn.execute(run_log.insert(), rows)


def _current(row: Any, failure: Failure) -> bool:
    """The failure is of the task's current attempt, still in flight (its UPDATE can win)."""
    if row.attempt != failure.attempt or row.status not in IN_FLIGHT:
        return False
    return failure.client_id is None or row.client_id == failure.client_id


def _requeue(conn: Connection, failure: Failure, start_at: datetime, now: datetime) -> bool:
    conditions = [
        task.c.id == failure.task_id,
        task.c.attempt == failure.attempt,
        sa.or_(*(task.c.status == s for s in IN_FLIGHT)),
    ]
    if failure.client_id is not None:
        conditions.append(task.c.client_id == failure.client_id)
    if failure.unchanged_since is not None:
        conditions.append(task.c.reported_at == failure.unchanged_since)
    moved = conn.execute(
        task.update()
        .where(*conditions)
        .values(
            status=TaskStatus.NONE,
            start_at=start_at,
            client_id=None,
            client_host=None,
            client_ip=None,
            claimed_by=None,
            claimed_until=None,
            dispatched_at=None,
            run_at=None,
            progress=0,
            # The ended attempt's end and error stay on the row while it waits: they say
            # why it is retried, and finish_at marks the wait as a retry for the dispatcher.
            finish_at=failure.ended_at,
            error=_error(failure),
            run_speed=failure.run_speed_ms,
            reported_at=now,
            no_client_warned=False,
            # A kill was asked for the attempt that ended: the retry is not killed (its
            # shards were failed a grace after they started, 'did not end ... of its kill').
            kill_requested_at=None,
        )
    ).rowcount
    return moved == 1


def _error(failure: Failure) -> str | None:
    return failure.error[-MAX_ERROR_CHARS:] if failure.error else None


def _archived(row: Any, failure: Failure) -> dict[str, Any]:
    return {
        "task_id": failure.task_id,
        "attempt": failure.attempt,
        "shard_index": 0,
        "task_group_id": row.task_group_id,
        "client_id": row.client_id,
        "status": int(TaskStatus.FAIL),
        "progress": row.progress,
        "dispatched_at": row.dispatched_at,
        "run_at": row.run_at,
        "finish_at": failure.ended_at,
        "error": _error(failure),
    }


def locked_dispatch(conn: Connection, task_id: int, attempt: int) -> Any:
    """The task's current dispatch, its row locked (read before a take-back clears it)."""
    return conn.execute(
        sa.select(
            task.c.id, task.c.attempt, task.c.task_group_id, task.c.client_id, task.c.progress,
            task.c.dispatched_at, task.c.run_at,
        )
        .where(task.c.id == task_id, task.c.attempt == attempt)
        .with_for_update()
    ).first()


def archive_resent(conn: Connection, row: Any, reason: str, now: datetime) -> None:
    """An attempt taken back before it started (sent again), `row` as locked_dispatch read
    it: kept in task_run, so the attempts list has no gap. Called once the guarded UPDATE
    that took it back won, in the same transaction."""
    if row is None or row.attempt < 1:
        return
    conn.execute(
        task_run.insert().values(
            task_id=row.id,
            attempt=row.attempt,
            shard_index=0,
            task_group_id=row.task_group_id,
            client_id=row.client_id,
            status=int(TaskStatus.NONE),
            progress=row.progress,
            dispatched_at=row.dispatched_at,
            run_at=row.run_at,
            finish_at=now,
            error=reason[-MAX_ERROR_CHARS:],
        )
    )


# How an attempt taken back before it started (and sent again) shows in the attempts list.
NOT_STARTED = "Not started"


@dataclass(frozen=True)
class AttemptRow:
    """One attempt of a task (one shard of a broadcast attempt): its own client and times."""

    attempt: int
    shard_index: int
    status: TaskStatus
    client_id: str | None
    progress: int
    dispatched_at: datetime | None
    run_at: datetime | None
    finish_at: datetime | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "shard_index": self.shard_index,
            "status": NOT_STARTED if self.status == TaskStatus.NONE else self.status.label,
            "client_id": self.client_id,
            "progress": self.progress,
            "dispatched_at": _iso(self.dispatched_at),
            "run_at": _iso(self.run_at),
            "finish_at": _iso(self.finish_at),
            "error": self.error,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


_ATTEMPT_COLUMNS = ("client_id", "progress", "dispatched_at", "run_at", "finish_at", "error")


def task_attempts(conn: Connection, task_id: int) -> list[AttemptRow]:
    """Every attempt of the task, oldest first: the ended ones kept in task_run, then the
    task row's own current attempt (dispatched, running or ended; not when it is waiting,
    which its archived attempt already shows)."""
    archived = [
        AttemptRow(r.attempt, r.shard_index, TaskStatus(r.status),
                   *(getattr(r, c) for c in _ATTEMPT_COLUMNS))
        for r in conn.execute(
            sa.select(task_run)
            .where(task_run.c.task_id == task_id)
            .order_by(task_run.c.attempt, task_run.c.shard_index)
        )
    ]
    current = conn.execute(
        sa.select(
            task.c.attempt, task.c.status, task.c.shard_total,
            *(task.c[c] for c in _ATTEMPT_COLUMNS),
        )
        .where(task.c.id == task_id)
    ).first()
    known = {(a.attempt, a.shard_index) for a in archived}
    if (
        current is not None
        and current.shard_total is None  # a broadcast run's shards are all in task_run
        and current.attempt > 0
        and current.status != TaskStatus.NONE
        and (current.attempt, 0) not in known
    ):
        archived.append(
            AttemptRow(current.attempt, 0, TaskStatus(current.status),
                       *(getattr(current, c) for c in _ATTEMPT_COLUMNS))
        )
    return archived


def archive_final(conn: Connection, task_ids: Sequence[int]) -> None:
    """The last attempt of tasks that ran more than one, copied into task_run once their
    task ended (the task row holds it too): task_run then has every ended attempt of a
    retried task. One statement, and only for such tasks: a task that ended at its first
    attempt writes nothing here."""
    if not task_ids:
        return
    columns = ["task_id", "attempt", "shard_index", "task_group_id", "client_id", "status",
               "progress", "dispatched_at", "run_at", "finish_at", "error"]
    kept = task_run.alias("kept")
    conn.execute(
        task_run.insert().from_select(
            columns,
            sa.select(
                task.c.id, task.c.attempt, sa.literal(0), task.c.task_group_id, task.c.client_id,
                task.c.status, task.c.progress, task.c.dispatched_at, task.c.run_at,
                task.c.finish_at, task.c.error,
            ).where(
                task.c.id.in_(sorted(set(task_ids))),
                task.c.attempt > 1,
                task.c.shard_total.is_(None),  # a broadcast run's shards are in task_run

                ~sa.exists().where(
                    kept.c.task_id == task.c.id,
                    kept.c.attempt == task.c.attempt,
                    kept.c.shard_index == 0,
                ),
            ),
        )
    )
