"""The durable queues between workers (or the gRPC bridge) and the schedulers.

Both sides declare them from here: the publishing side (bridge, worker SDK) and the
consuming side (the recorder in every scheduler), so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

from fss.naming import CLIENTS_QUEUE, EVENTS_QUEUE

# Unacked events of a killed recorder go back to the queue after 5 s (Redis). Replays are
# harmless, so this is short; the events keep their own unacked keys so the short timeout
# never touches Celery's messages on the same Redis.
EVENTS_REDIS_OPTIONS: dict[str, Any] = {
    "visibility_timeout": 5,
    "unacked_key": "fss.events.unacked",
    "unacked_index_key": "fss.events.unacked_index",
    "unacked_mutex_key": "fss.events.unacked_mutex",
    "unacked_restore_throttle": 25,
}


def _durable_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


def events_queue() -> Queue:
    """Task events: started, progress, log, finished."""
    return _durable_queue(EVENTS_QUEUE)


def clients_queue() -> Queue:
    """Client events: heartbeats (which double as registration) and unregistrations."""
    return _durable_queue(CLIENTS_QUEUE)
