"""`fss group apply / diff / export`: task groups kept as code in a YAML or JSON file.

The commands join `fss group` (fss.cli.groups.group_cli); importing this module adds them.

A file may define alert targets too (a top-level `alert_targets:` list, the entries of
`fss alert target apply`, `${VAR}` read from the environment): apply writes them with the
groups, diff shows them without their secrets, export never writes them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError

from fss.cli.context import CliContext, pass_cli
from fss.cli.groups import group_cli
from fss.domain.group_file import (
    FORMATS,
    GroupDocument,
    GroupFileInvalid,
    TargetPlan,
    parse_group_document,
    render_group_file,
)
from fss.domain.group_plan import GroupPlan
from fss.errors import FssError, InvalidField
from fss.store.group_files import apply_file, count_unkeyed, export_entries, plan_file

STDIN = "-"
# Exit codes of `fss group diff`, as diff(1) has them.
IN_SYNC, CHANGES, TROUBLE = 0, 1, 2

file_option = click.option(
    "-f",
    "--file",
    "path",
    required=True,
    help="The groups file, YAML or JSON (docs/groups.schema.json); - reads stdin.",
)
prune_option = click.option(
    "--prune",
    is_flag=True,
    help="Also delete keyed groups the file does not list "
    "(groups without a key are never touched).",
)


@group_cli.command("apply")
@file_option
@prune_option
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@pass_cli
def apply_command(cli: CliContext, path: str, prune: bool, dry_run: bool) -> None:
    """Create and update groups by key as the file says, all in one transaction.

    Nothing is written when any entry is invalid; every bad field is listed with its line.
    The file's `alert_targets:` (if any) are created or overwritten by name in the same
    transaction; targets it does not list stay. A group's alert_targets must name targets
    of the file or of the database.
    """
    document = read_group_file(path, "; nothing was written")
    if dry_run:
        with cli.engine.connect() as conn:
            plan, targets = plan_file(conn, document.entries, document.targets, prune)
    else:
        plan, targets = apply_file(
            cli.engine, document.entries, document.targets, cli.clock.now(), prune,
            cli.actor, {"file": os.path.basename(path)},
        )
    print_plan(plan, targets)
    prefix = "dry run, nothing written: " if dry_run else ""
    if document.targets:
        click.echo(f"{prefix}{targets.summary()}")
    click.echo(f"{prefix}{plan.summary()}")


@group_cli.command("diff")
@file_option
@prune_option
@pass_cli
def diff_command(cli: CliContext, path: str, prune: bool) -> None:
    """What `apply` would change: `+ create`, `~ update` (FIELD: OLD -> NEW), `- delete`.

    Alert targets of the file come first (`+ create alert target NAME`, `~ update alert
    target NAME`); their secrets never show, only "secret changed". Exits 0 when the
    database matches the file (and prints nothing), 1 when apply would change something,
    2 on an error, as diff does.
    """
    with errors_exit_with(TROUBLE):
        document = read_group_file(path)
        with cli.engine.connect() as conn:
            plan, targets = plan_file(conn, document.entries, document.targets, prune)
    print_plan(plan, targets)
    sys.exit(CHANGES if plan.has_changes or targets.has_changes else IN_SYNC)


@group_cli.command("export")
@click.option("--key-prefix", help="Only the groups whose key starts with this.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    help="yaml or json [default: json when -o ends in .json, else yaml]",
)
@click.option("-o", "--output", help="Write to this file instead of stdout.")
@pass_cli
def export_command(
    cli: CliContext, key_prefix: str | None, file_format: str | None, output: str | None
) -> None:
    """The groups that have a key, in the format `apply` reads: export -> apply changes nothing.

    Alert targets are not exported (they hold secrets): keep them in the file with `${VAR}`
    for each secret, or with `fss alert target apply`; `fss alert target list` shows them.
    """
    with cli.engine.connect() as conn:
        entries = export_entries(conn, key_prefix)
        unkeyed = 0 if key_prefix else count_unkeyed(conn)
    text = render_group_file(entries, file_format or format_of(output))
    if output is None:
        click.echo(text, nl=False)
    else:
        write_file(output, text)
        click.echo(f"exported {plural(len(entries), 'group')} to {output}")
    if unkeyed:
        click.echo(
            f"note: {plural(unkeyed, 'group')} without a key (made by `fss group add`) "
            "not exported",
            err=True,
        )


def read_group_file(path: str, consequence: str = "") -> GroupDocument:
    """The file's groups and alert targets (`${VAR}` read from the environment), or every
    problem on stderr (one per line, never a secret's value) and exit 2."""
    source = "<stdin>" if path == STDIN else path
    try:
        return parse_group_document(read_text(path), source, os.environ)
    except GroupFileInvalid as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        fail(f"{source}: {plural(len(exc.problems), 'error')}{consequence}", TROUBLE)


def read_text(path: str) -> str:
    try:
        raw = sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidField("file", f"cannot read {path!r} ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidField("file", f"{path!r} is not UTF-8 ({exc.reason})") from None


def write_file(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidField("output", f"cannot write {path!r} ({exc.strerror or exc})") from None


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_of(output: str | None) -> str:
    return "json" if output is not None and output.lower().endswith(".json") else "yaml"


def print_plan(plan: GroupPlan, targets: TargetPlan) -> None:
    for line in [*targets.describe(), *plan.describe()]:
        click.echo(line)


@contextmanager
def errors_exit_with(code: int) -> Iterator[None]:
    """Every error fss reports as one line ends the command with `code`."""
    try:
        yield
    except (FssError, SQLAlchemyError) as exc:
        fail(describe(exc), code)


def describe(exc: Exception) -> str:
    if isinstance(exc, SQLAlchemyError):
        from fss.cli import describe_database_error  # the package imports this module

        return f"database: {describe_database_error(exc)}"
    return str(exc)


def fail(message: str, code: int) -> NoReturn:
    lines = message.strip().splitlines()
    click.echo(f"error: {lines[0] if lines else message}", err=True)
    sys.exit(code)
