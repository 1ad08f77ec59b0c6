"""Jobs of the on_success / run-with-data end-to-end test: each run appends one JSON line
(job, task id, when it started by the worker's clock, the data it got) to FSS_E2E_RUNS."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from fss.worker_sdk import JobContext, job

RUNS = Path(os.environ.get("FSS_E2E_RUNS", "runs.log"))


def note(name: str, ctx: JobContext) -> None:
    line = {"job": name, "task_id": ctx.task_id, "group_id": ctx.group_id,
            "at": datetime.now(timezone.utc).isoformat(), "data": ctx.data}
    with RUNS.open("a") as out:
        out.write(json.dumps(line) + "\n")


@job("parent")
def parent(ctx: JobContext) -> None:
    note("parent", ctx)
    if ctx.data.get("fail"):
        raise RuntimeError("the parent failed on purpose")


@job("child")
def child(ctx: JobContext) -> None:
    note("child", ctx)
