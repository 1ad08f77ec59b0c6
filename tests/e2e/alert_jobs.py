"""Jobs of the alert end-to-end tests: one that fails, one that hangs without a word, one
that succeeds (and, with data {"fail": true}, fails)."""

from __future__ import annotations

import time

from fss.worker_sdk import JobContext, job


@job("alert.boom")
def boom(ctx: JobContext) -> None:
    ctx.log.info("about to fail")
    raise ValueError("the disk is full")


@job("alert.hang")
def hang(ctx: JobContext) -> None:
    time.sleep(float(ctx.data.get("seconds", 60)))


@job("alert.ok")
def ok(ctx: JobContext) -> None:
    ctx.set_progress(50)
    ctx.log.info("fine")
