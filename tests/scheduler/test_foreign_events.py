"""Events carry the installation whose order the run is; a recorder sets aside, in
dead_letter, every event of another installation (a deployment sharing the broker, or the
database this one replaced, whose task ids may equal ours), and records the rest.

Real worker-side publisher, real Redis queue, real recorder, every database backend.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from kombu.connection import Connection
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.bridge.publisher import EventPublisher
from fss.channels import events_queue
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import (
    TaskFinished,
    TaskLogged,
    TaskStarted,
    decode_batch,
    encode_batch,
)
from fss.scheduler.recorder import Recorder, split_foreign
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.installation import installation_id
from fss.store.tables import dead_letter, run_log, task

T0 = datetime(2026, 5, 1, 0, 0, 0, tzinfo=timezone.utc)
AT = T0 + timedelta(milliseconds=5)


def test_the_publisher_stamps_the_events_of_a_run_until_its_end(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    publisher = EventPublisher(url)
    publisher.run_of_installation(7, 1, "inst0001")
    try:
        publisher.emit(TaskStarted(7, 1, "c1", AT))
        publisher.emit(TaskLogged(7, 1, "c1", 3, 2, "hello", AT))
        publisher.emit(TaskStarted(8, 1, "c1", AT))  # a run of no known installation
        publisher.emit(TaskFinished(7, 1, "c1", True, 5, AT))
        publisher.emit(TaskLogged(7, 1, "c1", 3, 2, "late line", AT))  # after its end
        assert publisher.flush(timeout_s=5)
    finally:
        publisher.close()
    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange(events_queue().name, 0, -1)
    finally:
        client.close()
    # Each item is a kombu envelope whose body is the base64 of the JSON batch.
    events = [
        e
        for item in reversed(raw)
        for e in decode_batch(json.loads(base64.b64decode(json.loads(item)["body"])))
    ]
    stamped = [(type(e).__name__, e.task_id, e.installation) for e in events]  # type: ignore[attr-defined]
    assert stamped == [
        ("TaskStarted", 7, "inst0001"),
        ("TaskLogged", 7, "inst0001"),
        ("TaskStarted", 8, ""),
        ("TaskFinished", 7, "inst0001"),
        ("TaskLogged", 7, ""),
    ]


def test_split_foreign_keeps_ours_and_unstamped_and_names_both_ids() -> None:
    ours = TaskStarted(1, 1, "c", AT, installation="aaaa0001")
    old_sender = TaskStarted(2, 1, "c", AT)
    theirs = TaskStarted(3, 1, "c", AT, installation="bbbb0002")

    kept, foreign = split_foreign([ours, old_sender, theirs], "aaaa0001")

    assert kept == [ours, old_sender]
    [rejected] = foreign
    assert "bbbb0002" in rejected.reason and "aaaa0001" in rejected.reason
    assert rejected.raw["task_id"] == 3


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    made = create_engine(database_url)
    yield made
    made.dispose()


def dispatched_task(engine: Engine) -> int:
    groups.add_group(
        engine, GroupSpec(caption="g", job_name="j", interval_ms=1000, start_at=T0), T0
    )
    claimed = tasks.claim_due(engine, "n", T0, timedelta(seconds=1), timedelta(seconds=5))[0]
    with engine.begin() as conn:
        tasks.mark_dispatched(conn, claimed, "n", tasks.DispatchTarget("c1", "h", "ip"), T0)
    return claimed.id


@contextmanager
def recording(engine: Engine, settings: Settings, installation: str) -> Iterator[None]:
    recorder = Recorder(engine, settings, ManualClock(T0), installation=installation)
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_a_foreign_installations_events_are_dead_lettered_and_ours_recorded(
    engine: Engine, database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url())
    ours = installation_id(engine)
    task_id = dispatched_task(engine)
    # The replaced database's run of the same task id and attempt, on the same client,
    # finishes while ours has just started: it must not finish ours.
    foreign = [
        TaskStarted(task_id, 1, "c1", AT, installation="0ld1d000"),
        TaskFinished(task_id, 1, "c1", False, 9, AT, error="old run", installation="0ld1d000"),
    ]
    mine = [
        TaskStarted(task_id, 1, "c1", AT, installation=ours),
        TaskLogged(task_id, 1, "c1", 1, 2, "ours", AT, installation=ours),
    ]
    with Connection(settings.broker_url) as conn:
        producer: Any = conn.Producer()
        queue = events_queue()
        for batch in (foreign, mine):
            producer.publish(encode_batch(batch), exchange=queue.exchange,
                             routing_key=queue.routing_key, declare=[queue])

    def recorded() -> bool:
        with engine.connect() as db:
            return db.execute(sa.select(sa.func.count()).select_from(run_log)).scalar() == 1

    with recording(engine, settings, ours):
        wait_for(recorded, timeout=15, what="our log line")
        wait_for(lambda: len(rows(engine, dead_letter)) == 2, timeout=15,
                 what="both foreign events dead-lettered")

    with engine.connect() as db:
        row = db.execute(sa.select(task).where(task.c.id == task_id)).one()
    assert row.status == TaskStatus.WORKING  # started by ours, not failed by theirs
    reasons = [r.reason for r in rows(engine, dead_letter)]
    assert all("installation 0ld1d000" in r and ours in r for r in reasons)


def rows(engine: Engine, table: sa.Table) -> list[Any]:
    with engine.connect() as db:
        return list(db.execute(sa.select(table)))
