"""`fss audit list`: who changed what, when and from where (fss.store.audit)."""

from __future__ import annotations

import json
from typing import Any

import click

from fss.cli.context import ID, CliContext, pass_cli
from fss.cli.output import emit_json, emit_table, escape_controls

# A value longer than this is cut in the table (--json has it whole).
MAX_VALUE_IN_TABLE = 60


@click.group("audit")
def audit_cli() -> None:
    """The audit trail: every change made through the web, the API or the CLI."""


@audit_cli.command("list")
@click.option("--group", "group_ref", metavar="ID|KEY",
              help="One group: its id, or its key (also a deleted group's).")
@click.option("--since", metavar="TIME",
              help="Entries at or after: an ISO 8601 time, or a span back from now (2h, 7d).")
@click.option("--user", metavar="NAME", help="Who: a web user, an API token or an OS user name.")
@click.option("--action", metavar="ACTION", help="One action, e.g. group.edit or login.refused.")
@click.option("--before-id", type=ID, metavar="ID",
              help="Only entries older than this id (the next page).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def list_audit(
    cli: CliContext,
    group_ref: str | None,
    since: str | None,
    user: str | None,
    action: str | None,
    before_id: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """Newest first: when (UTC), who and from where, what, and each field before -> after
    (secrets masked)."""
    from fss.cli.alert_list import parse_since
    from fss.store.audit import AuditFilter, list_audit

    wanted = AuditFilter(
        group=group_ref,
        since=None if since is None else parse_since(since, cli.clock.now()),
        user=user,
        action=action,
        before_id=before_id,
        limit=limit,
    )
    with cli.engine.connect() as conn:
        rows = list_audit(conn, wanted)
    if as_json:
        emit_json([row.to_json() for row in rows])
        return
    emit_table(
        ["id", "at", "who", "from", "action", "group", "what"],
        [
            [r.id, r.at, r.actor if r.actor_kind != "token" else f"{r.actor} (token)",
             r.source, r.action, _group_cell(r.group_id, r.subject), describe(r.changes, r.detail)]
            for r in rows
        ],
    )


def _group_cell(group_id: int | None, subject: str | None) -> str | None:
    if group_id is None:
        return subject
    return f"{group_id} {subject}" if subject else str(group_id)


def describe(changes: dict[str, list[Any]], detail: dict[str, Any]) -> str:
    """`field: before -> after; ...`, then the detail's `name=value`s."""
    parts = [f"{name}: {_short(before)} -> {_short(after)}"
             for name, (before, after) in changes.items()]
    parts += [f"{name}={_short(value)}" for name, value in detail.items()]
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = "-" if value is None else (
        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    )
    text = escape_controls(text)
    return text if len(text) <= MAX_VALUE_IN_TABLE else text[: MAX_VALUE_IN_TABLE - 3] + "..."
