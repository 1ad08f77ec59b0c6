"""Help texts that must say what the option does (fss.cli.main in-process, --help)."""

from __future__ import annotations

import re

import pytest

from fss.cli import main


def help_of(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    capsys.readouterr()
    main([*command, "--help"])  # returns (no SystemExit) once the help is printed
    return " ".join(capsys.readouterr().out.split())  # click wraps lines: one line of words


def option_help(text: str, option: str) -> str:
    """The words after `option` up to the next option."""
    found = re.search(rf"{re.escape(option)} \S+ (.*?)(?= --?[a-z])", text)
    assert found, (option, text)
    return found.group(1)


def test_disable_until_says_how_a_time_without_offset_is_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    until = option_help(help_of(capsys, "group", "disable"), "--until")
    assert "UTC if no offset" in until, until
    assert "UTC if no offset" in option_help(help_of(capsys, "group", "add"), "--start-at")


def test_worker_help_says_the_database_url_is_not_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_of(capsys, "worker")
    assert "no database" in text  # the command's own description
    assert option_help(text, "--database-url").startswith(
        "Not used: a worker never opens the database"
    ), text
    assert option_help(help_of(capsys, "group", "list"), "--database-url").startswith(
        "SQLAlchemy URL"
    )
