"""fss.store.alert_console: alerts as the console, the CLI, /metrics and health read them, and
the operator's actions (acknowledge, silence, prune), on rows written straight to the tables."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import MINUTE, SECOND, T0

from fss.errors import GroupNotFound, InvalidField
from fss.store import alert_console as console
from fss.store.alert_console import AlertNotFound, AlertNotOpen, GroupKeyNotFound
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_silence,
    inserted_id,
    task_group,
)

TARGET_IDS = {"ops-webhook": 1, "chat": 2, "mail": 3, "pager": 4}


def insert(engine: Engine, table: sa.Table, **values: Any) -> int:
    with engine.begin() as conn:
        return inserted_id(conn.execute(table.insert().values(**values)))


def add_group(engine: Engine, caption: str = "nightly", key: str | None = None) -> int:
    return insert(
        engine, task_group, caption=caption, job_name="demo.job", data="{}", start_at=T0,
        next_at=T0, activate_at=T0, interval_ms=60_000, created_at=T0, key=key,
    )


def add_alert(
    engine: Engine,
    rule: str = "run_failed",
    subject: str = "group:1",
    *,
    state: str = "open",
    opened_at: datetime = T0,
    resolved_at: datetime | None = None,
    **values: Any,
) -> int:
    row: dict[str, Any] = {
        "rule": rule, "subject": subject, "state": state, "title": f"{rule} of {subject}",
        "opened_at": opened_at, "last_at": opened_at, "resolved_at": resolved_at,
        "open_key": f"{rule}|{subject}" if state == "open" else None,
    }
    row.update(values)
    return insert(engine, alert, **row)


def add_notice(engine: Engine, alert_id: int, kind: str = "firing", at: datetime = T0) -> int:
    return insert(engine, alert_notice, alert_id=alert_id, kind=kind, created_at=at,
                  expanded_at=at)


def add_delivery(
    engine: Engine, notice_id: int | None, target: str = "ops-webhook", state: str = "sent",
    **values: Any,
) -> int:
    row: dict[str, Any] = {
        "notice_id": notice_id, "target_id": TARGET_IDS[target], "target_name": target,
        "state": state,
        "created_at": T0, "idempotency_key": f"k-{notice_id}-{target}-{values}"[:100],
    }
    row.update(values)
    return insert(engine, alert_delivery, **row)


def add_attempt(
    engine: Engine, delivery_id: int, at: datetime, outcome: str = "failed",
    target: str = "ops-webhook", status_code: int | None = 500, answer: str | None = None,
    error: str | None = None,
) -> int:
    return insert(
        engine, alert_attempt, delivery_id=delivery_id, target_name=target, at=at,
        outcome=outcome, status_code=status_code, answer=answer, error=error, duration_ms=12,
        node="node-a",
    )


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# ---- lists and one alert -----------------------------------------------------------------


def test_alerts_list_newest_first_with_their_group_and_filter_by_state_group_rule_since(
    engine: Engine,
) -> None:
    group = add_group(engine, "nightly backup", key="backup")
    first = add_alert(engine, "run_failed", f"group:{group}", task_group_id=group,
                      state="resolved", resolved_at=T0 + MINUTE)
    second = add_alert(engine, "group_late", f"group:{group}", task_group_id=group,
                       opened_at=T0 + 10 * MINUTE)
    third = add_alert(engine, "client_lost", "client:w1", client_id="w1",
                      opened_at=T0 + 20 * MINUTE)

    with engine.connect() as conn:
        every = console.list_alerts(conn)
        opened = console.list_alerts(conn, state="open")
        resolved = console.list_alerts(conn, state="resolved")
        of_group = console.list_alerts(conn, group_id=group)
        late = console.list_alerts(conn, rule="group_late")
        recent = console.list_alerts(conn, since=T0 + 5 * MINUTE)
        page = console.list_alerts(conn, limit=2)
        next_page = console.list_alerts(conn, limit=2, before_id=page[-1].id)

    assert [a.id for a in every] == [third, second, first]
    assert [a.id for a in opened] == [third, second]
    assert [a.id for a in resolved] == [first]
    assert [a.id for a in of_group] == [second, first]
    assert [a.id for a in late] == [second]
    assert [a.id for a in recent] == [third, second]
    assert [a.id for a in page] == [third, second] and [a.id for a in next_page] == [first]
    shown = every[1]
    assert (shown.group_key, shown.group_caption, shown.state) == (
        "backup", "nightly backup", "open",
    )
    assert every[0].group_key is None and every[0].client_id == "w1"
    body = shown.to_json()
    assert body["opened_at"] == (T0 + 10 * MINUTE).isoformat()
    assert body["open_key"] == f"group_late|group:{group}"
    assert body["count"] == 1 and body["acked_by"] is None and body["group_key"] == "backup"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"state": "closed"}, "state"), ({"rule": "run_fialed"}, "rule"), ({"limit": 0}, "limit")],
)
def test_a_bad_filter_is_an_invalid_field_naming_it(
    engine: Engine, arguments: dict[str, Any], field: str
) -> None:
    with engine.connect() as conn, pytest.raises(InvalidField) as raised:
        console.list_alerts(conn, **arguments)

    assert raised.value.field == field


def test_an_alert_shows_its_notices_deliveries_attempts_and_the_summary_that_folded_one(
    engine: Engine,
) -> None:
    alert_id = add_alert(engine)
    other = add_alert(engine, subject="group:2")
    firing = add_notice(engine, alert_id, "firing")
    resolved = add_notice(engine, alert_id, "resolved", T0 + MINUTE)
    foreign = add_notice(engine, other)
    summary = add_delivery(engine, None, "chat", summary=json.dumps({"title": "300 groups late"}))
    folded = add_delivery(engine, firing, "chat", state="folded", folded_into=summary)
    hook = add_delivery(engine, firing, "ops-webhook", attempts=2, sent_at=T0 + 20 * SECOND)
    closing = add_delivery(engine, resolved, "ops-webhook", state="pending")
    add_delivery(engine, foreign, "ops-webhook")
    add_attempt(engine, hook, T0 + 10 * SECOND, status_code=500, answer="Internal Server Error")
    add_attempt(engine, hook, T0 + 20 * SECOND, outcome="sent", status_code=200, answer="ok")
    add_attempt(engine, summary, T0 + 5 * SECOND, outcome="sent", target="chat", status_code=200)

    with engine.connect() as conn:
        detail = console.get_alert(conn, alert_id)

    assert detail.alert.id == alert_id
    assert [(n.id, n.kind) for n in detail.notices] == [(firing, "firing"), (resolved, "resolved")]
    assert [(d.id, d.notice_kind, d.state) for d in detail.deliveries] == [
        (summary, "summary", "sent"), (folded, "firing", "folded"),
        (hook, "firing", "sent"), (closing, "resolved", "pending"),
    ]
    by_id = {d.id: d for d in detail.deliveries}
    assert [(a.outcome, a.status_code, a.answer) for a in by_id[hook].attempts] == [
        ("failed", 500, "Internal Server Error"), ("sent", 200, "ok"),
    ]
    assert by_id[hook].attempt_count == 2 and by_id[folded].folded_into == summary
    body = detail.to_json()
    assert body["alert"]["id"] == alert_id
    assert body["deliveries"][0]["summary"] == {"title": "300 groups late"}
    assert body["deliveries"][0]["attempts"][0]["node"] == "node-a"
    assert body["deliveries"][2]["attempts"][1]["at"] == (T0 + 20 * SECOND).isoformat()
    json.dumps(body)


def test_an_unknown_alert_is_alert_not_found(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(AlertNotFound, match=r"^alert 404 does not exist"):
        console.get_alert(conn, 404)


# ---- acknowledge -------------------------------------------------------------------------


def test_ack_records_who_and_when_once_and_a_second_ack_keeps_the_first(engine: Engine) -> None:
    alert_id = add_alert(engine)

    first = console.ack_alert(engine, alert_id, "alice", T0 + MINUTE)
    again = console.ack_alert(engine, alert_id, "bob", T0 + 2 * MINUTE)

    assert (first.acked_by, first.acked_at) == ("alice", T0 + MINUTE)
    assert (again.acked_by, again.acked_at) == ("alice", T0 + MINUTE)


def test_ack_of_a_resolved_alert_is_refused_and_of_a_missing_one_not_found(
    engine: Engine,
) -> None:
    resolved = add_alert(engine, state="resolved", resolved_at=T0 + MINUTE)

    with pytest.raises(AlertNotOpen, match=f"alert {resolved} was resolved at "):
        console.ack_alert(engine, resolved, "alice", T0 + 2 * MINUTE)
    with pytest.raises(AlertNotFound):
        console.ack_alert(engine, 999, "alice", T0)
    with pytest.raises(InvalidField, match=r"^by: "):
        console.ack_alert(engine, resolved, "  ", T0)
    with engine.connect() as conn:
        assert console.get_alert(conn, resolved).alert.acked_by is None


def test_concurrent_acks_leave_exactly_one_acknowledgement(engine: Engine) -> None:
    alert_id = add_alert(engine)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def ack(name: str) -> None:
        try:
            results.append(console.ack_alert(engine, alert_id, name, T0).acked_by)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ack, args=(f"admin{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(results)) == 1 and results[0] is not None


# ---- silences ----------------------------------------------------------------------------


def test_silence_upserts_lists_while_in_force_and_unsilence_lifts_it(engine: Engine) -> None:
    group = add_group(engine, "backup", key="backup")
    other = add_group(engine, "report")

    first = console.silence_group(engine, group, T0 + MINUTE, "alice", "db upgrade", T0)
    replaced = console.silence_group(engine, group, T0 + 60 * MINUTE, "bob", None, T0 + SECOND)
    console.silence_group(engine, other, T0 + 2 * MINUTE, "alice", None, T0)

    assert (first.until, first.note, first.group_key) == (T0 + MINUTE, "db upgrade", "backup")
    assert (replaced.until, replaced.by_user, replaced.note) == (T0 + 60 * MINUTE, "bob", None)
    assert count(engine, alert_silence) == 2
    with engine.connect() as conn:
        in_force = console.list_silences(conn, T0 + 3 * MINUTE)
        both = console.silenced_groups(conn, [group, other, 12345], T0 + MINUTE)
        later = console.silenced_groups(conn, [group, other], T0 + 3 * MINUTE)
    assert [(s.task_group_id, s.group_caption) for s in in_force] == [(group, "backup")]
    assert in_force[0].to_json()["until"] == (T0 + 60 * MINUTE).isoformat()
    assert both == {group, other}
    assert later == {group}

    assert console.unsilence_group(engine, group) is True
    assert console.unsilence_group(engine, group) is False
    with engine.connect() as conn:
        assert console.silenced_groups(conn, [group], T0) == set()
    assert console.prune_silences(engine, T0 + 3 * MINUTE) == 1
    assert count(engine, alert_silence) == 0


def test_silence_refuses_a_missing_group_and_a_time_not_in_the_future(engine: Engine) -> None:
    group = add_group(engine)

    with pytest.raises(GroupNotFound):
        console.silence_group(engine, group + 1, T0 + MINUTE, "alice", None, T0)
    with pytest.raises(InvalidField) as raised:
        console.silence_group(engine, group, T0, "alice", None, T0)
    assert raised.value.field == "until"
    with pytest.raises(InvalidField, match=r"^note: "):
        console.silence_group(engine, group, T0 + MINUTE, "alice", "x" * 301, T0)
    assert count(engine, alert_silence) == 0


def test_a_group_is_found_by_id_or_key(engine: Engine) -> None:
    group = add_group(engine, key="backup")

    with engine.connect() as conn:
        assert console.group_id_of(conn, "backup") == group
        assert console.group_id_of(conn, str(group)) == group
        assert console.group_id_of(conn, group) == group
        with pytest.raises(GroupKeyNotFound, match="no task group has the key 'nope'"):
            console.group_id_of(conn, "nope")
        with pytest.raises(GroupNotFound):
            console.group_id_of(conn, str(group + 7))


# ---- counts ------------------------------------------------------------------------------


def test_counts_per_rule_and_attempts_per_target_and_outcome(engine: Engine) -> None:
    add_alert(engine, "run_failed", "group:1", state="resolved", resolved_at=T0)
    add_alert(engine, "run_failed", "group:1")
    add_alert(engine, "run_failed", "group:2")
    add_alert(engine, "client_lost", "client:w1", state="resolved", resolved_at=T0)
    delivery = add_delivery(engine, add_notice(engine, 1))
    for outcome in ("failed", "failed", "sent"):
        add_attempt(engine, delivery, T0, outcome)
    add_attempt(engine, delivery, T0, "sent", target="mail")

    with engine.connect() as conn:
        assert console.alert_counts(conn) == {"run_failed": (3, 2), "client_lost": (1, 0)}
        assert console.open_alert_count(conn) == 2
        assert console.delivery_counts(conn) == {
            ("ops-webhook", "failed"): 2, ("ops-webhook", "sent"): 1, ("mail", "sent"): 1,
        }


def test_failing_targets_are_those_whose_last_attempts_failed_or_that_gave_a_delivery_up(
    engine: Engine,
) -> None:
    now = T0 + 60 * MINUTE
    notice = add_notice(engine, add_alert(engine))
    hook = add_delivery(engine, notice, "ops-webhook", state="pending")
    for minutes in (20, 10, 8, 6, 4, 2):  # the one 20 min ago is outside the window
        add_attempt(engine, hook, now - minutes * MINUTE, answer="Internal Server Error\nmore")
    recovered = add_delivery(engine, notice, "chat")
    add_attempt(engine, recovered, now - 5 * MINUTE, target="chat")
    add_attempt(engine, recovered, now - 4 * MINUTE, target="chat", status_code=None,
                error="timed out after 5 s")
    add_attempt(engine, recovered, now - 3 * MINUTE, "sent", target="chat", status_code=200)
    gave_up = add_delivery(engine, notice, "mail", state="failed")
    add_attempt(engine, gave_up, now - 1 * MINUTE, target="mail", status_code=None,
                error="SMTP 535 authentication failed")
    old_give_up = add_delivery(engine, notice, "pager", state="failed")
    add_attempt(engine, old_give_up, now - 30 * MINUTE, target="pager")

    with engine.connect() as conn:
        troubles = console.failing_targets(conn, now)
        strict = console.failing_targets(conn, now, min_failures=6)
        wide = console.failing_targets(conn, now, window=timedelta(hours=1))

    assert [(t.name, t.failures, t.gave_up) for t in troubles] == [
        ("mail", 1, 1), ("ops-webhook", 5, 0),
    ]
    hook_trouble = troubles[1]
    assert hook_trouble.last_at == now - 2 * MINUTE
    assert hook_trouble.last_error == "HTTP 500 Internal Server Error"
    assert hook_trouble.describe() == (
        "alert target ops-webhook failing: 5 failed attempts in 15 min, "
        "last: HTTP 500 Internal Server Error"
    )
    assert troubles[0].describe() == (
        "alert target mail failing: 1 failed attempt in 15 min, 1 delivery given up, "
        "last: SMTP 535 authentication failed"
    )
    assert troubles[0].to_json()["window_s"] == 900
    assert [t.name for t in strict] == ["mail"]
    assert [t.name for t in wide] == ["mail", "ops-webhook", "pager"]
    assert wide[1].describe().startswith(
        "alert target ops-webhook failing: 6 failed attempts in 1 h"
    )


# ---- retention ---------------------------------------------------------------------------


def test_prune_deletes_old_resolved_alerts_with_their_rows_and_bare_summaries_only(
    engine: Engine,
) -> None:
    cutoff = T0 + 24 * 60 * MINUTE
    old = add_alert(engine, subject="group:1", state="resolved", resolved_at=T0 + MINUTE)
    old_too = add_alert(engine, subject="group:2", state="resolved", resolved_at=T0 + MINUTE)
    recent = add_alert(engine, subject="group:3", state="resolved",
                       resolved_at=cutoff + MINUTE)
    still_open = add_alert(engine, subject="group:4")
    # One summary folded old and recent notices (kept: the recent one remains), another only
    # old ones (deleted with them).
    shared = add_delivery(engine, None, "chat", idempotency_key="shared")
    only_old = add_delivery(engine, None, "chat", idempotency_key="only-old")
    add_attempt(engine, only_old, T0, "sent", target="chat")
    for alert_id in (old, old_too, recent, still_open):
        notice = add_notice(engine, alert_id)
        delivery = add_delivery(engine, notice, "ops-webhook")
        add_attempt(engine, delivery, T0, "sent")
        folded_into = only_old if alert_id == old_too else shared
        add_delivery(engine, notice, "chat", state="folded", folded_into=folded_into)

    assert console.prune_alerts(engine, cutoff) == 2
    assert console.prune_alerts(engine, cutoff) == 0

    with engine.connect() as conn:
        left = {a.id for a in console.list_alerts(conn)}
        notices = set(conn.execute(sa.select(alert_notice.c.alert_id)).scalars())
        summaries = set(
            conn.execute(
                sa.select(alert_delivery.c.id).where(alert_delivery.c.notice_id.is_(None))
            ).scalars()
        )
        kept = console.get_alert(conn, recent)
    assert left == {recent, still_open}
    assert notices == {recent, still_open}
    assert summaries == {shared}
    assert count(engine, alert_delivery) == 1 + 2 * 2
    assert count(engine, alert_attempt) == 2
    assert [d.notice_kind for d in kept.deliveries] == ["summary", "firing", "firing"]
