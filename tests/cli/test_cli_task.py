"""`fss task ...` and `fss client ...` through click's CliRunner."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from cli_support import Fss, fss_json, sqlite_only
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from fss.cli import cli
from fss.domain.status import TaskStatus
from fss.events import ClientHeartbeat
from fss.store.recording import upsert_client
from fss.store.tables import client, run_log, task

UTC = timezone.utc
START = "2030-01-01T00:00:00"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
TASK_COLUMNS = [
    "id",
    "task_group_id",
    "job_name",
    "status",
    "progress",
    "start_at",
    "run_speed",
    "client_id",
    "server_node",
    "attempt",
    "kind",
]



def add_group(fss: Fss, job_name: str = "hello") -> int:
    out = fss(
        "group",
        "add",
        "--caption",
        job_name,
        "--job-name",
        job_name,
        "--interval-ms",
        "1000",
        "--start-at",
        START,
    ).stdout
    return int(out)


def insert_finished(
    engine: Engine, group_id: int, status: TaskStatus, start_at: datetime, **values: Any
) -> int:
    """A past run of the group, as the recorder leaves it."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                task.insert().values(
                    task_group_id=group_id,
                    job_name="hello",
                    start_at=start_at,
                    status=status,
                    progress=100 if status == TaskStatus.SUCCESS else 40,
                    attempt=1,
                    run_speed=250,
                    client_id="worker-1",
                    client_host="host-a",
                    client_ip="10.0.0.5",
                    server_node="node-1",
                    dispatched_at=start_at,
                    run_at=start_at + timedelta(milliseconds=5),
                    finish_at=start_at + timedelta(milliseconds=255),
                    create_at=start_at,
                    **values,
                )
            ).inserted_primary_key[0]
        )


def insert_log(
    engine: Engine, task_id: int, group_id: int, level: int, content: str, at: datetime
) -> None:
    with engine.begin() as conn:
        conn.execute(
            run_log.insert().values(
                task_id=task_id,
                task_group_id=group_id,
                log_level=level,
                content=content,
                create_at=at,
            )
        )


def pending_id(engine: Engine, group_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(task.c.id).where(
                    task.c.task_group_id == group_id, task.c.status == TaskStatus.NONE
                )
            ).scalar_one()
        )


@pytest.fixture
def history(fss: Fss, engine: Engine) -> dict[str, Any]:
    """Two groups: `hello` with a success, a failure and its waiting task; `other` waiting."""
    hello = add_group(fss, "hello")
    other = add_group(fss, "other")
    success = insert_finished(engine, hello, TaskStatus.SUCCESS, T0)
    fail = insert_finished(
        engine, hello, TaskStatus.FAIL, T0 + timedelta(seconds=1), error="ValueError: boom"
    )
    return {
        "hello": hello,
        "other": other,
        "success": success,
        "fail": fail,
        "hello_waiting": pending_id(engine, hello),
        "other_waiting": pending_id(engine, other),
    }


# -- task list --------------------------------------------------------------------------------


def test_given_tasks_when_listing_as_json_then_all_newest_first(
    fss: Fss, history: dict[str, Any]
) -> None:
    listed = fss_json(fss, "task", "list")

    ids = [t["id"] for t in listed]
    assert sorted(ids, reverse=True) == ids
    assert set(ids) == {history[k] for k in ("success", "fail", "hello_waiting", "other_waiting")}
    fail = next(t for t in listed if t["id"] == history["fail"])
    assert fail["status"] == "Fail"
    assert fail["task_group_id"] == history["hello"]
    assert fail["error"] == "ValueError: boom"
    assert (fail["client_id"], fail["server_node"], fail["run_speed"]) == (
        "worker-1",
        "node-1",
        250,
    )
    assert datetime.fromisoformat(fail["start_at"]) == T0 + timedelta(seconds=1)


