"""The event publisher against a real Redis, and a real outage: the broker URL points at a
local port where nothing listens, then a proxy to the test's Redis opens on that port."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
from kombu.connection import Connection
from kombu.simple import SimpleQueue
from servers import wait_for

from fss.bridge.publisher import EventBuffer, EventPublisher
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    decode_batch,
)
from fss.naming import CLIENTS_QUEUE, EVENTS_QUEUE

AT = datetime(2026, 5, 1, 7, 0, 0, tzinfo=timezone.utc)
PUBLISHER_LOG = "fss.bridge.publisher"


class PortProxy:
    """Forwards a local port to a target address once opened; refuses connections before."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._sockets.append(self._server)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def redis_url(fresh_redis_url: Callable[[], str]) -> str:
    return fresh_redis_url()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[PortProxy]:
    parts = urlsplit(redis_url)
    made = PortProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    yield made
    made.close()


def through(proxy: PortProxy, redis_url: str) -> str:
    return f"redis://127.0.0.1:{proxy.port}{urlsplit(redis_url).path}"


def received(redis_url: str, queue_name: str) -> list[Event]:
    events: list[Event] = []
    with Connection(redis_url) as conn:
        queue = SimpleQueue(conn, queue_name)
        while True:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                break
            events.extend(decode_batch(message.payload))
            message.ack()
        queue.close()
    return events


def heartbeat(client_id: str, active: int) -> ClientHeartbeat:
    return ClientHeartbeat(client_id, "h", "127.0.0.1", 1, ("job",), "q", AT, active=active)


def logged(index: int) -> TaskLogged:
    return TaskLogged(1, 1, "c", 7, 2, f"line {index}", AT)


def test_client_events_go_to_the_clients_queue_and_task_events_to_the_events_queue(
    redis_url: str,
) -> None:
    publisher = EventPublisher(redis_url)
    try:
        for event in (TaskStarted(1, 1, "c", AT), heartbeat("c", 1), ClientLeft("c", AT)):
            publisher.emit(event)
        assert publisher.flush(timeout_s=5)
    finally:
        publisher.close()
    assert [type(e) for e in received(redis_url, EVENTS_QUEUE)] == [TaskStarted]
    assert [type(e) for e in received(redis_url, CLIENTS_QUEUE)] == [ClientHeartbeat, ClientLeft]


def test_one_flush_per_run_delivers_every_event_in_order(redis_url: str) -> None:
    """What a worker does per run (emit `finished`, flush), 200 times on one connection."""
    publisher = EventPublisher(redis_url)
    try:
        for index in range(200):
            publisher.emit(TaskFinished(index + 1, 1, "c", True, 1, AT))
            assert publisher.flush(timeout_s=5)
    finally:
        publisher.close()
    got = received(redis_url, EVENTS_QUEUE)
    assert [e.task_id for e in got if isinstance(e, TaskFinished)] == list(range(1, 201))


def test_given_the_broker_down_then_the_buffer_is_bounded_and_a_run_end_blocks_once(
    redis_url: str, proxy: PortProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, PUBLISHER_LOG)
    publisher = EventPublisher(through(proxy, redis_url), max_buffer=5)
    try:
        publisher.emit(TaskStarted(1, 1, "c", AT))
        for index in range(20):
            publisher.emit(logged(index))
            publisher.emit(TaskProgressed(1, 1, "c", index, AT))
            publisher.emit(heartbeat("c", index))
        publisher.emit(TaskFinished(1, 1, "c", True, 5, AT))

        # Started, 3 logs and the run's latest progress (each newer value replaced the one
        # waiting: never dropped), finished; one heartbeat: the latest.
        assert publisher.pending() == 5 + 1 + 1
        assert publisher.dropped == 17
        full = [r for r in caplog.records if "event buffer full" in r.getMessage()]
        assert len(full) == 1

        started = time.monotonic()
        assert not publisher.flush(timeout_s=0.5)  # the first run end waits out its timeout
        assert time.monotonic() - started >= 0.5
        for _ in range(3):  # ... later ones return at once while the broker stays down
            started = time.monotonic()
            assert not publisher.flush(timeout_s=5)
            assert time.monotonic() - started < 0.1

        proxy.open()  # the broker is back: the background thread delivers what was kept
        wait_for(lambda: publisher.pending() == 0, timeout=15, what="buffer delivered")
        assert publisher.flush(timeout_s=5)
    finally:
        publisher.close()
    tasks = received(redis_url, EVENTS_QUEUE)
    assert isinstance(tasks[0], TaskStarted) and isinstance(tasks[-1], TaskFinished)
    assert [e.content for e in tasks if isinstance(e, TaskLogged)] == ["line 0", "line 1",
                                                                         "line 2"]
    assert [e.progress for e in tasks if isinstance(e, TaskProgressed)] == [19]
    clients = received(redis_url, CLIENTS_QUEUE)
    assert [e.active for e in clients if isinstance(e, ClientHeartbeat)] == [19]
    summary = [r for r in caplog.records if "were dropped meanwhile" in r.getMessage()]
    assert len(summary) == 1 and "17 log/progress events" in summary[0].getMessage()


