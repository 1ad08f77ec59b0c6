"""The recorder consumes real broker messages and writes them; acks only after commit."""

from __future__ import annotations

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
from kombu.entity import Queue
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.bridge.publisher import EventPublisher
from fss.channels import clients_queue, events_queue
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    encode_batch,
)
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.scheduler.recorder import Recorder
from fss.scheduler.supervisor import Supervisor
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.recording import record, record_client_events
from fss.store.tables import client, dead_letter, run_log, task

T0 = datetime(2026, 5, 1, 0, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def setup(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> Iterator[tuple[Settings, Engine, EventPublisher]]:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url())
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
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
    assert_events_all_acked(settings.broker_url)


def test_given_a_malformed_message_then_it_is_set_aside_and_the_rest_recorded(
    setup: tuple[Settings, Engine, EventPublisher],
) -> None:
    settings, engine, publisher = setup
    task_id = dispatched_task(engine)
    publish(settings, {"nonsense": True}, events_queue())
    publisher.emit(TaskStarted(task_id, 1, "c1", T0))
    assert publisher.flush()
    with running(Recorder(engine, settings, ManualClock(T0))) as recorder:
        wait_for(lambda: recorder.totals.started == 1, timeout=10, what="the started event")
        wait_for(lambda: recorder.dead_letters == 1, timeout=5, what="the dead letter")
    with engine.connect() as conn:
        (letter,) = conn.execute(sa.select(dead_letter)).all()
    assert letter.reason == "events: message must be an object with an 'events' list"
    assert json.loads(letter.body) == {"nonsense": True}


def publish(settings: Settings, body: Any, queue: Queue) -> None:
    with Connection(settings.broker_url) as conn:
        conn.Producer().publish(
            body, routing_key=queue.routing_key, exchange=queue.exchange, declare=[queue]
        )


@contextmanager
def running(recorder: Recorder) -> Iterator[Recorder]:
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive()


def heartbeat_at(engine: Engine, client_id: str) -> datetime | None:
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(client.c.heartbeat_at).where(client.c.id == client_id)
        ).scalar_one_or_none()
    return value


def test_given_task_events_held_back_30_s_then_heartbeats_are_recorded_and_no_client_dropped(
    setup: tuple[Settings, Engine, EventPublisher],
) -> None:
    # Given: a client running an entered order, and a recorder whose task-event writes are
    # held back (a backlog, a slow database) for 30 s of the scheduler's clock
    settings, engine, _ = setup
    clock = ManualClock(T0)

    def beat() -> ClientHeartbeat:
        return ClientHeartbeat("c1", "h", "127.0.0.1", 1, ("j",), client_queue("c1"),
                               clock.now(), incarnation="inc")

    with engine.begin() as conn:
        record(conn, [beat()], T0)
    task_id = dispatched_task(engine)
    fence = RedisFence(settings.broker_url)
    assert fence.arm(task_id, 1) and fence.enter(task_id, 1, "inc")
    held, release = threading.Event(), threading.Event()

    def hold_task_writes() -> None:
        held.set()
        release.wait(30)

    recorder = Recorder(engine, settings, clock, before_task_write=hold_task_writes)
    supervisor = Supervisor(
        engine, fence, settings, clock, events_current=lambda: not recorder.holding
    )
    with running(recorder):
        try:
            publish(settings, encode_batch([TaskStarted(task_id, 1, "c1", T0)]), events_queue())
            assert held.wait(10), "the task path never tried to write"

            # When: the client keeps sending heartbeats on its own queue for 30 s
            for _ in range(30):
                clock.advance(1)
                publish(settings, encode_batch([beat()]), clients_queue())

                # Then: each is recorded at once, and the supervisor drops nobody
                wait_for(lambda: heartbeat_at(engine, "c1") == clock.now(), timeout=5,
                         what="the heartbeat to be recorded while task events are held")
                assert not recorder.holding
                report = supervisor.sweep()
                assert report.held_lease
                assert (report.removed_clients, report.failed, report.redispatched) == (
                    [], [], [])
            with engine.connect() as conn:
                status = conn.execute(sa.select(task.c.status).where(task.c.id == task_id))
                assert status.scalar_one() == TaskStatus.SCHEDULER  # still held back
        finally:
            release.set()
            fence.close()
        wait_for(lambda: recorder.totals.started == 1, timeout=10, what="the held event")


def test_given_left_and_heartbeats_in_one_message_then_they_apply_in_order(
    setup: tuple[Settings, Engine, EventPublisher],
) -> None:
    # Given: one message where c1's last heartbeat came before its `left` (it is gone), and
    # c2 left and then came back (a restart)
    settings, engine, _ = setup

    def beat(client_id: str, pid: int) -> ClientHeartbeat:
        return ClientHeartbeat(client_id, "h", "127.0.0.1", pid, ("j",), client_queue(client_id),
                               T0)
    with engine.begin() as conn:
        record(conn, [beat("c1", 1), beat("c2", 2)], T0)
    events = [beat("c1", 1), beat("c2", 2), ClientLeft("c1", T0), ClientLeft("c2", T0),
              beat("c2", 3), beat("c3", 4), ClientLeft("c3", T0)]

    # When: it comes on either queue
    with running(Recorder(engine, settings, ManualClock(T0 + timedelta(seconds=1)))) as recorder:
        publish(settings, encode_batch(events), clients_queue())
        wait_for(lambda: recorder.totals.heartbeats == 4, timeout=10, what="the client events")

    # Then: c1 and c3 stay gone, c2 is registered anew with the heartbeat after its `left`
    with engine.connect() as conn:
        rows = conn.execute(sa.select(client)).all()
    assert [(r.id, r.pid, r.registered_at) for r in rows] == [
        ("c2", 3, T0 + timedelta(seconds=1))
    ]


