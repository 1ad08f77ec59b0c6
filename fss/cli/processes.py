"""`fss scheduler`, and what every long-running process shares (signals, schema check)."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from types import FrameType

import click

from fss.celery_app import check_broker_transport, create_app
from fss.cli.context import CliContext, pass_cli
from fss.cli.logs import log_format_option
from fss.cli.logs import setup_logging as setup_logging  # re-exported: fss dev uses it
from fss.config import Settings
from fss.errors import FssError
from fss.fence import create_fence
from fss.installation import BrokerMark, InstallationGuard, ScopedFence
from fss.logsafe import mask_urls
from fss.presence import create_presence
from fss.scheduler.service import SchedulerService
from fss.store import schema_revision
from fss.store.installation import installation_id, live_beacon_workers

log = logging.getLogger("fss")

class SchemaOutdated(FssError):
    def __init__(self) -> None:
        super().__init__("database schema is not up to date; run `fss db upgrade` first")


def require_current_schema(cli: CliContext) -> None:
    if not schema_revision.is_up_to_date(cli.engine):
        raise SchemaOutdated()


def installation_guard(
    cli: CliContext, settings: Settings, installation: str
) -> InstallationGuard | None:
    """Checks the installation's mark on each Redis the scheduler uses: the broker's (where
    the orders go) and the fence's, when FSS_FENCE_URL names another. A broker that is not
    Redis keeps no mark (see docs/guarantees.md, Installations)."""
    stores = [
        (url, role, setting)
        for url, role, setting in (
            (settings.broker_url, "broker", "FSS_BROKER_URL"),
            (settings.effective_fence_url, "fence Redis", "FSS_FENCE_URL"),
        )
        if url.startswith(("redis://", "rediss://"))
    ]
    if len(stores) == 2 and stores[0][0] == stores[1][0]:
        stores.pop()  # the broker is the fence
    if not stores:
        return None
    engine, clock = cli.engine, cli.clock
    (url, role, setting), *others = stores
    guard = InstallationGuard(
        installation,
        BrokerMark(url),
        lambda: live_beacon_workers(
            engine, clock.now() - timedelta(seconds=settings.client_timeout_s)
        ),
        broker_label=mask_urls(url),
        also=[(BrokerMark(u), mask_urls(u), r, s) for u, r, s in others],
        role=role,
        setting=setting,
    )
    try:
        guard.check()
    except Exception as exc:  # the node heartbeat checks again every few seconds
        log.warning("cannot check the installation's mark yet (%s)", exc)
    return guard


def start_scheduler(cli: CliContext, settings: Settings) -> SchedulerService:
    app = create_app(settings, main=f"fss-scheduler-{settings.node_name}")
    installation = installation_id(cli.engine, cli.clock)
    # Fence keys carry the installation: a database re-created under an old Redis, or
    # another installation on the same Redis, never finds its task ids fenced.
    fence = ScopedFence(create_fence(settings.effective_fence_url), installation)
    if settings.effective_fence_url == "none":
        log.warning(
            "no Redis for fencing (broker %s); set FSS_FENCE_URL to a Redis URL "
            "so a re-sent order can never run twice",
            settings.broker_url,
        )
    presence = create_presence(settings.effective_fence_url)
    service = SchedulerService(
        settings,
        cli.engine,
        app,
        fence,
        cli.clock,
        presence=presence,
        installation=installation,
        guard=installation_guard(cli, settings, installation),
    )
    service.start()
    return service


def stop_on_signal() -> threading.Event:
    """An event set by SIGTERM or SIGINT, from now on. The first signal is logged; later
    ones (one Ctrl-C reaches the process twice when a wrapper in the terminal's process
    group passes it on) stop nothing more and are not logged again."""
    stopped = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stopped.is_set():
            return
        log.info("%s received, stopping", signal.Signals(signum).name)
        stopped.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stopped


def wait_for_signal(stopped: threading.Event | None = None) -> None:
    """Block until SIGTERM or SIGINT. `stopped`: a stop_on_signal() event made earlier
    (set by a signal that came while the process was still starting): waiting on it loses
    no signal, where installing new handlers could."""
    if stopped is None:
        stopped = stop_on_signal()
    while not stopped.wait(1.0):
        pass


@click.command("scheduler")
@click.option("--name", help="Node name (default host-pid); unique per running instance.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@log_format_option
@pass_cli
def scheduler_command(cli: CliContext, name: str | None, loglevel: str, log_format: str) -> None:
    """Run a scheduler instance (run as many as you like; they share the work)."""
    # Every database loop of the scheduler retries a failed iteration, so a pooled
    # connection that died costs one iteration, not a `SELECT 1` before every transaction.
    cli.pre_ping = False
    setup_logging(loglevel, log_format)
    if name:
        cli.settings = cli.settings.replace(node_name=name)
    check_broker_transport(cli.settings.broker_url)
    require_current_schema(cli)
    service = start_scheduler(cli, cli.settings)
    log.info(
        "scheduler %s running (installation %s, database %s, broker %s)",
        cli.settings.node_name,
        service.installation,
        cli.engine.url.render_as_string(hide_password=True),
        cli.settings.broker_url,
    )
    try:
        wait_for_signal()
    finally:
        service.stop()
