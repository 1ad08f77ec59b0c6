"""`fss group backfill`: the slots of a past window, run one at a time between regular runs.

A backfill is a row (fss.store.tables.backfill) whose `next_at` is the slot it runs next.
The group keeps its one unfinished task: when a regular run of the group ends and its
backfill has a next slot, the group's next task is that slot (kind 'backfill', start_at =
the slot, so it is due at once and ctx.start_at is the slot), while task_group.next_at keeps
the regular slot; when the backfill run ends (any outcome, after its retries), the backfill
moves to its next slot (a guarded UPDATE on the slot that ran) and the group's next task is
the regular one again (fss.store.recording). Regular and backfill runs alternate.

Every write here locks the group row first, as the recorder does before it reads a group's
backfill, so a backfill is created, cancelled and advanced one at a time per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fss.domain.backfill import (
    MAX_BACKFILL_SLOTS,
    check_window,
    count_slots,
    next_slot,
)
from fss.domain.jitter import jittered_start
from fss.domain.schedule import Schedule
from fss.domain.status import TaskStatus
from fss.errors import GroupNotFound, InvalidField
from fss.store import audit
from fss.store.audit import Actor
from fss.store.tables import backfill, inserted_id, task, task_group

KIND = "backfill"
# How far ahead the group's waiting regular task must be for a new backfill to take its
# place at once (the scheduler's default claim look-ahead): one due sooner runs first.
DEFAULT_LOOKAHEAD = timedelta(seconds=2)


@dataclass(frozen=True)
class BackfillRow:
    id: int
    group_id: int
    from_at: datetime
    to_at: datetime
    next_at: datetime | None
    slots_done: int
    slots_total: int
    created_at: datetime
    done_at: datetime | None
    # True when creating it made the group's waiting task its first slot (it runs now).
    started: bool = False

    def to_json(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {
            "id": self.id,
            "group_id": self.group_id,
            "from": iso(self.from_at),
            "to": iso(self.to_at),
            "next_at": iso(self.next_at),
            "slots_done": self.slots_done,
            "slots_total": self.slots_total,
            "created_at": iso(self.created_at),
            "done_at": iso(self.done_at),
        }

    def describe(self) -> str:
        """One line: the window and how far it got."""
        state = (
            f"next slot {self.next_at.isoformat()}" if self.next_at is not None else "done"
        )
        return (
            f"{self.from_at.isoformat()} .. {self.to_at.isoformat()}: "
            f"{self.slots_done}/{self.slots_total} slots done, {state}"
        )


def unfinished_next_at(group_id: Any) -> Any:
    """The slot the group's unfinished backfill runs next, NULL without one: a scalar
    subquery the recorder adds to its locked read of the groups (no statement more)."""
    return (
        sa.select(backfill.c.next_at)
        .where(backfill.c.task_group_id == group_id, backfill.c.done_at.is_(None))
        .order_by(backfill.c.id)
        .limit(1)
        .scalar_subquery()
    )


def _group(conn: Connection, group_id: int) -> Any:
    """The group row, locked: every backfill write of a group goes one at a time."""
    row = conn.execute(
        sa.select(
            task_group.c.id,
            task_group.c.start_at,
            task_group.c.next_at,
            task_group.c.interval_ms,
            task_group.c.cron,
            task_group.c.time_zone,
            task_group.c.jitter_ms,
            task_group.c.key,
            task_group.c.caption,
        )
        .where(task_group.c.id == group_id)
        .with_for_update()
    ).first()
    if row is None:
        raise GroupNotFound(group_id)
    return row


def _schedule(group: Any) -> Schedule:
    return Schedule(group.interval_ms, group.cron, group.time_zone)


def _unfinished(conn: Connection, group_id: int) -> Any:
    return conn.execute(
        sa.select(backfill)
        .where(backfill.c.task_group_id == group_id, backfill.c.done_at.is_(None))
        .order_by(backfill.c.id)
        .limit(1)
    ).first()


def _open_task(conn: Connection, group_id: int) -> Any:
    return conn.execute(
        sa.select(task.c.id, task.c.kind, task.c.status).where(task.c.open_group_id == group_id)
    ).first()


def create_backfill(
    engine: Engine,
    group_id: int,
    from_at: datetime,
    to_at: datetime,
    now: datetime,
    lookahead: timedelta = DEFAULT_LOOKAHEAD,
    actor: Actor | None = None,
) -> BackfillRow:
    """Store a backfill of the group's slots in [from_at, to_at] (refused with InvalidField
    naming the field: a group whose job sets its next time, from after to, a window in the
    future, empty or beyond 10,000 slots, a group with an unfinished backfill). When the
    group's open task is a regular one waiting for later than now + lookahead, nobody's
    claim on it, it becomes the first slot at once (same task id): a daily group does not
    wait a day for its backfill to begin. Otherwise the backfill begins when that run ends."""
    with engine.begin() as conn:
        group = _group(conn, group_id)
        window = check_window(_schedule(group), group.start_at, from_at, to_at, now)
        _refuse_second(conn, group_id)
        backfill_id = inserted_id(
            conn.execute(
                backfill.insert().values(
                    task_group_id=group_id,
                    from_at=from_at,
                    to_at=to_at,
                    next_at=window.first,
                    slots_done=0,
                    created_at=now,
                )
            )
        )
        started = _start_now(conn, group_id, window.first, now, lookahead)
        audit.record(conn, actor, "group.backfill", now, group_id=group_id,
                     subject=audit.group_label(group.key, group.caption),
                     detail={"backfill_id": backfill_id, "from": from_at, "to": to_at,
                             "slots": window.total, "started": started})
        return BackfillRow(
            backfill_id, group_id, from_at, to_at, window.first, 0, window.total, now, None,
            started=started,
        )


def _refuse_second(conn: Connection, group_id: int) -> None:
    current = _unfinished(conn, group_id)
    if current is not None:
        raise InvalidField(
            "backfill",
            f"group {group_id} has an unfinished backfill ({current.from_at.isoformat()} .. "
            f"{current.to_at.isoformat()}); cancel it first: fss group backfill {group_id} "
            "--cancel",
        )
    open_task = _open_task(conn, group_id)
    if open_task is not None and open_task.kind == KIND:
        # Its slot belongs to the backfill cancelled before: a new one could take it for
        # its own and count it.
        raise InvalidField(
            "backfill",
            f"group {group_id}'s backfill run (task {open_task.id}) has not ended yet; "
            "try again when it has",
        )


def _start_now(
    conn: Connection, group_id: int, slot: datetime, now: datetime, lookahead: timedelta
) -> bool:
    """The group's waiting regular task becomes the first slot (guarded: waiting, not a
    retry, not due within the look-ahead, no live claim); task_group.next_at keeps the
    regular slot, which the group's next task takes when the backfill run ends."""
    return (
        conn.execute(
            task.update()
            .where(
                task.c.open_group_id == group_id,
                task.c.status == TaskStatus.NONE,
                task.c.kind == "scheduled",
                task.c.finish_at.is_(None),
                task.c.start_at > now + lookahead,
                sa.or_(task.c.claimed_until.is_(None), task.c.claimed_until < now),
            )
            .values(start_at=slot, kind=KIND, claimed_by=None, claimed_until=None)
        ).rowcount
        == 1
    )


