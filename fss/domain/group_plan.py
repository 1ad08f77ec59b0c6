"""What `fss group apply` would change: groups to create, update and (with prune) delete.

Pure: it compares the groups a file describes with the keyed groups the database holds,
both as GroupEntry, field by field under the names of the file format.

A three-way merge, as `kubectl apply` does: each group remembers what the last apply set
(`applied`, the canonical JSON text of its fields). A field changes only when the file's
value differs from that last-applied one, so what a job saved in `data` (a cursor, a
counter) or what someone edited by hand survives a deploy of an unchanged file. A group
with no record (applied before this existed) takes the file's values, as before, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fss.domain.group_file import GroupEntry
from fss.domain.group_spec import POLICY_DEFAULTS, GroupSpec

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
    *POLICY_DEFAULTS,
    "disabled_note",
    "enable_at",
)
# Times in the canonical JSON of an entry (ISO 8601 text).
TIME_FIELDS = ("start_at", "enable_at")


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
    # (key, applied text) of every existing group whose last-applied record changes (the
    # updated ones and those whose file entry changed without changing the group).
    recorded: tuple[tuple[str, str], ...] = ()

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
    current: Iterable[GroupEntry],
    desired: Sequence[GroupEntry],
    prune: bool,
    applied: Mapping[str, str | None] | None = None,
) -> GroupPlan:
    """Creates and updates in file order; with `prune`, deletes of keys the file lacks.

    `applied` (key -> last-applied text) makes updates three-way merges; without it (or for
    a key without a record) the file's values win, field by field."""
    existing = {entry.key: entry for entry in current}
    base = applied or {}
    creates: list[GroupEntry] = []
    updates: list[GroupUpdate] = []
    recorded: list[tuple[str, str]] = []
    for entry in desired:
        before = existing.get(entry.key)
        if before is None:
            creates.append(entry)
            continue
        last = base.get(entry.key)
        text = applied_text(entry)
        if last == text:  # the file changed nothing since the last apply: nothing to do
            continue
        after = merged(before, entry, text, last)
        recorded.append((entry.key, text))
        if changes := field_changes(before, after):
            updates.append(GroupUpdate(before, after, changes))
    wanted = {entry.key for entry in desired}
    deletes = [e for key, e in sorted(existing.items()) if key not in wanted] if prune else []
    unchanged = len(desired) - len(creates) - len(updates)
    return GroupPlan(tuple(creates), tuple(updates), tuple(deletes), unchanged, tuple(recorded))


def applied_text(entry: GroupEntry) -> str:
    """The canonical JSON of an entry's fields: what a group records as last applied. Equal
    texts mean equal entries as `_same` sees them (sorted keys, `true` is not `1`)."""
    values = comparable(entry)
    for name in TIME_FIELDS:
        if values[name] is not None:
            values[name] = values[name].isoformat()
    return json.dumps(values, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# Fields that change together: a schedule is one of interval, cron or the job's own times.
MERGE_UNITS = (
    ("caption",),
    ("job_name",),
    ("interval_ms", "cron", "job_sets_next"),
    ("time_zone",),
    ("data",),
    # A note and a time to enable again belong to one disabling.
    ("enabled", "disabled_note", "enable_at"),
    ("timeout_s",),
    ("misfire",),
    ("start_at",),
    *((name,) for name in POLICY_DEFAULTS),
)


def merged(live: GroupEntry, file: GroupEntry, file_text: str, last: str | None) -> GroupEntry:
    """The group the file asks for: each field (a schedule as one) from the file where the
    file changed it since the last apply, else as the group has it now."""
    if last is None:
        return file
    try:
        base = json.loads(last)
    except ValueError:  # a record we cannot read: the file wins, as without one
        return file
    if not isinstance(base, dict):
        return file
    wanted, now, target = json.loads(file_text), comparable(live), comparable(live)
    file_values = comparable(file)
    for unit in MERGE_UNITS:
        if any(not _same(wanted[name], base.get(name)) for name in unit):
            target.update({name: file_values[name] for name in unit})
    if all(_same(target[name], now[name]) for name in COMPARED_FIELDS):
        return live
    return GroupEntry(file.key, spec_of_comparable(target))


def spec_of_comparable(values: dict[str, Any]) -> GroupSpec:
    return GroupSpec(
        caption=values["caption"],
        job_name=values["job_name"],
        interval_ms=values["interval_ms"],
        cron=values["cron"],
        job_sets_next=values["job_sets_next"],
        time_zone=values["time_zone"],
        data=values["data"],
        start_at=values["start_at"],
        is_enable=values["enabled"],
        timeout_s=values["timeout_s"],
        misfire=values["misfire"],
        disabled_note=values["disabled_note"],
        enable_at=values["enable_at"],
        **{name: values[name] for name in POLICY_DEFAULTS if name not in TUPLE_FIELDS},
        on_success=tuple(values["on_success"]),
        alert_targets=tuple(values["alert_targets"] or ()),
        alert_rules=None if values["alert_rules"] is None else tuple(values["alert_rules"]),
    )


# Fields a spec holds as tuples and `comparable` as lists (JSON's form).
TUPLE_FIELDS = ("on_success", "alert_targets", "alert_rules")


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
        "retries": spec.retries,
        "retry_delay_ms": spec.retry_delay_ms,
        "retry_backoff": float(spec.retry_backoff),
        "retry_delay_max_ms": spec.retry_delay_max_ms,
        "retry_jitter": spec.retry_jitter,
        "max_run_s": spec.max_run_s,
        "overlap": spec.overlap,
        "route": spec.route,
        "client_tag": spec.client_tag,
        "on_success": list(spec.on_success),
        "jitter_ms": spec.jitter_ms,
        # No targets is null, as a last-applied record from before the field has it: an
        # unchanged file then keeps targets someone set by hand.
        "alert_targets": list(spec.alert_targets) or None,
        "alert_rules": None if spec.alert_rules is None else list(spec.alert_rules),
        "late_after_s": spec.late_after_s,
        "disabled_note": spec.disabled_note,
        "enable_at": spec.enable_at,
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
