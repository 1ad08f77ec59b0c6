"""When the publisher's background thread publishes: task events once the oldest has waited
the flush interval, not whatever it finds when it wakes. A short run's events then leave in
one message with its `finished` (the flush of its end); a long run's still leave on their
own within about the interval. Real Redis; the thread keeps real time, so the checks only
ever wait for something the thread must do, or look before it may do it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone

import redis

from fss.bridge.publisher import EventPublisher
from fss.events import Event, TaskFinished, TaskLogged, TaskStarted, decode_batch
from fss.naming import EVENTS_QUEUE

AT = datetime(2026, 5, 1, 7, 0, 0, tzinfo=timezone.utc)
INTERVAL_S = 1.0


def messages(redis_url: str) -> list[list[Event]]:
    """The events queue's messages, oldest first, each as its events (left on the queue)."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lrange(EVENTS_QUEUE, 0, -1)
    finally:
        client.close()
    batches = []
    for item in reversed(raw):  # kombu LPUSHes and its consumer RPOPs
        envelope = json.loads(item)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        batches.append(decode_batch(json.loads(body)))
    return batches


def test_a_short_run_s_events_leave_in_one_message_with_its_finished(
    fresh_redis_url: Callable[[], str],
) -> None:
    redis_url = fresh_redis_url()
    publisher = EventPublisher(redis_url, flush_interval_s=INTERVAL_S)
    try:
        # A first run: starts the thread, whose wake-ups then come every INTERVAL_S from now.
        publisher.emit(TaskFinished(1, 1, "c", True, 1, AT))
        assert publisher.flush(timeout_s=5)
        thread_started = time.monotonic()
        time.sleep(INTERVAL_S / 2)
        # The second run starts half-way to the thread's next wake-up ...
        publisher.emit(TaskStarted(2, 1, "c", AT))
        publisher.emit(TaskLogged(2, 1, "c", 1, 2, "a line", AT, seq=1))
        emitted = time.monotonic()
        # ... and is still running when the thread wakes (before: it published them then).
        while time.monotonic() < thread_started + INTERVAL_S * 1.3:
            if time.monotonic() - emitted >= INTERVAL_S * 0.8:
                break
            time.sleep(0.02)
        waiting_for = time.monotonic() - emitted
        published = messages(redis_url)
        if waiting_for < INTERVAL_S * 0.9:  # always, unless this host stalled for 0.1 s
            assert len(published) == 1, f"published after {waiting_for:.2f} s: {published}"
        publisher.emit(TaskFinished(2, 1, "c", True, 1, AT))
        assert publisher.flush(timeout_s=5)
    finally:
        publisher.close()
    published = messages(redis_url)
    assert [[type(e).__name__ for e in batch] for batch in published] == [
        ["TaskFinished"],
        ["TaskStarted", "TaskLogged", "TaskFinished"],
    ]


def test_a_long_run_s_events_leave_without_a_flush_within_about_the_interval(
    fresh_redis_url: Callable[[], str],
) -> None:
    redis_url = fresh_redis_url()
    publisher = EventPublisher(redis_url, flush_interval_s=0.2)
    try:
        publisher.emit(TaskFinished(1, 1, "c", True, 1, AT))
        assert publisher.flush(timeout_s=5)
        time.sleep(0.05)
        publisher.emit(TaskStarted(2, 1, "c", AT))
        emitted = time.monotonic()
        deadline = emitted + 10
        while len(messages(redis_url)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        took = time.monotonic() - emitted
        published = messages(redis_url)
        assert [type(e).__name__ for e in published[-1]] == ["TaskStarted"]
        # Not before it waited the interval (the thread would have woken at 0.15 s) ...
        assert took >= 0.19, took
        # ... and not much after it (generous: this host runs other tests meanwhile).
        assert took < 2.0, took
    finally:
        publisher.close()
