"""Alerts as an operator sees them: lists, one alert with every delivery attempt, counts for
/metrics, targets that keep failing (for `fss health`), and the operator's actions on them
(acknowledge, silence a group, prune old ones).

The write side (raising, resolving, the outbox, deliveries, attempts) is fss.store.alerts and
the sender; this module only reads those rows, and changes them with guarded statements: an
acknowledgement is one conditional UPDATE, a silence one upsert, never a read then a write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from fss.domain.alerts import CLOSED, OPEN, RULES
from fss.domain.clock import require_storable_time
from fss.errors import FssError, GroupNotFound, InvalidField
from fss.store import audit
from fss.store.audit import Actor
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_silence,
    task_group,
)

MAX_ALERT_PAGE = 1000
CHUNK = 500
MAX_BY = 64
MAX_NOTE = 300
# A longer silence is a rule switched off: do that with the group's alert_rules.
MAX_SILENCE = timedelta(days=30)
# failing_targets reads at most this many attempts of the window: a target failing more
# often than that is failing, whatever the rest says.
MAX_WINDOW_ATTEMPTS = 10_000
MAX_ERROR_SHOWN = 200
DEFAULT_FAILING_WINDOW = timedelta(minutes=15)
DEFAULT_MIN_FAILURES = 3

T = TypeVar("T")


class AlertNotFound(FssError, LookupError):
    def __init__(self, alert_id: int) -> None:
        self.alert_id = alert_id
        super().__init__(f"alert {alert_id} does not exist")


class AlertNotOpen(FssError):
    """An acknowledgement of an alert that is resolved already: nobody needs to be on it."""

    def __init__(self, alert_id: int, resolved_at: datetime | None) -> None:
        self.alert_id = alert_id
        when = f" at {resolved_at.isoformat()}" if resolved_at is not None else ""
        super().__init__(f"alert {alert_id} was resolved{when}: there is nothing to acknowledge")


class GroupKeyNotFound(FssError, LookupError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no task group has the key {key[:128]!r}")


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _values(cls: type, row: Row[Any]) -> dict[str, Any]:
    wanted = {f.name for f in fields(cls)}
    return {k: v for k, v in row._mapping.items() if k in wanted}


# ---- read models -----------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    id: int
    rule: str
    subject: str
    open_key: str | None
    state: str
    task_group_id: int | None
    task_id: int | None
    client_id: str | None
    planned_at: datetime | None
    title: str
    detail: str | None
    count: int
    opened_at: datetime
    last_at: datetime
    notified_at: datetime | None
    resolved_at: datetime | None
    resolved_note: str | None
    acked_by: str | None
    acked_at: datetime | None
    # From task_group when task_group_id is set (None once the group is deleted).
    group_key: str | None = None
    group_caption: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @classmethod
    def from_row(cls, row: Row[Any]) -> AlertRow:
        return cls(**_values(cls, row))

    def to_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class AttemptRow:
    id: int
    delivery_id: int
    target_name: str
    at: datetime
    # sent | failed
    outcome: str
    status_code: int | None
    answer: str | None
    error: str | None
    duration_ms: int
    node: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> AttemptRow:
        return cls(**_values(cls, row))

    def to_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class NoticeRow:
    id: int
    alert_id: int
    # firing | reminder | resolved
    kind: str
    created_at: datetime
    expanded_at: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> NoticeRow:
        return cls(**_values(cls, row))

    def to_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    # None for a storm summary (it stands for the deliveries whose folded_into is its id).
    notice_id: int | None
    target_id: int
    target_name: str
    # pending | sent | failed | silenced | folded
    state: str
    folded_into: int | None
    # A summary's message as composed (its JSON text); None for other deliveries.
    summary: str | None
    # How many attempts were made (the column `attempts`); `attempts` below lists them.
    attempt_count: int
    next_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    idempotency_key: str
    # firing | reminder | resolved (its notice's kind), or "summary".
    notice_kind: str | None = None
    attempts: tuple[AttemptRow, ...] = ()

    @property
    def is_summary(self) -> bool:
        return self.notice_id is None

    def to_json(self) -> dict[str, Any]:
        body = {
            f.name: _jsonable(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("attempts", "summary")
        }
        body["summary"] = _summary_json(self.summary)
        body["attempts"] = [a.to_json() for a in self.attempts]
        return body


def _summary_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class AlertDetail:
    alert: AlertRow
    notices: tuple[NoticeRow, ...]
    # Its notices' deliveries and the storm summaries that folded any of them, oldest first.
    deliveries: tuple[DeliveryRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.alert.to_json(),
            "notices": [n.to_json() for n in self.notices],
            "deliveries": [d.to_json() for d in self.deliveries],
        }


@dataclass(frozen=True)
class SilenceRow:
    task_group_id: int
    until: datetime
    by_user: str
    note: str | None
    created_at: datetime
    group_key: str | None = None
    group_caption: str | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> SilenceRow:
        return cls(**_values(cls, row))

    def to_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class TargetTrouble:
    """A target whose recent attempts keep failing, or that gave a delivery up."""

    name: str
    # Failed attempts within the window.
    failures: int
    # The newest failure in one line: "HTTP 500 <answer>" or the error.
    last_error: str | None
    last_at: datetime | None
    # Deliveries in state failed (attempts used up) with an attempt within the window.
    gave_up: int = 0
    window: timedelta = DEFAULT_FAILING_WINDOW

    def describe(self) -> str:
        """One line for `fss health` and the web: what fails, how often, the last answer."""
        text = (
            f"alert target {self.name} failing: {self.failures} failed attempt"
            f"{'' if self.failures == 1 else 's'} in {_span(self.window)}"
        )
        if self.gave_up:
            text += f", {self.gave_up} deliver{'y' if self.gave_up == 1 else 'ies'} given up"
        if self.last_error:
            text += f", last: {self.last_error}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "failures": self.failures,
            "gave_up": self.gave_up,
            "last_error": self.last_error,
            "last_at": _jsonable(self.last_at),
            "window_s": int(self.window.total_seconds()),
            "message": self.describe(),
        }


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# ---- lists and one alert -----------------------------------------------------------------


def _alert_select() -> sa.Select[Any]:
    return sa.select(
        alert, task_group.c.key.label("group_key"), task_group.c.caption.label("group_caption")
    ).select_from(alert.outerjoin(task_group, task_group.c.id == alert.c.task_group_id))


def list_alerts(
    conn: Connection,
    *,
    state: str | None = None,
    group_id: int | None = None,
    rule: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
    before_id: int | None = None,
) -> list[AlertRow]:
    """Newest first (by id). `state`: open | resolved | None (both). `since`: alerts raised
    (opened or raised again) or resolved at or after it. `before_id`: the next page after
    the one whose last alert had that id."""
    if state is not None and state not in (OPEN, CLOSED):
        raise InvalidField("state", f"{state[:20]!r} is not open or resolved")
    if rule is not None and rule not in RULES:
        raise InvalidField("rule", f"unknown rule {rule[:40]!r} (rules: {', '.join(RULES)})")
    if not 1 <= limit <= MAX_ALERT_PAGE:
        raise InvalidField("limit", f"must be 1..{MAX_ALERT_PAGE}")
    query = _alert_select()
    if state is not None:
        query = query.where(alert.c.state == state)
    if group_id is not None:
        query = query.where(alert.c.task_group_id == group_id)
    if rule is not None:
        query = query.where(alert.c.rule == rule)
    if since is not None:
        since = require_storable_time("since", since)
        query = query.where(sa.or_(alert.c.last_at >= since, alert.c.resolved_at >= since))
    if before_id is not None:
        query = query.where(alert.c.id < before_id)
    rows = conn.execute(query.order_by(alert.c.id.desc()).limit(limit))
    return [AlertRow.from_row(r) for r in rows]


def open_alert_count(conn: Connection) -> int:
    query = sa.select(sa.func.count()).select_from(alert).where(alert.c.state == OPEN)
    return int(conn.execute(query).scalar_one())


def find_alert(conn: Connection, alert_id: int) -> AlertRow | None:
    row = conn.execute(_alert_select().where(alert.c.id == alert_id)).first()
    return None if row is None else AlertRow.from_row(row)


def get_alert(conn: Connection, alert_id: int) -> AlertDetail:
    """The alert, its notices and their deliveries (with the storm summaries that folded
    them), each delivery with its attempts."""
    row = find_alert(conn, alert_id)
    if row is None:
        raise AlertNotFound(alert_id)
    notices = tuple(
        NoticeRow.from_row(r)
        for r in conn.execute(
            sa.select(alert_notice)
            .where(alert_notice.c.alert_id == alert_id)
            .order_by(alert_notice.c.id)
        )
    )
    kinds = {n.id: n.kind for n in notices}
    own = _delivery_rows(conn, alert_delivery.c.notice_id.in_(list(kinds))) if kinds else []
    summary_ids = sorted({d["folded_into"] for d in own if d["folded_into"] is not None})
    summaries = _delivery_rows(conn, alert_delivery.c.id.in_(summary_ids)) if summary_ids else []
    found = {d["id"]: d for d in [*own, *summaries]}
    attempts = _attempts_of(conn, sorted(found))
    deliveries = tuple(
        DeliveryRow(
            **{k: v for k, v in found[i].items() if k != "attempts"},
            attempt_count=int(found[i]["attempts"]),
            notice_kind="summary" if found[i]["notice_id"] is None
            else kinds.get(found[i]["notice_id"]),
            attempts=tuple(attempts.get(i, ())),
        )
        for i in sorted(found)
    )
    return AlertDetail(row, notices, deliveries)


def _delivery_rows(conn: Connection, condition: Any) -> list[dict[str, Any]]:
    wanted = {f.name for f in fields(DeliveryRow)} | {"attempts"}
    return [
        {k: v for k, v in r._mapping.items() if k in wanted}
        for r in conn.execute(sa.select(alert_delivery).where(condition))
    ]


def _attempts_of(conn: Connection, delivery_ids: Sequence[int]) -> dict[int, list[AttemptRow]]:
    found: dict[int, list[AttemptRow]] = {}
    for chunk in chunked(delivery_ids):
        rows = conn.execute(
            sa.select(alert_attempt)
            .where(alert_attempt.c.delivery_id.in_(chunk))
            .order_by(alert_attempt.c.at, alert_attempt.c.id)
        )
        for r in rows:
            attempt = AttemptRow.from_row(r)
            found.setdefault(attempt.delivery_id, []).append(attempt)
    return found


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- acknowledge -------------------------------------------------------------------------


def ack_alert(
    engine: Engine, alert_id: int, by: str, now: datetime, actor: Actor | None = None
) -> AlertRow:
    """Someone is on it: records who and when (no reminders after that). Only an open alert
    nobody acknowledged changes: acknowledging again keeps the first acknowledgement; a
    resolved alert is refused (AlertNotOpen)."""
    who = _required_text("by", by, MAX_BY)
    with engine.begin() as conn:
        acked = conn.execute(
            alert.update()
            .where(alert.c.id == alert_id, alert.c.state == OPEN, alert.c.acked_at.is_(None))
            .values(acked_by=who, acked_at=now)
        ).rowcount
        row = find_alert(conn, alert_id)
        if acked == 1 and row is not None:  # a second acknowledgement changes nothing
            audit.record(conn, actor, "alert.ack", now, group_id=row.task_group_id,
                         subject=f"alert {alert_id}",
                         changes={"acked_by": [None, who], "acked_at": [None, now]},
                         detail={"rule": row.rule, "title": row.title})
    if row is None:
        raise AlertNotFound(alert_id)
    if not row.is_open:
        raise AlertNotOpen(alert_id, row.resolved_at)
    return row


def _required_text(name: str, value: str, limit: int) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidField(name, "must not be empty")
    if len(text) > limit:
        raise InvalidField(name, f"at most {limit} characters")
    return text


# ---- silences ----------------------------------------------------------------------------


def group_id_of(conn: Connection, ref: str | int) -> int:
    """A group named by id (an int, or a string of digits) or by key: its id."""
    if isinstance(ref, str):
        text = ref.strip()
        if not (text.isascii() and text.isdigit()):
            found = conn.execute(sa.select(task_group.c.id).where(task_group.c.key == ref)).scalar()
            if found is None:
                raise GroupKeyNotFound(ref)
            return int(found)
        ref = int(text)
    found = conn.execute(sa.select(task_group.c.id).where(task_group.c.id == ref)).scalar()
    if found is None:
        raise GroupNotFound(ref)
    return int(found)


def silence_group(
    engine: Engine,
    group_id: int,
    until: datetime,
    by: str,
    note: str | None,
    now: datetime,
    actor: Actor | None = None,
) -> SilenceRow:
    """Quiet the group's alerts until `until`: still raised and shown, their notices not
    sent. Silencing a silenced group replaces its silence (one upsert)."""
    until = require_storable_time("until", until)
    if until <= now:
        raise InvalidField("until", f"{until.isoformat()} is not in the future")
    if until - now > MAX_SILENCE:
        raise InvalidField("until", f"at most {MAX_SILENCE.days} days from now")
    who = _required_text("by", by, MAX_BY)
    text = (note or "").strip() or None
    if text is not None and len(text) > MAX_NOTE:
        raise InvalidField("note", f"at most {MAX_NOTE} characters")
    values = {
        "task_group_id": group_id, "until": until, "by_user": who, "note": text,
        "created_at": now,
    }
    changes = {"until": until, "by_user": who, "note": text, "created_at": now}
    with engine.begin() as conn:
        exists = conn.execute(sa.select(task_group.c.id).where(task_group.c.id == group_id))
        if exists.scalar() is None:
            raise GroupNotFound(group_id)
        before = _silence_state(conn, group_id)
        conn.execute(_upsert_silence(conn.dialect.name, values, changes))
        row = conn.execute(
            _silence_select().where(alert_silence.c.task_group_id == group_id)
        ).one()
        silence = SilenceRow.from_row(row)
        audit.record(conn, actor, "alert.silence", now, group_id=group_id,
                     subject=silence.group_key or silence.group_caption,
                     changes=audit.diff(before, _silence_state(conn, group_id)))
    return silence


def _silence_state(conn: Connection, group_id: int) -> dict[str, Any]:
    """A group's silence for the audit trail ({} when it has none)."""
    row = conn.execute(
        sa.select(alert_silence.c.until, alert_silence.c.by_user, alert_silence.c.note)
        .where(alert_silence.c.task_group_id == group_id)
    ).first()
    return {} if row is None else {"until": row.until, "by": row.by_user, "note": row.note}


