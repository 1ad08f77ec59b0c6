"""`fss group next`: the next fire times of a group, a cron or an interval (SQLite only: the
preview reads one group row, the same SQL everywhere)."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from cli_support import Fss, fss_json, sqlite_only
from sqlalchemy.engine import Engine

from fss.cli import main
from fss.domain.status import TaskStatus
from fss.store.tables import task, task_group

pytestmark = sqlite_only

BERLIN_MARCH = ["--time-zone", "Europe/Berlin", "--start-at", "2026-03-27T12:00:00Z"]


@dataclass(frozen=True)
class Outcome:
    code: int | str
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> Outcome:
    """`fss ARGS` through fss.cli.main, as the console script runs it (exit code, one line)."""
    capsys.readouterr()
    code: int | str = 0
    try:
        main([*args, "--database-url", url])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        code = "uncaught: " + traceback.format_exc()
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def add_group(fss: Fss, *schedule: str) -> int:
    out = fss("group", "add", "--caption", "c", "--job-name", "j", *schedule).stdout
    return int(out)


def lines(fss: Fss, *args: str) -> list[str]:
    return str(fss("group", "next", *args).stdout).splitlines()


# -- crons and intervals -----------------------------------------------------------------------


def test_given_a_daily_0230_berlin_cron_then_march_fires_once_after_the_jump(fss: Fss) -> None:
    assert lines(fss, "--cron", "0 30 2 * * *", *BERLIN_MARCH, "-n", "4") == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_given_a_daily_0230_berlin_cron_then_october_fires_once_on_the_repeated_night(
    fss: Fss,
) -> None:
    out = lines(
        fss,
        *("--cron", "30 2 * * *", "--time-zone", "Europe/Berlin"),
        *("--start-at", "2026-10-24T12:00:00+02:00", "-n", "3"),
    )

    assert out == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_given_json_then_the_times_come_with_the_schedule_and_zone(fss: Fss) -> None:
    document = fss_json(fss, "group", "next", "--cron", "0 30 2 * * *", *BERLIN_MARCH, "-n", "2")

    assert document == {
        "schedule": "cron 0 30 2 * * * (Europe/Berlin)",
        "time_zone": "Europe/Berlin",
        "next": ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00"],
    }


def test_given_an_interval_then_it_prints_the_grid_from_the_start_in_utc(fss: Fss) -> None:
    out = lines(fss, "--interval-ms", "90000", "--start-at", "2030-01-01T00:00:00", "-n", "3")

    assert out == [
        "2030-01-01T00:00:00+00:00",
        "2030-01-01T00:01:30+00:00",
        "2030-01-01T00:03:00+00:00",
    ]


def test_given_no_count_then_five_times_are_printed(fss: Fss) -> None:
    assert len(lines(fss, "--cron", "*/5 * * * *")) == 5


# -- a group's own schedule --------------------------------------------------------------------


def test_given_a_cron_group_then_the_preview_starts_at_its_waiting_task(
    fss: Fss, engine: Engine
) -> None:
    # Berlin springs forward on 2027-03-28 (a date after any clock this suite runs on).
    group_id = add_group(
        fss,
        *("--cron", "0 30 2 * * *", "--time-zone", "Europe/Berlin"),
        *("--start-at", "2027-03-26T12:00:00Z"),
    )

    out = lines(fss, str(group_id), "-n", "3")

    assert out == [
        "2027-03-27T02:30:00+01:00",
        "2027-03-28T03:00:00+02:00",
        "2027-03-29T02:30:00+02:00",
    ]
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.select(task.c.start_at).where(
                task.c.task_group_id == group_id, task.c.status == TaskStatus.NONE
            )
        ).scalar_one()
    assert waiting.isoformat()[:19] == "2027-03-27T01:30:00"  # what the scheduler will run


def test_given_an_interval_group_then_the_preview_follows_its_grid(fss: Fss) -> None:
    group_id = add_group(fss, "--interval-ms", "60000", "--start-at", "2030-01-01T00:00:00")

    assert lines(fss, str(group_id), "-n", "2") == [
        "2030-01-01T00:00:00+00:00",
        "2030-01-01T00:01:00+00:00",
    ]


def test_given_a_stored_cron_refused_today_then_the_preview_warns_and_still_shows_it(
    fss: Fss, engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    group_id = add_group(fss, "--cron", "0 * * * *", "--start-at", "2030-01-01T00:00:00")
    with engine.begin() as conn:  # as a group stored before fss refused */60 would be
        conn.execute(task_group.update().values(cron="*/60 * * * *"))

    outcome = run(capsys, database_url, "group", "next", str(group_id), "-n", "2")

    assert outcome.code == 0, outcome
    assert outcome.out.splitlines() == ["2030-01-01T00:00:00+00:00", "2030-01-01T01:00:00+00:00"]
    assert outcome.err.startswith(f"warning: group {group_id}: cron: ")


def test_given_an_interval_with_a_zone_then_next_shows_it_there_as_group_add_accepts_it(
    fss: Fss,
) -> None:
    # `fss group add --interval-ms --time-zone` stores the zone (and the API's preview shows
    # the times in it); `fss group next` refused the same pair ("applies to --cron only").
    args = ("--interval-ms", "3600000", "--time-zone", "Asia/Kolkata")
    group_id = add_group(fss, *args)

    shown = lines(fss, *args, "--start-at", "2026-03-27T12:00:00Z", "-n", "2")

    assert shown == ["2026-03-27T17:30:00+05:30", "2026-03-27T18:30:00+05:30"]
    assert fss_json(fss, "group", "show", str(group_id))["time_zone"] == "Asia/Kolkata"


# -- errors: one line, exit 2 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        ((), "error: schedule: give a group ID, --cron or --interval-ms"),
        (("--cron", "* * * * *", "--interval-ms", "5"), "error: schedule: "),
        (("1", "--cron", "* * * * *"), "error: schedule: a group ID previews"),
        (("--cron", "*/60 * * * *"), "error: cron: '*/60 * * * *': minute field: step 60"),
        (("--cron", "0 0 12 1 * MON"), "error: cron: "),
        (("--cron", "* * * * *", "--time-zone", "Mars/Base"), "error: time_zone: "),
        (("--interval-ms", "0"), "error: interval_ms: "),
        (("--interval-ms", "5", "--time-zone", "Mars/Base"), "error: time_zone: "),
        (("--cron", "* * * * *", "-n", "0"), "error: count: "),
        (("987654",), "error: task group 987654 does not exist"),
    ],
)
def test_given_bad_input_then_one_line_names_the_field(
    fss: Fss,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    prefix: str,
) -> None:
    outcome = run(capsys, database_url, "group", "next", *args)

    assert outcome.code in (1, 2), outcome
    assert outcome.out == ""
    assert len(outcome.err.splitlines()) == 1, outcome.err
    assert outcome.err.startswith(prefix), outcome.err


@pytest.mark.parametrize(
    "cron", ["*/60 * * * *", "* * * 1/13 *", "* */25 * * *", "0 0 12 1 * MON", "* * * * */8"]
)
def test_given_a_cron_the_preview_refuses_then_group_add_and_edit_refuse_it_too(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str], cron: str
) -> None:
    group_id = add_group(fss, "--cron", "0 * * * *")

    added = run(
        capsys, database_url, "group", "add", "--caption", "c", "--job-name", "j", "--cron", cron
    )
    edited = run(capsys, database_url, "group", "edit", str(group_id), "--cron", cron)

    for outcome in (added, edited):
        assert outcome.code == 2, outcome
        assert outcome.err.startswith("error: cron: "), outcome.err
    shown = json.loads(fss("group", "show", str(group_id), "--json").stdout)
    assert shown["cron"] == "0 * * * *"
