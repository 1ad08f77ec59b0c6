"""Groups kept as code: the keyed groups as GroupEntry, and a GroupPlan applied set-based.

`apply_groups` writes a whole file in one transaction with a handful of statements per kind
of change, through the same rules as `fss group add / edit / enable / disable / delete`
(fss.store.groups): a new schedule moves the waiting task, enabling creates one, disabling
withdraws it. On PostgreSQL new groups and their first tasks go in by COPY and updates by
one UPDATE ... FROM unnest(arrays) per chunk, so a file of a million groups loads in about a
minute; SQLite and MySQL take multi-row INSERTs and one UPDATE per changed group.

`apply_file` also writes the file's alert targets (by name, as `fss alert target apply`)
in that transaction and checks there that every target a group names exists, so a file
naming a target nobody defined writes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fss.domain.alert_targets import TargetSpec
from fss.domain.group_file import (
    GroupEntry,
    TargetPlan,
    check_target_names,
    named_targets,
    plan_targets,
)
from fss.domain.group_plan import GroupPlan, GroupUpdate, applied_text, plan_changes
from fss.domain.group_spec import GroupSpec
from fss.domain.jitter import jittered_start
from fss.domain.schedule import Schedule, initial_run_at
from fss.store import audit
from fss.store.alert_targets import replace_target_in, targets_by_name
from fss.store.audit import Actor
from fss.store.groups import (
    check_on_success_graph,
    chunked,
    delete_groups,
    group_columns,
    group_state,
    groups_with_open_task,
    insert_waiting_tasks,
    move_waiting,
    rename_waiting,
    resolve_refs,
    spec_of,
    spec_state,
    verify_on_success,
    withdraw_waiting,
)
from fss.store.rows import GroupRow
from fss.store.tables import alert_target, naive_utc, task_group, waiting_task_values

# The run-policy and alert columns (fss.domain.group_spec.POLICY_DEFAULTS and the disabled
# note), with their PostgreSQL types (arrays of UPDATE ... FROM unnest, COPY formats).
POLICY_TYPES = {
    "retries": "integer",
    "retry_delay_ms": "bigint",
    "retry_backoff": "double precision",
    "retry_delay_max_ms": "bigint",
    "retry_jitter": "boolean",
    "max_run_s": "integer",
    "overlap": "text",
    "route": "text",
    "client_tag": "text",
    "on_success": "text",
    "jitter_ms": "bigint",
    "alert_targets": "text",
    "alert_rules": "text",
    "late_after_s": "integer",
    "disabled_note": "text",
    "enable_at": "timestamp",
}
POLICY_COLUMNS = tuple(POLICY_TYPES)
COPY_FORMAT = {
    "integer": "int", "bigint": "int", "double precision": "float", "boolean": "bool",
    "text": "text", "timestamp": "time",
}

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
    *POLICY_COLUMNS,
    "start_at",
    "next_at",
    "is_enable",
    "activate_at",
    "applied",
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
    return plan_changes([entry_of(g) for g in current.values()], desired, prune,
                        _applied(current))


def _applied(current: dict[str, GroupRow]) -> dict[str, str | None]:
    """What the last apply set on each group: the base of the three-way merge."""
    return {key: group.applied for key, group in current.items()}


# Autovacuum analyzes a bulk-loaded table only minutes later; until then every query of the
# schedulers and the web UI is planned with the row counts from before the load.
ANALYZE_AFTER_CREATES = 10_000


def plan_file(
    conn: Connection,
    desired: Sequence[GroupEntry],
    targets: Sequence[TargetSpec],
    prune: bool,
) -> tuple[GroupPlan, TargetPlan]:
    """What apply_file would do now (InvalidField as it would for a target nobody defined);
    writes nothing."""
    target_plan = _plan_targets(conn, targets)
    _check_target_names(conn, desired, targets, lock=False)
    plan = plan_groups(conn, desired, prune)
    _check_planned_on_success(conn, plan)
    return plan, target_plan


def apply_groups(
    engine: Engine,
    desired: Sequence[GroupEntry],
    now: datetime,
    prune: bool = False,
    actor: Actor | None = None,
) -> GroupPlan:
    """apply_file for a file that defines no alert targets: those its groups name must be in
    the database already."""
    return apply_file(engine, desired, (), now, prune, actor)[0]


def apply_file(
    engine: Engine,
    desired: Sequence[GroupEntry],
    targets: Sequence[TargetSpec],
    now: datetime,
    prune: bool = False,
    actor: Actor | None = None,
    audit_detail: Mapping[str, Any] | None = None,
) -> tuple[GroupPlan, TargetPlan]:
    """Make the keyed groups match `desired` and write `targets` (created or overwritten by
    name; targets not listed stay) in one transaction; returns what it changed. With
    `actor`, one audit entry per group created, changed or deleted and per target written
    (`audit_detail`, e.g. the file's name, goes into each group's), in that transaction.

    Groups without a key are never touched; keyed groups missing from `desired` are deleted
    only with `prune`. InvalidField (and nothing written) when a group names an alert
    target that is neither in `targets` nor in the database.
    """
    with engine.begin() as conn:
        current = keyed_groups(conn, lock=True)
        target_plan = _plan_targets(conn, targets)
        for spec in target_plan.writes:
            replace_target_in(conn, spec, now, actor)
        _check_target_names(conn, desired, targets, lock=True)
        plan = plan_changes(
            [entry_of(g) for g in current.values()], desired, prune, _applied(current)
        )
        _create(conn, plan.creates, now)
        records = dict(plan.recorded)
        _update(conn, plan.updates, current, now, records)
        for update in plan.updates:  # written by the update itself
            del records[update.key]
        _write_applied(conn, [(current[key].id, text) for key, text in records.items()])
        delete_groups(conn, [current[entry.key].id for entry in plan.deletes])
        _verify_on_success(conn, plan)
        if actor is not None:
            _audit_apply(conn, actor, now, plan, current, dict(audit_detail or {}))
        if conn.dialect.name == "postgresql" and len(plan.creates) >= ANALYZE_AFTER_CREATES:
            conn.exec_driver_sql("ANALYZE task_group, task")
    return plan, target_plan


def _audit_apply(
    conn: Connection,
    actor: Actor,
    now: datetime,
    plan: GroupPlan,
    before: dict[str, GroupRow],
    detail: dict[str, Any],
) -> None:
    """One entry per group the apply changed, as a single edit would write it (its fields
    before -> after): `fss audit list --group KEY` then shows a group's apply like its edit."""
    # Told from the specs written (start_at None: now for a new group, its creation time for
    # one changed), not from rows read back: 10,000 groups' rows cost seconds to read.
    new_ids = _ids_of(conn, [e.key for e in plan.creates])
    rows = []
    for entry in plan.creates:
        state = spec_state(entry.key, replace(entry.spec, start_at=entry.spec.start_at or now))
        rows.append(audit.entry(actor, "group.apply", now, group_id=new_ids[entry.key],
                                subject=entry.key, changes=audit.created(state),
                                detail={"op": "create", **detail}))
    for update in plan.updates:
        old, spec = before[update.key], update.after.spec
        new = spec_state(update.key, replace(spec, start_at=spec.start_at or old.created_at))
        rows.append(audit.entry(actor, "group.apply", now, group_id=old.id, subject=update.key,
                                changes=audit.diff(group_state(old), new),
                                detail={"op": "update", **detail}))
    for entry in plan.deletes:
        old = before[entry.key]
        rows.append(audit.entry(actor, "group.apply", now, group_id=old.id, subject=entry.key,
                                changes=audit.deleted(group_state(old)),
                                detail={"op": "delete", **detail}))
    audit.record_many(conn, rows)


