"""CLI errors: exit non-zero, ONE line on stderr naming the field, no traceback, no writes.

The commands run in-process through `fss.cli.main` (what the `fss` console script calls),
which turns fss's errors into one line and an exit code. Every case runs against SQLite,
PostgreSQL and MySQL; one database per backend is shared by this module's cases (they must
not write anything, and each checks that it did not).
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from servers import SqlServer, migrated_copy
from sqlalchemy.engine import Engine

from fss.cli import main
from fss.domain.group_spec import MAX_DATA_BYTES
from fss.domain.status import TaskStatus
from fss.store.engine import create_engine
from fss.store.tables import client, run_log, task, task_group

START = "2030-01-01T00:00:00"
MISSING = "987654"
HUGE = "99999999999999999999"


@dataclass(frozen=True)
class Outcome:
    code: int | str
    out: str
    err: str


@dataclass
class Database:
    url: str
    engine: Engine
    group_id: str  # an enabled interval group with a waiting task


@pytest.fixture(scope="module", params=["sqlite", "postgres", "mysql"])
def shared_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """One upgraded database per backend for all cases of this module."""
    backend: str = request.param
    server: SqlServer | None = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('cli-errors') / 'fss.db'}"
    else:
        server = request.getfixturevalue(f"{backend}_server")
        url = server.create_database()
    engine = create_engine(url)
    try:
        migrated_copy(url)  # the schema: a template copy (tests/servers.py)
        main(["db", "upgrade", "--database-url", url])
        main(
            [
                *("group", "add", "--caption", "base", "--job-name", "hello"),
                *("--interval-ms", "1000", "--start-at", START, "--database-url", url),
            ]
        )
        with engine.connect() as conn:
            base_id = conn.execute(sa.select(sa.func.max(task_group.c.id))).scalar_one()
        yield Database(url, engine, str(base_id))
    finally:
        engine.dispose()
        if server is not None:
            server.drop_database(url)


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> Outcome:
    """`fss ARGS --database-url URL` in-process; an escaping exception counts as a traceback."""
    capsys.readouterr()
    code: int | str = 0
    crash = ""
    try:
        main([*args, "--database-url", url])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:
        code = "uncaught exception"
        crash = traceback.format_exc()
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err + crash)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))
            ]
            for table in (task_group, task, run_log, client)
        }


def add_group(db: Database, capsys: pytest.CaptureFixture[str], *schedule: str) -> str:
    args = schedule or ("--interval-ms", "1000")
    outcome = run(
        capsys,
        db.url,
        "group",
        "add",
        "--caption",
        "base",
        "--job-name",
        "hello",
        *args,
        "--start-at",
        START,
    )
    assert outcome.code == 0, outcome
    return outcome.out.strip()


def assert_one_line_error(outcome: Outcome, prefix: str) -> None:
    assert outcome.code != 0, outcome
    assert "Traceback" not in outcome.err, outcome.err
    lines = outcome.err.splitlines()
    assert len(lines) == 1, outcome.err
    assert lines[0].startswith(prefix), lines[0]
    assert outcome.out == "", outcome.out


BIG_DATA = json.dumps({"blob": "x" * (MAX_DATA_BYTES + 1)})

# (id, arguments after `fss`, expected start of the one stderr line). "{id}" is the shared
# database's enabled interval group.
CASES: list[tuple[str, list[str], str]] = [
    ("add-cron-out-of-range", ["group", "add", "--cron", "61 * * * *"], "error: cron:"),
    ("add-cron-junk", ["group", "add", "--cron", "every day"], "error: cron:"),
    ("add-cron-three-fields", ["group", "add", "--cron", "* * *"], "error: cron:"),
    ("add-cron-seven-fields", ["group", "add", "--cron", "0 0 12 ? * MON 2030"], "error: cron:"),
    ("add-cron-never-fires", ["group", "add", "--cron", "0 0 30 2 *"], "error: cron:"),
    ("add-interval-zero", ["group", "add", "--interval-ms", "0"], "error: interval_ms:"),
    ("add-interval-negative", ["group", "add", "--interval-ms", "-5"], "error: interval_ms:"),
    (
        "add-interval-and-cron",
        ["group", "add", "--interval-ms", "1000", "--cron", "* * * * *"],
        "error: schedule:",
    ),
    (
        "add-cron-and-job-sets-next",
        ["group", "add", "--cron", "* * * * *", "--job-sets-next"],
        "error: schedule:",
    ),
    ("add-no-schedule", ["group", "add"], "error: schedule:"),
    (
        "add-data-invalid-json",
        ["group", "add", "--interval-ms", "1000", "--data", "{bad"],
        "error: data:",
    ),
    (
        "add-data-json-list",
        ["group", "add", "--interval-ms", "1000", "--data", "[1, 2]"],
        "error: data:",
    ),
    (
        "add-data-oversized",
        ["group", "add", "--interval-ms", "1000", "--data", BIG_DATA],
        "error: data:",
    ),
    (
        "add-start-at-not-iso",
        ["group", "add", "--interval-ms", "1000", "--start-at", "tomorrow"],
        "error: start_at:",
    ),
    (
        "add-unknown-zone",
        ["group", "add", "--cron", "0 8 * * *", "--time-zone", "Mars/Olympus"],
        "error: time_zone:",
    ),
    (
        "add-bad-job-name",
        ["group", "add", "--interval-ms", "1000", "--job-name", "hello world"],
        "error: job_name:",
    ),
    (
        "add-blank-caption",
        ["group", "add", "--interval-ms", "1000", "--caption", " "],
        "error: caption:",
    ),
    ("show-unknown", ["group", "show", MISSING], f"error: task group {MISSING} "),
    ("edit-unknown", ["group", "edit", MISSING, "--caption", "x"], f"error: task group {MISSING} "),
    ("enable-unknown", ["group", "enable", MISSING], f"error: task group {MISSING} "),
    ("disable-unknown", ["group", "disable", MISSING], f"error: task group {MISSING} "),
    ("delete-unknown", ["group", "delete", MISSING], f"error: task group {MISSING} "),
    ("run-unknown", ["group", "run", MISSING], f"error: task group {MISSING} "),
    ("edit-nothing", ["group", "edit", "{id}"], "error: edit:"),
    ("edit-cron-invalid", ["group", "edit", "{id}", "--cron", "61 * * * *"], "error: cron:"),
    ("edit-cron-never-fires", ["group", "edit", "{id}", "--cron", "0 0 31 4 *"], "error: cron:"),
    ("edit-interval-zero", ["group", "edit", "{id}", "--interval-ms", "0"], "error: interval_ms:"),
    (
        "edit-interval-negative",
        ["group", "edit", "{id}", "--interval-ms", "-5"],
        "error: interval_ms:",
    ),
    (
        "edit-interval-and-cron",
        ["group", "edit", "{id}", "--interval-ms", "1000", "--cron", "0 * * * *"],
        "error: schedule:",
    ),
    ("edit-data-json-list", ["group", "edit", "{id}", "--data", "[1]"], "error: data:"),
    ("edit-data-oversized", ["group", "edit", "{id}", "--data", BIG_DATA], "error: data:"),
    ("edit-start-at-not-iso", ["group", "edit", "{id}", "--start-at", "soon"], "error: start_at:"),
    (
        "add-start-at-offset-past-year-one",
        ["group", "add", "--interval-ms", "1000", "--start-at", "0001-01-01T00:00:00+05:00"],
        "error: start_at:",
    ),
    (
        "add-start-at-year-9999",
        ["group", "add", "--interval-ms", "1000", "--start-at", "9999-12-31T23:59:59"],
        "error: start_at:",
    ),
    (
        "edit-start-at-year-999",
        ["group", "edit", "{id}", "--start-at", "0999-12-31T00:00:00Z"],
        "error: start_at:",
    ),
    ("edit-unknown-zone", ["group", "edit", "{id}", "--time-zone", "Nowhere"], "error: time_zone:"),
    ("edit-bad-job-name", ["group", "edit", "{id}", "--job-name", "a/b"], "error: job_name:"),
    ("task-list-bad-status", ["task", "list", "--status", "Running"], "error: status:"),
    ("task-list-numeric-status", ["task", "list", "--status", "9"], "error: status:"),
    ("task-show-unknown", ["task", "show", MISSING], f"error: task {MISSING} "),
    ("task-logs-unknown", ["task", "logs", MISSING], f"error: task {MISSING} "),
    # ids: one type everywhere, 1 .. 2^63-1; "-5" is a bad id, not an unknown option
    *[
        (f"{'-'.join(cmd)}-id-{label}", [*cmd, value, *rest], f"error: {field}: ")
        for cmd, rest, field in [
            (["group", "show"], [], "group_id"),
            (["group", "edit"], ["--caption", "x"], "group_id"),
            (["group", "enable"], [], "group_id"),
            (["group", "disable"], [], "group_id"),
            (["group", "delete"], [], "group_id"),
            (["group", "run"], [], "group_id"),
            (["task", "show"], [], "task_id"),
            (["task", "logs"], [], "task_id"),
            (["task", "list", "--group"], [], "group_id"),
        ]
        for label, value in [("above-int64", HUGE), ("negative", "-5"), ("zero", "0")]
    ],
    ("add-caption-newline", ["group", "add", "--interval-ms", "1000", "--caption", "a\nb"],
     "error: caption:"),
    ("add-caption-escape", ["group", "add", "--interval-ms", "1000", "--caption", "\x1b[31m"],
     "error: caption:"),
    ("edit-caption-newline", ["group", "edit", "{id}", "--caption", "x\ny"], "error: caption:"),
    ("list-broker-not-a-url", ["group", "list", "--broker-url", "notaurl"], "error: broker_url:"),
    ("add-broker-unknown-transport",
     ["group", "add", "--interval-ms", "1000", "--broker-url", "kafkaesque://h"],
     "error: broker_url:"),
    ("list-unknown-option", ["group", "list", "--jsn"], "error: No such option"),
    ("list-limit-out-of-range", ["task", "list", "--limit", "0"], "error: limit: "),
]


def with_defaults(args: list[str]) -> list[str]:
    """`group add` cases get a caption and job name unless the case sets its own."""
    if args[:2] != ["group", "add"]:
        return args
    extra = []
    if "--caption" not in args:
        extra += ["--caption", "c"]
    if "--job-name" not in args:
        extra += ["--job-name", "hello"]
    return [*args, *extra]


@pytest.mark.parametrize(("args", "prefix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_given_bad_input_then_one_line_naming_the_field_and_nothing_written(
    shared_db: Database, capsys: pytest.CaptureFixture[str], args: list[str], prefix: str
) -> None:
    argv = [a.replace("{id}", shared_db.group_id) for a in with_defaults(args)]
    before = snapshot(shared_db.engine)

    outcome = run(capsys, shared_db.url, *argv)

    assert_one_line_error(outcome, prefix)
    assert snapshot(shared_db.engine) == before


def test_given_a_cron_group_when_edited_with_a_bad_interval_then_it_keeps_its_cron(
    shared_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    group_id = add_group(shared_db, capsys, "--cron", "0 12 * * *")
    before = snapshot(shared_db.engine)

    outcome = run(capsys, shared_db.url, "group", "edit", group_id, "--interval-ms", "-5")

    assert_one_line_error(outcome, "error: interval_ms:")
    assert snapshot(shared_db.engine) == before


def test_given_a_dispatched_task_when_run_now_then_group_busy_and_nothing_changes(
    shared_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    group_id = add_group(shared_db, capsys)
    with shared_db.engine.begin() as conn:
        conn.execute(
            task.update()
            .where(task.c.task_group_id == int(group_id), task.c.status == TaskStatus.NONE)
            .values(status=TaskStatus.SCHEDULER, attempt=1, client_id="worker-1")
        )
    before = snapshot(shared_db.engine)

    outcome = run(capsys, shared_db.url, "group", "run", group_id)

    assert_one_line_error(outcome, f"error: task group {group_id} is already running task ")
    assert outcome.code == 1
    assert snapshot(shared_db.engine) == before


def test_an_id_above_int64_exits_with_two_and_the_largest_id_is_an_unknown_one(
    shared_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = run(capsys, shared_db.url, "group", "show", HUGE)
    negative = run(capsys, shared_db.url, "task", "show", "-5")
    largest = run(capsys, shared_db.url, "group", "show", str(2**63 - 1))

    assert (huge.code, negative.code, largest.code) == (2, 2, 1)
    assert largest.err.startswith(f"error: task group {2**63 - 1} does not exist")


def test_invalid_field_errors_exit_with_two_and_lookups_with_one(
    shared_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    invalid = run(capsys, shared_db.url, "group", "add", "--caption", "c", "--job-name", "j")
    missing = run(capsys, shared_db.url, "group", "show", MISSING)

    assert (invalid.code, missing.code) == (2, 1)


# -- the installed console script -------------------------------------------------------------


def fss_script() -> list[str]:
    script = Path(sys.executable).with_name("fss")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from fss.cli import main; sys.exit(main())"]


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        (["--cron", "61 * * * *"], "error: cron:"),
        (["--cron", "0 0 30 2 *"], "error: cron:"),
    ],
    ids=["invalid", "never-fires"],
)
def test_given_the_console_script_when_the_cron_is_bad_then_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], prefix: str
) -> None:
    url = f"sqlite:///{tmp_path / 'fss.db'}"
    migrated_copy(url)  # the schema: a template copy (tests/servers.py)
    main(["db", "upgrade", "--database-url", url])
    capsys.readouterr()

    done = subprocess.run(
        [
            *fss_script(),
            *("group", "add", "--caption", "c", "--job-name", "j", *args),
            *("--database-url", url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(prefix)
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        (["group", "show", HUGE], "error: group_id: "),
        (["group", "show", "-5"], "error: group_id: "),
        (["group", "list", "--broker-url", "notaurl"], "error: broker_url: "),
        (["worker", "-A", ""], "error: app: "),
    ],
    ids=["id-above-int64", "negative-id", "broker-not-a-url", "empty-module"],
)
def test_given_the_console_script_when_input_is_bad_then_one_line_and_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], prefix: str
) -> None:
    url = f"sqlite:///{tmp_path / 'fss.db'}"
    migrated_copy(url)  # the schema: a template copy (tests/servers.py)
    main(["db", "upgrade", "--database-url", url])
    capsys.readouterr()

    done = subprocess.run(
        [*fss_script(), *args, "--database-url", url],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )

    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(prefix), done.stderr
    assert done.stdout == ""
