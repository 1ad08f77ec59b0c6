"""`fss scheduler` and `fss worker`: the long-running processes."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from fss.celery_app import check_broker_transport, create_app
from fss.cli.context import CliContext, pass_cli
from fss.cli.logs import keep_celery_off_logging, log_format_option
from fss.cli.logs import setup_logging as setup_logging  # re-exported: fss dev uses it
from fss.config import Settings
from fss.errors import FssError
from fss.fence import create_fence
from fss.scheduler.service import SchedulerService
from fss.store import migrate
from fss.worker_sdk.worker import build_worker_app, client_id_for, load_jobs, worker_argv

log = logging.getLogger("fss")

class SchemaOutdated(FssError):
    def __init__(self) -> None:
        super().__init__("database schema is not up to date; run `fss db upgrade` first")


def require_current_schema(cli: CliContext) -> None:
    if not migrate.is_up_to_date(cli.engine):
        raise SchemaOutdated()


def start_scheduler(cli: CliContext, settings: Settings) -> SchedulerService:
    app = create_app(settings, main=f"fss-scheduler-{settings.node_name}")
    fence = create_fence(settings.effective_fence_url)
    if settings.effective_fence_url == "none":
        log.warning(
            "no Redis for fencing (broker %s); set FSS_FENCE_URL to a Redis URL "
            "so a re-sent order can never run twice",
            settings.broker_url,
        )
    service = SchedulerService(settings, cli.engine, app, fence, cli.clock)
    service.start()
    return service


def wait_for_signal() -> None:
    stopped = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stopped.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    while not stopped.wait(1.0):
        pass


@click.command("scheduler")
@click.option("--name", help="Node name (default host-pid); unique per running instance.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@log_format_option
@pass_cli
def scheduler_command(cli: CliContext, name: str | None, loglevel: str, log_format: str) -> None:
    """Run a scheduler instance (run as many as you like; they share the work)."""
    setup_logging(loglevel, log_format)
    if name:
        cli.settings = cli.settings.replace(node_name=name)
    check_broker_transport(cli.settings.broker_url)
    require_current_schema(cli)
    service = start_scheduler(cli, cli.settings)
    log.info(
        "scheduler %s running (database %s, broker %s)",
        cli.settings.node_name,
        cli.engine.url.render_as_string(hide_password=True),
        cli.settings.broker_url,
    )
    try:
        wait_for_signal()
    finally:
        service.stop()


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
    import os

    check_broker_transport(cli.settings.broker_url)
    jobs = load_jobs(list(modules))
    client_id = client_id_for(name, os.getpid())
    app, runtime = build_worker_app(cli.settings, jobs, client_id, cli.clock)
    argv = worker_argv(runtime, concurrency, pool, loglevel, list(celery_args))
    if log_format == "json":
        setup_logging(loglevel, log_format)
        keep_celery_off_logging()
        # --quiet: no startup banner, which Celery prints as plain text on stdout.
        argv = ["--quiet", *argv]
    app.worker_main(argv)
