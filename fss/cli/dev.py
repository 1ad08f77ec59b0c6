"""`fss dev`: scheduler, recorder and worker in one process on SQLite and an in-process broker."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from celery import signals
from celery.exceptions import SecurityWarning

from fss.cli.context import CliContext
from fss.cli.processes import setup_logging, start_scheduler
from fss.config import Settings
from fss.domain.clock import Clock, SystemClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import FINISHED, TaskStatus
from fss.errors import FssError
from fss.scheduler.recorder import Recorder
from fss.scheduler.service import SchedulerService
from fss.store import groups, migrate, tasks
from fss.store.clients import list_clients
from fss.store.nodes import live_nodes
from fss.store.recording import record, upsert_client
from fss.store.rows import NodeRow, TaskRow
from fss.worker_sdk.runtime import WorkerRuntime
from fss.worker_sdk.worker import build_worker_app, load_jobs, worker_options

if TYPE_CHECKING:
    from fss.cli.web import ServerThread
    from fss.web import WebSettings

log = logging.getLogger("fss")

DEMO_GROUP = GroupSpec(caption="demo: hello every 2 s", job_name="hello", interval_ms=2000)
EXAMPLE_MODULE = "fss.examples.jobs"
WATCH_EVERY_S = 0.5
WATCH_WINDOW = 200  # newest tasks looked at per poll
FINAL_EVENTS_WAIT_S = 5.0  # how long a stop waits for the draining worker's last events
FINAL_EVENTS_POLL_S = 0.05


class DatabaseInUse(FssError):
    """Another scheduler runs on the database: its broker is not ours, so it would take our
    runs and send them where our worker never looks."""

    def __init__(self, db_path: str, node: NodeRow, age_s: float) -> None:
        self.node = node
        super().__init__(
            f"db: {db_path} is in use by scheduler node {node.id} (pid {node.pid} on "
            f"{node.host}, heartbeat {age_s:.1f} s ago); stop it first, or give this "
            "`fss dev` another --db"
        )


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
@click.option("--web-port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port of the web UI on 127.0.0.1 (the next free one if taken).")
@click.option("--no-web", is_flag=True, help="Do not serve the web UI.")
def dev_command(
    db_path: str, modules: tuple[str, ...], concurrency: int, quiet: bool, web_port: int,
    no_web: bool,
) -> None:
    """Everything in one process, nothing to install: try fss in a minute.

    The web UI is served on http://127.0.0.1:8000; without FSS_WEB_USERS a user `admin`
    with a random password is made, and the banner prints both.
    """
    setup_logging("WARNING")
    logging.getLogger("fss.jobs").setLevel(logging.INFO)
    # Bad modules are refused before anything is written (the database file included).
    jobs = load_jobs([EXAMPLE_MODULE, *modules])
    settings = Settings.from_env(
        database_url=f"sqlite:///{Path(db_path).resolve()}",
        broker_url="memory://localhost/",
        fence_url="memory://",
        node_name=f"dev-{os.getpid()}",
    )
    cli = CliContext(settings, SystemClock(), may_create_database=True)
    try:
        migrate.upgrade(cli.engine)
        refuse_if_in_use(cli, db_path)
        run_dev(cli, db_path, jobs, concurrency, quiet, None if no_web else web_port)
    finally:
        cli.close()


def refuse_if_in_use(cli: CliContext, db_path: str) -> None:
    now = cli.clock.now()
    alive_since = now - timedelta(seconds=cli.settings.lease_s)
    with cli.engine.connect() as conn:
        others = [n for n in live_nodes(conn, alive_since) if n.id != cli.settings.node_name]
    if others:
        raise DatabaseInUse(db_path, others[0], others[0].heartbeat_age_s(now))


def run_dev(
    cli: CliContext, db_path: str, jobs: dict[str, Any], concurrency: int, quiet: bool,
    web_port: int | None = None,
) -> None:
    settings = cli.settings
    demo_id = ensure_demo_group(cli)
    app, runtime = build_worker_app(settings, jobs, f"dev-worker-{os.getpid()}", cli.clock)
    # Register the in-process worker before the scheduler looks for clients, so the demo's
    # first run does not wait (and warn) for the first heartbeat.
    with cli.engine.begin() as conn:
        upsert_client(conn, runtime.heartbeat(), cli.clock.now())
    watcher = FinishedWatcher(cli)  # before the scheduler: what is finished now is history
    service = start_scheduler(cli, settings)
    web = DevWeb.start(settings, cli.clock, web_port)
    click.echo(
        f"fss dev: database {db_path}, in-process broker\n"
        f"  scheduler  {settings.node_name}\n"
        f"  worker     {runtime.client_id} ({concurrency} threads), "
        f"jobs: {', '.join(sorted(jobs))}\n"
        f"  demo group {demo_id}: {DEMO_GROUP.caption}\n"
        f"{web.banner}"
        f"Try: FSS_DATABASE_URL={settings.database_url} fss task list\n"
        "Ctrl-C stops."
    )
    stop_watch = threading.Event()
    if not quiet:
        threading.Thread(target=watcher.run, args=(stop_watch,), daemon=True).start()
    with warnings.catch_warnings():
        # `fss dev` is a sandbox, often run as root in a container: Celery's advice to pass
        # --uid is for a deployed worker (`fss worker` keeps it). Its banner repeats what the
        # lines above say.
        warnings.simplefilter("ignore", SecurityWarning)
        worker = app.Worker(
            quiet=True, **worker_options(runtime, concurrency, "threads", "WARNING")
        )
    stopper = OrderedStop(cli, service, runtime)
    signals.worker_shutting_down.connect(
        stopper.on_worker_stopping, weak=False, dispatch_uid=stopper.uid
    )

    def before_exit() -> None:
        # A second Ctrl-C leaves without waiting for the runs: record what the worker
        # reported (those runs failed, its unregistration) before the process goes.
        stop_watch.set()
        web.stop()
        stopper.finish()

    runtime.before_exit.append(before_exit)
    try:
        worker.start()
    finally:
        signals.worker_shutting_down.disconnect(dispatch_uid=stopper.uid)
        stop_watch.set()
        web.stop()
        stopper.finish()


class OrderedStop:
    """Ctrl-C: the scheduler stops first, the worker drains, its last events are recorded.

    While the worker drains it says it takes no new runs; a scheduler still dispatching
    would then tell every task coming due that no live client runs its job. So claims and
    dispatches end at once, and a recorder of its own writes what the draining worker still
    reports (runs ending, its unregistration) until the worker is gone.
    """

    def __init__(self, cli: CliContext, service: SchedulerService, runtime: WorkerRuntime) -> None:
        self._cli = cli
        self._service = service
        self._runtime = runtime
        self._lock = threading.Lock()
        self._scheduler_stopped = False
        self._recorder_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.uid = f"fss.dev.stop.{id(self)}"

    def on_worker_stopping(self, **_: Any) -> None:
        # Runs inside Celery's signal handler: hand the work to a thread and return.
        thread = threading.Thread(target=self.stop_scheduler, name="fss-dev-stop", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop_scheduler(self) -> None:
        with self._lock:
            if self._scheduler_stopped:
                return
            self._scheduler_stopped = True
            self._service.stop()
            recorder = Recorder(self._cli.engine, self._cli.settings, self._cli.clock)
            thread = threading.Thread(
                target=recorder.run, args=(self._recorder_stop,), name="fss-dev-recorder",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def finish(self) -> None:
        """After the worker stopped: wait (bounded) for its last events, then clean up."""
        self.stop_scheduler()
        try:
            wait_until(self._worker_recorded_gone, FINAL_EVENTS_WAIT_S)
        finally:
            self._recorder_stop.set()
            for thread in list(self._threads):
                thread.join(timeout=10)
            self._unregister_worker()

    def _worker_recorded_gone(self) -> bool:
        client_id = self._runtime.client_id
        with self._cli.engine.connect() as conn:
            registered = any(c.id == client_id for c in list_clients(conn))
            working = tasks.list_tasks(conn, status=TaskStatus.WORKING, limit=WATCH_WINDOW)
        return not registered and not any(t.client_id == client_id for t in working)

    def _unregister_worker(self) -> None:
        # Normally the worker's own `left` event did it; this covers a recorder that could not.
        try:
            with self._cli.engine.begin() as conn:
                record(conn, [self._runtime.left()], self._cli.clock.now())
        except Exception as exc:
            log.warning("could not unregister the dev worker (%s)", exc)


DEV_WEB_HOST = "127.0.0.1"
WEB_PORT_TRIES = 20


@dataclass
class DevWeb:
    """The web UI of `fss dev`, on loopback, with a login a newcomer can use right away."""

    banner: str = ""
    server: ServerThread | None = None

    @classmethod
    def start(cls, settings: Settings, clock: Clock, port: int | None) -> DevWeb:
        if port is None:
            return cls()
        # Imported here: the web stack (FastAPI, uvicorn, Jinja2) is ~0.7 s of CPU at start-up
        # that `fss dev --no-web` does not need.
        from fss.cli.web import ServerThread, listen_near
        from fss.web import create_web_app

        listener, note = listen_near(DEV_WEB_HOST, port, WEB_PORT_TRIES)
        notes = f"  ({note})\n" if note else ""
        if listener is None:
            return cls(banner=notes)
        web, login = dev_web_settings(listener.port)
        server = ServerThread(create_web_app(settings, web, clock), listener, "WARNING")
        return cls(f"  web UI     {listener.url}  {login}\n{notes}", server.start())

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def dev_web_settings(port: int) -> tuple[WebSettings, str]:
    """FSS_WEB_USERS / FSS_WEB_TOKEN when set; else user `admin` with a random password,
    printed once in the banner (a new one every start)."""
    from fss.web import WebSettings, WebUser

    configured = WebSettings.from_env(host=DEV_WEB_HOST, port=port)
    if configured.auth_configured:
        return configured, "(log in as a user of FSS_WEB_USERS)"
    password = secrets.token_urlsafe(9)
    web = WebSettings(
        host=DEV_WEB_HOST, port=port, users=(WebUser("admin", password),),
        secret=secrets.token_urlsafe(32),
    )
    return web, f"(log in as admin / {password})"


def wait_until(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if done():
                return True
        except Exception as exc:
            log.debug("waiting for the worker's last events: %s", exc)
        if time.monotonic() >= deadline:
            return False
        time.sleep(FINAL_EVENTS_POLL_S)


def ensure_demo_group(cli: CliContext) -> int:
    with cli.engine.connect() as conn:
        existing = groups.list_groups(conn)
    if existing:
        return existing[0].id
    return groups.add_group(cli.engine, DEMO_GROUP, cli.clock.now())


class FinishedWatcher:
    """Prints one line per run that finishes after it was created, so the user sees runs
    happen; runs finished before (an earlier `fss dev` on the same file) are history."""

    def __init__(self, cli: CliContext) -> None:
        self._cli = cli
        self._seen = {t.id for t in self._recent() if t.status in FINISHED}

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(WATCH_EVERY_S):
            try:
                self.poll()
            except Exception as exc:  # a busy SQLite file: try again on the next poll
                log.debug("watching finished runs failed (%s)", exc)

    def poll(self) -> list[str]:
        new = [
            t
            for t in sorted(self._recent(), key=lambda t: t.id)
            if t.status in FINISHED and t.id not in self._seen
        ]
        self._seen.update(t.id for t in new)
        lines = [finished_line(t) for t in new]
        for line in lines:
            click.echo(line)
        return lines

    def _recent(self) -> list[TaskRow]:
        with self._cli.engine.connect() as conn:
            return tasks.list_tasks(conn, limit=WATCH_WINDOW)


def finished_line(task: TaskRow) -> str:
    return (
        f"task {task.id} group {task.task_group_id} {task.job_name}: "
        f"{task.status.label} in {task.run_speed} ms on {task.client_id}"
    )
