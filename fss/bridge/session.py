# kombu and the generated gRPC code ship no annotations.
# mypy: disallow-untyped-calls=False
"""One gRPC client's session on the bridge: registration, orders, reports, liveness.

A session is one `Bridge.Connect` stream. Three threads serve it: the gRPC handler thread
writes the server's messages (from `outbound`), a reader thread turns the client's reports
into events, and a consumer thread takes orders from the client's queue, enters the fence
and hands them to the writer. The hub's ticker thread sends heartbeats for every session,
ends the silent ones and fails the runs not ended in time after `cancel`; its control
listener (fss.bridge.control) hands each session the kills addressed to its client's Celery
node. Whatever ends a session, `_finish` reports its unfinished orders
failed and (unless a newer session took the name over) the client left, then flushes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import grpc
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message

from fss.bridge.control import Answer, ControlListener
from fss.bridge.hooks import time_limit_reason
from fss.bridge.proto.fss.v1 import fss_pb2
from fss.bridge.publisher import EventPublisher
from fss.celery_app import broker_transport_options, transport_for
from fss.config import Settings
from fss.domain.clock import Clock, SystemClock, as_utc, require_storable_time
from fss.domain.data_merge import changes_since
from fss.domain.group_spec import validate_data, validate_job_name
from fss.errors import InvalidField
from fss.events import (
    MAX_ERROR_TEXT,
    MAX_LOG_CONTENT,
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    check,
    python_level_to_fss,
)
from fss.fence import Fence, create_fence
from fss.naming import celery_task_id, client_queue, validate_client_id
from fss.orders import RunOrder

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 1024
MAX_ABANDONED = 4096
# How long a session may take to leave once it was told to end, before its call is cancelled
# (a client that does not read its stream would otherwise hold it open).
END_GRACE_S = 2.0
FLUSH_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 0.2
RECONNECT_PAUSE_S = 1.0

OrderKey = tuple[int, int]


class SessionEnd(Exception):
    """Ends the stream with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def liveness_timeout_s(settings: Settings) -> float:
    return min(3 * settings.heartbeat_s, settings.client_timeout_s)