@sqlite_only
def test_given_tasks_when_filtered_by_group_then_only_that_groups_tasks(
    fss: Fss, history: dict[str, Any]
) -> None:
    hello = fss_json(fss, "task", "list", "--group", str(history["hello"]))
    other = fss_json(fss, "task", "list", "--group", str(history["other"]))

    assert {t["id"] for t in hello} == {
        history["success"],
        history["fail"],
        history["hello_waiting"],
    }
    assert [t["id"] for t in other] == [history["other_waiting"]]


STATUS_FILTERS = [
    ("Success", ["success"]),
    ("success", ["success"]),
    ("4", ["success"]),
    ("Fail", ["fail"]),
    ("None", ["other_waiting", "hello_waiting"]),
    ("Working", []),
]


def test_given_tasks_when_filtered_by_status_then_only_that_status(
    fss: Fss, history: dict[str, Any]
) -> None:
    for status, expected in STATUS_FILTERS:
        listed = fss_json(fss, "task", "list", "--status", status)

        assert sorted(t["id"] for t in listed) == sorted(history[k] for k in expected), status


def test_given_group_status_and_limit_when_combined_then_all_apply(
    fss: Fss, history: dict[str, Any]
) -> None:
    listed = fss_json(
        fss, "task", "list", "--group", str(history["hello"]), "--status", "Success", "--limit", "5"
    )
    newest = fss_json(fss, "task", "list", "--limit", "2")

    assert [t["id"] for t in listed] == [history["success"]]
    everything = sorted(history[k] for k in ("success", "fail", "hello_waiting", "other_waiting"))
    assert [t["id"] for t in newest] == everything[::-1][:2]


@sqlite_only
def test_given_tasks_when_listing_as_a_table_then_one_aligned_row_each(
    fss: Fss, history: dict[str, Any]
) -> None:
    lines = fss("task", "list", "--status", "Fail").stdout.splitlines()

    assert re.split(r"\s{2,}", lines[0]) == [c.upper() for c in TASK_COLUMNS]
    assert len(lines) == 2
    row = dict(zip(TASK_COLUMNS, re.split(r"\s{2,}", lines[1]), strict=True))
    assert row["id"] == str(history["fail"])
    assert row["status"] == "Fail"
    assert row["start_at"] == "2024-05-01 12:00:01.000"
    assert (row["run_speed"], row["client_id"], row["server_node"], row["attempt"]) == (
        "250",
        "worker-1",
        "node-1",
        "1",
    )
    assert row["kind"] == "scheduled"


@sqlite_only
def test_given_no_tasks_when_listing_then_an_empty_json_list(fss: Fss) -> None:
    assert fss_json(fss, "task", "list") == []


# -- task show --------------------------------------------------------------------------------


def test_given_a_task_when_shown_as_json_then_every_field(
    fss: Fss, history: dict[str, Any]
) -> None:
    shown = fss_json(fss, "task", "show", str(history["success"]))

    assert shown["id"] == history["success"]
    assert shown["status"] == "Success"
    assert shown["progress"] == 100
    assert (shown["client_id"], shown["client_host"], shown["client_ip"]) == (
        "worker-1",
        "host-a",
        "10.0.0.5",
    )
    assert datetime.fromisoformat(shown["finish_at"]) == T0 + timedelta(milliseconds=255)
    assert shown["error"] is None
    # show adds the run's own data (none: a scheduled run) and the attempts (one here) to
    # what list gives
    assert shown.pop("run_data") is None
    attempts = shown.pop("attempts")
    assert [(a["attempt"], a["status"], a["client_id"]) for a in attempts] == [
        (1, "Success", "worker-1")
    ]
    assert shown == next(t for t in fss_json(fss, "task", "list") if t["id"] == history["success"])


@sqlite_only
def test_given_a_task_when_shown_as_text_then_one_line_per_field(
    fss: Fss, history: dict[str, Any]
) -> None:
    out = fss("task", "show", str(history["fail"])).stdout
    # The fields, one per line, then a blank line and the attempts table.
    field_lines, _, attempts = out.partition("\n\n")

    fields = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in field_lines.splitlines()
    )
    assert fields["id"] == str(history["fail"])
    assert fields["status"] == "Fail"
    assert fields["error"] == "ValueError: boom"
    assert attempts.splitlines()[0].split()[:3] == ["ATTEMPT", "STATUS", "CLIENT_ID"]


