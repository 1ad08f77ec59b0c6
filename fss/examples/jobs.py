"""Example jobs: the demo group of `fss dev` runs `hello`.

Run them on any worker with `fss worker -A fss.examples.jobs`.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from fss.worker_sdk import JobContext, job


@job("hello")
def hello(ctx: JobContext) -> bool:
    """Counts its runs in ctx.data, reports progress and logs a greeting."""
    runs = int(ctx.data.get("runs", 0)) + 1
    ctx.data["runs"] = runs
    ctx.set_progress(50)
    ctx.log.info("hello from fss: run #%d of group %d (task %d)", runs, ctx.group_id, ctx.task_id)
    ctx.set_progress(100)
    return True


@job("sleepy")
async def sleepy(ctx: JobContext) -> None:
    """An async job that takes `seconds` (default 0.5) in ten progress steps."""
    seconds = float(ctx.data.get("seconds", 0.5))
    for step in range(1, 11):
        await asyncio.sleep(seconds / 10)
        ctx.set_progress(step * 10)
    ctx.log.info("slept %.2f s", seconds)


@job("flaky")
def flaky(ctx: JobContext) -> None:
    """Fails with probability `fail_rate` (default 0.3): the traceback lands in the run log."""
    ctx.set_progress(30)
    if random.random() < float(ctx.data.get("fail_rate", 0.3)):
        raise RuntimeError("flaky job failed on purpose")
    ctx.log.info("flaky job succeeded")


@job("self-paced")
def self_paced(ctx: JobContext) -> None:
    """Chooses its own next run: `every_s` seconds from now (default 3)."""
    delay = float(ctx.data.get("every_s", 3))
    ctx.set_next_at(timedelta(seconds=delay))
    ctx.log.info("next run in %.1f s", delay)
