"""Queue depths read from a real Redis broker (and kombu's in-process one)."""

from __future__ import annotations

from collections.abc import Callable

from kombu import Connection

from fss.channels import events_queue
from fss.naming import EVENTS_QUEUE
from fss.queue_depths import QueueDepths


def publish(url: str, count: int) -> None:
    queue = events_queue()
    with Connection(url) as conn:
        producer = conn.Producer()
        for n in range(count):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=queue.routing_key,
                             declare=[queue])


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_given_messages_waiting_then_their_count_and_0_for_a_missing_queue(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    publish(url, 3)
    depths = QueueDepths(url, max_age_s=0)

    assert depths.depths([EVENTS_QUEUE, "fss.client.nobody"]) == {
        EVENTS_QUEUE: 3, "fss.client.nobody": 0,
    }
    depths.close()


def test_given_a_fresh_count_then_it_is_reused_until_max_age(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    ticks = Ticks()
    depths = QueueDepths(url, max_age_s=1.0, monotonic=ticks)
    assert depths.depth(EVENTS_QUEUE) == 0

    publish(url, 2)
    ticks.now += 0.5
    cached = depths.depth(EVENTS_QUEUE)
    ticks.now += 0.6
    fresh = depths.depth(EVENTS_QUEUE)

    assert (cached, fresh) == (0, 2)
    depths.close()


def test_given_an_unreachable_broker_then_none_not_an_exception() -> None:
    depths = QueueDepths("redis://127.0.0.1:1/0", max_age_s=0)

    assert depths.depths([EVENTS_QUEUE, "other"]) == {EVENTS_QUEUE: None, "other": None}


def test_given_the_in_process_broker_then_its_queues_are_counted() -> None:
    # kombu's memory transport is one store per process, whatever the URL: leave it empty.
    url = "memory://"
    publish(url, 4)
    try:
        assert QueueDepths(url, max_age_s=0).depth(EVENTS_QUEUE) == 4
    finally:
        with Connection(url) as conn:
            events_queue()(conn.default_channel).purge()
