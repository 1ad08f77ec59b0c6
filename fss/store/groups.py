"""Task group administration: every change and the group's pending task in one transaction."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fss.domain.clock import as_utc, require_storable_time
from fss.domain.group_file import check_key
from fss.domain.group_spec import GroupSpec, find_cycle, validate_data, validate_disabled_note
from fss.domain.jitter import jittered_start
from fss.domain.schedule import initial_run_at
from fss.domain.status import TaskStatus
from fss.errors import FssError, GroupBusy, GroupNotFound, InvalidField
from fss.store import audit
from fss.store.audit import Actor
from fss.store.rows import GroupRow
from fss.store.tables import (
    UTCDateTime,
    alert_silence,
    insert_waiting_task,
    inserted_id,
    naive_utc,
    run_log,
    task,
    task_group,
    task_run,
    waiting_task_values,
)

T = TypeVar("T")
# Ids per IN list: well inside every backend's limit on bound parameters.
CHUNK = 500


def add_group(
    engine: Engine,
    spec: GroupSpec,
    now: datetime,
    key: str | None = None,
    actor: Actor | None = None,
) -> int:
    """Create a group (with `key`, the group belongs to the groups file that names it);
    with `actor`, its audit entry in the same transaction."""
    spec = spec.validated()
    key = check_key(key) if key is not None else None
    start_at = spec.start_at or now
    if spec.enable_at is not None and spec.enable_at <= now:
        raise InvalidField("enable_at", f"{spec.enable_at.isoformat()} is not in the future")
    with engine.begin() as conn:
        _require_free_key(conn, key, None)
        group_id = inserted_id(
            conn.execute(
                task_group.insert().values(
                    **group_columns(spec),
                    key=key,
                    start_at=start_at,
                    next_at=start_at,
                    activate_at=now,
                    is_enable=spec.is_enable,
                    created_at=now,
                )
            )
        )
        if spec.on_success:  # checked written, so the new group is a node of the graph
            verify_on_success(conn, [group_id], new=True)
        if spec.is_enable:
            _schedule_pending(conn, get_group(conn, group_id), now)
        new = get_group(conn, group_id)
        audit.record(conn, actor, "group.create", now, group_id=group_id,
                     subject=audit.group_label(key, new.caption),
                     changes=audit.created(group_state(new)))
    return group_id


def group_state(group: GroupRow) -> dict[str, Any]:
    """A group's settings as the audit trail compares them (its data included)."""
    return spec_state(group.key, spec_of(group))


def spec_state(key: str | None, spec: GroupSpec) -> dict[str, Any]:
    return {"key": key} | {f.name: getattr(spec, f.name) for f in fields(spec)}


def group_columns(spec: GroupSpec) -> dict[str, Any]:
    """The task_group columns a spec sets: add, edit and `fss group apply` write the same."""
    return {
        "caption": spec.caption,
        "job_name": spec.job_name,
        "data": validate_data(spec.data),
        "interval_ms": spec.interval_ms,
        "cron": spec.cron,
        "time_zone": spec.time_zone,
        "timeout_s": spec.timeout_s,
        "misfire": spec.misfire,
        "retries": spec.retries,
        "retry_delay_ms": spec.retry_delay_ms,
        "retry_backoff": spec.retry_backoff,
        "retry_delay_max_ms": spec.retry_delay_max_ms,
        "retry_jitter": spec.retry_jitter,
        "max_run_s": spec.max_run_s,
        "overlap": spec.overlap,
        "route": spec.route,
        "client_tag": spec.client_tag,
        "on_success": on_success_text(spec.on_success),
        "jitter_ms": spec.jitter_ms,
        "alert_targets": json_list_text(spec.alert_targets) if spec.alert_targets else None,
        "alert_rules": json_list_text(spec.alert_rules) if spec.alert_rules is not None else None,
        "late_after_s": spec.late_after_s,
        "disabled_note": spec.disabled_note,
        "enable_at": spec.enable_at,
    }


def on_success_text(refs: Sequence[str | int]) -> str | None:
    """The stored form of on_success: a JSON list (keys as strings, ids as numbers), or NULL."""
    if not refs:
        return None
    return json_list_text(refs)


