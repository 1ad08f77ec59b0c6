"""End to end (issue 6, sections 3 and 5): a job that only logs is alive past its timeout, and
a job that keeps asking for a past time does not spin its group. Real `fss scheduler` and
`fss worker` processes on PostgreSQL + Redis."""

from __future__ import annotations

import pytest
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e

JOBS = '''
import time
from datetime import datetime, timedelta, timezone

from fss.worker_sdk import JobContext, job


@job("log_only")
def log_only(ctx: JobContext) -> None:
    for second in range(8):
        ctx.log.info("still working, second %d", second)
        time.sleep(1)


@job("past_next")
def past_next(ctx: JobContext) -> None:
    ctx.set_next_at(datetime.now(timezone.utc) - timedelta(days=1))
'''


def test_given_a_log_only_job_and_a_job_asking_for_the_past_then_success_and_no_tight_loop(
    fss_env: FssProcesses,
) -> None:
    (fss_env.workdir / "liveness_jobs.py").write_text(JOBS)
    fss_env.scheduler("sched-1")
    fss_env.worker("w1", "liveness_jobs", "-c", "2", "-P", "threads")
    wait_for(lambda: len(query(fss_env.database_url, "SELECT id FROM client")) == 1,
             timeout=40, what="the worker to register")

    def add(*args: str) -> int:
        return int(fss_env.cli("group", "add", *args).stdout.strip())

    logger = add("--caption", "logs only", "--job-name", "log_only", "--interval-ms", "60000",
                 "--timeout-s", "3")
    past = add("--caption", "past", "--job-name", "past_next", "--job-sets-next")

    def finished(group_id: int) -> list[tuple[TaskStatus, str | None]]:
        rows = query(fss_env.database_url, "SELECT status, error FROM task WHERE "
                     "task_group_id = :g AND status IN (:fail, :success) ORDER BY id",
                     g=group_id, fail=int(TaskStatus.FAIL), success=int(TaskStatus.SUCCESS))
        return [(TaskStatus(r.status), r.error) for r in rows]

    # Its 8 s of logging outlive the 3 s timeout several times over.
    wait_for(lambda: finished(logger), timeout=20, what="the log-only run to end")
    assert finished(logger) == [(TaskStatus.SUCCESS, None)], fss_env.log_of("sched-1")[-3000:]
    # Meanwhile (> 8 s): once, once more to catch up, then 30 s later (a group with no schedule).
    assert finished(past) == [(TaskStatus.SUCCESS, None)] * 2
