"""`fss db`: create, migrate and inspect the FSS schema."""

from __future__ import annotations

import click
import sqlalchemy as sa

from fss.cli.context import CliContext, pass_cli
from fss.store import migrate
from fss.store.installation import installation_id


@click.group("db")
def db_cli() -> None:
    """Database schema."""


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_cli
def db_upgrade(ctx: CliContext, revision: str) -> None:
    """Create or migrate the FSS tables (creates a SQLite file that is not there yet)."""
    ctx.may_create_database = True
    migrate.upgrade(ctx.engine, revision)
    click.echo(f"database at revision {migrate.current_revision(ctx.engine)}")
    if sa.inspect(ctx.engine).has_table("installation"):
        # The id this database's schedulers mark their broker with, and name orders by.
        click.echo(f"installation {installation_id(ctx.engine)}")


@db_cli.command("current")
@pass_cli
def db_current(ctx: CliContext) -> None:
    """Print the schema revision (and whether it is the newest)."""
    current = migrate.current_revision(ctx.engine)
    state = "up to date" if current == migrate.head_revision() else "needs `fss db upgrade`"
    click.echo(f"{current or 'empty'} ({state})")