def json_list_text(items: Sequence[str | int]) -> str:
    """A list as the group's JSON columns store it (compact; alert_rules stores [] too)."""
    return json.dumps(list(items), ensure_ascii=False, separators=(",", ":"))


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
        retries=group.retries,
        retry_delay_ms=group.retry_delay_ms,
        retry_backoff=group.retry_backoff,
        retry_delay_max_ms=group.retry_delay_max_ms,
        retry_jitter=group.retry_jitter,
        max_run_s=group.max_run_s,
        overlap=group.overlap,
        route=group.route,
        client_tag=group.client_tag,
        on_success=group.on_success,
        jitter_ms=group.jitter_ms,
        alert_targets=group.alert_targets,
        alert_rules=group.alert_rules,
        late_after_s=group.late_after_s,
        disabled_note=group.disabled_note,
        enable_at=group.enable_at,
    )


class GroupChanged(FssError):
    """An edit named a version of the group that is no longer current (someone else changed
    it meanwhile): nothing was written; `current` is the group as it is now."""

    def __init__(self, group_id: int, expected: int, current: GroupRow) -> None:
        self.group_id = group_id
        self.expected = expected
        self.current = current
        super().__init__(
            f"version: task group {group_id} changed since version {expected} (it is at "
            f"version {current.version} now); reload it and edit again"
        )


# An edit without a version (the CLI) that loses a race reads the group again and retries:
# it sets only the fields it was given, so merging them into the newer row is what it means.
EDIT_ATTEMPTS = 5


def edit_group(
    engine: Engine,
    group_id: int,
    changes: dict[str, Any],
    now: datetime,
    expected_version: int | None = None,
    actor: Actor | None = None,
) -> GroupRow:
    """Apply `changes` (GroupSpec field names, `key`, `is_enable`); a schedule change
    reschedules the pending task. Only the columns the changes alter are written, in one
    UPDATE guarded by the version the edit started from, which it bumps; with
    `expected_version`, a group at another version is GroupChanged (nothing written)."""
    changes = dict(changes)
    key_change = {"key": check_key(changes.pop("key"))} if "key" in changes else {}
    enable = changes.pop("is_enable", None)
    for _ in range(EDIT_ATTEMPTS):
        with engine.begin() as conn:
            current = get_group(conn, group_id)
            version = current.version if expected_version is None else expected_version
            if current.version != version:
                raise GroupChanged(group_id, version, current)
            merged = _merged_spec(current, changes, enable, now)
            if key_change:
                _require_free_key(conn, key_change["key"], group_id)
            values = _changed_columns(current, merged, now, enable) | key_change
            if not _bump_version(conn, group_id, version, values):
                if expected_version is not None:
                    raise GroupChanged(group_id, version, get_group(conn, group_id))
                continue
            if merged.on_success and ("on_success" in values or "key" in key_change):
                verify_on_success(conn, [group_id])
            _after_edit(conn, current, merged, enable, now)
            edited = get_group(conn, group_id)
            audit.record(conn, actor, "group.edit", now, group_id=group_id,
                         subject=audit.group_label(edited.key, edited.caption),
                         changes=audit.diff(group_state(current), group_state(edited)),
                         detail={"version": [current.version, edited.version]})
            return edited
    raise GroupChanged(group_id, version, current)


def _merged_spec(
    current: GroupRow, changes: dict[str, Any], enable: bool | None, now: datetime
) -> GroupSpec:
    """The group's spec with `changes`: enabling clears the disabled note and enable_at."""
    state: dict[str, Any] = {}
    if enable is not None:
        state["is_enable"] = enable
        if enable:
            state.update(disabled_note=None, enable_at=None)
    merged = replace(spec_of(current), **(_schedule_exclusive(changes) | state)).validated()
    if "enable_at" in changes and merged.enable_at is not None and merged.enable_at <= now:
        raise InvalidField("enable_at", f"{merged.enable_at.isoformat()} is not in the future")
    return merged


def _changed_columns(
    current: GroupRow, merged: GroupSpec, now: datetime, enable: bool | None
) -> dict[str, Any]:
    """The columns whose value the edit changes (the others are left as they are)."""
    before = group_columns(spec_of(current))
    values = {name: value for name, value in group_columns(merged).items()
              if value != before[name]}
    if merged.start_at is not None and merged.start_at != current.start_at:
        values["start_at"] = merged.start_at
    if enable is not None and enable != current.is_enable:
        values.update(is_enable=enable, activate_at=now)
    return values


