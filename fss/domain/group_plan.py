"""What `fss group apply` would change: groups to create, update and (with prune) delete.

Pure: it compares the groups a file describes with the keyed groups the database holds,
both as GroupEntry, field by field under the names of the file format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fss.domain.group_file import GroupEntry

COMPARED_FIELDS = (
    "caption",
    "job_name",
    "interval_ms",
    "cron",
    "job_sets_next",
    "time_zone",
    "data",
    "enabled",
    "timeout_s",
    "misfire",
    "start_at",
)


@dataclass(frozen=True)
class FieldChange:
    name: str
    old: Any
    new: Any

    def describe(self) -> str:
        return f"{self.name}: {shown(self.old)} -> {shown(self.new)}"


@dataclass(frozen=True)
class GroupUpdate:
    before: GroupEntry
    after: GroupEntry
    changes: tuple[FieldChange, ...]

    @property
    def key(self) -> str:
        return self.after.key


@dataclass(frozen=True)
class GroupPlan:
    creates: tuple[GroupEntry, ...] = ()
    updates: tuple[GroupUpdate, ...] = ()
    deletes: tuple[GroupEntry, ...] = ()
    unchanged: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.creates or self.updates or self.deletes)

    def describe(self) -> list[str]:
        """`+ create KEY`, `~ update KEY` with one `FIELD: OLD -> NEW` line each, `- delete KEY`."""
        lines = [f"+ create {entry.key}" for entry in self.creates]
        for update in self.updates:
            lines.append(f"~ update {update.key}")
            lines.extend(f"    {change.describe()}" for change in update.changes)
        lines.extend(f"- delete {entry.key}" for entry in self.deletes)
        return lines

    def summary(self) -> str:
        return (
            f"{len(self.creates)} created, {len(self.updates)} updated, "
            f"{len(self.deletes)} deleted, {self.unchanged} unchanged"
        )


def plan_changes(
    current: Iterable[GroupEntry], desired: Sequence[GroupEntry], prune: bool
) -> GroupPlan:
    """Creates and updates in file order; with `prune`, deletes of keys the file lacks."""
    existing = {entry.key: entry for entry in current}
    creates: list[GroupEntry] = []
    updates: list[GroupUpdate] = []
    for entry in desired:
        before = existing.get(entry.key)
        if before is None:
            creates.append(entry)
        elif changes := field_changes(before, entry):
            updates.append(GroupUpdate(before, entry, changes))
    wanted = {entry.key for entry in desired}
    deletes = [e for key, e in sorted(existing.items()) if key not in wanted] if prune else []
    unchanged = len(desired) - len(creates) - len(updates)
    return GroupPlan(tuple(creates), tuple(updates), tuple(deletes), unchanged)


def field_changes(before: GroupEntry, after: GroupEntry) -> tuple[FieldChange, ...]:
    old, new = comparable(before), comparable(after)
    return tuple(
        FieldChange(name, old[name], new[name])
        for name in COMPARED_FIELDS
        if not _same(old[name], new[name])
    )


def comparable(entry: GroupEntry) -> dict[str, Any]:
    spec = entry.spec
    return {
        "caption": spec.caption,
        "job_name": spec.job_name,
        "interval_ms": spec.interval_ms,
        "cron": spec.cron or None,
        "job_sets_next": spec.interval_ms is None and not spec.cron,
        "time_zone": spec.time_zone or None,
        "data": spec.data,
        "enabled": spec.is_enable,
        "timeout_s": spec.timeout_s,
        "misfire": spec.misfire,
        "start_at": spec.start_at,
    }


def _same(old: Any, new: Any) -> bool:
    """Equal as the file means them: `true` and `1` differ (in data too), key order does not."""
    if type(old) is not type(new) or old != new:
        return False
    if isinstance(old, dict | list):  # == takes True for 1 inside containers
        return json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)
    return True


def shown(value: Any) -> str:
    """A value as a diff line shows it: JSON, times in ISO 8601, absent as null."""
    if isinstance(value, datetime):
        return value.isoformat()
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
