"""The CLI never shows a traceback: wrong databases, job modules that fail, JSON in human
output, unbreakable tables, `fss node list`, and one line for anything unexpected."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import pytest
from cli_support import Fss, fss_json, sqlite_only
from sqlalchemy.engine import Engine

from fss.cli import cli, main
from fss.store.tables import lease, server_node, task_group

UTC = timezone.utc


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    capsys.readouterr()
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_one_line(outcome: Outcome, code: int, prefix: str) -> str:
    assert outcome.code == code, outcome
    assert "Traceback" not in outcome.err
    lines = outcome.err.splitlines()
    assert len(lines) == 1, outcome.err
    assert lines[0].startswith(prefix), lines[0]
    assert outcome.out == "", outcome.out
    return lines[0]


# -- the database a command opens -------------------------------------------------------------


def test_given_no_database_url_when_a_command_runs_then_no_fss_db_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FSS_DATABASE_URL", raising=False)

    outcome = run_main(capsys, "group", "list")

    line = assert_one_line(outcome, 2, "error: database_url: no SQLite database at ")
    assert str(tmp_path / "fss.db") in line
    assert "FSS_DATABASE_URL" in line and "--database-url" in line and "fss-dev.db" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args", [["group", "list"], ["task", "list"], ["client", "list"], ["node", "list"],
             ["db", "current"], ["group", "show", "1"]]
)
def test_given_a_missing_sqlite_file_then_only_db_upgrade_creates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    path = tmp_path / "elsewhere.db"
    url = f"sqlite:///{path}"

    refused = run_main(capsys, *args, "--database-url", url)
    assert_one_line(refused, 2, f"error: database_url: no SQLite database at {path}")
    assert not path.exists()

    assert run_main(capsys, "db", "upgrade", "--database-url", url).code == 0
    assert path.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nope", "is not a URL"),
        ("nope://host/db", "unknown database or driver 'nope'"),
        ("mysql+nosuchdriver://u@h/db", "unknown database or driver"),
        ("postgresql://u@h:notaport/db", "cannot be parsed"),
    ],
)
def test_given_a_database_url_sqlalchemy_cannot_use_then_one_line(
    capsys: pytest.CaptureFixture[str], url: str, reason: str
) -> None:
    outcome = run_main(capsys, "group", "list", "--database-url", url)

    line = assert_one_line(outcome, 2, "error: database_url: ")
    assert reason in line


def test_given_fss_broker_url_in_the_environment_is_not_a_url_then_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FSS_BROKER_URL", "localhost:6379")

    outcome = run_main(capsys, "worker", "-A", "fss.examples.jobs")

    assert_one_line(outcome, 2, "error: broker_url: 'localhost:6379' is not a URL")


# -- job modules that fail to load (fss worker -A, fss dev -A) --------------------------------

MODULES = {
    "h4_raises_on_import": "raise RuntimeError('config file missing')\n",
    "h4_needs_a_package": "import h4_package_nobody_installed.sub\n",
    "h4_syntax_error": "def broken(:\n",
    "h4_exits_on_import": "import sys\nsys.exit(3)\n",
    "h4_no_jobs": "VALUE = 1\n",
}


@pytest.fixture
def job_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name, source in MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in MODULES:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("h4_raises_on_import", "raised RuntimeError: config file missing"),
        ("h4_needs_a_package", "needs package 'h4_package_nobody_installed'"),
        ("h4_syntax_error", "raised SyntaxError"),
        ("h4_exits_on_import", "raised SystemExit: 3"),
        ("h4_no_jobs", "defines no @job functions"),
        ("h4_not_there", "was not found"),
        ("h4_not_there.jobs", "was not found"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "dev"])
def test_given_a_job_module_that_fails_then_one_line_naming_it_and_nothing_written(
    job_modules: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    module: str,
    expected: str,
) -> None:
    before = sorted(p.name for p in job_modules.iterdir())

    outcome = run_main(capsys, command, "-A", module)

    line = assert_one_line(outcome, 2, f"error: app: module {module!r} ")
    assert expected in line
    after = sorted(p.name for p in job_modules.iterdir() if p.name != "__pycache__")
    assert after == [n for n in before if n != "__pycache__"]  # no fss-dev.db either


@pytest.mark.parametrize("command", ["worker", "dev"])
def test_given_an_empty_module_name_then_one_line(
    job_modules: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    outcome = run_main(capsys, command, "-A", "")

    assert_one_line(outcome, 2, "error: app: empty module name")


# -- human output -----------------------------------------------------------------------------


@sqlite_only
def test_given_a_group_with_data_when_shown_then_data_is_printed_as_json(fss: Fss) -> None:
    data = {"to": ["a@example.com"], "retry": True, "note": None, "name": "Grüße"}
    group_id = fss(
        "group", "add", "--caption", "mail", "--job-name", "mail", "--interval-ms", "1000",
        "--data", json.dumps(data),
    ).stdout.strip()

    out = fss("group", "show", group_id).stdout

    data_line = next(line for line in out.splitlines() if line.startswith("data "))
    assert json.loads(data_line[len("data"):].strip()) == data


@sqlite_only
def test_given_a_stored_caption_with_control_characters_then_tables_stay_one_line_per_row(
    fss: Fss, engine: Engine
) -> None:
    """Rows written before captions were checked (or by hand) still print as one line."""
    group_id = fss(
        "group", "add", "--caption", "ok", "--job-name", "hello", "--interval-ms", "1000"
    ).stdout.strip()
    with engine.begin() as conn:
        conn.execute(
            task_group.update()
            .where(task_group.c.id == int(group_id))
            .values(caption="two\nlines\x1b[31m\u2028", data='{"k": "v\\nw"}')
        )

    listed = fss("group", "list").stdout
    shown = fss("group", "show", group_id).stdout

    assert len(listed.splitlines()) == 2, listed
    assert "two\\nlines\\x1b[31m\\u2028" in listed
    assert "\x1b" not in listed + shown
    # One line per field shown (the compact view leaves out run policies at their defaults):
    # a caption that broke its line would start a line with no field name.
    shown_names = [line.split(" ", 1)[0] for line in shown.splitlines()]
    fields = fss_json(fss, "group", "show", group_id)
    assert set(shown_names) <= set(fields) | {"schedule"}, shown
    assert len(shown_names) == len(set(shown_names)), shown


# -- fss node list ----------------------------------------------------------------------------


def test_given_scheduler_nodes_when_listed_then_health_and_the_supervisor_are_shown(
    fss: Fss, engine: Engine
) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            server_node.insert(),
            [
                dict(id="node-a", host="h1", pid=11, started_at=now - timedelta(minutes=5),
                     heartbeat_at=now - timedelta(seconds=1), is_alive=True,
                     unhealthy_reason=None),
                dict(id="node-b", host="h2", pid=22, started_at=now - timedelta(minutes=3),
                     heartbeat_at=now - timedelta(seconds=2), is_alive=True,
                     unhealthy_reason="recorder: no progress for 31 s"),
                dict(id="node-c", host="h3", pid=33, started_at=now - timedelta(hours=1),
                     heartbeat_at=now - timedelta(minutes=50), is_alive=False,
                     unhealthy_reason=None),
            ],
        )
        conn.execute(
            lease.insert().values(name="supervisor", holder="node-a", until=now + timedelta(
                seconds=30))
        )

    nodes = {n["id"]: n for n in fss_json(fss, "node", "list")}
    table = fss("node", "list").stdout.splitlines()

    assert set(nodes) == {"node-a", "node-b", "node-c"}
    assert [nodes[n]["holds_supervisor_lease"] for n in ("node-a", "node-b", "node-c")] == [
        True, False, False]
    assert nodes["node-b"]["unhealthy_reason"] == "recorder: no progress for 31 s"
    assert nodes["node-c"]["is_alive"] is False
    assert 0 <= nodes["node-a"]["heartbeat_age_s"] < 60
    assert nodes["node-c"]["heartbeat_age_s"] >= 50 * 60
    assert (nodes["node-a"]["host"], nodes["node-a"]["pid"]) == ("h1", 11)
    assert nodes["node-a"]["started_at"].startswith(str((now - timedelta(minutes=5)).date()))
    assert table[0].split()[:3] == ["ID", "HOST", "PID"]
    assert "SUPERVISOR" in table[0] and "UNHEALTHY_REASON" in table[0]
    assert len(table) == 4


@sqlite_only
def test_given_an_expired_supervisor_lease_then_no_node_holds_it(
    fss: Fss, engine: Engine
) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            server_node.insert().values(
                id="node-a", host="h", pid=1, started_at=now, heartbeat_at=now, is_alive=True
            )
        )
        conn.execute(lease.insert().values(name="supervisor", holder="node-a",
                                           until=now - timedelta(seconds=1)))

    [node] = fss_json(fss, "node", "list")

    assert node["holds_supervisor_lease"] is False


# -- anything unexpected ----------------------------------------------------------------------


@pytest.fixture
def failing_command() -> Iterator[str]:
    """A command that fails the way a bug would: an exception fss does not know."""

    @cli.command("h4-fails")
    def fails() -> None:
        raise KeyError("a\nsecond line")

    yield "h4-fails"
    cli.commands.pop("h4-fails")


def test_given_an_unexpected_exception_then_one_line_with_its_type_and_exit_one(
    failing_command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FSS_DEBUG", raising=False)

    outcome = run_main(capsys, failing_command)

    line = assert_one_line(outcome, 1, "error: KeyError: ")
    assert "FSS_DEBUG=1" in line


def test_given_fss_debug_then_the_real_exception_propagates(
    failing_command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSS_DEBUG", "1")

    with pytest.raises(KeyError):
        main([failing_command])


def test_every_id_parameter_uses_the_one_id_type() -> None:
    """No command takes an id as a plain int (which overflows on the database)."""
    from fss.cli.context import IdType

    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Parameter]]:
        for param in command.params:
            yield path, param
        if isinstance(command, click.Group):
            # list_commands/get_command, not .commands: `fss` loads its subcommands lazily.
            context = click.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                if sub is not None:
                    yield from walk(sub, f"{path} {name}")

    id_params = [
        (path, p.name) for path, p in walk(cli, "fss")
        if p.name and (p.name.endswith("_id") or p.name == "id")
    ]
    assert len(id_params) >= 9
    for path, param in walk(cli, "fss"):
        if param.name and param.name.endswith("_id"):
            assert isinstance(param.type, IdType), (path, param.name)


def test_node_list_runs_on_an_upgraded_database(fss: Fss) -> None:
    assert fss_json(fss, "node", "list") == []


@pytest.mark.parametrize("command", [["worker", "-A", "fss.examples.jobs"], ["scheduler"]])
def test_given_a_broker_transport_missing_a_package_then_one_line_names_it_at_start(
    command: list[str], tmp_path: Path
) -> None:
    """A fresh install without `packaging` (kombu's Redis transport needs it): reported at
    start as what it is, never as an endless broker outage."""
    import subprocess

    from fss.store.engine import create_engine
    from fss.store.migrate import upgrade

    database_url = f"sqlite:///{tmp_path / 'fss.db'}"
    engine = create_engine(database_url)
    upgrade(engine)
    engine.dispose()
    without_packaging = (
        "import sys; sys.modules['packaging'] = None; "
        "from fss.cli import main; sys.argv[0] = 'fss'; main()"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "FSS_BROKER_URL": "redis://127.0.0.1:6379/0",
        "FSS_DATABASE_URL": database_url,
    }
    result = subprocess.run(
        [sys.executable, "-c", without_packaging, *command],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: broker_url: module kombu.transport.redis")
    assert "'packaging'" in lines[0] and "unreachable" not in lines[0]
