"""Consumes worker events from the durable queue and writes them to SQL in batches.

Messages are acked only after their batch has committed, so a recorder killed mid-batch
loses nothing: the broker hands the messages to another recorder, and the guarded writes
make the replay harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Consumer
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from fss.celery_app import broker_transport_options
from fss.channels import EVENTS_REDIS_OPTIONS, events_queue
from fss.config import Settings
from fss.domain.clock import Clock
from fss.errors import InvalidField
from fss.events import Event, TaskFinished, decode_batch
from fss.outage import OutageLog
from fss.store.recording import RecordStats, record

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    message: Message
    events: list[Event]


class Recorder:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._on_finished = on_finished or (lambda: None)
        self._pending: list[_Pending] = []
        self.totals = RecordStats()
        # True while a batch waits for the database: heartbeats in it are not written yet.
        self.holding = False
        self._broker = OutageLog(log, "broker (recorder)")

    def run(self, stop: threading.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                self._consume(stop)
                backoff = 0.2
            except Exception as exc:
                # kombu and redis-py raise their own connection errors, not all of them
                # OSError: anything the consumer raises means reconnect.
                self._broker.failed(exc, "events wait in the queue")
            self._pending.clear()  # unacked: the broker redelivers them
            stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _consume(self, stop: threading.Event) -> None:
        options = dict(broker_transport_options(self._settings))
        if self._settings.broker_url.startswith(("redis://", "rediss://")):
            options.update(EVENTS_REDIS_OPTIONS)
        flush_s = self._settings.recorder_flush_ms / 1000
        with Connection(self._settings.broker_url, transport_options=options) as conn:
            channel = conn.channel()
            self._broker.recovered()
            channel.basic_qos(0, self._settings.event_batch * 2, False)
            with Consumer(
                channel, queues=[events_queue()], callbacks=[self._collect], accept=["json"]
            ):
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=flush_s)
                    if self._pending and self._should_flush(flush_s):
                        self._write_pending(stop)
                if self._pending:
                    self._write_pending(stop)

    def _collect(self, body: Any, message: Message) -> None:
        try:
            events = decode_batch(body)
        except InvalidField as exc:
            log.error("dropping a malformed event message: %s", exc)
            message.ack()
            return
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append(_Pending(message, events))

    def _should_flush(self, flush_s: float) -> bool:
        if len(self._pending) >= self._settings.event_batch:
            return True
        return time.monotonic() - self._first_pending_at >= flush_s

    def _write_pending(self, stop: threading.Event) -> None:
        batch, self._pending = self._pending, []
        events = [e for p in batch for e in p.events]
        self._write_with_retry(events, batch, stop)
        for pending in batch:
            pending.message.ack()
        if any(isinstance(e, TaskFinished) for e in events):
            self._on_finished()

    def _write_with_retry(
        self, events: list[Event], batch: list[_Pending], stop: threading.Event
    ) -> None:
        backoff = 0.2
        announced = False
        while True:
            try:
                self._write(events)
                self.holding = False
                if announced:
                    log.warning("database is back; recorded %d delayed events", len(events))
                return
            except (OperationalError, DBAPIError) as exc:
                if not _is_disconnect(exc):
                    self._write_one_by_one(batch)
                    return
                self.holding = True
                if not announced:
                    log.warning(
                        "database unreachable (%s); holding %d events",
                        str(exc).splitlines()[0],
                        len(events),
                    )
                    announced = True
                if stop.wait(backoff):
                    self.holding = False
                    raise ConnectionError("stopping with unwritten events") from exc
                backoff = min(backoff * 2, 5.0)

    def _write(self, events: list[Event]) -> None:
        with self._engine.begin() as conn:
            stats = record(conn, events, self._clock.now())
        for name in vars(stats):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))

    def _write_one_by_one(self, batch: list[_Pending]) -> None:
        """Isolate a message the database rejects so it cannot block the others."""
        for pending in batch:
            try:
                self._write(pending.events)
            except (OperationalError, DBAPIError) as exc:
                if _is_disconnect(exc):
                    raise
                log.error(
                    "dropping an event message the database rejects: %s",
                    str(exc).splitlines()[0],
                )

    _first_pending_at: float = 0.0


def _is_disconnect(exc: DBAPIError) -> bool:
    return bool(getattr(exc, "connection_invalidated", False)) or isinstance(exc, OperationalError)
