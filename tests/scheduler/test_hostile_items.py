"""Anything a Redis list can hold that is not a decodable event goes to dead_letter alone;
everything else on the queue flows.

Hostile items (arbitrary bytes, truncated JSON, JSON that is no envelope, envelopes whose
body cannot be decoded) are LPUSHed between good events on both event queues, as a buggy or
hostile sender would, and a real recorder reads them: every good event is recorded, each bad
item is dead-lettered exactly once, and nothing stays on the queue or the unacked hash.
(Before: one foreign item at the tail stopped its queue for good; an envelope with a bad
base64 body raised after the take and trapped the whole batch in a livelock.)
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu.connection import Connection
from kombu.entity import Queue
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.channels import EVENTS_REDIS_OPTIONS, clients_queue, events_queue
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import (
    ClientHeartbeat,
    Event,
    TaskFinished,
    TaskLogged,
    TaskStarted,
    encode_batch,
)
from fss.naming import CLIENTS_QUEUE, EVENTS_QUEUE, client_queue
from fss.scheduler.recorder import Recorder
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.tables import client, dead_letter, run_log, task, task_group

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
CLIENT = "c1"
_counter = itertools.count(1)


@dataclass
class World:
    engine: Engine
    redis: redis.Redis
    producer: Any
    recorder: Recorder
    task_id: int

    def publish(self, queue: Queue, *events: Event) -> None:
        self.producer.publish(encode_batch(events), exchange=queue.exchange,
                              routing_key=queue.routing_key, declare=[queue],
                              serializer="json")

    def count(self, statement: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(statement).scalar_one())

    def settled(self) -> bool:
        keys = [EVENTS_QUEUE, CLIENTS_QUEUE, EVENTS_REDIS_OPTIONS["unacked_key"]]
        return all(self.redis.llen(k) == 0 for k in keys[:2]) and self.redis.hlen(keys[2]) == 0


@contextmanager
def running_world(database_url: str, broker_url: str) -> Iterator[World]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    groups.add_group(engine, GroupSpec(caption="g", job_name="j", interval_ms=1000, start_at=T0),
                     T0)
    claimed = tasks.claim_due(engine, "n", T0, timedelta(seconds=1), timedelta(seconds=5))[0]
    with engine.begin() as conn:
        tasks.mark_dispatched(conn, claimed, "n", tasks.DispatchTarget(CLIENT, "h", "ip"), T0)
    recorder = Recorder(engine, Settings(database_url=database_url, broker_url=broker_url),
                        ManualClock(T0))
    stop = threading.Event()
    thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
    raw = redis.Redis.from_url(broker_url)
    try:
        with Connection(broker_url) as conn:
            thread.start()
            yield World(engine, raw, conn.Producer(), recorder, claimed.id)
    finally:
        stop.set()
        thread.join(timeout=15)
        raw.close()
        engine.dispose()
    assert not thread.is_alive()


def envelope(body: Any, queue: str, *, encoding: Any = "base64",
             content_type: str = "application/json", headers: Any = None) -> bytes:
    """A kombu envelope as the Redis transport writes it, with any body and encoding."""
    properties = {"delivery_tag": str(uuid.uuid4()), "delivery_mode": 2, "priority": 0,
                  "body_encoding": encoding,
                  "delivery_info": {"exchange": "", "routing_key": queue}}
    return json.dumps({"body": body, "content-type": content_type, "content-encoding": "utf-8",
                       "headers": {} if headers is None else headers,
                       "properties": properties}).encode()


def _good_envelope(queue: str) -> bytes:
    return envelope(base64.b64encode(b'{"v": 1, "events": []}').decode(), queue)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def hostile(draw: st.DrawFn, queue: str) -> bytes:
    """One item a Redis list can hold that is no decodable event message."""
    kind = draw(st.sampled_from(["bytes", "truncated", "json", "encoding", "base64",
                                 "content-type", "compressed", "headers"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "truncated":
        whole = _good_envelope(queue)
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "json":
        value = draw(json_values)
        return json.dumps(value).encode()
    if kind == "encoding":
        return envelope("e30=", queue, encoding=draw(st.sampled_from(["rot13", ["x"], 7])))
    if kind == "base64":
        body = draw(st.text(alphabet="!@#$%^&*()ab", min_size=1, max_size=20))
        return envelope(body, queue, encoding="base64")
    if kind == "content-type":
        return envelope(base64.b64encode(b"\x80\x04K\x01.").decode(), queue,
                        content_type=draw(st.sampled_from(["application/x-python-serialize",
                                                           "text/nonsense", ""])))
    if kind == "compressed":
        garbage = base64.b64encode(draw(st.binary(min_size=1, max_size=32))).decode()
        return envelope(garbage, queue, headers={"compression": "application/x-gzip"})
    return envelope(base64.b64encode(b'{"v": 1, "events": []}').decode(), queue,
                    headers=draw(st.sampled_from([[1, 2], "h", 3])))


def _beat(client_id: str) -> ClientHeartbeat:
    return ClientHeartbeat(client_id, "h", "127.0.0.1", 1, ("j",), client_queue(client_id), T0)


def _line(world: World, content: str) -> TaskLogged:
    return TaskLogged(world.task_id, 1, CLIENT, 1, 2, content, T0)


def _push_interleaved(world: World, bad: list[tuple[str, bytes]], seed: int) -> tuple[
        set[str], set[str]]:
    """Good events before, between and after the bad items; returns (log lines, clients)."""
    lines: set[str] = set()
    clients: set[str] = set()

    def good() -> None:
        n = next(_counter)
        lines.add(f"line-{seed}-{n}")
        clients.add(f"client-{seed}-{n}")
        world.publish(events_queue(), _line(world, f"line-{seed}-{n}"))
        world.publish(clients_queue(), _beat(f"client-{seed}-{n}"))

    good()
    for name, item in bad:
        world.redis.lpush(name, item)
        good()
    return lines, clients


def _check(world: World, bad: list[tuple[str, bytes]], seed: int, letters_before: int) -> None:
    lines, clients = _push_interleaved(world, bad, seed)
    letters = letters_before + len(bad)

    def recorded() -> bool:
        logs = world.count(sa.select(sa.func.count()).select_from(run_log)
                           .where(run_log.c.content.like(f"line-{seed}-%")))
        beats = world.count(sa.select(sa.func.count()).select_from(client)
                            .where(client.c.id.like(f"client-{seed}-%")))
        dead = world.count(sa.select(sa.func.count()).select_from(dead_letter))
        return (logs, beats, dead) == (len(lines), len(clients), letters) and world.settled()

    wait_for(recorded, timeout=20, what="every good event recorded and every bad item set aside")
    with world.engine.connect() as conn:
        by_queue = dict(conn.execute(sa.select(dead_letter.c.queue, sa.func.count())
                                     .group_by(dead_letter.c.queue)).all())
    assert sum(by_queue.values()) == letters  # exactly once: never twice
    assert world.recorder.dead_letters == letters


@pytest.fixture
def world(sqlite_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    with running_world(sqlite_url, fresh_redis_url()) as w:
        yield w


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_items_on_both_queues_are_set_aside_alone_and_good_events_flow(
    world: World, data: st.DataObject
) -> None:
    bad = data.draw(st.lists(st.sampled_from([EVENTS_QUEUE, CLIENTS_QUEUE]).flatmap(
        lambda q: st.tuples(st.just(q), hostile(q))), min_size=1, max_size=6))
    letters_before = world.count(sa.select(sa.func.count()).select_from(dead_letter))
    _check(world, bad, next(_counter), letters_before)


def test_a_foreign_item_ahead_of_a_started_event_stops_nothing(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    """The issue's reproduction, on every backend: `LPUSH fss.events "not a kombu message"`
    ahead of a good `started`, and the same on fss.clients ahead of a heartbeat."""
    with running_world(database_url, fresh_redis_url()) as world:
        world.redis.lpush(EVENTS_QUEUE, b"not a kombu message")
        world.redis.lpush(CLIENTS_QUEUE, b"not a kombu message")
        world.publish(events_queue(), TaskStarted(world.task_id, 1, CLIENT, T0))
        world.publish(clients_queue(), _beat("alive"))
        wait_for(lambda: world.count(sa.select(task.c.status).where(
            task.c.id == world.task_id)) == 2 and world.count(
            sa.select(sa.func.count()).select_from(client)) == 1 and world.settled(),
            timeout=15, what="the started event and the heartbeat behind the foreign items")
        with world.engine.connect() as conn:
            letters = conn.execute(sa.select(dead_letter).order_by(dead_letter.c.queue)).all()
        assert [(r.queue, r.body) for r in letters] == [
            (CLIENTS_QUEUE, "not a kombu message"), (EVENTS_QUEUE, "not a kombu message")]
        assert all("not JSON" in r.reason for r in letters)


def test_a_deadlock_is_logged_as_one_and_retried_not_called_an_outage(
    pg_database_url: str, fresh_redis_url: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    """A real deadlock on PostgreSQL: another transaction holds the group row while the
    recorder, finishing the group's run, holds the task row; then it asks for the task. The
    recorder (its wait is checked first) is the victim: it says 'deadlock', retries and
    records the run; it never says the database is unreachable."""
    with running_world(pg_database_url, fresh_redis_url()) as world:
        with world.engine.connect() as other:
            other.execute(sa.text("SET deadlock_timeout = '10s'"))  # the recorder's check first
            other.commit()
            with other.begin():
                other.execute(sa.select(task_group.c.id).with_for_update()).all()
                world.publish(events_queue(), TaskStarted(world.task_id, 1, CLIENT, T0),
                              TaskFinished(world.task_id, 1, CLIENT, True, 1, T0))
                time.sleep(0.5)  # the recorder holds the task row, waits for the group
                other.execute(sa.select(task.c.id).where(task.c.id == world.task_id)
                              .with_for_update()).all()
        wait_for(lambda: world.count(sa.select(task.c.status).where(
            task.c.id == world.task_id)) == int(TaskStatus.SUCCESS), timeout=15,
            what="the run recorded after the deadlock")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("deadlock writing events (recorder, fss.events)") for m in messages)
    assert not any("unreachable" in m for m in messages)
