"""The `fss` command line: one click group, one module per command group."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from fss import __version__
from fss.cli.lazy import LazyGroup
from fss.errors import FssError, InvalidField

# Imported when run (LazyGroup): a process loads only what its command needs.
COMMANDS: dict[str, tuple[str, ...]] = {
    "db": ("fss.cli.db:db_cli",),
    "group": ("fss.cli.groups:group_cli", "fss.cli.preview", "fss.cli.schedules"),
    "task": ("fss.cli.tasks:task_cli",),
    "client": ("fss.cli.tasks:client_cli",),
    "dead-letters": ("fss.cli.dead_letters:dead_letters_cli",),
    "node": ("fss.cli.nodes:node_cli",),
    "scheduler": ("fss.cli.processes:scheduler_command",),
    "worker": ("fss.cli.worker:worker_command",),
    "dev": ("fss.cli.dev:dev_command",),
    "bridge": ("fss.cli.bridge:bridge_command",),
    "health": ("fss.cli.health:health_command",),
    "doctor": ("fss.cli.health:doctor_command",),
    "completion": ("fss.cli.completion:completion_command",),
    "web": ("fss.cli.web:web_command",),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="fss")
def cli() -> None:
    """a distributed job scheduling center on Celery.

    Task groups (a job name, a schedule, JSON data) become tasks; schedulers dispatch
    each due task to one live worker; status, progress and run logs land in SQL.
    Every command reads FSS_DATABASE_URL / FSS_BROKER_URL unless given the options.
    """


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
    except Exception as exc:
        if is_database_error(exc):
            fail(f"database: {describe_database_error(exc)}", 1)
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


def is_database_error(exc: Exception) -> bool:
    """A SQLAlchemyError, without importing SQLAlchemy into commands that never use it."""
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_errors is not None and isinstance(exc, sqlalchemy_errors.SQLAlchemyError)


def describe_database_error(exc: Exception) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if any(marker in text for marker in MISSING_TABLE_MARKERS):
        text += " (run `fss db upgrade` to create the tables)"
    return text
