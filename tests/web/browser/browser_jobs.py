"""Jobs the browser tests run in `fss dev -A browser_jobs`: slow enough to watch live."""

from __future__ import annotations

import time

from fss.worker_sdk import JobContext, job


@job("tail")
def tail(ctx: JobContext) -> None:
    """Logs `lines` lines (default 6) `pause_s` apart with progress, then says `say`."""
    lines = int(ctx.data.get("lines", 6))
    pause_s = float(ctx.data.get("pause_s", 0.4))
    for step in range(1, lines + 1):
        ctx.log.info("step %d of %d", step, lines)
        ctx.set_progress(step * 100 // lines)
        time.sleep(pause_s)
    if ctx.data.get("say"):
        ctx.log.warning("%s", ctx.data["say"])
