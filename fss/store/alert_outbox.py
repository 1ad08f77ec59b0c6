"""The alert outbox: notices become deliveries (one per target), deliveries are attempted.

Only the holder of the `alerts` lease works here (fss.scheduler.alerts). Turning notices
into deliveries is one transaction: the notices it read are marked expanded in it, and the
unique (notice, target) keeps a replay from writing a delivery twice. A storm (more
firing notices of one rule for one target than the threshold) becomes one summary
delivery; the notices it stands for keep a delivery each in state `folded`, pointing at it.
A delivery stays `pending` until an attempt succeeds or its attempts are used up; a sender
killed in the middle of a send leaves it pending, and the next holder sends it again with
the same idempotency key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.alerts import (
    CLIENT_LOST,
    FIRING,
    JOB_UNSERVED,
    NODE_LOST,
    RESOLVED,
    AlertView,
    Message,
    delivery_backoff,
    notice_message,
    plan_storm,
    storm_message,
)
from fss.domain.clock import as_utc
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_silence,
    alert_target,
    inserted_id,
    task_group,
)

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
SILENCED = "silenced"
FOLDED = "folded"
MAX_ANSWER = 2000
NO_WAIT = timedelta(0)
GROUP_WAIT_CAP = 5
# The cluster rules a storm summary names as its likely cause.
CAUSE_RULES = (CLIENT_LOST, NODE_LOST, JOB_UNSERVED)


@dataclass(frozen=True)
class _Target:
    id: int
    name: str
    is_default: bool
    rules: frozenset[str] | None


def _targets(conn: Connection) -> list[_Target]:
    rows = conn.execute(
        sa.select(
            alert_target.c.id, alert_target.c.name, alert_target.c.is_default,
            alert_target.c.rules,
        ).order_by(alert_target.c.id)
    )
    return [
        _Target(
            int(r.id), r.name, bool(r.is_default),
            None if r.rules is None else frozenset(json.loads(r.rules)),
        )
        for r in rows
    ]


def _group_settings(conn: Connection, group_ids: set[int], now: datetime) -> tuple[
    dict[int, list[str] | None], set[int]
]:
    """Each group's own target names (None: the defaults), and the silenced groups."""
    if not group_ids:
        return {}, set()
    ids = sorted(group_ids)
    named: dict[int, list[str] | None] = {}
    for row in conn.execute(
        sa.select(task_group.c.id, task_group.c.alert_targets).where(task_group.c.id.in_(ids))
    ):
        names = json.loads(row.alert_targets) if row.alert_targets else None
        named[int(row.id)] = names or None
    silenced = set(
        conn.execute(
            sa.select(alert_silence.c.task_group_id).where(
                alert_silence.c.task_group_id.in_(ids), alert_silence.c.until > now
            )
        ).scalars()
    )
    return named, {int(g) for g in silenced}


