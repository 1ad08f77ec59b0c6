"""What a new user hits first, run through the real `fss` executable: a database that does not
exist yet, a broker fss does not support, FSS_DEBUG, and a bridge whose broker is down.
Each ends in one line naming the problem (and FSS_DEBUG=1 adds the traceback)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime_python import runtime_python
from servers import SqlServer, new_database_name, wait_for
from sqlalchemy.engine import make_url

from fss.config import BROKER_TRANSPORTS

FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]


def clean_env(**env: str) -> dict[str, str]:
    """The test's environment without FSS_* settings (FSS_TEST_* stay), plus `env`."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("FSS_") or k.startswith("FSS_TEST_")}
    return {**environ, **env}


def fss(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FSS, *args], capture_output=True, text=True,
                          env=clean_env(**(env or {})), timeout=60, stdin=subprocess.DEVNULL)


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# -- a database that is not there ---------------------------------------------------------------


@pytest.fixture(params=["postgres", "mysql"])
def sql_server(request: pytest.FixtureRequest) -> SqlServer:
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


@pytest.fixture
def missing_database(sql_server: SqlServer) -> Iterator[tuple[SqlServer, str]]:
    """The URL of a database no one created; dropped after the test if the test created it."""
    name = new_database_name()
    yield sql_server, sql_server.url_for(name)
    sql_server.drop_database(name)


def test_given_a_database_that_does_not_exist_then_the_error_gives_the_command_that_creates_it(
    missing_database: tuple[SqlServer, str], tmp_path: Path
) -> None:
    _, url = missing_database
    name = url.rsplit("/", 1)[1].split("?")[0]

    for args in (["group", "list"], ["db", "upgrade"]):
        line = one_error_line(fss(*args, "--database-url", url), 2)
        assert line.startswith(f"error: database_url: database '{name}' does not exist on "), line
        assert "then run `fss db upgrade`" in line

    # The command the line gives works as given, and after it `fss db upgrade` does.
    command = re.search(r"create it with `(.+)`, then run", line)
    assert command is not None, line
    created = subprocess.run(command.group(1), shell=True, capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    upgraded = fss("db", "upgrade", "--database-url", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert fss("group", "list", "--database-url", url).returncode == 0


def test_given_fss_debug_then_a_database_error_shows_its_traceback(
    missing_database: tuple[SqlServer, str],
) -> None:
    _, url = missing_database

    result = fss("group", "list", "--database-url", url, env={"FSS_DEBUG": "1"})

    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "OperationalError" in result.stderr  # the cause, chained
    assert result.stderr.splitlines()[-1].startswith("error: database_url: database ")


def test_given_missing_tables_then_the_line_says_db_upgrade_and_given_a_missing_role_it_does_not(
    sql_server: SqlServer,
) -> None:
    url = sql_server.create_database()
    try:
        line = one_error_line(fss("group", "list", "--database-url", url), 1)
        assert "task_group" in line and "(run `fss db upgrade`" in line, line

        # `role "nobody..." does not exist` also says "does not exist": it was told to run
        # `fss db upgrade`, which cannot make a role.
        stranger = make_url(url).set(username="nobody_fss_test", password="pw")
        line = one_error_line(
            fss("group", "list", "--database-url", stranger.render_as_string(hide_password=False)),
            1,
        )
        assert "nobody_fss_test" in line and "fss db upgrade" not in line, line
    finally:
        sql_server.drop_database(url)


def test_given_a_mysql_url_without_its_driver_then_the_line_says_what_to_install() -> None:
    # An fss installed without the extra: `import pymysql` fails in that interpreter.
    result = subprocess.run(
        [runtime_python(), "-c",
         "import sys; sys.modules['pymysql'] = None; from fss.cli import main; main()",
         "group", "list", "--database-url", "mysql://root@127.0.0.1/fss"],
        capture_output=True, text=True, env=clean_env(), timeout=60, stdin=subprocess.DEVNULL,
    )

    line = one_error_line(result, 2)
    assert line.startswith("error: database_url: its driver is not installed"), line
    assert "pip install 'fss[mysql]'" in line, line


# -- brokers fss does not run on ----------------------------------------------------------------

BROKER_COMMANDS = [
    ["scheduler"], ["worker", "-A", "fss.examples.jobs"], ["bridge"], ["health"], ["doctor"],
    ["web", "--no-auth", "--port", "0"], ["group", "list"],
]


@pytest.mark.parametrize("command", BROKER_COMMANDS, ids=lambda c: c[0])
def test_given_a_broker_fss_does_not_support_then_every_command_refuses_it_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    # kafka:// is a transport kombu knows; without confluent-kafka it ended in
    # `NameError: KafkaException`.
    result = fss(*command, env={"FSS_BROKER_URL": "kafka://x",
                                "FSS_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"})

    line = one_error_line(result, 2)
    assert line == (f"error: broker_url: unsupported transport 'kafka' "
                    f"(fss supports: {', '.join(BROKER_TRANSPORTS)})")


@pytest.mark.parametrize(
    ("url", "transport"),
    [("sqs://", "sqs"), ("sentinel://h:26379", "sentinel"), ("nope://x", "nope"),
     ("redis://h:6379/0;confluentkafka://x", "confluentkafka"), ("filesystem://", "filesystem")],
)
def test_given_other_transports_then_the_broker_url_is_refused_before_anything_runs(
    url: str, transport: str
) -> None:
    from fss.config import Settings
    from fss.errors import InvalidField

    with pytest.raises(InvalidField, match=f"transport '{transport}' \\(fss supports: "):
        Settings(broker_url=url)


# -- FSS_DEBUG ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["group", "show", "0"], ["task", "list", "--database-url", "nope"],
     ["no-such-command"], ["group", "add", "--caption", "c", "--job-name", "j",
                           "--interval-ms", "0", "--database-url", "sqlite://"]],
    ids=["bad-id", "bad-url", "usage", "bad-field"],
)
def test_given_fss_debug_then_every_error_kind_shows_its_traceback_and_keeps_its_line(
    args: list[str],
) -> None:
    quiet = fss(*args)
    line = one_error_line(quiet, quiet.returncode)

    loud = fss(*args, env={"FSS_DEBUG": "1"})

    assert loud.returncode == quiet.returncode
    assert "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.splitlines()[-1] == line


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "tru"])
def test_given_an_fss_debug_that_is_no_flag_then_one_line_names_it(value: str) -> None:
    line = one_error_line(fss("group", "list", env={"FSS_DEBUG": value}), 2)
    assert line.startswith(f"error: FSS_DEBUG: {value!r} is not one of 1, true, yes, on, 0, ")