def _bump_version(conn: Connection, group_id: int, version: int, values: dict[str, Any]) -> bool:
    """The guarded UPDATE of an edit: False when the group is no longer at `version`."""
    result = conn.execute(
        task_group.update()
        .where(task_group.c.id == group_id, task_group.c.version == version)
        .values(**values, version=task_group.c.version + 1)
    )
    return result.rowcount == 1


def _after_edit(
    conn: Connection, before: GroupRow, merged: GroupSpec, enable: bool | None, now: datetime
) -> None:
    """The waiting task follows the edit: renamed, moved, created (enable), withdrawn."""
    group_id = before.id
    if merged.job_name != before.job_name:
        rename_waiting(conn, [(group_id, merged.job_name)])
    start_at = merged.start_at or before.start_at
    if (merged.schedule, start_at) != (before.schedule, before.start_at):
        _reschedule_pending(conn, group_id, now)
    if enable is None or enable == before.is_enable:
        return
    if not enable:
        withdraw_waiting(conn, [group_id])
    elif _open_task(conn, group_id) is None:
        _schedule_pending(conn, get_group(conn, group_id), now)


def _require_free_key(conn: Connection, key: str | None, group_id: int | None) -> None:
    """A key names one group; the unique index would refuse a second one less clearly."""
    if key is None:
        return
    owner = conn.execute(sa.select(task_group.c.id).where(task_group.c.key == key)).scalar()
    if owner is not None and owner != group_id:
        raise InvalidField("key", f"{key!r} is already the key of group {owner}")


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


def set_enabled(
    engine: Engine,
    group_id: int,
    enabled: bool,
    now: datetime,
    note: str | None = None,
    until: datetime | None = None,
    actor: Actor | None = None,
    until_field: str = "enable_at",
) -> GroupRow:
    """Enable (clears the disabled note and enable_at) or disable, with an optional note
    saying why and a time `until` when the group enables itself (enable_due_groups).
    `until_field`: the name the caller gave `until` (`--until`, `until`), for its errors."""
    if enabled and (note is not None or until is not None):
        raise InvalidField("disabled_note" if note is not None else until_field,
                           "only a disabled group has one")
    note = validate_disabled_note(note)
    if until is not None:
        until = require_storable_time(until_field, until)
        if until <= now:
            raise InvalidField(until_field, f"{until.isoformat()} is not in the future")
    with engine.begin() as conn:
        group = _locked_group(conn, group_id)
        conn.execute(
            task_group.update()
            .where(task_group.c.id == group_id)
            .values(
                is_enable=enabled,
                activate_at=now,
                disabled_note=note,
                enable_at=until,
                version=task_group.c.version + 1,
            )
        )
        if enabled:
            if _open_task(conn, group_id) is None:
                _schedule_pending(conn, group, now)
        else:
            withdraw_waiting(conn, [group_id])
        after = get_group(conn, group_id)
        audit.record(conn, actor, "group.enable" if enabled else "group.disable", now,
                     group_id=group_id, subject=audit.group_label(after.key, after.caption),
                     changes=audit.diff(_switch_state(group), _switch_state(after)))
        return after


def _switch_state(group: GroupRow) -> dict[str, Any]:
    return {"is_enable": group.is_enable, "disabled_note": group.disabled_note,
            "enable_at": group.enable_at}


# Groups enabled per call of enable_due_groups; more due at once wait for the next sweep.
ENABLE_BATCH = 500


def enable_due_groups(engine: Engine, now: datetime) -> list[int]:
    """Enable the disabled groups whose enable_at has come (`fss group disable --until`), as
    `fss group enable` does: each by an UPDATE guarded by is_enable = false and enable_at <=
    now (of two schedulers calling this at once, one enables a group, the other finds
    nothing), its waiting task created in the same transaction. Returns the ids enabled."""
    enabled: list[int] = []
    with engine.begin() as conn:
        # Called every second by the supervisor, and almost always nothing is due. The
        # earliest enable_at is read off ix_task_group_enable_at (min() of an indexed column
        # is an index probe whatever the planner's statistics); the full query, ordered by id,
        # was planned as a scan of every group: 0.3 s at a million groups, every second.
        first = conn.execute(sa.select(sa.func.min(task_group.c.enable_at))).scalar()
        if first is None or as_utc(first) > now:
            return enabled
        # The ids then go in id order, as every batch write locks rows.
        due = sorted(
            conn.execute(
                sa.select(task_group.c.id)
                .where(task_group.c.enable_at <= now, task_group.c.is_enable == sa.false())
                .order_by(task_group.c.enable_at)
                .limit(ENABLE_BATCH)
            ).scalars().all()
        )
        for group_id in due:
            result = conn.execute(
                task_group.update()
                .where(
                    task_group.c.id == group_id,
                    task_group.c.is_enable == sa.false(),
                    task_group.c.enable_at <= now,
                )
                .values(
                    is_enable=True,
                    disabled_note=None,
                    enable_at=None,
                    activate_at=now,
                    version=task_group.c.version + 1,
                )
            )
            if result.rowcount != 1:
                continue
            if _open_task(conn, group_id) is None:
                _schedule_pending(conn, get_group(conn, group_id), now)
            enabled.append(int(group_id))
    return enabled


