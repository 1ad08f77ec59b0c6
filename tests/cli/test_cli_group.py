"""`fss db` and `fss group ...` through click's CliRunner, on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from cli_support import Fss, fss_json, invoke, sqlite_only
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from fss.cli import cli, main
from fss.domain.status import TaskStatus
from fss.store import migrate
from fss.store.installation import installation_id
from fss.store.tables import alert_target, run_log, task, task_group

UTC = timezone.utc
START = "2030-01-01T00:00:00"
START_AT = datetime(2030, 1, 1, tzinfo=UTC)
LIST_COLUMNS = [
    "id",
    "caption",
    "job_name",
    "schedule",
    "is_enable",
    "next_at",
    "run_count",
    "run_speed_avg",
    "task_id",
    "disabled_note",
]



def add(fss: Fss, *args: str, caption: str = "report", job_name: str = "reports.nightly") -> int:
    out = fss("group", "add", "--caption", caption, "--job-name", job_name, *args).stdout
    assert re.fullmatch(r"\d+\n", out), out
    return int(out)


def tasks_of(engine: Engine, group_id: int) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(task).where(task.c.task_group_id == group_id).order_by(task.c.id)
            )
        )


def pending_of(engine: Engine, group_id: int) -> sa.Row[Any]:
    rows = [r for r in tasks_of(engine, group_id) if r.status == TaskStatus.NONE]
    assert len(rows) == 1, rows
    return rows[0]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def table(out: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]


# -- db ---------------------------------------------------------------------------------------


def test_given_an_empty_database_when_upgraded_then_current_reports_the_head(
    database_url: str, engine: Engine
) -> None:
    head = migrate.head_revision()
    with engine.connect():
        pass  # an empty database exists (a SQLite file only db upgrade creates otherwise)

    before = invoke(database_url, "db", "current").stdout
    upgraded = invoke(database_url, "db", "upgrade").stdout
    after = invoke(database_url, "db", "current").stdout

    assert before == "empty (needs `fss db upgrade`)\n"
    assert upgraded == (
        f"database at revision {head}\ninstallation {installation_id(engine)}\n"
    )
    assert after == f"{head} (up to date)\n"


@sqlite_only
def test_given_an_upgraded_database_when_upgraded_again_then_nothing_changes(fss: Fss) -> None:
    first = fss("db", "upgrade").stdout
    assert first.startswith(f"database at revision {migrate.head_revision()}\ninstallation ")
    assert fss("db", "upgrade").stdout == first  # the installation id is drawn once


# -- group add --------------------------------------------------------------------------------


def test_given_an_interval_when_adding_then_the_id_is_printed_and_a_task_waits_at_start(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1500", "--start-at", START)

    shown = fss_json(fss, "group", "show", str(group_id))
    pending = pending_of(engine, group_id)
    assert shown["id"] == group_id
    assert (shown["caption"], shown["job_name"]) == ("report", "reports.nightly")
    assert (shown["interval_ms"], shown["cron"], shown["schedule"]) == (1500, None, "every 1500 ms")
    assert shown["is_enable"] is True
    assert shown["data"] == {}
    assert parse_time(shown["start_at"]) == START_AT
    assert parse_time(shown["next_at"]) == START_AT
    assert shown["task_id"] == pending.id
    assert pending.start_at == START_AT
    assert pending.job_name == "reports.nightly"


@sqlite_only
def test_given_no_start_when_adding_an_interval_then_the_first_task_is_due_now(
    fss: Fss, engine: Engine
) -> None:
    before = datetime.now(UTC)
    group_id = add(fss, "--interval-ms", "60000")
    after = datetime.now(UTC)

    assert before <= pending_of(engine, group_id).start_at <= after


@sqlite_only
def test_given_a_cron_in_a_zone_when_adding_then_the_task_waits_for_the_first_local_firing(
    fss: Fss, engine: Engine
) -> None:
    # 08:00 in Shanghai is 00:00 UTC; the start (01:00 UTC) is past that day's firing.
    group_id = add(
        fss,
        "--cron",
        "0 8 * * *",
        "--time-zone",
        "Asia/Shanghai",
        "--start-at",
        f"{START[:11]}01:00",
    )

    shown = fss_json(fss, "group", "show", str(group_id))
    assert (shown["cron"], shown["interval_ms"], shown["time_zone"]) == (
        "0 8 * * *",
        None,
        "Asia/Shanghai",
    )
    assert shown["schedule"] == "cron 0 8 * * * (Asia/Shanghai)"
    assert pending_of(engine, group_id).start_at == datetime(2030, 1, 2, 0, 0, tzinfo=UTC)
    assert parse_time(shown["next_at"]) == datetime(2030, 1, 2, 0, 0, tzinfo=UTC)


@sqlite_only
def test_given_a_seconds_cron_without_start_when_adding_then_the_task_is_on_an_even_second(
    fss: Fss, engine: Engine
) -> None:
    before = datetime.now(UTC)
    group_id = add(fss, "--cron", "*/2 * * * * *")
    after = datetime.now(UTC)

    start = pending_of(engine, group_id).start_at
    assert before - timedelta(seconds=1) < start <= after + timedelta(seconds=2)
    assert start.second % 2 == 0
    assert start.microsecond == 0


@sqlite_only
def test_given_a_quartz_cron_when_adding_then_it_is_stored_normalized(fss: Fss) -> None:
    group_id = add(fss, "--cron", "0 0 12 ? * MON", "--start-at", START)

    assert fss_json(fss, "group", "show", str(group_id))["cron"] == "0 0 12 * * MON"


def test_given_job_sets_next_and_data_when_adding_then_both_are_kept(
    fss: Fss, engine: Engine
) -> None:
    data = {"cursor": 17, "name": "héllo ✓", "nested": {"list": [1, None, True]}}

    group_id = add(fss, "--job-sets-next", "--data", json.dumps(data), "--start-at", START)

    shown = fss_json(fss, "group", "show", str(group_id))
    assert shown["data"] == data
    assert (shown["interval_ms"], shown["cron"], shown["schedule"]) == (None, None, "set by job")
    assert pending_of(engine, group_id).start_at == START_AT


@sqlite_only
def test_given_a_start_with_an_offset_when_adding_then_it_is_stored_in_utc(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", "2030-01-01T08:00:00+08:00")

    assert pending_of(engine, group_id).start_at == START_AT
    assert parse_time(fss_json(fss, "group", "show", str(group_id))["start_at"]) == START_AT


def test_given_disabled_when_adding_then_no_task_is_created(fss: Fss, engine: Engine) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--disabled")

    shown = fss_json(fss, "group", "show", str(group_id))
    assert shown["is_enable"] is False
    assert shown["task_id"] is None
    assert tasks_of(engine, group_id) == []


@sqlite_only
def test_given_two_groups_when_adding_then_ids_differ_and_each_has_one_task(
    fss: Fss, engine: Engine
) -> None:
    first = add(fss, "--interval-ms", "1000", "--start-at", START)
    second = add(fss, "--cron", "0 * * * *", "--start-at", START)

    assert first != second
    assert len(tasks_of(engine, first)) == len(tasks_of(engine, second)) == 1


# -- group list / show ------------------------------------------------------------------------


@sqlite_only
def test_given_no_groups_when_listing_then_only_the_header_and_an_empty_json_list(fss: Fss) -> None:
    assert table(fss("group", "list").stdout) == [[c.upper() for c in LIST_COLUMNS]]
    assert fss_json(fss, "group", "list") == []


def test_given_groups_when_listing_then_one_row_each_in_id_order(fss: Fss) -> None:
    first = add(fss, "--interval-ms", "1500", "--start-at", START, caption="first")
    second = add(fss, "--cron", "0 12 * * *", "--disabled", caption="second", job_name="b")

    rows = table(fss("group", "list").stdout)

    assert rows[0] == [c.upper() for c in LIST_COLUMNS]
    by_column = [dict(zip(LIST_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [r["id"] for r in by_column] == [str(first), str(second)]
    assert by_column[0]["caption"] == "first"
    assert by_column[0]["schedule"] == "every 1500 ms"
    assert by_column[0]["is_enable"] == "yes"
    assert by_column[0]["next_at"] == "2030-01-01 00:00:00.000"
    assert by_column[1]["schedule"] == "cron 0 12 * * *"
    assert by_column[1]["is_enable"] == "no"
    assert by_column[1]["task_id"] == "-"


def test_given_groups_when_listing_as_json_then_a_parseable_list_of_full_records(fss: Fss) -> None:
    first = add(fss, "--interval-ms", "1500", "--start-at", START, caption="first")
    second = add(fss, "--job-sets-next", "--data", '{"a": 1}', caption="second")

    listed = fss_json(fss, "group", "list")

    assert [g["id"] for g in listed] == [first, second]
    assert listed[0]["schedule"] == "every 1500 ms"
    assert listed[1]["data"] == {"a": 1}
    assert listed == [fss_json(fss, "group", "show", str(g)) for g in (first, second)]


@sqlite_only
def test_given_groups_when_listing_as_json_then_fields_are_named_as_the_table_columns(
    fss: Fss,
) -> None:
    add(fss, "--interval-ms", "1500", "--start-at", START)

    (record,) = fss_json(fss, "group", "list")
    header = [c.lower() for c in table(fss("group", "list").stdout)[0]]

    missing = [column for column in header if column not in record]
    assert missing == []


@sqlite_only
def test_given_a_group_when_shown_as_text_then_one_line_per_field(fss: Fss) -> None:
    group_id = add(fss, "--interval-ms", "1500", "--start-at", START, caption="first")

    lines = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1)
        for line in fss("group", "show", str(group_id)).stdout.splitlines()
    )

    assert lines["id"] == str(group_id)
    assert lines["caption"] == "first"
    assert lines["schedule"] == "every 1500 ms"
    assert lines["is_enable"] == "yes"


# -- group edit -------------------------------------------------------------------------------


def test_given_a_cron_group_when_its_cron_changes_then_the_waiting_task_moves(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--cron", "0 12 * * *", "--start-at", START)
    before = pending_of(engine, group_id)
    assert before.start_at == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    edited = fss_json(fss, "group", "edit", str(group_id), "--cron", "30 6 * * *")

    after = pending_of(engine, group_id)
    assert after.id == before.id
    assert after.start_at == datetime(2030, 1, 1, 6, 30, tzinfo=UTC)
    assert parse_time(edited["next_at"]) == after.start_at
    assert edited["cron"] == "30 6 * * *"


def test_given_an_interval_group_when_cron_is_set_then_the_interval_is_cleared(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)

    edited = fss_json(fss, "group", "edit", str(group_id), "--cron", "0 12 * * *")

    assert (edited["cron"], edited["interval_ms"]) == ("0 12 * * *", None)
    assert edited["schedule"] == "cron 0 12 * * *"
    assert fss_json(fss, "group", "show", str(group_id)) == edited
    assert pending_of(engine, group_id).start_at == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@sqlite_only
def test_given_a_cron_group_when_an_interval_is_set_then_the_cron_is_cleared(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--cron", "0 12 * * *", "--start-at", START)

    edited = fss_json(fss, "group", "edit", str(group_id), "--interval-ms", "2500")

    assert (edited["cron"], edited["interval_ms"]) == (None, 2500)
    assert pending_of(engine, group_id).start_at == START_AT


@sqlite_only
def test_given_a_group_when_job_sets_next_is_set_then_both_schedules_are_cleared(
    fss: Fss,
) -> None:
    group_id = add(fss, "--cron", "0 12 * * *", "--start-at", START)

    edited = fss_json(fss, "group", "edit", str(group_id), "--job-sets-next")

    assert (edited["cron"], edited["interval_ms"], edited["schedule"]) == (None, None, "set by job")


@sqlite_only
def test_given_a_group_when_its_start_moves_then_the_waiting_task_moves_with_it(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)
    later = datetime(2031, 6, 1, 9, 30, tzinfo=UTC)

    fss("group", "edit", str(group_id), "--start-at", later.isoformat())

    assert pending_of(engine, group_id).start_at == later
    assert parse_time(fss_json(fss, "group", "show", str(group_id))["start_at"]) == later


def test_given_a_group_when_only_caption_job_name_and_data_change_then_the_task_stays(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)
    before = pending_of(engine, group_id)

    edited = fss_json(
        fss,
        "group",
        "edit",
        str(group_id),
        "--caption",
        "renamed",
        "--job-name",
        "jobs.other",
        "--data",
        '{"x": [1]}',
    )

    after = pending_of(engine, group_id)
    assert (edited["caption"], edited["job_name"], edited["data"]) == (
        "renamed",
        "jobs.other",
        {"x": [1]},
    )
    assert edited["interval_ms"] == 1000
    assert (after.id, after.start_at) == (before.id, before.start_at)
    assert after.job_name == "jobs.other"


@sqlite_only
def test_given_an_edit_without_json_then_the_group_is_printed_as_text(fss: Fss) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)

    out = fss("group", "edit", str(group_id), "--caption", "renamed").stdout

    assert re.search(r"^caption\s+renamed$", out, re.MULTILINE)


# -- enable / disable / run / delete ----------------------------------------------------------


@sqlite_only
def test_given_an_enabled_group_when_disabled_then_its_waiting_task_is_withdrawn(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)

    out = fss("group", "disable", str(group_id)).stdout

    assert out == f"group {group_id} disabled\n"
    assert tasks_of(engine, group_id) == []
    assert fss_json(fss, "group", "show", str(group_id))["is_enable"] is False


@sqlite_only
def test_given_a_disabled_group_then_it_does_not_point_at_a_task_that_no_longer_exists(
    fss: Fss,
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)
    fss("group", "disable", str(group_id))

    shown = fss_json(fss, "group", "show", str(group_id))

    if shown["task_id"] is not None:
        listed = fss_json(fss, "task", "list", "--group", str(group_id))
        assert shown["task_id"] in [t["id"] for t in listed]


@sqlite_only
def test_given_a_disabled_group_when_enabled_then_a_waiting_task_is_created(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START, "--disabled")

    out = fss("group", "enable", str(group_id)).stdout

    pending = pending_of(engine, group_id)
    assert out == f"group {group_id} enabled; next run at {START_AT.isoformat()}\n"
    assert pending.start_at == START_AT
    shown = fss_json(fss, "group", "show", str(group_id))
    assert shown["is_enable"] is True
    assert shown["task_id"] == pending.id


@sqlite_only
def test_given_an_enabled_group_when_enabled_again_then_still_one_waiting_task(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)
    before = pending_of(engine, group_id)

    fss("group", "enable", str(group_id))

    assert [r.id for r in tasks_of(engine, group_id)] == [before.id]


def test_given_disable_then_enable_then_exactly_one_waiting_task(fss: Fss, engine: Engine) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)

    fss("group", "disable", str(group_id))
    fss("group", "enable", str(group_id))

    assert pending_of(engine, group_id).start_at == START_AT
    assert len(tasks_of(engine, group_id)) == 1


def test_given_a_future_task_when_run_now_then_the_same_task_becomes_due_now(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)
    waiting = pending_of(engine, group_id)

    before = datetime.now(UTC)
    out = fss("group", "run", str(group_id)).stdout
    after = datetime.now(UTC)

    pending = pending_of(engine, group_id)
    assert out == f"{waiting.id}\n"
    assert pending.id == waiting.id
    assert before <= pending.start_at <= after
    assert parse_time(fss_json(fss, "group", "show", str(group_id))["next_at"]) == pending.start_at


@sqlite_only
def test_given_a_group_without_a_waiting_task_when_run_now_then_one_is_created_due_now(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--disabled")

    before = datetime.now(UTC)
    out = fss("group", "run", str(group_id)).stdout
    after = datetime.now(UTC)

    pending = pending_of(engine, group_id)
    assert out == f"{pending.id}\n"
    assert before <= pending.start_at <= after


def test_given_a_group_with_tasks_and_logs_when_deleted_then_all_of_it_is_gone(
    fss: Fss, engine: Engine
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--start-at", START)
    other = add(fss, "--interval-ms", "1000", "--start-at", START, caption="other")
    task_id = pending_of(engine, group_id).id
    with engine.begin() as conn:
        conn.execute(
            run_log.insert().values(
                task_id=task_id,
                task_group_id=group_id,
                log_level=2,
                content="x",
                create_at=START_AT,
            )
        )

    out = fss("group", "delete", str(group_id)).stdout

    assert out == f"group {group_id} deleted\n"
    with engine.connect() as conn:
        assert conn.execute(sa.select(task_group.c.id)).scalars().all() == [other]
        assert conn.execute(sa.select(task.c.task_group_id)).scalars().all() == [other]
        assert conn.execute(sa.select(sa.func.count()).select_from(run_log)).scalar() == 0
    assert [g["id"] for g in fss_json(fss, "group", "list")] == [other]


def test_given_a_deleted_group_when_a_new_one_is_added_then_no_id_is_reused(
    fss: Fss, engine: Engine
) -> None:
    # A stale event for a deleted task (task id, attempt, client) must never match a new
    # task: ids of deleted groups and tasks must not come back.
    old_group = add(fss, "--interval-ms", "1000", "--start-at", START)
    old_task = pending_of(engine, old_group).id
    fss("group", "delete", str(old_group))

    new_group = add(fss, "--interval-ms", "1000", "--start-at", START)

    assert new_group != old_group
    assert pending_of(engine, new_group).id != old_task


@sqlite_only
def test_given_one_group_disabled_when_another_is_listed_then_it_is_unaffected(
    fss: Fss, engine: Engine
) -> None:
    first = add(fss, "--interval-ms", "1000", "--start-at", START)
    second = add(fss, "--interval-ms", "1000", "--start-at", START)

    fss("group", "disable", str(first))

    assert tasks_of(engine, first) == []
    assert pending_of(engine, second).start_at == START_AT


def _status_counts(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(task.c.status, sa.func.count()).group_by(task.c.status))
        return {int(status): int(n) for status, n in rows}


def test_every_enabled_group_has_exactly_one_unfinished_task(fss: Fss, engine: Engine) -> None:
    ids = [add(fss, "--interval-ms", str(1000 + i), "--start-at", START) for i in range(3)]
    fss("group", "run", str(ids[0]))
    fss("group", "edit", str(ids[1]), "--cron", "0 * * * *")
    fss("group", "disable", str(ids[2]))
    fss("group", "enable", str(ids[2]))

    assert _status_counts(engine) == {int(TaskStatus.NONE): 3}
    for group_id in ids:
        assert len(tasks_of(engine, group_id)) == 1


# -- run policies ------------------------------------------------------------------------------


def failing(capsys: pytest.CaptureFixture[str], database_url: str, *args: str) -> str:
    """The one line on stderr of a CLI run (fss.cli.main, as the fss script) that must fail
    with exit code 1 or 2 (usage)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main([*args, "--database-url", database_url])
    assert exited.value.code in (1, 2)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


