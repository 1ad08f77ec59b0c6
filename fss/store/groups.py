"""Task group administration: every change and the group's pending task in one transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fss.domain.group_spec import GroupSpec, validate_data
from fss.domain.schedule import initial_run_at
from fss.domain.status import TaskStatus
from fss.errors import GroupBusy, GroupNotFound, InvalidField
from fss.store.rows import GroupRow
from fss.store.tables import insert_waiting_task, inserted_id, run_log, task, task_group


def add_group(engine: Engine, spec: GroupSpec, now: datetime) -> int:
    spec = spec.validated()
    start_at = spec.start_at or now
    with engine.begin() as conn:
        group_id = inserted_id(
            conn.execute(
                task_group.insert().values(
                    caption=spec.caption,
                    job_name=spec.job_name,
                    data=validate_data(spec.data),
                    start_at=start_at,
                    next_at=start_at,
                    activate_at=now,
                    is_enable=spec.is_enable,
                    interval_ms=spec.interval_ms,
                    cron=spec.cron,
                    time_zone=spec.time_zone,
                    created_at=now,
                    timeout_s=spec.timeout_s,
                    misfire=spec.misfire,
                )
            )
        )
        if spec.is_enable:
            _schedule_pending(conn, get_group(conn, group_id), now)
    return group_id


def get_group(conn: Connection, group_id: int) -> GroupRow:
    row = conn.execute(sa.select(task_group).where(task_group.c.id == group_id)).first()
    if row is None:
        raise GroupNotFound(group_id)
    return GroupRow.from_row(row)


def list_groups(conn: Connection) -> list[GroupRow]:
    rows = conn.execute(sa.select(task_group).order_by(task_group.c.id))
    return [GroupRow.from_row(r) for r in rows]


def spec_of(group: GroupRow) -> GroupSpec:
    return GroupSpec(
        caption=group.caption,
        job_name=group.job_name,
        interval_ms=group.interval_ms,
        cron=group.cron,
        job_sets_next=not group.interval_ms and not group.cron,
        time_zone=group.time_zone,
        data=group.data,
        start_at=group.start_at,
        is_enable=group.is_enable,
        timeout_s=group.timeout_s,
        misfire=group.misfire,
    )


def edit_group(engine: Engine, group_id: int, changes: dict[str, Any], now: datetime) -> GroupRow:
    """Apply `changes` (GroupSpec field names); a schedule change reschedules the pending task."""
    with engine.begin() as conn:
        current = _locked_group(conn, group_id)
        merged = replace(spec_of(current), **_schedule_exclusive(changes)).validated()
        conn.execute(
            task_group.update()
            .where(task_group.c.id == group_id)
            .values(
                caption=merged.caption,
                job_name=merged.job_name,
                data=validate_data(merged.data),
                interval_ms=merged.interval_ms,
                cron=merged.cron,
                time_zone=merged.time_zone,
                start_at=merged.start_at or current.start_at,
                timeout_s=merged.timeout_s,
                misfire=merged.misfire,
            )
        )
        conn.execute(
            task.update()
            .where(task.c.task_group_id == group_id, task.c.status == TaskStatus.NONE)
            .values(job_name=merged.job_name)
        )
        if (merged.schedule, merged.start_at) != (current.schedule, current.start_at):
            _reschedule_pending(conn, group_id, now)
        return get_group(conn, group_id)


def _schedule_exclusive(changes: dict[str, Any]) -> dict[str, Any]:
    """Setting one schedule kind clears the others; setting two at once is an error."""
    given = [
        changes.get("interval_ms") is not None,
        bool(changes.get("cron")),
        bool(changes.get("job_sets_next")),
    ]
    if sum(given) > 1:
        raise InvalidField("schedule", "give at most one of interval_ms, cron or job_sets_next")
    result = dict(changes)
    if changes.get("interval_ms") is not None:
        result.update(cron=None, job_sets_next=False)
    elif changes.get("cron"):
        result.update(interval_ms=None, job_sets_next=False)
    elif changes.get("job_sets_next"):
        result.update(interval_ms=None, cron=None)
    return result


def set_enabled(engine: Engine, group_id: int, enabled: bool, now: datetime) -> GroupRow:
    with engine.begin() as conn:
        group = _locked_group(conn, group_id)
        conn.execute(
            task_group.update()
            .where(task_group.c.id == group_id)
            .values(is_enable=enabled, activate_at=now)
        )
        if enabled:
            if _open_task(conn, group_id) is None:
                _schedule_pending(conn, group, now)
        else:
            # A dispatched or running task finishes; only the waiting one is withdrawn.
            withdrawn = conn.execute(
                task.delete().where(
                    task.c.task_group_id == group_id, task.c.status == TaskStatus.NONE
                )
            ).rowcount
            if withdrawn:
                conn.execute(
                    task_group.update().where(task_group.c.id == group_id).values(task_id=None)
                )
        return get_group(conn, group_id)


def delete_group(engine: Engine, group_id: int) -> None:
    with engine.begin() as conn:
        _locked_group(conn, group_id)
        conn.execute(run_log.delete().where(run_log.c.task_group_id == group_id))
        conn.execute(task.delete().where(task.c.task_group_id == group_id))
        conn.execute(task_group.delete().where(task_group.c.id == group_id))


def run_now(engine: Engine, group_id: int, now: datetime) -> int:
    """Make the group's waiting task due now (creating one if needed); returns its id."""
    with engine.begin() as conn:
        group = _locked_group(conn, group_id)
        open_task = _open_task(conn, group_id)
        if open_task is None:
            return _insert_pending(conn, group, now, now)
        task_id, status = open_task
        if status != TaskStatus.NONE:
            raise GroupBusy(group_id, task_id)
        conn.execute(
            task.update()
            .where(task.c.id == task_id, task.c.status == TaskStatus.NONE)
            .values(start_at=now, claimed_by=None, claimed_until=None)
        )
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(next_at=now))
        return task_id


def _locked_group(conn: Connection, group_id: int) -> GroupRow:
    row = conn.execute(
        sa.select(task_group).where(task_group.c.id == group_id).with_for_update()
    ).first()
    if row is None:
        raise GroupNotFound(group_id)
    return GroupRow.from_row(row)


def _open_task(conn: Connection, group_id: int) -> tuple[int, TaskStatus] | None:
    row = conn.execute(
        sa.select(task.c.id, task.c.status).where(task.c.open_group_id == group_id)
    ).first()
    return (int(row.id), TaskStatus(row.status)) if row else None


def _schedule_pending(conn: Connection, group: GroupRow, now: datetime) -> int:
    return _insert_pending(conn, group, initial_run_at(group.schedule, group.next_at, now), now)


def _reschedule_pending(conn: Connection, group_id: int, now: datetime) -> None:
    group = get_group(conn, group_id)
    run_at = initial_run_at(group.schedule, group.start_at, now)
    conn.execute(
        task.update()
        .where(task.c.task_group_id == group_id, task.c.status == TaskStatus.NONE)
        .values(start_at=run_at, claimed_by=None, claimed_until=None)
    )
    conn.execute(task_group.update().where(task_group.c.id == group_id).values(next_at=run_at))


def _insert_pending(conn: Connection, group: GroupRow, start_at: datetime, now: datetime) -> int:
    task_id = insert_waiting_task(conn, group.id, group.job_name, start_at, now)
    conn.execute(
        task_group.update()
        .where(task_group.c.id == group.id)
        .values(task_id=task_id, next_at=start_at)
    )
    return task_id