# -- task logs --------------------------------------------------------------------------------


def test_given_run_logs_when_shown_then_oldest_first_with_level_names(
    fss: Fss, engine: Engine, history: dict[str, Any]
) -> None:
    fail, hello = history["fail"], history["hello"]
    insert_log(engine, fail, hello, 2, "starting", T0 + timedelta(milliseconds=1))
    insert_log(engine, fail, hello, 3, "slow disk", T0 + timedelta(seconds=2, milliseconds=7))
    insert_log(engine, fail, hello, 4, "boom: héllo ✓", T0 + timedelta(seconds=3))
    insert_log(engine, history["success"], hello, 2, "another task", T0)

    out = fss("task", "logs", str(fail)).stdout

    assert out.splitlines() == [
        "12:00:00.001 Information starting",
        "12:00:02.007 Warning     slow disk",
        "12:00:03.000 Error       boom: héllo ✓",
    ]


@sqlite_only
def test_given_run_logs_when_shown_as_json_then_levels_and_content(
    fss: Fss, engine: Engine, history: dict[str, Any]
) -> None:
    fail, hello = history["fail"], history["hello"]
    for level in range(6):
        insert_log(engine, fail, hello, level, f"line {level}", T0 + timedelta(seconds=level))

    logs = fss_json(fss, "task", "logs", str(fail))

    assert [(r["log_level"], r["level"], r["content"]) for r in logs] == [
        (0, "Trace", "line 0"),
        (1, "Debug", "line 1"),
        (2, "Information", "line 2"),
        (3, "Warning", "line 3"),
        (4, "Error", "line 4"),
        (5, "Critical", "line 5"),
    ]
    assert {(r["task_id"], r["task_group_id"]) for r in logs} == {(fail, hello)}
    assert datetime.fromisoformat(logs[5]["create_at"]) == T0 + timedelta(seconds=5)


@sqlite_only
def test_given_a_task_without_logs_then_nothing_is_printed(
    fss: Fss, history: dict[str, Any]
) -> None:
    assert fss("task", "logs", str(history["success"])).stdout == ""
    assert fss_json(fss, "task", "logs", str(history["success"])) == []


@sqlite_only
def test_given_a_finished_task_when_following_its_logs_then_it_returns(
    fss: Fss, engine: Engine, history: dict[str, Any]
) -> None:
    insert_log(engine, history["fail"], history["hello"], 2, "done", T0)

    out = fss("task", "logs", str(history["fail"]), "--follow").stdout

    assert out == "12:00:00.000 Information done\n"


# -- client list ------------------------------------------------------------------------------


def test_given_a_registered_client_when_listed_as_json_then_its_registration(
    fss: Fss, engine: Engine
) -> None:
    beat = ClientHeartbeat(
        client_id="worker-1",
        host="host-a",
        ip="10.0.0.5",
        pid=4242,
        job_names=("reports.nightly", "hello"),
        queue="fss.client.worker-1",
        at=T0,
    )
    with engine.begin() as conn:
        upsert_client(conn, beat, T0)

    (client,) = fss_json(fss, "client", "list")

    assert client["id"] == "worker-1"
    assert (client["host"], client["ip"], client["pid"]) == ("host-a", "10.0.0.5", 4242)
    assert client["language"] == "python"
    assert client["job_names"] == ["hello", "reports.nightly"]
    assert client["queue"] == "fss.client.worker-1"
    assert datetime.fromisoformat(client["heartbeat_at"]) == T0
    assert datetime.fromisoformat(client["registered_at"]) == T0


