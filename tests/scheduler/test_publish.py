"""The dispatcher's own protocol-2 messages (fss.scheduler.publish): on the wire they are what
Celery's `send_task` put there for the same order, a Celery worker runs them under the same
task id and drops them once expired, and a tick's orders go out together. Real Redis (and
RabbitMQ when one answers on 5672), a real Celery worker; no mocks."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from hypothesis import given
from hypothesis import strategies as st
from kombu import Connection
from kombu.compression import decompress
from kombu.exceptions import BatchPublishError
from servers import wait_for

from fss.celery_app import create_app
from fss.config import Settings
from fss.naming import celery_task_id, client_queue, job_task_name
from fss.orders import RunOrder
from fss.scheduler.publish import (
    BATCH_ORDERS,
    FIRST_BATCH_ORDERS,
    OrderMessage,
    OrderPublisher,
    TimeLimit,
    _undeclared,
    kwargs_repr,
    time_limit_of,
)

QUEUE = client_queue("c1")
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
# JSON a user may put in a group's data: quotes, unicode, nesting past saferepr's 3 levels,
# a string past its 1024 characters.
ODD_DATA = {
    "quote": "it's \"quoted\" \\ here",
    "unicode": "zażółć gęślą jaźń",
    "deep": {"a": {"b": {"c": [1, 2.5, None, True]}}},
    "long": "x" * 2000,
}


def _order(task_id: int = 7, data: dict[str, Any] | None = None, job: str = "probe") -> RunOrder:
    start = datetime.now(timezone.utc).replace(microsecond=123456)
    return RunOrder(task_id, 1, 70 + task_id, job, "c1", start, data or {})


def _send_task(
    app: Celery,
    order: RunOrder,
    expires: datetime,
    limit: TimeLimit | None = None,
    queue: str = QUEUE,
) -> None:
    """The dispatcher's former call, one order at a time."""
    limits = {} if limit is None else {"time_limit": limit.hard_s, "soft_time_limit": limit.soft_s}
    with app.producer_or_acquire() as producer:
        app.send_task(
            job_task_name(order.job_name),
            kwargs=order.to_kwargs(),
            queue=queue,
            task_id=celery_task_id(order.task_id, order.attempt),
            expires=expires,
            producer=producer,
            kwargsrepr=kwargs_repr(order.to_kwargs(), app.amqp.kwargsrepr_maxsize),
            **limits,
        )


def _publish(
    app: Celery,
    orders: list[RunOrder],
    expires: datetime,
    limit: TimeLimit | None = None,
    queue: str = QUEUE,
) -> list[str]:
    """Publish `orders` the new way; the ids of those confirmed sent, in order."""
    publisher = OrderPublisher(app)
    now = datetime.now(timezone.utc)
    messages = [
        publisher.message(order, queue, expires, now, time_limit=limit) for order in orders
    ]
    sent: list[str] = []

    def confirmed(message: OrderMessage) -> None:
        sent.append(message.task_id)

    with app.producer_or_acquire() as producer:
        publisher.publish(producer, messages, on_sent=confirmed)
    return sent


@pytest.fixture
def app(url: str) -> Iterator[Celery]:
    made = create_app(Settings(database_url="sqlite://", broker_url=url))
    yield made
    made.close()


def _queued(raw: redis.Redis) -> list[dict[str, Any]]:
    """The queue's raw kombu envelopes, oldest first (kombu LPUSHes, workers BRPOP)."""
    return [json.loads(item) for item in reversed(raw.lrange(QUEUE, 0, -1))]


