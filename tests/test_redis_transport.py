"""fss's Redis transport: kombu's, with one redis-py client per channel. Real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis
from kombu import Connection
from kombu.simple import SimpleQueue

from fss.celery_app import REDIS_TRANSPORT, create_app, transport_for
from fss.config import Settings
from fss.redis_transport import Channel, Transport

QUEUE = "fss.test.transport"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", REDIS_TRANSPORT),
        ("rediss://h:6380/1", REDIS_TRANSPORT),
        ("redis://a:6379/0;redis://b:6379/0", REDIS_TRANSPORT),
        ("redis://a:6379/0;amqp://b//", None),
        ("amqp://guest@localhost//", None),
        ("memory://", None),
        ("sentinel://h:26379", None),
    ],
)
def test_only_redis_urls_get_the_fss_transport(url: str, expected: str | None) -> None:
    assert transport_for(url) == expected


def test_a_channel_reuses_one_client_for_every_call(fresh_redis_url: Callable[[], str]) -> None:
    url = fresh_redis_url()
    with Connection(url, transport=transport_for(url)) as conn:
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        given = redis.Redis.from_url(url)
        with channel.conn_or_acquire(given) as passed:
            assert passed is given
        given.close()


def test_messages_are_delivered_acked_and_restored_as_with_kombus_transport(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    with Connection(url, transport=transport_for(url)) as conn:
        queue = SimpleQueue(conn, QUEUE)
        for body in ("a", "b", "c"):
            queue.put(body)
        got = [queue.get(timeout=2) for _ in range(2)]
        assert [m.payload for m in got] == ["a", "b"]
        got[0].ack()  # "b" stays unacked: closing the channel must put it back
        queue.close()
    with Connection(url, transport=transport_for(url)) as conn:
        queue = SimpleQueue(conn, QUEUE)
        rest = []
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            rest.append(message.payload)
            message.ack()
        queue.close()
    assert sorted(rest) == ["b", "c"]
    client = redis.Redis.from_url(url)
    try:
        assert client.hlen("unacked") == 0
        assert client.zcard("unacked_index") == 0
    finally:
        client.close()


def test_the_celery_app_of_a_redis_broker_uses_it(fresh_redis_url: Callable[[], str]) -> None:
    url = fresh_redis_url()
    app = create_app(Settings(database_url="sqlite://", broker_url=url))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
    memory = create_app(Settings(database_url="sqlite://", broker_url="memory://"))
    with memory.connection_for_write() as conn:
        assert not isinstance(conn.transport, Transport)


ODD_BODY = {"text": "zażółć \"q\" \\ \u2028", "n": [1, 2.5, None]}


@pytest.mark.parametrize("body", [{"v": 1, "events": []}, ODD_BODY])
def test_push_json_puts_what_producer_publish_puts(
    fresh_redis_url: Callable[[], str], body: dict[str, object]
) -> None:
    """The worker's event publish skips kombu's Producer on Redis: the list item is the same
    envelope but for kombu's random delivery tag, and kombu's consumer reads it back."""
    url = fresh_redis_url()
    raw = redis.Redis.from_url(url)
    with Connection(url, transport=transport_for(url)) as conn:
        channel = conn.default_channel
        conn.Producer(channel).publish(
            body, exchange="", routing_key=QUEUE, serializer="json", delivery_mode=2
        )
        channel.push_json(QUEUE, json.dumps(body))
        by_producer, pushed = (json.loads(item) for item in reversed(raw.lrange(QUEUE, 0, -1)))
        for envelope in (by_producer, pushed):
            assert envelope["properties"].pop("delivery_tag")
        assert pushed == by_producer
        queue = SimpleQueue(conn, QUEUE)
        payloads = [queue.get(timeout=2).payload for _ in range(2)]
        queue.close()
    raw.close()
    assert payloads == [body, body]


def test_push_json_honours_a_global_key_prefix(fresh_redis_url: Callable[[], str]) -> None:
    url = fresh_redis_url()
    options = {"global_keyprefix": "tenant-a:"}
    raw = redis.Redis.from_url(url)
    with Connection(url, transport=transport_for(url), transport_options=options) as conn:
        conn.default_channel.push_json(QUEUE, json.dumps({"n": 1}))
        assert raw.llen(f"tenant-a:{QUEUE}") == 1
        queue = SimpleQueue(conn, QUEUE)
        assert queue.get(timeout=2).payload == {"n": 1}
        queue.close()
    raw.close()
