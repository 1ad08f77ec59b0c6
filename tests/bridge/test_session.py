"""A gRPC client's session on a real bridge (in-process, port 0) with a real Redis as broker
and fence, and a real Recorder writing what the bridge sends into SQLite: rows are the proof."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
import redis
import sqlalchemy as sa
from bridge_helpers import RawClient, Sent, dispatch, ready_channel
from celery import Celery
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.bridge.grpc_server import RunningBridge, start_bridge
from fss.bridge.proto.fss.v1 import fss_pb2
from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import SystemClock
from fss.domain.status import TaskStatus
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.scheduler.recorder import Recorder
from fss.store.engine import create_engine
from fss.store.tables import client, run_log, task

HEARTBEAT_S = 0.4
# liveness: min(3 x 0.4 s, 1.2 s) = 1.2 s: 0.3 s ended sessions of healthy clients on a
# loaded CI machine (their heartbeat thread, every 50 ms, was starved that long).
CLIENT_TIMEOUT_S = 1.2


@dataclass
class World:
    settings: Settings
    engine: Engine
    app: Celery
    fence: RedisFence
    bridge: RunningBridge
    channel: grpc.Channel
    redis: redis.Redis

    def client(self, name: str, concurrency: int = 1, read: bool = True) -> RawClient:
        raw = RawClient(self.channel, read=read)
        raw.register(name, concurrency=concurrency)
        raw.beating.set()
        return raw

    def dispatch(self, client_id: str, attempt_offset: int = 0) -> Sent:
        return dispatch(
            self.engine, self.app, self.fence, client_id, attempt_offset=attempt_offset
        )

    def task_row(self, task_id: int) -> sa.Row[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.id == task_id)).one()

    def client_row(self, client_id: str) -> sa.Row[tuple[object, ...]] | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(client).where(client.c.id == client_id)).one_or_none()

    def logs(self, task_id: int) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(run_log.c.log_level, run_log.c.content)
                .where(run_log.c.task_id == task_id)
                .order_by(run_log.c.id)
            )
            return [(int(r.log_level), str(r.content)) for r in rows]

    def status(self, task_id: int) -> TaskStatus:
        return TaskStatus(int(self.task_row(task_id).status))

    def queued(self, client_id: str) -> int:
        return int(self.redis.llen(client_queue(client_id)))


@pytest.fixture
def world(sqlite_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    settings = Settings(
        database_url=sqlite_url,
        broker_url=fresh_redis_url(),
        heartbeat_s=HEARTBEAT_S,
        client_timeout_s=CLIENT_TIMEOUT_S,
    )
    migrated_copy(sqlite_url)  # the schema at head: tests/servers.py
    engine = create_engine(sqlite_url)
    app = create_app(settings, main="fss-test-scheduler")
    fence = RedisFence(settings.broker_url)
    bridge = start_bridge(settings, listen="127.0.0.1:0")
    channel = ready_channel(bridge.address)
    broker = redis.Redis.from_url(settings.broker_url)
    stop = threading.Event()
    recorder = threading.Thread(
        target=Recorder(engine, settings, SystemClock()).run, args=(stop,), daemon=True
    )
    recorder.start()
    try:
        yield World(settings, engine, app, fence, bridge, channel, broker)
    finally:
        channel.close()
        bridge.stop(grace_s=2)
        stop.set()
        recorder.join(timeout=15)
        broker.close()
        fence.close()
        app.close()
        engine.dispose()


def test_given_a_registration_then_the_client_row_has_its_language_and_queue(world: World) -> None:
    raw = world.client("node-1")
    registered = raw.next("registered").registered
    assert registered.client_id == "node-1"
    assert registered.heartbeat_interval_ms == 400
    assert registered.liveness_timeout_ms == 1200
    wait_for(lambda: world.client_row("node-1") is not None, 5, what="client row")
    row = world.client_row("node-1")
    assert row is not None
    assert (row.language, row.queue, row.host, row.pid) == ("node", "fss.client.node-1", "h1", 42)
    raw.close()


def test_given_an_order_then_it_is_streamed_once_and_its_reports_land_in_the_tables(
    world: World,
) -> None:
    raw = world.client("node-2")
    raw.next("registered")
    sent = world.dispatch("node-2")
    order = raw.next("order").order
    assert (order.task_id, order.attempt, order.job_name) == (sent.task_id, sent.attempt, "j")
    assert order.deadline_unix_ms > order.start_at_unix_ms
    key = {"task_id": sent.task_id, "attempt": sent.attempt}
    raw.send(started=fss_pb2.Started(**key))
    raw.send(progress=fss_pb2.Progress(**key, progress=40))
    raw.send(log=fss_pb2.Log(**key, level=fss_pb2.WARNING, content="half way \U0001f680"))
    wait_for(lambda: world.task_row(sent.task_id).progress == 40, 5, what="progress 40")
    assert world.status(sent.task_id) == TaskStatus.WORKING
    raw.send(finished=fss_pb2.Finished(**key, success=True, data_json='{"n": 2}'))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.SUCCESS, 5, what="success")
    assert world.logs(sent.task_id) == [(3, "half way \U0001f680")]
    assert world.task_row(sent.task_id).run_speed is not None
    with pytest.raises(queue.Empty):
        raw.received.get(timeout=0.5)  # exactly one order, never sent again
    raw.close()


def test_given_a_report_about_a_task_never_sent_here_then_permission_denied(world: World) -> None:
    raw = world.client("node-3")
    raw.next("registered")
    raw.send(started=fss_pb2.Started(task_id=999, attempt=1))
    assert raw.wait_end() == grpc.StatusCode.PERMISSION_DENIED
    assert "task 999 attempt 1" in raw.call.details()


def test_given_a_first_message_other_than_register_then_invalid_argument(world: World) -> None:
    raw = RawClient(world.channel)
    raw.send(heartbeat=fss_pb2.Heartbeat(accepting=True))
    assert raw.wait_end() == grpc.StatusCode.INVALID_ARGUMENT
    assert raw.call.details() == "register: must be the first message"


@pytest.mark.parametrize(
    ("register", "field"),
    [
        ({"name": "bad name!", "job_names": ["j"]}, "name"),
        ({"name": "ok", "job_names": []}, "job_names"),
        ({"name": "ok", "job_names": ["bad job"]}, "job_name"),
        ({"name": "ok", "job_names": ["j"], "concurrency": 5000}, "concurrency"),
        ({"name": "ok", "job_names": ["j"], "language": "x" * 40}, "language"),
    ],
)
def test_given_a_bad_registration_then_invalid_argument_naming_the_field(
    world: World, register: dict[str, object], field: str
) -> None:
    raw = RawClient(world.channel)
    raw.send(register=fss_pb2.Register(**register))  # type: ignore[arg-type]
    assert raw.wait_end() == grpc.StatusCode.INVALID_ARGUMENT
    assert raw.call.details().startswith(f"{field}: ")


def running_order(world: World, name: str) -> tuple[RawClient, Sent, dict[str, int]]:
    raw = world.client(name)
    raw.next("registered")
    sent = world.dispatch(name)
    raw.next("order")
    key = {"task_id": sent.task_id, "attempt": sent.attempt}
    raw.send(started=fss_pb2.Started(**key))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.WORKING, 5, what="working")
    return raw, sent, key


def assert_only_the_bridge_logged_the_end(world: World, task_id: int) -> None:
    """The refused report left no trace; the run log says only why the run failed."""
    logs = world.logs(task_id)
    assert len(logs) == 1, logs
    level, content = logs[0]
    assert level == 4 and "disconnected while running attempt 1" in content


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"progress": fss_pb2.Progress(progress=150)}, "progress"),
        ({"log": fss_pb2.Log(level=9, content="x")}, "level"),
        ({"log": fss_pb2.Log(level=2, content="x" * (16 * 1024 + 1))}, "content"),
        ({"finished": fss_pb2.Finished(success=True, data_json="[1]")}, "data_json"),
        ({"finished": fss_pb2.Finished(success=True, data_json="{")}, "data_json"),
        ({"finished": fss_pb2.Finished(success=False, error="e" * 17000)}, "error"),
        ({"finished": fss_pb2.Finished(success=True, next_at_unix_ms=2**62)}, "next_at_unix_ms"),
    ],
)
def test_given_a_bad_report_then_invalid_argument_and_no_partial_event(
    world: World, report: dict[str, object], field: str
) -> None:
    raw, sent, key = running_order(world, f"bad-{field}")
    (kind, message), = report.items()
    for name, value in key.items():
        setattr(message, name, value)
    raw.send(**{kind: message})
    assert raw.wait_end() == grpc.StatusCode.INVALID_ARGUMENT
    assert raw.call.details().startswith(f"{field}: ")
    # The session ended: the run is failed by the bridge, never half-written by the report.
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    row = world.task_row(sent.task_id)
    assert row.progress == 0 and "disconnected while running attempt 1" in str(row.error)
    assert_only_the_bridge_logged_the_end(world, sent.task_id)


def test_given_a_10_mb_log_line_then_resource_exhausted_and_the_bridge_serves_on(
    world: World,
) -> None:
    raw, sent, key = running_order(world, "big")
    raw.send(log=fss_pb2.Log(**key, level=2, content="x" * 10_000_000))
    assert raw.wait_end() == grpc.StatusCode.RESOURCE_EXHAUSTED
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    assert_only_the_bridge_logged_the_end(world, sent.task_id)
    other = world.client("after-big")
    assert other.next("registered").registered.client_id == "after-big"
    other.close()


def test_given_a_silent_client_then_its_session_ends_its_run_fails_and_it_leaves(
    world: World,
) -> None:
    raw, sent, _ = running_order(world, "silent")
    assert world.client_row("silent") is not None
    raw.beating.clear()
    assert raw.wait_end() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    assert "the gRPC client silent disconnected while running attempt 1" in str(
        world.task_row(sent.task_id).error
    )
    wait_for(lambda: world.client_row("silent") is None, 5, what="client row removed")


def test_given_a_stale_attempt_on_the_queue_then_it_is_never_streamed(world: World) -> None:
    raw = world.client("stale")
    raw.next("registered")
    stale = world.dispatch("stale", attempt_offset=1)  # armed: attempt 1, message: attempt 0
    current = world.dispatch("stale")
    order = raw.next("order").order
    assert (order.task_id, order.attempt) == (current.task_id, current.attempt)
    wait_for(lambda: world.queued("stale") == 0, 5, what="stale message consumed")
    assert world.fence.holder(stale.task_id, stale.attempt) is None
    with pytest.raises(queue.Empty):
        raw.received.get(timeout=0.5)
    raw.close()


def test_given_a_client_that_never_reads_then_at_most_concurrency_orders_are_taken(
    world: World,
) -> None:
    raw = world.client("deaf", concurrency=2, read=False)
    wait_for(lambda: world.client_row("deaf") is not None, 5, what="client row")
    sent = [world.dispatch("deaf") for _ in range(5)]
    wait_for(lambda: world.queued("deaf") == 3, 5, what="two orders taken")
    entered = [s for s in sent if world.fence.holder(s.task_id, s.attempt) is not None]
    threading.Event().wait(0.5)  # several heartbeats later, still only two
    assert world.queued("deaf") == 3
    assert len(entered) == 2
    raw.cancel()


def test_given_a_second_session_under_the_same_name_then_the_first_is_kicked(
    world: World,
) -> None:
    first, sent, key = running_order(world, "twice")
    second = world.client("twice")
    second.next("registered")
    assert first.next("kicked").kicked.reason == "another session registered as twice"
    assert first.wait_end() == grpc.StatusCode.ABORTED
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    # The reconnected client reports on the run it lost: dropped, its new session lives on.
    second.send(progress=fss_pb2.Progress(**key, progress=90))
    second.send(finished=fss_pb2.Finished(**key, success=True))
    threading.Event().wait(0.5)  # and the first session emitted no `left`: the row stays
    assert not second.ended.is_set(), second.call.details()
    assert world.client_row("twice") is not None
    assert world.status(sent.task_id) == TaskStatus.FAIL
    second.close()


def test_given_the_bridge_stops_then_running_orders_are_cancelled_and_failed(
    world: World,
) -> None:
    raw, sent, _ = running_order(world, "stopping")
    world.bridge.stop(grace_s=2)
    cancel = raw.next("cancel").cancel
    assert (cancel.task_id, cancel.attempt) == (sent.task_id, sent.attempt)
    assert raw.next("kicked").kicked.reason == "bridge stopping"
    assert raw.wait_end() == grpc.StatusCode.UNAVAILABLE
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    wait_for(lambda: world.client_row("stopping") is None, 5, what="client left")