class BridgeHub:
    """What the sessions of one bridge process share: settings, publisher, fence, the
    session of each client id, and the ticker that keeps them alive or ends them."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.node = f"bridge-{socket.gethostname()}-{os.getpid()}"
        self.stopping = threading.Event()
        self._publisher: EventPublisher | None = None
        self._fence: Fence | None = None
        self._lock = threading.RLock()
        self._current: dict[str, Session] = {}
        # Orders of a replaced session, failed for it: the client that reconnected may still
        # report on them; those reports are dropped instead of ending its new session.
        self._abandoned: dict[str, set[OrderKey]] = {}
        self._all: set[Session] = set()
        self._ticker: threading.Thread | None = None
        self._control: ControlListener | None = None

    @property
    def publisher(self) -> EventPublisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = EventPublisher.for_settings(self.settings)
            return self._publisher

    @property
    def fence(self) -> Fence:
        with self._lock:
            if self._fence is None:
                self._fence = create_fence(self.settings.effective_fence_url)
            return self._fence

    def emit(self, event: Event) -> None:
        check(event)
        self.publisher.emit(event)

    def start(self) -> None:
        self._ticker = threading.Thread(
            target=self._tick_loop, name="fss-bridge-ticker", daemon=True
        )
        self._ticker.start()
        # `fss task kill` for this bridge's clients. Its queue is named apart from every
        # other hub's, even in one process (tests run several bridges side by side).
        self._control = ControlListener(
            self.settings, f"{self.node}-{uuid.uuid4().hex[:8]}", self.session_of_node,
            self.stopping,
        )
        if not self._control.start():
            log.warning("bridge %s: not listening for kills yet (broker unreachable?)", self.node)

    def opened(self, session: Session) -> None:
        with self._lock:
            self._all.add(session)

    def closed(self, session: Session) -> None:
        with self._lock:
            self._all.discard(session)

    def take_over(self, session: Session, heartbeat: ClientHeartbeat) -> Session | None:
        """Make `session` the one of its client id and announce it; the one it replaces."""
        with self._lock:
            previous = self._current.get(session.client_id)
            self._current[session.client_id] = session
            self.emit(heartbeat)
        return previous

    def beat(self, session: Session, heartbeat: ClientHeartbeat) -> None:
        """Announce `session`'s heartbeat while it is still its client's session: one built
        just before a newer session took the name over would otherwise go out after that
        session's registration and hand the client row back to the replaced incarnation."""
        with self._lock:
            if self._current.get(session.client_id) is session:
                self.emit(heartbeat)

    def release(self, session: Session, left: ClientLeft) -> bool:
        """Forget `session` and announce the client left, if it is still its client's
        session; False (nothing announced) if a newer one took the name over."""
        with self._lock:
            if self._current.get(session.client_id) is not session:
                return False
            del self._current[session.client_id]
            self.emit(left)
            return True

    def abandon(self, client_id: str, keys: list[OrderKey]) -> None:
        with self._lock:
            kept = self._abandoned.setdefault(client_id, set())
            kept.update(keys)
            while len(kept) > MAX_ABANDONED:
                kept.discard(min(kept))

    def was_abandoned(self, client_id: str, key: OrderKey, forget: bool) -> bool:
        with self._lock:
            kept = self._abandoned.get(client_id, set())
            found = key in kept
            if forget:
                kept.discard(key)
            return found

    def session_of(self, client_id: str) -> Session | None:
        with self._lock:
            return self._current.get(client_id)

    def session_of_node(self, node: str) -> Session | None:
        """The current session whose client is the Celery node `node` (`<client id>@<host>`,
        how fss.kills addresses a kill); None when no client of this bridge is."""
        with self._lock:
            return next((s for s in self._current.values() if s.node_name == node), None)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._all)

    def stop(self, reason: str, timeout_s: float) -> None:
        """Kick every session and wait (up to `timeout_s`) until each has reported its end."""
        self.stopping.set()
        sessions = self.sessions()
        for session in sessions:
            session.kick(reason, cancel_orders=True, code=grpc.StatusCode.UNAVAILABLE)
        deadline = time.monotonic() + timeout_s
        for session in sessions:
            if not session.finished.wait(max(0.0, deadline - time.monotonic())):
                session.cancel_call()
                session.finish()

    def close(self) -> None:
        self.stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        if self._control is not None:
            self._control.join(timeout_s=2)
        with self._lock:
            publisher, fence = self._publisher, self._fence
            self._publisher = self._fence = None
        if publisher is not None:
            publisher.close()
        if fence is not None:
            fence.close()

    def _tick_loop(self) -> None:
        period = min(0.1, self.settings.heartbeat_s / 4)
        while not self.stopping.wait(period):
            for session in self.sessions():
                try:
                    session.tick(time.monotonic())
                except Exception:
                    log.exception(
                        "session %s: tick failed",
                        session.client_id or "(new)",
                        extra={"client_id": session.client_id},
                    )


@dataclass(frozen=True)
class Registration:
    client_id: str
    host: str
    ip: str
    pid: int
    job_names: tuple[str, ...]
    language: str
    concurrency: int


def registration_of(message: fss_pb2.Register) -> Registration:
    """The validated register message; InvalidField naming the field otherwise."""
    job_names = tuple(sorted({validate_job_name(name) for name in message.job_names}))
    if not job_names:
        raise InvalidField("job_names", "give at least one job name")
    concurrency = message.concurrency or 1
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise InvalidField("concurrency", f"must be 0..{MAX_CONCURRENCY}, got {concurrency}")
    return Registration(
        client_id=validate_client_id(message.name, "name"),
        host=message.host,
        ip=message.ip,
        pid=message.pid,
        job_names=job_names,
        language=message.language or "unknown",
        concurrency=concurrency,
    )


@dataclass(frozen=True)
class TimeLimits:
    """The order's Celery time limits (its `timelimit` header [hard, soft]), in seconds."""

    soft_s: float | None = None
    hard_s: float | None = None


