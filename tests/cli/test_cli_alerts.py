"""`fss alert list|show|ack|silence|unsilence` on alert rows written straight to the tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from cli_support import Fss, fss_json, sqlite_only
from sqlalchemy.engine import Engine

import fss.cli.alert_list  # noqa: F401  (adds its commands to `fss alert`)
from fss.cli import main
from fss.cli.alert_list import parse_duration, parse_since
from fss.errors import InvalidField
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_silence,
    inserted_id,
    task_group,
)

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def insert(engine: Engine, table: sa.Table, **values: Any) -> int:
    with engine.begin() as conn:
        return inserted_id(conn.execute(table.insert().values(**values)))


def add_group(engine: Engine, key: str | None = "backup") -> int:
    return insert(
        engine, task_group, caption="nightly backup", job_name="backup", data="{}",
        start_at=T0, next_at=T0, activate_at=T0, interval_ms=60_000, created_at=T0, key=key,
    )


def add_alert(
    engine: Engine, rule: str, subject: str, opened_at: datetime, state: str = "open",
    **values: Any,
) -> int:
    return insert(
        engine, alert, rule=rule, subject=subject, state=state, title=f"{rule}: {subject}",
        opened_at=opened_at, last_at=opened_at,
        open_key=f"{rule}|{subject}" if state == "open" else None,
        resolved_at=None if state == "open" else opened_at + timedelta(minutes=1), **values,
    )


def fired(engine: Engine) -> dict[str, int]:
    """A group with a failed-run alert (open, delivered after a 500 then a 200), a resolved
    late alert of the group, and an open client alert from two days ago."""
    group = add_group(engine)
    failed = add_alert(engine, "run_failed", f"group:{group}", now() - timedelta(minutes=5),
                       task_group_id=group, task_id=77, detail="ValueError: bad row")
    late = add_alert(engine, "group_late", f"group:{group}", now() - timedelta(minutes=30),
                     state="resolved", task_group_id=group)
    lost = add_alert(engine, "client_lost", "client:w1", now() - timedelta(days=2),
                     client_id="w1")
    notice = insert(engine, alert_notice, alert_id=failed, kind="firing", created_at=now())
    delivery = insert(
        engine, alert_delivery, notice_id=notice, target_id=1, target_name="ops-webhook",
        state="sent", attempts=2, created_at=now(), idempotency_key="fss-1",
    )
    insert(engine, alert_delivery, notice_id=notice, target_id=2, target_name="mail",
           state="silenced", created_at=now(), idempotency_key="fss-2")
    for outcome, status, answer in (("failed", 500, "Internal Server Error"), ("sent", 200, "ok")):
        insert(engine, alert_attempt, delivery_id=delivery, target_name="ops-webhook", at=now(),
               outcome=outcome, status_code=status, answer=answer, duration_ms=12)
    return {"group": group, "failed": failed, "late": late, "lost": lost}


def test_list_shows_open_alerts_newest_first_and_filters(fss: Fss, engine: Engine) -> None:
    ids = fired(engine)

    opened = fss_json(fss, "alert", "list")
    every = fss_json(fss, "alert", "list", "--all")
    resolved = fss_json(fss, "alert", "list", "--resolved")
    by_key = fss_json(fss, "alert", "list", "--all", "--group", "backup")
    by_id = fss_json(fss, "alert", "list", "--all", "--group", str(ids["group"]))
    by_rule = fss_json(fss, "alert", "list", "--rule", "client_lost")
    recent = fss_json(fss, "alert", "list", "--all", "--since", "1h")

    assert [a["id"] for a in opened] == [ids["lost"], ids["failed"]]
    assert [a["id"] for a in every] == [ids["lost"], ids["late"], ids["failed"]]
    assert [a["id"] for a in resolved] == [ids["late"]]
    assert [a["id"] for a in by_key] == [ids["late"], ids["failed"]] == [a["id"] for a in by_id]
    assert [a["id"] for a in by_rule] == [ids["lost"]]
    assert [a["id"] for a in recent] == [ids["late"], ids["failed"]]
    assert opened[1]["group_key"] == "backup" and opened[1]["task_id"] == 77


@sqlite_only
def test_list_as_a_table_names_the_group_by_key(fss: Fss, engine: Engine) -> None:
    ids = fired(engine)

    lines = fss("alert", "list").stdout.splitlines()

    assert lines[0].split() == [
        "ID", "STATE", "RULE", "GROUP", "COUNT", "OPENED_AT", "LAST_AT", "ACKED_BY", "TITLE",
    ]
    assert [line.split()[:4] for line in lines[1:]] == [
        [str(ids["lost"]), "open", "client_lost", "-"],
        [str(ids["failed"]), "open", "run_failed", "backup"],
    ]


def test_show_prints_each_delivery_and_attempt(fss: Fss, engine: Engine) -> None:
    ids = fired(engine)

    out = fss("alert", "show", str(ids["failed"])).stdout
    document = fss_json(fss, "alert", "show", str(ids["failed"]))

    assert "ValueError: bad row" in out
    rows = [line.split() for line in out.splitlines() if "ops-webhook" in line or "mail" in line]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("ops-webhook", "firing", "sent"), ("ops-webhook", "firing", "sent"),
        ("mail", "firing", "silenced"),
    ]
    assert "500" in rows[0] and "Internal" in rows[0] and "failed" in rows[0]
    assert "200" in rows[1] and "ok" in rows[1]
    attempts = document["deliveries"][0]["attempts"]
    assert [(a["outcome"], a["status_code"], a["answer"]) for a in attempts] == [
        ("failed", 500, "Internal Server Error"), ("sent", 200, "ok"),
    ]
    assert document["alert"]["id"] == ids["failed"]


def test_ack_records_the_user_and_keeps_the_first(fss: Fss, engine: Engine) -> None:
    ids = fired(engine)

    first = fss("alert", "ack", str(ids["failed"]), "--by", "alice").stdout
    second = fss("alert", "ack", str(ids["failed"]), "--by", "bob").stdout
    default = fss("alert", "ack", str(ids["lost"])).stdout

    assert first == f"alert {ids['failed']} acknowledged by alice\n"
    assert second.startswith(f"alert {ids['failed']} was already acknowledged by alice at ")
    acked = {a["id"]: a["acked_by"] for a in fss_json(fss, "alert", "list")}
    assert acked[ids["failed"]] == "alice"
    assert "@" in acked[ids["lost"]] and default.endswith(f"by {acked[ids['lost']]}\n")


def test_silence_by_key_for_a_time_and_unsilence(fss: Fss, engine: Engine) -> None:
    group = add_group(engine)

    out = fss("alert", "silence", "backup", "--for", "2h", "--note", "db upgrade").stdout
    again = fss("alert", "silence", str(group), "--for", "30m").stdout

    assert out.startswith(f"group {group} (backup) silenced until ")
    assert again.startswith(f"group {group} (backup) silenced until ")
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(alert_silence)).all()
    assert timedelta(minutes=29) < row.until - now() <= timedelta(minutes=30)
    assert row.note is None and "@" in row.by_user
    assert fss("alert", "unsilence", "backup").stdout == f"group {group}: silence lifted\n"
    assert fss("alert", "unsilence", "backup").stdout == f"group {group} was not silenced\n"


@sqlite_only
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["alert", "show", "424242"], 1, "error: alert 424242 does not exist"),
        (["alert", "show", "-3"], 2, "error: alert_id: "),
        (["alert", "ack", "424242"], 1, "error: alert 424242 does not exist"),
        (["alert", "list", "--rule", "run_fialed"], 2, "error: rule: unknown rule 'run_fialed'"),
        (["alert", "list", "--since", "yesterday"], 2, "error: since: "),
        (["alert", "list", "--group", "nope"], 1, "error: no task group has the key 'nope'"),
        (["alert", "silence", "backup", "--for", "2x"], 2, "error: for: '2x' is not a duration"),
        (["alert", "silence", "backup"], 2, "error: for: give --for"),
        (["alert", "silence", "backup", "--for", "31d"], 2, "error: until: at most 30 days"),
        (["alert", "silence", "backup", "--until", "2001-01-01T00:00:00"], 2,
         "error: until: 2001-01-01T00:00:00+00:00 is not in the future"),
        (["alert", "silence", "99999", "--for", "1h"], 1, "error: task group 99999 does not"),
        (["alert", "unsilence", "nope"], 1, "error: no task group has the key 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    fss: Fss,
    engine: Engine,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    add_group(engine)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--database-url", database_url])

    err = capsys.readouterr().err
    assert exit_info.value.code == code, err
    assert err.startswith(message) and err.count("\n") == 1, err


@sqlite_only
def test_a_resolved_alert_cannot_be_acknowledged(
    fss: Fss, engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fired(engine)

    with pytest.raises(SystemExit) as exit_info:
        main(["alert", "ack", str(ids["late"]), "--database-url", database_url])

    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith(f"error: alert {ids['late']} was resolved at ")


def test_durations_and_since() -> None:
    assert parse_duration("for", "1h30m") == timedelta(minutes=90)
    assert parse_duration("for", "2D") == timedelta(days=2)
    assert parse_since("15m", T0) == T0 - timedelta(minutes=15)
    assert parse_since("2024-04-30T00:00:00Z", T0) == datetime(2024, 4, 30, tzinfo=UTC)
    for bad in ("", "0s", "h", "1h-", "-1h"):
        with pytest.raises(InvalidField):
            parse_duration("for", bad)
