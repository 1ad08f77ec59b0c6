"""Alerts in SQL: raising and resolving them, and their outbox of notices.

An alert is raised in the transaction of the event that raised it (a run's final failure,
a client dropped, a check of the alert sender) and writes its `alert_notice` row there
too: the notice is sent once that transaction commits, never for an event rolled back, and
never lost with a process killed after the commit. One open alert per (rule, subject) is a
property of the schema (the unique `open_key`): raising an open one again counts it up,
and sends a reminder only once per repeat window and never for an acknowledged alert.

A group with an alert open carries `alert_open`, read with the group rows a run's end
locks anyway: a success resolves its run alerts, and only then costs statements.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from fss.domain.alerts import (
    DEFAULT_POLICY,
    FIRING,
    MAX_DETAIL,
    MAX_TITLE,
    REMINDER,
    RESOLVED,
    RUN_RULES,
    AlertPolicy,
    clip,
    failure_rule,
    group_rules_on,
    group_subject,
    open_key,
)
from fss.domain.retry import failure_summary
from fss.store.tables import alert, alert_notice, client, task_group


@dataclass(frozen=True)
class Raised:
    alert_id: int
    # True: a new alert (its firing notice written); False: an open one counted up.
    new: bool
    reminded: bool = False


def raise_alert(
    conn: Connection,
    *,
    rule: str,
    subject: str,
    title: str,
    now: datetime,
    detail: str | None = None,
    group_id: int | None = None,
    task_id: int | None = None,
    client_id: str | None = None,
    planned_at: datetime | None = None,
    repeat_after: timedelta | None = None,
    count_up: bool = True,
    reopen_within: timedelta | None = None,
) -> Raised:
    """Open the alert (rule, subject) with its firing notice, or count the open one up.

    `repeat_after`: an open, unacknowledged alert last notified longer ago than this gets
    a reminder notice. `count_up=False`: a check that finds the same state again (the
    sender's periodic checks) touches nothing unless a reminder is due. `reopen_within`:
    an alert of this rule and subject resolved less than this long ago whose resolved
    notice is still held back is reopened instead (flapping: no notice either way)."""
    key = open_key(rule, subject)
    if reopen_within is not None and reopen_within > timedelta(0):
        reopened = _reopen(conn, rule, subject, key, now, reopen_within, task_id, detail)
        if reopened is not None:
            if group_id is not None:
                _flag_group(conn, group_id)
            return Raised(reopened, False)
    values = {
        "rule": rule,
        "subject": subject[:200],
        "open_key": key,
        "state": "open",
        "task_group_id": group_id,
        "task_id": task_id,
        "client_id": client_id,
        "planned_at": planned_at,
        "title": clip(title, MAX_TITLE),
        "detail": None if detail is None else clip(detail, MAX_DETAIL),
        "count": 1,
        "opened_at": now,
        "last_at": now,
        "notified_at": now,
    }
    alert_id = _insert_if_absent(conn, values)
    if alert_id is not None:
        conn.execute(alert_notice.insert().values(alert_id=alert_id, kind=FIRING, created_at=now))
        if group_id is not None:
            _flag_group(conn, group_id)
        return Raised(alert_id, True)
    if count_up:
        changes: dict[str, Any] = {"count": alert.c.count + 1, "last_at": now}
        if task_id is not None:
            changes["task_id"] = task_id
        if detail is not None:
            changes["detail"] = clip(detail, MAX_DETAIL)
        conn.execute(alert.update().where(alert.c.open_key == key).values(**changes))
    existing = conn.execute(sa.select(alert.c.id).where(alert.c.open_key == key)).scalar()
    if existing is None:  # resolved between the insert and here: nothing open to count
        return Raised(0, False)
    reminded = False
    if repeat_after is not None and repeat_after > timedelta(0):
        reminded = (
            conn.execute(
                alert.update()
                .where(
                    alert.c.id == existing,
                    alert.c.open_key.is_not(None),
                    alert.c.acked_at.is_(None),
                    alert.c.notified_at < now - repeat_after,
                )
                .values(notified_at=now)
            ).rowcount
            == 1
        )
        if reminded:
            conn.execute(
                alert_notice.insert().values(alert_id=existing, kind=REMINDER, created_at=now)
            )
    return Raised(int(existing), False, reminded)


def _flag_group(conn: Connection, group_id: int) -> None:
    conn.execute(
        task_group.update()
        .where(task_group.c.id == group_id, task_group.c.alert_open == sa.false())
        .values(alert_open=True)
    )


def _reopen(
    conn: Connection,
    rule: str,
    subject: str,
    key: str,
    now: datetime,
    within: timedelta,
    task_id: int | None,
    detail: str | None,
) -> int | None:
    """Reopen the newest alert of (rule, subject) resolved within `within` whose resolved
    notice has not gone out: that notice is withdrawn (the DELETE's row lock makes one
    raiser the reopener) and the alert is open again, counted up. None: nothing to reopen
    (none that recent, its resolution already told, or one open already)."""
    recent = conn.execute(
        sa.select(alert.c.id)
        .where(
            alert.c.rule == rule,
            alert.c.subject == subject[:200],
            alert.c.open_key.is_(None),
            alert.c.resolved_at >= now - within,
        )
        .order_by(alert.c.id.desc())
        .limit(1)
    ).scalar()
    if recent is None:
        return None
    if conn.execute(sa.select(alert.c.id).where(alert.c.open_key == key)).first() is not None:
        return None  # open again already: the caller counts that one up
    withdrawn = conn.execute(
        alert_notice.delete().where(
            alert_notice.c.alert_id == recent,
            alert_notice.c.kind == RESOLVED,
            alert_notice.c.expanded_at.is_(None),
        )
    ).rowcount
    if withdrawn != 1:
        return None
    changes: dict[str, Any] = {
        "open_key": key, "state": "open", "resolved_at": None, "resolved_note": None,
        "count": alert.c.count + 1, "last_at": now,
    }
    if task_id is not None:
        changes["task_id"] = task_id
    if detail is not None:
        changes["detail"] = clip(detail, MAX_DETAIL)
    conn.execute(alert.update().where(alert.c.id == recent).values(**changes))
    return int(recent)


def _insert_if_absent(conn: Connection, values: dict[str, Any]) -> int | None:
    """INSERT unless an open alert holds the key: the new id, or None. Never an error that
    would abort the caller's transaction (PostgreSQL aborts it on a unique violation)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(alert).values(values).on_conflict_do_nothing().returning(alert.c.id)
        row = conn.execute(pg).first()
        return None if row is None else int(row[0])
    if dialect == "mysql":
        result = conn.execute(mysql.insert(alert).values(values).prefix_with("IGNORE"))
    else:
        result = conn.execute(sqlite.insert(alert).values(values).on_conflict_do_nothing())
    if result.rowcount != 1:
        return None
    key = result.inserted_primary_key
    return None if key is None else int(key[0])


def resolve_alerts(
    conn: Connection, keys: Iterable[str], note: str, now: datetime
) -> list[int]:
    """Close the open alerts among `keys` ("<rule>|<subject>"), each with one resolved
    notice; the ids closed. A key with nothing open costs nothing but the indexed read."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    rows = conn.execute(
        sa.select(alert.c.id, alert.c.task_group_id)
        .where(alert.c.open_key.in_(wanted))
        .order_by(alert.c.id)
        .with_for_update()
    ).all()
    return _close(conn, rows, note, now)


def resolve_alert_ids(conn: Connection, ids: Iterable[int], note: str, now: datetime) -> list[int]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = conn.execute(
        sa.select(alert.c.id, alert.c.task_group_id)
        .where(alert.c.id.in_(wanted), alert.c.open_key.is_not(None))
        .order_by(alert.c.id)
        .with_for_update()
    ).all()
    return _close(conn, rows, note, now)


def _close(conn: Connection, rows: Sequence[Any], note: str, now: datetime) -> list[int]:
    closed: list[int] = []
    for row in rows:
        done = conn.execute(
            alert.update()
            .where(alert.c.id == row.id, alert.c.open_key.is_not(None))
            .values(open_key=None, state="resolved", resolved_at=now, resolved_note=note[:300])
        ).rowcount
        if done:
            closed.append(int(row.id))
    if closed:
        conn.execute(
            alert_notice.insert(),
            [{"alert_id": i, "kind": RESOLVED, "created_at": now} for i in closed],
        )
        groups = sorted({int(r.task_group_id) for r in rows if r.task_group_id is not None})
        if groups:
            clear_alert_flags(conn, groups)
    return closed


def clear_alert_flags(conn: Connection, group_ids: Sequence[int]) -> None:
    """`alert_open` off for these groups where no alert about them is open any more."""
    still_open = (
        sa.select(alert.c.id)
        .where(alert.c.task_group_id == task_group.c.id, alert.c.open_key.is_not(None))
        .exists()
    )
    conn.execute(
        task_group.update()
        .where(task_group.c.id.in_(group_ids), task_group.c.alert_open == sa.true(), ~still_open)
        .values(alert_open=False)
    )


def repair_alert_flags(conn: Connection) -> int:
    """Set `alert_open` where an open alert names a group whose flag is off (a resolve and
    a raise committed across each other): the sender's checks run this, so a success
    resolves every alert of its group however the two raced."""
    groups = sorted(
        {
            int(g)
            for g in conn.execute(
                sa.select(alert.c.task_group_id).where(
                    alert.c.open_key.is_not(None), alert.c.task_group_id.is_not(None)
                )
            ).scalars()
        }
    )
    if not groups:
        return 0
    return conn.execute(
        task_group.update()
        .where(task_group.c.id.in_(groups), task_group.c.alert_open == sa.false())
        .values(alert_open=True)
    ).rowcount


@dataclass(frozen=True)
class RunEnd:
    """A run's end as the alert rules see it."""

    group_id: int
    task_id: int
    attempt: int
    success: bool
    error: str | None
    planned_at: datetime
    client_id: str | None = None


def note_run_ends(
    conn: Connection,
    ends: Sequence[RunEnd],
    groups: dict[int, Any],
    now: datetime,
    policy: AlertPolicy = DEFAULT_POLICY,
) -> None:
    """Final ends of runs, in the transaction that ended them: a failure raises its rule's
    alert for the group (when the rule is on for it), a success resolves the group's run
    alerts. `groups`: the groups' rows as the finish read them (alert_rules, alert_open).
    A batch of successes of groups with nothing open runs no statement."""
    resolving = [e for e in ends if e.success and _flag(groups.get(e.group_id))]
    failing = [e for e in ends if not e.success]
    for end in {e.group_id: e for e in resolving}.values():
        keys = [open_key(rule, group_subject(end.group_id)) for rule in RUN_RULES]
        resolve_alerts(conn, keys, f"the group succeeded again (task {end.task_id})", now)
    raising = []
    for end in failing:
        group = groups.get(end.group_id)
        rule = failure_rule(end.error)
        if rule in group_rules_on(policy.rules, None if group is None else group.alert_rules):
            raising.append((end, rule))
    if not raising:
        return
    names = _group_names(conn, {end.group_id for end, _ in raising})
    for end, rule in raising:
        what = {"time_limit": "stopped at its time limit", "hung": "failed as hung"}.get(
            rule, "failed"
        )
        where = f" on {end.client_id}" if end.client_id else ""
        raise_alert(
            conn,
            rule=rule,
            subject=group_subject(end.group_id),
            title=f"{names.get(end.group_id, f'group {end.group_id}')}: run {what}",
            detail=(
                f"task {end.task_id} attempt {end.attempt}{where}: "
                f"{failure_summary(end.error)}"
            ),
            now=now,
            group_id=end.group_id,
            task_id=end.task_id,
            client_id=end.client_id,
            planned_at=end.planned_at,
            repeat_after=policy.repeat_after, reopen_within=policy.resolve_hold,
        )


def _flag(group: Any) -> bool:
    return bool(group is not None and getattr(group, "alert_open", False))


def _group_names(conn: Connection, group_ids: set[int]) -> dict[int, str]:
    """How a message names each group: its key, else its caption, with its job."""
    if not group_ids:
        return {}
    rows = conn.execute(
        sa.select(task_group.c.id, task_group.c.key, task_group.c.caption, task_group.c.job_name)
        .where(task_group.c.id.in_(sorted(group_ids)))
    )
    return {r.id: f"{r.key or r.caption or f'group {r.id}'} ({r.job_name})" for r in rows}



def describe_client(conn: Connection, client_id: str) -> str:
    """A client as an alert names it: where it ran and what it served."""
    row = conn.execute(
        sa.select(client.c.host, client.c.pid, client.c.job_names, client.c.heartbeat_at).where(
            client.c.id == client_id
        )
    ).first()
    if row is None:
        return "no longer registered"
    try:
        jobs = ", ".join(json.loads(row.job_names or "[]")) or "no jobs"
    except ValueError:
        jobs = "unknown jobs"
    return (
        f"ran on {row.host} (pid {row.pid}), served {jobs}; "
        f"last heartbeat {row.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
    )
