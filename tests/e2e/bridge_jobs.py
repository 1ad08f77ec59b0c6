"""A Python worker on the gRPC bridge for the end-to-end tests, run as a script:

    python bridge_jobs.py --bridge HOST:PORT --name N [--token-file F] [--concurrency C]

Every execution is appended to executions.log ("task attempt client pid"), like
e2e_jobs.py does for the Celery worker. SIGUSR1 drops the stream and reconnects (what a
network failure does); SIGTERM stops gracefully. Exit code 3: the bridge refused the client.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from types import FrameType

from fss.bridge.client import (
    BridgeClient,
    BridgeJobContext,
    BridgeKicked,
    BridgeRefused,
    JobHandler,
    install_stop_signals,
)

EXECUTIONS = Path(os.environ.get("FSS_E2E_EXECUTIONS", "executions.log"))


def record_execution(ctx: BridgeJobContext) -> None:
    with EXECUTIONS.open("a") as out:
        out.write(f"{ctx.task_id} {ctx.attempt} {ctx.client_id} {os.getpid()}\n")


def tick(ctx: BridgeJobContext) -> None:
    """The same job name as e2e_jobs.tick: the scheduler picks either kind of client."""
    record_execution(ctx)
    ctx.set_progress(40)
    ctx.log.info("bridge tick of group %d", ctx.group_id)
    ctx.set_progress(100)


def bridge_work(ctx: BridgeJobContext) -> None:
    record_execution(ctx)
    ctx.set_progress(50)
    ctx.log.info("bridge work, round %d", int(ctx.data.get("count", 0)) + 1)
    ctx.log.warning("a warning from the bridge")
    ctx.data["count"] = int(ctx.data.get("count", 0)) + 1
    ctx.set_next_at(timedelta(milliseconds=int(ctx.data.get("every_ms", 1000))))


def bridge_slow(ctx: BridgeJobContext) -> None:
    """Runs `seconds` (default 30) reporting progress, or until cancelled."""
    record_execution(ctx)
    seconds = float(ctx.data.get("seconds", 30))
    steps = int(seconds * 10)
    for step in range(steps):
        if ctx.wait_cancelled(0.1):
            return
        ctx.set_progress(min(99, step * 100 // steps))


JOBS: dict[str, JobHandler] = {"tick": tick, "bridge_work": bridge_work, "bridge_slow": bridge_slow}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--token-file")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--language", default="python")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    client = BridgeClient(
        args.bridge, args.name, JOBS, token=token, concurrency=args.concurrency,
        language=args.language,
    )
    install_stop_signals(client)

    def reconnect(_signum: int, _frame: FrameType | None) -> None:
        client.reconnect()

    signal.signal(signal.SIGUSR1, reconnect)
    try:
        client.run()
    except (BridgeRefused, BridgeKicked) as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