def verify_on_success(conn: Connection, changed: Sequence[int], new: bool = False) -> None:
    """The on_success lists of the `changed` groups (as written in this transaction) name
    existing groups and close no cycle; InvalidField names the unknown group or the cycle.
    `new`: the changed group is being added, so an unknown group is named without the id of
    an insert that is rolled back."""
    rows = conn.execute(
        sa.select(task_group.c.id, task_group.c.key, task_group.c.on_success)
        .where(task_group.c.on_success.is_not(None))
    ).all()
    listed = {int(r.id): tuple(json.loads(r.on_success or "[]")) for r in rows}
    names = {int(r.id): r.key or str(r.id) for r in rows}
    refs = {ref for targets in listed.values() for ref in targets}
    by_key, ids = resolve_refs(conn, refs)
    check_on_success_graph(listed, names, by_key, ids, changed, unnamed=changed if new else ())


def check_on_success_graph(
    listed: Mapping[Any, tuple[Any, ...]],
    names: Mapping[Any, str],
    by_key: Mapping[str, Any],
    ids: Collection[int],
    changed: Collection[Any],
    unnamed: Collection[Any] = (),
) -> None:
    """The on_success lists (`listed`: node -> its refs) name groups (a key through `by_key`,
    an id in `ids`) and no cycle runs through a `changed` node; InvalidField names the
    unknown group or the cycle (nodes shown by `names`; an unknown group listed by an
    `unnamed` node, one being added, without naming that node)."""
    edges: dict[Any, tuple[Any, ...]] = {}
    for node, targets in listed.items():
        resolved = []
        for ref in targets:
            target = by_key.get(ref) if isinstance(ref, str) else (ref if ref in ids else None)
            if target is None and node in changed:
                kind = "key" if isinstance(ref, str) else "id"
                owner = "" if node in unnamed else f"group {names[node]}: "
                raise InvalidField("on_success", f"{owner}no group has the {kind} {ref!r}")
            if target is not None:
                resolved.append(target)
        edges[node] = tuple(resolved)
    cycle = find_cycle(edges, [node for node in changed if node in edges])
    if cycle:
        raise InvalidField("on_success", "cycle " + " -> ".join(names[node] for node in cycle))


def resolve_refs(conn: Connection, refs: set[Any]) -> tuple[dict[str, int], set[int]]:
    """The ids of the keys among `refs`, and which of the ids among them exist."""
    keys = sorted(ref for ref in refs if isinstance(ref, str))
    wanted_ids = sorted(ref for ref in refs if isinstance(ref, int))
    by_key: dict[str, int] = {}
    for chunk in chunked(keys):
        query = sa.select(task_group.c.key, task_group.c.id).where(task_group.c.key.in_(chunk))
        by_key.update((key, int(group_id)) for key, group_id in conn.execute(query))
    ids: set[int] = set()
    for id_chunk in chunked(wanted_ids):
        found = conn.execute(sa.select(task_group.c.id).where(task_group.c.id.in_(id_chunk)))
        ids.update(int(group_id) for group_id in found.scalars())
    return by_key, ids


