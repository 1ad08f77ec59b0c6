"""The worker's Celery app: on Redis its orders skip kombu's ack emulation (the supervisor and
the fence cover an order a killed worker took), and a graceful stop still puts them back."""

from __future__ import annotations

from collections.abc import Callable

from kombu import Connection
from kombu.simple import SimpleQueue

from fss.config import Settings
from fss.worker_sdk.job import JobSpec
from fss.worker_sdk.worker import build_worker_app


def noop(ctx: object) -> None:
    return None


JOBS = {"noop": JobSpec("noop", noop)}


def test_on_redis_the_worker_consumes_orders_without_ack_emulation(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    app, _runtime = build_worker_app(Settings(database_url="sqlite://", broker_url=url), JOBS, "w1")
    assert app.conf.broker_transport_options["ack_emulation"] is False
    with app.connection_for_read() as conn:
        queue = SimpleQueue(conn, "fss.test.orders")
        for body in ("a", "b"):
            queue.put(body)
        taken = queue.get(timeout=2)
        assert taken.payload == "a"
        client = conn.default_channel.client
        assert client.hlen("unacked") == 0  # no per-order bookkeeping on the broker
        queue.close()  # a graceful stop: what was taken and not acked goes back
    with Connection(url) as conn:
        queue = SimpleQueue(conn, "fss.test.orders")
        back = sorted(queue.get(timeout=2).payload for _ in range(2))
        queue.close()
    assert back == ["a", "b"]


def test_other_brokers_keep_their_transport_options() -> None:
    app, _runtime = build_worker_app(
        Settings(database_url="sqlite://", broker_url="memory://"), JOBS, "w1"
    )
    assert "ack_emulation" not in app.conf.broker_transport_options
