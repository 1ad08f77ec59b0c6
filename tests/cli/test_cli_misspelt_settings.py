"""A misspelt FSS_ variable (FSS_BROKER_ULR) would leave the default in force silently: every
command names it and the setting it looks like; unrelated FSS_ variables pass quietly."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

from fss.config import misspelt_variables


def test_near_misses_are_named_with_the_setting_they_look_like() -> None:
    env = {
        "FSS_BROKER_ULR": "redis://x", "FSS_CLIENT_TIMEOUT": "5", "FSS_WEB_USER": "a:b",
        "FSS_BROKER_URL": "redis://y", "FSS_TEST_POSTGRES_URL": "p", "FSS_E2E_RUNS": "3",
        "FSS_DEBUG": "1", "PATH": "/bin",
    }
    assert misspelt_variables(env) == [
        ("FSS_BROKER_ULR", "FSS_BROKER_URL"),
        ("FSS_CLIENT_TIMEOUT", "FSS_CLIENT_TIMEOUT_S"),
        ("FSS_WEB_USER", "FSS_WEB_USERS"),
    ]


def test_a_command_warns_on_stderr_and_goes_on() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fss", "group", "next", "--cron", "0 0 * * 7", "-n", "1"],
        env={"PATH": "/usr/bin:/bin", "FSS_DATABSE_URL": "sqlite:///x.db"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: FSS_DATABSE_URL is not an fss setting (ignored): did you mean "
        "FSS_DATABASE_URL?"
    ]
    [line] = result.stdout.splitlines()
    assert datetime.fromisoformat(line).isoweekday() == 7  # the command itself ran
