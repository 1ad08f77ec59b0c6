"""Browser tests: headless Chromium (Debian's chromium-headless-shell, driven by Playwright) against
the real web app, over the SQLite file of a real `fss dev` (scheduler, recorder and worker
in one process), so runs, progress and logs arrive as they would for a user.

* ``live_fss`` (module): `fss dev -A browser_jobs` in a subprocess plus the web app served by
  uvicorn in a thread on 127.0.0.1:<free port>, over the same file; a few groups made
  through fss.store. ``live_fss.url``, ``live_fss.engine``.
* ``browser`` (module): Chromium.
* ``admin_page`` / ``viewer_page``: a fresh 1280x800 context signed in through the login
  form. Any JavaScript dialog (alert/confirm/prompt) fails the test: captions and log lines
  with ``<script>`` must stay text, and the UI confirms in its own <dialog> elements.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Dialog, Page, sync_playwright
from runtime_python import runtime_python
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.group_spec import GroupSpec
from fss.store import groups
from fss.store.engine import create_engine
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

HERE = Path(__file__).parent
REPO = HERE.parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
# scripts/test installs Debian's chromium-headless-shell there (or names another binary, such
# as /usr/bin/chromium, with FSS_TEST_CHROMIUM): the full browser cost 2.4 times its CPU here.
CHROMIUM = (os.environ.get("FSS_TEST_CHROMIUM")
            or "/usr/lib/chromium/chromium-headless-shell")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
USERS = "admin:pw,viewer:pw2:viewer"
VIEWPORT = {"width": 1280, "height": 800}
START_TIMEOUT_S = 20.0

# Groups that make the pages look like a working system (the demo group comes from fss dev).
SEED_GROUPS = [
    GroupSpec(caption="flaky import", job_name="flaky", interval_ms=1500,
              data={"fail_rate": 0.4}),
    GroupSpec(caption="slow sync", job_name="sleepy", interval_ms=2500, data={"seconds": 1.2}),
    GroupSpec(caption="nightly report", job_name="hello", cron="0 3 * * *",
              time_zone="Europe/Berlin"),
    GroupSpec(caption="paused cleanup", job_name="hello", interval_ms=3_600_000, is_enable=False),
]


def wait_until(check: object, timeout_s: float, what: str, every_s: float = 0.1) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()  # type: ignore[operator]
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


@dataclass
class LiveFss:
    url: str
    engine: Engine
    db_url: str
    dev_output: Path
    group_ids: dict[str, int] = field(default_factory=dict)


def start_dev(workdir: Path, db_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    # The runtime venv (what a user installs, built from this checkout by scripts/test); the
    # web app under test is served by this process, so `fss dev` runs without its own.
    with (workdir / "dev.out").open("wb") as out:
        return subprocess.Popen(
            [runtime_python(), "-c", "from fss.cli import main; main()", "dev", "--db",
             str(db_path), "-A", "browser_jobs", "--quiet", "-c", "8", "--no-web"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def stop_dev(process: subprocess.Popen[bytes]) -> None:
    """kill -9: the module is done with it and its SQLite file. Ctrl-C only waited here: for
    the runs in flight (a long `tail` up to 15 s), and even idle `fss dev` takes ~4 s to stop
    (its in-memory broker's loop notices the stop after up to two 2 s polls). Ctrl-C itself is
    tested in tests/e2e/test_interrupt.py and tests/e2e/test_dev_command.py."""
    with contextlib.suppress(ProcessLookupError):  # its group is gone already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


class ServerThread:
    """uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, app: object) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        config = uvicorn.Config(app, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    def start(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started, START_TIMEOUT_S, "uvicorn to start", 0.02)
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self._sock.close()


def _dev_is_up(engine: Engine) -> bool:
    with engine.connect() as conn:
        nodes = conn.exec_driver_sql("SELECT COUNT(*) FROM server_node").scalar()
        clients = conn.exec_driver_sql("SELECT COUNT(*) FROM client").scalar()
    return bool(nodes and clients)


@pytest.fixture(scope="module")
def live_fss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFss]:
    workdir = tmp_path_factory.mktemp("browser")
    db_path = workdir / "fss-dev.db"
    db_url = f"sqlite:///{db_path}"
    dev = start_dev(workdir, db_path)
    engine = create_engine(db_url)
    server: ServerThread | None = None
    try:
        wait_until(lambda: _dev_is_up(engine), START_TIMEOUT_S, "fss dev to register")
        live = LiveFss("", engine, db_url, workdir / "dev.out")
        from fss.domain.clock import SystemClock

        now = SystemClock().now()
        for spec in SEED_GROUPS:
            live.group_ids[spec.caption] = groups.add_group(engine, spec.validated(), now)
        settings = Settings(database_url=db_url, broker_url="memory://")
        app = create_web_app(settings, WebSettings(users=parse_users(USERS)))
        server = ServerThread(app)
        live.url = server.start()
        yield live
    finally:
        if server is not None:
            server.stop()
        stop_dev(dev)
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def login(page: Page, base_url: str, user: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def _signed_in_page(browser: Browser, live: LiveFss, user: str, password: str) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.set_default_timeout(10_000)
    login(page, live.url, user, password)
    yield page
    context.close()
    assert dialogs == [], f"a JavaScript dialog opened: {dialogs}"


@pytest.fixture
def admin_page(browser: Browser, live_fss: LiveFss) -> Iterator[Page]:
    yield from _signed_in_page(browser, live_fss, "admin", "pw")


@pytest.fixture
def viewer_page(browser: Browser, live_fss: LiveFss) -> Iterator[Page]:
    yield from _signed_in_page(browser, live_fss, "viewer", "pw2")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
