"""A worker whose clock is a minute fast runs every order it is sent in time.

Celery compares an order's `expires` with the worker's clock: under `faketime +60s` a worker
discarded every order on arrival ("Discarding revoked task") and the task was re-sent every
~32 s forever. Orders now carry no Celery `expires` where a fence exists; the armed attempt
lapses on Redis' clock instead. Real scheduler, real worker under libfaketime (Debian's
`faketime`, which scripts/test installs).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from fss_processes import FSS, FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e

FAKETIME = shutil.which("faketime")


def start_fast_worker(env: FssProcesses, name: str, offset: str) -> None:
    assert FAKETIME, "faketime missing: sudo apt-get install -y faketime"
    process_env = dict(env.env)
    # Celery's timers run on the monotonic clock: only the wall clock is moved.
    process_env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    log = open(env.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [FAKETIME, "-f", offset, *FSS, "worker", "-A", "e2e_jobs", "--name", name, "-P", "solo"],
        cwd=env.workdir, env=process_env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    env.running[name] = process


@pytest.mark.parametrize("offset", ["+60s", "-60s"])
def test_given_a_worker_clock_a_minute_off_then_every_slot_runs(
    fss_env: FssProcesses, offset: str
) -> None:
    fss_env.scheduler("sched-1")
    start_fast_worker(fss_env, "w-off", offset)
    wait_for(lambda: len(query(fss_env.database_url, "SELECT id FROM client")) == 1,
             timeout=40, what="the worker to register")
    group = int(fss_env.cli("group", "add", "--caption", "tick", "--job-name", "tick",
                            "--interval-ms", "1000").stdout.strip())

    def done() -> list[Any]:
        rows = query(fss_env.database_url,
                     "SELECT status, attempt FROM task WHERE task_group_id = :g", g=group)
        return [r for r in rows if r.status == TaskStatus.SUCCESS]

    # Five slots run within 8 s of the group's creation (a discarded order came back ~32 s
    # later).
    try:
        wait_for(lambda: len(done()) >= 5, timeout=8, what="five runs")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {done()}\n{fss_env.log_of('w-off')[-2000:]}") from None
    assert all(r.attempt == 1 for r in done())  # none was discarded and sent again
    assert "Discarding revoked task" not in fss_env.log_of("w-off")
