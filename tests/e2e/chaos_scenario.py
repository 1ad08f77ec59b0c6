"""Steps of the chaos scenario shared by tests/e2e/test_chaos.py and bench/chaos.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
from chaos_analysis import STATUS_WORKING
from fss_processes import FssProcesses, query

from fss.domain.group_spec import GroupSpec
from fss.naming import EVENTS_QUEUE
from fss.store.engine import create_engine
from fss.store.groups import add_group


def sleep_to_grid_offset(offset_s: float) -> None:
    """Sleep until `offset_s` after the next whole second: the groups fire on whole
    seconds, so a kill there lands while orders and events are in flight."""
    time.sleep((1 - time.time() % 1) + offset_s)


def add_tick_groups(database_url: str, count: int, interval_ms: int) -> list[int]:
    """`count` tick groups on one grid of whole seconds, the first run 1-2 s from now
    (added in-process: the CLI costs ~1 s per call)."""
    now = datetime.now(timezone.utc)
    start_at = now.replace(microsecond=0) + timedelta(seconds=2)
    engine = create_engine(database_url)
    try:
        return [
            add_group(
                engine,
                GroupSpec(
                    caption=f"chaos {i}",
                    job_name="tick",
                    interval_ms=interval_ms,
                    start_at=start_at,
                ),
                now,
            )
            for i in range(count)
        ]
    finally:
        engine.dispose()


def executions_lines(workdir: Path) -> list[str]:
    path = workdir / "executions.log"
    return path.read_text().splitlines() if path.exists() else []


def stop_gracefully(
    env: FssProcesses,
    workers: Iterable[str],
    drain_s: float,
    wait_s: float,
    on_stuck: Callable[[str], None] = lambda _name: None,
) -> None:
    """Workers first (SIGTERM once each: they drain and report), then let the recorders
    write what is in flight, then the schedulers (SIGTERM: they release their claims)."""
    stopping = {name: env.running.pop(name) for name in workers if name in env.running}
    for process in stopping.values():
        process.send_signal(signal.SIGTERM)  # once: a second one may turn it into a cold stop
    for name, process in stopping.items():
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            on_stuck(name)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def settled() -> bool:
        working = query(
            env.database_url, "SELECT count(*) FROM task WHERE status = :w", w=STATUS_WORKING
        )
        with redis.Redis.from_url(env.broker_url) as broker:
            queued = int(broker.llen(EVENTS_QUEUE))
        return str(working[0][0]) == "0" and queued == 0

    deadline = time.monotonic() + drain_s
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the last batch a recorder holds
    env.stop_all()
