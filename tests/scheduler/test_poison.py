"""One bad event never stops the recorder: it is set aside in dead_letter with its reason and
raw body, and every other event (of its own message too) is recorded.

Real poison on the real Redis queue, put there with kombu's Producer as a buggy or hostile
sender would; a real recorder; every database backend.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from kombu.connection import Connection
from kombu.entity import Queue
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.channels import clients_queue, events_queue
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import (
    ClientHeartbeat,
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    encode_batch,
    to_dict,
)
from fss.naming import client_queue
from fss.scheduler.recorder import Recorder
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.tables import client, dead_letter, run_log, task, task_group

T0 = datetime(2026, 5, 1, 0, 0, 0, tzinfo=timezone.utc)
AT = T0 + timedelta(milliseconds=5)
CLIENT = "c1"
REPLACEMENT = "\ufffd"


@dataclass
class World:
    settings: Settings
    engine: Engine
    producer: Any
    task_id: int = 0
    recorders: list[Recorder] = field(default_factory=list)

    def publish(self, body: Any, queue: Queue | None = None, **options: Any) -> None:
        queue = queue or events_queue()
        self.producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            **options,
        )

    def publish_events(self, *events: Event, queue: Queue | None = None) -> None:
        self.publish(encode_batch(events), queue)

    def publish_json_text(self, document: Any) -> None:
        """JSON text as a non-Python sender writes it: escapes like \\u0000 and \\ud800 kept."""
        text = json.dumps(document, ensure_ascii=True)
        self.publish(text.encode(), content_type="application/json", content_encoding="utf-8")

    @contextmanager
    def recording(self) -> Iterator[Recorder]:
        recorder = Recorder(self.engine, self.settings, ManualClock(T0))
        stop = threading.Event()
        thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield recorder
        finally:
            stop.set()
            thread.join(timeout=15)
        assert not thread.is_alive()

    def rows(self, table: sa.Table) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table)))

    def task_row(self) -> sa.Row[Any]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.id == self.task_id)).one()

    def logs(self) -> list[str]:
        return sorted(r.content for r in self.rows(run_log))


@pytest.fixture
def world(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url())
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    with Connection(settings.broker_url) as conn:
        world = World(settings, engine, conn.Producer())
        world.task_id = dispatched_task(engine)
        yield world
    engine.dispose()


def dispatched_task(engine: Engine) -> int:
    groups.add_group(
        engine, GroupSpec(caption="g", job_name="j", interval_ms=1000, start_at=T0), T0
    )
    claimed = tasks.claim_due(engine, "n", T0, timedelta(seconds=1), timedelta(seconds=5))[0]
    with engine.begin() as conn:
        tasks.mark_dispatched(conn, claimed, "n", tasks.DispatchTarget(CLIENT, "h", "ip"), T0)
    return claimed.id


def beat(client_id: str, **values: Any) -> ClientHeartbeat:
    return ClientHeartbeat(
        client_id, "h", "127.0.0.1", 1, ("j",), client_queue(client_id), AT, **values
    )


def started_item(**changes: Any) -> dict[str, Any]:
    return to_dict(TaskStarted(1, 1, CLIENT, AT)) | changes


def log_item(task_id: int, content: str) -> dict[str, Any]:
    return to_dict(TaskLogged(task_id, 1, CLIENT, 1, 2, content, AT))


@dataclass(frozen=True)
class Poison:
    """A bad message. `inside` puts the bad item between good events of the same message."""

    name: str
    body: Any
    reason: str  # in the dead letter's reason
    raw: str  # in the dead letter's body
    inside: bool = False
    options: dict[str, Any] = field(default_factory=dict)


POISONS = [
    Poison(
        "not-json",
        b"not json {",
        "undecodable application/json body",
        "not json {",
        options={"content_type": "application/json", "content_encoding": "utf-8"},
    ),
    Poison(
        "not-accepted-content-type",
        b"\x80\x04K\x01.",
        "undecodable application/x-python-serialize body",
        "K",
        options={"content_type": "application/x-python-serialize", "content_encoding": "binary"},
    ),
    Poison("json-list", [started_item()], "events:", '"type": "started"'),
    Poison("no-events-list", {"v": 1, "events": "nope"}, "events:", '"nope"'),
    Poison(
        "time-out-of-range",
        started_item(at="0001-01-01T00:00:00+05:00"),
        "at: '0001-01-01T00:00:00+05:00' is outside years",
        "0001-01-01T00:00:00+05:00",
        inside=True,
    ),
    Poison(
        "task-id-above-int64",
        started_item(task_id=2**63),
        "task_id: out of range",
        str(2**63),
        inside=True,
    ),
    Poison(
        "attempt-above-int32",
        started_item(attempt=2**31),
        "attempt: out of range",
        str(2**31),
        inside=True,
    ),
    Poison(
        "pid-above-int32",
        to_dict(beat("c-bad")) | {"pid": 2**31},
        "pid: out of range",
        "c-bad",
        inside=True,
    ),
    Poison("not-an-object", 17, "event: must be an object", "17", inside=True),
    Poison("unknown-type", {"type": "exploded"}, "type: unknown event type", "exploded", True),
]


@pytest.mark.parametrize("poison", POISONS, ids=lambda p: p.name)
def test_given_a_poisoned_message_among_good_ones_then_only_the_bad_event_is_set_aside(
    world: World, poison: Poison
) -> None:
    # Given: a good message, the poison, and good messages after it (heartbeats included)
    world.publish_events(TaskStarted(world.task_id, 1, CLIENT, AT))
    if poison.inside:
        world.publish(
            {
                "v": 1,
                "events": [
                    log_item(world.task_id, "before, same message"),
                    poison.body,
                    log_item(world.task_id, "after, same message"),
                ],
            }
        )
    else:
        world.publish(poison.body, **poison.options)
    world.publish_events(
        TaskProgressed(world.task_id, 1, CLIENT, 40, AT), TaskLogged(world.task_id, 1, CLIENT,
                                                                     1, 2, "later", AT)
    )
    world.publish_events(beat("c-old-worker"))  # heartbeats of older workers: events queue
    world.publish_events(beat(CLIENT), queue=clients_queue())

    # When: the recorder runs
    with world.recording() as recorder:
        wait_for(
            lambda: "later" in world.logs() and len(world.rows(client)) == 2,
            timeout=15,
            what="the events after the poison",
        )
        wait_for(lambda: recorder.dead_letters == 1, timeout=5, what="the dead letter")

    # Then: every good event is recorded, the bad one is in dead_letter, nothing is left queued
    row = world.task_row()
    assert (row.status, row.progress) == (TaskStatus.WORKING, 40)
    expected_logs = ["later"]
    if poison.inside:
        expected_logs += ["after, same message", "before, same message"]
    assert world.logs() == sorted(expected_logs)
    assert sorted(r.id for r in world.rows(client)) == ["c-old-worker", CLIENT]
    (letter,) = world.rows(dead_letter)
    assert letter.queue == "fss.events"
    assert poison.reason in letter.reason
    assert poison.raw in letter.body
    broker = redis.Redis.from_url(world.settings.broker_url)
    try:
        assert broker.llen("fss.events") == 0
        assert broker.hlen("fss.events.unacked") == 0
    finally:
        broker.close()


def test_given_text_a_database_cannot_store_then_it_is_stored_with_replacements(
    world: World,
) -> None:
    # Given: a job that logs a NUL byte and a lone surrogate, and finishes with both in its
    # error text and data (a success: only a successful run saves its data), and a worker
    # whose host name has one
    nul_and_surrogate = "a\x00b\ud800c"
    stored = f"a{REPLACEMENT}b{REPLACEMENT}c"
    finished = to_dict(
        TaskFinished(world.task_id, 1, CLIENT, True, 3, AT, error=nul_and_surrogate,
                     data={nul_and_surrogate: [nul_and_surrogate]})
    )
    world.publish_json_text(
        {
            "v": 1,
            "events": [
                to_dict(TaskStarted(world.task_id, 1, CLIENT, AT)),
                log_item(world.task_id, nul_and_surrogate),
                finished,
                to_dict(beat("c-odd")) | {"host": nul_and_surrogate},
            ],
        }
    )

    # When
    with world.recording() as recorder:
        wait_for(lambda: world.task_row().status == TaskStatus.SUCCESS, timeout=15,
                 what="the run to be recorded")

    # Then: recorded with U+FFFD in place of what the database cannot store, nothing set aside
    assert recorder.dead_letters == 0
    assert world.rows(dead_letter) == []
    assert world.logs() == [stored]
    assert world.task_row().error == stored
    (group,) = world.rows(task_group)
    assert json.loads(group.data) == {stored: [stored]}
    (worker,) = world.rows(client)
    assert worker.host == stored


def test_given_an_event_the_database_refuses_then_only_it_is_set_aside(
    world: World, database_backend: str
) -> None:
    # Given: a database that refuses one log line (a stand-in for whatever a database may
    # refuse that validation let through), in a message between good events
    refuse_log_content(world.engine, database_backend, "refused")
    world.publish_events(TaskStarted(world.task_id, 1, CLIENT, AT))
    world.publish(
        {"v": 1, "events": [log_item(world.task_id, "first"), log_item(world.task_id, "refused"),
                            log_item(world.task_id, "third")]}
    )
    world.publish_events(TaskProgressed(world.task_id, 1, CLIENT, 40, AT))

    # When
    with world.recording() as recorder:
        wait_for(lambda: recorder.dead_letters == 1 and world.task_row().progress == 40,
                 timeout=15, what="the refused event set aside and the rest recorded")

    # Then
    assert world.logs() == ["first", "third"]
    assert world.task_row().status == TaskStatus.WORKING
    (letter,) = world.rows(dead_letter)
    assert letter.reason.startswith("the database refused it: ")
    assert json.loads(letter.body)["content"] == "refused"


def refuse_log_content(engine: Engine, backend: str, content: str) -> None:
    with engine.begin() as conn:
        if backend == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON run_log "
                f"WHEN NEW.content = '{content}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            conn.exec_driver_sql(
                f"ALTER TABLE run_log ADD CONSTRAINT refuse CHECK (content <> '{content}')"
            )


def test_given_poison_on_the_clients_queue_then_heartbeats_after_it_are_recorded(
    world: World,
) -> None:
    world.publish(b"\xff\xfe garbage", clients_queue(), content_type="application/json",
                  content_encoding="binary")
    world.publish({"v": 1, "events": [to_dict(beat("c2")) | {"pid": -(2**40)},
                                      to_dict(beat("c3"))]}, clients_queue())
    world.publish_events(beat(CLIENT), queue=clients_queue())

    with world.recording() as recorder:
        wait_for(lambda: len(world.rows(client)) == 2 and recorder.dead_letters == 2,
                 timeout=15, what="the heartbeats after the poison")

    assert sorted(r.id for r in world.rows(client)) == [CLIENT, "c3"]
    letters = world.rows(dead_letter)
    assert [r.queue for r in letters] == ["fss.clients", "fss.clients"]
    assert "\ufffd\ufffd garbage" in letters[0].body
    assert letters[1].reason.startswith("pid: out of range")
