"""A run's log lines carry their order from where they are made (run_log.seq): 2,000 lines
logged quickly by a real run, published in batches by the real worker runtime and written
by a real recorder, are stored with seq 1..2000 in the order they were logged."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from servers import migrated_copy, wait_for

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.fence import RedisFence
from fss.orders import RunOrder
from fss.scheduler.recorder import Recorder
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.tables import run_log
from fss.worker_sdk import JobContext, job
from fss.worker_sdk.job import discover_jobs
from fss.worker_sdk.runtime import WorkerRuntime

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=timezone.utc)
CLIENT = "client-1"
LINES = 2000


@job("chatty")
def chatty(ctx: JobContext) -> None:
    for n in range(1, LINES + 1):
        ctx.log.info("line %d", n)


def test_lines_logged_quickly_are_stored_with_their_sequence(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url())
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    group_id = groups.add_group(
        engine, GroupSpec(caption="g", job_name="chatty", interval_ms=60_000, start_at=T0), T0
    )
    claimed = tasks.claim_due(engine, "n", T0, timedelta(seconds=1), timedelta(seconds=5))[0]
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(
            conn, claimed, "n", tasks.DispatchTarget(CLIENT, "h", "ip"), T0
        )
    assert attempt is not None
    RedisFence(settings.broker_url).arm(claimed.id, attempt)
    runtime = WorkerRuntime(settings, CLIENT, discover_jobs([sys.modules[__name__]]),
                            ManualClock(T0))
    recorder = Recorder(engine, settings, ManualClock(T0))
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        order = RunOrder(claimed.id, attempt, group_id, "chatty", CLIENT, T0, {})
        delivery = runtime.begin("celery-1", order.to_kwargs())
        runtime.run(delivery)
        runtime.end(delivery, "SUCCESS")

        def stored() -> int:
            with engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(run_log))
                           .scalar_one())

        wait_for(lambda: stored() == LINES, timeout=60, what="every line recorded")
        with engine.connect() as conn:
            rows = conn.execute(sa.select(run_log.c.seq, run_log.c.content)).all()
    finally:
        stop.set()
        thread.join(timeout=15)
        runtime.close()
        engine.dispose()
    assert sorted(seq for seq, _ in rows) == list(range(1, LINES + 1))
    assert all(content == f"line {seq}" for seq, content in rows)
