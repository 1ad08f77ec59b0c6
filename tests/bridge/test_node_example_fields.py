"""The Node.js example (examples/node-worker) reads the new order fields and sends the new
report field: a broadcast shard's run logs `shard i of n`, a failure with data.no_retry
reports `finished{no_retry}` (retry=False on the event), and `cancel` from `fss_kill` ends
its run. A real `node worker.js` on a real in-process bridge and Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_shards import Rig, rig  # noqa: F401 - the fixture

from fss.events import TaskFinished, TaskLogged

NODE_WORKER = Path(__file__).resolve().parents[2] / "examples" / "node-worker"
NAME = "node-fields"
JOB = "node_echo"


@pytest.fixture
def node_worker(rig: Rig, tmp_path: Path) -> Iterator[Path]:  # noqa: F811
    """`node worker.js` connected to the rig's bridge; yields its log file."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; install it with: apt-get install nodejs npm")
    if not (NODE_WORKER / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"the Node example's packages are missing: (cd {NODE_WORKER} && npm ci)")
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [node, str(NODE_WORKER / "worker.js"), "--bridge", rig.bridge.address,
             "--name", NAME, "--concurrency", "2"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        yield log_path
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_node_example_logs_its_shard_and_refuses_retries_when_asked(
    rig: Rig, node_worker: Path  # noqa: F811
) -> None:
    shard_task, failing_task = 5001, 5002
    rig.order(NAME, shard_task, shard_index=1, shard_total=3, job_name=JOB)
    rig.tap.until(rig.tap.finished(shard_task, NAME), timeout_s=30)
    lines = [e.content for e in rig.tap.of(shard_task, NAME) if isinstance(e, TaskLogged)]
    assert "shard 1 of 3" in lines, (lines, node_worker.read_text())

    rig.order(NAME, failing_task, data={"fail": True, "no_retry": True, "duration_ms": 0},
              job_name=JOB)
    rig.tap.until(rig.tap.finished(failing_task, NAME), timeout_s=30)
    [end] = [e for e in rig.tap.of(failing_task, NAME) if isinstance(e, TaskFinished)]
    assert (end.success, end.retry) == (False, False), end
    assert "failed on purpose" in str(end.error)


def test_the_node_example_ends_a_killed_run(rig: Rig, node_worker: Path) -> None:  # noqa: F811
    task_id = 5003
    rig.order(NAME, task_id, data={"duration_ms": 60_000}, job_name=JOB)
    rig.tap.until(lambda _: bool(rig.tap.of(task_id, NAME)), timeout_s=30)  # it started
    # The example registers os.hostname(): its node is <name>@<that host>.
    [reply] = rig.kill(f"{NAME}@{socket.gethostname()}", f"fss-{task_id}-1")
    assert "ok" in next(iter(reply.values())), reply
    rig.tap.until(rig.tap.finished(task_id, NAME), timeout_s=10)
    [end] = [e for e in rig.tap.of(task_id, NAME) if isinstance(e, TaskFinished)]
    assert end.success is False
    assert end.error == "killed by tester; the client said: cancelled: killed by tester", end
