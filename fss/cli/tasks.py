"""`fss task ...` and `fss client ...`: what ran, where, and what it said."""

from __future__ import annotations

import getpass
import time

import click

from fss.cli.context import ID, CliContext, IdCommand, pass_cli
from fss.cli.output import emit_json, emit_record, emit_table
from fss.domain.status import FINISHED, TaskStatus
from fss.errors import InvalidField
from fss.store import tasks as store
from fss.store.clients import list_clients
from fss.store.retries import task_attempts
from fss.store.rows import LOG_LEVEL_NAMES, ClientRow, LogRow
from fss.store.views import LogCursor, first_line, log_key, log_lines, log_page


@click.group("task")
def task_cli() -> None:
    """Tasks: single runs of a group."""


def parse_status(value: str | None) -> TaskStatus | None:
    if value is None:
        return None
    try:
        return TaskStatus.parse(value)
    except ValueError as exc:
        raise InvalidField("status", str(exc)) from None


@task_cli.command("list")
@click.option("--group", "group_id", type=ID, help="Only this group's tasks.")
@click.option("--status", help="None, Scheduler, Working, Fail or Success.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def list_tasks(
    cli: CliContext, group_id: int | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Newest tasks first."""
    wanted = parse_status(status)
    with cli.engine.connect() as conn:
        rows = store.list_tasks(conn, group_id, wanted, limit)
    if as_json:
        emit_json([t.to_json() for t in rows])
        return
    emit_table(
        [
            "id",
            "task_group_id",
            "job_name",
            "status",
            "progress",
            "start_at",
            "run_speed",
            "client_id",
            "server_node",
            "attempt",
            "kind",
        ],
        [
            [
                t.id,
                t.task_group_id,
                t.job_name,
                t.status.label,
                t.progress,
                t.start_at,
                t.run_speed,
                t.client_id,
                t.server_node,
                t.attempt,
                t.kind,
            ]
            for t in rows
        ],
    )


@task_cli.command("show", cls=IdCommand)
@click.argument("task_id", type=ID)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def show_task(cli: CliContext, task_id: int, as_json: bool) -> None:
    """One task in full, with the data given to this run only (`fss group run --data`) and
    every attempt (its own client, times and error)."""
    with cli.engine.connect() as conn:
        row = store.get_task(conn, task_id)
        run_data = store.task_run_data(conn, task_id)
        attempts = [a.to_json() for a in task_attempts(conn, task_id)]
    if as_json:
        emit_json({**row.to_json(), "run_data": run_data, "attempts": attempts})
        return
    emit_record([*row.to_json().items(), ("run_data", run_data)])
    if attempts:
        click.echo()
        columns = ["attempt", "status", "client_id", "dispatched_at", "run_at", "finish_at"]
        if row.shard_total is not None:  # a broadcast run: one line per shard of an attempt
            columns[1:1] = ["shard_index", "progress"]
        emit_table(
            [*columns, "error"],
            [[a[c] for c in columns] + [first_line(a["error"])] for a in attempts],
        )


def print_log(row: LogRow) -> None:
    level = LOG_LEVEL_NAMES.get(row.log_level, str(row.log_level))
    stamp = row.create_at.strftime("%H:%M:%S.%f")[:-3]
    # A broadcast run's lines come from several shards: each says which.
    shard = "" if row.shard_index is None else f"[shard {row.shard_index}] "
    click.echo(f"{stamp} {level:<11} {shard}{row.content}")


# Lines per round trip when `fss task logs` prints a whole log.
LOG_PAGE = 1000


@task_cli.command("logs", cls=IdCommand)
@click.argument("task_id", type=ID)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the task finishes.")
@click.option("--limit", type=click.IntRange(1), help="Print at most N lines (all by default).")
@click.option("--after", "after", help="Start after this cursor (printed by --limit).")
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def task_logs(
    cli: CliContext,
    task_id: int,
    follow: bool,
    limit: int | None,
    after: str | None,
    as_json: bool,
) -> None:
    """Run logs of a task in the job's order: every line, page by page (like kubectl logs);
    --limit N prints N and, when there are more, the --after cursor to continue on stderr."""
    cursor = LogCursor.decode(after, "after") if after else None
    collected: list[LogRow] = []  # for --json: one document
    count = last_id = 0
    while True:
        page_size = LOG_PAGE if limit is None else min(LOG_PAGE, limit - count)
        with cli.engine.connect() as conn:
            store.get_task(conn, task_id)
            rows, cursor = log_lines(conn, task_id, cursor, limit=page_size)
        if as_json:
            collected.extend(rows)
        else:
            for row in rows:
                print_log(row)
        count += len(rows)
        last_id = max([last_id, *(r.id for r in rows)])
        if cursor is None or (limit is not None and count >= limit):
            break
    if as_json:
        emit_json([r.to_json() for r in collected])
    if limit is not None and cursor is not None:
        click.echo(f"more lines: --after {cursor.encode()}", err=True)
        return
    while follow:
        with cli.engine.connect() as conn:
            done = store.get_task(conn, task_id).status in FINISHED
            rows = log_page(conn, task_id, last_id, limit=LOG_PAGE)
        for row in sorted(rows, key=log_key):
            print_log(row)
            last_id = max(last_id, row.id)
        if done and not rows:
            return
        if len(rows) < LOG_PAGE:
            time.sleep(0.5)


@task_cli.command("kill", cls=IdCommand)
@click.argument("task_id", type=ID)
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def kill_task(cli: CliContext, task_id: int, as_json: bool) -> None:
    """Stop a running task now: Celery's revoke with terminate on the worker running it
    (gRPC clients: `cancel`). The run ends Fail "killed by <you>". A threads or solo pool
    cannot kill a running job: the refusal is printed and the exit code is 1."""
    from fss.kills import KillRefused, Outcome
    from fss.kills import kill_task as kill

    result = kill(
        cli.engine, cli.settings, cli.clock, task_id, f"{_user()} (fss task kill)", cli.actor
    )
    if as_json:
        emit_json(result.to_json())
    if result.outcome is not Outcome.SENT:
        raise KillRefused(result.message)
    if not as_json:
        click.echo(result.message)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown user"


@click.group("client")
def client_cli() -> None:
    """Clients: registered workers."""


@client_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def list_client_rows(cli: CliContext, as_json: bool) -> None:
    """Registered clients with their jobs, last heartbeat, runs they report running
    (active, what route least_busy compares) and tags (`fss worker --tag`)."""
    with cli.engine.connect() as conn:
        rows = list_clients(conn)
    now = cli.clock.now()
    if as_json:
        emit_json([c.to_json() for c in rows])
        return
    emit_table(
        [
            "id", "state", "host", "ip", "pid", "language", "jobs", "queue", "heartbeat_age_s",
            "active", "tags",
        ],
        [
            [
                c.id,
                client_state(c),
                c.host,
                c.ip,
                c.pid,
                c.language,
                ",".join(c.job_names),
                c.queue,
                round((now - c.heartbeat_at).total_seconds(), 1),
                c.active_runs,
                c.tags or "-",
            ]
            for c in rows
        ],
    )


def client_state(row: ClientRow) -> str:
    if row.kicked_at is not None:
        return "kicked"
    return "ready" if row.accepting else "draining"