def expand_notices(
    conn: Connection,
    now: datetime,
    *,
    storm_threshold: int,
    installation: str,
    console_url: str = "",
    limit: int = 2000,
    group_wait: timedelta = NO_WAIT,
    resolve_hold: timedelta = NO_WAIT,
    group_interval: timedelta = NO_WAIT,
) -> int:
    """Turn pending notices into deliveries; how many notices were expanded. Nothing until
    the newest pending notice is `group_wait` old (or the oldest five times that); then every
    pending one (up to `limit`), so the notices of a storm raised over a few checks fold
    together. A resolved notice waits `resolve_hold` first: raised again meanwhile, its
    alert is reopened and the notice withdrawn (fss.store.alerts). Stragglers of a storm
    folded less than `group_interval` ago wait until then and go out as one follow-up
    summary; a later notice of the same alert waits with them, so it never overtakes."""
    ready = sa.and_(
        alert_notice.c.expanded_at.is_(None),
        sa.or_(alert_notice.c.kind != RESOLVED, alert_notice.c.created_at <= now - resolve_hold),
    )
    if group_wait > NO_WAIT:
        oldest = conn.execute(
            sa.select(sa.func.min(alert_notice.c.created_at)).where(ready)
        ).scalar()
        if oldest is None or oldest > now - group_wait:
            return 0
    folds = _recent_folds(conn, now, group_interval) if group_interval > NO_WAIT else {}
    held_keys = {key for key, last in folds.items() if last > now - group_interval}
    pending_rows = conn.execute(
        sa.select(
            alert_notice.c.id, alert_notice.c.kind, alert_notice.c.alert_id,
            alert_notice.c.created_at, alert.c.rule, alert.c.task_group_id,
        )
        .join(alert, alert.c.id == alert_notice.c.alert_id)
        .where(ready)
        .order_by(alert_notice.c.id)
        .limit(limit)
        .with_for_update(of=alert_notice)
    ).all()
    held_alerts: set[int] = set()
    notices = []
    for row in pending_rows:
        if (row.kind, row.rule) in held_keys or row.alert_id in held_alerts:
            held_alerts.add(row.alert_id)
        else:
            notices.append(row)
    if not notices:
        return 0
    if group_wait > NO_WAIT:
        raised = [as_utc(n.created_at) for n in notices]
        # A storm is raised over several checks (groups going late one check after another,
        # a loaded host checking slowly): wait until the checks have raised nothing new for
        # `group_wait`, but no longer than GROUP_WAIT_CAP times that after the oldest.
        if max(raised) > now - group_wait and min(raised) > now - group_wait * GROUP_WAIT_CAP:
            return 0
    targets = _targets(conn)
    by_name = {t.name: t for t in targets}
    groups = {int(n.task_group_id) for n in notices if n.task_group_id is not None}
    named, silenced = _group_settings(conn, groups, now)
    per_target: dict[int, list[Any]] = {}
    for notice in notices:
        group_id = None if notice.task_group_id is None else int(notice.task_group_id)
        names = named.get(group_id) if group_id is not None else None
        chosen = (
            [by_name[n] for n in names if n in by_name]
            if names
            else [t for t in targets if t.is_default]
        )
        for target in chosen:
            if target.rules is not None and notice.rule not in target.rules:
                continue
            per_target.setdefault(target.id, []).append(notice)
    rows: list[dict[str, Any]] = []
    target_names = {t.id: t.name for t in targets}
    for target_id, pending in per_target.items():
        plan = plan_storm([(n.id, n.kind, n.rule) for n in pending], storm_threshold, folds)
        alone = set(plan.alone)
        for notice in pending:
            if notice.id not in alone:
                continue
            quiet = notice.task_group_id is not None and int(notice.task_group_id) in silenced
            rows.append(
                _delivery(notice.id, target_id, target_names[target_id],
                          SILENCED if quiet else PENDING, now, installation)
            )
        for (kind, rule), folded in plan.folded.items():
            _write_summary(
                conn, kind, rule, folded, pending, target_id, target_names[target_id], now,
                installation, console_url,
            )
    if rows:
        conn.execute(alert_delivery.insert(), rows)
    conn.execute(
        alert_notice.update()
        .where(alert_notice.c.id.in_([n.id for n in notices]))
        .values(expanded_at=now)
    )
    return len(notices)


def _recent_folds(
    conn: Connection, now: datetime, group_interval: timedelta
) -> dict[tuple[str, str], datetime]:
    """(kind, rule) -> when its last storm was folded, for the storms folded in the last two
    `group_interval`s: held while the last fold is younger than one, folded again after."""
    rows = conn.execute(
        sa.select(
            alert_notice.c.kind, alert.c.rule, sa.func.max(alert_delivery.c.created_at)
        )
        .select_from(
            alert_delivery.join(alert_notice, alert_notice.c.id == alert_delivery.c.notice_id)
            .join(alert, alert.c.id == alert_notice.c.alert_id)
        )
        .where(
            alert_delivery.c.state == FOLDED,
            alert_delivery.c.created_at > now - 2 * group_interval,
        )
        .group_by(alert_notice.c.kind, alert.c.rule)
    )
    return {(kind, rule): as_utc(last) for kind, rule, last in rows}


def _delivery(
    notice_id: int | None,
    target_id: int,
    target_name: str,
    state: str,
    now: datetime,
    installation: str,
    key: str | None = None,
) -> dict[str, Any]:
    return {
        "notice_id": notice_id,
        "target_id": target_id,
        "target_name": target_name,
        "state": state,
        "attempts": 0,
        "next_at": now,
        "created_at": now,
        "idempotency_key": key or f"fss-{installation or 'fss'}-n{notice_id}-t{target_id}",
    }


