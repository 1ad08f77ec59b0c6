# kombu ships no annotations.
# mypy: disallow-untyped-calls=False
"""Celery remote control for the gRPC clients of one bridge: how `fss task kill` reaches them.

fss.kills sends the control command `fss_kill` to the Celery node `<client id>@<host>` of the
client running the run, the name `fss worker` gives its node. A gRPC client has no Celery node:
its bridge listens on Celery's control exchange once for all its sessions and answers, under
the client's node name, each command addressed to a client that holds a session here (the
session sends the client `cancel`). A command addressed to anyone else gets no answer from
here: a Python worker, or a client whose session is on another bridge, answers for itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from kombu.connection import Connection
from kombu.message import Message
from kombu.pidbox import Mailbox, Node

from fss.bridge.hooks import KILL_COMMAND, REVOKED_REASON
from fss.celery_app import broker_transport_options, create_app, transport_for
from fss.config import Settings

log = logging.getLogger(__name__)

POLL_S = 0.2
RECONNECT_PAUSE_S = 1.0
# How long start() waits for the first poll (the subscription to the control exchange is in
# place from then on): a kill sent right after a bridge started must not go unheard.
READY_TIMEOUT_S = 5.0

Answer = dict[str, str]


class Killable(Protocol):
    """What answers for one gRPC client: its session (fss.bridge.session.Session)."""

    def kill(self, celery_id: str, reason: str) -> Answer: ...


def control_mailbox(settings: Settings) -> Mailbox:
    """The mailbox Celery's `app.control` broadcasts through (same exchange, serializer and
    queue options, as celery.app.control.Control builds it), without the app's producer
    pool: replies go out on the listener's own channel."""
    app = create_app(settings, main="fss-bridge-control")
    try:
        conf = app.conf
        return Mailbox(
            conf.control_exchange,
            type="fanout",
            accept=conf.accept_content,
            serializer=conf.task_serializer,
            queue_ttl=conf.control_queue_ttl,
            reply_queue_ttl=conf.control_queue_ttl,
            queue_expires=conf.control_queue_expires,
            queue_exclusive=conf.control_queue_exclusive,
            queue_durable=conf.control_queue_durable,
            reply_queue_expires=conf.control_queue_expires,
        )
    finally:
        app.close()


def answer(target: Killable, method: Any, arguments: Any) -> Answer:
    """The reply of the client `target` to one control command (Celery's reply shapes:
    {"ok": ...} or {"error": ...})."""
    if method != KILL_COMMAND:
        return {"error": f"a gRPC client answers only {KILL_COMMAND}, not {method!r}"}
    celery_id = arguments.get("task_id") if isinstance(arguments, dict) else None
    if not isinstance(celery_id, str) or not celery_id:
        return {"error": "task_id: give the run's Celery task id (fss-<task>-<attempt>)"}
    reason = arguments.get("reason")
    return target.kill(celery_id, reason if isinstance(reason, str) and reason else REVOKED_REASON)


def addressed(body: Any, find: Callable[[str], Killable | None]) -> Iterator[tuple[str, Killable]]:
    """The (node name, client) pairs of this bridge a control message names. Messages to
    every node (no destination: `celery inspect ...`) are not for gRPC clients."""
    destination = body.get("destination") if isinstance(body, dict) else None
    if not isinstance(destination, list | tuple):
        return
    for node in destination:
        target = find(node) if isinstance(node, str) else None
        if target is not None:
            yield node, target


class ControlListener:
    """One thread, one broker connection per bridge: answers the control commands addressed
    to its clients' nodes (`find` gives the session holding a node name, or None)."""

    def __init__(
        self,
        settings: Settings,
        queue_node: str,
        find: Callable[[str], Killable | None],
        stopping: threading.Event,
    ) -> None:
        self._settings = settings
        # Names this listener's own queue on the fanout exchange; never a client's node.
        self._queue_node = queue_node
        self._find = find
        self._stopping = stopping
        self._mailbox = control_mailbox(settings)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Start listening; True once the subscription is in place (False: not within
        `ready_timeout_s`, e.g. the broker is down; it goes on trying)."""
        self._thread = threading.Thread(target=self._run, name="fss-bridge-control", daemon=True)
        self._thread.start()
        return self._ready.wait(ready_timeout_s)

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as exc:  # kombu raises the transport's own errors
                if self._stopping.is_set():
                    return
                log.warning(
                    "bridge control: broker unreachable (%s); `fss task kill` cannot reach "
                    "this bridge's clients until it is back",
                    exc,
                )
                self._stopping.wait(RECONNECT_PAUSE_S)

    def _listen(self) -> None:
        url = self._settings.broker_url
        with Connection(
            url,
            transport=transport_for(url),
            transport_options=broker_transport_options(self._settings),
        ) as connection:
            mailbox = self._mailbox(connection)
            channel = connection.channel()
            node = mailbox.Node(self._queue_node, channel=channel)
            consumer = node.listen(channel=channel, callback=self._on_message_of(node))
            with consumer:
                while not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):  # nothing came: look at stopping
                        connection.drain_events(timeout=POLL_S)
                    self._ready.set()

    def _on_message_of(self, node: Node) -> Callable[[Any, Message], None]:
        def on_message(body: Any, message: Message) -> None:
            try:
                self._handle(node, body, message)
            except Exception:  # one bad command never stops the listener
                log.exception("bridge control: could not answer a command")

        return on_message

    def _handle(self, node: Node, body: Any, message: Message) -> None:
        clock = (message.headers or {}).get("clock")
        node.adjust_clock(clock if isinstance(clock, int) else 0)
        for node_name, target in addressed(body, self._find):
            reply = answer(target, body.get("method"), body.get("arguments"))
            log.info("bridge control: %s for %s: %s", body.get("method"), node_name, reply)
            reply_to = body.get("reply_to")
            if isinstance(reply_to, dict) and {"exchange", "routing_key"} <= reply_to.keys():
                node.reply(
                    {node_name: reply},
                    exchange=reply_to["exchange"],
                    routing_key=reply_to["routing_key"],
                    ticket=body.get("ticket"),
                )
