"""`fss group backfill` with a real `fss scheduler` and `fss worker` (PostgreSQL + Redis): a 1 s
interval group (misfire skip) backfilled over 10 past seconds runs the 10 slots once each, in
order, each with ctx.start_at = its slot, one between each two regular runs, which go on."""

from __future__ import annotations

import json
import shutil
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
SECOND = timedelta(seconds=1)


@pytest.fixture
def env(fss_env: FssProcesses, monkeypatch: pytest.MonkeyPatch) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "backfill_jobs.py", fss_env.workdir / "backfill_jobs.py")
    monkeypatch.setenv("FSS_E2E_RUNS", str(fss_env.workdir / "runs.log"))
    yield fss_env


def job_runs(env: FssProcesses) -> dict[int, datetime]:
    """ctx.start_at of each run, by task id, as the job saw it."""
    path = env.workdir / "runs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return {e["task_id"]: datetime.fromisoformat(e["start_at"]) for e in map(json.loads, lines)}


def tasks(env: FssProcesses, group_id: int) -> list[Any]:
    return query(env.database_url,
                 "SELECT id, kind, start_at, status FROM task WHERE task_group_id = :g ORDER BY id",
                 g=group_id)


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def test_a_backfill_of_ten_past_seconds_runs_each_slot_once_in_order_between_regular_runs(
    env: FssProcesses,
) -> None:
    anchor = datetime.now(timezone.utc).replace(microsecond=0) - 60 * SECOND
    out = env.cli("group", "add", "--caption", "tick", "--job-name", "tick", "--interval-ms",
                  "1000", "--start-at", anchor.isoformat(), "--misfire", "skip")
    group_id = int(out.stdout.strip())
    env.scheduler("s1")
    env.worker("w1", "backfill_jobs", "-c", "2")
    wait_for(lambda: len(tasks(env, group_id)) >= 3, timeout=40, what="regular runs")

    to_at = datetime.now(timezone.utc).replace(microsecond=0) - 2 * SECOND
    slots = [to_at - (9 - k) * SECOND for k in range(10)]
    said = env.cli("group", "backfill", str(group_id), "--from", slots[0].isoformat(),
                   "--to", to_at.isoformat()).stdout
    assert "backfill of 10 slots" in said, said

    def backfilled() -> list[Any]:
        return [t for t in tasks(env, group_id)
                if t.kind == "backfill" and t.status == TaskStatus.SUCCESS]

    wait_for(lambda: len(backfilled()) == 10, timeout=60, what="10 backfill runs")
    runs = job_runs(env)
    done = backfilled()
    assert [aware(t.start_at) for t in done] == slots  # in order, each slot once
    assert [runs[t.id] for t in done] == slots  # ctx.start_at = the slot
    # alternating: a regular run between each two backfill runs
    kinds = [t.kind for t in tasks(env, group_id)]
    first, last = kinds.index("backfill"), len(kinds) - 1 - kinds[::-1].index("backfill")
    between = kinds[first:last + 1]
    assert between == ["backfill", "scheduled"] * 9 + ["backfill"], kinds
    # regular runs go on after the backfill
    wait_for(lambda: sum(1 for t in tasks(env, group_id)[last + 1:]
                         if t.status == TaskStatus.SUCCESS) >= 3, timeout=20,
             what="regular runs after the backfill")
    [row] = query(env.database_url,
                  "SELECT slots_done, next_at, done_at FROM backfill WHERE task_group_id = :g",
                  g=group_id)
    assert (row.slots_done, row.next_at) == (10, None) and row.done_at is not None
    assert "backfill" not in json.loads(
        env.cli("group", "show", str(group_id), "--json").stdout
    )