POLICY_ARGS = (
    "--retries", "3", "--retry-delay-ms", "500", "--retry-backoff", "1.5",
    "--retry-delay-max-ms", "8000", "--no-retry-jitter", "--max-run-s", "120",
    "--overlap", "replace", "--route", "least_busy", "--client-tag", "gpu", "--jitter-ms", "250",
)
POLICY_JSON = {
    "retries": 3, "retry_delay_ms": 500, "retry_backoff": 1.5, "retry_delay_max_ms": 8000,
    "retry_jitter": False, "max_run_s": 120, "overlap": "replace", "route": "least_busy",
    "client_tag": "gpu", "jitter_ms": 250,
}


def test_given_policy_options_when_adding_then_show_json_has_each_and_compact_only_non_defaults(
    fss: Fss,
) -> None:
    plain = add(fss, "--interval-ms", "1000")
    child = add(fss, "--interval-ms", "1000", "--key", "child")
    group_id = add(fss, "--interval-ms", "1000", *POLICY_ARGS,
                   "--on-success", "child", "--on-success", str(plain))

    shown = fss_json(fss, "group", "show", str(group_id))
    assert {name: shown[name] for name in POLICY_JSON} == POLICY_JSON
    assert shown["on_success"] == ["child", plain]
    compact = fss("group", "show", str(group_id)).stdout
    assert re.search(r"^overlap\s+replace$", compact, re.M)
    plain_text = fss("group", "show", str(plain)).stdout
    for name in ("retries", "overlap", "route", "on_success", "jitter_ms", "disabled_note"):
        assert not re.search(rf"^{name}\s", plain_text, re.M), name
    assert child != group_id


