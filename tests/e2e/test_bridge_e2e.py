"""End to end (issue 8): `fss scheduler` + `fss bridge` + a Python client of the bridge
(fss.bridge.client in its own process) + a Celery `fss worker`, on PostgreSQL + Redis.

One scenario, in the order a deployment lives through it: both kinds of client serve the
same job name; the bridge client's progress, logs, next_at and data land in the tables; it
reconnects mid-run; the bridge is killed (-9) and restarted; the client process is killed
(-9). Each interruption fails the run it hit and the group goes on, and no task id is ever
executed twice. A client with a wrong token is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fss_processes import FssProcesses, query
from runtime_python import runtime_python
from servers import wait_for
from throwaway import free_port

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
TOKEN = "e2e-bridge-token"
CLIENT, WORKER, BRIDGE, SCHEDULER = "py-grpc-1", "w1", "bridge-1", "sched-1"
DISCONNECTED = f"the gRPC client {CLIENT} disconnected while running attempt 1"


class BridgeWorld:
    def __init__(self, env: FssProcesses) -> None:
        self.env = env
        self.port = free_port()
        self.token_file = env.workdir / "token"
        self.token_file.write_text(TOKEN + "\n")
        shutil.copy(HERE / "bridge_jobs.py", env.workdir / "bridge_jobs.py")

    def start_bridge(self) -> None:
        self.env.start(BRIDGE, "bridge", "--listen", f"127.0.0.1:{self.port}",
                       "--token-file", str(self.token_file))

    def client_process(self, name: str, token_file: Path) -> subprocess.Popen[bytes]:
        log = open(self.env.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [runtime_python(), "bridge_jobs.py", "--bridge", f"127.0.0.1:{self.port}",
             "--name", name, "--token-file", str(token_file), "--language", "python-grpc"],
            cwd=self.env.workdir, env=self.env.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return process

    def start_client(self) -> None:
        self.env.running[CLIENT] = self.client_process(CLIENT, self.token_file)

    def sql(self, statement: str, **params: object) -> list[Any]:
        return list(query(self.env.database_url, statement, **params))

    def client_ids(self) -> set[str]:
        return {str(row.id) for row in self.sql("SELECT id FROM client")}

    def add_group(self, *args: str) -> int:
        return int(self.env.cli("group", "add", *args).stdout.strip())

    def tasks(self, group_id: int) -> list[Any]:
        return self.sql("SELECT * FROM task WHERE task_group_id = :g ORDER BY id", g=group_id)

    def executions(self) -> list[tuple[int, int, str]]:
        path = self.env.workdir / "executions.log"
        if not path.exists():
            return []
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        return [(int(r[0]), int(r[1]), r[2]) for r in rows]

    def working_task(self, group_id: int) -> Any:
        rows = [t for t in self.tasks(group_id) if t.status == TaskStatus.WORKING]
        return rows[0] if rows else None

    def wait_working(self, group_id: int, client_id: str) -> int:
        def running() -> bool:
            row = self.working_task(group_id)
            return row is not None and row.client_id == client_id

        wait_for(running, timeout=15, what=f"a run of group {group_id} on {client_id}")
        row = self.working_task(group_id)
        assert row is not None
        return int(row.id)

    def wait_failed(self, task_id: int, timeout: float = 15) -> Any:
        def failed() -> bool:
            rows = self.sql("SELECT status FROM task WHERE id = :t", t=task_id)
            return rows[0].status == TaskStatus.FAIL

        wait_for(failed, timeout=timeout, what=f"task {task_id} to fail")
        return self.sql("SELECT * FROM task WHERE id = :t", t=task_id)[0]

    def logs(self, task_id: int) -> list[tuple[int, str]]:
        rows = self.sql("SELECT log_level, content FROM run_log WHERE task_id = :t ORDER BY id",
                        t=task_id)
        return [(int(r.log_level), str(r.content)) for r in rows]

    def later_task_of(self, group_id: int, after: int) -> bool:
        return any(int(t.id) > after for t in self.tasks(group_id))


def test_given_a_bridge_client_next_to_a_celery_worker_then_both_run_and_failures_stay_at_most_once(
    fss_env: FssProcesses,
) -> None:
    world = BridgeWorld(fss_env)
    fss_env.scheduler(SCHEDULER)
    world.start_bridge()
    world.start_client()
    fss_env.worker(WORKER, "e2e_jobs", "-c", "2", "-P", "threads")
    wait_for(lambda: world.client_ids() == {CLIENT, WORKER}, timeout=30,
             what="both clients to register")

    # `fss client list` shows the bridge client like any worker, with its language.
    listed = {c["id"]: c for c in json.loads(fss_env.cli("client", "list", "--json").stdout)}
    assert listed[CLIENT]["language"] == "python-grpc"
    assert listed[WORKER]["language"] == "python"
    assert sorted(listed[CLIENT]["job_names"]) == ["bridge_slow", "bridge_work", "tick"]

    # Both kinds of client run the shared job name.
    ticks = [world.add_group("--caption", f"tick {n}", "--job-name", "tick",
                             "--interval-ms", "300") for n in range(2)]
    work = world.add_group("--caption", "work", "--job-name", "bridge_work", "--job-sets-next",
                           "--data", json.dumps({"every_ms": 500}))
    wait_for(lambda: {c for _, _, c in world.executions()} >= {CLIENT, WORKER}, timeout=15,
             what="tick runs on both clients")

    # Progress, logs, next_at and data changes of the bridge client land in the tables.
    def work_done() -> list[Any]:
        return [t for t in world.tasks(work) if t.status == TaskStatus.SUCCESS]

    wait_for(lambda: len(work_done()) >= 2, timeout=15, what="two bridge_work runs")
    first = work_done()[0]
    assert (first.client_id, first.progress, first.error) == (CLIENT, 100, None)
    assert world.logs(first.id) == [
        (2, "bridge work, round 1"), (3, "a warning from the bridge")
    ]
    group = world.sql("SELECT data, run_count FROM task_group WHERE id = :g", g=work)[0]
    assert json.loads(group.data)["count"] >= 2

    slow = world.add_group("--caption", "slow", "--job-name", "bridge_slow",
                           "--interval-ms", "500")

    # 1. The client drops its stream mid-run and reconnects.
    hit = world.wait_working(slow, CLIENT)
    os.kill(fss_env.running[CLIENT].pid, signal.SIGUSR1)
    failed = world.wait_failed(hit)
    assert failed.error.startswith(DISCONNECTED)

    # 2. The bridge is killed (-9) mid-run and restarted: the client comes back by itself.
    hit = world.wait_working(slow, CLIENT)
    fss_env.kill(BRIDGE)
    world.start_bridge()
    failed = world.wait_failed(hit, timeout=20)
    assert CLIENT in failed.error
    assert any(level == 4 for level, _ in world.logs(hit)), world.logs(hit)

    # 3. The client process is killed (-9) mid-run.
    hit = world.wait_working(slow, CLIENT)
    fss_env.kill(CLIENT)
    failed = world.wait_failed(hit)
    assert failed.error.startswith(DISCONNECTED)
    # Like a Celery worker's failover: the failure is in the run log too.
    assert (4, failed.error) in world.logs(hit), world.logs(hit)
    wait_for(lambda: world.client_ids() == {WORKER}, timeout=10, what="the client to leave")

    # The groups go on: the slow group has a newer task, ticks still run on the worker.
    wait_for(lambda: world.later_task_of(slow, hit), timeout=10, what="the slow group to go on")
    ticks_before = len(world.executions())
    wait_for(lambda: len(world.executions()) > ticks_before + 2, timeout=10,
             what="tick runs after the client is gone")
    assert all(world.tasks(group) for group in ticks)

    # At most once: no task id was executed twice, by any client.
    twice = [task for task, n in Counter(t for t, _, _ in world.executions()).items() if n > 1]
    assert twice == [], twice

    # A wrong token is refused: the client exits at once, saying why.
    wrong = fss_env.workdir / "wrong-token"
    wrong.write_text("not-the-token\n")
    intruder = world.client_process("intruder", wrong)
    assert intruder.wait(timeout=15) == 3
    assert "UNAUTHENTICATED" in (fss_env.workdir / "intruder.log").read_text()
    assert "intruder" not in world.client_ids()
