"""`fss task kill`'s SQL: which attempt of a task is running and where, and the request mark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.status import TaskStatus
from fss.errors import FssError, TaskNotFound
from fss.store.tables import client, run_log, task

WARNING_LEVEL = 3


class NotRunning(FssError):
    """Only a Working run can be killed."""

    def __init__(self, task_id: int, status: TaskStatus) -> None:
        self.task_id = task_id
        self.status = status
        super().__init__(f"task {task_id} is not running (status {status.label}); nothing to kill")


@dataclass(frozen=True)
class RunningAttempt:
    task_id: int
    attempt: int
    group_id: int
    client_id: str
    client_host: str
    # The client's language: "python" for `fss worker`, the gRPC client's otherwise.
    language: str | None
    # The shard of a broadcast run (each has its own Celery id); None for other runs.
    shard: int | None = None


def running_attempt(conn: Connection, task_id: int) -> RunningAttempt:
    """The attempt of `task_id` now Working, with the client running it; NotRunning else."""
    row = conn.execute(
        sa.select(
            task.c.id,
            task.c.status,
            task.c.attempt,
            task.c.task_group_id,
            task.c.client_id,
            task.c.client_host,
            client.c.language,
        )
        .join(client, client.c.id == task.c.client_id, isouter=True)
        .where(task.c.id == task_id)
    ).first()
    if row is None:
        raise TaskNotFound(task_id)
    status = TaskStatus(row.status)
    if status != TaskStatus.WORKING or not row.client_id:
        raise NotRunning(task_id, status)
    return RunningAttempt(
        row.id, row.attempt, row.task_group_id, row.client_id, row.client_host or "",
        row.language,
    )


def mark_kill_requested(
    conn: Connection, running: RunningAttempt, line: str | None, now: datetime
) -> bool:
    """Set kill_requested_at for this attempt (guarded: a later attempt is not marked, nor
    the task waiting for its retry: the kill, sent first, may have ended the run already, and
    the retry keeps the attempt number until it is dispatched) and write `line` in its run
    log (None: no line). False when the attempt is no longer the task's, or no longer
    running."""
    marked = conn.execute(
        task.update()
        .where(
            task.c.id == running.task_id,
            task.c.attempt == running.attempt,
            task.c.status.in_((int(TaskStatus.SCHEDULER), int(TaskStatus.WORKING))),
        )
        .values(kill_requested_at=now)
    ).rowcount
    if line is not None:
        note(conn, running, line, now)
    return marked == 1


def unmark_kill_requested(conn: Connection, running: RunningAttempt, now: datetime) -> None:
    """Take back the mark made at `now` for a kill that was not done (refused, no answer)."""
    conn.execute(
        task.update()
        .where(
            task.c.id == running.task_id,
            task.c.attempt == running.attempt,
            task.c.kill_requested_at == now,
        )
        .values(kill_requested_at=None)
    )


def note(conn: Connection, running: RunningAttempt, line: str, now: datetime) -> None:
    conn.execute(
        run_log.insert().values(
            task_id=running.task_id,
            task_group_id=running.group_id,
            log_level=WARNING_LEVEL,
            content=line,
            create_at=now,
            attempt=running.attempt,
        )
    )
