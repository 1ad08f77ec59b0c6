"""`fss dev`, the README's run command, as a real process: runs within seconds, every finished
run printed (the first one too), a clean stop, and one `fss dev` per database."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fss_processes import FSS, query
from servers import wait_for

pytestmark = pytest.mark.e2e

SUCCESS = 4
WORKING = 2
# How long `fss dev` may take to show its demo runs: a process start (imports, migrations, a
# worker) and a 2 s interval, on a slow host under the whole suite. A bound for a hang, not
# a timing claim: how fast it starts is measured by bench/, not here.
STARTS_WITHIN_S = 30


@dataclass
class DevProcess:
    process: subprocess.Popen[bytes]
    output_path: Path

    def stop(self) -> str:
        """SIGINT (Ctrl-C), wait for the exit, return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.output()

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[object]:
    started: list[DevProcess] = []

    def start(*args: str, name: str = "dev") -> DevProcess:
        output_path = tmp_path / f"{name}.out"
        with output_path.open("wb") as out:
            process = subprocess.Popen(
                [*FSS, "dev", *args], cwd=tmp_path, env=clean_env(), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        dev = DevProcess(process, output_path)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        dev.stop()


def count(db_url: str, sql: str) -> int:
    try:
        return int(query(db_url, sql)[0][0])
    except Exception:  # the file or the tables are not there yet
        return 0


def fss(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FSS, *args], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60
    )


