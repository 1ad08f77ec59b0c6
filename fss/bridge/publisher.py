"""Sends events to the recorder in batches over a durable kombu queue.

Events are buffered and published by a background thread every few milliseconds (several
per message), which keeps the worker's cost per run near one publish; `flush()` publishes
synchronously, and the hooks call it when a run finishes so its events are on the broker
before Celery takes the next message. While the broker is unreachable the buffer is kept
and publishing is retried with backoff.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from kombu.connection import Connection
from kombu.messaging import Producer

from fss.channels import events_queue
from fss.events import Event, encode_batch
from fss.naming import EVENTS_QUEUE
from fss.outage import OutageLog

log = logging.getLogger(__name__)

class EventPublisher:
    def __init__(
        self,
        broker_url: str,
        transport_options: dict[str, object] | None = None,
        flush_interval_s: float = 0.01,
        max_batch: int = 500,
    ) -> None:
        self._url = broker_url
        self._transport_options = transport_options or {}
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._buffer: list[Event] = []
        self._buffer_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopped = threading.Event()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._outage = OutageLog(log, "broker (events)")

    def emit(self, event: Event) -> None:
        self._ensure_thread()
        with self._buffer_lock:
            self._buffer.append(event)
            full = len(self._buffer) >= self._max_batch
        if full:
            self._wakeup.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Publish all buffered events now; False if the broker stayed unreachable."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._publish_pending()
                self._outage.recovered()
                return True
            except Exception as exc:  # broker down: keep the events, retry until the deadline
                if time.monotonic() >= deadline:
                    self._outage.failed(exc, "events are kept and sent when it is back")
                    return False
                self._reset_connection()
                time.sleep(0.2)

    def close(self) -> None:
        self._stopped.set()
        self._wakeup.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush(timeout_s=5)
        self._reset_connection()

    def pending(self) -> int:
        with self._buffer_lock:
            return len(self._buffer)

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:
            # Forked child: the parent's connection and thread are not ours.
            self._pid = os.getpid()
            self._connection = None
            self._producer = None
            self._thread = None
            self._buffer_lock = threading.Lock()
            self._send_lock = threading.Lock()
            with self._buffer_lock:
                self._buffer = []
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="fss-event-publisher", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopped.is_set():
            self._wakeup.wait(self._flush_interval_s)
            self._wakeup.clear()
            try:
                self._publish_pending()
                self._outage.recovered()
                backoff = 0.1
            except Exception as exc:
                self._outage.failed(exc, "events are kept and sent when it is back")
                self._reset_connection()
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _publish_pending(self) -> None:
        with self._send_lock:
            while True:
                with self._buffer_lock:
                    batch = self._buffer[: self._max_batch]
                if not batch:
                    return
                self._producer_for_process().publish(
                    encode_batch(batch),
                    # The default exchange routes by queue name: no binding lookup per publish.
                    exchange="",
                    routing_key=EVENTS_QUEUE,
                    declare=[events_queue()],
                    serializer="json",
                    delivery_mode=2,
                    retry=True,
                    retry_policy={
                        "max_retries": 3,
                        "interval_start": 0.1,
                        "interval_step": 0.5,
                        "interval_max": 1,
                    },
                )
                with self._buffer_lock:
                    del self._buffer[: len(batch)]

    def _producer_for_process(self) -> Producer:
        if self._producer is None:
            self._connection = Connection(self._url, transport_options=self._transport_options)
            self._producer = Producer(self._connection.default_channel)
        return self._producer

    def _reset_connection(self) -> None:
        with self._send_lock:
            connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:
                log.debug("error closing event connection", exc_info=True)