def delete_group(
    engine: Engine, group_id: int, now: datetime | None = None, actor: Actor | None = None
) -> None:
    """Delete the group with its tasks and logs. Rows are locked in the recorder's order,
    its tasks (id order) before the group row: the other way round, a run finishing
    meanwhile (task locked, waiting for the group) deadlocked with it (1 in 4 deletes of a
    group at a 1 ms interval). A deadlock left (a log line inserted meanwhile) is retried."""
    # Imported here: this module's imports are another change's (a surgical edit).
    from fss.store.deadlocks import in_transaction_retrying
    from fss.store.tasks import lock_tasks_in_id_order

    def delete(conn: Connection) -> None:
        ids = conn.execute(
            sa.select(task.c.id).where(task.c.task_group_id == group_id).order_by(task.c.id)
        ).scalars().all()
        if ids:
            lock_tasks_in_id_order(conn, list(ids))
        gone = _locked_group(conn, group_id)
        delete_groups(conn, [group_id])
        if actor is not None:
            if now is None:
                raise TypeError("an audited delete needs `now`")
            audit.record(conn, actor, "group.delete", now, group_id=group_id,
                         subject=audit.group_label(gone.key, gone.caption),
                         changes=audit.deleted(group_state(gone)))

    in_transaction_retrying(engine, delete)