def _upsert_silence(
    dialect: str, values: dict[str, Any], changes: dict[str, Any]
) -> sa.Executable:
    if dialect == "mysql":
        return mysql.insert(alert_silence).values(values).on_duplicate_key_update(changes)
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(alert_silence)
        return insert.values(values).on_conflict_do_update(
            index_elements=[alert_silence.c.task_group_id], set_=changes
        )
    raise NotImplementedError(f"silences on {dialect}")


def unsilence_group(
    engine: Engine, group_id: int, now: datetime | None = None, actor: Actor | None = None
) -> bool:
    """Lift the group's silence; False when it had none."""
    with engine.begin() as conn:
        before = _silence_state(conn, group_id)
        result = conn.execute(
            alert_silence.delete().where(alert_silence.c.task_group_id == group_id)
        )
        if result.rowcount and actor is not None:
            if now is None:
                raise TypeError("an audited unsilence needs `now`")
            audit.record(conn, actor, "alert.unsilence", now, group_id=group_id,
                         subject=_group_subject(conn, group_id), changes=audit.deleted(before))
    return bool(result.rowcount)


def _group_subject(conn: Connection, group_id: int) -> str | None:
    row = conn.execute(
        sa.select(task_group.c.key, task_group.c.caption).where(task_group.c.id == group_id)
    ).first()
    return None if row is None else audit.group_label(row.key, row.caption)


