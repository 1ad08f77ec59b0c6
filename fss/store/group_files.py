"""Groups kept as code: the keyed groups as GroupEntry, and a GroupPlan applied set-based.

`apply_groups` writes a whole file in one transaction with a handful of statements per kind
of change (ten thousand groups in a few seconds), through the same statements and rules as
`fss group add / edit / enable / disable / delete` (fss.store.groups): a new schedule moves
the waiting task, enabling creates one, disabling withdraws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fss.domain.group_file import GroupEntry
from fss.domain.group_plan import GroupPlan, GroupUpdate, plan_changes
from fss.domain.group_spec import GroupSpec
from fss.domain.schedule import initial_run_at
from fss.store.groups import (
    delete_groups,
    group_columns,
    groups_with_open_task,
    insert_waiting_tasks,
    move_waiting,
    rename_waiting,
    spec_of,
    withdraw_waiting,
)
from fss.store.rows import GroupRow
from fss.store.tables import task_group

# The columns an update from a file may change, each bound as b_<column> in one executemany.
UPDATED_COLUMNS = (
    "caption",
    "job_name",
    "data",
    "interval_ms",
    "cron",
    "time_zone",
    "timeout_s",
    "misfire",
    "start_at",
    "next_at",
    "is_enable",
    "activate_at",
)


def entry_of(group: GroupRow) -> GroupEntry:
    """A keyed group as a file entry; a start_at equal to the creation time is left out."""
    if group.key is None:
        raise ValueError(f"task group {group.id} has no key")
    start_at = None if group.start_at == group.created_at else group.start_at
    return GroupEntry(group.key, replace(spec_of(group), start_at=start_at))


def keyed_groups(conn: Connection, lock: bool = False) -> dict[str, GroupRow]:
    """Every group with a key, by key, oldest first; `lock` holds them until commit."""
    query = sa.select(task_group).where(task_group.c.key.is_not(None)).order_by(task_group.c.id)
    if lock:
        query = query.with_for_update()
    groups = (GroupRow.from_row(row) for row in conn.execute(query))
    return {group.key: group for group in groups if group.key is not None}


def export_entries(conn: Connection, key_prefix: str | None = None) -> list[GroupEntry]:
    """The keyed groups (those whose key starts with `key_prefix`), oldest first."""
    prefix = key_prefix or ""
    return [entry_of(g) for key, g in keyed_groups(conn).items() if key.startswith(prefix)]


def count_unkeyed(conn: Connection) -> int:
    query = sa.select(sa.func.count()).select_from(task_group).where(task_group.c.key.is_(None))
    return int(conn.execute(query).scalar_one())


def plan_groups(conn: Connection, desired: Sequence[GroupEntry], prune: bool) -> GroupPlan:
    """What apply would do now; writes nothing."""
    current = keyed_groups(conn)
    return plan_changes([entry_of(g) for g in current.values()], desired, prune)


def apply_groups(
    engine: Engine, desired: Sequence[GroupEntry], now: datetime, prune: bool = False
) -> GroupPlan:
    """Make the keyed groups match `desired` in one transaction; returns what it changed.

    Groups without a key are never touched; keyed groups missing from `desired` are deleted
    only with `prune`.
    """
    with engine.begin() as conn:
        current = keyed_groups(conn, lock=True)
        plan = plan_changes([entry_of(g) for g in current.values()], desired, prune)
        _create(conn, plan.creates, now)
        _update(conn, plan.updates, current, now)
        delete_groups(conn, [current[entry.key].id for entry in plan.deletes])
    return plan


# --- creates -------------------------------------------------------------------------------


def _create(conn: Connection, entries: Sequence[GroupEntry], now: datetime) -> None:
    if not entries:
        return
    rows = [_new_group_row(entry, now) for entry in entries]
    conn.execute(task_group.insert(), rows)
    ids = {key: group.id for key, group in keyed_groups(conn).items()}
    waiting = [(ids[r["key"]], r["job_name"], r["next_at"]) for r in rows if r["is_enable"]]
    insert_waiting_tasks(conn, waiting, now)


def _new_group_row(entry: GroupEntry, now: datetime) -> dict[str, Any]:
    """The row `fss group add` would write, with the first run already placed."""
    spec = entry.spec
    start_at = spec.start_at or now
    first_run = initial_run_at(spec.schedule, start_at, now) if spec.is_enable else start_at
    return {
        **group_columns(spec),
        "key": entry.key,
        "start_at": start_at,
        "next_at": first_run,
        "activate_at": now,
        "is_enable": spec.is_enable,
        "created_at": now,
    }


# --- updates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    """One group's update: the stored row, the wanted spec and the rules of edit/enable."""

    group: GroupRow
    spec: GroupSpec
    now: datetime
    has_open_task: bool

    @property
    def start_at(self) -> datetime:
        return self.spec.start_at or self.group.created_at

    @property
    def schedule_moved(self) -> bool:
        return (self.spec.schedule, self.start_at) != (self.group.schedule, self.group.start_at)

    @property
    def enabling(self) -> bool:
        return self.spec.is_enable and not self.group.is_enable

    @property
    def disabling(self) -> bool:
        return self.group.is_enable and not self.spec.is_enable

    @property
    def creates_waiting_task(self) -> bool:
        return self.enabling and not self.has_open_task

    def next_at(self) -> datetime:
        """`edit` moves next_at with a new schedule; `enable` then places the waiting task."""
        edited = self.group.next_at
        if self.schedule_moved:
            edited = initial_run_at(self.spec.schedule, self.start_at, self.now)
        if self.creates_waiting_task:
            return initial_run_at(self.spec.schedule, edited, self.now)
        return edited

    def row(self) -> dict[str, Any]:
        switched = self.enabling or self.disabling
        values = {
            **group_columns(self.spec),
            "start_at": self.start_at,
            "next_at": self.next_at(),
            "is_enable": self.spec.is_enable,
            "activate_at": self.now if switched else self.group.activate_at,
        }
        return {"b_id": self.group.id, **{f"b_{name}": values[name] for name in UPDATED_COLUMNS}}


def _update(
    conn: Connection, updates: Sequence[GroupUpdate], current: dict[str, GroupRow], now: datetime
) -> None:
    if not updates:
        return
    by_id = {group.id: group for group in current.values()}
    enabling = [current[u.key].id for u in updates if u.after.spec.is_enable]
    # Only a group being enabled needs to know: enable creates a waiting task unless one is open.
    open_tasks = groups_with_open_task(conn, [i for i in enabling if not by_id[i].is_enable])
    edits = [
        _Edit(current[u.key], u.after.spec, now, current[u.key].id in open_tasks) for u in updates
    ]
    conn.execute(_update_statement(), [edit.row() for edit in edits])
    kept = [edit for edit in edits if not edit.disabling]
    withdraw_waiting(conn, [edit.group.id for edit in edits if edit.disabling])
    rename_waiting(
        conn,
        [(e.group.id, e.spec.job_name) for e in kept if e.spec.job_name != e.group.job_name],
    )
    move_waiting(conn, [(e.group.id, e.next_at()) for e in kept if e.schedule_moved])
    insert_waiting_tasks(
        conn,
        [(e.group.id, e.spec.job_name, e.next_at()) for e in edits if e.creates_waiting_task],
        now,
    )


def _update_statement() -> sa.Update:
    columns = task_group.c
    bound = {name: sa.bindparam(f"b_{name}", type_=columns[name].type) for name in UPDATED_COLUMNS}
    return task_group.update().where(columns.id == sa.bindparam("b_id")).values(bound)
