"""`fss alert list|show|ack|silence|unsilence`: what is firing, what was said to whom, and the
operator's answers (someone is on it; quiet this group for a while).

Adds its commands to `fss alert` (fss.cli.alerts, which holds the `target` subgroup).
"""

from __future__ import annotations

import getpass
import re
import socket
from datetime import datetime, timedelta
from typing import Any

import click

from fss.cli.alerts import alert_cli
from fss.cli.context import ID, CliContext, IdCommand, pass_cli
from fss.cli.output import emit_json, emit_record, emit_table
from fss.domain.clock import parse_time
from fss.errors import InvalidField
from fss.store import alert_console as store
from fss.store.alert_console import MAX_ALERT_PAGE, MAX_BY, AlertDetail, AlertRow

MAX_TITLE_IN_TABLE = 80
MAX_ANSWER_IN_TABLE = 80
DURATION = re.compile(r"(\d+)\s*(d|h|m|s)", re.IGNORECASE)
DURATIONS = re.compile(r"(?:\d+\s*[dhms]\s*)+", re.IGNORECASE)
DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(field_name: str, value: str) -> timedelta:
    """"90s", "15m", "2h", "1d", "1h30m": a positive span of time."""
    text = value.strip().lower().replace(" ", "")
    parts = DURATION.findall(text)
    if not text or "".join(f"{n}{u}" for n, u in parts) != text:
        raise InvalidField(
            field_name, f"{value[:40]!r} is not a duration (e.g. 90s, 15m, 2h, 1d, 1h30m)"
        )
    seconds = sum(int(number) * DURATION_UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise InvalidField(field_name, "must be longer than 0 s")
    if seconds > 100 * 365 * 86400:
        raise InvalidField(field_name, f"{value[:40]!r} is too long")
    return timedelta(seconds=seconds)


def parse_since(value: str, now: datetime) -> datetime:
    """--since: a duration back from now (1h, 30m, 2d) or an ISO 8601 time."""
    if DURATIONS.fullmatch(value.strip()):
        return now - parse_duration("since", value)
    return parse_time("since", value)


def default_by() -> str:
    """Who acknowledges when --by is not given: $USER@host."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:MAX_BY]


def group_filter(cli: CliContext, ref: str | None) -> int | None:
    """--group: digits are a group id (alerts outlive a deleted group), else a group key."""
    if ref is None:
        return None
    text = ref.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    with cli.engine.connect() as conn:
        return store.group_id_of(conn, ref)


def group_label(row: AlertRow) -> str | None:
    if row.task_group_id is None:
        return None
    return row.group_key or str(row.task_group_id)


@alert_cli.command("list")
@click.option("--open", "state", flag_value="open", default=True,
              help="Only open alerts (the default).")
@click.option("--resolved", "state", flag_value="resolved", help="Only resolved alerts.")
@click.option("--all", "state", flag_value="all", help="Open and resolved alerts.")
@click.option("--group", "group_ref", metavar="KEY|ID",
              help="Only this group's alerts (its key, or its id if all digits).")
@click.option("--rule", help="Only this rule (run_failed, group_late, client_lost, ...).")
@click.option("--since", help="Only alerts raised or resolved since: 1h, 30m, 2d or an ISO "
              "8601 time.")
@click.option("--limit", type=click.IntRange(1, MAX_ALERT_PAGE), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def list_alerts_command(
    cli: CliContext,
    state: str,
    group_ref: str | None,
    rule: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Alerts, newest first: open ones unless told otherwise."""
    now = cli.clock.now()
    since_at = None if since is None else parse_since(since, now)
    group_id = group_filter(cli, group_ref)
    with cli.engine.connect() as conn:
        rows = store.list_alerts(
            conn, state=None if state == "all" else state, group_id=group_id, rule=rule,
            since=since_at, limit=limit,
        )
    if as_json:
        emit_json([row.to_json() for row in rows])
        return
    emit_table(
        ["id", "state", "rule", "group", "count", "opened_at", "last_at", "acked_by", "title"],
        [
            [r.id, r.state, r.rule, group_label(r), r.count, r.opened_at, r.last_at,
             r.acked_by, r.title[:MAX_TITLE_IN_TABLE]]
            for r in rows
        ],
    )


@alert_cli.command("show", cls=IdCommand)
@click.argument("alert_id", metavar="ID", type=ID)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def show_alert_command(cli: CliContext, alert_id: int, as_json: bool) -> None:
    """One alert, then each delivery to a target and each attempt: outcome, HTTP status,
    the receiver's answer, the error."""
    with cli.engine.connect() as conn:
        detail = store.get_alert(conn, alert_id)
    if as_json:
        emit_json(detail.to_json())
        return
    emit_record(alert_fields(detail))
    click.echo("")
    if not detail.deliveries:
        click.echo("no deliveries yet")
        return
    emit_table(
        ["delivery", "target", "notice", "state", "at", "outcome", "status", "ms", "answer",
         "error"],
        delivery_lines(detail),
    )


def alert_fields(detail: AlertDetail) -> list[tuple[str, Any]]:
    row = detail.alert
    group = None
    if row.task_group_id is not None:
        group = f"{row.task_group_id}" + (f" ({row.group_key})" if row.group_key else "")
        if row.group_caption:
            group += f" {row.group_caption}"
    return [
        ("id", row.id), ("state", row.state), ("rule", row.rule), ("subject", row.subject),
        ("title", row.title), ("detail", row.detail), ("group", group), ("task", row.task_id),
        ("client", row.client_id), ("count", row.count), ("opened_at", row.opened_at),
        ("last_at", row.last_at), ("notified_at", row.notified_at),
        ("resolved_at", row.resolved_at), ("resolved_note", row.resolved_note),
        ("acked_by", row.acked_by), ("acked_at", row.acked_at),
        ("notices", ", ".join(f"{n.kind} {n.created_at:%Y-%m-%d %H:%M:%S}"
                              for n in detail.notices) or None),
    ]


def delivery_lines(detail: AlertDetail) -> list[list[Any]]:
    lines: list[list[Any]] = []
    for delivery in detail.deliveries:
        state = delivery.state
        if delivery.folded_into is not None:
            state += f" into {delivery.folded_into}"
        head = [delivery.id, delivery.target_name, delivery.notice_kind, state]
        if not delivery.attempts:
            lines.append([*head, None, None, None, None, None, delivery.last_error])
        for attempt in delivery.attempts:
            lines.append([
                *head, attempt.at, attempt.outcome, attempt.status_code, attempt.duration_ms,
                None if attempt.answer is None else attempt.answer[:MAX_ANSWER_IN_TABLE],
                attempt.error,
            ])
    return lines


@alert_cli.command("ack", cls=IdCommand)
@click.argument("alert_id", metavar="ID", type=ID)
@click.option("--by", help="Who is on it [$USER@host].")
@pass_cli
def ack_alert_command(cli: CliContext, alert_id: int, by: str | None) -> None:
    """Acknowledge an open alert: someone is on it, no more reminders. The first
    acknowledgement stays."""
    who = by if by is not None else default_by()
    now = cli.clock.now()
    row = store.ack_alert(cli.engine, alert_id, who, now, cli.actor)
    acked_at = row.acked_at.isoformat() if row.acked_at else "?"
    if row.acked_by == who.strip() and row.acked_at == now:
        click.echo(f"alert {alert_id} acknowledged by {row.acked_by}")
    else:
        click.echo(f"alert {alert_id} was already acknowledged by {row.acked_by} at {acked_at}")


@alert_cli.command("silence")
@click.argument("group_ref", metavar="GROUP")
@click.option("--for", "for_", metavar="DURATION", help="How long: 30m, 2h, 1d (at most 30 d).")
@click.option("--until", help="Or until this ISO 8601 time.")
@click.option("--note", help="Why (up to 300 characters); shown with the silence.")
@click.option("--by", help="Who silences it [$USER@host].")
@pass_cli
def silence_command(
    cli: CliContext,
    group_ref: str,
    for_: str | None,
    until: str | None,
    note: str | None,
    by: str | None,
) -> None:
    """Silence a group's alerts (GROUP: its key, or its id if all digits): still raised and
    listed, their notices not sent until the time is up. Silencing again replaces it."""
    now = cli.clock.now()
    if (for_ is None) == (until is None):
        raise InvalidField("for", "give --for DURATION (e.g. 2h) or --until TIME")
    end = now + parse_duration("for", for_) if for_ is not None else parse_time(
        "until", until or ""
    )
    with cli.engine.connect() as conn:
        group_id = store.group_id_of(conn, group_ref)
    row = store.silence_group(
        cli.engine, group_id, end, by or default_by(), note, now, cli.actor
    )
    name = f" ({row.group_key})" if row.group_key else ""
    click.echo(f"group {group_id}{name} silenced until {row.until.isoformat()}")


@alert_cli.command("unsilence")
@click.argument("group_ref", metavar="GROUP")
@pass_cli
def unsilence_command(cli: CliContext, group_ref: str) -> None:
    """Lift a group's silence (GROUP: its key, or its id if all digits)."""
    with cli.engine.connect() as conn:
        group_id = store.group_id_of(conn, group_ref)
    if store.unsilence_group(cli.engine, group_id, cli.clock.now(), cli.actor):
        click.echo(f"group {group_id}: silence lifted")
    else:
        click.echo(f"group {group_id} was not silenced")
