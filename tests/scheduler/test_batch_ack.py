"""The recorder takes the event messages already waiting in one Redis round trip
(WaitingTaker) and acks a batch in one (ack_all), and what it did not ack still comes back,
exactly once: real Redis, real kombu consumer, no mocks."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import redis
from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from fss.channels import EVENTS_REDIS_OPTIONS, events_queue
from fss.config import Settings
from fss.naming import EVENTS_QUEUE
from fss.scheduler.recorder import (
    RESTORE_MUTEX_EXPIRE_S,
    UNREADABLE_KEPT_BYTES,
    Unreadable,
    WaitingTaker,
    _redis_qos,
    ack_all,
    events_transport_options,
    restore_stale,
)


def _publish(url: str, bodies: list[str]) -> None:
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        producer = Producer(conn.default_channel)
        for body in bodies:
            producer.publish(body, exchange="", routing_key=EVENTS_QUEUE,
                             declare=[events_queue()], serializer="json")


def _receive(conn: Connection, count: int, tries: int = 50) -> list[Message]:
    got: list[Message] = []
    channel = conn.channel()
    consumer = Consumer(channel, queues=[events_queue()], on_message=got.append,
                        accept=["json"])
    consumer.consume()
    for _ in range(tries):
        if len(got) >= count:
            break
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.1)
    return got


def _unacked(raw: redis.Redis) -> tuple[int, int]:
    return (raw.hlen(EVENTS_REDIS_OPTIONS["unacked_key"]),
            raw.zcard(EVENTS_REDIS_OPTIONS["unacked_index_key"]))


def test_a_batch_is_acked_at_once_and_never_comes_back(url: str, raw: redis.Redis) -> None:
    _publish(url, ["a", "b", "c"])
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        messages = _receive(conn, 3)
        assert [m.decode() for m in messages] == ["a", "b", "c"]
        assert _unacked(raw) == (3, 3)
        assert _redis_qos(messages) is not None  # the one-pipeline path, not the fallback

        ack_all(messages)

        assert _unacked(raw) == (0, 0)
        assert all(m.acknowledged for m in messages)
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        assert _receive(conn, 1, tries=3) == []  # nothing restored: they were acked


def test_what_was_not_acked_is_delivered_again(url: str, raw: redis.Redis) -> None:
    _publish(url, ["a", "b", "c"])
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        messages = _receive(conn, 3)
        ack_all(messages[:2])
        assert _unacked(raw) == (1, 1)
    # The connection closed with "c" unacked: kombu puts it back on the queue.
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        again = _receive(conn, 1)
        assert [m.decode() for m in again] == ["c"]
        ack_all(again)  # one message: the plain ack
        assert _unacked(raw) == (0, 0)


KILLED_CONSUMER = """
import sys, time
from kombu.connection import Connection
from kombu.messaging import Consumer
from fss.channels import EVENTS_REDIS_OPTIONS, events_queue
from fss.config import Settings
got = []
with Connection(sys.argv[1], transport_options=EVENTS_REDIS_OPTIONS) as conn:
    Consumer(conn.channel(), queues=[events_queue()], on_message=got.append,
             accept=["json"]).consume()
    while not got:
        try:
            conn.drain_events(timeout=0.1)
        except TimeoutError:
            pass
    print("holding", flush=True)
    time.sleep(60)  # killed here, the message unacked
