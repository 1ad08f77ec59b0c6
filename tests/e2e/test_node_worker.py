"""End to end (issue 8): the Node.js example worker (examples/node-worker) joins through
`fss bridge` next to a Celery worker serving the same job name. Real `fss scheduler`,
`fss bridge`, `fss worker` and `node worker.js` processes on PostgreSQL + Redis."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
NODE_WORKER = HERE.parent.parent / "examples" / "node-worker"
# id, status, client_id, progress, error
TaskRow = tuple[int, int, str | None, int, str | None]
SUCCESS, FAIL, WORKING = int(TaskStatus.SUCCESS), int(TaskStatus.FAIL), int(TaskStatus.WORKING)


def require_node() -> str:
    """The node binary; the test fails (never skips) when the example cannot run."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; install it with: apt-get install nodejs npm")
    if not (NODE_WORKER / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"the Node example's packages are missing: (cd {NODE_WORKER} && npm ci)")
    return node


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_node(
    env: FssProcesses, node: str, name: str, bridge: str, token_file: Path
) -> subprocess.Popen[bytes]:
    """`node worker.js` as its README says, logging to <workdir>/<name>.log; registered with
    the fixture's processes so kill() / kill_all() handle it."""
    log = open(env.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed right after Popen
    process = subprocess.Popen(
        [node, str(NODE_WORKER / "worker.js"), "--bridge", bridge, "--token-file",
         str(token_file), "--name", name, "--concurrency", "2"],
        cwd=env.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    env.running[name] = process
    return process


def client_languages(env: FssProcesses) -> dict[str, str]:
    rows = json.loads(env.cli("client", "list", "--json").stdout)
    return {row["id"]: row["language"] for row in rows}


def client_ids(env: FssProcesses) -> set[str]:
    """The rows `fss client list` shows, read directly: a wait polling the command started
    an interpreter (~1 s of CPU) per poll."""
    return {str(r.id) for r in query(env.database_url, "SELECT id FROM client")}


def add_group(env: FssProcesses, caption: str, data: dict[str, object], *schedule: str) -> int:
    result = env.cli("group", "add", "--caption", caption, "--job-name", "node_echo",
                     "--data", json.dumps(data), *schedule)
    return int(result.stdout.strip())


def tasks_of(env: FssProcesses, group_id: int) -> list[TaskRow]:
    rows = query(env.database_url, "SELECT id, status, client_id, progress, error FROM task "
                 "WHERE task_group_id = :g ORDER BY id", g=group_id)
    return [(r.id, r.status, r.client_id, r.progress, r.error) for r in rows]


def finished_by(env: FssProcesses, group_id: int, client_id: str) -> list[int]:
    return [t[0] for t in tasks_of(env, group_id) if t[1] == SUCCESS and t[2] == client_id]


def logs_of(env: FssProcesses, task_id: int) -> list[tuple[int, str]]:
    rows = query(env.database_url, "SELECT log_level, content FROM run_log WHERE task_id = :t "
                 "ORDER BY id", t=task_id)
    return [(r.log_level, r.content) for r in rows]


def test_the_node_worker_runs_beside_a_celery_worker_and_its_death_fails_only_its_run(
    fss_env: FssProcesses,
) -> None:
    node = require_node()
    shutil.copy(HERE / "node_echo_jobs.py", fss_env.workdir / "node_echo_jobs.py")
    token_file = fss_env.workdir / "bridge.token"
    token_file.write_text("e2e-secret\n")
    wrong_token = fss_env.workdir / "wrong.token"
    wrong_token.write_text("not-the-secret\n")
    bridge = f"127.0.0.1:{free_port()}"

    fss_env.scheduler("sched-1")
    fss_env.start("bridge", "bridge", "--listen", bridge, "--token-file", str(token_file))
    fss_env.worker("py-1", "node_echo_jobs", "-c", "2", "-P", "threads")
    start_node(fss_env, node, "node-1", bridge, token_file)
    intruder = start_node(fss_env, node, "node-bad", bridge, wrong_token)
    wait_for(lambda: client_ids(fss_env) >= {"node-1", "py-1"}, timeout=25,
             what="both workers to register")
    assert client_languages(fss_env)["node-1"] == "node"

    # A wrong token is refused: that worker gives up, non-zero, and never registers.
    assert intruder.wait(timeout=10) != 0
    fss_env.running.pop("node-bad")
    assert "UNAUTHENTICATED" in fss_env.log_of("node-bad")
    assert "node-bad" not in client_languages(fss_env)

    echo = add_group(fss_env, "echo", {"count": 0}, "--interval-ms", "300")
    paced = add_group(fss_env, "paced", {"next_in_ms": 700, "duration_ms": 100}, "--job-sets-next")
    wait_for(lambda: all(finished_by(fss_env, group, client) for group, client in
                         ((echo, "node-1"), (echo, "py-1"), (paced, "node-1"))),
             timeout=20, what="runs of both groups on both workers")

    # Progress and log lines of a node run land in the tables, at their levels.
    node_run = finished_by(fss_env, echo, "node-1")[0]
    assert [t[3] for t in tasks_of(fss_env, echo) if t[0] == node_run] == [100]
    levels = {level for level, content in logs_of(fss_env, node_run)}
    assert {1, 2, 3} <= levels, logs_of(fss_env, node_run)  # DEBUG, INFORMATION, WARNING

    # Data changes: every success, on either worker, counted once (one consistent snapshot).
    [snapshot] = query(fss_env.database_url, "SELECT data, (SELECT count(*) FROM task WHERE "
                       "task_group_id = :g AND status = :s) AS successes FROM task_group "
                       "WHERE id = :g", g=echo, s=SUCCESS)
    assert json.loads(snapshot.data)["count"] == snapshot.successes >= 2

    # next_at: the run after a node run starts exactly when the node worker asked.
    paced_run = finished_by(fss_env, paced, "node-1")[0]
    asked = [c for _, c in logs_of(fss_env, paced_run) if c.startswith("next run at ")]
    assert asked, logs_of(fss_env, paced_run)
    [following] = query(fss_env.database_url, "SELECT start_at FROM task WHERE task_group_id "
                        "= :g AND id > :t ORDER BY id LIMIT 1", g=paced, t=paced_run)
    wanted = datetime.fromisoformat(asked[0].removeprefix("next run at ").replace("Z", "+00:00"))
    assert following.start_at.replace(tzinfo=timezone.utc) == wanted

    # kill -9 the node worker in the middle of a slow run: that run fails with a run log,
    # the group goes on on the Celery worker.
    slow = add_group(fss_env, "slow", {"duration_ms": 3000}, "--interval-ms", "300")

    def node_running_slow() -> list[int]:
        return [t[0] for t in tasks_of(fss_env, slow) if t[1] == WORKING and t[2] == "node-1"]

    wait_for(lambda: bool(node_running_slow()), timeout=15, what="a slow run on the node worker")
    [victim] = node_running_slow()
    fss_env.kill("node-1")
    wait_for(lambda: [t[1] for t in tasks_of(fss_env, slow) if t[0] == victim] == [FAIL],
             timeout=10, what="the killed node run to fail")
    [error] = [t[4] for t in tasks_of(fss_env, slow) if t[0] == victim]
    assert error is not None and "disconnected while running" in error, error
    assert any("disconnected while running" in content for _, content in logs_of(fss_env, victim))
    wait_for(lambda: any(t[0] > victim for t in tasks_of(fss_env, slow) if t[1] == SUCCESS),
             timeout=15, what="the slow group to go on after the node worker died")
    wait_for(lambda: "node-1" not in client_ids(fss_env), timeout=10,
             what="the killed node worker to leave the client list")
    assert "node-1" not in client_languages(fss_env)