def cancel_backfill(
    engine: Engine, group_id: int, now: datetime, actor: Actor | None = None
) -> BackfillRow:
    """End the group's unfinished backfill; a slot waiting to run goes back to being the
    group's regular task (a run going on ends as it would). InvalidField when there is none."""
    with engine.begin() as conn:
        group = _group(conn, group_id)
        current = _unfinished(conn, group_id)
        if current is None:
            raise InvalidField("backfill", f"group {group_id} has no unfinished backfill")
        conn.execute(
            backfill.update()
            .where(backfill.c.id == current.id, backfill.c.done_at.is_(None))
            .values(next_at=None, done_at=now)
        )
        conn.execute(
            task.update()
            .where(
                task.c.open_group_id == group_id,
                task.c.status == TaskStatus.NONE,
                task.c.kind == KIND,
                task.c.finish_at.is_(None),  # a retry waiting keeps its attempt
            )
            .values(
                start_at=jittered_start(group_id, group.next_at, group.jitter_ms),
                kind="scheduled",
                claimed_by=None,
                claimed_until=None,
            )
        )
        audit.record(conn, actor, "group.backfill_cancel", now, group_id=group_id,
                     subject=audit.group_label(group.key, group.caption),
                     detail={"backfill_id": int(current.id), "from": current.from_at,
                             "to": current.to_at, "slots_done": current.slots_done})
        return _row(current, _schedule(group), group.start_at, next_at=None, done_at=now)


def advance(conn: Connection, ran: dict[int, datetime], now: datetime) -> None:
    """After backfill runs ended: each group's backfill moves from the slot that ran to its
    next one, or ends after its last. The groups are locked by the caller (the recorder,
    the supervisor); the UPDATE is guarded on the slot that ran, so it moves once."""
    for group_id in sorted(ran):
        slot = ran[group_id]
        row = conn.execute(
            sa.select(
                backfill.c.id,
                backfill.c.to_at,
                task_group.c.start_at,
                task_group.c.interval_ms,
                task_group.c.cron,
                task_group.c.time_zone,
            )
            .join(task_group, task_group.c.id == backfill.c.task_group_id)
            .where(
                backfill.c.task_group_id == group_id,
                backfill.c.done_at.is_(None),
                backfill.c.next_at == slot,
            )
        ).first()
        if row is None:
            continue
        following = _next_slot_or_end(row, slot)
        conn.execute(
            backfill.update()
            .where(backfill.c.id == row.id, backfill.c.next_at == slot)
            .values(
                next_at=following,
                slots_done=backfill.c.slots_done + 1,
                done_at=now if following is None else None,
            )
        )


def _next_slot_or_end(row: Any, slot: datetime) -> datetime | None:
    try:
        return next_slot(_schedule(row), row.start_at, slot, row.to_at)
    except InvalidField:
        return None  # a schedule that can no longer be evaluated: the backfill ends


def current_backfill(conn: Connection, group_id: int) -> BackfillRow | None:
    """The group's unfinished backfill with its progress, None without one."""
    current = _unfinished(conn, group_id)
    if current is None:
        return None
    group = conn.execute(
        sa.select(
            task_group.c.start_at,
            task_group.c.interval_ms,
            task_group.c.cron,
            task_group.c.time_zone,
        ).where(task_group.c.id == group_id)
    ).first()
    if group is None:
        return None
    return _row(current, _schedule(group), group.start_at, current.next_at, current.done_at)


def _row(
    current: Any,
    schedule: Schedule,
    anchor: datetime,
    next_at: datetime | None,
    done_at: datetime | None,
) -> BackfillRow:
    remaining = 0
    if current.next_at is not None:
        try:
            remaining = count_slots(
                schedule, anchor, current.next_at, current.to_at, MAX_BACKFILL_SLOTS
            )
        except InvalidField:
            remaining = 1
    return BackfillRow(
        id=current.id,
        group_id=current.task_group_id,
        from_at=current.from_at,
        to_at=current.to_at,
        next_at=next_at,
        slots_done=current.slots_done,
        slots_total=current.slots_done + remaining,
        created_at=current.created_at,
        done_at=done_at,
    )
