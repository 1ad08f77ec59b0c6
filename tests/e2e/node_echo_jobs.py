"""The Python twin of the Node.js example's job `node_echo` (examples/node-worker/worker.js):
the same data fields, so a group of that job runs alike on either kind of worker."""

from __future__ import annotations

import time
from datetime import timedelta

from fss.worker_sdk import JobContext, job

STEPS = 4


@job("node_echo")
def node_echo(ctx: JobContext) -> None:
    ctx.log.info("python node_echo run %d/%d of group %d", ctx.task_id, ctx.attempt, ctx.group_id)
    step_s = float(ctx.data.get("duration_ms", 400)) / 1000 / STEPS
    for step in range(1, STEPS + 1):
        time.sleep(step_s)
        ctx.set_progress(100 * step // STEPS)
    if ctx.data.get("fail"):
        raise RuntimeError("node_echo failed on purpose (data.fail)")
    ctx.data["count"] = int(ctx.data.get("count", 0)) + 1
    if "next_in_ms" in ctx.data:
        ctx.set_next_at(timedelta(milliseconds=float(ctx.data["next_in_ms"])))
