"""Alert targets in SQL: one row per target, its settings (secrets included) as JSON text.

The secrets stay in the row: the alert sender needs them to sign and log in. What leaves
the store for a person (CLI, API, web) is `TargetRow.public()`, which masks them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from fss.domain.alert_targets import TargetSpec
from fss.errors import FssError, InvalidField
from fss.store import audit
from fss.store.audit import Actor
from fss.store.tables import alert_target


class TargetNotFound(FssError, LookupError):
    def __init__(self, name: str | int) -> None:
        self.name = name
        super().__init__(f"alert target {name!r} does not exist")


@dataclass(frozen=True)
class TargetRow:
    id: int
    name: str
    kind: str
    is_default: bool
    rules: frozenset[str] | None
    rate_per_min: int
    created_at: datetime
    updated_at: datetime
    spec: TargetSpec

    def public(self) -> dict[str, Any]:
        """The target for people to read: its settings with every secret masked."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "default": self.is_default,
            "rules": None if self.rules is None else sorted(self.rules),
            "rate_per_min": self.rate_per_min,
            "config": self.spec.public_config(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _columns(spec: TargetSpec, now: datetime) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "config": json.dumps(spec.config, ensure_ascii=False, sort_keys=True),
        "is_default": spec.is_default,
        "rules": None if spec.rules is None else json.dumps(sorted(spec.rules)),
        "rate_per_min": spec.rate_per_min,
        "updated_at": now,
    }


def _row(mapping: Any) -> TargetRow:
    rules_json = mapping.rules
    rules = None if rules_json is None else frozenset(json.loads(rules_json))
    spec = TargetSpec(
        name=mapping.name,
        kind=mapping.kind,
        config=json.loads(mapping.config),
        is_default=bool(mapping.is_default),
        rules=rules,
        rate_per_min=int(mapping.rate_per_min),
    )
    return TargetRow(
        id=int(mapping.id),
        name=mapping.name,
        kind=mapping.kind,
        is_default=bool(mapping.is_default),
        rules=rules,
        rate_per_min=int(mapping.rate_per_min),
        created_at=mapping.created_at,
        updated_at=mapping.updated_at,
        spec=spec,
    )


def add_target(
    engine: Engine, spec: TargetSpec, now: datetime, actor: Actor | None = None
) -> TargetRow:
    """A new target; InvalidField("name") when one of that name exists (the unique index
    decides, so two admins adding the same name at once get one row and one error)."""
    spec = spec.validated()
    try:
        with engine.begin() as conn:
            conn.execute(
                alert_target.insert().values(name=spec.name, created_at=now, **_columns(spec, now))
            )
            row = get_target(conn, spec.name)
            audit.record(conn, actor, "target.create", now, subject=f"target {row.name}",
                         changes=audit.created(audit.target_state(row)))
            return row
    except IntegrityError:
        raise InvalidField("name", f"an alert target named {spec.name!r} already exists") from None


def replace_target(
    engine: Engine, spec: TargetSpec, now: datetime, actor: Actor | None = None
) -> TargetRow:
    """Create or overwrite the target of this name (`fss alert target apply`)."""
    spec = spec.validated()
    with engine.begin() as conn:
        return replace_target_in(conn, spec, now, actor)


def replace_target_in(
    conn: Connection, spec: TargetSpec, now: datetime, actor: Actor | None = None
) -> TargetRow:
    """replace_target within the caller's transaction (a file's targets all or none); with
    `actor`, an audit entry when it created or changed the target."""
    spec = spec.validated()
    before = targets_by_name(conn, [spec.name]).get(spec.name) if actor is not None else None
    row = _replace(conn, spec, now)
    if actor is not None:
        if before is None:
            audit.record(conn, actor, "target.create", now, subject=f"target {row.name}",
                         changes=audit.created(audit.target_state(row)))
        elif changes := audit.target_changes(before, row):
            audit.record(conn, actor, "target.update", now, subject=f"target {row.name}",
                         changes=changes)
    return row


def _replace(conn: Connection, spec: TargetSpec, now: datetime) -> TargetRow:
    values = _columns(spec, now)
    where = alert_target.c.name == spec.name
    if not conn.execute(alert_target.update().where(where).values(**values)).rowcount:
        try:
            with conn.begin_nested():
                conn.execute(alert_target.insert().values(name=spec.name, created_at=now, **values))
        except IntegrityError:
            # Inserted by someone else in between: overwrite theirs, as a later apply would.
            conn.execute(alert_target.update().where(where).values(**values))
    return get_target(conn, spec.name)


def list_targets(conn: Connection) -> list[TargetRow]:
    rows = conn.execute(sa.select(alert_target).order_by(alert_target.c.name)).all()
    return [_row(r) for r in rows]


def get_target(conn: Connection, name: str) -> TargetRow:
    found = conn.execute(sa.select(alert_target).where(alert_target.c.name == name)).first()
    if found is None:
        raise TargetNotFound(name)
    return _row(found)


def targets_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, TargetRow]:
    """The targets with these ids that exist (a removed target is simply missing)."""
    wanted = sorted({int(i) for i in ids})
    found: dict[int, TargetRow] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(sa.select(alert_target).where(alert_target.c.id.in_(chunk))).all()
        found.update((int(r.id), _row(r)) for r in rows)
    return found


def targets_by_name(conn: Connection, names: Sequence[str]) -> dict[str, TargetRow]:
    """The targets with these names that exist (for checking a group's `alert_targets`)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = conn.execute(sa.select(alert_target).where(alert_target.c.name.in_(wanted))).all()
    return {r.name: _row(r) for r in rows}


def default_targets(conn: Connection) -> list[TargetRow]:
    rows = conn.execute(
        sa.select(alert_target)
        .where(alert_target.c.is_default == sa.true())
        .order_by(alert_target.c.name)
    ).all()
    return [_row(r) for r in rows]


def remove_target(
    engine: Engine, name: str, now: datetime | None = None, actor: Actor | None = None
) -> None:
    with engine.begin() as conn:
        before = targets_by_name(conn, [name]).get(name)
        removed = conn.execute(alert_target.delete().where(alert_target.c.name == name)).rowcount
        if removed and before is not None and actor is not None:
            if now is None:
                raise TypeError("an audited remove needs `now`")
            audit.record(conn, actor, "target.delete", now, subject=f"target {name}",
                         changes=audit.deleted(audit.target_state(before)))
    if not removed:
        raise TargetNotFound(name)
