"""`fss dev`: scheduler, recorder and worker in one process on SQLite and an in-process broker."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import click

from fss.cli.context import CliContext
from fss.cli.processes import setup_logging, start_scheduler
from fss.config import Settings
from fss.domain.clock import SystemClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import FINISHED
from fss.store import groups, migrate, tasks
from fss.store.recording import upsert_client
from fss.worker_sdk.worker import build_worker_app, load_jobs, worker_options

log = logging.getLogger("fss")

DEMO_GROUP = GroupSpec(caption="demo: hello every 2 s", job_name="hello", interval_ms=2000)
EXAMPLE_MODULE = "fss.examples.jobs"


@click.command("dev")
@click.option(
    "--db",
    "db_path",
    default="fss-dev.db",
    show_default=True,
    help="SQLite file to keep the FSS tables in.",
)
@click.option(
    "-A",
    "--app",
    "modules",
    multiple=True,
    help="More modules with @job functions (the bundled examples always load).",
)
@click.option("-c", "--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--quiet", is_flag=True, help="Do not print a line per finished task.")
def dev_command(db_path: str, modules: tuple[str, ...], concurrency: int, quiet: bool) -> None:
    """Everything in one process, nothing to install: try fss in a minute."""
    setup_logging("WARNING")
    logging.getLogger("fss.jobs").setLevel(logging.INFO)
    database_url = f"sqlite:///{Path(db_path).resolve()}"
    settings = Settings.from_env(
        database_url=database_url,
        broker_url="memory://localhost/",
        fence_url="memory://",
        node_name=f"dev-{os.getpid()}",
    )
    cli = CliContext(settings, SystemClock())
    migrate.upgrade(cli.engine)
    demo_id = ensure_demo_group(cli)
    jobs = load_jobs([EXAMPLE_MODULE, *modules])
    app, runtime = build_worker_app(settings, jobs, f"dev-worker-{os.getpid()}", cli.clock)
    # Register the in-process worker before the scheduler looks for clients, so the demo's
    # first run does not wait (and warn) for the first heartbeat.
    with cli.engine.begin() as conn:
        upsert_client(conn, runtime.heartbeat(), cli.clock.now())
    service = start_scheduler(cli, settings)
    click.echo(
        f"fss dev: database {db_path}, in-process broker\n"
        f"  scheduler  {settings.node_name}\n"
        f"  worker     {runtime.client_id} ({concurrency} threads), "
        f"jobs: {', '.join(sorted(jobs))}\n"
        f"  demo group {demo_id}: {DEMO_GROUP.caption}\n"
        f"Try: FSS_DATABASE_URL={database_url} fss task list\n"
        "Ctrl-C stops."
    )
    stop_watch = threading.Event()
    if not quiet:
        threading.Thread(target=watch_finished, args=(cli, stop_watch), daemon=True).start()
    worker = app.Worker(**worker_options(runtime, concurrency, "threads", "WARNING"))
    try:
        worker.start()
    finally:
        stop_watch.set()
        service.stop()
        cli.close()


def ensure_demo_group(cli: CliContext) -> int:
    with cli.engine.connect() as conn:
        existing = groups.list_groups(conn)
    if existing:
        return existing[0].id
    return groups.add_group(cli.engine, DEMO_GROUP, cli.clock.now())


def watch_finished(cli: CliContext, stop: threading.Event) -> None:
    """Print one line per finished task, so the user sees runs happen."""
    seen: set[int] = set()
    first = True
    while not stop.wait(0.5):
        try:
            with cli.engine.connect() as conn:
                recent = tasks.list_tasks(conn, limit=50)
        except Exception:
            continue
        for task in sorted(recent, key=lambda t: t.id):
            if task.status not in FINISHED or task.id in seen:
                continue
            seen.add(task.id)
            if not first:
                click.echo(
                    f"task {task.id} group {task.task_group_id} {task.job_name}: "
                    f"{task.status.label} in {task.run_speed} ms on {task.client_id}"
                )
        first = False
