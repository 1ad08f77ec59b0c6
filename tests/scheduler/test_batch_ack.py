"""The recorder acks a batch of event messages in one Redis round trip (ack_all), and what
it did not ack still comes back: real Redis, real kombu consumer, no mocks."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from fss.channels import EVENTS_REDIS_OPTIONS, events_queue
from fss.naming import EVENTS_QUEUE
from fss.scheduler.recorder import _redis_qos, ack_all, restore_stale


@pytest.fixture
def url(fresh_redis_url: Callable[[], str]) -> str:
    return fresh_redis_url()


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    yield client
    client.close()


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
