"""Sends events to the recorder in batches over durable kombu queues.

Events are buffered and published by a background thread every few milliseconds (several
per message), which keeps the worker's cost per run near one publish; `flush()` publishes
synchronously, and the hooks call it when a run finishes so its events are on the broker
before Celery takes the next message. Task events go to the events queue, client events
(heartbeats, unregistrations) to the clients queue, so a backlog of the first never delays
the second.

While the broker is unreachable the buffer is kept and publishing is retried with backoff,
within bounds: past `max_buffer` task events, log and progress events are dropped (counted,
reported once per outage), while `started` and `finished` are always kept; progress is a
state: a run's newer progress replaces its older one still waiting in the buffer (so a run's
latest value is kept even when the buffer is full, and a short run's two updates leave as
one); heartbeats of a
client collapse to the latest; and once a flush has waited out its timeout, later flushes
return at once until the broker is back, so a run's end blocks once per outage, not per run.

The background thread publishes task events once the oldest has waited `flush_interval_s`
(so a long run's lines and progress still leave within about that), not whatever it finds
when it wakes: a short run's events then leave in one message with its `finished`, at the
flush of its end, instead of being split by a wake-up in the middle of the run (a second
publish, and a run's end waiting for the thread's publish to finish).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

from kombu.common import maybe_declare
from kombu.connection import Connection
from kombu.messaging import Producer
from kombu.utils.json import dumps as json_dumps

from fss.celery_app import broker_transport_options, transport_for
from fss.channels import clients_queue, events_queue
from fss.config import Settings
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskDataSaved,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    encode_batch,
)
from fss.naming import CLIENTS_QUEUE, EVENTS_QUEUE
from fss.outage import LoopErrors

log = logging.getLogger(__name__)

DEFAULT_MAX_BUFFER = 10_000
# One publish attempt must not hang a run's end: a short connect timeout, few retries.
CONNECT_TIMEOUT_S = 2.0
RETRY_POLICY = {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.3}
FAILOVER_OPTIONS = {"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2}
DROPPABLE = (TaskLogged, TaskProgressed)
# How far back a progress event looks for the one it replaces (the buffer's newest events).
SUPERSEDE_SCAN = 64


class EventBuffer:
    """Task events in order, bounded for the kinds that may be lost; client events apart,
    one heartbeat per client. Not thread-safe: the publisher holds its lock around it."""

    def __init__(self, max_task_events: int) -> None:
        self.max_task_events = max_task_events
        self.task_events: list[Event] = []
        self.client_events: list[Event] = []
        self.dropped = 0
        # How many of the first task events a publish has in hand (never changed under it).
        self.sending = 0
        # time.monotonic() when the oldest task event waiting here came in; None when none.
        self.waiting_since: float | None = None

    def __len__(self) -> int:
        return len(self.task_events) + len(self.client_events)

    def add(self, event: Event) -> bool:
        """False if `event` was dropped because the buffer is full."""
        if isinstance(event, ClientHeartbeat):
            self.client_events = [
                e
                for e in self.client_events
                if not (isinstance(e, ClientHeartbeat) and e.client_id == event.client_id)
            ]
            self.client_events.append(event)
        elif isinstance(event, ClientLeft):
            self.client_events.append(event)
        elif isinstance(event, TaskProgressed) and self._supersede(event):
            # Replaced the run's older waiting value: even a full buffer keeps the newest.
            self.task_events.append(event)
        elif isinstance(event, DROPPABLE) and len(self.task_events) >= self.max_task_events:
            self.dropped += 1
            return False
        else:
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()
            self.task_events.append(event)
        return True

    def sent_tasks(self, count: int) -> None:
        """Forget the first `count` task events once published."""
        del self.task_events[:count]
        if not self.task_events:
            self.waiting_since = None

    def _supersede(self, event: TaskProgressed) -> bool:
        """Progress is a state, not a history: a run's progress still waiting here (not yet
        in a publish's hands) is replaced by the newer one, so a job calling set_progress in a
        loop sends its latest value once per flush instead of every call."""
        key = (event.task_id, event.attempt, event.shard)
        events = self.task_events
        oldest = max(self.sending, len(events) - SUPERSEDE_SCAN)
        for index in range(len(events) - 1, oldest - 1, -1):
            old = events[index]
            if isinstance(old, TaskProgressed) and (old.task_id, old.attempt, old.shard) == key:
                del events[index]
                return True
        return False

    def sent_clients(self, sent: list[Event]) -> None:
        """Forget client events once published (by identity: the list may have changed)."""
        ids = {id(e) for e in sent}
        self.client_events = [e for e in self.client_events if id(e) not in ids]


TaskEvent = TaskStarted | TaskProgressed | TaskLogged | TaskDataSaved | TaskFinished
TASK_EVENTS = (TaskStarted, TaskProgressed, TaskLogged, TaskDataSaved, TaskFinished)


class EventPublisher:
    def __init__(
        self,
        broker_url: str,
        transport_options: dict[str, object] | None = None,
        flush_interval_s: float = 0.01,
        max_batch: int = 500,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self._url = broker_url
        self._transport_options = {**FAILOVER_OPTIONS, **(transport_options or {})}
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._buffer = EventBuffer(max_buffer)
        self._buffer_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopped = threading.Event()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._errors = LoopErrors(log, "events", "broker")
        # Set when a flush waited out its timeout; cleared by the next successful publish.
        self._gave_up = False
        # (task id, attempt) -> the installation whose order it is, for the runs under way
        # in this process: their events carry it (see run_of_installation).
        self._installations: dict[tuple[int, int], str] = {}

    def run_of_installation(self, task_id: int, attempt: int, installation: str) -> None:
        """Events of this run carry `installation` until its finished event goes out."""
        if installation:
            self._installations[(task_id, attempt)] = installation

    def _stamped(self, event: TaskEvent) -> TaskEvent:
        key = (event.task_id, event.attempt)
        installation = (
            self._installations.pop(key, "")
            if isinstance(event, TaskFinished)
            else self._installations.get(key, "")
        )
        if not installation or event.installation:
            return event
        return dataclasses.replace(event, installation=installation)

    @classmethod
    def for_settings(cls, settings: Settings) -> EventPublisher:
        """The publisher a worker process or a bridge uses, tuned by its settings."""
        return cls(
            settings.broker_url,
            broker_transport_options(settings),
            flush_interval_s=settings.event_flush_ms / 1000,
            max_batch=settings.event_batch,
            max_buffer=settings.event_buffer_max,
        )

    def emit(self, event: Event) -> None:
        self._ensure_thread()
        if self._installations and isinstance(event, TASK_EVENTS):
            event = self._stamped(event)
        with self._buffer_lock:
            kept = self._buffer.add(event)
            dropped = self._buffer.dropped
            full = len(self._buffer.task_events) >= self._max_batch
        if not kept and dropped == 1:
            log.warning(
                "event buffer full (%d events) while the broker is unreachable: log and "
                "progress events are dropped until it is back; started/finished are kept",
                self._max_buffer,
            )
        if full:
            self._wakeup.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Publish all buffered events now; False if the broker stayed unreachable.

        Waits at most once per outage: after one flush timed out, flushes return False at
        once (the background thread keeps retrying) until a publish succeeds."""
        if self._gave_up:
            self._wakeup.set()
            return False
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._publish_pending()
                return True
            except Exception as exc:  # broker down: keep the events, retry until the deadline
                self._reset_connection()
                if time.monotonic() >= deadline:
                    self._errors.failed(exc, "events are kept and sent when it is back")
                    self._gave_up = True
                    return False
                time.sleep(0.2)

    def close(self) -> None:
        self._stopped.set()
        self._wakeup.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        # One last try at shutdown; a single attempt if a flush already waited this outage.
        timeout_s = 0.0 if self._gave_up else 5.0
        self._gave_up = False
        self.flush(timeout_s=timeout_s)
        self._reset_connection()

    def pending(self) -> int:
        with self._buffer_lock:
            return len(self._buffer)

    @property
    def dropped(self) -> int:
        """Log and progress events dropped since the last report of the count."""
        with self._buffer_lock:
            return self._buffer.dropped

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:
            # Forked child: the parent's connection and thread are not ours.
            self._pid = os.getpid()
            self._connection = None
            self._producer = None
            self._thread = None
            self._gave_up = False
            self._buffer_lock = threading.Lock()
            self._send_lock = threading.Lock()
            self._buffer = EventBuffer(self._max_buffer)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="fss-event-publisher", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        timeout = self._flush_interval_s
        while not self._stopped.is_set():
            woken = self._wakeup.wait(timeout)
            self._wakeup.clear()
            if not woken:
                # Only what waited the interval: a short run's end flushes its own events.
                timeout = self._due_in()
                if timeout > 0:
                    continue
            timeout = self._flush_interval_s
            try:
                self._publish_pending()
                backoff = 0.1
            except Exception as exc:
                self._errors.failed(exc, "events are kept and sent when it is back")
                self._reset_connection()
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _due_in(self) -> float:
        """Seconds until the buffer's oldest task event has waited the flush interval (0 if it
        has, or client events wait); the interval itself when nothing waits."""
        with self._buffer_lock:
            if self._buffer.client_events:
                return 0.0
            since = self._buffer.waiting_since
        if since is None:
            return self._flush_interval_s
        # At least a millisecond: an Event.wait shorter than that costs more than it saves.
        due = since + self._flush_interval_s - time.monotonic()
        return max(due, 0.001) if due > 0 else 0.0

    def _publish_pending(self) -> None:
        with self._send_lock:
            self._publish_clients()
            while True:
                with self._buffer_lock:
                    batch = self._buffer.task_events[: self._max_batch]
                    self._buffer.sending = len(batch)
                if not batch:
                    break
                try:
                    self._publish(batch, EVENTS_QUEUE)
                    with self._buffer_lock:
                        self._buffer.sent_tasks(len(batch))
                finally:
                    with self._buffer_lock:
                        self._buffer.sending = 0
            self._published()

    def _publish_clients(self) -> None:
        with self._buffer_lock:
            batch = list(self._buffer.client_events)
        if batch:
            self._publish(batch, CLIENTS_QUEUE)
            with self._buffer_lock:
                self._buffer.sent_clients(batch)

    def _published(self) -> None:
        """Everything buffered is out: the broker is back, if it was gone."""
        self._gave_up = False
        self._errors.succeeded()
        with self._buffer_lock:
            dropped, self._buffer.dropped = self._buffer.dropped, 0
        if dropped:
            log.warning("broker is back: %d log/progress events were dropped meanwhile", dropped)

    def _publish(self, batch: list[Event], queue_name: str) -> None:
        # No kombu retry and no declare here: flush() and the background loop retry on a new
        # connection, and the queues are declared once per connection (_producer_for_process).
        producer = self._producer_for_process()
        # fss.redis_transport's channel: one LPUSH of kombu's envelope (not imported here, as
        # kombu's Redis transport needs packages checked at start).
        push_json = getattr(producer.channel, "push_json", None)
        if callable(push_json):
            push_json(queue_name, json_dumps(encode_batch(batch)))
            return
        producer.publish(
            encode_batch(batch),
            # The default exchange routes by queue name: no binding lookup per publish.
            exchange="",
            routing_key=queue_name,
            serializer="json",
            delivery_mode=2,
        )

    def _producer_for_process(self) -> Producer:
        # kombu closes a channel whose connection failed (its `connection` is then None),
        # sometimes under a producer that did not raise: build a new one then.
        if self._producer is not None and self._producer.connection is None:
            self._reset_connection_locked()
        if self._producer is None:
            self._connection = Connection(
                self._url,
                transport=transport_for(self._url),
                transport_options=self._transport_options,
                connect_timeout=CONNECT_TIMEOUT_S,
            )
            channel = self._connection.default_channel
            for queue in (events_queue(), clients_queue()):
                maybe_declare(queue, channel, retry=True, **RETRY_POLICY)
            self._producer = Producer(channel)
        return self._producer

    def _reset_connection(self) -> None:
        with self._send_lock:
            self._reset_connection_locked()

    def _reset_connection_locked(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:
                log.debug("error closing event connection", exc_info=True)

