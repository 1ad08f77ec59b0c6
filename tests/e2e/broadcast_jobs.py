"""The job of the broadcast end-to-end test: every execution is appended to executions.log
with its shard, and the shard named by data["fail_shard"] fails its first attempt."""

from __future__ import annotations

import os
from pathlib import Path

from fss.worker_sdk import JobContext, job

EXECUTIONS = Path(os.environ.get("FSS_E2E_EXECUTIONS", "executions.log"))


@job("sharded")
def sharded(ctx: JobContext) -> None:
    with EXECUTIONS.open("a") as out:
        out.write(
            f"{ctx.task_id} {ctx.attempt} {ctx.shard_index} {ctx.shard_total} {ctx.client_id}\n"
        )
    ctx.log.info("shard %d of %d", ctx.shard_index, ctx.shard_total)
    ctx.set_progress(50)
    if ctx.attempt == 1 and ctx.shard_index == ctx.data.get("fail_shard"):
        raise ValueError(f"shard {ctx.shard_index} fails its first attempt")
    ctx.set_progress(100)
