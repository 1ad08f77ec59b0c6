"""`fss group backfill ID --from T --to T` (and --cancel) in-process through fss.cli.main: what
it prints, what `fss group show` and `fss task list` show of it, and bad input as one line
naming the field with nothing written."""

from __future__ import annotations

import json
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from servers import migrated_copy

from fss.cli import main
from fss.store.engine import create_engine
from fss.store.tables import backfill


def fss(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int | str, str, str]:
    capsys.readouterr()
    code: int | str = 0
    crash = ""
    try:
        main([*args, "--database-url", url])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:
        code, crash = "uncaught exception", traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out, captured.err + crash


# Whole past hours, so the group's regular run (the next hour) is far beyond the look-ahead.
HOUR0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def hour(n: int) -> str:
    return (HOUR0 + timedelta(hours=n)).isoformat()


@pytest.fixture
def url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = f"sqlite:///{tmp_path / 'fss.db'}"
    migrated_copy(url)  # the schema: a template copy (tests/servers.py)
    assert fss(capsys, url, "db", "upgrade")[0] == 0
    code, _out, err = fss(
        capsys, url, "group", "add", "--caption", "c", "--job-name", "hello",
        "--cron", "0 * * * *",
    )
    assert code == 0, err
    return url


def backfill_count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(backfill)).scalar_one())
    finally:
        engine.dispose()


def test_backfill_starts_shows_in_group_show_and_task_list_and_cancels(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = fss(capsys, url, "group", "backfill", "1", "--from", hour(0), "--to", hour(2))

    assert (code, err) == (0, "")
    assert out == f"group 1: backfill of 3 slots; the first, {hour(0)}, runs now\n"
    shown = json.loads(fss(capsys, url, "group", "show", "1", "--json")[1])
    assert (shown["backfill"]["slots_done"], shown["backfill"]["slots_total"]) == (0, 3)
    assert shown["backfill"]["next_at"] == hour(0)
    text = fss(capsys, url, "group", "show", "1")[1]
    assert f"{hour(0)} .. {hour(2)}: 0/3 slots done, next slot {hour(0)}" in text
    [waiting] = json.loads(fss(capsys, url, "task", "list", "--json")[1])
    assert (waiting["kind"], waiting["start_at"]) == ("backfill", hour(0))
    assert "backfill" in fss(capsys, url, "task", "list")[1]

    code, out, err = fss(capsys, url, "group", "backfill", "1", "--cancel")

    assert (code, out, err) == (0, "group 1: backfill cancelled after 0 of 3 slots\n", "")
    assert "backfill" not in json.loads(fss(capsys, url, "group", "show", "1", "--json")[1])
    [waiting] = json.loads(fss(capsys, url, "task", "list", "--json")[1])
    assert waiting["kind"] == "scheduled"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--from", hour(2), "--to", hour(0)], "error: from: "),
        (["--from", hour(0)], "error: to: give both --from and --to"),
        (["--from", "yesterday", "--to", hour(1)], "error: from: 'yesterday' is not an ISO"),
        (["--from", hour(0), "--to", hour(1) + "00:00"], "error: to: "),
        (["--from", hour(0), "--to", hour(60)], "error: to: "),
        (["--from", hour(0), "--to", hour(0 - 24 * 500)], "error: from: "),
        (["--from", (HOUR0 - timedelta(days=500)).isoformat(), "--to", hour(0)],
         "error: to: the window holds more than 10,000 slots"),
        (["--cancel"], "error: backfill: group 1 has no unfinished backfill"),
        (["--cancel", "--from", hour(0)], "error: cancel: --cancel takes no --from or --to"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(
    url: str, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    code, _out, err = fss(capsys, url, "group", "backfill", "1", *args)

    assert code != 0 and code != "uncaught exception", err
    assert err.startswith(line), err
    assert len(err.strip().splitlines()) == 1, err
    assert backfill_count(url) == 0


def test_a_group_whose_job_sets_its_next_time_is_refused(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fss(capsys, url, "group", "add", "--caption", "j", "--job-name", "hello",
               "--job-sets-next")[0] == 0

    code, _out, err = fss(
        capsys, url, "group", "backfill", "2", "--from", hour(0), "--to", hour(1)
    )

    assert code == 2
    assert err.startswith("error: schedule: the group's job sets its next time"), err