@sqlite_only
def test_given_policy_options_when_editing_then_only_they_change_and_none_clears(
    fss: Fss,
) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--max-run-s", "60", "--client-tag", "gpu")
    edited = fss_json(fss, "group", "edit", str(group_id), "--retries", "2", "--route",
                      "broadcast", "--max-run-s", "none", "--client-tag", "")
    assert (edited["retries"], edited["route"], edited["max_run_s"], edited["client_tag"]) == (
        2, "broadcast", None, None
    )
    assert edited["retry_delay_ms"] == 1000 and edited["version"] == 2
    jsn = add(fss, "--job-sets-next", "--route", "failover")  # no slots to backfill: fine
    assert fss_json(fss, "group", "show", str(jsn))["route"] == "failover"


@sqlite_only
def test_given_bad_policy_values_then_one_line_naming_the_field(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    group_id = add(fss, "--interval-ms", "1000")
    cases = [
        (("--retries", "101"), "retries: must be 0..100, got 101"),
        (("--retry-backoff", "11"), "retry_backoff: must be 1..10, got 11"),
        (("--retry-delay-ms", "0"), "retry_delay_ms: must be 1..86400000, got 0"),
        (("--retry-delay-max-ms", "10"), "retry_delay_max_ms: must be >= retry_delay_ms (1000)"),
        (("--max-run-s", "604801"), "max_run_s: must be 1..604800, got 604801"),
        (("--jitter-ms", "3600001"), "jitter_ms: must be 0..3600000"),
        (("--client-tag", "a b"), "client_tag: 'a b' must be 1..64 of letters"),
        (("--on-success", "nope"), "on_success: group 1: no group has the key 'nope'"),
        (("--on-success", "999"), "on_success: group 1: no group has the id 999"),
        (("--on-success", str(group_id)), "on_success: cycle 1 -> 1"),
    ]
    for args, message in cases:
        line = failing(capsys, database_url, "group", "edit", str(group_id), *args)
        assert message in line, (args, line)
    # an added group has no id yet: the id of its rolled-back insert is not named
    line = failing(capsys, database_url, "group", "add", "--caption", "c", "--job-name", "j",
                   "--interval-ms", "1000", "--on-success", "nope")
    assert line.endswith("on_success: no group has the key 'nope'"), line
    line = failing(capsys, database_url, "group", "edit", str(group_id), "--overlap", "later")
    assert "'later' is not one of 'skip', 'buffer_one', 'replace'" in line
    assert fss_json(fss, "group", "show", str(group_id))["version"] == 1


# -- alert settings -----------------------------------------------------------------------------


def test_given_alert_options_when_adding_then_show_has_them_and_compact_only_non_defaults(
    fss: Fss, engine: Engine
) -> None:
    plain = add(fss, "--interval-ms", "1000")
    group_id = add(fss, "--interval-ms", "1000", "--alert-targets", "ops-slack, oncall.mail",
                   "--alert-rules", "group_late,run_failed", "--late-after", "1h30m")

    shown = fss_json(fss, "group", "show", str(group_id))
    assert (shown["alert_targets"], shown["alert_rules"], shown["late_after_s"]) == (
        ["ops-slack", "oncall.mail"], ["run_failed", "group_late"], 5400
    )
    assert "alert_open" not in shown
    compact = fss("group", "show", str(group_id)).stdout
    assert re.search(r"^late_after_s\s+5400$", compact, re.M)
    assert re.search(r"^alert_targets\s", compact, re.M)
    assert "alert_open" not in compact
    plain_text = fss("group", "show", str(plain)).stdout
    for name in ("alert_targets", "alert_rules", "late_after_s", "alert_open"):
        assert not re.search(rf"^{name}\s", plain_text, re.M), name
    listed = fss_json(fss, "group", "list")
    assert [g["alert_rules"] for g in listed] == [None, ["run_failed", "group_late"]]
    assert all("alert_open" not in g for g in listed)
    with engine.connect() as conn:
        row = conn.execute(sa.select(task_group).where(task_group.c.id == group_id)).one()
    assert (row.alert_targets, row.alert_rules, row.late_after_s) == (
        '["ops-slack","oncall.mail"]', '["run_failed","group_late"]', 5400
    )


@sqlite_only
def test_given_alert_options_when_editing_then_none_and_default_clear_them(fss: Fss) -> None:
    group_id = add(fss, "--interval-ms", "1000", "--alert-targets", "ops", "--late-after", "600")
    edited = fss_json(fss, "group", "edit", str(group_id), "--alert-rules", "none",
                      "--late-after", "2h")
    assert (edited["alert_targets"], edited["alert_rules"], edited["late_after_s"]) == (
        ["ops"], [], 7200
    )
    assert edited["version"] == 2
    # `none` (no alerts) is shown by the compact show: it is not the default.
    compact = fss("group", "show", str(group_id)).stdout
    assert re.search(r"^alert_rules\s", compact, re.M)
    cleared = fss_json(fss, "group", "edit", str(group_id), "--alert-targets", "default",
                       "--alert-rules", "default", "--late-after", "none")
    assert (cleared["alert_targets"], cleared["alert_rules"], cleared["late_after_s"]) == (
        [], None, None
    )
    assert cleared["version"] == 3
    again = fss_json(fss, "group", "edit", str(group_id), "--alert-targets", "a,b",
                     "--late-after", "90")
    assert (again["alert_targets"], again["late_after_s"]) == (["a", "b"], 90)
    emptied = fss_json(fss, "group", "edit", str(group_id), "--alert-targets", "")
    assert emptied["alert_targets"] == []


@sqlite_only
def test_given_bad_alert_options_then_one_line_naming_the_field(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    group_id = add(fss, "--interval-ms", "1000")
    cases = [
        (("--alert-rules", "run_failed,nope"), "alert_rules: unknown rule 'nope' (rules: "),
        (("--alert-rules", "client_lost"), "alert_rules: 'client_lost' is a rule about the"),
        (("--alert-rules", ","), "alert_rules: give rule names, none or default"),
        (("--alert-targets", "ops,ops"), "alert_targets: 'ops' is listed twice"),
        (("--alert-targets", "a b"), "alert_targets: 'a b' is not a target name"),
        (("--alert-targets", ",".join(f"t{i}" for i in range(21))),
         "alert_targets: at most 20 targets, got 21"),
        (("--late-after", "0"), "late_after_s: must be 1..31622400, got 0"),
        (("--late-after", "367d"), "late_after_s: must be 1..31622400, got 31708800"),
        (("--late-after", "soon"), "late_after_s: 'soon' is not a duration"),
        (("--late-after", "1.5h"), "late_after_s: '1.5h' is not a duration"),
    ]
    for args, message in cases:
        line = failing(capsys, database_url, "group", "edit", str(group_id), *args)
        assert message in line, (args, line)
        line = failing(capsys, database_url, "group", "add", "--caption", "c", "--job-name",
                       "j", "--interval-ms", "1000", *args)
        assert message in line, (args, line)
    assert fss_json(fss, "group", "show", str(group_id))["version"] == 1
    assert len(fss_json(fss, "group", "list")) == 1


def test_given_on_success_edges_when_one_closes_a_cycle_then_it_is_refused_naming_it(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a = add(fss, "--interval-ms", "1000", "--key", "a")
    add(fss, "--interval-ms", "1000", "--key", "b", "--on-success", "a")
    line = failing(capsys, database_url, "group", "edit", str(a), "--on-success", "b")
    assert "on_success: cycle a -> b -> a" in line
    assert fss_json(fss, "group", "show", str(a))["on_success"] == []
    cleared = fss_json(fss, "group", "edit", str(a), "--no-on-success", "--retries", "1")
    assert cleared["on_success"] == []


def test_given_disable_with_note_and_until_then_list_and_show_say_so_and_enable_clears(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    group_id = add(fss, "--interval-ms", "1000")
    out = fss("group", "disable", str(group_id), "--note", "db migration",
              "--until", "2099-01-01T00:00:00Z").stdout
    assert out == f"group {group_id} disabled until 2099-01-01T00:00:00+00:00\n"
    rows = table(fss("group", "list").stdout)
    note = dict(zip(LIST_COLUMNS, rows[1], strict=False))["disabled_note"]
    assert note == "db migration; until 2099-01-01T00:00:00+00:00"
    shown = fss_json(fss, "group", "show", str(group_id))
    assert (shown["disabled_note"], shown["enable_at"]) == (
        "db migration", "2099-01-01T00:00:00+00:00"
    )
    assert re.search(r"^disabled_note\s+db migration$", fss("group", "show", str(group_id)).stdout,
                     re.M)
    line = failing(capsys, database_url, "group", "disable", str(group_id), "--until", "2000-01-01")
    assert line.endswith("--until: 2000-01-01T00:00:00+00:00 is not in the future"), line
    line = failing(capsys, database_url, "group", "disable", str(group_id), "--until", "soon")
    assert line.endswith("--until: 'soon' is not an ISO 8601 time"), line
    fss("group", "enable", str(group_id))
    shown = fss_json(fss, "group", "show", str(group_id))
    assert (shown["is_enable"], shown["disabled_note"], shown["enable_at"]) == (True, None, None)


# -- alert targets in the groups file (fss group apply / diff / export) -------------------------

HOOK_SECRET = "whsec-c0ffee-1234"
MAIL_PASSWORD = "m4il-pa55word"
GROUPS_WITH_TARGETS = """\
alert_targets:
  - name: ops-hook
    kind: webhook
    url: https://hooks.example.com/fss
    secret: ${FSS_TEST_HOOK_SECRET}
  - name: oncall.mail
    kind: email
    default: false
    host: smtp.example.com
    user: fss
    password: ${FSS_TEST_MAIL_PASSWORD}
    from: fss@example.com
    to: oncall@example.com
groups:
  - key: backup
    caption: Backup
    job_name: backup.run
    cron: "0 2 * * *"
    alert_targets: [ops-hook, oncall.mail]
"""


def run_main(
    capsys: pytest.CaptureFixture[str], database_url: str, *args: str
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `fss ARGS` as the fss script runs it, whatever the code."""
    capsys.readouterr()
    try:
        main([*args, "--database-url", database_url])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stored_target_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alert_target).order_by(alert_target.c.name))
        return [dict(row._mapping) for row in rows]


@pytest.fixture
def target_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSS_TEST_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("FSS_TEST_MAIL_PASSWORD", MAIL_PASSWORD)


@pytest.mark.usefixtures("target_secrets")
def test_a_groups_file_applies_its_alert_targets_with_secrets_from_the_environment(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    groups_file = tmp_path / "groups.yaml"
    groups_file.write_text(GROUPS_WITH_TARGETS)

    code, out, err = run_main(capsys, database_url, "group", "diff", "-f", str(groups_file))
    assert (code, err) == (1, "")
    assert out.splitlines()[:2] == [
        "+ create alert target ops-hook (webhook)", "+ create alert target oncall.mail (email)",
    ]
    applied = fss("group", "apply", "-f", str(groups_file)).stdout
    assert applied.splitlines() == [
        "+ create alert target ops-hook (webhook)",
        "+ create alert target oncall.mail (email)",
        "+ create backup",
        "alert targets: 2 created, 0 updated, 0 unchanged",
        "1 created, 0 updated, 0 deleted, 0 unchanged",
    ]
    hook, mail = sorted(fss_json(fss, "alert", "target", "list"), key=lambda t: t["name"])[::-1]
    assert (hook["name"], hook["config"]["secret"]) == ("ops-hook", "***")
    assert (mail["default"], mail["config"]["to"]) == (False, ["oncall@example.com"])
    configs = {row["name"]: json.loads(row["config"]) for row in stored_target_rows(engine)}
    assert configs["ops-hook"]["secret"] == HOOK_SECRET  # the environment's, not ${...}
    assert configs["oncall.mail"]["password"] == MAIL_PASSWORD
    assert fss_json(fss, "group", "list")[0]["alert_targets"] == ["ops-hook", "oncall.mail"]

    assert run_main(capsys, database_url, "group", "diff", "-f", str(groups_file)) == (0, "", "")
    again = fss("group", "apply", "-f", str(groups_file)).stdout
    assert again.splitlines() == [
        "alert targets: 0 created, 0 updated, 2 unchanged",
        "0 created, 0 updated, 0 deleted, 1 unchanged",
    ]

    # A new secret in the environment: diff says it changed, never what it is.
    monkeypatch.setenv("FSS_TEST_HOOK_SECRET", "whsec-rotated-5678")
    code, out, err = run_main(capsys, database_url, "group", "diff", "-f", str(groups_file))
    assert (code, out, err) == (1, "~ update alert target ops-hook\n    secret changed\n", "")
    applied = fss("group", "apply", "-f", str(groups_file)).stdout
    assert "alert targets: 0 created, 1 updated, 1 unchanged" in applied
    for text in (applied, out):
        assert HOOK_SECRET not in text and "whsec-rotated" not in text
        assert MAIL_PASSWORD not in text

    # Export leaves the targets out (secrets); apply of the export keeps them (no prune).
    exported = fss("group", "export").stdout
    assert list(yaml.safe_load(exported)) == ["groups"]
    assert "whsec" not in exported and MAIL_PASSWORD not in exported
    export_file = tmp_path / "export.yaml"
    export_file.write_text(exported)
    fss("group", "apply", "-f", str(export_file))
    assert [row["name"] for row in stored_target_rows(engine)] == ["oncall.mail", "ops-hook"]


@sqlite_only
@pytest.mark.usefixtures("target_secrets")
def test_a_bad_target_entry_refuses_the_whole_file_naming_the_entry_and_field(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    groups_file = tmp_path / "groups.yaml"
    groups_file.write_text(GROUPS_WITH_TARGETS.replace("host: smtp.example.com", "host: a b"))

    code, out, err = run_main(capsys, database_url, "group", "apply", "-f", str(groups_file))

    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"{groups_file}:9: alert_targets[1].host: required: the SMTP server's host name or "
        "address",
        f"error: {groups_file}: 1 error; nothing was written",
    ]
    assert stored_target_rows(engine) == [] and fss_json(fss, "group", "list") == []


@sqlite_only
def test_an_unset_variable_is_named_and_nothing_is_written(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FSS_TEST_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.delenv("FSS_TEST_MAIL_PASSWORD", raising=False)
    groups_file = tmp_path / "groups.yaml"
    groups_file.write_text(GROUPS_WITH_TARGETS)

    code, _, err = run_main(capsys, database_url, "group", "apply", "-f", str(groups_file))

    assert code == 2
    assert err.splitlines()[0] == (
        f"{groups_file}:11: alert_targets[1].password: environment variable "
        "FSS_TEST_MAIL_PASSWORD is not set"
    )
    assert HOOK_SECRET not in err
    assert stored_target_rows(engine) == [] and fss_json(fss, "group", "list") == []


@sqlite_only
@pytest.mark.usefixtures("target_secrets")
def test_a_group_naming_an_undefined_target_is_one_line_and_writes_nothing(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fss("alert", "target", "add", "pager", "--kind", "slack",
        "--url", "https://hooks.slack.example/services/T/B/X")
    groups_file = tmp_path / "groups.yaml"
    groups_file.write_text(GROUPS_WITH_TARGETS.replace(
        "[ops-hook, oncall.mail]", "[ops-hook, pager, nobody]"
    ))
    expected = (
        "error: groups[0].alert_targets: group 'backup' names alert target 'nobody', which is "
        "neither in the file's alert_targets nor in the database"
    )

    for command in ("diff", "apply"):
        code, out, err = run_main(capsys, database_url, "group", command, "-f", str(groups_file))
        assert (code, out, err.splitlines()) == (2, "", [expected]), command

    assert [row["name"] for row in stored_target_rows(engine)] == ["pager"]
    assert fss_json(fss, "group", "list") == []
    groups_file.write_text(GROUPS_WITH_TARGETS.replace("[ops-hook, oncall.mail]",
                                                       "[ops-hook, pager]"))
    fss("group", "apply", "-f", str(groups_file))  # the file's own and the database's: fine
    assert fss_json(fss, "group", "list")[0]["alert_targets"] == ["ops-hook", "pager"]


def test_export_help_says_alert_targets_are_not_exported() -> None:
    out = CliRunner().invoke(cli, ["group", "export", "--help"]).output
    assert "Alert targets are not exported" in " ".join(out.split())
