"""How many messages wait in broker queues (the event queues, each client's queue), and
deleting the queue of a client that is gone.

Read through kombu's passive queue declaration, which every transport fss supports answers
with a message count (Redis: the list's length; AMQP: the broker's count), so the web UI
and /metrics need no transport-specific code. A queue that does not exist counts 0; a
broker that cannot be reached gives None for every queue, never an exception.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from fss.outage import is_connection_error

CONNECT_TIMEOUT_S = 2.0


class QueueDepths:
    """Counts per queue name, cached for `max_age_s` so many page views make one round."""

    def __init__(
        self,
        broker_url: str,
        max_age_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broker_url = broker_url
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._cache: dict[str, tuple[float, int | None]] = {}

    def depths(self, names: Iterable[str]) -> dict[str, int | None]:
        wanted = sorted(set(names))
        now = self._monotonic()
        with self._lock:
            stale = [n for n in wanted if now - self._read_at(n) > self._max_age_s]
            if stale:
                for name, count in self._count(stale).items():
                    self._cache[name] = (now, count)
            return {name: self._cache[name][1] for name in wanted}

    def _read_at(self, name: str) -> float:
        cached = self._cache.get(name)
        return cached[0] if cached else float("-inf")

    def depth(self, name: str) -> int | None:
        return self.depths([name])[name]

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _count(self, names: list[str]) -> dict[str, int | None]:
        try:
            return {name: self._message_count(self._channel(), name) for name in names}
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self._drop_connection()
            return dict.fromkeys(names)

    def _message_count(self, channel: Any, name: str) -> int:
        try:
            declared = channel.queue_declare(queue=name, passive=True)
        except Exception as exc:
            if is_connection_error(exc):
                raise
            # AMQP closes the channel on a passive declare of a missing queue: open a new one.
            self._drop_channel()
            return 0
        return int(declared.message_count)

    def _channel(self) -> Any:
        if self._connection is None:
            self._connection = Connection(
                self._broker_url, connect_timeout=CONNECT_TIMEOUT_S,
                transport_options={"socket_timeout": CONNECT_TIMEOUT_S},
            )
            self._connection.ensure_connection(max_retries=1)
        return self._connection.default_channel

    def _drop_channel(self) -> None:
        if self._connection is not None:
            self._connection.release()
            self._connection = None

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to release
                self._connection.release()
            self._connection = None


def delete_queues(connection: Connection, names: Iterable[str]) -> None:
    """Delete each queue with the messages in it. Each is declared first, the way its
    senders and consumers declare a client queue: kombu's Redis transport deletes only what
    its channel knows is bound, and then takes the lists and the `_kombu.binding.*` entry
    together (on AMQP the declare is a no-op for a queue that exists)."""
    with connection:
        channel = connection.default_channel
        for name in names:
            queue = Queue(
                name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True
            )(channel)
            queue.declare()
            queue.delete()
