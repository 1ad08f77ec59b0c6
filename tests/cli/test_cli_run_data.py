"""`fss group run ID --data JSON` in-process through fss.cli.main: the run's own data, and
bad data as one line naming the field with nothing written."""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path

import pytest
import sqlalchemy as sa
from servers import migrated_copy

from fss.cli import main
from fss.store.engine import create_engine
from fss.store.tables import task, task_group


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


@pytest.fixture
def url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = f"sqlite:///{tmp_path / 'fss.db'}"
    migrated_copy(url)  # the schema: a template copy (tests/servers.py)
    assert fss(capsys, url, "db", "upgrade")[0] == 0
    code, _out, err = fss(
        capsys, url, "group", "add", "--caption", "c", "--job-name", "hello", "--interval-ms",
        "60000", "--start-at", "2030-01-01T00:00:00", "--data", '{"cursor": 41}',
    )
    assert code == 0, err
    return url


def rows(url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return (
                [tuple(r) for r in conn.execute(sa.select(task_group))],
                [tuple(r) for r in conn.execute(sa.select(task))],
            )
    finally:
        engine.dispose()


def test_run_with_data_stores_it_on_the_run_only(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data_file = tmp_path / "run.json"
    data_file.write_text('{"cursor": 0, "full": true}')
    code, out, err = fss(capsys, url, "group", "run", "1", "--data", f"@{data_file}")
    assert (code, err) == (0, "")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(task).where(task.c.id == int(out))).one()
            group_data = conn.execute(sa.select(task_group.c.data)).scalar_one()
    finally:
        engine.dispose()
    assert (row.kind, json.loads(row.run_data)) == ("manual", {"cursor": 0, "full": True})
    assert json.loads(group_data) == {"cursor": 41}
    # fss task show says what data the run was given
    code, shown, err = fss(capsys, url, "task", "show", out.strip(), "--json")
    assert (code, err) == (0, "")
    assert (json.loads(shown)["kind"], json.loads(shown)["run_data"]) == (
        "manual", {"cursor": 0, "full": True})
    code, shown, err = fss(capsys, url, "task", "show", out.strip())
    assert code == 0
    assert re.search(r'^run_data\s+\{"cursor": 0, "full": true\}$', shown, re.M), shown


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("[1, 2]", "error: data: must be a JSON object"),
        ("{not json", "error: data:"),
        ('{"x": NaN}', "error: data:"),
        (json.dumps({"blob": "x" * 70_000}), "error: data: larger than"),
        ("@", "error: data: give a file name after @"),
    ],
)
def test_bad_data_is_one_line_naming_data_and_nothing_changes(
    url: str, capsys: pytest.CaptureFixture[str], value: str, reason: str
) -> None:
    before = rows(url)
    code, out, err = fss(capsys, url, "group", "run", "1", "--data", value)
    assert code != 0 and out == ""
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(reason), err
    assert rows(url) == before
