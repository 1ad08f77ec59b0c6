"""Jobs for the time-limit and kill tests: they run far longer than their group allows."""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from fss.worker_sdk import JobContext, job

MARKS = Path(os.environ.get("FSS_E2E_MARKS", "marks.log"))


def mark(ctx: JobContext, what: str) -> None:
    with MARKS.open("a") as out:
        out.write(f"{ctx.task_id} {ctx.attempt} {what} {os.getpid()}\n")


@job("sleepy")
def sleepy(ctx: JobContext) -> None:
    """Catches nothing: the soft time limit ends it."""
    mark(ctx, "start")
    ctx.log.info("sleeping %s s", ctx.data.get("seconds", 60))
    time.sleep(float(ctx.data.get("seconds", 60)))
    mark(ctx, "end")


@job("stubborn")
def stubborn(ctx: JobContext) -> None:
    """Ignores the soft time limit and keeps running: only the hard limit (or a kill) ends it."""
    mark(ctx, "start")
    deadline = time.monotonic() + float(ctx.data.get("seconds", 60))
    while time.monotonic() < deadline:
        try:
            time.sleep(0.1)
        except SoftTimeLimitExceeded:
            mark(ctx, "soft")
            ctx.log.warning("soft time limit: ignored")
    mark(ctx, "end")
