"""The overlap policy `replace` in SQL: which running runs a slot has come for, and the
guarded mark that asks for each kill once.

Looked at by the supervisor on every sweep, so the read starts from the groups whose policy
is `replace` (an index on task_group.overlap holds only the groups away from `skip`) and
reaches each one's open task by the unique index on task.open_group_id: what it reads grows
with the replace groups, not with the groups or the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.overlap import REPLACE, slot_after, stands_for_passed_slot
from fss.domain.schedule import Schedule
from fss.domain.status import TaskStatus
from fss.store.kills import RunningAttempt, note
from fss.store.recording import planned_slot
from fss.store.supervision import OpenTask
from fss.store.tables import client, task, task_group


@dataclass(frozen=True)
class Replaceable:
    """A Working run of a `replace` group whose next slot has come."""

    open_task: OpenTask
    running: RunningAttempt
    # The slot whose run replaces it.
    slot: datetime
    # When its kill was asked for (None: not yet).
    kill_requested_at: datetime | None


_COLUMNS = (
    task.c.id,
    task.c.attempt,
    task.c.status,
    task.c.client_id,
    task.c.client_host,
    task.c.task_group_id,
    task.c.start_at,
    task.c.dispatched_at,
    task.c.run_at,
    task.c.reported_at,
    task.c.kill_requested_at,
    task.c.create_at,
    task_group.c.timeout_s,
    task_group.c.run_speed_avg,
    task_group.c.max_run_s,
    task_group.c.interval_ms,
    task_group.c.cron,
    task_group.c.time_zone,
    task_group.c.next_at,
    task_group.c.jitter_ms,
    task_group.c.buffered_at,
    client.c.language,
)


def replaceable_runs(conn: Connection, now: datetime) -> list[Replaceable]:
    """The Working runs of `replace` groups whose group's next slot is at or before `now`
    (the slot after the one the run stands for, as the recorder plans it)."""
    rows = conn.execute(
        sa.select(*_COLUMNS)
        .select_from(task_group)
        .join(task, task.c.open_group_id == task_group.c.id)
        .join(client, client.c.id == task.c.client_id, isouter=True)
        .where(
            task_group.c.overlap == REPLACE,
            task.c.status == int(TaskStatus.WORKING),
            # A backfill run (fss group backfill) is due at a past slot on purpose: the
            # regular slot that comes meanwhile runs after it, as after any late finish.
            task.c.kind != "backfill",
        )
        .order_by(task.c.id)
    )
    found: list[Replaceable] = []
    for row in rows:
        buffered = stands_for_passed_slot(row.buffered_at, row.next_at)
        slot = planned_slot(
            row.attempt, row.start_at, row.next_at, row.jitter_ms, buffered=buffered
        )
        # The run of a passed slot counts from when it began (a retry moved its start_at).
        since = row.create_at if buffered else slot
        upcoming = slot_after(Schedule(row.interval_ms, row.cron, row.time_zone), slot, since)
        if upcoming is None or upcoming > now:
            continue
        found.append(Replaceable(_open_task(row), _running(row), upcoming, row.kill_requested_at))
    return found


def _open_task(row: sa.Row) -> OpenTask:  # type: ignore[type-arg]
    return OpenTask(
        id=row.id,
        attempt=row.attempt,
        status=TaskStatus(row.status),
        client_id=row.client_id,
        group_id=row.task_group_id,
        start_at=row.start_at,
        dispatched_at=row.dispatched_at,
        run_at=row.run_at,
        reported_at=row.reported_at,
        timeout_s=row.timeout_s,
        run_speed_avg=row.run_speed_avg,
        max_run_s=row.max_run_s,
        create_at=row.create_at,
    )


def _running(row: sa.Row) -> RunningAttempt:  # type: ignore[type-arg]
    return RunningAttempt(
        row.id, row.attempt, row.task_group_id, row.client_id or "", row.client_host or "",
        row.language,
    )


def request_replace(conn: Connection, run: Replaceable, line: str, now: datetime) -> bool:
    """Mark the run's kill as asked for, once: a guarded UPDATE on the attempt still Working
    with no kill asked yet (a second supervisor, or the next sweep, finds it set and asks
    nothing again). The run log says why. False when another got there first or the run
    ended meanwhile."""
    marked = conn.execute(
        task.update()
        .where(
            task.c.id == run.open_task.id,
            task.c.attempt == run.open_task.attempt,
            task.c.status == int(TaskStatus.WORKING),
            task.c.kill_requested_at.is_(None),
        )
        .values(kill_requested_at=now)
    ).rowcount
    if marked == 1:
        note(conn, run.running, line, now)
    return marked == 1
