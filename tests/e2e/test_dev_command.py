"""`fss dev`, the README's run command: runs of the demo group within 10 s, nothing else needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fss_processes import query

pytestmark = pytest.mark.e2e


def test_given_a_fresh_directory_when_fss_dev_starts_then_the_demo_group_runs_within_10s(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSS_")}
    process = subprocess.Popen(
        [sys.executable, "-c", "from fss.cli import main; main()", "dev"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    db_url = f"sqlite:///{tmp_path / 'fss-dev.db'}"
    started = time.monotonic()
    successes = 0
    try:
        while time.monotonic() - started < 10 and successes < 2:
            time.sleep(0.5)
            if (tmp_path / "fss-dev.db").exists():
                try:
                    rows = query(db_url, "SELECT COUNT(*) FROM task WHERE status = 4")
                    successes = int(rows[0][0])
                except Exception:  # tables not created yet
                    successes = 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=20)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output = process.communicate()[0].decode()
    assert successes >= 2, output
    assert "demo group 1" in output
    assert "Success" in output  # the per-task lines the user watches
    logs = query(db_url, "SELECT content FROM run_log")
    assert any("hello from fss" in row[0] for row in logs)
    assert process.returncode is not None