def run_now(
    engine: Engine,
    group_id: int,
    now: datetime,
    data: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> int:
    """Make the group's waiting task due now (creating one if needed), a manual run; returns
    its id. With `data`, this run gets it as ctx.data instead of the group's data (kept in
    task.run_data): the group's data changes only if the job changes ctx.data."""
    run_data = None if data is None else validate_data(data)
    with engine.begin() as conn:
        group = _locked_group(conn, group_id)
        open_task = _open_task(conn, group_id)
        if open_task is None:
            task_id = _insert_pending(conn, group, now, now)
        else:
            task_id, status = open_task
            if status != TaskStatus.NONE:
                raise GroupBusy(group_id, task_id)
            conn.execute(
                task_group.update().where(task_group.c.id == group_id).values(next_at=now)
            )
        conn.execute(
            task.update()
            .where(task.c.id == task_id, task.c.status == TaskStatus.NONE)
            .values(
                start_at=now, claimed_by=None, claimed_until=None, kind="manual",
                run_data=run_data,
            )
        )
        audit.record(conn, actor, "group.run", now, group_id=group_id,
                     subject=audit.group_label(group.key, group.caption),
                     detail={"task_id": task_id} | ({} if data is None else {"data": data}))
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
    slot = initial_run_at(group.schedule, group.next_at, now)
    return _insert_pending(conn, group, slot, now, jittered_start(group.id, slot, group.jitter_ms))


def _reschedule_pending(conn: Connection, group_id: int, now: datetime) -> None:
    group = get_group(conn, group_id)
    run_at = initial_run_at(group.schedule, group.start_at, now)
    move_waiting(conn, [(group_id, jittered_start(group_id, run_at, group.jitter_ms))])
    conn.execute(task_group.update().where(task_group.c.id == group_id).values(next_at=run_at))


def _insert_pending(
    conn: Connection,
    group: GroupRow,
    slot: datetime,
    now: datetime,
    start_at: datetime | None = None,
) -> int:
    """The waiting task, due at `start_at` (the slot with its jitter; the slot by default);
    the group's next_at holds the slot, from which the run after it is planned."""
    task_id = insert_waiting_task(conn, group.id, group.job_name, start_at or slot, now)
    conn.execute(
        task_group.update()
        .where(task_group.c.id == group.id)
        .values(task_id=task_id, next_at=slot)
    )
    return task_id


# --- Set-based statements: one group (add, edit, enable, ...) or thousands (`group apply`) ---


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def withdraw_waiting(conn: Connection, group_ids: Sequence[int]) -> None:
    """Disabling: the waiting tasks go; a dispatched or running task finishes."""
    waiting = (
        sa.exists()
        .where(task.c.task_group_id == task_group.c.id, task.c.status == TaskStatus.NONE)
    )
    for ids in chunked(group_ids):
        conn.execute(
            task_group.update().where(task_group.c.id.in_(ids), waiting).values(task_id=None)
        )
        # A retry waiting (its previous attempt ended, fss.store.retries) ends as the Fail
        # it was: its attempts stay listed, where a delete would drop them.
        conn.execute(
            task.update()
            .where(
                task.c.task_group_id.in_(ids),
                task.c.status == TaskStatus.NONE,
                task.c.finish_at.is_not(None),
            )
            .values(status=TaskStatus.FAIL, open_group_id=None)
        )
        conn.execute(
            task.delete().where(task.c.task_group_id.in_(ids), task.c.status == TaskStatus.NONE)
        )


def move_waiting(conn: Connection, moves: Sequence[tuple[int, datetime]]) -> None:
    """A new schedule: each group's waiting task moves to its new time, unclaimed."""
    if not moves:
        return
    if conn.dialect.name == "postgresql":  # one statement, not one round trip per group
        for chunk in chunked(moves, BATCH):
            conn.execute(
                _MOVE_MANY,
                {
                    "groups": [group_id for group_id, _ in chunk],
                    "run_ats": [naive_utc(run_at) for _, run_at in chunk],
                    "waiting": int(TaskStatus.NONE),
                },
            )
        return
    conn.execute(
        task.update()
        .where(task.c.task_group_id == sa.bindparam("b_group"), task.c.status == TaskStatus.NONE)
        .values(
            start_at=sa.bindparam("b_run_at", type_=UTCDateTime()),
            claimed_by=None,
            claimed_until=None,
        ),
        [{"b_group": group_id, "b_run_at": run_at} for group_id, run_at in moves],
    )


def rename_waiting(conn: Connection, renames: Sequence[tuple[int, str]]) -> None:
    """A new job name reaches the waiting task too (one already sent keeps its name)."""
    if not renames:
        return
    if conn.dialect.name == "postgresql":  # one statement, not one round trip per group
        for chunk in chunked(renames, BATCH):
            conn.execute(
                _RENAME_MANY,
                {
                    "groups": [group_id for group_id, _ in chunk],
                    "job_names": [job_name for _, job_name in chunk],
                    "waiting": int(TaskStatus.NONE),
                },
            )
        return
    conn.execute(
        task.update()
        .where(task.c.task_group_id == sa.bindparam("b_group"), task.c.status == TaskStatus.NONE)
        .values(job_name=sa.bindparam("b_job_name")),
        [{"b_group": group_id, "b_job_name": job_name} for group_id, job_name in renames],
    )


# move_waiting's and rename_waiting's statements (same guard: the group's task still waiting)
# for many groups at once on PostgreSQL: one array per field, unnested into rows.
BATCH = 20_000
_MOVE_MANY = sa.text(
    "UPDATE task SET start_at = m.run_at, claimed_by = NULL, claimed_until = NULL"
    " FROM unnest(CAST(:groups AS BIGINT[]), CAST(:run_ats AS TIMESTAMP[])) AS m(group_id, run_at)"
    " WHERE task.task_group_id = m.group_id AND task.status = :waiting"
)
_RENAME_MANY = sa.text(
    "UPDATE task SET job_name = m.job_name"
    " FROM unnest(CAST(:groups AS BIGINT[]), CAST(:job_names AS TEXT[])) AS m(group_id, job_name)"
    " WHERE task.task_group_id = m.group_id AND task.status = :waiting"
)


def insert_waiting_tasks(
    conn: Connection, waiting: Sequence[tuple[int, str, datetime]], now: datetime
) -> None:
    """Many groups' first waiting task in one INSERT, then each group points at its own."""
    if not waiting:
        return
    conn.execute(
        task.insert(),
        [waiting_task_values(group_id, job, start_at, now) for group_id, job, start_at in waiting],
    )
    own_task = (
        sa.select(task.c.id).where(task.c.open_group_id == task_group.c.id).scalar_subquery()
    )
    for ids in chunked([group_id for group_id, _, _ in waiting]):
        conn.execute(task_group.update().where(task_group.c.id.in_(ids)).values(task_id=own_task))


def groups_with_open_task(conn: Connection, group_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for ids in chunked(group_ids):
        rows = conn.execute(sa.select(task.c.open_group_id).where(task.c.open_group_id.in_(ids)))
        found.update(int(group_id) for (group_id,) in rows)
    return found


def delete_groups(conn: Connection, group_ids: Sequence[int]) -> None:
    """The groups with their tasks, run logs and alert silence (a silence left behind would
    quiet nothing, yet show in the list of silenced groups)."""
    for ids in chunked(group_ids):
        conn.execute(alert_silence.delete().where(alert_silence.c.task_group_id.in_(ids)))
        conn.execute(run_log.delete().where(run_log.c.task_group_id.in_(ids)))
        # The attempts kept for retried tasks (fss.store.retries).
        conn.execute(task_run.delete().where(task_run.c.task_group_id.in_(ids)))
        conn.execute(task.delete().where(task.c.task_group_id.in_(ids)))
        conn.execute(task_group.delete().where(task_group.c.id.in_(ids)))
