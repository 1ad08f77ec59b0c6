"""The overlap policy with a real `fss scheduler` and a prefork `fss worker` (PostgreSQL,
Redis): `replace` kills each run at the group's next slot and starts the slot's run;
`buffer_one` runs a slot that passed right after the run that covered it."""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent


@pytest.fixture
def overlap_env(fss_env: FssProcesses, monkeypatch: pytest.MonkeyPatch) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "overlap_jobs.py", fss_env.workdir / "overlap_jobs.py")
    monkeypatch.setenv("FSS_E2E_MARKS", str(fss_env.workdir / "marks.log"))
    yield fss_env


def start(env: FssProcesses, *worker_args: str) -> None:
    env.scheduler("s1")
    env.worker("w1", "overlap_jobs", *(worker_args or ("-c", "2")))
    wait_for(lambda: [r.id for r in query(env.database_url, "SELECT id FROM client")] == ["w1"],
             timeout=40, what="the worker to register")


def add_group(env: FssProcesses, overlap: str, interval_ms: int, seconds: float) -> int:
    first = (datetime.now(timezone.utc) + timedelta(seconds=1)).replace(microsecond=0)
    out = env.cli("group", "add", "--caption", overlap, "--job-name", "overlap.sleeper",
                  "--interval-ms", str(interval_ms), "--data", f'{{"seconds": {seconds}}}',
                  "--start-at", first.isoformat(), "--overlap", overlap)
    return int(out.stdout.strip())


def tasks_of(env: FssProcesses, group_id: int) -> list[dict[str, object]]:
    rows = query(env.database_url,
                 "SELECT id, status, start_at, run_at, finish_at, error, kill_requested_at "
                 "FROM task WHERE task_group_id = :g ORDER BY id", g=group_id)
    return [dict(r._mapping) for r in rows]


def ended(env: FssProcesses, group_id: int) -> list[dict[str, object]]:
    return [t for t in tasks_of(env, group_id)
            if t["status"] in (TaskStatus.SUCCESS, TaskStatus.FAIL)]


def lines(env: FssProcesses, task_id: object) -> list[str]:
    rows = query(env.database_url, "SELECT content FROM run_log WHERE task_id = :t ORDER BY id",
                 t=task_id)
    return [str(r.content) for r in rows]


def marks(env: FssProcesses) -> list[tuple[int, str, float]]:
    path = env.workdir / "marks.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        task_id, what, at = line.split()
        out.append((int(task_id), what, float(at)))
    return out


def test_replace_kills_each_run_at_the_next_slot_and_starts_the_new_one(
    overlap_env: FssProcesses,
) -> None:
    """A 2 s group whose job sleeps 10 s: every run is killed at the slot after its own
    (Fail 'replaced by the run of HH:MM:SS'), and the slot's run starts right after."""
    start(overlap_env)
    group_id = add_group(overlap_env, "replace", 2000, 10)
    wait_for(lambda: len(ended(overlap_env, group_id)) >= 4, timeout=40,
             what="four runs to be replaced")
    overlap_env.cli("group", "disable", str(group_id))

    done = ended(overlap_env, group_id)[:4]
    for task in done:
        assert task["status"] == TaskStatus.FAIL, task
        assert str(task["error"]).startswith("replaced by the run of "), task
        assert task["kill_requested_at"] is not None, task
        log = lines(overlap_env, task["id"])
        assert any(line.startswith("replace: slot ") for line in log), log
    # Each run is stopped 2 s (one slot) after it began, give or take a sweep, not 10 s.
    for task in done:
        ran = (task["finish_at"] - task["run_at"]).total_seconds()  # type: ignore[operator]
        assert 0.2 < ran < 4.5, task
    # The run after each replaced one starts about when it ended, standing for the slot.
    for before, after in itertools.pairwise(done):
        gap = (after["start_at"] - before["finish_at"]).total_seconds()  # type: ignore[operator]
        assert -1.0 < gap < 1.0, (before, after)
        assert any(line.startswith("replace: slot ") and "runs now" in line
                   for line in lines(overlap_env, after["id"])), after
    # Killed in the job: no run reached its end mark; each run started once.
    seen = marks(overlap_env)
    assert not [m for m in seen if m[1] == "end"], seen
    starts = [m[0] for m in seen if m[1] == "start"]
    assert len(starts) == len(set(starts)), seen
    print("replace: runs", len(tasks_of(overlap_env, group_id)), "ran (s):",
          [round((t["finish_at"] - t["run_at"]).total_seconds(), 2)  # type: ignore[operator]
           for t in done], "errors:", [t["error"] for t in done])


def test_replace_on_a_threads_pool_fails_the_run_here_and_ignores_its_late_end(
    overlap_env: FssProcesses,
) -> None:
    """A threads pool cannot kill a running job: it refuses, the scheduler side fails the
    run at the slot and starts the slot's run; the old job goes on in its thread, and its
    late success changes nothing."""
    start(overlap_env, "-c", "8", "-P", "threads")
    group_id = add_group(overlap_env, "replace", 2000, 4)
    wait_for(lambda: len(ended(overlap_env, group_id)) >= 2, timeout=40,
             what="two runs to be replaced")
    first = ended(overlap_env, group_id)[0]
    assert first["status"] == TaskStatus.FAIL, first
    error = str(first["error"])
    assert error.startswith("replaced by the run of "), error
    assert "the threads pool cannot kill a running job" in error, error
    assert "its late report is ignored" in error, error
    # The job itself ran on to its end (4 s), and reported success: ignored.
    wait_for(lambda: (first["id"], "end") in {(m[0], m[1]) for m in marks(overlap_env)},
             timeout=20, what="the first job to reach its end")
    time.sleep(1.5)  # its finished event is recorded (or ignored) within the recorder's poll
    overlap_env.cli("group", "disable", str(group_id))
    again = next(t for t in tasks_of(overlap_env, group_id) if t["id"] == first["id"])
    assert (again["status"], again["error"]) == (TaskStatus.FAIL, first["error"]), again


def test_buffer_one_runs_back_to_back_when_each_run_covers_a_slot(
    overlap_env: FssProcesses,
) -> None:
    """A 1 s group whose job sleeps 2.5 s: each run covers a slot, which runs right after
    it ends (not at the next slot), and every run succeeds."""
    start(overlap_env)
    group_id = add_group(overlap_env, "buffer_one", 1000, 2.5)
    wait_for(lambda: len(ended(overlap_env, group_id)) >= 4, timeout=40,
             what="four runs to end")
    overlap_env.cli("group", "disable", str(group_id))

    done = ended(overlap_env, group_id)[:4]
    assert [t["status"] for t in done] == [TaskStatus.SUCCESS] * 4, done
    for before, after in itertools.pairwise(done):
        gap = (after["run_at"] - before["finish_at"]).total_seconds()  # type: ignore[operator]
        assert -0.5 < gap < 0.9, (before, after)
        assert any(line.startswith("buffer_one: slot ") for line in lines(overlap_env, after["id"]))
    # One run at a time: each starts after the one before ended.
    seen = marks(overlap_env)
    runs = {}
    for task_id, what, at in seen:
        runs.setdefault(task_id, {})[what] = at
    ordered = [runs[t["id"]] for t in done]  # type: ignore[index]
    for before, after in itertools.pairwise(ordered):
        assert after["start"] >= before["end"], (before, after)
    print("buffer_one gaps (s):", [round(b["start"] - a["end"], 3)
                                   for a, b in itertools.pairwise(ordered)])