def _write_summary(
    conn: Connection,
    kind: str,
    rule: str,
    folded: list[int],
    pending: list[Any],
    target_id: int,
    target_name: str,
    now: datetime,
    installation: str,
    console_url: str,
) -> None:
    members = set(folded)
    alert_ids = [n.alert_id for n in pending if n.id in members]
    views = alert_views(conn, alert_ids)
    causes = open_causes(conn, rule) if kind == FIRING else []
    key = f"fss-{installation or 'fss'}-s{min(folded)}-{kind}-{rule}-t{target_id}"
    message = storm_message(
        kind,
        rule, [views[i] for i in alert_ids if i in views], causes, key, now,
        console_url=console_url, installation=installation,
    )
    summary = _delivery(None, target_id, target_name, PENDING, now, installation, key)
    summary["summary"] = json.dumps(_message_fields(message))
    summary_id = inserted_id(conn.execute(alert_delivery.insert().values(summary)))
    conn.execute(
        alert_delivery.insert(),
        [
            {**_delivery(notice_id, target_id, target_name, FOLDED, now, installation),
             "folded_into": summary_id, "next_at": None}
            for notice_id in folded
        ],
    )


def _message_fields(message: Message) -> dict[str, Any]:
    return {
        "kind": message.kind,
        "rule": message.rule,
        "title": message.title,
        "text": message.text,
        "count": message.count,
        "url": message.url,
        "alert_ids": list(message.alert_ids),
    }


def summary_message(
    delivery: DueDelivery, now: datetime, installation: str, console_url: str = ""
) -> Message:
    fields = json.loads(delivery.summary or "{}")
    base = console_url.rstrip("/")
    return Message(
        idempotency_key=delivery.idempotency_key,
        kind=fields.get("kind", "summary"),
        rule=fields.get("rule", ""),
        title=fields.get("title", ""),
        text=fields.get("text", ""),
        at=now,
        count=int(fields.get("count", 0)),
        url=fields.get("url") or (f"{base}/alerts" if base else None),
        alert_ids=tuple(fields.get("alert_ids", [])),
        installation=installation,
    )


_VIEW_COLUMNS = (
    alert.c.id, alert.c.rule, alert.c.subject, alert.c.state, alert.c.title, alert.c.detail,
    alert.c.count, alert.c.opened_at, alert.c.resolved_at, alert.c.resolved_note,
    alert.c.task_group_id, alert.c.task_id, alert.c.client_id,
    task_group.c.key.label("group_key"), task_group.c.caption.label("group_caption"),
    task_group.c.job_name,
)


def alert_views(conn: Connection, alert_ids: Sequence[int]) -> dict[int, AlertView]:
    if not alert_ids:
        return {}
    rows = conn.execute(
        sa.select(*_VIEW_COLUMNS)
        .select_from(alert.outerjoin(task_group, task_group.c.id == alert.c.task_group_id))
        .where(alert.c.id.in_(sorted(set(alert_ids))))
    )
    return {int(r.id): AlertView(**dict(r._mapping)) for r in rows}


def open_causes(conn: Connection, rule: str) -> list[AlertView]:
    """The open cluster alerts a storm of `rule` may come from (a storm of those rules
    names none: it is the cause)."""
    if rule in CAUSE_RULES:
        return []
    ids = conn.execute(
        sa.select(alert.c.id)
        .where(alert.c.open_key.is_not(None), alert.c.rule.in_(CAUSE_RULES))
        .order_by(alert.c.opened_at)
        .limit(5)
    ).scalars().all()
    views = alert_views(conn, [int(i) for i in ids])
    return [views[int(i)] for i in ids if int(i) in views]


@dataclass(frozen=True)
class DueDelivery:
    id: int
    target_id: int
    target_name: str
    notice_id: int | None
    notice_kind: str | None
    alert_id: int | None
    summary: str | None
    attempts: int
    idempotency_key: str


