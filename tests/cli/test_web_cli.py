"""`fss web`: refuses to start without users, checks its database and broker first, prints
password hashes; and one real `fss web` process answering /healthz with JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from runtime_python import runtime_python
from servers import migrated_copy, wait_for

from fss.cli import main
from fss.store.engine import create_engine
from fss.web.auth import password_matches
from fss.web.config import parse_users

DEAD_BROKER = "redis://127.0.0.1:1/0"
FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def no_web_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FSS_WEB_USERS", "FSS_WEB_TOKEN", "FSS_WEB_SECRET", "FSS_WEB_PORT",
                 "FSS_WEB_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def migrated_sqlite(sqlite_url: str) -> str:
    migrated_copy(sqlite_url)  # the schema at head: tests/servers.py
    engine = create_engine(sqlite_url)
    engine.dispose()
    return sqlite_url


def test_without_users_it_refuses_to_start_with_one_line_saying_how(
    capsys: pytest.CaptureFixture[str], no_web_env: None, migrated_sqlite: str
) -> None:
    code, out, err = run(capsys, "web", "--database-url", migrated_sqlite)

    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: FSS_WEB_USERS: no users: set FSS_WEB_USERS=")
    assert "--no-auth" in err and "hash-password" in err


def test_bad_users_are_refused_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, migrated_sqlite: str
) -> None:
    monkeypatch.setenv("FSS_WEB_USERS", "no-password-here")

    code, _, err = run(capsys, "web", "--database-url", migrated_sqlite)

    assert code == 2
    assert err.startswith("error: FSS_WEB_USERS: entry 1 is not name:password[:role]"), err
    assert "no-password-here" not in err


@pytest.mark.parametrize("users", ["alice:pw,bob:s3cr3t:Viewer", "alice:pw,bob:s3cr3t:x:y"])
def test_an_unknown_role_refuses_to_start_naming_the_entry_not_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, migrated_sqlite: str,
    users: str,
) -> None:
    """`bob:s3cr3t:Viewer` made bob an admin whose password was `s3cr3t:Viewer`."""
    monkeypatch.setenv("FSS_WEB_USERS", users)

    code, out, err = run(capsys, "web", "--database-url", migrated_sqlite)

    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        "error: FSS_WEB_USERS: entry 2 (user 'bob'): the text after the last ':' is not a role"
    ), err
    assert "s3cr3t" not in err and "Viewer" not in err


def test_an_unmigrated_database_stops_it_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str,
    fresh_redis_url: Callable[[], str],
) -> None:
    monkeypatch.setenv("FSS_WEB_USERS", "admin:pw")
    create_engine(sqlite_url).dispose()
    Path(sqlite_url.removeprefix("sqlite:///")).touch()

    code, _, err = run(
        capsys, "web", "--database-url", sqlite_url, "--broker-url", fresh_redis_url()
    )

    assert code == 1
    assert err.strip().splitlines() == [
        "error: database schema is not up to date; run `fss db upgrade` first"
    ]


def test_an_unreachable_broker_stops_it_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, migrated_sqlite: str
) -> None:
    monkeypatch.setenv("FSS_WEB_USERS", "admin:pw")

    code, _, err = run(
        capsys, "web", "--database-url", migrated_sqlite, "--broker-url", DEAD_BROKER
    )

    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: broker: cannot connect to redis://127.0.0.1:1/0")


def test_a_taken_port_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, migrated_sqlite: str,
    fresh_redis_url: Callable[[], str],
) -> None:
    monkeypatch.setenv("FSS_WEB_USERS", "admin:pw")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = run(
            capsys, "web", "--port", str(port), "--database-url", migrated_sqlite,
            "--broker-url", fresh_redis_url(),
        )

    assert code == 1
    assert err.strip().splitlines() == [
        f"error: port: cannot listen on 127.0.0.1:{port} (Address already in use)"
    ]


def test_hash_password_from_stdin_gives_a_hash_fss_web_users_accepts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("s3cret, with comma\n"))

    code, out, _ = run(capsys, "web", "hash-password", "--stdin")

    assert code == 0
    hashed = out.strip()
    assert hashed.startswith("$scrypt$")
    assert password_matches(hashed, "s3cret, with comma")
    assert not password_matches(hashed, "s3cret")
    (user,) = parse_users(f"alice:{hashed}:viewer")
    assert (user.name, user.secret, user.role.value) == ("alice", hashed, "viewer")


def test_hash_password_refuses_an_empty_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("\n"))

    code, out, err = run(capsys, "web", "hash-password", "--stdin")

    assert code == 2
    assert out == ""
    assert err.strip() == "error: password: must not be empty"


@pytest.fixture
def web_process(
    tmp_path: Path, migrated_sqlite: str, fresh_redis_url: Callable[[], str]
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, users: str = "admin:pw") -> tuple[subprocess.Popen[bytes], Path]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FSS_")}
        env.update(FSS_WEB_USERS=users, FSS_DATABASE_URL=migrated_sqlite,
                   FSS_BROKER_URL=fresh_redis_url(), PYTHONUNBUFFERED="1")
        log_path = tmp_path / "web.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*FSS, "web", "--port", "0", *args], cwd=tmp_path, env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        started.append(process)
        return process, log_path

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def serving_url(log_path: Path) -> str | None:
    for line in log_path.read_text(errors="replace").splitlines():
        if "fss web serving on " in line:
            return line.split("fss web serving on ", 1)[1].split()[0]
    return None


def test_a_real_fss_web_answers_and_logs_json_lines(
    web_process: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    process, log_path = web_process("--log-format", "json")
    wait_for(lambda: serving_url(log_path) is not None or process.poll() is not None,
             timeout=30, what="fss web to listen")
    url = serving_url(log_path)
    assert url is not None, log_path.read_text()

    health = httpx.get(f"{url}/healthz", timeout=5)
    ready = httpx.get(f"{url}/readyz", timeout=5)
    refused = httpx.get(f"{url}/metrics", timeout=5)
    metrics = httpx.get(f"{url}/metrics", auth=("admin", "pw"), timeout=5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0

    assert health.json() == {"status": "ok"}
    assert ready.json() == {"database": "ok", "broker": "ok"}
    assert refused.status_code == 401
    assert "fss_tasks" in metrics.text
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any("/healthz" in r["message"] for r in access), records


def test_no_auth_warns_and_lets_anyone_in(
    web_process: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    process, log_path = web_process("--no-auth", users="")
    wait_for(lambda: serving_url(log_path) is not None or process.poll() is not None,
             timeout=30, what="fss web to listen")
    url = serving_url(log_path)
    assert url is not None, log_path.read_text()

    metrics = httpx.get(f"{url}/metrics", timeout=5)

    assert metrics.status_code == 200
    assert "WARNING fss.web: --no-auth: anyone who can reach" in log_path.read_text()
