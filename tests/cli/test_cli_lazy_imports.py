"""Each `fss` command loads only what it needs: the long-running processes stay small.

Checked in a fresh interpreter (the runtime venv, as a user installs fss): resolving a command
must not pull in the web stack, the gRPC bridge or alembic, and `fss worker` not even
SQLAlchemy (it never opens the database).
"""

from __future__ import annotations

import json
import subprocess

import click
import pytest

from fss.cli import COMMANDS, cli
from tests.runtime_python import runtime_python

HEAVY = ("alembic", "fastapi", "starlette", "uvicorn", "jinja2", "grpc", "google.protobuf")

PROBE = """
import json, sys
import click
from fss.cli import cli
command = cli.get_command(click.Context(cli), sys.argv[1])
print(json.dumps({"name": command.name,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2:])}))
"""


def loaded_by(command: str, watched: tuple[str, ...]) -> dict[str, object]:
    roots = sorted({name.split(".")[0] for name in watched} | {"sqlalchemy"})
    out = subprocess.run(
        [runtime_python(), "-c", PROBE, command, *roots],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("command", ["scheduler", "worker"])
def test_long_running_commands_leave_web_grpc_and_alembic_unloaded(command: str) -> None:
    result = loaded_by(command, HEAVY)
    assert result["name"] == command
    loaded = set(result["loaded"])  # type: ignore[arg-type]
    assert not {m for m in loaded if m.startswith(HEAVY)}, loaded


def test_dev_loads_the_web_stack_only_when_it_serves_the_web_ui() -> None:
    """`fss dev --no-web` (the browser tests start one per module) skips ~0.7 s of imports;
    tests/e2e/test_dev_command.py logs in to the web UI of a `fss dev` without it."""
    web_and_grpc = tuple(m for m in HEAVY if m != "alembic")  # dev migrates its SQLite file
    result = loaded_by("dev", web_and_grpc)
    assert result["name"] == "dev"
    loaded = set(result["loaded"])  # type: ignore[arg-type]
    assert not {m for m in loaded if m.startswith(web_and_grpc)}, loaded


def test_the_worker_does_not_load_sqlalchemy() -> None:
    result = loaded_by("worker", ("sqlalchemy",))
    assert result["loaded"] == []


def test_every_lazy_command_resolves_to_the_command_of_its_name() -> None:
    context = click.Context(cli)
    assert sorted(cli.list_commands(context)) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command), name
        assert command.name == name


def test_group_brings_the_subcommands_other_modules_add() -> None:
    group = cli.get_command(click.Context(cli), "group")
    assert isinstance(group, click.Group)
    assert {"apply", "diff", "export", "next", "add", "list"} <= set(group.commands)