def test_given_a_fresh_directory_when_fss_dev_starts_then_every_run_is_printed_first_one_too(
    tmp_path: Path, start_dev: object
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fss-dev.db'}"
    dev = start_dev()  # type: ignore[operator]

    wait_for(
        lambda: count(db_url, f"SELECT COUNT(*) FROM task WHERE status = {SUCCESS}") >= 2,
        timeout=STARTS_WITHIN_S, what="two successful demo runs",
    )
    first = count(db_url, f"SELECT MIN(id) FROM task WHERE status = {SUCCESS}")
    wait_for(lambda: f"task {first + 1} " in dev.output(), timeout=5, what="the second line")
    output = dev.stop()

    assert "demo group 1" in output
    assert f"task {first} group 1 hello: Success" in output, output
    # What a newcomer reads is fss's own lines: no Celery banner, no advice meant for a
    # deployed worker (run as root, Celery warned about superuser privileges).
    assert "[queues]" not in output and "SecurityWarning" not in output, output
    logs = query(db_url, "SELECT content FROM run_log")
    assert any("hello from fss" in row[0] for row in logs)
    assert dev.process.returncode is not None


def test_given_runs_that_finished_before_start_when_fss_dev_restarts_then_they_are_not_printed(
    tmp_path: Path, start_dev: object
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fss-dev.db'}"
    first = start_dev(name="first")  # type: ignore[operator]
    wait_for(
        lambda: count(db_url, f"SELECT COUNT(*) FROM task WHERE status = {SUCCESS}") >= 1,
        timeout=STARTS_WITHIN_S, what="a successful demo run",
    )
    first.stop()
    done_before = count(db_url, "SELECT MAX(id) FROM task WHERE finish_at IS NOT NULL")

    second = start_dev(name="second")  # type: ignore[operator]
    wait_for(
        lambda: count(db_url, f"SELECT MAX(id) FROM task WHERE status = {SUCCESS}") > done_before,
        timeout=STARTS_WITHIN_S, what="a run after the restart",
    )
    newest = count(db_url, f"SELECT MAX(id) FROM task WHERE status = {SUCCESS}")
    wait_for(lambda: f"task {newest} " in second.output(), timeout=5, what="its line")
    output = second.stop()

    assert f"task {done_before} " not in output, output


def test_given_a_long_run_and_a_fast_group_when_fss_dev_stops_then_no_no_client_warning(
    tmp_path: Path, start_dev: object
) -> None:
    """Ctrl-C while a run is in progress: the worker drains and unregisters, and no waiting
    task is told that no live client runs its job."""
    db_url = f"sqlite:///{tmp_path / 'fss-dev.db'}"
    assert fss(tmp_path, "db", "upgrade", "--database-url", db_url).returncode == 0
    # The sleepy run keeps the worker draining for 4 s; the hello groups come due meanwhile
    # at spread-out moments, after the scheduler has learnt that the worker drains.
    groups = [
        ("--caption", "long", "--job-name", "sleepy", "--interval-ms", "100",
         "--data", '{"seconds": 4}'),
        *[
            ("--caption", f"hello {ms}", "--job-name", "hello", "--interval-ms", str(ms))
            for ms in (2300, 2500, 2700, 2900, 3100, 3300)
        ],
    ]
    for args in groups:
        assert fss(tmp_path, "group", "add", *args, "--database-url", db_url).returncode == 0
    dev = start_dev()  # type: ignore[operator]
    wait_for(
        lambda: count(db_url, "SELECT COUNT(*) FROM task WHERE job_name = 'sleepy' "
                      f"AND status = {WORKING}") == 1
        and count(db_url, f"SELECT COUNT(*) FROM task WHERE status = {SUCCESS}") >= 1,
        timeout=STARTS_WITHIN_S, what="a sleepy run in progress and a few quick runs done",
    )

    output = dev.stop()

    assert dev.process.returncode == 0, output
    warnings = query(db_url, "SELECT content FROM run_log WHERE content LIKE '%no live client%'")
    assert warnings == [], output
    sleepy = query(db_url, "SELECT status FROM task WHERE job_name = 'sleepy' ORDER BY id")
    assert sleepy[0][0] == SUCCESS, (sleepy, output)  # the run in progress ended and was recorded
    assert count(db_url, "SELECT COUNT(*) FROM client") == 0  # the worker unregistered


def test_given_a_running_fss_dev_when_a_second_starts_on_its_database_then_it_refuses(
    tmp_path: Path, start_dev: object
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fss-dev.db'}"
    first = start_dev()  # type: ignore[operator]
    wait_for(
        lambda: count(db_url, "SELECT COUNT(*) FROM server_node WHERE is_alive") == 1,
        timeout=STARTS_WITHIN_S, what="the first node's heartbeat",
    )
    tasks_before = count(db_url, "SELECT COUNT(*) FROM server_node")

    started = time.monotonic()
    second = fss(tmp_path, "dev")

    assert second.returncode == 1, second
    assert time.monotonic() - started < 30
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error: db: "), lines[0]
    assert f"dev-{first.process.pid}" in lines[0]
    assert count(db_url, "SELECT COUNT(*) FROM server_node") == tasks_before
    assert first.process.poll() is None  # the first one keeps running


WEB_LINE = re.compile(r"web UI +(http://127\.0\.0\.1:\d+) +\(log in as admin / (\S+)\)")


def web_login(output: str) -> tuple[str, str] | None:
    found = WEB_LINE.search(output)
    return (found.group(1), found.group(2)) if found else None


def test_given_fss_dev_when_the_printed_url_is_opened_then_the_printed_login_works(
    tmp_path: Path, start_dev: object
) -> None:
    with socket.socket() as taken:  # the asked-for port is busy: dev moves on to a free one
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        dev = start_dev("--web-port", str(busy))  # type: ignore[operator]
        wait_for(
            lambda: web_login(dev.output()) is not None, timeout=STARTS_WITHIN_S,
            what="the web UI line",
        )
    login = web_login(dev.output())
    assert login is not None
    url, password = login
    assert f"port {busy} is taken: the web UI listens on" in dev.output()
    assert url != f"http://127.0.0.1:{busy}"

    with httpx.Client(base_url=url, timeout=5) as browser:
        health = browser.get("/healthz")
        refused = browser.post("/login", data={"username": "admin", "password": "wrong"})
        accepted = browser.post(
            "/login", data={"username": "admin", "password": password, "next": "/"}
        )
        me = browser.get("/api/v1/me")
        groups = browser.get("/api/v1/groups")
    output = dev.stop()

    assert health.json() == {"status": "ok"}
    assert refused.status_code == 401
    assert accepted.status_code == 303, accepted.text
    assert me.json()["name"] == "admin", me.text
    assert [g["caption"] for g in groups.json()["items"]] == ["demo: hello every 2 s"]
    assert dev.process.returncode == 0, output


def test_given_no_web_when_fss_dev_starts_then_no_web_ui(
    tmp_path: Path, start_dev: object
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fss-dev.db'}"
    dev = start_dev("--no-web")  # type: ignore[operator]
    wait_for(lambda: "Ctrl-C stops." in dev.output(), timeout=STARTS_WITHIN_S, what="the banner")
    wait_for(
        lambda: count(db_url, f"SELECT COUNT(*) FROM task WHERE status = {SUCCESS}") >= 1,
        timeout=STARTS_WITHIN_S, what="a successful demo run",
    )
    output = dev.stop()

    assert "web UI" not in output
