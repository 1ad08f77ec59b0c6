"""`fss worker --tag` through the real `fss` executable: a bad tag is one line naming --tag,
before the worker starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from runtime_python import runtime_python

FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]
JOBS = Path(__file__).parents[1] / "e2e" / "e2e_jobs.py"


@pytest.mark.parametrize("bad", ["a,b", "gpu 1", "x" * 65, ""])
def test_given_a_bad_tag_then_the_worker_refuses_it_in_one_line_naming_tag(
    bad: str, tmp_path: Path, fresh_redis_url: Callable[[], str]
) -> None:
    shutil.copy(JOBS, tmp_path / "e2e_jobs.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSS_")}
    env["FSS_BROKER_URL"] = fresh_redis_url()
    result = subprocess.run([*FSS, "worker", "-A", "e2e_jobs", "--tag", "gpu", "--tag", bad],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: --tag: "), line
    assert "is not a tag" in line