# -- a bridge whose broker does not answer -----------------------------------------------------


def test_given_an_unreachable_broker_then_the_bridge_waits_and_never_says_serving(
    tmp_path: Path,
) -> None:
    from test_cli_bridge import free_port, serving

    address = f"127.0.0.1:{free_port()}"
    log = tmp_path / "bridge.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*FSS, "bridge", "--listen", address, "--broker-url", "redis://127.0.0.1:1/0"],
            stdout=subprocess.DEVNULL, stderr=stderr, text=True,
            env=clean_env(),
        )
        try:
            wait_for(lambda: "waiting for broker" in log.read_text() or process.poll() is not None,
                     30, what="the bridge's waiting line")
            assert process.poll() is None, log.read_text()
            assert not serving(address)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.read_text()
    assert process.returncode == 0, text
    assert "waiting for broker redis://127.0.0.1:1/0 (" in text
    assert "not serving until it answers" in text
    assert "serving on" not in text and "Traceback" not in text


def test_wait_for_broker_returns_at_once_when_it_answers_and_on_stop_when_it_never_does(
    fresh_redis_url: Callable[[], str],
) -> None:
    from fss.cli.bridge import wait_for_broker

    stopped = threading.Event()
    assert wait_for_broker(fresh_redis_url(), stopped) is True
    stopped.set()
    assert wait_for_broker("redis://127.0.0.1:1/0", stopped) is False
