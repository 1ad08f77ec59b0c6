"""End to end: route broadcast with a real `fss scheduler` and two real `fss worker`
processes on PostgreSQL and Redis. Every run reaches both workers, each as its own shard
exactly once; a failed shard is retried alone; each shard's log and status are its own."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent


def executions(env: FssProcesses) -> list[tuple[int, int, int, int, str]]:
    path = env.workdir / "executions.log"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        task_id, attempt, shard, total, client = line.split()
        rows.append((int(task_id), int(attempt), int(shard), int(total), client))
    return rows


def ended_tasks(env: FssProcesses, group_id: int) -> list[tuple[int, int, int]]:
    rows = query(env.database_url,
                 "SELECT id, status, attempt FROM task WHERE task_group_id = :g "
                 "AND status IN (3, 4) ORDER BY id", g=group_id)
    return [(int(r.id), int(r.status), int(r.attempt)) for r in rows]


def test_a_broadcast_group_runs_one_shard_on_each_worker_and_retries_only_the_failed_one(
    fss_env: FssProcesses,
) -> None:
    shutil.copy(HERE / "broadcast_jobs.py", fss_env.workdir / "broadcast_jobs.py")
    fss_env.scheduler("sched-1")
    fss_env.worker("w-a", "broadcast_jobs", "-c", "2")
    fss_env.worker("w-b", "broadcast_jobs", "-c", "2")
    wait_for(lambda: len(query(fss_env.database_url, "SELECT id FROM client")) == 2,
             timeout=40, what="both workers to register")
    group_id = int(fss_env.cli(
        "group", "add", "--caption", "everywhere", "--job-name", "sharded",
        "--interval-ms", "1000", "--route", "broadcast", "--retries", "1",
        "--retry-delay-ms", "100", "--data", '{"fail_shard": 1}',
    ).stdout.strip())
    wait_for(lambda: len(ended_tasks(fss_env, group_id)) >= 3, timeout=40,
             what="three broadcast runs to end")
    fss_env.stop("sched-1")

    ended = ended_tasks(fss_env, group_id)[:3]
    # Each run: shard 1 failed its first attempt, was retried alone, and then succeeded.
    assert [(status, attempt) for _, status, attempt in ended] == [
        (int(TaskStatus.SUCCESS), 2)] * 3
    done = {task_id for task_id, _, _ in ended}
    runs = [e for e in executions(fss_env) if e[0] in done]
    # Exactly once per (task, attempt, shard): nothing ran twice.
    assert max(Counter((t, a, s) for t, a, s, _, _ in runs).values()) == 1
    for task_id in done:
        mine = sorted((a, s, total, c) for t, a, s, total, c in runs if t == task_id)
        assert [(a, s, total) for a, s, total, _ in mine] == [(1, 0, 2), (1, 1, 2), (2, 1, 2)]
        # The two shards of the first attempt ran on the two workers.
        assert {c for a, _, _, c in mine if a == 1} == {"w-a", "w-b"}
        shards = query(fss_env.database_url,
                       "SELECT attempt, shard_index, client_id, status, progress FROM task_run "
                       "WHERE task_id = :t ORDER BY attempt, shard_index", t=task_id)
        assert [(r.attempt, r.shard_index, r.status, r.progress) for r in shards] == [
            (1, 0, TaskStatus.SUCCESS, 100), (1, 1, TaskStatus.FAIL, 50),
            (2, 1, TaskStatus.SUCCESS, 100)]
        lines = query(fss_env.database_url,
                      "SELECT attempt, shard_index, content FROM run_log WHERE task_id = :t",
                      t=task_id)
        said = {(r.attempt, r.shard_index, r.content) for r in lines}
        assert {(1, 0, "shard 0 of 2"), (1, 1, "shard 1 of 2"), (2, 1, "shard 1 of 2")} <= said
    shown = fss_env.cli("task", "show", str(min(done))).stdout
    assert "shard" in shown
