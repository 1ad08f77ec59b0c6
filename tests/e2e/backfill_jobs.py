"""The job of the backfill end-to-end test: each run appends one JSON line (task id, the
ctx.start_at it got) to FSS_E2E_RUNS."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fss.worker_sdk import JobContext, job

RUNS = Path(os.environ.get("FSS_E2E_RUNS", "runs.log"))


@job("tick")
def tick(ctx: JobContext) -> None:
    with RUNS.open("a") as out:
        out.write(json.dumps({"task_id": ctx.task_id, "start_at": ctx.start_at.isoformat()}) + "\n")