"""


def test_what_a_killed_consumer_held_is_put_back_although_the_queue_is_never_idle(
    url: str, raw: redis.Redis
) -> None:
    """kombu's Redis transport restores a dead consumer's messages only when a poll comes back
    empty: on a busy events queue a killed scheduler's `finished` event stayed out for
    minutes. restore_stale, which the recorder calls every second, puts it back."""
    _publish(url, ["held"])
    consumer = subprocess.Popen([sys.executable, "-c", KILLED_CONSUMER, url],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert consumer.stdout is not None and consumer.stdout.readline() == "holding\n"
    finally:
        consumer.kill()
        consumer.wait(timeout=10)
    assert _unacked(raw) == (1, 1)
    options = dict(EVENTS_REDIS_OPTIONS, visibility_timeout=1)
    with Connection(url, transport_options=options) as conn:
        channel = conn.channel()
        deadline = time.monotonic() + 10
        while raw.llen(EVENTS_QUEUE) == 0 and time.monotonic() < deadline:
            restore_stale(channel)
            time.sleep(0.2)
        assert raw.llen(EVENTS_QUEUE) == 1
        assert _unacked(raw) == (0, 0)


def _take_after_one(conn: Connection, limit: int, prefetch: int = 0) -> tuple[list[Message], int]:
    """One message the ordinary way (BRPOP), then up to `limit` more in one round trip."""
    got: list[Message] = []
    channel = conn.channel()
    if prefetch:
        channel.basic_qos(0, prefetch, False)
    consumer = Consumer(channel, queues=[events_queue()], on_message=got.append,
                        accept=["json"])
    consumer.consume()
    for _ in range(50):
        if got:
            break
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.1)
    taker = WaitingTaker(channel, consumer, EVENTS_QUEUE)
    assert taker.enabled  # the one-round-trip path, not the fallback
    return got, taker.take(limit)


BODIES = [f"m{i}" for i in range(10)]


def test_waiting_messages_are_taken_at_once_and_recorded_as_unacked(
    url: str, raw: redis.Redis
) -> None:
    _publish(url, BODIES)
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        messages, taken = _take_after_one(conn, limit=20)

        assert taken == 9 and [m.decode() for m in messages] == BODIES  # in queue order
        assert raw.llen(EVENTS_QUEUE) == 0 and _unacked(raw) == (10, 10)
        ack_all(messages)
        assert _unacked(raw) == (0, 0)
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        assert _receive(conn, 1, tries=3) == []  # acked: nothing comes back


def test_taking_stops_at_the_limit_and_the_prefetch_count(url: str, raw: redis.Redis) -> None:
    _publish(url, BODIES)
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        assert _take_after_one(conn, limit=3)[1] == 3
        assert raw.llen(EVENTS_QUEUE) == 6
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        messages, taken = _take_after_one(conn, limit=20, prefetch=4)
        assert taken == 3 and len(messages) == 4  # prefetch 4: one delivered + 3 taken


def test_an_item_that_is_no_kombu_message_is_taken_and_handed_over_apart(
    url: str, raw: redis.Redis
) -> None:
    """A foreign item at the tail used to stay in the queue 'for kombu's ordinary path', a
    path the recorder no longer takes: every later take returned nothing and the queue
    stopped for good. It is taken now, unacked like any message, and handed over apart with
    its raw bytes; what lies behind it flows."""
    raw.lpush(EVENTS_QUEUE, b"not a kombu message")
    _publish(url, ["a", "b", "c"])  # behind the foreign item
    unreadable: list[tuple[Message, Exception]] = []
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        got: list[Message] = []
        channel = conn.channel()
        consumer = Consumer(channel, queues=[events_queue()], on_message=got.append,
                            accept=["json"])
        taker = WaitingTaker(channel, consumer, EVENTS_QUEUE,
                             on_unreadable=lambda m, e: unreadable.append((m, e)))
        assert taker.take(20) == 4
        assert [m.decode() for m in got] == ["a", "b", "c"]
        [(message, error)] = unreadable
        assert isinstance(error, Unreadable) and error.raw == b"not a kombu message"
        assert "not JSON" in error.reason
        assert raw.llen(EVENTS_QUEUE) == 0 and _unacked(raw) == (4, 4)
        ack_all([*got, message])
        assert _unacked(raw) == (0, 0)


def test_taken_messages_not_acked_come_back_exactly_once_when_the_channel_closes(
    url: str, raw: redis.Redis
) -> None:
    _publish(url, BODIES)
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        messages, _ = _take_after_one(conn, limit=20)
        ack_all(messages[:3])
    assert raw.llen(EVENTS_QUEUE) == 7 and _unacked(raw) == (0, 0)
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        again = _receive(conn, 7)
        assert sorted(m.decode() for m in again) == BODIES[3:]
        ack_all(again)
    assert raw.llen(EVENTS_QUEUE) == 0 and _unacked(raw) == (0, 0)


KILLED_TAKER = """
import contextlib, sys, time
from kombu.connection import Connection
from kombu.messaging import Consumer
from fss.channels import EVENTS_REDIS_OPTIONS, events_queue
from fss.config import Settings
from fss.naming import EVENTS_QUEUE
from fss.scheduler.recorder import WaitingTaker
got = []
with Connection(sys.argv[1], transport_options=EVENTS_REDIS_OPTIONS) as conn:
    channel = conn.channel()
    consumer = Consumer(channel, queues=[events_queue()], on_message=got.append,
                        accept=["json"])
    consumer.consume()
    while not got:
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.1)
    WaitingTaker(channel, consumer, EVENTS_QUEUE).take(100)
    print("holding", len(got), flush=True)
    time.sleep(60)  # killed here, every message unacked
