"""Run orders as Celery protocol-2 messages built here, published through one producer.

`Celery.send_task` publishes each message on its own broker round trip (on Redis one LPUSH,
waited for) after routing, option merging and signals that are the same for every order of a
tick. Here the dispatcher builds each order's message itself and publishes a tick's orders
together: on fss's Redis transport the envelopes kombu would LPUSH go out in one
non-transactional pipeline per chunk of up to 64 (`fss.redis_transport.Channel.push_many`);
on another transport that batches publishes through kombu's `Producer.batch`; on the others
(amqp, memory) each message is published on its own as before.

The message is what `app.amqp.as_task_v2` builds for the dispatcher's former call
`app.send_task(name, kwargs=..., queue=..., task_id=..., expires=..., kwargsrepr=...)` on the
scheduler's app, which registers no job task (tests/scheduler/test_publish.py compares the
two on the wire); `kwargsrepr` is `kwargs_repr`'s, not Celery's saferepr.
Skipped on purpose: Celery's `before/after_task_publish` signals (nothing in the scheduler
connects to them) and the per-call task registry and router lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.compression import compress
from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps

from fss.naming import celery_task_id, job_task_name
from fss.orders import RunOrder

# Orders per pipeline round trip: the first round trip carries few, so the workers get going
# while the rest is built; the size doubles up to BATCH_ORDERS (a burst of 200 due at once
# goes out in 6 round trips instead of 200, its first orders ~3 ms after the tick).
FIRST_BATCH_ORDERS = 8
BATCH_ORDERS = 64
# Room in a pipeline per message: its LPUSH and, should its queue carry x-expires, one
# PEXPIRE per priority level, so kombu never flushes part of a chunk on its own.
COMMANDS_PER_MESSAGE = 16
# What as_task_v2 puts in every message of ours: no callbacks, no chain, no chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class TimeLimit:
    """A group's max_run_s as Celery's time limits: at the soft one SoftTimeLimitExceeded is
    raised inside the job (it may clean up), at the hard one, `grace_s` later, the pool
    process running it is killed."""

    soft_s: float
    grace_s: float

    @property
    def hard_s(self) -> float:
        return self.soft_s + self.grace_s

    def header(self) -> list[float]:
        # Protocol 2's order: [hard, soft], as as_task_v2 writes (time_limit, soft_time_limit).
        return [self.hard_s, self.soft_s]


def time_limit_of(max_run_s: int | None, grace_s: float) -> TimeLimit | None:
    """The time limits of a group's run; None (no limit, [None, None]) without max_run_s."""
    if not max_run_s or max_run_s <= 0:
        return None
    return TimeLimit(float(max_run_s), grace_s)


@dataclass(frozen=True)
class OrderMessage:
    """One order, ready to publish: the Celery headers and the serialized body."""

    order: RunOrder
    queue: str
    headers: dict[str, Any]
    body: str | bytes
    content_type: str
    content_encoding: str
    # Seconds until `expires`: send_task hands it to kombu as the message TTL (AMQP honours it).
    expiration_s: float

    @property
    def task_id(self) -> str:
        return str(self.headers["id"])


