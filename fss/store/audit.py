"""The audit trail: who changed what, when and from where.

Every change an operator makes (web, API or CLI) writes one `audit_event` row with the
connection of the change itself, so the row commits with the change or not at all: a change
that rolls back (refused, stale, a constraint) leaves no row, and a change cannot commit
without its row. `changes` holds {field: [before, after]} (a group's data included);
secrets never reach it (alert target secrets are masked, see target_state).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fss.errors import InvalidField
from fss.store.tables import audit_event, task_group

# What an entry says was done (the `action` column).
ACTIONS = (
    "group.create", "group.edit", "group.enable", "group.disable", "group.run",
    "group.delete", "group.apply", "group.backfill", "group.backfill_cancel",
    "task.kill", "client.kick", "client.admit", "dead_letters.purge",
    "alert.ack", "alert.silence", "alert.unsilence",
    "target.create", "target.update", "target.delete",
    "login", "logout", "login.refused",
)
# How the actor proved who it is: a web session, HTTP Basic, a named API token, the web
# started with --no-auth, or the CLI (its OS user).
ACTOR_KINDS = ("session", "basic", "token", "noauth", "cli")
MASK = "***"
MAX_ACTOR, MAX_SOURCE, MAX_SUBJECT = 128, 256, 200
DEFAULT_PAGE, MAX_PAGE = 100, 1000
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a user or token name, how it was proven, and from where (the web
    client's address, the CLI's host)."""

    name: str
    kind: str
    source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise ValueError(f"unknown actor kind {self.kind!r}")
        object.__setattr__(self, "name", (self.name or "unknown")[:MAX_ACTOR])
        if self.source is not None:
            object.__setattr__(self, "source", self.source[:MAX_SOURCE])

    @property
    def label(self) -> str:
        """How messages name the actor: `alice`, `deploy (token)`, `bob@db1 (cli)`."""
        if self.kind == "cli":
            return f"{self.name}@{self.source} (cli)" if self.source else f"{self.name} (cli)"
        return self.name if self.kind in ("session", "basic") else f"{self.name} ({self.kind})"


PLAIN = (str, int, float, bool, type(None))


def jsonable(value: Any) -> Any:
    """A value as the trail stores it: times as ISO 8601, tuples and sets as lists. (A
    groups file's apply turns every field of thousands of groups: plain values return first.)"""
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [before, after]} for each field whose value differs (absent = None)."""
    changed: dict[str, list[Any]] = {}
    for name in [*before, *(k for k in after if k not in before)]:
        old, new = jsonable(before.get(name)), jsonable(after.get(name))
        if old != new:
            changed[name] = [old, new]
    return changed


def created(after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A new row's fields, each as [None, value] (fields left empty are left out)."""
    return diff({}, after)