"""


def test_what_a_killed_consumer_took_comes_back_exactly_once(url: str, raw: redis.Redis) -> None:
    """kill -9 of a recorder holding a batch it took: every message is in kombu's unacked
    hash and index, and the sweep (restore_stale) puts each back once."""
    _publish(url, BODIES)
    consumer = subprocess.Popen([sys.executable, "-c", KILLED_TAKER, url],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert consumer.stdout is not None and consumer.stdout.readline() == "holding 10\n"
    finally:
        consumer.kill()
        consumer.wait(timeout=10)
    assert raw.llen(EVENTS_QUEUE) == 0 and _unacked(raw) == (10, 10)
    options = dict(EVENTS_REDIS_OPTIONS, visibility_timeout=1)
    with Connection(url, transport_options=options) as conn:
        channel = conn.channel()
        deadline = time.monotonic() + 10
        while raw.llen(EVENTS_QUEUE) < 10 and time.monotonic() < deadline:
            restore_stale(channel)
            time.sleep(0.2)
        restore_stale(channel)  # once more: nothing is left to put back twice
    assert raw.llen(EVENTS_QUEUE) == 10 and _unacked(raw) == (0, 0)
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        again = _receive(conn, 10)
        assert sorted(m.decode() for m in again) == BODIES
        ack_all(again)
    assert raw.llen(EVENTS_QUEUE) == 0 and _unacked(raw) == (0, 0)


def test_a_restore_mutex_left_by_a_killed_recorder_blocks_restores_for_seconds_only(
    url: str, raw: redis.Redis
) -> None:
    """kombu's restore mutex expires after 300 s by default: a recorder killed holding it
    blocked every restore for 5 minutes. The recorder's consumers hold it a few seconds."""
    _publish(url, BODIES[:2])
    consumer = subprocess.Popen([sys.executable, "-c", KILLED_TAKER, url],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert consumer.stdout is not None and consumer.stdout.readline() == "holding 2\n"
    finally:
        consumer.kill()
        consumer.wait(timeout=10)
    options = events_transport_options(Settings(broker_url=url))
    with Connection(url, transport_options=dict(options, visibility_timeout=1)) as conn:
        channel = conn.channel()
        # A recorder killed inside its sweep: the mutex taken, never released.
        held = channel.client.lock(options["unacked_mutex_key"],
                                   timeout=channel.qos.unacked_mutex_expire)
        assert held.acquire(blocking=False)
        begun = time.monotonic()
        while raw.llen(EVENTS_QUEUE) < 2 and time.monotonic() - begun < 15:
            restore_stale(channel)
            time.sleep(0.2)
        assert raw.llen(EVENTS_QUEUE) == 2 and _unacked(raw) == (0, 0)
        assert time.monotonic() - begun <= RESTORE_MUTEX_EXPIRE_S + 1.5


def test_a_huge_unreadable_item_is_cut_and_never_holds_redis_for_seconds(
    url: str, raw: redis.Redis
) -> None:
    """Redis runs nothing else while the take runs. Its hex encoding (a Lua call per byte)
    held Redis 10 s for a 30 MB item: every worker got BUSY (one died of it) and the
    recorder, its take past the visibility timeout, took the item again. The dead letter now
    keeps the first UNREADABLE_KEPT_BYTES and says how long the item was."""
    def envelope(tag: str, body: str, headers: dict[str, str]) -> bytes:
        return json.dumps({
            "body": body, "content-type": "application/json", "content-encoding": "utf-8",
            "headers": headers, "properties": {
                "delivery_tag": tag, "body_encoding": "base64",
                "delivery_info": {"exchange": "", "routing_key": EVENTS_QUEUE}}},
            ensure_ascii=False).encode()

    ascii_junk = b"x" * (16 * 1024 * 1024)  # not JSON
    # An envelope, but long and not ASCII, as no fss envelope is (kombu writes ensure_ascii):
    accented = envelope("t-1", "ImEi", {"x": "é" * (3 * 1024 * 1024)})
    # Passes the script; kombu fails on its body:
    bad_base64 = envelope("t-2", "a" * (2 * 1024 * 1024 + 1), {})
    small_accented = envelope("t-3", "ImEi", {"x": "é ∑ 😀"})  # UTF-8 checked: readable
    for item in (ascii_junk, accented, bad_base64, small_accented):
        raw.lpush(EVENTS_QUEUE, item)
    _publish(url, ["b"])  # behind them
    unreadable: list[tuple[Message, Exception]] = []
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        got: list[Message] = []
        channel = conn.channel()
        consumer = Consumer(channel, queues=[events_queue()], on_message=got.append,
                            accept=["json"])
        taker = WaitingTaker(channel, consumer, EVENTS_QUEUE,
                             on_unreadable=lambda m, e: unreadable.append((m, e)))
        begun = time.monotonic()
        assert taker.take(20) == 5
        took = time.monotonic() - begun
        assert [m.decode() for m in got] == ["a", "b"]
        errors = [e for _, e in unreadable]
        assert all(isinstance(e, Unreadable) for e in errors)
        for item, error in zip((ascii_junk, accented, bad_base64), errors, strict=True):
            assert isinstance(error, Unreadable)
            assert error.raw == item[:UNREADABLE_KEPT_BYTES]
            assert f"({len(item)} bytes, the first {UNREADABLE_KEPT_BYTES} kept)" in error.reason
        assert "long and not ASCII" in str(errors[1])
        entries = raw.hvals(EVENTS_REDIS_OPTIONS["unacked_key"])
        assert len(entries) == 5 and max(map(len, entries)) < 3 * UNREADABLE_KEPT_BYTES
        assert took < 1.5, f"the take held Redis {took:.1f} s"  # 20+ s before
        ack_all([*got, *(m for m, _ in unreadable)])
    assert raw.llen(EVENTS_QUEUE) == 0 and _unacked(raw) == (0, 0)
