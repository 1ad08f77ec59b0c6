"""The `fss` command line: one click group, one module per command group."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError

from fss import __version__
from fss.cli.bridge import bridge_command
from fss.cli.completion import completion_command
from fss.cli.context import CliContext, pass_cli
from fss.cli.dead_letters import dead_letters_cli
from fss.cli.dev import dev_command
from fss.cli.groups import group_cli
from fss.cli.health import doctor_command, health_command
from fss.cli.nodes import node_cli
from fss.cli.preview import next_runs  # noqa: F401  (registers `fss group next`)
from fss.cli.processes import scheduler_command, worker_command
from fss.cli.schedules import apply_command  # noqa: F401  (adds apply/diff/export to `group`)
from fss.cli.tasks import client_cli, task_cli
from fss.cli.web import web_command
from fss.errors import FssError, InvalidField
from fss.store import migrate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fss")
def cli() -> None:
    """a distributed job scheduling center on Celery.

    Task groups (a job name, a schedule, JSON data) become tasks; schedulers dispatch
    each due task to one live worker; status, progress and run logs land in SQL.
    Every command reads FSS_DATABASE_URL / FSS_BROKER_URL unless given the options.
    """


@cli.group("db")
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


@db_cli.command("current")
@pass_cli
def db_current(ctx: CliContext) -> None:
    """Print the schema revision (and whether it is the newest)."""
    current = migrate.current_revision(ctx.engine)
    state = "up to date" if current == migrate.head_revision() else "needs `fss db upgrade`"
    click.echo(f"{current or 'empty'} ({state})")


cli.add_command(group_cli)
cli.add_command(task_cli)
cli.add_command(client_cli)
cli.add_command(dead_letters_cli)
cli.add_command(node_cli)
cli.add_command(scheduler_command)
cli.add_command(worker_command)
cli.add_command(dev_command)
cli.add_command(bridge_command)
cli.add_command(health_command)
cli.add_command(doctor_command)
cli.add_command(completion_command)
cli.add_command(web_command)


DEBUG_ENV = "FSS_DEBUG"


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and a non-zero exit.

    2 for bad input, 1 for anything else; FSS_DEBUG=1 shows the traceback of an error
    fss did not expect. A command group given no subcommand prints its help and exits 0.
    """
    try:
        cli.main(args=argv, prog_name="fss", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        # `fss` (or `fss group`) alone asks for the help: print it, this is no error.
        click.echo(exc.ctx.get_help() if exc.ctx is not None else cli.get_help(click.Context(cli)))
        sys.exit(0)
    except click.exceptions.Abort:
        fail("aborted", 1)
    except click.ClickException as exc:
        fail(describe_click_error(exc), exc.exit_code)
    except InvalidField as exc:
        fail(str(exc), 2)
    except FssError as exc:
        fail(str(exc), 1)
    except SQLAlchemyError as exc:
        fail(f"database: {describe_database_error(exc)}", 1)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        fail(f"{type(exc).__name__}: {one_line(str(exc))} (set {DEBUG_ENV}=1 for details)", 1)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def describe_click_error(exc: click.ClickException) -> str:
    """click's usage errors in the `<field>: <reason>` form, without the usage block."""
    param = exc.param if isinstance(exc, click.BadParameter) else None
    if param is not None and param.name and not isinstance(exc, click.MissingParameter):
        return f"{param.name}: {one_line(exc.message)}"
    message = one_line(exc.format_message())
    context = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and context is not None:
        message += f" (see `{context.command_path} --help`)"
    return message


MISSING_TABLE_MARKERS = ("no such table", "does not exist", "doesn't exist")


def describe_database_error(exc: SQLAlchemyError) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if any(marker in text for marker in MISSING_TABLE_MARKERS):
        text += " (run `fss db upgrade` to create the tables)"
    return text