def _ids_of(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunked(keys):
        query = sa.select(task_group.c.key, task_group.c.id).where(task_group.c.key.in_(chunk))
        found.update((key, int(group_id)) for key, group_id in conn.execute(query))
    return found


def _plan_targets(conn: Connection, targets: Sequence[TargetSpec]) -> TargetPlan:
    if not targets:
        return TargetPlan()
    stored = targets_by_name(conn, [spec.name for spec in targets])
    return plan_targets({name: row.spec for name, row in stored.items()}, targets)


def _check_target_names(
    conn: Connection, desired: Sequence[GroupEntry], targets: Sequence[TargetSpec], lock: bool
) -> None:
    """Every target the groups name is one of the file's or in the database. `lock` holds
    the named rows (shared) until commit, so a target removed meanwhile waits for the apply
    and is not left named by the groups it just wrote."""
    defined = {spec.name for spec in targets}
    wanted = sorted(named_targets(desired) - defined)
    if not wanted:
        return
    found: set[str] = set()
    for chunk in chunked(wanted):
        query = sa.select(alert_target.c.name).where(alert_target.c.name.in_(chunk))
        if lock:
            query = query.with_for_update(read=True)
        found.update(conn.execute(query).scalars())
    check_target_names(desired, defined | found)


def _verify_on_success(conn: Connection, plan: GroupPlan) -> None:
    """The on_success lists the file wrote name groups (of the database, the file's own
    included) and close no cycle; checked after the writes, so the transaction rolls back."""
    keys = [e.key for e in plan.creates if e.spec.on_success]
    keys += [u.key for u in plan.updates if u.after.spec.on_success]
    if not keys:
        return
    ids: list[int] = []
    for chunk in chunked(keys):
        found = conn.execute(sa.select(task_group.c.id).where(task_group.c.key.in_(chunk)))
        ids.extend(int(group_id) for group_id in found.scalars())
    verify_on_success(conn, ids)


def _check_planned_on_success(conn: Connection, plan: GroupPlan) -> None:
    """What _verify_on_success refuses after apply_file's writes, found without writing
    (diff, apply --dry-run): the database's on_success graph with the plan applied to it
    (the file's groups as it sets them, pruned groups gone)."""
    written = {e.key: e.spec.on_success for e in plan.creates}
    written.update((u.key, u.after.spec.on_success) for u in plan.updates)
    if not any(written.values()):
        return
    touched = [u.key for u in plan.updates] + [e.key for e in plan.deletes]
    id_of: dict[str, int] = {}
    for chunk in chunked(touched):
        query = sa.select(task_group.c.key, task_group.c.id).where(task_group.c.key.in_(chunk))
        id_of.update((key, int(group_id)) for key, group_id in conn.execute(query))
    gone = {id_of[e.key] for e in plan.deletes if e.key in id_of}
    rows = conn.execute(
        sa.select(task_group.c.id, task_group.c.key, task_group.c.on_success)
        .where(task_group.c.on_success.is_not(None))
    ).all()
    # Nodes: a stored group's id; a group the file creates, ("new", key).
    listed: dict[Any, tuple[Any, ...]] = {
        int(r.id): tuple(json.loads(r.on_success or "[]")) for r in rows if int(r.id) not in gone
    }
    names: dict[Any, str] = {int(r.id): r.key or str(r.id) for r in rows}
    changed: list[Any] = []
    for key, refs in written.items():
        node: Any = id_of.get(key, ("new", key))
        listed[node] = tuple(refs)
        names[node] = key
        if refs:
            changed.append(node)
    stored_keys, ids = resolve_refs(conn, {ref for refs in listed.values() for ref in refs})
    by_key: dict[str, Any] = {k: i for k, i in stored_keys.items() if i not in gone}
    by_key.update((e.key, ("new", e.key)) for e in plan.creates)
    check_on_success_graph(listed, names, by_key, ids - gone, changed)


# --- creates -------------------------------------------------------------------------------


def _create(conn: Connection, entries: Sequence[GroupEntry], now: datetime) -> None:
    if not entries:
        return
    first_run = _FirstRuns(now)
    if conn.dialect.name == "postgresql":
        for chunk in chunked(entries, ROWS_PER_STATEMENT):
            _create_postgres(conn, [_new_group_row(e, now, first_run) for e in chunk], now)
        return
    rows = [_new_group_row(entry, now, first_run) for entry in entries]
    conn.execute(task_group.insert(), rows)
    ids = _ids_by_key(conn)
    waiting = [
        (ids[r["key"]], r["job_name"], jittered_start(ids[r["key"]], r["next_at"], r["jitter_ms"]))
        for r in rows
        if r["is_enable"]
    ]
    insert_waiting_tasks(conn, waiting, now)


class _FirstRuns:
    """`initial_run_at` per distinct (schedule, start): the groups of a file share a few
    schedules and, without a start of their own, one start (now), so most are looked up."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.known: dict[tuple[Schedule, datetime], datetime] = {}

    def __call__(self, schedule: Schedule, start_at: datetime) -> datetime:
        at = self.known.get((schedule, start_at))
        if at is None:
            at = self.known[(schedule, start_at)] = initial_run_at(schedule, start_at, self.now)
        return at


def _new_group_row(entry: GroupEntry, now: datetime, first_run: _FirstRuns) -> dict[str, Any]:
    """The row `fss group add` would write, with the first run already placed."""
    spec = entry.spec
    start_at = spec.start_at or now
    return {
        **group_columns(spec),
        "key": entry.key,
        "start_at": start_at,
        "next_at": first_run(spec.schedule, start_at) if spec.is_enable else start_at,
        "activate_at": now,
        "is_enable": spec.is_enable,
        "created_at": now,
        "applied": applied_text(entry),
    }


def _ids_by_key(conn: Connection) -> dict[str, int]:
    query = sa.select(task_group.c.key, task_group.c.id).where(task_group.c.key.is_not(None))
    return {key: int(group_id) for key, group_id in conn.execute(query)}


# PostgreSQL: ids drawn from the tables' own sequences up front, so each group row carries its
# waiting task's id, and both tables are written with COPY (a few times faster than multi-row
# INSERTs): no UPDATE of task_id afterwards, no read-back of the new ids.
ROWS_PER_STATEMENT = 20_000
GROUP_COPY = (
    ("id", "int"),
    ("key", "text"),
    ("caption", "text"),
    ("job_name", "text"),
    ("data", "text"),
    ("interval_ms", "int"),
    ("cron", "text"),
    ("time_zone", "text"),
    ("timeout_s", "int"),
    ("misfire", "text"),
    *((name, COPY_FORMAT[kind]) for name, kind in POLICY_TYPES.items()),
    ("start_at", "time"),
    ("next_at", "time"),
    ("activate_at", "time"),
    ("is_enable", "bool"),
    ("created_at", "time"),
    ("task_id", "int"),
    ("applied", "text"),
)
TASK_COPY = (
    ("id", "int"),
    ("task_group_id", "int"),
    ("job_name", "text"),
    ("start_at", "time"),
    ("status", "int"),
    ("open_group_id", "int"),
    ("create_at", "time"),
)


def _create_postgres(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    group_ids = _next_ids(conn, "task_group", len(rows))
    waiting = [row for row in rows if row["is_enable"]]
    task_ids = iter(_next_ids(conn, "task", len(waiting)))
    for row, group_id in zip(rows, group_ids, strict=True):
        row["id"] = group_id
        row["task_id"] = next(task_ids) if row["is_enable"] else None
    tasks = [
        {
            **waiting_task_values(
                r["id"], r["job_name"], jittered_start(r["id"], r["next_at"], r["jitter_ms"]), now
            ),
            "id": r["task_id"],
        }
        for r in waiting
    ]
    _copy(conn, "task_group", GROUP_COPY, rows)
    _copy(conn, "task", TASK_COPY, tasks)


def _next_ids(conn: Connection, table: str, count: int) -> list[int]:
    """`count` new ids from the table's id sequence, ascending (file order = id order)."""
    if not count:
        return []
    query = sa.text(
        "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"
    )
    return sorted(int(i) for (i,) in conn.execute(query, {"table": table, "count": count}))


def _copy(
    conn: Connection, table: str, columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]
) -> None:
    """COPY the rows in, inside the connection's transaction; a failure is the same
    SQLAlchemy error (IntegrityError, ...) an INSERT would raise."""
    if not rows:
        return
    statement = f"COPY {table} ({', '.join(name for name, _ in columns)}) FROM STDIN"
    text = _copy_text(rows, columns)
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor: Any = dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, io.StringIO(text))
    except conn.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from exc
    finally:
        cursor.close()