@dataclass
class StreamedOrder:
    order: RunOrder
    streamed_at: float  # monotonic
    # Numbers the run's log lines in the order the client reported them (run_log.seq).
    log_seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # A gRPC client gets `cancel` at the soft limit; the bridge fails the run at the hard one.
    limits: TimeLimits = field(default_factory=TimeLimits)
    cancelled: bool = False
    # `fss task kill`: the reason (the run's error) once the client got `cancel` for it, and
    # when (monotonic) the bridge fails the run itself if the client has not ended it.
    killed: str | None = None
    kill_deadline: float | None = None
    # The id of the Celery message that brought the order, which a kill names (as a Python
    # worker matches its running request's id); "": the order's usual id.
    message_id: str = ""

    @property
    def celery_id(self) -> str:
        order = self.order
        return self.message_id or celery_task_id(order.task_id, order.attempt, order.shard)

    def overdue(self, now: float) -> bool:
        """Whether the bridge fails the run now: past its hard time limit, or its kill's grace."""
        hard_s = self.limits.hard_s
        if hard_s is not None and now - self.streamed_at >= hard_s:
            return True
        return self.kill_deadline is not None and now >= self.kill_deadline


def order_queue(name: str) -> Queue:
    """The client's order queue, declared as Celery declares it (task_create_missing_queues)."""
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


