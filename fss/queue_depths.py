"""How many messages wait in broker queues (the event queues, each client's queue), and
deleting the queue of a client that is gone.

Read through kombu's passive queue declaration, which every transport fss supports answers
with a message count (Redis: the list's length; AMQP: the broker's count), so the web UI
and /metrics need no transport-specific code. A queue that does not exist counts 0; a
broker that cannot be reached gives None for every queue, never an exception, and says why
(`problem`). Every call is bounded: one connection attempt (no kombu retry interval, which
made each page view wait 2 s), short connect and socket timeouts, and a failure is held for
FAILURE_HOLD_S, so the page views and scrapes of that time answer at once without asking.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from fss.outage import is_connection_error

# A page view waits at most this for a broker that does not answer (a host that drops packets);
# a refused connection fails at once.
CONNECT_TIMEOUT_S = 0.5
# After a failed attempt, nobody asks the broker again for this long.
FAILURE_HOLD_S = 5.0
_CREDENTIALS = re.compile(r"(//[^/@\s]*:)[^/@\s]*@")


class QueueDepths:
    """Counts per queue name, cached for `max_age_s` so many page views make one round."""

    def __init__(
        self,
        broker_url: str,
        max_age_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        failure_hold_s: float = FAILURE_HOLD_S,
    ) -> None:
        self._broker_url = broker_url
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._failure_hold_s = failure_hold_s
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._cache: dict[str, tuple[float, int | None]] = {}
        self._problem: str | None = None
        self._failed_at = float("-inf")
        # Connections opened (or tried): what the tests count.
        self.connect_attempts = 0

    @property
    def problem(self) -> str | None:
        """Why the broker could not be asked, from the newest attempt; None once it answers."""
        return self._problem

    def state(self) -> dict[str, object]:
        """What the pages show about the broker: `{"reachable": false, "error": "..."}`."""
        problem = self._problem
        return {"reachable": problem is None, "error": problem}

    def depths(self, names: Iterable[str]) -> dict[str, int | None]:
        wanted = sorted(set(names))
        now = self._monotonic()
        with self._lock:
            if self._problem is not None and now - self._failed_at < self._failure_hold_s:
                return dict.fromkeys(wanted)  # unknown: it failed a moment ago
            stale = [n for n in wanted if now - self._read_at(n) > self._max_age_s]
            if stale:
                for name, count in self._count(stale, now).items():
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

    def _count(self, names: list[str], now: float) -> dict[str, int | None]:
        had_connection = self._connection is not None
        try:
            counts: dict[str, int | None] = {
                name: self._message_count(self._channel(), name) for name in names
            }
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self._drop_connection()
            if had_connection:
                # The kept connection may have died with a broker restart: one try on a new
                # one before calling the broker unreachable.
                return self._count(names, now)
            self._problem, self._failed_at = describe(exc), now
            return dict.fromkeys(names)
        self._problem = None
        return counts

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
            self.connect_attempts += 1
            self._connection = Connection(
                self._broker_url, connect_timeout=CONNECT_TIMEOUT_S,
                transport_options={
                    "socket_timeout": CONNECT_TIMEOUT_S,
                    "socket_connect_timeout": CONNECT_TIMEOUT_S,
                },
            )
            # One attempt: with max_retries=1 kombu slept its 2 s retry interval first.
            self._connection.ensure_connection(max_retries=0)
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


def describe(exc: BaseException) -> str:
    """The first line of the error, without a password a URL in it may carry."""
    lines = str(exc).strip().splitlines()
    return _CREDENTIALS.sub(r"\1***@", lines[0] if lines else type(exc).__name__)


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
