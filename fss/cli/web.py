"""`fss web`: the monitoring UI, JSON API and /metrics, served by uvicorn.

Any number of replicas may run behind one address: sessions and refused-login counts live
in the database, so a cookie from one is good at all of them and a logout on one ends it at
all of them (give them the same FSS_WEB_USERS: a session is bound to its user's password).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from types import FrameType

import click
import uvicorn

from fss.celery_app import check_broker_transport
from fss.cli.bridge import is_loopback
from fss.cli.context import CliContext, connection_options
from fss.cli.health import DEFAULT_BROKER_TIMEOUT_S, check_broker
from fss.cli.logs import log_format_option, setup_logging
from fss.cli.processes import require_current_schema
from fss.config import Settings, hide_password
from fss.errors import FssError, InvalidField
from fss.web import WebSettings, create_web_app
from fss.web.auth import hash_password

log = logging.getLogger("fss.web")

NO_USERS = (
    "no users: set FSS_WEB_USERS='name:password[:viewer],...' (the password may be a hash "
    "from `fss web hash-password`) or FSS_WEB_TOKENS='name:token:role,...', or pass --no-auth "
    "for anonymous access"
)


class CannotListen(FssError):
    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"port: cannot listen on {host}:{port} ({reason})")


class BrokerUnreachable(FssError):
    pass


@dataclass(frozen=True)
class Listener:
    sock: socket.socket
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def listen(host: str, port: int) -> Listener:
    """A bound, listening socket, so a taken port is one clear line before anything starts
    (port 0 picks a free one; Listener.port says which)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CannotListen(host, port, exc.strerror or str(exc)) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CannotListen(host, port, exc.strerror or str(exc)) from None
    sock.set_inheritable(True)
    return Listener(sock, host, int(sock.getsockname()[1]))


def web_settings(host: str, port: int, no_auth: bool) -> WebSettings:
    web = WebSettings.from_env(host=host, port=port, no_auth=no_auth)
    if not web.auth_configured and not no_auth:
        raise InvalidField("FSS_WEB_USERS", NO_USERS)
    return web


def warn_about_auth(web: WebSettings, url: str) -> None:
    if not web.no_auth:
        return
    if is_loopback(f"{web.host}:{web.port}"):
        log.warning("--no-auth: anyone who can reach %s may see and change everything", url)
    else:
        log.error(
            "--no-auth ON A NETWORK ADDRESS: anyone who can reach %s may see, create, run and "
            "delete task groups and kick clients, without a password. Bind to 127.0.0.1 or "
            "set FSS_WEB_USERS.", url,
        )


def check_dependencies(settings: Settings) -> None:
    """The database (reachable, migrated) and the broker (reachable): one line each if not."""
    check_broker_transport(settings.broker_url)
    cli = CliContext(settings)
    try:
        require_current_schema(cli)
    finally:
        cli.close()
    broker = check_broker(settings.broker_url, DEFAULT_BROKER_TIMEOUT_S)
    if not broker.ok:
        raise BrokerUnreachable(f"broker: {broker.detail}")


def describe_auth(web: WebSettings) -> str:
    if web.no_auth:
        return "no authentication"
    parts = [f"{len(web.users)} user(s)"] if web.users else []
    if web.bearer_tokens:
        parts.append(f"{len(web.bearer_tokens)} bearer token(s)")
    return ", ".join(parts)


def serve(app: object, listener: Listener, loglevel: str) -> None:
    """uvicorn on the bound socket; its log lines go through fss's handler (text or JSON)."""
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_config=None,
        log_level=loglevel.lower(),
        timeout_graceful_shutdown=5,
        # Behind a reverse proxy the client address comes from X-Forwarded-For.
        proxy_headers=True,
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler it found: with these, that ends in a normal exit (0), as `fss scheduler` does.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stopped_by)
    uvicorn.Server(config).run(sockets=[listener.sock])


class ServerThread:
    """uvicorn in a background thread (for `fss dev`): no signal handlers of its own."""

    def __init__(self, app: object, listener: Listener, loglevel: str) -> None:
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_config=None, log_level=loglevel.lower(), timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._listener = listener
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener.sock]}, name="fss-web",
            daemon=True,
        )

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._listener.sock.close()


def listen_near(host: str, port: int, tries: int) -> tuple[Listener | None, str]:
    """`port`, or the next free one of the `tries` after it; with a line saying what happened."""
    for candidate in range(port, min(port + tries, 65535) + 1):
        try:
            listener = listen(host, candidate)
        except CannotListen:
            continue
        if candidate != port:
            return listener, f"port {port} is taken: the web UI listens on {candidate} instead"
        return listener, ""
    return None, f"web UI not started: ports {port}..{port + tries} on {host} are all taken"


def stopped_by(signum: int, _frame: FrameType | None) -> None:
    log.info("%s received: stopped", signal.Signals(signum).name)


@click.group(
    "web", invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="FSS_WEB_HOST",
              help="Address to listen on (0.0.0.0 for every interface) [env FSS_WEB_HOST].")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              envvar="FSS_WEB_PORT", help="Port (0 picks a free one) [env FSS_WEB_PORT].")
@click.option("--no-auth", is_flag=True,
              help="Anyone who reaches the port may see and change everything (a warning "
              "is printed). Without it FSS_WEB_USERS or FSS_WEB_TOKEN must be set.")
@click.option("--loglevel", "-l", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@log_format_option
@connection_options
@click.pass_context
def web_command(
    ctx: click.Context,
    host: str,
    port: int,
    no_auth: bool,
    loglevel: str,
    log_format: str,
    database_url: str | None,
    broker_url: str | None,
) -> None:
    """Serve the web UI, the JSON API (/api/v1, docs at /api/docs) and /metrics.

    Users: FSS_WEB_USERS='alice:secret,bob:secret2:viewer' (roles admin, the default, and
    viewer; a password containing ':' needs the role after it, `carol:a:b:admin`; an unknown
    role stops it; a password may be a hash from `fss web hash-password`); FSS_WEB_TOKEN is a
    Bearer token for scripts. Browsers log in with a form, scripts use HTTP Basic or the
    token. Needs FSS_DATABASE_URL (migrated) and FSS_BROKER_URL, like the scheduler.
    """
    if ctx.invoked_subcommand is not None:
        return
    web = web_settings(host, port, no_auth)
    settings = Settings.from_env(database_url=database_url, broker_url=broker_url)
    setup_logging(loglevel, log_format)
    check_dependencies(settings)
    listener = listen(host, port)
    web = WebSettings.from_env(host=host, port=listener.port, no_auth=no_auth)
    warn_about_auth(web, listener.url)
    log.info(
        "fss web serving on %s (database %s, broker %s, %s)",
        listener.url,
        hide_password(settings.database_url),
        hide_password(settings.broker_url),
        describe_auth(web),
    )
    try:
        serve(create_web_app(settings, web), listener, loglevel)
    finally:
        listener.sock.close()


@web_command.command("hash-password")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the password from the first line of stdin instead of prompting.")
def hash_password_command(from_stdin: bool) -> None:
    """Print a scrypt hash of a password, to use in FSS_WEB_USERS instead of the password
    (e.g. FSS_WEB_USERS='alice:$scrypt$...'; quote it: it contains $)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise InvalidField("password", "must not be empty")
    click.echo(hash_password(password))