def _copy_text(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> str:
    """The rows in COPY's text format; times as naive UTC, as UTCDateTime stores them."""
    formats: dict[str, Callable[[Any], str]] = {
        "text": _copy_str,
        "int": _copy_int,
        "float": _copy_float,
        "bool": _copy_bool,
        "time": _CopyTimes(),
    }
    columns_out = [[formats[kind](row[name]) for row in rows] for name, kind in columns]
    return "".join("\t".join(fields) + "\n" for fields in zip(*columns_out, strict=True))


def _copy_str(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t")
        value = value.replace("\n", "\\n").replace("\r", "\\r")
    return value


def _copy_int(value: int | None) -> str:
    return "\\N" if value is None else str(int(value))


def _copy_float(value: float) -> str:
    return repr(float(value))


def _copy_bool(value: bool) -> str:
    return "t" if value else "f"


class _CopyTimes:
    """Times as COPY reads them; a file's rows share a few (now, the schedules' next runs)."""

    def __init__(self) -> None:
        self.known: dict[datetime, str] = {}

    def __call__(self, value: datetime | None) -> str:
        if value is None:
            return "\\N"
        text = self.known.get(value)
        if text is None:
            text = self.known[value] = naive_utc(value).isoformat()
        return text


# --- updates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    """One group's update: the stored row, the wanted spec and the rules of edit/enable."""

    group: GroupRow
    spec: GroupSpec
    now: datetime
    has_open_task: bool
    first_run: _FirstRuns
    applied: str

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
        return self._next_at

    def start(self) -> datetime:
        """When the waiting task is due: next_at (the slot) with the group's jitter."""
        return jittered_start(self.group.id, self._next_at, self.spec.jitter_ms)

    @cached_property
    def _next_at(self) -> datetime:
        edited = self.group.next_at
        if self.schedule_moved:
            edited = self.first_run(self.spec.schedule, self.start_at)
        if self.creates_waiting_task:
            return self.first_run(self.spec.schedule, edited)
        return edited

    def row(self) -> dict[str, Any]:
        switched = self.enabling or self.disabling
        values = {
            **group_columns(self.spec),
            "start_at": self.start_at,
            "next_at": self.next_at(),
            "is_enable": self.spec.is_enable,
            "activate_at": self.now if switched else self.group.activate_at,
            "applied": self.applied,
        }
        return {"b_id": self.group.id, **{f"b_{name}": values[name] for name in UPDATED_COLUMNS}}


def _update(
    conn: Connection,
    updates: Sequence[GroupUpdate],
    current: dict[str, GroupRow],
    now: datetime,
    applied: dict[str, str],
) -> None:
    if not updates:
        return
    by_id = {group.id: group for group in current.values()}
    enabling = [current[u.key].id for u in updates if u.after.spec.is_enable]
    # Only a group being enabled needs to know: enable creates a waiting task unless one is open.
    open_tasks = groups_with_open_task(conn, [i for i in enabling if not by_id[i].is_enable])
    first_run = _FirstRuns(now)
    edits = [
        _Edit(
            current[u.key], u.after.spec, now, current[u.key].id in open_tasks, first_run,
            applied[u.key],
        )
        for u in updates
    ]
    _update_groups(conn, [edit.row() for edit in edits])
    kept = [edit for edit in edits if not edit.disabling]
    withdraw_waiting(conn, [edit.group.id for edit in edits if edit.disabling])
    rename_waiting(
        conn,
        [(e.group.id, e.spec.job_name) for e in kept if e.spec.job_name != e.group.job_name],
    )
    move_waiting(conn, [(e.group.id, e.start()) for e in kept if e.schedule_moved])
    insert_waiting_tasks(
        conn,
        [(e.group.id, e.spec.job_name, e.start()) for e in edits if e.creates_waiting_task],
        now,
    )


# The types of UPDATED_COLUMNS, for PostgreSQL's arrays.
UPDATED_TYPES = {
    "caption": "text",
    "job_name": "text",
    "data": "text",
    "interval_ms": "bigint",
    "cron": "text",
    "time_zone": "text",
    "timeout_s": "integer",
    "misfire": "text",
    **POLICY_TYPES,
    "start_at": "timestamp",
    "next_at": "timestamp",
    "is_enable": "boolean",
    "activate_at": "timestamp",
    "applied": "text",
}


def _update_groups(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Each row by its id (the rows are locked since keyed_groups): on PostgreSQL one
    UPDATE ... FROM unnest(arrays) per chunk instead of one round trip per row."""
    if conn.dialect.name != "postgresql":
        conn.execute(_update_statement(), rows)
        return
    names = ", ".join(UPDATED_COLUMNS)
    arrays = ", ".join(f"CAST(:b_{name} AS {UPDATED_TYPES[name]}[])" for name in UPDATED_COLUMNS)
    sets = ", ".join(f"{name} = v.{name}" for name in UPDATED_COLUMNS)
    sets += ", version = task_group.version + 1"  # an apply is an edit: stale forms see it
    statement = sa.text(
        f"UPDATE task_group SET {sets} FROM unnest(CAST(:b_id AS bigint[]), {arrays})"
        f" AS v(id, {names}) WHERE task_group.id = v.id"
    )
    bound = ["b_id", *(f"b_{name}" for name in UPDATED_COLUMNS)]
    for chunk in chunked(rows, ROWS_PER_STATEMENT):
        conn.execute(statement, {name: [_naive(row[name]) for row in chunk] for name in bound})


def _naive(value: Any) -> Any:
    return naive_utc(value) if isinstance(value, datetime) else value


def _update_statement() -> sa.Update:
    columns = task_group.c
    bound = {name: sa.bindparam(f"b_{name}", type_=columns[name].type) for name in UPDATED_COLUMNS}
    return (
        task_group.update()
        .where(columns.id == sa.bindparam("b_id"))
        .values({**bound, "version": columns.version + 1})
    )


# --- last-applied records ---------------------------------------------------------------------


# Groups the file changed without changing them (what it set is what they hold, or a job's
# data was kept): only their record moves, their version stays.
_APPLIED_MANY = sa.text(
    "UPDATE task_group SET applied = v.applied"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:texts AS TEXT[])) AS v(id, applied)"
    " WHERE task_group.id = v.id"
)


def _write_applied(conn: Connection, rows: Sequence[tuple[int, str]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":  # one statement per chunk, not one per group
        for chunk in chunked(rows, ROWS_PER_STATEMENT):
            conn.execute(
                _APPLIED_MANY,
                {"ids": [i for i, _ in chunk], "texts": [t for _, t in chunk]},
            )
        return
    conn.execute(
        task_group.update()
        .where(task_group.c.id == sa.bindparam("b_id"))
        .values(applied=sa.bindparam("b_applied")),
        [{"b_id": group_id, "b_applied": text} for group_id, text in rows],
    )