class Session:
    def __init__(self, hub: BridgeHub, context: grpc.ServicerContext) -> None:
        self.hub = hub
        self.context = context
        self.incarnation = uuid.uuid4().hex[:16]
        self.registration: Registration | None = None
        self.finished = threading.Event()
        self._settings = hub.settings
        self._liveness_s = liveness_timeout_s(hub.settings)
        self._outbound: queue.Queue[fss_pb2.ServerMessage | SessionEnd] = queue.Queue()
        self._lock = threading.Lock()
        self._capacity = threading.Condition(self._lock)
        self._orders: dict[OrderKey, StreamedOrder] = {}
        self._ended: SessionEnd | None = None
        self._ended_at = 0.0
        self._closed = False
        self._accepting = True
        self._last_seen = time.monotonic()
        self._next_beat = 0.0
        self._consumer: threading.Thread | None = None
        self._finish_lock = threading.Lock()

    @property
    def client_id(self) -> str:
        return self.registration.client_id if self.registration else ""

    @property
    def queue_name(self) -> str:
        return client_queue(self.client_id)

    @property
    def node_name(self) -> str:
        """The client's Celery node name, as its runs record it (client id @ registered host)."""
        registration = self.registration
        return f"{registration.client_id}@{registration.host}" if registration else ""

    def outstanding(self) -> list[RunOrder]:
        with self._lock:
            return [streamed.order for streamed in self._orders.values()]

    # ---- the stream ------------------------------------------------------------------

    def run(self, requests: Iterator[fss_pb2.ClientMessage]) -> Iterator[fss_pb2.ServerMessage]:
        """The server's side of the stream; runs on the gRPC handler thread."""
        self.hub.opened(self)
        self.context.add_callback(self._call_done)
        reader = threading.Thread(
            target=self._read, args=(requests,), name="fss-bridge-reader", daemon=True
        )
        reader.start()
        while True:
            item = self._outbound.get()
            if isinstance(item, SessionEnd):
                if item.code != grpc.StatusCode.OK:
                    self.context.set_code(item.code)
                    self.context.set_details(item.details)
                return
            yield item

    def end(self, code: grpc.StatusCode, details: str) -> None:
        """Close the stream with this status (the first reason wins)."""
        with self._lock:
            if self._ended is not None:
                return
            self._ended = SessionEnd(code, details)
            self._ended_at = time.monotonic()
            self._capacity.notify_all()
        self._outbound.put(self._ended)

    def kick(
        self, reason: str, cancel_orders: bool, code: grpc.StatusCode = grpc.StatusCode.ABORTED
    ) -> None:
        """Tell the client why its session ends (after `cancel` for each running order)."""
        if cancel_orders:
            for order in self.outstanding():
                cancel = fss_pb2.Cancel(task_id=order.task_id, attempt=order.attempt, reason=reason)
                self._outbound.put(fss_pb2.ServerMessage(cancel=cancel))
        self._outbound.put(fss_pb2.ServerMessage(kicked=fss_pb2.Kicked(reason=reason)))
        self.end(code, reason)

    def cancel_call(self) -> None:
        self.context.cancel()

    def kill(self, celery_id: str, reason: str) -> Answer:
        """`fss task kill` (the `fss_kill` control command, answered by fss.bridge.control):
        send the client `cancel` for that run; its end is then a Fail with `reason`, and a run
        not ended FSS_TIME_LIMIT_GRACE_S later is failed here. {"error": ...} when the run is
        not one this session runs."""
        grace_s = self._settings.time_limit_grace_s
        with self._lock:
            streamed = next((s for s in self._orders.values() if s.celery_id == celery_id), None)
            if streamed is None:
                return {"error": f"{celery_id} is not running on the gRPC client {self.client_id}"}
            if self._ended is not None:
                return {"error": f"the session of {self.client_id} is ending: its runs are "
                        "failed as disconnected"}
            first = streamed.killed is None
            if first:
                streamed.killed = reason
                streamed.kill_deadline = time.monotonic() + grace_s
        order = streamed.order
        if not first:
            return {"ok": f"{celery_id}: cancel already sent to {self.client_id}"}
        cancel = fss_pb2.Cancel(task_id=order.task_id, attempt=order.attempt, reason=reason)
        self._outbound.put(fss_pb2.ServerMessage(cancel=cancel))
        log.info(
            "session %s: task %s attempt %s: cancel sent (%s)",
            self.client_id,
            order.task_id,
            order.attempt,
            reason,
            extra=order_ids(order),
        )
        return {
            "ok": f"{celery_id}: cancel sent to the gRPC client {self.client_id} by "
            f"{self.hub.node}; failed there if it does not end within {grace_s:g} s"
        }

    def _call_done(self) -> None:
        self.end(grpc.StatusCode.CANCELLED, "the call ended")

    # ---- client -> server --------------------------------------------------------------

    def _read(self, requests: Iterator[fss_pb2.ClientMessage]) -> None:
        try:
            self._read_all(requests)
        except SessionEnd as exc:
            self.end(exc.code, exc.details)
        except grpc.RpcError:
            self.end(grpc.StatusCode.CANCELLED, "the client went away")
        except Exception as exc:  # never the bridge: only this session ends
            log.exception(
                "session %s: unexpected error",
                self.client_id or "(new)",
                extra={"client_id": self.client_id},
            )
            self.end(grpc.StatusCode.INTERNAL, f"bridge error: {type(exc).__name__}")
        finally:
            self.finish()

    def _read_all(self, requests: Iterator[fss_pb2.ClientMessage]) -> None:
        for message in requests:
            self._last_seen = time.monotonic()
            if self._ended is not None:
                return
            if self.registration is None:
                self._register(message)
            else:
                self._handle(message)
        self.end(grpc.StatusCode.OK, "the client closed the stream")

    def _register(self, message: fss_pb2.ClientMessage) -> None:
        if message.WhichOneof("kind") != "register":
            raise SessionEnd(
                grpc.StatusCode.INVALID_ARGUMENT, "register: must be the first message"
            )
        registration = self._validated(lambda: registration_of(message.register))
        if self.hub.stopping.is_set():
            raise SessionEnd(grpc.StatusCode.UNAVAILABLE, "the bridge is stopping")
        self.registration = registration
        heartbeat = self._validated(lambda: self._heartbeat(time.monotonic()))
        self._outbound.put(
            fss_pb2.ServerMessage(
                registered=fss_pb2.Registered(
                    client_id=registration.client_id,
                    heartbeat_interval_ms=int(self._settings.heartbeat_s * 1000),
                    liveness_timeout_ms=int(self._liveness_s * 1000),
                    bridge_node=self.hub.node,
                )
            )
        )
        previous = self.hub.take_over(self, heartbeat)
        if previous is not None:
            previous.kick(f"another session registered as {registration.client_id}", False)
        log.info(
            "session of client %s (%s, %s) started: jobs %s, concurrency %d",
            registration.client_id,
            registration.language,
            self.incarnation,
            ", ".join(registration.job_names),
            registration.concurrency,
            extra={"client_id": registration.client_id},
        )
        self._consumer = threading.Thread(
            target=self._consume, name=f"fss-bridge-orders-{registration.client_id}", daemon=True
        )
        self._consumer.start()

    def _handle(self, message: fss_pb2.ClientMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "heartbeat":
            with self._lock:
                self._accepting = message.heartbeat.accepting
                self._capacity.notify_all()
        elif kind in ("started", "progress", "log", "finished"):
            self._report(kind, getattr(message, kind))
        elif kind == "register":
            raise SessionEnd(grpc.StatusCode.INVALID_ARGUMENT, "register: sent twice")
        else:
            raise SessionEnd(grpc.StatusCode.INVALID_ARGUMENT, "message: no kind set")

    def _report(self, kind: str, report: Any) -> None:
        key = (int(report.task_id), int(report.attempt))
        with self._lock:
            streamed = self._orders.get(key)
        if streamed is None and self.hub.was_abandoned(self.client_id, key, kind == "finished"):
            log.debug("session %s: %s of an abandoned run dropped", self.client_id, kind)
            return
        if streamed is None:
            raise SessionEnd(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{kind}: task {key[0]} attempt {key[1]} is not an order this session runs",
            )
        event = self._validated(lambda: self._event(kind, report, streamed))
        if isinstance(event, TaskFinished):
            with self._lock:
                # Another reader of this key cannot exist (one reader thread): pop is safe.
                self._orders.pop(key, None)
                self._capacity.notify_all()
        self.hub.emit(event)

    @staticmethod
    def _validated(build: Any) -> Any:
        try:
            value = build()
            if isinstance(value, Event):
                check(value)
            return value
        except InvalidField as exc:
            raise SessionEnd(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    def _event(self, kind: str, report: Any, streamed: StreamedOrder) -> Event:
        order, now = streamed.order, self.hub.clock.now()
        if kind == "started":
            return TaskStarted(order.task_id, order.attempt, self.client_id, now, **stamp(order))
        if kind == "progress":
            return TaskProgressed(
                order.task_id, order.attempt, self.client_id, report.progress, now,
                **stamp(order),
            )
        if kind == "log":
            return log_event(report, order, self.client_id, now, next(streamed.log_seq))
        elapsed_ms = int((time.monotonic() - streamed.streamed_at) * 1000)
        finished = finished_event(report, order, self.client_id, now, elapsed_ms)
        killed = streamed.killed
        if killed is not None or streamed.cancelled:
            # Ended after `cancel` for a kill or at its time limit: a Fail for that reason,
            # whatever the client reported (its own words follow).
            reason = killed if killed is not None else time_limit_reason(streamed.limits.soft_s)
            said = f"; the client said: {finished.error}" if finished.error else ""
            return dataclasses.replace(
                finished, success=False, error=(reason + said)[:MAX_ERROR_TEXT]
            )
        return finished

    # ---- server -> client: orders ---------------------------------------------------------

    def _consume(self) -> None:
        while not self._is_ending():
            try:
                self._consume_connected()
            except Exception as exc:
                if self._is_ending():
                    return
                log.warning(
                    "session %s: order queue %s unreachable (%s); retrying",
                    self.client_id,
                    self.queue_name,
                    exc,
                )
                time.sleep(RECONNECT_PAUSE_S)

    def _consume_connected(self) -> None:
        with Connection(
            self._settings.broker_url,
            transport=transport_for(self._settings.broker_url),
            transport_options=broker_transport_options(self._settings),
        ) as connection:
            consumer = connection.Consumer(
                [order_queue(self.queue_name)],
                callbacks=[self._on_message],
                accept=["json"],
                on_decode_error=self._undecodable,
                # One message in hand at a time: the rest stay in the queue for the scheduler.
                prefetch_count=1,
            )
            with consumer:
                while self._wait_for_room():
                    try:
                        connection.drain_events(timeout=DRAIN_TIMEOUT_S)
                    except TimeoutError:
                        continue

    def _wait_for_room(self) -> bool:
        """Back-pressure: block while `concurrency` orders are out (or the client drains);
        False once the session ends."""
        assert self.registration is not None
        limit = self.registration.concurrency
        with self._capacity:
            while self._ended is None and (len(self._orders) >= limit or not self._accepting):
                self._capacity.wait(0.5)
            return self._ended is None

    def _is_ending(self) -> bool:
        return self._ended is not None

    def _undecodable(self, message: Message, exc: Exception) -> None:
        log.error("session %s: dropping an undecodable order message (%s)", self.client_id, exc)
        message.ack()

    def _on_message(self, body: Any, message: Message) -> None:
        try:
            order, deadline = decode_order(body, message.headers or {})
        except InvalidField as exc:
            log.error(
                "session %s: dropping a malformed order: %s",
                self.client_id,
                exc,
                extra={"client_id": self.client_id},
            )
            message.ack()
            return
        if self._ended is not None or not self._accepting:
            message.requeue()
            return
        refusal = self._refusal(order, deadline)
        if refusal is not None:
            log.warning("session %s: %s", self.client_id, refusal, extra=order_ids(order))
            message.ack()
            return
        if not self.hub.fence.enter(
            order.task_id,
            order.attempt,
            self.incarnation,
            installation=order.installation,
            shard=order.shard_index,  # 0 unless a broadcast run: the task's own fence
        ):
            log.info(
                "session %s: task %s attempt %s is not current any more; dropped",
                self.client_id,
                order.task_id,
                order.attempt,
                extra=order_ids(order),
            )
            message.ack()
            return
        message.ack()
        headers = message.headers or {}
        message_id = headers.get("id")
        self._stream(
            order,
            deadline,
            time_limits(headers),
            message_id if isinstance(message_id, str) else "",
        )

    def _refusal(self, order: RunOrder, deadline: datetime | None) -> str | None:
        assert self.registration is not None
        where = f"task {order.task_id} attempt {order.attempt}"
        if order.client_id != self.client_id:
            return f"{where} was sent to client {order.client_id}; dropped"
        if order.job_name not in self.registration.job_names:
            return f"{where} runs job {order.job_name!r}, which this client did not register"
        with self._lock:
            if (order.task_id, order.attempt) in self._orders:
                # Reports name (task id, attempt) only: two shards of one attempt on one
                # client could not be told apart. A broadcast sends each client one shard.
                return f"{where} already runs on this client; shard {order.shard_index} dropped"
        if deadline is not None and deadline <= self.hub.clock.now():
            return f"{where} expired at {deadline.isoformat()}; dropped"
        return None

    def _stream(
        self,
        order: RunOrder,
        deadline: datetime | None,
        limits: TimeLimits | None = None,
        message_id: str = "",
    ) -> None:
        with self._lock:
            if not self._closed:
                key = (order.task_id, order.attempt)
                self._orders[key] = StreamedOrder(
                    order, time.monotonic(), limits=limits or TimeLimits(), message_id=message_id
                )
                self._outbound.put(fss_pb2.ServerMessage(order=order_message(order, deadline)))
                return
        # The session finished while the fence was entered: nobody will run it.
        self._abandon(StreamedOrder(order, time.monotonic()))

    # ---- liveness and the end ---------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Heartbeat when due; end the session when the client is silent too long; cancel
        the call when the client did not leave after it was ended."""
        if self._ended is not None:
            if now - self._ended_at > END_GRACE_S and not self.finished.is_set():
                self.cancel_call()
            return
        if now - self._last_seen > self._liveness_s:
            self.end(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no message from the client for {self._liveness_s * 1000:.0f} ms",
            )
            return
        if self.registration is not None and now >= self._next_beat:
            self.hub.beat(self, self._heartbeat(now))
        self._enforce_stops(now)

    def _enforce_stops(self, now: float) -> None:
        """The order's time limits, as a prefork worker enforces them: `cancel` at the soft
        limit (the client stops the run and reports it failed), and at the hard limit a
        run the client still has not ended is failed here; its late reports are dropped.
        A killed run (`cancel` sent by `kill`) is failed here once its grace is over."""
        to_cancel: list[StreamedOrder] = []
        overdue: list[StreamedOrder] = []
        with self._lock:
            for key, streamed in list(self._orders.items()):
                limits, running_s = streamed.limits, now - streamed.streamed_at
                if streamed.overdue(now):
                    overdue.append(self._orders.pop(key))
                    self._capacity.notify_all()
                elif (
                    limits.soft_s is not None
                    and running_s >= limits.soft_s
                    and not streamed.cancelled
                ):
                    streamed.cancelled = True
                    to_cancel.append(streamed)
        for streamed in to_cancel:
            order = streamed.order
            reason = time_limit_reason(streamed.limits.soft_s)
            cancel = fss_pb2.Cancel(task_id=order.task_id, attempt=order.attempt, reason=reason)
            self._outbound.put(fss_pb2.ServerMessage(cancel=cancel))
        if overdue:
            self.hub.abandon(self.client_id, [(s.order.task_id, s.order.attempt) for s in overdue])
        for streamed in overdue:
            self._abandon(streamed, self._overdue_reason(streamed))

    def _overdue_reason(self, streamed: StreamedOrder) -> str:
        if streamed.killed is not None:
            reason, grace_s = streamed.killed, self._settings.time_limit_grace_s
        else:
            limits = streamed.limits
            reason = time_limit_reason(limits.soft_s)
            grace_s = (limits.hard_s or 0) - (limits.soft_s or 0)
        return (
            f"{reason}: the gRPC client {self.client_id} did not end the run within "
            f"{grace_s:g} s of `cancel`; marked failed"
        )

    def _heartbeat(self, now: float) -> ClientHeartbeat:
        assert self.registration is not None
        registration = self.registration
        self._next_beat = now + self._settings.heartbeat_s
        with self._lock:
            active, accepting = len(self._orders), self._accepting
        return ClientHeartbeat(
            client_id=registration.client_id,
            host=registration.host,
            ip=registration.ip,
            pid=registration.pid,
            job_names=registration.job_names,
            queue=self.queue_name,
            at=self.hub.clock.now(),
            language=registration.language,
            accepting=accepting and not self.hub.stopping.is_set(),
            active=active,
            incarnation=self.incarnation,
        )

    def finish(self) -> None:
        """Report the session's end once: unfinished orders failed, the client left."""
        with self._finish_lock:
            if self.finished.is_set():
                return
            self.end(grpc.StatusCode.CANCELLED, "the session ended")
            try:
                self._report_end()
            finally:
                self.hub.closed(self)
                self.finished.set()

    def _report_end(self) -> None:
        if self._consumer is not None:
            self._consumer.join(timeout=DRAIN_TIMEOUT_S * 5)
        with self._lock:
            self._closed = True
            unfinished = list(self._orders.values())
            self._orders.clear()
        if self.registration is None:
            return
        for streamed in unfinished:
            self._abandon(streamed)
        if unfinished:
            # The failures go out before the `left`: the clients queue is recorded at once and
            # the events queue in batches, and a supervisor sweep seeing the client gone with
            # its runs still open fails them itself ("unregistered"), without this reason.
            self.hub.publisher.flush(timeout_s=FLUSH_TIMEOUT_S)
        left = self.hub.release(
            self, ClientLeft(self.client_id, self.hub.clock.now(), incarnation=self.incarnation)
        )
        if not left:
            lost = [(s.order.task_id, s.order.attempt) for s in unfinished]
            self.hub.abandon(self.client_id, lost)
        self.hub.publisher.flush(timeout_s=FLUSH_TIMEOUT_S)
        assert self._ended is not None
        log.info(
            "session of client %s (%s) ended: %s%s%s",
            self.client_id,
            self.incarnation,
            self._ended.details,
            f"; {len(unfinished)} unfinished order(s) failed" if unfinished else "",
            "" if left else "; a newer session holds the name",
            extra={"client_id": self.client_id},
        )

    def _abandon(self, streamed: StreamedOrder, reason: str | None = None) -> None:
        """Fail an order the client will never report on, with a run log saying why, as
        the supervisor does for a Celery worker that died."""
        order = streamed.order
        now = self.hub.clock.now()
        reason = reason or (
            f"the gRPC client {self.client_id} disconnected while running attempt "
            f"{order.attempt}; marked failed"
        )
        self.hub.emit(
            TaskLogged(
                task_id=order.task_id,
                attempt=order.attempt,
                client_id=self.client_id,
                group_id=order.group_id,
                level=python_level_to_fss(logging.ERROR),
                content=reason,
                at=now,
                seq=next(streamed.log_seq),  # after every line the client reported
                **stamp(order),
            )
        )
        self.hub.emit(
            TaskFinished(
                task_id=order.task_id,
                attempt=order.attempt,
                client_id=self.client_id,
                success=False,
                run_speed_ms=int((time.monotonic() - streamed.streamed_at) * 1000),
                at=now,
                error=reason,
                **stamp(order),
            )
        )


# ---- messages <-> values -------------------------------------------------------------------


def stamp(order: RunOrder) -> dict[str, Any]:
    """What every event of the order's run carries: its installation (a recorder of another
    one dead-letters it) and its broadcast shard (None for every other run). Set here, not by
    the publisher's map per (task id, attempt): two clients of one bridge may run two shards
    of one attempt."""
    return {"installation": order.installation, "shard": order.shard}


def order_ids(order: RunOrder) -> dict[str, Any]:
    """What a log line about this order carries (`extra=`): the ids JSON logs show."""
    return {
        "task_id": order.task_id,
        "attempt": order.attempt,
        "group_id": order.group_id,
        "client_id": order.client_id,
    }


def decode_order(body: Any, headers: dict[str, Any]) -> tuple[RunOrder, datetime | None]:
    """The order of a Celery protocol 2 message ([args, kwargs, embed]) and its expiry."""
    if not isinstance(body, list | tuple) or len(body) < 2 or not isinstance(body[1], dict):
        raise InvalidField("body", "not a Celery task message ([args, kwargs, embed])")
    order = RunOrder.from_kwargs(body[1])
    expires = headers.get("expires")
    if expires is None:
        return order, None
    if not isinstance(expires, str):
        raise InvalidField("expires", "must be an ISO 8601 time")
    try:
        return order, as_utc(datetime.fromisoformat(expires))
    except ValueError:
        raise InvalidField("expires", f"{expires!r} is not an ISO 8601 time") from None


def time_limits(headers: dict[str, Any]) -> TimeLimits:
    """The order's Celery `timelimit` header ([hard, soft] seconds; [None, None]: none).
    Anything else is no limit: a malformed header must not stop the run."""
    pair = headers.get("timelimit")
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        return TimeLimits()
    hard, soft = (_seconds(value) for value in pair)
    if soft is None and hard is None:
        return TimeLimits()
    return TimeLimits(soft_s=soft if soft is not None else hard, hard_s=hard)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None


def to_unix_ms(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() * 1000)


def from_unix_ms(name: str, value: int) -> datetime:
    try:
        moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise InvalidField(name, f"{value} is not a time in milliseconds since 1970") from None
    return require_storable_time(name, moment)


def order_message(order: RunOrder, deadline: datetime | None) -> fss_pb2.RunOrder:
    return fss_pb2.RunOrder(
        task_id=order.task_id,
        attempt=order.attempt,
        group_id=order.group_id,
        job_name=order.job_name,
        data_json=json.dumps(order.data, ensure_ascii=False, separators=(",", ":")),
        start_at_unix_ms=to_unix_ms(order.start_at),
        deadline_unix_ms=to_unix_ms(deadline) if deadline is not None else 0,
        shard_index=order.shard_index,
        shard_total=order.shard_total,
    )


def log_event(
    report: fss_pb2.Log, order: RunOrder, client_id: str, now: datetime, seq: int | None = None
) -> TaskLogged:
    if not 0 <= report.level <= 5:
        raise InvalidField("level", f"must be 0..5 (TRACE..CRITICAL), got {report.level}")
    if len(report.content) > MAX_LOG_CONTENT:
        raise InvalidField("content", f"longer than {MAX_LOG_CONTENT} characters")
    if len(report.event_id) > 64:
        raise InvalidField("event_id", "longer than 64 characters")
    at = from_unix_ms("at_unix_ms", report.at_unix_ms) if report.at_unix_ms else now
    values: dict[str, Any] = {"event_id": report.event_id} if report.event_id else {}
    return TaskLogged(
        task_id=order.task_id,
        attempt=order.attempt,
        client_id=client_id,
        group_id=order.group_id,
        level=report.level,
        content=report.content,
        at=at,
        seq=seq,
        **values,
        **stamp(order),
    )


def finished_event(
    report: fss_pb2.Finished, order: RunOrder, client_id: str, now: datetime, elapsed_ms: int
) -> TaskFinished:
    if len(report.error) > MAX_ERROR_TEXT:
        raise InvalidField("error", f"longer than {MAX_ERROR_TEXT} characters")
    next_at = (
        from_unix_ms("next_at_unix_ms", report.next_at_unix_ms) if report.next_at_unix_ms else None
    )
    data = changed_data(report.data_json)
    return TaskFinished(
        task_id=order.task_id,
        attempt=order.attempt,
        client_id=client_id,
        success=report.success,
        run_speed_ms=max(0, elapsed_ms),
        at=now,
        next_at=next_at,
        error=report.error or None,
        data=data,
        data_patch=changes_since(order.data, data) if data is not None else None,
        # The job refused retries for this failure (fss.Fail(retry=False) in Python).
        retry=not report.no_retry,
        **stamp(order),
    )


def changed_data(data_json: str) -> dict[str, Any] | None:
    if not data_json:
        return None
    try:
        data = json.loads(data_json)
    except json.JSONDecodeError as exc:
        raise InvalidField("data_json", f"invalid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise InvalidField("data_json", "must be a JSON object")
    try:
        validate_data(data)
    except InvalidField as exc:
        raise InvalidField("data_json", exc.reason) from None
    return data