def deleted(before: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A removed row's fields, each as [value, None]."""
    return diff(before, {})


def target_state(row: Any) -> dict[str, Any]:
    """An alert target's fields for the trail, its secrets masked: `config.<name>` holds the
    public form (fss.domain.alert_targets.public_config); a secret that changed shows as
    `***` -> `*** (changed)`, never its value."""
    state: dict[str, Any] = {
        "kind": row.kind, "default": row.is_default,
        "rules": None if row.rules is None else sorted(row.rules),
        "rate_per_min": row.rate_per_min,
    }
    state.update({f"config.{k}": v for k, v in row.spec.public_config().items()})
    return state


def target_changes(before: Any, after: Any) -> dict[str, list[Any]]:
    """diff of two targets' states, plus each secret that changed behind its mask."""
    changes = diff(target_state(before), target_state(after))
    old, new = before.spec.config, after.spec.config
    for key in ("secret", "password"):
        if old.get(key) != new.get(key) and f"config.{key}" not in changes:
            changes[f"config.{key}"] = [MASK, f"{MASK} (changed)"]
    return changes


def _text(document: Mapping[str, Any] | None) -> str | None:
    if not document:
        return None
    return json.dumps(document, ensure_ascii=False, default=jsonable)


def entry(
    actor: Actor,
    action: str,
    now: datetime,
    *,
    group_id: int | None = None,
    subject: str | None = None,
    changes: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One row's values (record writes one, record_many many in one statement)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return {
        "at": now,
        "actor": actor.name,
        "actor_kind": actor.kind,
        "source": actor.source,
        "action": action,
        "task_group_id": group_id,
        "subject": None if subject is None else subject[:MAX_SUBJECT],
        "changes": _text(changes),
        "detail": _text(detail),
    }


def record(
    conn: Connection,
    actor: Actor | None,
    action: str,
    now: datetime,
    **what: Any,
) -> None:
    """Write the entry in the caller's transaction (the change's own). Without an actor
    (the scheduler's own changes, library calls) nothing is recorded."""
    if actor is not None:
        conn.execute(audit_event.insert().values(entry(actor, action, now, **what)))


def record_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Entries made by `entry`, in one executemany (a groups file's apply)."""
    for start in range(0, len(rows), 5000):
        conn.execute(audit_event.insert(), list(rows[start : start + 5000]))


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    actor_kind: str
    source: str | None
    action: str
    group_id: int | None
    subject: str | None
    changes: dict[str, list[Any]]
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> AuditRow:
        return cls(
            int(row.id), row.at, row.actor, row.actor_kind, row.source, row.action,
            None if row.task_group_id is None else int(row.task_group_id), row.subject,
            json.loads(row.changes) if row.changes else {},
            json.loads(row.detail) if row.detail else {},
        )

    @property
    def who(self) -> str:
        return Actor(self.actor, self.actor_kind, self.source).label

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "actor_kind": self.actor_kind,
            "source": self.source,
            "action": self.action,
            "group_id": self.group_id,
            "subject": self.subject,
            "changes": self.changes,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to list, newest first: a group (by id, or by the key or caption it had
    when it was deleted), since a time, one actor, one action, ids below `before_id` (the
    next page)."""

    group: str | int | None = None
    since: datetime | None = None
    user: str | None = None
    action: str | None = None
    before_id: int | None = None
    limit: int = DEFAULT_PAGE

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise InvalidField("limit", f"must be 1..{MAX_PAGE}")
        if self.action is not None and self.action not in ACTIONS:
            raise InvalidField("action", f"{self.action!r} is not one of {', '.join(ACTIONS)}")


def _group_condition(conn: Connection, ref: str | int) -> Any:
    """An id (digits) matches the group's entries; a key matches the group that has it now,
    or, when none has, the entries of deleted groups that were named so."""
    text = str(ref).strip()
    if text.isascii() and text.isdigit():
        return audit_event.c.task_group_id == int(text)
    found = conn.execute(sa.select(task_group.c.id).where(task_group.c.key == text)).scalar()
    if found is not None:
        return audit_event.c.task_group_id == int(found)
    return sa.and_(audit_event.c.task_group_id.is_not(None), audit_event.c.subject == text)


def list_audit(conn: Connection, wanted: AuditFilter) -> list[AuditRow]:
    query = sa.select(audit_event).order_by(audit_event.c.id.desc()).limit(wanted.limit)
    if wanted.group is not None:
        query = query.where(_group_condition(conn, wanted.group))
    if wanted.since is not None:
        query = query.where(audit_event.c.at >= wanted.since)
    if wanted.user is not None:
        query = query.where(audit_event.c.actor == wanted.user)
    if wanted.action is not None:
        query = query.where(audit_event.c.action == wanted.action)
    if wanted.before_id is not None:
        query = query.where(audit_event.c.id < wanted.before_id)
    return [AuditRow.from_row(r) for r in conn.execute(query)]


def actors(conn: Connection, limit: int = 200) -> list[str]:
    """The names that made changes (for the Audit page's filter)."""
    query = sa.select(audit_event.c.actor).distinct().order_by(audit_event.c.actor).limit(limit)
    return list(conn.execute(query).scalars())


def prune_audit(engine: Engine, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
    """Delete entries older than `older_than`, `batch` at a time (short transactions)."""
    removed = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(
                sa.select(audit_event.c.id).where(audit_event.c.at < older_than)
                .order_by(audit_event.c.id).limit(batch)
            ).scalars())
            if not ids:
                return removed
            removed += conn.execute(audit_event.delete().where(audit_event.c.id.in_(ids))).rowcount


def group_label(key: str | None, caption: str) -> str:
    """How an entry names a group (kept after the group is deleted): its key, else caption."""
    return key or caption
