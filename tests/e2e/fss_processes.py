"""Start real `fss` processes for end-to-end tests and stop them (gracefully or with kill -9)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from runtime_python import runtime_python
from sqlalchemy.engine import Engine

# fss processes run on the runtime interpreter: with scripts/test, a venv holding only what
# `pip install -e .` declares, so a dependency the test tools bring along cannot hide.
FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]


@dataclass
class FssProcesses:
    workdir: Path
    database_url: str
    broker_url: str
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # More FSS_* settings for every process started (and CLI call) from now on.
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FSS_DATABASE_URL=self.database_url,
            FSS_BROKER_URL=self.broker_url,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*FSS, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"fss {' '.join(args)} failed: {result.stderr}")
        return result

    def migrate(self) -> None:
        """What `fss db upgrade` does (the schema, the installation id), in this process: the
        command costs ~1.5 s of interpreter start and imports per test. It runs on the runtime
        interpreter in tests/test_logsafe.py, and in-process in tests/cli."""
        from fss.store import migrate
        from fss.store.engine import create_engine
        from fss.store.installation import installation_id

        engine = create_engine(self.database_url)
        try:
            migrate.upgrade(engine)
            installation_id(engine)
        finally:
            engine.dispose()

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            [*FSS, *args], cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.running[name] = process
        return process

    def scheduler(self, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, "scheduler", "--name", name)

    def worker(self, name: str, module: str, *extra: str) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "-A", module, "--name", name, *extra)

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, name: str, timeout: float = 15) -> int:
        process = self.running.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def kill_all(self) -> None:
        """kill -9 every process group still running: a test's teardown. A graceful stop
        there only waited: for the runs in flight (a worker's warm stop lets a 60 s job go on
        up to stop()'s 15 s), and a SIGTERM to `faketime` left its worker running, orphaned.
        A test that means a graceful stop asks for it itself (stop, stop_all)."""
        for name in list(self.running):
            process = self.running.pop(name)
            with contextlib.suppress(ProcessLookupError):  # its group is gone already
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def log_of(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")


# One pooled engine per database URL. Tests poll with query() every 50 ms while they wait
# for processes; an engine made and disposed per call opened a connection each time (~9 ms,
# and a PostgreSQL backend started for it: ~15% of a core per waiting test).
_ENGINES: dict[str, Engine] = {}


def query(database_url: str, sql: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
    engine = _ENGINES.get(database_url)
    if engine is None:
        from fss.store.engine import create_engine

        # pre_ping (the default): a connection a restarted server dropped is replaced.
        engine = _ENGINES[database_url] = create_engine(database_url)
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


def dispose_engines() -> None:
    """Close query()'s connections: before a test's database is dropped (tests/e2e/conftest.py
    does it after every test)."""
    while _ENGINES:
        _, engine = _ENGINES.popitem()
        engine.dispose()
