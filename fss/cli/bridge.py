"""`fss bridge`: the gRPC server through which workers in any language join."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import click
from kombu.connection import Connection

from fss.bridge.grpc_server import DEFAULT_LISTEN, TlsFiles, check_listen, start_bridge
from fss.celery_app import check_broker_transport
from fss.cli.context import first_line
from fss.cli.logs import log_format_option, setup_logging
from fss.cli.processes import stop_on_signal, wait_for_signal
from fss.config import Settings, hide_password
from fss.errors import InvalidField

log = logging.getLogger("fss")


def read_file(field: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidField(field, f"cannot read {str(path)!r} ({exc.strerror or exc})") from None


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def read_token(path: Path) -> str:
    """The file's content without surrounding whitespace; it must not be empty."""
    token = read_file("token_file", path).decode("utf-8", errors="replace").strip()
    if not token:
        raise InvalidField("token_file", f"{str(path)!r} is empty; put the token in it")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise InvalidField("token_file", "the token must be one line without spaces")
    return token


def read_tls(cert: Path | None, key: Path | None) -> TlsFiles | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "tls_cert" if cert is None else "tls_key"
        raise InvalidField(missing, "give --tls-cert and --tls-key together")
    return TlsFiles(cert_pem=read_file("tls_cert", cert), key_pem=read_file("tls_key", key))


FILE = click.Path(dir_okay=False, path_type=Path)

BROKER_PROBE_TIMEOUT_S = 2.0
BROKER_RETRY_MAX_S = 5.0


def broker_problem(url: str, timeout_s: float = BROKER_PROBE_TIMEOUT_S) -> str | None:
    """Why the broker does not answer a connection now, or None when it does."""
    if url.startswith("memory://"):
        return None
    try:
        with Connection(url, connect_timeout=timeout_s) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s
            )
    except Exception as exc:  # kombu raises the transport's own errors
        return first_line(exc)
    return None


def wait_for_broker(url: str, stopped: threading.Event) -> bool:
    """Block until the broker answers (True) or SIGTERM/SIGINT arrives first (False).

    The bridge binds its port only after this: a bridge that said "serving" while it could
    not reach the broker took registrations it could never hand a run. Like schedulers and
    workers it waits for a broker that is not up yet instead of exiting.
    """
    problem = broker_problem(url)
    if problem is None:
        return True
    shown = hide_password(url)
    log.warning("waiting for broker %s (%s); not serving until it answers", shown, problem)
    delay = 0.5
    while not stopped.wait(delay):
        if broker_problem(url) is None:
            log.info("broker %s answers", shown)
            return True
        delay = min(delay * 2, BROKER_RETRY_MAX_S)
    return False


@click.command("bridge")
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    envvar="FSS_BRIDGE_LISTEN",
    help="HOST:PORT to serve gRPC on (0.0.0.0:50051 for every interface) "
    "[env FSS_BRIDGE_LISTEN].",
)
@click.option(
    "--token-file",
    type=FILE,
    envvar="FSS_BRIDGE_TOKEN_FILE",
    help="File holding the token clients must send as `authorization: Bearer <token>`; "
    "without it any client may connect [env FSS_BRIDGE_TOKEN_FILE].",
)
@click.option("--tls-cert", type=FILE, help="PEM certificate chain: serve TLS (with --tls-key).")
@click.option("--tls-key", type=FILE, help="PEM private key of --tls-cert.")
@click.option(
    "--broker-url",
    envvar="FSS_BROKER_URL",
    help="Celery broker URL [env FSS_BROKER_URL; default redis://127.0.0.1:6379/0].",
)
@click.option(
    "--loglevel",
    "-l",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@log_format_option
def bridge_command(
    listen: str,
    token_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    broker_url: str | None,
    loglevel: str,
    log_format: str,
) -> None:
    """Serve the fss.v1 gRPC protocol: workers in any language register, receive their
    runs and report back, like `fss worker` processes (see docs/bridge.md).

    Needs the broker only (FSS_BROKER_URL, and FSS_FENCE_URL when the broker is not Redis),
    never the database. Run several side by side; a client may connect to any of them.
    `fss task kill` reaches its clients through it (`cancel`; the run is failed
    FSS_TIME_LIMIT_GRACE_S later if the client does not end it).
    SIGTERM cancels the running orders, reports them failed and stops.
    """
    check_listen(listen)
    token = read_token(token_file) if token_file is not None else None
    tls = read_tls(tls_cert, tls_key)
    settings = Settings.from_env(broker_url=broker_url)
    setup_logging(loglevel, log_format)
    check_broker_transport(settings.broker_url)
    # Installed once, before anything slow: a signal during start-up is never lost.
    stopped = stop_on_signal()
    if not wait_for_broker(settings.broker_url, stopped):
        return
    bridge = start_bridge(settings, listen=listen, token=token, tls=tls)
    log.info(
        "bridge %s serving on %s (broker %s%s)",
        bridge.hub.node,
        bridge.listening,
        hide_password(settings.broker_url),
        ", token required" if token else "",
    )
    if token is None and not is_loopback(listen):
        log.warning(
            "no --token-file: any client that reaches %s can register and take runs", listen
        )
    try:
        wait_for_signal(stopped)
    finally:
        bridge.stop()
