"""`fss worker`: a Celery worker serving @job functions (needs the broker, not the database)."""

from __future__ import annotations

import os

import click

from fss.celery_app import check_broker_transport
from fss.cli.context import CliContext, pass_cli
from fss.cli.logs import keep_celery_off_logging, log_format_option, setup_logging
from fss.worker_sdk.worker import build_worker_app, client_id_for, load_jobs, worker_argv


@click.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "-A",
    "--app",
    "modules",
    multiple=True,
    required=True,
    help="Module(s) with @job functions, e.g. -A myproject.jobs (repeatable).",
)
@click.option("--name", help="Client id (default host-pid); keep it stable across restarts.")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="A tag of this client (repeatable): groups with that client tag run only on "
    "clients started with it, e.g. --tag gpu.",
)
@click.option("-c", "--concurrency", type=click.IntRange(1, 1024), default=2, show_default=True)
@click.option(
    "-P",
    "--pool",
    default="prefork",
    show_default=True,
    type=click.Choice(["prefork", "threads", "solo", "eventlet", "gevent"]),
)
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@log_format_option
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def worker_command(
    cli: CliContext,
    modules: tuple[str, ...],
    name: str | None,
    tags: tuple[str, ...],
    concurrency: int,
    pool: str,
    loglevel: str,
    log_format: str,
    celery_args: tuple[str, ...],
) -> None:
    """Run a worker that serves the @job functions of the given modules.

    Needs the broker only (no database). Arguments fss does not know are passed on to
    `celery worker`, e.g. `fss worker -A jobs --max-tasks-per-child 100`.
    """
    check_broker_transport(cli.settings.broker_url)
    jobs = load_jobs(list(modules))
    client_id = client_id_for(name, os.getpid())
    app, runtime = build_worker_app(cli.settings, jobs, client_id, cli.clock, tags)
    argv = worker_argv(runtime, concurrency, pool, loglevel, list(celery_args))
    if log_format == "json":
        setup_logging(loglevel, log_format)
        keep_celery_off_logging()
        # --quiet: no startup banner, which Celery prints as plain text on stdout.
        argv = ["--quiet", *argv]
    app.worker_main(argv)


# Every fss command takes --database-url (pass_cli); say what it is to a worker: nothing.
for _param in worker_command.params:
    if _param.name == "database_url" and isinstance(_param, click.Option):
        _param.help = (
            "Not used: a worker never opens the database (accepted so that one environment "
            "serves every fss command) [env FSS_DATABASE_URL]."
        )
