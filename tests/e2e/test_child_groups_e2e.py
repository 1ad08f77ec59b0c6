"""on_success and `fss group run --data` with a real `fss scheduler` and `fss worker`
(PostgreSQL + Redis): the run sees the given data and the group's data stays; when the parent
succeeds its child runs within a second, when it fails the child does not run."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
GROUP_DATA = {"fail": False, "n": 1}


@pytest.fixture
def env(fss_env: FssProcesses, monkeypatch: pytest.MonkeyPatch) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "child_jobs.py", fss_env.workdir / "child_jobs.py")
    monkeypatch.setenv("FSS_E2E_RUNS", str(fss_env.workdir / "runs.log"))
    yield fss_env


def runs(env: FssProcesses, job: str) -> list[dict[str, Any]]:
    path = env.workdir / "runs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry["job"] == job]


def add(env: FssProcesses, job: str, *extra: str) -> int:
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    out = env.cli("group", "add", "--caption", job, "--job-name", job, "--interval-ms",
                  "3600000", "--start-at", later, *extra)
    return int(out.stdout.strip())


def task(env: FssProcesses, task_id: int) -> Any:
    return query(env.database_url, "SELECT * FROM task WHERE id = :t", t=task_id)[0]


def group_data(env: FssProcesses, group_id: int) -> Any:
    row = query(env.database_url, "SELECT data FROM task_group WHERE id = :g", g=group_id)[0]
    return json.loads(row.data)


def ended(env: FssProcesses, task_id: int) -> bool:
    return task(env, task_id).status in (TaskStatus.SUCCESS, TaskStatus.FAIL)


def test_a_parent_run_with_data_starts_its_child_on_success_only(env: FssProcesses) -> None:
    child = add(env, "child")
    parent = add(env, "parent", "--data", json.dumps(GROUP_DATA), "--on-success", str(child))
    env.scheduler("s1")
    env.worker("w1", "child_jobs", "-c", "2")
    wait_for(lambda: [r.id for r in query(env.database_url, "SELECT id FROM client")] == ["w1"],
             timeout=40, what="the worker to register")

    # 1. A run with its own data that succeeds: the job sees that data, the group keeps its
    # own, and the child runs within a second of the parent's end.
    first = int(env.cli("group", "run", str(parent), "--data", '{"n": 2}').stdout)
    wait_for(lambda: len(runs(env, "child")) == 1, timeout=30, what="the child to run")
    [parent_run] = runs(env, "parent")
    assert (parent_run["task_id"], parent_run["data"]) == (first, {"n": 2})
    assert group_data(env, parent) == GROUP_DATA
    wait_for(lambda: ended(env, first), timeout=10, what="the parent's finish recorded")
    parent_task = task(env, first)
    assert parent_task.status == TaskStatus.SUCCESS
    [child_run] = runs(env, "child")
    # The job ran; its start is in the table once the recorder took the worker's event.
    wait_for(lambda: task(env, child_run["task_id"]).run_at is not None, timeout=10,
             what="the child's start recorded")
    child_task = task(env, child_run["task_id"])
    assert child_task.kind == "child"
    delay = child_task.run_at - parent_task.finish_at
    assert timedelta(0) <= delay < timedelta(seconds=1), delay
    lines = [r.content for r in query(env.database_url,
                                      "SELECT content FROM run_log WHERE task_id = :t", t=first)]
    assert f"on_success: group {child} runs now (task {child_task.id})" in lines, lines

    # 2. A run that fails: the child does not run; its waiting task stays an hour away.
    wait_for(lambda: ended(env, child_task.id), timeout=10, what="the child's finish")
    failed = int(env.cli("group", "run", str(parent), "--data", '{"fail": true}').stdout)
    wait_for(lambda: ended(env, failed), timeout=30, what="the failing parent to end")
    assert task(env, failed).status == TaskStatus.FAIL
    time.sleep(2)  # the child would have run within a second
    assert len(runs(env, "child")) == 1
    [waiting] = query(env.database_url,
                      "SELECT start_at, kind FROM task WHERE open_group_id = :g", g=child)
    assert waiting.kind == "scheduled"
    assert waiting.start_at > datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(
        minutes=50
    )
    assert group_data(env, parent) == GROUP_DATA
    print(f"child started {delay.total_seconds() * 1000:.0f} ms after the parent ended")
