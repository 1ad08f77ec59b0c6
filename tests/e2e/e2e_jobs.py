"""Jobs the end-to-end tests run; every execution is appended to executions.log."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

from fss.worker_sdk import JobContext, job

EXECUTIONS = Path(os.environ.get("FSS_E2E_EXECUTIONS", "executions.log"))


def record_execution(ctx: JobContext) -> None:
    with EXECUTIONS.open("a") as out:
        out.write(f"{ctx.task_id} {ctx.attempt} {ctx.client_id} {os.getpid()}\n")


@job("tick")
def tick(ctx: JobContext) -> None:
    record_execution(ctx)
    ctx.set_progress(40)
    ctx.log.info("tick of group %d", ctx.group_id)
    ctx.set_progress(100)


@job("paced")
def paced(ctx: JobContext) -> None:
    record_execution(ctx)
    ctx.set_next_at(timedelta(seconds=3))


@job("boom")
def boom(ctx: JobContext) -> None:
    record_execution(ctx)
    ctx.set_progress(60)
    raise ValueError("boom goes the job")


@job("counter")
async def counter(ctx: JobContext) -> bool:
    record_execution(ctx)
    ctx.data["count"] = int(ctx.data.get("count", 0)) + 1
    return True


@job("slow")
def slow(ctx: JobContext) -> None:
    record_execution(ctx)
    seconds = float(ctx.data.get("seconds", 3))
    steps = 10
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        ctx.set_progress(step * 10)


@job("suicide")
def suicide(ctx: JobContext) -> None:
    record_execution(ctx)
    os.kill(os.getpid(), signal.SIGKILL)  # the pool process dies mid-run


@job("nul_logger")
def nul_logger(ctx: JobContext) -> None:
    record_execution(ctx)
    ctx.log.info("a NUL byte \x00 in the middle, and an emoji \U0001f600")


@job("log_only")
def log_only(ctx: JobContext) -> None:
    """Reports nothing but log lines, for longer than its group's timeout."""
    record_execution(ctx)
    for second in range(int(ctx.data.get("seconds", 6))):
        ctx.log.info("still working, second %d", second)
        time.sleep(1)


@job("flaky")
def flaky(ctx: JobContext) -> None:
    """Fails its first `fail_times` attempts (retries), then succeeds."""
    record_execution(ctx)
    if ctx.attempt <= int(ctx.data.get("fail_times", 2)):
        raise ValueError(f"flaky attempt {ctx.attempt}")
    ctx.log.info("flaky succeeded at attempt %d", ctx.attempt)


@job("refuses_retry")
def refuses_retry(ctx: JobContext) -> None:
    """A failure no retry would fix: refuses the group's retries."""
    import fss

    record_execution(ctx)
    raise fss.Fail("bad input, not retrying", retry=False)