@sqlite_only
def test_given_clients_when_listed_as_a_table_then_one_row_each_sorted_by_id(
    fss: Fss, engine: Engine
) -> None:
    with engine.begin() as conn:
        for name, language in (("w-b", "go"), ("w-a", "python")):
            beat = ClientHeartbeat(name, "host", "::1", 7, ("x", "y"), f"q.{name}", T0, language)
            upsert_client(conn, beat, T0)

    lines = fss("client", "list").stdout.splitlines()

    assert re.split(r"\s{2,}", lines[0]) == [
        "ID",
        "STATE",
        "HOST",
        "IP",
        "PID",
        "LANGUAGE",
        "JOBS",
        "QUEUE",
        "HEARTBEAT_AGE_S",
        "ACTIVE",
        "TAGS",
    ]
    rows = [re.split(r"\s{2,}", line) for line in lines[1:]]
    assert [(r[0], r[1], r[5], r[6]) for r in rows] == [
        ("w-a", "ready", "python", "x,y"),
        ("w-b", "ready", "go", "x,y"),
    ]
    assert all(float(r[8]) > 0 for r in rows)


@sqlite_only
def test_given_no_clients_when_listed_then_an_empty_json_list(fss: Fss) -> None:
    assert fss_json(fss, "client", "list") == []


@sqlite_only
def test_given_a_draining_and_a_kicked_client_when_listed_then_their_state_says_so(
    fss: Fss, engine: Engine
) -> None:
    with engine.begin() as conn:
        for name, accepting in (("w-drain", False), ("w-kick", True)):
            beat = ClientHeartbeat(
                name, "h", "::1", 7, ("x",), f"q.{name}", T0, accepting=accepting
            )
            upsert_client(conn, beat, T0)
        conn.execute(client.update().where(client.c.id == "w-kick").values(kicked_at=T0))

    rows = [re.split(r"\s{2,}", line) for line in fss("client", "list").stdout.splitlines()[1:]]

    assert [(r[0], r[1]) for r in rows] == [("w-drain", "draining"), ("w-kick", "kicked")]


def insert_lines(engine: Engine, task_id: int, group_id: int, seqs: list[int | None]) -> None:
    """Lines in the order given (ids ascending), each with its seq; content names the seq."""
    with engine.begin() as conn:
        conn.execute(
            run_log.insert(),
            [
                {"task_id": task_id, "task_group_id": group_id, "log_level": 2,
                 "content": f"seq {seq} #{n}", "create_at": T0, "seq": seq}
                for n, seq in enumerate(seqs)
            ],
        )


def test_given_more_than_a_page_of_lines_then_every_line_is_printed_in_the_jobs_order(
    fss: Fss, engine: Engine, history: dict[str, Any]
) -> None:
    fail, hello = history["fail"], history["hello"]
    # 2,500 lines (more than two pages), recorded out of order: the last flush landed first.
    seqs = [*range(1201, 2501), *range(1, 1201)]
    insert_lines(engine, fail, hello, [None, None, *seqs])

    out = fss("task", "logs", str(fail)).stdout
    contents = [line.split(" ", 2)[2] for line in out.splitlines()]

    assert len(contents) == 2502
    assert contents[:2] == ["seq None #0", "seq None #1"]  # recorded before seq: first, by id
    assert [int(c.split()[1]) for c in contents[2:]] == list(range(1, 2501))
    assert len(fss_json(fss, "task", "logs", str(fail))) == 2502


@sqlite_only
def test_given_a_limit_then_a_cursor_continues_where_it_stopped(
    fss: Fss, engine: Engine, history: dict[str, Any]
) -> None:
    fail, hello = history["fail"], history["hello"]
    insert_lines(engine, fail, hello, [3, None, 1, 2])

    first = CliRunner().invoke(cli, ["task", "logs", str(fail), "--limit", "2",
                                     "--database-url", str(engine.url)])
    assert first.exit_code == 0, first.output
    cursor = first.stderr.strip().removeprefix("more lines: --after ")
    rest = fss("task", "logs", str(fail), "--after", cursor)

    assert [line.split(" ", 2)[2] for line in first.stdout.splitlines()] == ["seq None #1",
                                                                            "seq 1 #2"]
    assert [line.split(" ", 2)[2] for line in rest.stdout.splitlines()] == ["seq 2 #3",
                                                                           "seq 3 #0"]
    assert rest.stderr == ""