@pytest.mark.parametrize("left_first", [True, False])
def test_record_client_events_lets_the_last_event_of_each_client_decide(
    setup: tuple[Settings, Engine, EventPublisher], left_first: bool
) -> None:
    _, engine, _ = setup
    beat = ClientHeartbeat("c1", "h", "127.0.0.1", 1, ("j",), client_queue("c1"), T0)
    left = ClientLeft("c1", T0)
    events: list[Event] = [left, beat] if left_first else [beat, left]
    with engine.begin() as conn:
        assert record_client_events(conn, events, T0) == 1
    with engine.connect() as conn:
        ids = conn.execute(sa.select(client.c.id)).scalars().all()
    assert ids == (["c1"] if left_first else [])


def test_given_the_database_down_then_heartbeats_are_held_unacked_and_written_when_it_is_back(
    pg_database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    # Given: a recorder on a PostgreSQL database that then refuses every new connection
    settings = Settings(database_url=pg_database_url, broker_url=fresh_redis_url())
    migrated_copy(pg_database_url)  # the schema at head: tests/servers.py
    engine = create_engine(pg_database_url)
    name = engine.url.database
    admin = sa.create_engine(engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    beat = ClientHeartbeat("c1", "h", "127.0.0.1", 1, ("j",), client_queue("c1"), T0)
    try:
        with running(Recorder(engine, settings, ManualClock(T0))) as recorder:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            engine.dispose()

            # When: a heartbeat comes while the database is down
            publish(settings, encode_batch([beat]), clients_queue())

            # Then: it is held (the supervisor judges nobody meanwhile), not acked, not lost
            wait_for(lambda: recorder.holding, timeout=10, what="the recorder to hold")
            broker = redis.Redis.from_url(settings.broker_url)
            try:
                assert broker.hlen("fss.events.unacked") == 1
            finally:
                broker.close()
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            wait_for(lambda: heartbeat_at(engine, "c1") == T0, timeout=10, what="the heartbeat")
            wait_for(lambda: not recorder.holding, timeout=5, what="the hold to end")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        engine.dispose()


def test_given_a_lone_finished_event_then_it_is_written_at_once_not_after_the_flush_window(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    """Batching waits only under load: with the queue drained the events are written at once
    (issue 9), even with a flush window of a minute."""
    settings = Settings(
        database_url=database_url, broker_url=fresh_redis_url(), recorder_flush_ms=60_000
    )
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    publisher = EventPublisher(settings.broker_url)
    task_id = dispatched_task(engine)
    recorder = Recorder(engine, settings, ManualClock(T0))
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        publisher.emit(TaskFinished(task_id, 1, "c1", True, 12, T0))
        assert publisher.flush()

        def finished() -> bool:
            with engine.connect() as conn:
                status = conn.execute(sa.select(task.c.status).where(task.c.id == task_id))
                return bool(status.scalar_one() == TaskStatus.SUCCESS)

        wait_for(finished, timeout=10, what="the lone finished event to be written")
    finally:
        stop.set()
        thread.join(timeout=10)
        publisher.close()
        engine.dispose()


def test_given_many_messages_waiting_then_they_are_recorded_in_few_batches_and_all_acked(
    setup: tuple[Settings, Engine, EventPublisher],
) -> None:
    """What waits behind the first message is taken in one round trip (WaitingTaker, see
    test_batch_ack.py) and recorded with it: 20 messages, 20 runs recorded in fewer writes
    than messages, every message acked, nothing left on the queue or unacked."""
    settings, engine, publisher = setup
    task_ids = [dispatched_task(engine) for _ in range(20)]
    for task_id in task_ids:  # one message per run
        publisher.emit(TaskStarted(task_id, 1, "c1", T0))
        publisher.emit(TaskFinished(task_id, 1, "c1", True, 12, T0 + timedelta(milliseconds=12)))
        assert publisher.flush()
    writes: list[int] = []
    recorder = Recorder(
        engine, settings, ManualClock(T0), before_task_write=lambda: writes.append(1)
    )
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: recorder.totals.finished == 20, timeout=10, what="20 runs recorded")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert (recorder.totals.started, recorder.totals.ignored) == (20, 0)
    assert len(writes) < 20
    assert_events_all_acked(settings.broker_url)


def assert_events_all_acked(broker_url: str) -> None:
    """Nothing left on the events queue nor waiting unacked (kombu's Redis keys)."""
    broker = redis.Redis.from_url(broker_url)
    try:
        assert broker.llen("fss.events") == 0
        assert broker.hlen("fss.events.unacked") == 0
    finally:
        broker.close()
