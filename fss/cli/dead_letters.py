"""`fss dead-letters ...`: events the recorder set aside, with why and as they came."""

from __future__ import annotations

import click

from fss.cli.context import ID, CliContext, IdCommand, pass_cli
from fss.cli.output import emit_json, emit_record, emit_table
from fss.store import dead_letters as store

MAX_REASON_IN_TABLE = 100


@click.group("dead-letters")
def dead_letters_cli() -> None:
    """Events the recorder could not record (malformed, out of range, refused)."""


@dead_letters_cli.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def list_dead_letters(cli: CliContext, limit: int, as_json: bool) -> None:
    """Newest first; `show ID` prints one with its body."""
    with cli.engine.connect() as conn:
        rows = store.list_dead_letters(conn, limit)
    if as_json:
        emit_json([row.to_json() for row in rows])
        return
    emit_table(
        ["id", "received_at", "queue", "reason"],
        [[r.id, r.received_at, r.queue, r.reason[:MAX_REASON_IN_TABLE]] for r in rows],
    )


@dead_letters_cli.command("show", cls=IdCommand)
@click.argument("letter_id", metavar="ID", type=ID)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def show_dead_letter(cli: CliContext, letter_id: int, as_json: bool) -> None:
    """One dead letter in full: its reason and its raw body as received."""
    with cli.engine.connect() as conn:
        row = store.get_dead_letter(conn, letter_id)
    if as_json:
        emit_json(row.to_json())
        return
    # Control characters in the body are shown escaped: they never reach the terminal.
    emit_record(list(row.to_json().items()))


@dead_letters_cli.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def purge_dead_letters(cli: CliContext, yes: bool) -> None:
    """Delete every dead letter (the supervisor deletes them after the fail max age anyway)."""
    if not yes:
        click.confirm("delete every dead letter?", abort=True)
    from fss.store import audit

    now = cli.clock.now()
    with cli.engine.begin() as conn:
        removed = store.delete_dead_letters(conn)
        audit.record(conn, cli.actor, "dead_letters.purge", now, subject="dead letters",
                     detail={"deleted": removed})
    click.echo(f"deleted {removed} dead letters")
