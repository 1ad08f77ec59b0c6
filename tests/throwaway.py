"""Throwaway servers for restart tests: a redis-server and a PostgreSQL cluster of our own.

Restart tests stop and start their servers, so they never use the machine's shared ones
(``tests/servers.py``). Each server here lives in its own temporary directory, listens on a
free port on 127.0.0.1 only, and is stopped and deleted when its fixture ends, whether the
test passed or not (an ``atexit`` hook covers an interrupted run as well).

* ``ThrowawayRedis``: ``redis-server --appendonly yes --appendfsync always``, so every write
  survives ``stop()`` / ``start()``.
* ``ThrowawayPostgres``: ``initdb`` (trust auth) into a directory owned by the ``postgres`` OS
  user, run with ``runuser -u postgres --`` when we are root (initdb refuses root), started with
  ``pg_ctl -o "-p PORT -k SOCKDIR -c listen_addresses=127.0.0.1"``.

Both have ``start()``, ``stop()``, ``restart(down_s)``, ``close()`` and ``url``; use them through
the fixtures ``throwaway_redis`` / ``throwaway_postgres`` (import them into the test module:
``from throwaway import throwaway_redis``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PG_BIN_ENV = "FSS_TEST_PG_BIN"
PG_OS_USER = "postgres"

_LIVE: set[ThrowawayRedis | ThrowawayPostgres] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _wait(predicate: Callable[[], bool], timeout: float, what: str,
          interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


class ThrowawayRedis:
    """A redis-server of our own in ``root`` (AOF on, fsync always), on a free port."""

    def __init__(self, root: Path | None = None, port: int | None = None,
                 durable: bool = True) -> None:
        self.durable = durable
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="fss-redis-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)",
                        pytrace=False)
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
            "--appendonly", "yes" if self.durable else "no", "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no", "--logfile", str(self.log_path),
            "--protected-mode", "no",
        ]
        _LIVE.add(self)
        self.process = subprocess.Popen(
            args, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            _wait(self._answers, START_TIMEOUT_S, f"redis-server on port {self.port}")
        except RuntimeError as exc:
            self.stop(kill=True)
            raise RuntimeError(f"{exc}\n{_tail(self.log_path)}") from None
        self.starts += 1

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (Redis flushes the AOF and exits) or, with ``kill``, SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        # The port is free again once the listener is gone.
        _wait(lambda: not port_open(self.port), 10, f"port {self.port} to close")

    def restart(self, down_s: float = 0.0, kill: bool = False) -> None:
        self.stop(kill=kill)
        if down_s:
            time.sleep(down_s)
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            _LIVE.discard(self)
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayRedis:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def pg_bin_dir() -> Path:
    """``$FSS_TEST_PG_BIN``, else the newest /usr/lib/postgresql/<ver>/bin with initdb."""
    configured = os.environ.get(PG_BIN_ENV)
    if configured:
        return Path(configured)
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    if candidates:
        return Path(max(candidates, key=version)).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    pytest.fail(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql "
        f"or set {PG_BIN_ENV}",
        pytrace=False,
    )


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own: trust auth, superuser ``postgres``, a free port.

    Its directory is made with ``mkdtemp`` directly in the temp dir (pytest's ``tmp_path``
    is not reachable for another OS user) and handed to the ``postgres`` user.
    """

    def __init__(self, port: int | None = None) -> None:
        self.bin = pg_bin_dir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="fss-pg-"))
        self.data = self.root / "data"
        self.sockdir = self.root  # short: a Unix socket path is limited to ~107 bytes
        self.log_path = self.root / "postgres.log"
        self._as_root = os.geteuid() == 0
        self._initialised = False
        self.starts = 0
        _LIVE.add(self)
        if self._as_root:
            shutil.chown(self.root, PG_OS_USER, PG_OS_USER)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", PG_OS_USER, "--", *command]
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{_tail(self.log_path)}"
            )
        return result

    def init(self) -> None:
        if self._initialised:
            return
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        self._initialised = True

    @property
    def running(self) -> bool:
        if not self._initialised:
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def start(self) -> None:
        self.init()
        options = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path),
                  "-w", "-t", str(int(START_TIMEOUT_S)), "-o", options,
                  timeout=START_TIMEOUT_S + 10)
        _wait(lambda: port_open(self.port), 10, f"postgres on port {self.port}")
        self.starts += 1

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (ends client sessions, clean shutdown) or ``immediate``."""
        if not self.running:
            return
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w",
                  "-t", str(int(STOP_TIMEOUT_S)), timeout=STOP_TIMEOUT_S + 10)
        _wait(lambda: not port_open(self.port), 10, f"port {self.port} to close")

    def restart(self, down_s: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        if down_s:
            time.sleep(down_s)
        self.start()

    def close(self) -> None:
        try:
            if self._initialised:
                with contextlib.suppress(Exception):
                    self.stop("immediate")
                self._kill_leftover_postmaster()
        finally:
            _LIVE.discard(self)
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftover_postmaster(self) -> None:
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)
            _wait(lambda: not _alive(pid), 10, f"postmaster {pid} to exit")

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@atexit.register
def _close_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A started redis-server of this test's own (AOF, fsync always); deleted after it."""
    server = ThrowawayRedis(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started PostgreSQL cluster of this test's own (trust auth); deleted after it."""
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()
