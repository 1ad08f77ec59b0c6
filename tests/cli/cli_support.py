"""Shared by the CLI tests: run `fss` in-process against the test's database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fss.cli import cli

Fss = Callable[..., Result]

# Behaviour that is the same SQL on every backend runs on SQLite only, to keep the suite fast;
# the rest runs on SQLite, PostgreSQL and MySQL.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def invoke(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, [*args, "--database-url", url], catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    assert result.stderr == "", (args, result.stderr)
    return result


def fss_json(fss: Fss, *args: str) -> Any:
    return json.loads(fss(*args, "--json").stdout)
