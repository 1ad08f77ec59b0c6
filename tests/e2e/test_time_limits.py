"""A group's max_run_s stops its runs (Celery's time limits, carried per order), and
`fss task kill` stops one run now (Celery's revoke with terminate), on a real `fss worker`."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
GRACE_S = "1"


@pytest.fixture
def limits_env(fss_env: FssProcesses, monkeypatch: pytest.MonkeyPatch) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "time_limit_jobs.py", fss_env.workdir / "time_limit_jobs.py")
    # A 1 s grace between the soft and the hard limit (and before the supervisor steps in).
    monkeypatch.setenv("FSS_TIME_LIMIT_GRACE_S", GRACE_S)
    monkeypatch.setenv("FSS_E2E_MARKS", str(fss_env.workdir / "marks.log"))
    yield fss_env


def execute(env: FssProcesses, sql: str, **params: object) -> None:
    from fss.store.engine import create_engine

    engine = create_engine(env.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def limited_group(env: FssProcesses, job: str, max_run_s: int | None, seconds: float) -> int:
    """A group of `job` with max_run_s set (directly in SQL until the group options land)
    before its first run is made due, so its first order already carries the limit."""
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    out = env.cli("group", "add", "--caption", job, "--job-name", job, "--interval-ms",
                  "3600000", "--data", f'{{"seconds": {seconds}}}', "--start-at", later)
    group_id = int(out.stdout.strip())
    execute(env, "UPDATE task_group SET max_run_s = :m WHERE id = :g", m=max_run_s, g=group_id)
    execute(env, "UPDATE task SET start_at = :now WHERE task_group_id = :g",
            now=datetime.now(timezone.utc).replace(tzinfo=None), g=group_id)
    return group_id


def first_task(env: FssProcesses, group_id: int) -> dict[str, object]:
    rows = query(env.database_url,
                 "SELECT id, status, error, run_speed, kill_requested_at FROM task "
                 "WHERE task_group_id = :g ORDER BY id", g=group_id)
    return dict(rows[0]._mapping) if rows else {}


def log_lines(env: FssProcesses, task_id: object) -> list[str]:
    rows = query(env.database_url, "SELECT content FROM run_log WHERE task_id = :t ORDER BY id",
                 t=task_id)
    return [str(r.content) for r in rows]


def ended(env: FssProcesses, group_id: int) -> bool:
    status = first_task(env, group_id).get("status")
    return status in (TaskStatus.FAIL, TaskStatus.SUCCESS)


def marks(env: FssProcesses) -> list[str]:
    path = env.workdir / "marks.log"
    return path.read_text().split("\n") if path.exists() else []


def start(env: FssProcesses, *worker_args: str) -> None:
    env.scheduler("s1")
    env.worker("w1", "time_limit_jobs", *worker_args)
    wait_for(lambda: [r.id for r in query(env.database_url, "SELECT id FROM client")] == ["w1"],
             timeout=40, what="the worker to register")


def test_given_max_run_s_when_the_job_runs_past_it_then_the_soft_limit_fails_it(
    limits_env: FssProcesses,
) -> None:
    start(limits_env, "-c", "1")
    began = time.monotonic()
    group_id = limited_group(limits_env, "sleepy", max_run_s=2, seconds=60)
    wait_for(lambda: ended(limits_env, group_id), timeout=30, what="the run to end")

    task = first_task(limits_env, group_id)
    assert task["status"] == TaskStatus.FAIL, task
    assert task["error"] == "time limit exceeded after 2 s", task
    assert 1500 <= int(str(task["run_speed"])) < 4500, task  # stopped at 2 s, not 60
    assert time.monotonic() - began < 20
    lines = log_lines(limits_env, task["id"])
    assert any("time limit exceeded after 2 s" in line for line in lines), lines
    assert not any(" end " in line for line in marks(limits_env))  # the job did not go on


def test_given_a_job_that_ignores_the_soft_limit_then_the_hard_limit_kills_it(
    limits_env: FssProcesses,
) -> None:
    start(limits_env, "-c", "1")
    group_id = limited_group(limits_env, "stubborn", max_run_s=2, seconds=60)
    wait_for(lambda: ended(limits_env, group_id), timeout=30, what="the run to end")

    task = first_task(limits_env, group_id)
    assert task["status"] == TaskStatus.FAIL, task
    error = str(task["error"])
    # Killed at the hard limit, max_run_s + the 1 s grace, and said in the same words.
    assert error.startswith("time limit exceeded after 3 s"), error
    assert "killed" in error, error
    lines = log_lines(limits_env, task["id"])
    assert any("soft time limit: ignored" in line for line in lines), lines
    assert lines[-1] == error, lines  # the worker's line comes after the job's
    assert any(" soft " in line for line in marks(limits_env))
    assert not any(" end " in line for line in marks(limits_env))


def test_given_a_threads_pool_then_the_supervisor_fails_the_run_past_its_limit(
    limits_env: FssProcesses,
) -> None:
    # Celery enforces no time limit in a threads pool: the job runs on, its state is right.
    start(limits_env, "-c", "1", "-P", "threads")
    group_id = limited_group(limits_env, "sleepy", max_run_s=1, seconds=60)
    wait_for(lambda: ended(limits_env, group_id), timeout=30, what="the run to be failed")

    task = first_task(limits_env, group_id)
    assert task["status"] == TaskStatus.FAIL, task
    assert str(task["error"]).startswith("time limit exceeded after 1 s"), task
    assert "threads" in str(task["error"])


def test_given_no_max_run_s_then_a_run_is_not_time_limited(limits_env: FssProcesses) -> None:
    start(limits_env, "-c", "1")
    group_id = limited_group(limits_env, "sleepy", max_run_s=None, seconds=4)
    wait_for(lambda: ended(limits_env, group_id), timeout=30, what="the run to end")
    assert first_task(limits_env, group_id)["status"] == TaskStatus.SUCCESS


def working_task(env: FssProcesses, group_id: int) -> int:
    def running() -> bool:
        return first_task(env, group_id).get("status") == TaskStatus.WORKING

    wait_for(running, timeout=30, what="the run to start")
    return int(str(first_task(env, group_id)["id"]))


def test_given_a_running_task_when_killed_then_it_ends_fail_killed_by_who(
    limits_env: FssProcesses,
) -> None:
    start(limits_env, "-c", "1")
    group_id = limited_group(limits_env, "sleepy", max_run_s=None, seconds=60)
    task_id = working_task(limits_env, group_id)

    began = time.monotonic()
    out = limits_env.cli("task", "kill", str(task_id))
    assert f"task {task_id}: kill sent to w1" in out.stdout
    wait_for(lambda: ended(limits_env, group_id), timeout=15, what="the killed run to end")
    assert time.monotonic() - began < 10

    task = first_task(limits_env, group_id)
    assert task["status"] == TaskStatus.FAIL, task
    assert str(task["error"]).startswith("killed by "), task
    assert str(task["error"]).endswith("(fss task kill)"), task
    assert task["kill_requested_at"] is not None
    lines = log_lines(limits_env, task_id)
    assert any(line.startswith("kill requested by ") for line in lines), lines
    assert not any(" end " in line for line in marks(limits_env))  # the job did not go on

    # The worker goes on serving: its pool replaced the killed process.
    again = limited_group(limits_env, "sleepy", max_run_s=None, seconds=0.1)
    wait_for(lambda: ended(limits_env, again), timeout=20, what="the next run")
    assert first_task(limits_env, again)["status"] == TaskStatus.SUCCESS

    # Not running any more: one line, exit 1.
    late = limits_env.cli("task", "kill", str(task_id), check=False)
    assert late.returncode == 1
    assert late.stderr.strip().splitlines() == [
        f"error: task {task_id} is not running (status Fail); nothing to kill"
    ], late.stderr


def test_given_a_threads_pool_when_killed_then_the_refusal_is_plain_and_the_run_goes_on(
    limits_env: FssProcesses,
) -> None:
    start(limits_env, "-c", "1", "-P", "threads")
    # 10 s: the run must still be going after `fss task kill` answered (4 s ended first on a
    # slow host under the whole suite: the CLI's start and the kill's round trip took longer).
    group_id = limited_group(limits_env, "sleepy", max_run_s=None, seconds=10)
    task_id = working_task(limits_env, group_id)

    out = limits_env.cli("task", "kill", str(task_id), check=False)
    assert out.returncode == 1, out
    assert "threads pool cannot kill a running job" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    task = first_task(limits_env, group_id)
    assert task["status"] == TaskStatus.WORKING and task["kill_requested_at"] is None, task
    assert any("not done" in line for line in log_lines(limits_env, task_id))
    wait_for(lambda: ended(limits_env, group_id), timeout=30, what="the run to end by itself")
    assert first_task(limits_env, group_id)["status"] == TaskStatus.SUCCESS


def test_given_a_running_task_when_an_admin_kills_it_through_the_api_then_it_ends_fail(
    limits_env: FssProcesses,
) -> None:
    from fastapi.testclient import TestClient

    from fss.config import Settings
    from fss.web import WebSettings, create_web_app
    from fss.web.config import parse_users

    start(limits_env, "-c", "1")
    group_id = limited_group(limits_env, "sleepy", max_run_s=None, seconds=60)
    task_id = working_task(limits_env, group_id)

    settings = Settings(database_url=limits_env.database_url, broker_url=limits_env.broker_url)
    app = create_web_app(settings, WebSettings(users=parse_users("admin:pw")))
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    with TestClient(app, headers=basic) as client:
        response = client.post(f"/api/v1/tasks/{task_id}/kill")
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "sent"
        wait_for(lambda: ended(limits_env, group_id), timeout=15, what="the killed run")
        again = client.post(f"/api/v1/tasks/{task_id}/kill")
        assert again.status_code == 409
    task = first_task(limits_env, group_id)
    assert (task["status"], task["error"]) == (TaskStatus.FAIL, "killed by admin (web)"), task