def _silence_select() -> sa.Select[Any]:
    return sa.select(
        alert_silence,
        task_group.c.key.label("group_key"),
        task_group.c.caption.label("group_caption"),
    ).select_from(
        alert_silence.outerjoin(task_group, task_group.c.id == alert_silence.c.task_group_id)
    )


def list_silences(conn: Connection, now: datetime) -> list[SilenceRow]:
    """The silences in force at `now`, the soonest to end first."""
    rows = conn.execute(
        _silence_select()
        .where(alert_silence.c.until > now)
        .order_by(alert_silence.c.until, alert_silence.c.task_group_id)
    )
    return [SilenceRow.from_row(r) for r in rows]


def silenced_groups(conn: Connection, group_ids: Iterable[int], now: datetime) -> set[int]:
    """Which of `group_ids` are silenced at `now` (the sender asks before it sends)."""
    wanted = sorted(set(group_ids))
    silenced: set[int] = set()
    for chunk in chunked(wanted):
        rows = conn.execute(
            sa.select(alert_silence.c.task_group_id).where(
                alert_silence.c.task_group_id.in_(chunk), alert_silence.c.until > now
            )
        )
        silenced.update(int(group_id) for group_id in rows.scalars())
    return silenced


# ---- counts for /metrics and health ------------------------------------------------------