def due_deliveries(conn: Connection, now: datetime, limit: int = 500) -> list[DueDelivery]:
    """Pending deliveries whose time has come, oldest first (notices in their order)."""
    rows = conn.execute(
        sa.select(
            alert_delivery.c.id, alert_delivery.c.target_id, alert_delivery.c.target_name,
            alert_delivery.c.notice_id, alert_notice.c.kind.label("notice_kind"),
            alert_notice.c.alert_id, alert_delivery.c.summary, alert_delivery.c.attempts,
            alert_delivery.c.idempotency_key,
        )
        .select_from(
            alert_delivery.outerjoin(
                alert_notice, alert_notice.c.id == alert_delivery.c.notice_id
            )
        )
        .where(alert_delivery.c.state == PENDING, alert_delivery.c.next_at <= now)
        .order_by(alert_delivery.c.id)
        .limit(limit)
    )
    return [DueDelivery(**dict(r._mapping)) for r in rows]


def compose(
    conn: Connection,
    deliveries: Sequence[DueDelivery],
    now: datetime,
    installation: str,
    console_url: str,
) -> dict[int, Message]:
    """The message of each delivery (a notice's, or the summary's as it was composed)."""
    views = alert_views(conn, [d.alert_id for d in deliveries if d.alert_id is not None])
    messages: dict[int, Message] = {}
    for delivery in deliveries:
        if delivery.notice_id is None:
            messages[delivery.id] = summary_message(delivery, now, installation, console_url)
            continue
        view = views.get(delivery.alert_id or 0)
        if view is None or delivery.notice_kind is None:
            continue
        messages[delivery.id] = notice_message(
            view, delivery.notice_kind, delivery.idempotency_key, now,
            console_url=console_url, installation=installation,
        )
    return messages


def sent_since(conn: Connection, since: datetime) -> dict[int, int]:
    """Deliveries sent per target since `since` (the per-target rate limit)."""
    rows = conn.execute(
        sa.select(alert_delivery.c.target_id, sa.func.count())
        .where(alert_delivery.c.sent_at >= since)
        .group_by(alert_delivery.c.target_id)
    )
    return {int(t): int(n) for t, n in rows}


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    answer: str
    error: str | None
    duration_ms: int


def record_attempt(
    conn: Connection,
    delivery: DueDelivery,
    result: AttemptResult,
    now: datetime,
    *,
    node: str,
    max_attempts: int,
) -> bool:
    """The attempt's row, and the delivery sent, retried later (backoff) or failed for good.
    Guarded by the attempt count the sender read: a second sender's record of the same
    attempt changes nothing (its attempt row is kept: both sends happened)."""
    attempts = delivery.attempts + 1
    conn.execute(
        alert_attempt.insert().values(
            delivery_id=delivery.id,
            target_name=delivery.target_name,
            at=now,
            outcome=SENT if result.ok else FAILED,
            status_code=result.status_code,
            answer=(result.answer or "")[:MAX_ANSWER] or None,
            error=None if result.error is None else result.error[:MAX_ANSWER],
            duration_ms=max(0, result.duration_ms),
            node=node[:128],
        )
    )
    guard = (
        alert_delivery.c.id == delivery.id,
        alert_delivery.c.state == PENDING,
        alert_delivery.c.attempts == delivery.attempts,
    )
    if result.ok:
        values: dict[str, Any] = {"state": SENT, "attempts": attempts, "sent_at": now,
                                  "next_at": None}
    elif attempts >= max_attempts:
        values = {"state": FAILED, "attempts": attempts, "next_at": None,
                  "last_error": result.error}
    else:
        values = {"attempts": attempts, "next_at": now + delivery_backoff(attempts),
                  "last_error": result.error}
    return conn.execute(alert_delivery.update().where(*guard).values(values)).rowcount == 1


def defer(conn: Connection, delivery_ids: Sequence[int], until: datetime) -> None:
    """Not now (the target's rate limit): the deliveries wait, no attempt counted."""
    if delivery_ids:
        conn.execute(
            alert_delivery.update()
            .where(alert_delivery.c.id.in_(list(delivery_ids)),
                   alert_delivery.c.state == PENDING)
            .values(next_at=until)
        )

