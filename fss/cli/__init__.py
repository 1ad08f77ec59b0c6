"""The `fss` command line: one click group, one module per command group."""

from __future__ import annotations

import re
import sys
import traceback
from typing import NoReturn

import click

from fss import __version__
from fss.cli.lazy import LazyGroup
from fss.config import misspelt_variables, read_flag
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
    "alert": ("fss.cli.alerts:alert_cli", "fss.cli.alert_list"),
    "audit": ("fss.cli.audit:audit_cli",),
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
    for name, setting in misspelt_variables():
        click.echo(f"warning: {name} is not an fss setting (ignored): did you mean {setting}?",
                   err=True)


DEBUG_ENV = "FSS_DEBUG"


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and a non-zero exit.

    2 for bad input, 1 for anything else. FSS_DEBUG=1 prints the traceback of every error
    above that line (the exit code stays the same). A command group given no subcommand
    prints its help and exits 0.
    """
    try:
        debug = read_flag(DEBUG_ENV)
    except InvalidField as exc:
        fail(str(exc), 2)
    try:
        cli.main(args=argv, prog_name="fss", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        # `fss` (or `fss group`) alone asks for the help: print it, this is no error.
        click.echo(exc.ctx.get_help() if exc.ctx is not None else cli.get_help(click.Context(cli)))
        sys.exit(0)
    except Exception as exc:  # click.exceptions.Abort is an Exception too (RuntimeError)
        message, code = describe_error(exc)
        if debug:
            if message is None:
                raise  # unexpected: Python's own report
            traceback.print_exc()
        fail(message or unexpected_error(exc), code)


def describe_error(exc: Exception) -> tuple[str | None, int]:
    """The one line and exit code for an error that ends a command; None for an error fss
    did not expect."""
    if isinstance(exc, click.exceptions.Abort):
        return "aborted", 1
    if isinstance(exc, click.ClickException):
        return describe_click_error(exc), exc.exit_code
    if isinstance(exc, InvalidField):
        return str(exc), 2
    if isinstance(exc, FssError):
        return str(exc), 1
    if is_database_error(exc):
        return f"database: {describe_database_error(exc)}", 1
    return None, 1


def unexpected_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {one_line(str(exc))} (set {DEBUG_ENV}=1 for details)"


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


# A table fss needs is missing (SQLite, PostgreSQL, MySQL/MariaDB); not any "does not exist":
# `role "x" does not exist` is a login problem `fss db upgrade` cannot solve.
MISSING_TABLE = re.compile(
    r"no such table|\brelation \S+ does not exist|\bTable '[^']*' doesn't exist"
)


def is_database_error(exc: Exception) -> bool:
    """A SQLAlchemyError, without importing SQLAlchemy into commands that never use it."""
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_errors is not None and isinstance(exc, sqlalchemy_errors.SQLAlchemyError)


def describe_database_error(exc: Exception) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if MISSING_TABLE.search(text):
        text += " (run `fss db upgrade` to create the tables)"
    return text