def _without_send_time(envelope: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The envelope less what differs per send (kombu's random delivery tag), and the TTL
    in ms that send_task counted from its own clock reading."""
    properties = dict(envelope["properties"])
    del properties["delivery_tag"]
    # send_task passes its kwargsrepr option on as a message property too; the header is
    # what Celery reads (compared), the property a by-product.
    properties.pop("kwargsrepr", None)
    ttl_ms = int(properties.pop("expiration"))
    return {**envelope, "properties": properties}, ttl_ms


# --- the message ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "compression"),
    [({}, None), (ODD_DATA, None), (ODD_DATA, "gzip")],
    ids=["empty", "odd", "odd-gzip"],
)
def test_given_an_order_then_its_message_on_redis_is_the_one_send_task_made(
    app: Celery, raw: redis.Redis, data: dict[str, Any], compression: str | None
) -> None:
    app.conf.task_compression = compression
    order = _order(data=data)
    expires = order.start_at + timedelta(seconds=30)

    _send_task(app, order, expires)
    _publish(app, [order], expires)

    before, after = (_without_send_time(e) for e in _queued(raw))
    assert after[0] == before[0]
    assert abs(after[1] - before[1]) < 2000  # the same expiry, read from two clocks
    body = base64.b64decode(after[0]["body"])
    if compression:
        body = decompress(body, after[0]["headers"]["compression"])
    assert json.loads(body) == [[], order.to_kwargs(), {
        "callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert after[0]["headers"]["id"] == "fss-7-1"
    assert after[0]["headers"]["expires"] == expires.isoformat()


def test_given_a_time_limit_then_the_timelimit_header_is_the_one_send_task_made(
    app: Celery, raw: redis.Redis
) -> None:
    order = _order()
    expires = order.start_at + timedelta(seconds=30)
    limit = time_limit_of(5, 10.0)
    assert limit is not None

    _send_task(app, order, expires, limit)
    _publish(app, [order], expires, limit)

    before, after = (_without_send_time(e) for e in _queued(raw))
    assert after[0] == before[0]
    assert after[0]["headers"]["timelimit"] == [15.0, 5.0]  # [hard, soft]


@given(max_run_s=st.integers(min_value=-5, max_value=10**7), grace=st.floats(0, 3600))
def test_time_limits_are_soft_at_max_run_s_and_hard_a_grace_later(
    max_run_s: int, grace: float
) -> None:
    limit = time_limit_of(max_run_s, grace)
    if max_run_s <= 0:
        assert limit is None  # no max_run_s: [None, None], as today
        return
    assert limit is not None
    assert limit.header() == [max_run_s + grace, float(max_run_s)]
    assert time_limit_of(None, grace) is None


def test_given_an_expiry_already_past_then_the_ttl_is_zero_as_send_task_makes_it(
    app: Celery, raw: redis.Redis
) -> None:
    order = _order()
    _publish(app, [order], order.start_at - timedelta(seconds=5))

    (envelope,) = _queued(raw)
    assert envelope["properties"]["expiration"] == "0"


def _amqp_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _amqp_reachable(), reason="no RabbitMQ on 127.0.0.1:5672 (optional)")
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_given_rabbitmq_then_messages_go_one_by_one_and_match_send_task(
    compression: str | None,
) -> None:
    app = create_app(Settings(database_url="sqlite://", broker_url=AMQP_URL))
    app.conf.task_compression = compression
    order = _order(task_id=int(datetime.now().timestamp() * 1000) % 10**9, data=ODD_DATA)
    expires = order.start_at + timedelta(seconds=30)
    # A queue of this test's own: the RabbitMQ server is shared with tests running beside
    # it (the other compression's run read this one's message from a common queue in CI).
    name = client_queue(f"c1-{uuid.uuid4().hex}")
    try:
        with Connection(AMQP_URL) as conn:
            queue = app.amqp.queues[name](conn.default_channel)
            queue.declare()
            with app.producer_or_acquire() as producer:
                assert not producer.supports_batch_publish  # the generic path
            _send_task(app, order, expires, queue=name)
            assert _publish(app, [order], expires, queue=name) == [f"fss-{order.task_id}-1"]
            before, after = _get_two(queue)
            queue.delete()
    finally:
        app.close()
    assert (after.headers, after.body) == (before.headers, before.body)
    assert (after.content_type, after.content_encoding) == ("application/json", "utf-8")
    assert {k: v for k, v in after.properties.items() if k != "expiration"} == {
        k: v for k, v in before.properties.items() if k != "expiration"
    }
    assert abs(int(after.properties["expiration"]) - int(before.properties["expiration"])) < 2000


@pytest.mark.skipif(not _amqp_reachable(), reason="no RabbitMQ on 127.0.0.1:5672 (optional)")
def test_given_a_client_queue_not_declared_yet_then_its_first_order_declares_it_once() -> None:
    """RabbitMQ drops a message for a queue that does not exist: an order that arrives
    proves the publisher declared the queue; the second one goes out from kombu's cache."""
    app = create_app(Settings(database_url="sqlite://", broker_url=AMQP_URL))
    name = client_queue(f"fresh-{uuid.uuid4().hex}")
    publisher = OrderPublisher(app)
    first, second = _order(task_id=1), _order(task_id=2)
    expires = first.start_at + timedelta(seconds=30)
    try:
        with Connection(AMQP_URL) as conn:
            queue = app.amqp.queues[name](conn.default_channel)
            queue.delete()
            with app.producer_or_acquire() as producer:
                assert _undeclared(producer, app.amqp.queues[name])
                for order in (first, second):
                    message = publisher.message(order, name, expires, datetime.now(timezone.utc))
                    publisher.publish(producer, [message], on_sent=lambda _: None)
                    assert not _undeclared(producer, app.amqp.queues[name])
            got = _get_two(queue)
            queue.delete()
    finally:
        app.close()
    assert [m.headers["id"] for m in got] == ["fss-1-1", "fss-2-1"]


def _get_two(queue: Any) -> list[Any]:
    got: list[Any] = []

    def both() -> bool:
        message = queue.get(no_ack=True)
        if message is not None:
            got.append(message)
        return len(got) == 2

    wait_for(both, timeout=5, what="both messages routed")
    return got


def test_kwargsrepr_is_the_repr_of_the_kwargs_cut_at_celerys_limit() -> None:
    kwargs = _order(data=ODD_DATA).to_kwargs()
    assert kwargs_repr({"a": 1}, 1024) == "{'a': 1}"
    cut = kwargs_repr(kwargs, 1024)
    assert len(cut) == 1024 and cut.endswith("...") and cut[:-3] == repr(kwargs)[:1021]
    assert eval(kwargs_repr(_order(data={"deep": ODD_DATA["deep"]}).to_kwargs(), 1024)) == (
        _order(data={"deep": ODD_DATA["deep"]}).to_kwargs()
    )


# --- the batch ------------------------------------------------------------------------------


def test_given_more_orders_than_one_batch_then_all_go_out_once_in_order(
    app: Celery, raw: redis.Redis
) -> None:
    orders = [_order(task_id=i) for i in range(1, BATCH_ORDERS + 12)]
    expires = orders[0].start_at + timedelta(seconds=30)

    sent = _publish(app, orders, expires)

    ids = [f"fss-{i}-1" for i in range(1, BATCH_ORDERS + 12)]
    assert sent == ids
    assert [e["headers"]["id"] for e in _queued(raw)] == ids


def test_given_a_broker_that_refuses_the_pushes_then_nothing_is_confirmed(
    url: str, raw: redis.Redis, acl_user: Callable[[str], str]
) -> None:
    # An account that may do everything kombu does but LPUSH: the queue declaration works,
    # the batch's round trip fails.
    app = create_app(Settings(database_url="sqlite://", broker_url=acl_user(url)))
    orders = [_order(task_id=i) for i in range(1, 4)]
    sent: list[str] = []
    try:
        # kombu's batch says "delivery is uncertain"; fss's own pipeline raises Redis's error.
        with pytest.raises((BatchPublishError, redis.RedisError)):
            publisher = OrderPublisher(app)
            now = datetime.now(timezone.utc)
            messages = [publisher.message(o, QUEUE, now + timedelta(seconds=30), now)
                        for o in orders]
            with app.producer_or_acquire() as producer:
                assert producer.supports_batch_publish
                publisher.publish(producer, messages, on_sent=lambda m: sent.append(m.task_id))
    finally:
        app.close()
    assert sent == []
    assert raw.llen(QUEUE) == 0


@pytest.fixture
def acl_user(raw: redis.Redis) -> Iterator[Callable[[str], str]]:
    """Factory: `url` logged in as a fresh Redis user that may not LPUSH (dropped after)."""
    names: list[str] = []

    def make(url: str) -> str:
        name = f"fss-test-nolpush-{len(names)}-{socket.gethostname()}-{id(names)}"
        raw.acl_setuser(name, enabled=True, nopass=True, keys=["*"], channels=["*"],
                        categories=["+@all"], commands=["-lpush"])
        names.append(name)
        return url.replace("redis://", f"redis://{name}:x@", 1)

    yield make
    for name in names:
        raw.acl_deluser(name)


# --- a Celery worker ------------------------------------------------------------------------


def test_given_a_celery_worker_then_it_runs_the_order_and_drops_an_expired_one(
    app: Celery,
) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []

    @app.task(name=job_task_name("probe"), bind=True)
    def probe(self: Any, **order: Any) -> None:
        ran.append((self.request.id, order))

    expired, fresh = _order(task_id=1), _order(task_id=2)
    now = datetime.now(timezone.utc)
    _publish(app, [expired], now - timedelta(seconds=1))
    _publish(app, [fresh], now + timedelta(seconds=30))
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[QUEUE],
                      shutdown_timeout=10):
        wait_for(lambda: len(ran) >= 1, timeout=20, what="the fresh order to run")
    # The solo worker takes them in order: the expired one came first and was dropped.
    assert ran == [("fss-2-1", fresh.to_kwargs())]


def test_given_a_burst_then_the_first_orders_leave_together_before_the_rest_is_built(
    app: Celery, raw: redis.Redis
) -> None:
    publisher = OrderPublisher(app)
    now = datetime.now(timezone.utc)
    orders = [_order(task_id=i) for i in range(1, 41)]
    events: list[tuple[str, int]] = []
    queued_at_first_confirmation: list[int] = []

    def built() -> Iterator[OrderMessage]:
        for order in orders:
            events.append(("built", order.task_id))
            yield publisher.message(order, QUEUE, now + timedelta(seconds=30), now)

    def confirmed(message: OrderMessage) -> None:
        if not queued_at_first_confirmation:
            queued_at_first_confirmation.append(raw.llen(QUEUE))
        events.append(("sent", message.order.task_id))

    with app.producer_or_acquire() as producer:
        publisher.publish(producer, built(), on_sent=confirmed)

    # One round trip carried the first FIRST_BATCH_ORDERS, confirmed once they had landed
    # and before the next one was built.
    assert queued_at_first_confirmation == [FIRST_BATCH_ORDERS]
    assert events.index(("sent", 1)) < events.index(("built", FIRST_BATCH_ORDERS + 1))
    assert [e for e in events if e[0] == "sent"] == [("sent", o.task_id) for o in orders]
    assert raw.llen(QUEUE) == len(orders)