class OrderPublisher:
    """Builds order messages and publishes a batch of them through one producer."""

    def __init__(self, app: Celery) -> None:
        conf = app.conf
        self._app = app
        self._serializer: str = conf.task_serializer
        self._compression: str | None = conf.task_compression
        self._delivery_mode = conf.task_default_delivery_mode
        self._retry: bool = conf.task_publish_retry
        self._retry_policy = dict(conf.task_publish_retry_policy or {})
        self._kwargsrepr_max: int = app.amqp.kwargsrepr_maxsize
        self._argsrepr = saferepr(
            (), app.amqp.argsrepr_maxsize, maxlevels=conf.task_repr_maxlevels
        )

    def message(
        self,
        order: RunOrder,
        queue: str,
        expires: datetime,
        now: datetime,
        expires_header: bool = True,
        time_limit: TimeLimit | None = None,
    ) -> OrderMessage:
        """The message send_task would build for `order`, expiring at `expires`; `now` is
        the sending time its TTL counts from. Without `expires_header` the worker does not
        judge the expiry (its clock may be off; the fence does), the broker's TTL stays.
        `time_limit` becomes Celery's own per-message `timelimit` header (send_task's
        `soft_time_limit`/`time_limit`), which a prefork worker enforces."""
        kwargs = order.to_kwargs()
        payload = ((), kwargs, _EMBED)  # args, kwargs, embed: protocol 2's body
        content_type, content_encoding, body = dumps(payload, self._serializer)  # type: ignore[no-untyped-call]
        headers = self._headers(order, kwargs, expires if expires_header else None)
        if time_limit is not None:
            headers["timelimit"] = time_limit.header()
        if self._compression:
            # Here, as kombu's Producer does it, so every publish path sends the same bytes.
            body, headers["compression"] = compress(body, self._compression)  # type: ignore[no-untyped-call]
        return OrderMessage(
            order=order,
            queue=queue,
            headers=headers,
            body=body,
            content_type=content_type,
            content_encoding=content_encoding,
            # send_task's rule: an expiry already past becomes 0, "expire on arrival".
            expiration_s=max(0.0, (expires - now).total_seconds()),
        )

    def _headers(
        self, order: RunOrder, kwargs: dict[str, Any], expires: datetime | None
    ) -> dict[str, Any]:
        task_id = celery_task_id(order.task_id, order.attempt, order.shard)
        # Keys and order as in celery.app.amqp.AMQP.as_task_v2.
        return {
            "lang": "py",
            "task": job_task_name(order.job_name),
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None if expires is None else expires.isoformat(),
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": self._argsrepr,
            "kwargsrepr": kwargs_repr(kwargs, self._kwargsrepr_max),
            "origin": anon_nodename(),
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }

    def publish(
        self,
        producer: Any,
        messages: Iterable[OrderMessage],
        on_sent: Callable[[OrderMessage], None],
    ) -> None:
        """Publish `messages` in order; `on_sent` hears of each one once it is known to be
        out. An iterator is consumed a round trip's worth at a time, so the first orders
        leave before the last are built. An exception leaves the rest unconfirmed: a batch
        whose round trip failed may have been delivered in part or whole (kombu's
        BatchPublishError says "uncertain"), so the caller treats every unconfirmed
        message as possibly delivered."""
        reply_to = self._app.thread_oid
        # fss.redis_transport's channel (not imported here: kombu's Redis transport needs
        # packages that a broker check at start reports, fss.celery_app.check_broker_transport).
        if callable(getattr(producer.channel, "push_many", None)):
            self._push_all(producer, producer.channel, messages, on_sent, reply_to)
            return
        if not _batching(producer):
            for message in messages:
                self._publish_one(producer, message, reply_to)
                on_sent(message)
            return
        for chunk in _chunks(messages):
            # Sent in one round trip when the block ends without error; dropped unsent when
            # it raises.
            with producer.batch(max_size=len(chunk) * COMMANDS_PER_MESSAGE):
                for message in chunk:
                    self._publish_one(producer, message, reply_to)
            for message in chunk:
                on_sent(message)

    def _push_all(
        self,
        producer: Any,
        channel: Any,
        messages: Iterable[OrderMessage],
        on_sent: Callable[[OrderMessage], None],
        reply_to: str,
    ) -> None:
        """Redis (fss.redis_transport): what `_publish_one` in a `producer.batch` puts on the
        lists, one pipeline per chunk, without kombu's Producer layers per message (its
        publish was half of the scheduler's cost per order). A chunk is confirmed once its
        pipeline returned; one that raised may have been delivered in part."""
        for chunk in _chunks(messages):
            prepared = []
            for message in chunk:
                queue = self._app.amqp.queues[message.queue]
                if _undeclared(producer, queue):
                    producer.maybe_declare(queue, retry=self._retry, **self._retry_policy)
                properties = {
                    "correlation_id": message.task_id,
                    "reply_to": reply_to,
                    "delivery_mode": maybe_delivery_mode(  # type: ignore[no-untyped-call]
                        queue.exchange.delivery_mode
                        or self._delivery_mode
                        or producer.exchange.delivery_mode
                    ),
                    "expiration": str(int(message.expiration_s * 1000)),
                }
                envelope = channel.prepare_message(
                    message.body,
                    0,
                    message.content_type,
                    message.content_encoding,
                    message.headers,
                    properties,
                )
                prepared.append((message.queue, envelope))
            channel.push_many(prepared)
            for message in chunk:
                on_sent(message)

    def _publish_one(self, producer: Any, message: OrderMessage, reply_to: str) -> None:
        # The arguments send_task's send_task_message passes to Producer.publish.
        queue = self._app.amqp.queues[message.queue]
        producer.publish(
            message.body,
            exchange="",
            routing_key=message.queue,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            retry=self._retry,
            retry_policy=self._retry_policy,
            delivery_mode=queue.exchange.delivery_mode or self._delivery_mode,
            declare=[queue] if _undeclared(producer, queue) else [],
            headers=message.headers,
            timeout=None,
            confirm_timeout=None,
            correlation_id=message.task_id,
            reply_to=reply_to,
            expiration=message.expiration_s,
        )


def kwargs_repr(kwargs: dict[str, Any], max_chars: int) -> str:
    """The order's `kwargsrepr` header (what Flower and `celery inspect` show): Python's repr,
    cut at Celery's size limit. Celery's default, saferepr, is a pure-Python walk that cost
    7% of the scheduler's CPU at 900 orders/s; send_task takes any text here
    (`kwargsrepr=`), and the data of an order is plain JSON, which repr shows exactly."""
    text = repr(kwargs)
    return text if len(text) <= max_chars else text[: max(0, max_chars - 3)] + "..."


def _undeclared(producer: Any, queue: Any) -> bool:
    """Whether kombu's declaration cache lacks `queue` on the producer's connection: the
    test kombu's maybe_declare makes, without the bound copy of the queue it builds first
    for every message (6% of the scheduler's CPU at 800 orders/s)."""
    connection = producer.channel.connection
    if connection is None or not queue.can_cache_declaration:
        return True
    return hash(queue) not in connection.client.declared_entities


def _chunks(messages: Iterable[OrderMessage]) -> Iterator[list[OrderMessage]]:
    pending, size = iter(messages), FIRST_BATCH_ORDERS
    while chunk := list(islice(pending, size)):
        yield chunk
        size = min(2 * size, BATCH_ORDERS)


def _batching(producer: Any) -> bool:
    """Whether `producer` buffers publishes (kombu >= 5.7 on a transport that batches)."""
    return hasattr(producer, "batch") and bool(producer.supports_batch_publish)
