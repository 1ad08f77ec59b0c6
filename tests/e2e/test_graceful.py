"""Stopping processes on purpose: SIGTERM on workers and schedulers, a pool process lost."""

from __future__ import annotations

import os
import signal
import time

import pytest
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e


def clients(env: FssProcesses) -> list[str]:
    return [r.id for r in query(env.database_url, "SELECT id FROM client")]


def tasks_of(env: FssProcesses, group_id: int) -> list[dict[str, object]]:
    rows = query(env.database_url,
                 "SELECT id, status, error, client_id FROM task WHERE task_group_id = :g "
                 "ORDER BY id", g=group_id)
    return [dict(r._mapping) for r in rows]


def working(env: FssProcesses, group_id: int) -> bool:
    return any(t["status"] == TaskStatus.WORKING for t in tasks_of(env, group_id))


def add_group(env: FssProcesses, job: str, data: str) -> int:
    out = env.cli("group", "add", "--caption", job, "--job-name", job, "--interval-ms", "60000",
                  "--data", data)
    return int(out.stdout.strip())


def test_given_a_running_job_when_the_worker_gets_sigterm_then_it_finishes_and_unregisters(
    fss_env: FssProcesses,
) -> None:
    fss_env.scheduler("s1")
    worker = fss_env.worker("w1", "e2e_jobs", "-c", "2")
    wait_for(lambda: clients(fss_env) == ["w1"], timeout=40, what="the worker to register")
    group_id = add_group(fss_env, "slow", '{"seconds": 3}')
    wait_for(lambda: working(fss_env, group_id), timeout=20, what="the job to start")

    worker.send_signal(signal.SIGTERM)  # the main process only, as a process manager does
    assert worker.wait(timeout=30) == 0

    first = tasks_of(fss_env, group_id)[0]
    assert first["status"] == TaskStatus.SUCCESS, first
    wait_for(lambda: clients(fss_env) == [], timeout=10, what="the client to unregister")


def test_given_a_job_past_the_grace_period_when_sigterm_then_it_is_failed_and_reported(
    fss_env: FssProcesses,
) -> None:
    fss_env.scheduler("s1")
    os.environ["FSS_SHUTDOWN_GRACE_S"] = "1"
    try:
        worker = fss_env.worker("w1", "e2e_jobs", "-c", "2")
    finally:
        del os.environ["FSS_SHUTDOWN_GRACE_S"]
    wait_for(lambda: clients(fss_env) == ["w1"], timeout=40, what="the worker to register")
    group_id = add_group(fss_env, "slow", '{"seconds": 60}')
    wait_for(lambda: working(fss_env, group_id), timeout=20, what="the job to start")

    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert time.monotonic() - started < 20  # did not wait for the 60 s job

    def failed() -> bool:
        return tasks_of(fss_env, group_id)[0]["status"] == TaskStatus.FAIL

    wait_for(failed, timeout=10, what="the run to be reported failed")
    # Reported by the grace timer or by the pool process as it is stopped: either way, stopped.
    assert "stopped before" in str(tasks_of(fss_env, group_id)[0]["error"])
    wait_for(lambda: clients(fss_env) == [], timeout=10, what="the client to unregister")


def test_given_a_pool_process_that_dies_mid_run_then_the_worker_reports_the_failure(
    fss_env: FssProcesses,
) -> None:
    fss_env.scheduler("s1")
    fss_env.worker("w1", "e2e_jobs", "-c", "1")
    wait_for(lambda: clients(fss_env) == ["w1"], timeout=40, what="the worker to register")
    group_id = add_group(fss_env, "suicide", "{}")

    def failed() -> bool:
        rows = tasks_of(fss_env, group_id)
        return bool(rows) and rows[0]["status"] == TaskStatus.FAIL

    wait_for(failed, timeout=15, what="the lost run to be reported")  # well before hung/liveness
    assert "process was lost" in str(tasks_of(fss_env, group_id)[0]["error"])
    assert clients(fss_env) == ["w1"]  # the worker itself lives on


def test_given_a_scheduler_gets_sigterm_then_its_claims_are_free_at_once(
    fss_env: FssProcesses,
) -> None:
    scheduler = fss_env.scheduler("s1")
    fss_env.cli("group", "add", "--caption", "later", "--job-name", "slow",
                "--interval-ms", "1000", "--start-at", "2099-01-01T00:00:00")
    soon = fss_env.cli("group", "add", "--caption", "soon", "--job-name", "nobody-runs-this",
                       "--interval-ms", "1000")
    group_id = int(soon.stdout.strip())

    def claimed() -> bool:
        rows = query(fss_env.database_url,
                     "SELECT claimed_by FROM task WHERE task_group_id = :g", g=group_id)
        return bool(rows) and rows[0][0] == "s1"

    wait_for(claimed, timeout=20, what="the scheduler to claim the due task")
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=20) == 0
    fss_env.running.pop("s1")
    rows = query(fss_env.database_url,
                 "SELECT claimed_by FROM task WHERE task_group_id = :g", g=group_id)
    assert rows[0][0] is None
    nodes = query(fss_env.database_url, "SELECT is_alive FROM server_node WHERE id = 's1'")
    assert not nodes[0][0]
