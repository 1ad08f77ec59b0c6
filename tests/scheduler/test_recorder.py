"""The recorder consumes real broker messages and writes them; acks only after commit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
import sqlalchemy as sa
from kombu.connection import Connection
from servers import wait_for
from sqlalchemy.engine import Engine

from fss.bridge.publisher import EventPublisher
from fss.channels import events_queue
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import ClientHeartbeat, TaskFinished, TaskLogged, TaskProgressed, TaskStarted
from fss.naming import client_queue
from fss.scheduler.recorder import Recorder
from fss.store import groups, migrate, tasks
from fss.store.engine import create_engine
from fss.store.tables import client, run_log, task

T0 = datetime(2026, 5, 1, 0, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def setup(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> Iterator[tuple[Settings, Engine, EventPublisher]]:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url())
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    publisher = EventPublisher(settings.broker_url)
    yield settings, engine, publisher
    publisher.close()
    engine.dispose()


def dispatched_task(engine: Engine) -> int:
    group_id = groups.add_group(
        engine, GroupSpec(caption="g", job_name="j", interval_ms=1000, start_at=T0), T0
    )
    claimed = tasks.claim_due(engine, "n", T0, timedelta(seconds=1), timedelta(seconds=5))[0]
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(
            conn, claimed, "n", tasks.DispatchTarget("c1", "h", "127.0.0.1"), T0
        )
    assert attempt == 1 and group_id
    return claimed.id


def test_given_events_on_the_queue_then_the_recorder_writes_them_and_wakes_the_loop(
    setup: tuple[Settings, Engine, EventPublisher],
) -> None:
    settings, engine, publisher = setup
    task_id = dispatched_task(engine)
    woken = threading.Event()
    recorder = Recorder(engine, settings, ManualClock(T0), on_finished=woken.set)
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        at = T0 + timedelta(milliseconds=5)
        publisher.emit(ClientHeartbeat("c1", "h", "127.0.0.1", 1, ("j",), client_queue("c1"), at))
        publisher.emit(TaskStarted(task_id, 1, "c1", at))
        publisher.emit(TaskProgressed(task_id, 1, "c1", 55, at))
        publisher.emit(TaskLogged(task_id, 1, "c1", 1, 2, "hello", at))
        publisher.emit(TaskFinished(task_id, 1, "c1", True, 12, at + timedelta(milliseconds=12)))
        assert publisher.flush()

        def finished() -> bool:
            with engine.connect() as conn:
                status = conn.execute(sa.select(task.c.status).where(task.c.id == task_id))
                return bool(status.scalar_one() == TaskStatus.SUCCESS)

        wait_for(finished, timeout=10, what="the task to be recorded as Success")
        assert woken.wait(5)
    finally:
        stop.set()
        thread.join(timeout=10)
    with engine.connect() as conn:
        assert conn.execute(sa.select(run_log.c.content)).scalars().all() == ["hello"]
        assert conn.execute(sa.select(client.c.id)).scalars().all() == ["c1"]
        row = conn.execute(sa.select(task).where(task.c.id == task_id)).one()
    assert (row.progress, row.run_speed) == (100, 12)
    # Everything was acked: nothing is left on the queue nor waiting unacked (kombu's Redis keys).
    broker = redis.Redis.from_url(settings.broker_url)
    try:
        assert broker.llen("fss.events") == 0
        assert broker.hlen("fss.events.unacked") == 0
    finally:
        broker.close()


def test_given_a_malformed_message_then_it_is_dropped_and_the_rest_recorded(
    setup: tuple[Settings, Engine, EventPublisher],
) -> None:
    settings, engine, publisher = setup
    task_id = dispatched_task(engine)
    with Connection(settings.broker_url) as conn:
        producer = conn.Producer()
        producer.publish({"nonsense": True}, routing_key=events_queue().name,
                         exchange=events_queue().exchange, declare=[events_queue()])
    publisher.emit(TaskStarted(task_id, 1, "c1", T0))
    assert publisher.flush()
    recorder = Recorder(engine, settings, ManualClock(T0))
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: recorder.totals.started == 1, timeout=10, what="the started event")
    finally:
        stop.set()
        thread.join(timeout=10)
