"""Jobs for the overlap tests: runs longer than their group's interval."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fss.worker_sdk import JobContext, job

MARKS = Path(os.environ.get("FSS_E2E_MARKS", "marks.log"))


def mark(ctx: JobContext, what: str) -> None:
    with MARKS.open("a") as out:
        out.write(f"{ctx.task_id} {what} {time.time():.3f}\n")


@job("overlap.sleeper")
def sleeper(ctx: JobContext) -> None:
    """Sleeps `seconds` (a `replace` kills it at the next slot, before its end mark)."""
    mark(ctx, "start")
    time.sleep(float(ctx.data.get("seconds", 10)))
    mark(ctx, "end")
