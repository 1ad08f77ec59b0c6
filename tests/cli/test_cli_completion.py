"""`fss completion bash|zsh|fish`, `fss --version`, and `fss` alone printing its help."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from runtime_python import runtime_python

from fss import __version__
from fss.cli import cli, main

FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_of_each_shell(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])

    assert result.exit_code == 0, result.output
    assert "_FSS_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout


def test_completion_of_an_unknown_shell_is_refused_naming_the_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(capsys, "completion", "tcsh")

    assert (code, out) == (2, "")
    assert err.startswith("error: shell: 'tcsh' is not one of")


def test_the_completion_request_of_fss_gr_answers_group() -> None:
    env = dict(os.environ, _FSS_COMPLETE="bash_complete", COMP_WORDS="fss gr", COMP_CWORD="1")

    out = subprocess.run(FSS, env=env, capture_output=True, text=True, timeout=60).stdout

    assert out.splitlines() == ["plain,group"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_sourcing_the_script_completes_fss_gr_to_group(tmp_path: Path) -> None:
    script = subprocess.run([*FSS, "completion", "bash"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    # The script runs `env ... fss` (click 8.2+), so `fss` must be a program on PATH, not a
    # shell function: one that runs this interpreter's fss.
    program = tmp_path / "fss"
    program.write_text(f"#!/bin/sh\nexec '{FSS[0]}' -c '{FSS[2]}' \"$@\"\n")
    program.chmod(0o755)
    probe = script + (
        '\nCOMP_WORDS=(fss gr); COMP_CWORD=1; _fss_completion fss; echo "${COMPREPLY[@]}"\n'
    )
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60,
                         env=env)

    assert out.stdout.strip() == "group", out.stderr


def test_fss_alone_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys)

    assert (code, err) == (0, "")
    assert out.startswith("Usage: fss [OPTIONS] COMMAND [ARGS]...")
    for command in ("health", "doctor", "completion", "group"):
        assert f"  {command} " in out


def test_a_command_group_alone_prints_its_help_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_main(capsys, "group")

    assert code == 0
    assert out.startswith("Usage: fss group [OPTIONS] COMMAND [ARGS]...")


def test_version_names_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--version")

    assert (code, out.strip()) == (0, f"fss, version {__version__}")