def alert_counts(conn: Connection) -> dict[str, tuple[int, int]]:
    """rule -> (alerts raised, open now), counted from the rows the store holds (pruning
    old resolved alerts lowers the first)."""
    is_open = sa.case((alert.c.state == OPEN, 1), else_=0)
    rows = conn.execute(
        sa.select(alert.c.rule, sa.func.count(), sa.func.coalesce(sa.func.sum(is_open), 0))
        .group_by(alert.c.rule)
    )
    return {str(rule): (int(total), int(open_now)) for rule, total, open_now in rows}


def delivery_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(target name, outcome) -> delivery attempts, from alert_attempt."""
    rows = conn.execute(
        sa.select(alert_attempt.c.target_name, alert_attempt.c.outcome, sa.func.count())
        .group_by(alert_attempt.c.target_name, alert_attempt.c.outcome)
    )
    return {(str(name), str(outcome)): int(n) for name, outcome, n in rows}


def failing_targets(
    conn: Connection,
    now: datetime,
    *,
    window: timedelta = DEFAULT_FAILING_WINDOW,
    min_failures: int = DEFAULT_MIN_FAILURES,
) -> list[TargetTrouble]:
    """Targets whose last `min_failures` attempts within `window` all failed, or that gave
    a delivery up (state failed) with an attempt within `window`; by name."""
    since = now - window
    rows = conn.execute(
        sa.select(
            alert_attempt.c.delivery_id, alert_attempt.c.target_name, alert_attempt.c.at,
            alert_attempt.c.outcome, alert_attempt.c.status_code, alert_attempt.c.answer,
            alert_attempt.c.error,
        )
        .where(alert_attempt.c.at >= since)
        .order_by(alert_attempt.c.at.desc(), alert_attempt.c.id.desc())
        .limit(MAX_WINDOW_ATTEMPTS)
    ).all()
    newest_first: dict[str, list[Any]] = {}
    for r in rows:
        newest_first.setdefault(r.target_name, []).append(r)
    gave_up = _given_up(conn, sorted({int(r.delivery_id) for r in rows}))
    troubles = []
    for name in sorted(newest_first):
        attempts = newest_first[name]
        latest = attempts[:min_failures]
        keeps_failing = len(latest) >= min_failures and all(a.outcome == "failed" for a in latest)
        if not keeps_failing and not gave_up.get(name):
            continue
        failed = [a for a in attempts if a.outcome == "failed"]
        last = failed[0] if failed else None
        troubles.append(
            TargetTrouble(
                name=name,
                failures=len(failed),
                last_error=None if last is None else attempt_error_line(
                    last.status_code, last.answer, last.error
                ),
                last_at=None if last is None else last.at,
                gave_up=gave_up.get(name, 0),
                window=window,
            )
        )
    return troubles


def _given_up(conn: Connection, delivery_ids: Sequence[int]) -> dict[str, int]:
    """target name -> how many of these deliveries are in state failed."""
    counts: dict[str, int] = {}
    for chunk in chunked(delivery_ids):
        rows = conn.execute(
            sa.select(alert_delivery.c.target_name, sa.func.count())
            .where(alert_delivery.c.id.in_(chunk), alert_delivery.c.state == "failed")
            .group_by(alert_delivery.c.target_name)
        )
        for name, n in rows:
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    return counts


def attempt_error_line(status_code: int | None, answer: str | None, error: str | None) -> str:
    """One line for a failed attempt: "HTTP 500 <first line of the answer>", else the error."""
    if status_code is not None:
        text = f"HTTP {status_code}"
        answer_line = _first_line(answer)
        if answer_line:
            text += f" {answer_line}"
        elif error:
            text += f" ({_first_line(error)})"
    else:
        text = _first_line(error) or "failed"
    return text if len(text) <= MAX_ERROR_SHOWN else text[: MAX_ERROR_SHOWN - 1] + "…"


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


# ---- retention ---------------------------------------------------------------------------


def prune_alerts(engine: Engine, older_than: datetime) -> int:
    """Delete the alerts resolved before `older_than` with their notices, deliveries and
    attempts, and the storm summaries none of whose folded deliveries remain. One
    transaction per CHUNK alerts; returns how many alerts were deleted."""
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    sa.select(alert.c.id)
                    .where(*_prunable(older_than))
                    .order_by(alert.c.id)
                    .limit(CHUNK)
                ).scalars()
            )
            if not ids:
                return deleted
            _delete_alerts(conn, ids, older_than)
            deleted += len(ids)


def _prunable(older_than: datetime) -> list[Any]:
    # opened_at is never after resolved_at: its index narrows the scan to old alerts.
    return [
        alert.c.state == CLOSED,
        alert.c.opened_at < older_than,
        alert.c.resolved_at < older_than,
    ]


def _delete_alerts(conn: Connection, ids: Sequence[int], older_than: datetime) -> None:
    notice_ids = list(
        conn.execute(sa.select(alert_notice.c.id).where(alert_notice.c.alert_id.in_(ids)))
        .scalars()
    )
    deliveries: list[tuple[int, int | None]] = []
    for chunk in chunked(notice_ids):
        deliveries.extend(
            (int(i), None if f is None else int(f))
            for i, f in conn.execute(
                sa.select(alert_delivery.c.id, alert_delivery.c.folded_into).where(
                    alert_delivery.c.notice_id.in_(chunk)
                )
            )
        )
    delivery_ids = [i for i, _ in deliveries]
    _delete_deliveries(conn, delivery_ids)
    for chunk in chunked(notice_ids):
        conn.execute(alert_notice.delete().where(alert_notice.c.id.in_(chunk)))
    conn.execute(alert.delete().where(alert.c.id.in_(ids), *_prunable(older_than)))
    summaries = sorted({f for _, f in deliveries if f is not None})
    _delete_bare_summaries(conn, summaries)


def _delete_deliveries(conn: Connection, delivery_ids: Sequence[int]) -> None:
    for chunk in chunked(delivery_ids):
        conn.execute(alert_attempt.delete().where(alert_attempt.c.delivery_id.in_(chunk)))
        conn.execute(alert_delivery.delete().where(alert_delivery.c.id.in_(chunk)))


def _delete_bare_summaries(conn: Connection, summary_ids: Sequence[int]) -> None:
    """The summaries among `summary_ids` that stand for no remaining delivery. Two
    statements, not DELETE ... WHERE NOT EXISTS (a subquery on the table deleted from):
    MySQL refuses that."""
    bare: list[int] = []
    for chunk in chunked(summary_ids):
        still = set(
            conn.execute(
                sa.select(alert_delivery.c.folded_into)
                .where(alert_delivery.c.folded_into.in_(chunk))
                .distinct()
            ).scalars()
        )
        bare.extend(i for i in chunk if i not in still)
    for chunk in chunked(bare):
        conn.execute(alert_attempt.delete().where(alert_attempt.c.delivery_id.in_(chunk)))
        conn.execute(
            alert_delivery.delete().where(
                alert_delivery.c.id.in_(chunk), alert_delivery.c.notice_id.is_(None)
            )
        )


def prune_silences(engine: Engine, now: datetime) -> int:
    """Delete the silences that ended before `now`; how many."""
    with engine.begin() as conn:
        result = conn.execute(alert_silence.delete().where(alert_silence.c.until <= now))
    return int(result.rowcount or 0)
