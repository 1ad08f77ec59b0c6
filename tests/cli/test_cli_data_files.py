"""`--data @file.json` and `--data -` (stdin) on `fss group add` and `fss group edit`: the same
JSON object as given inline, and one line naming `data` and the file when it is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import Fss, fss_json, sqlite_only
from click.testing import CliRunner

from fss.cli import cli
from fss.domain.group_spec import MAX_DATA_BYTES


def add_args(data: str) -> list[str]:
    return ["group", "add", "--caption", "c", "--job-name", "j", "--interval-ms", "1000",
            "--data", data]


@sqlite_only
def test_given_a_json_file_when_adding_with_at_file_then_the_group_holds_its_object(
    fss: Fss, tmp_path: Path
) -> None:
    path = tmp_path / "data.json"
    path.write_text('{\n  "batch": 500,\n  "name": "Zürich 🚀"\n}\n', encoding="utf-8")

    group_id = fss(*add_args(f"@{path}")).stdout.strip()

    assert fss_json(fss, "group", "show", group_id)["data"] == {"batch": 500, "name": "Zürich 🚀"}


@sqlite_only
def test_given_json_on_stdin_when_adding_and_editing_with_dash_then_it_is_used(
    fss: Fss, database_url: str
) -> None:
    runner = CliRunner()
    added = runner.invoke(
        cli, [*add_args("-"), "--database-url", database_url], input='{"from": "stdin"}'
    )
    assert added.exit_code == 0, added.output
    group_id = added.stdout.strip()

    edited = runner.invoke(
        cli, ["group", "edit", group_id, "--data", "-", "--json", "--database-url", database_url],
        input='{"edited": true}',
    )

    assert edited.exit_code == 0, edited.output
    assert json.loads(edited.stdout)["data"] == {"edited": True}


@sqlite_only
def test_given_a_file_when_editing_with_at_file_then_only_data_changes(
    fss: Fss, tmp_path: Path
) -> None:
    group_id = fss(*add_args('{"old": 1}')).stdout.strip()
    path = tmp_path / "new.json"
    path.write_text('{"new": 2}')

    fss("group", "edit", group_id, "--data", f"@{path}")

    shown = fss_json(fss, "group", "show", group_id)
    assert shown["data"] == {"new": 2}
    assert shown["interval_ms"] == 1000


@sqlite_only
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"a": ', "invalid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe{}", "is not UTF-8"),
    ],
)
def test_given_a_bad_file_then_the_error_names_data_and_the_file(
    fss: Fss, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    content: bytes, reason: str,
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)

    line = main_error(capsys, [*add_args(f"@{path}"), "--database-url", database_url])

    assert line.startswith(f"error: data: {str(path)!r}"), line
    assert reason in line
    assert fss_json(fss, "group", "list") == []


@sqlite_only
def test_given_a_missing_file_then_the_error_names_data_and_the_file(
    fss: Fss, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.json"

    line = main_error(capsys, [*add_args(f"@{path}"), "--database-url", database_url])

    assert line == f"error: data: cannot read {str(path)!r} (No such file or directory)"


@sqlite_only
def test_given_data_over_64_kib_in_a_file_then_it_is_refused_naming_the_limit(
    fss: Fss, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"blob": "x" * MAX_DATA_BYTES}))

    line = main_error(capsys, [*add_args(f"@{path}"), "--database-url", database_url])

    assert line.startswith(f"error: data: {str(path)!r}: larger than {MAX_DATA_BYTES} bytes")


@sqlite_only
def test_given_a_huge_file_then_it_is_refused_without_reading_it_all(
    fss: Fss, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as out:
        out.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of NUL bytes on disk in no time

    line = main_error(capsys, [*add_args(f"@{path}"), "--database-url", database_url])

    assert line.startswith(f"error: data: {str(path)!r} is larger than 1024 KiB")


@sqlite_only
def test_given_at_without_a_name_then_the_error_says_how_to_name_the_file(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = main_error(capsys, [*add_args("@"), "--database-url", database_url])

    assert line == "error: data: give a file name after @, e.g. --data @data.json"


def test_the_help_of_add_and_edit_names_files_stdin_and_the_64_kib_limit() -> None:
    for command in ("add", "edit"):
        help_text = " ".join(CliRunner().invoke(cli, ["group", command, "--help"]).stdout.split())
        assert "@FILE" in help_text and "- for stdin" in help_text and "64 KiB" in help_text


def main_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run `fss` as the console script does; its one error line (exit 2, nothing on stdout)."""
    from fss.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]
