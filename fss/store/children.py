"""on_success: when a run of a group ends Success, the groups it names run now (child groups).

Called by the recorder in the transaction whose guarded UPDATE moved the parent's task to
Success, after that UPDATE won: a replayed or stale `finished` wins nothing and starts
nothing, so a child is started at most once per parent success. Starting a child is a guarded
UPDATE of its waiting task (still waiting, not a retry wait, not due already): start_at = now,
kind = 'child', unclaimed, so the next claim poll of any scheduler takes it. A child that is
disabled, running or gone is left alone, and a run log line on the parent's task says why.
The statements are set-based: a batch of finishes costs one lookup of the named groups, one
locking read of their open tasks, one UPDATE and one INSERT of run log lines, whatever its
size; a batch whose groups name no children costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.status import TaskStatus
from fss.store.tables import run_log, task, task_group

INFO_LEVEL = 2
WARNING_LEVEL = 3
# Group keys or ids per IN list: well inside every backend's bound-parameter limit.
CHUNK = 500


@dataclass(frozen=True)
class Parent:
    """A run that ended Success in this transaction, and its group's on_success text."""

    task_id: int
    group_id: int
    on_success: str


@dataclass(frozen=True)
class _Child:
    group_id: int
    is_enable: bool
    task_id: int | None = None
    status: int | None = None
    start_at: datetime | None = None
    retrying: bool = False


def parents_of(won: Iterable[tuple[Any, Any]], groups: dict[int, Any]) -> list[Parent]:
    """The recorder's winners (event, run row) that succeeded and whose group (locked row,
    with its on_success column) names children."""
    parents = []
    for event, row in won:
        group = groups.get(row.task_group_id)
        if event.success and group is not None and group.on_success:
            parents.append(Parent(int(row.id), int(row.task_group_id), group.on_success))
    return parents


def start_children(conn: Connection, parents: Sequence[Parent], now: datetime) -> int:
    """Run the children of these successful runs now; returns how many were started."""
    if not parents:
        return 0
    refs = {parent: _refs(parent.on_success) for parent in parents}
    named, enabled = _groups_named(conn, {ref for listed in refs.values() for ref in listed})
    resolved = {
        parent: [(ref, named.get(ref)) for ref in listed] for parent, listed in refs.items()
    }
    children = _children(conn, enabled)
    startable = sorted(c.task_id for c in children.values() if _startable(c, now) and c.task_id)
    started = _start(conn, startable, now)
    lines: list[dict[str, Any]] = []
    for parent, pairs in resolved.items():
        for ref, gid in pairs:
            child = children.get(gid) if gid is not None else None
            lines.extend(_lines(parent, ref, child, started, now))
    if lines:
        conn.execute(run_log.insert(), lines)
    return len(started)


def _refs(text: str) -> list[str | int]:
    """The stored JSON list (keys as strings, ids as numbers); anything else names nothing."""
    try:
        value = json.loads(text)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    refs: list[str | int] = []
    for ref in value:
        if isinstance(ref, str | int) and not isinstance(ref, bool) and ref not in refs:
            refs.append(ref)
    return refs


def _groups_named(
    conn: Connection, refs: set[str | int]
) -> tuple[dict[str | int, int], dict[int, bool]]:
    """Keys and ids resolved to group ids in SQL ({ref: id}; a deleted group is absent), and
    whether each named group is enabled."""
    keys = sorted(ref for ref in refs if isinstance(ref, str))
    ids = sorted(ref for ref in refs if isinstance(ref, int))
    named: dict[str | int, int] = {}
    enabled: dict[int, bool] = {}
    columns = (task_group.c.id, task_group.c.key, task_group.c.is_enable)
    lookups = [task_group.c.key.in_(chunk) for chunk in _chunked(keys)]
    lookups += [task_group.c.id.in_(chunk) for chunk in _chunked(ids)]
    for lookup in lookups:
        for row in conn.execute(sa.select(*columns).where(lookup)):
            group_id = int(row.id)
            enabled[group_id] = bool(row.is_enable)
            if row.key in refs:
                named[row.key] = group_id
            if group_id in refs:
                named[group_id] = group_id
    return named, enabled


def _children(conn: Connection, enabled: dict[int, bool]) -> dict[int, _Child]:
    """The named groups with their open task; the task rows are locked (in id order, the
    recorder's order for task rows)."""
    children = {gid: _Child(gid, is_enable) for gid, is_enable in enabled.items()}
    for ids in _chunked(sorted(enabled)):
        open_rows = conn.execute(
            sa.select(task.c.id, task.c.open_group_id, task.c.status, task.c.start_at,
                      task.c.finish_at)
            .where(task.c.open_group_id.in_(ids))
            .order_by(task.c.id)
            .with_for_update()
        )
        for row in open_rows:
            gid = int(row.open_group_id)
            children[gid] = _Child(
                gid, children[gid].is_enable, int(row.id), int(row.status), row.start_at,
                retrying=row.finish_at is not None,
            )
    return children


def _startable(child: _Child, now: datetime) -> bool:
    return (
        child.is_enable
        and child.task_id is not None
        and child.status == TaskStatus.NONE
        and not child.retrying
        and child.start_at is not None
        and child.start_at > now
    )


def _start(conn: Connection, task_ids: list[int], now: datetime) -> set[int]:
    """One guarded UPDATE per chunk: the waiting task (not a retry wait, not due yet) runs
    now. The rows are locked by _children, so the guard holds for every id it read."""
    started: set[int] = set()
    for ids in _chunked(task_ids):
        result = conn.execute(
            task.update()
            .where(
                task.c.id.in_(ids),
                task.c.status == TaskStatus.NONE,
                task.c.finish_at.is_(None),
                task.c.start_at > now,
            )
            .values(start_at=now, kind="child", claimed_by=None, claimed_until=None)
        )
        if result.rowcount == len(ids):
            started.update(ids)
        else:  # cannot happen while the rows are locked; read back what moved
            moved = conn.execute(
                sa.select(task.c.id).where(
                    task.c.id.in_(ids), task.c.kind == "child", task.c.start_at == now
                )
            )
            started.update(int(i) for i in moved.scalars())
    return started


def _lines(
    parent: Parent, ref: str | int, child: _Child | None, started: set[int], now: datetime
) -> list[dict[str, Any]]:
    def line(task_id: int, group_id: int, level: int, text: str) -> dict[str, Any]:
        return {"task_id": task_id, "task_group_id": group_id, "log_level": level,
                "content": text, "create_at": now}

    if child is None:
        kind = "key" if isinstance(ref, str) else "id"
        return [line(parent.task_id, parent.group_id, WARNING_LEVEL,
                     f"on_success: no group has the {kind} {ref!r}; nothing started")]
    name = f"group {child.group_id}"
    if child.task_id is not None and child.task_id in started:
        return [
            line(parent.task_id, parent.group_id, INFO_LEVEL,
                 f"on_success: {name} runs now (task {child.task_id})"),
            line(child.task_id, child.group_id, INFO_LEVEL,
                 f"started by on_success of group {parent.group_id} (task {parent.task_id})"),
        ]
    return [line(parent.task_id, parent.group_id, WARNING_LEVEL,
                 f"on_success: {name} {_why_not(child, now)}")]


def _why_not(child: _Child, now: datetime) -> str:
    if not child.is_enable:
        return "is disabled; not started"
    if child.task_id is None:
        return "has no waiting task; not started"
    if child.status != TaskStatus.NONE:
        return "is running; not started again"
    if child.retrying:
        return "is waiting to retry a failed run; not started again"
    return "is due already; not started again"


def _chunked(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