def test_given_a_flush_that_gave_up_then_the_next_outage_blocks_once_again(
    redis_url: str, proxy: PortProxy
) -> None:
    publisher = EventPublisher(through(proxy, redis_url))
    try:
        publisher.emit(TaskStarted(2, 1, "c", AT))
        assert not publisher.flush(timeout_s=0.3)
        proxy.open()
        wait_for(lambda: publisher.pending() == 0, timeout=15, what="buffer delivered")
        publisher.emit(TaskFinished(2, 1, "c", True, 5, AT))
        assert publisher.flush(timeout_s=5)  # back to normal: flushes publish again
    finally:
        publisher.close()
    assert [type(e) for e in received(redis_url, EVENTS_QUEUE)] == [TaskStarted, TaskFinished]


def progressed(task_id: int, value: int, shard: int | None = None) -> TaskProgressed:
    return TaskProgressed(task_id, 1, "c", value, AT, shard=shard)


def test_a_run_s_waiting_progress_is_replaced_by_its_newer_one_and_nothing_else_is() -> None:
    buffer = EventBuffer(100)
    events = [TaskStarted(1, 1, "c", AT), progressed(1, 30), logged(1), progressed(2, 10),
              progressed(1, 70), progressed(1, 5, shard=0), TaskFinished(1, 1, "c", True, 1, AT)]
    for event in events:
        buffer.add(event)
    kinds = [(type(e).__name__, getattr(e, "task_id", None), getattr(e, "progress", None))
             for e in buffer.task_events]
    assert kinds == [
        ("TaskStarted", 1, None), ("TaskLogged", 1, None), ("TaskProgressed", 2, 10),
        ("TaskProgressed", 1, 70), ("TaskProgressed", 1, 5), ("TaskFinished", 1, None),
    ]


def test_a_progress_in_a_publish_s_hands_is_never_replaced() -> None:
    """The publisher deletes the first `sending` events once published: one of them removed
    under it would make it delete an event that was never sent."""
    buffer = EventBuffer(100)
    buffer.add(progressed(1, 30))
    buffer.add(logged(1))
    buffer.sending = 2
    buffer.add(progressed(1, 70))
    assert [getattr(e, "progress", None) for e in buffer.task_events] == [30, None, 70]


def test_a_job_reporting_progress_in_a_loop_delivers_its_last_value_and_every_line(
    redis_url: str,
) -> None:
    publisher = EventPublisher(redis_url, flush_interval_s=0.005)
    try:
        for index in range(500):
            publisher.emit(progressed(1, index % 100))
            publisher.emit(logged(index))
        publisher.emit(progressed(1, 99))
        publisher.emit(TaskFinished(1, 1, "c", True, 1, AT))
        assert publisher.flush(timeout_s=5)
    finally:
        publisher.close()
    got = received(redis_url, EVENTS_QUEUE)
    lines = [e.content for e in got if isinstance(e, TaskLogged)]
    assert lines == [f"line {i}" for i in range(500)]
    progress = [e.progress for e in got if isinstance(e, TaskProgressed)]
    assert progress[-1] == 99 and len(progress) <= 501
    assert isinstance(got[-1], TaskFinished)
