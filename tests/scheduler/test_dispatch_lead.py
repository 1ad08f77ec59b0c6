"""Orders readied ahead of their time (Settings.dispatch_lead_ms) and held until it: never
sent early, and none lost when the scheduler holding them is killed, stopped or stands down.
Real database, real Redis (queues and fence), an injected clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import ClientHeartbeat
from fss.fence import RedisFence
from fss.naming import client_queue, fence_key
from fss.scheduler.service import SchedulerService
from fss.store import groups
from fss.store.engine import create_engine
from fss.store.recording import upsert_client
from fss.store.tables import task

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=timezone.utc)
LEAD = timedelta(milliseconds=20)


@dataclass
class Cluster:
    engine: Engine
    clock: ManualClock
    redis: redis.Redis
    nodes: dict[str, SchedulerService]

    def register(self, client_id: str) -> None:
        beat = ClientHeartbeat(client_id, "host", "127.0.0.1", 1, ("job-a",),
                               client_queue(client_id), self.clock.now())
        with self.engine.begin() as conn:
            upsert_client(conn, beat, self.clock.now())

    def add_group(self, start_in: timedelta, **spec: Any) -> int:
        values: dict[str, Any] = {"caption": "g", "job_name": "job-a", "interval_ms": 60_000}
        values.update(spec)
        values["start_at"] = self.clock.now() + start_in
        group_id = groups.add_group(self.engine, GroupSpec(**values), self.clock.now())
        return group_id

    def row(self, group_id: int) -> sa.Row[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(task).where(task.c.task_group_id == group_id).order_by(task.c.id)
            ).first()  # type: ignore[return-value]

    def queued(self) -> int:
        return int(self.redis.llen(client_queue("c1")))


@contextmanager
def cluster_of(database_url: str, broker: str, *names: str) -> Iterator[Cluster]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    fence = RedisFence(broker)
    apps = []
    nodes = {}
    for name in names:
        settings = Settings(database_url=database_url, broker_url=broker, node_name=name)
        app = create_app(settings)
        apps.append(app)
        nodes[name] = SchedulerService(settings, engine, app, fence, clock)
    client = redis.Redis.from_url(broker)
    try:
        yield Cluster(engine, clock, client, nodes)
    finally:
        client.close()
        fence.close()
        for app in apps:
            app.close()
        engine.dispose()


@pytest.fixture
def cluster(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Cluster]:
    with cluster_of(database_url, fresh_redis_url(), "node-a", "node-b") as c:
        yield c


def ready_on_a(c: Cluster, start_in: timedelta = timedelta(seconds=1)) -> tuple[int, int]:
    """A group due in `start_in`, claimed by node-a and readied (held) LEAD before its time.
    Returns (group id, task id)."""
    c.register("c1")
    group_id = c.add_group(start_in)
    a = c.nodes["node-a"]
    a.beat()
    a.tick()  # claims it
    c.clock.set(T0 + start_in - LEAD)
    c.register("c1")
    assert a.tick() == pytest.approx(LEAD.total_seconds())  # sleeps until its start_at
    row = c.row(group_id)
    assert row.status == TaskStatus.SCHEDULER and row.server_node == "node-a"
    assert row.dispatched_at == T0 + start_in  # stamped when it is sent
    assert c.redis.get(fence_key(int(row.id))) == b"1"
    assert c.queued() == 0 and a.dispatcher.held() == 1
    return group_id, int(row.id)


def test_a_held_order_goes_out_at_its_time_and_only_once(cluster: Cluster) -> None:
    c = cluster
    ready_on_a(c)
    a = c.nodes["node-a"]
    for step_ms in (5, 5, 9):
        c.clock.advance(step_ms / 1000)
        a.tick()
        assert c.queued() == 0  # 1 ms before its time: still held
    c.clock.advance(0.001)
    a.tick()
    a.tick()
    assert c.queued() == 1 and a.dispatcher.held() == 0 and a.sent == 1
    c.nodes["node-b"].tick()  # the peer has nothing to do with it
    assert c.queued() == 1


def test_a_scheduler_killed_while_holding_an_order_its_peer_sends_it_again(
    cluster: Cluster,
) -> None:
    c = cluster
    group_id, task_id = ready_on_a(c)
    b = c.nodes["node-b"]
    b.beat()
    # node-a is killed with the order in hand: it never sends, never beats again.
    for _ in range(12):  # past node-a's lease and the send grace
        c.clock.advance(0.5)
        c.register("c1")
        b.beat()
        b.tick()  # its claim poll: nothing to claim yet
        if b.supervisor.sweep().redispatched == [task_id]:
            break
    else:
        raise AssertionError("the peer's supervisor never took the held order back")
    assert c.queued() == 0
    b.tick()  # at once, not at its next claim poll: the sweep woke the loop
    row = c.row(group_id)
    assert int(row.id) == task_id
    assert row.server_node == "node-b" and row.attempt == 2  # attempt 1 revoked
    assert c.redis.get(fence_key(task_id)) == b"2"
    assert c.queued() == 1  # the peer's order; node-a's never went out


def test_a_stopped_scheduler_sends_its_held_orders_at_their_time(cluster: Cluster) -> None:
    c = cluster
    _, task_id = ready_on_a(c)
    a = c.nodes["node-a"]
    a.stop(timeout_s=1)
    assert c.queued() == 1 and a.dispatcher.held() == 0
    assert c.redis.get(fence_key(task_id)) == b"1"


class _NotOurBroker:
    """The installation guard of a node whose broker turned out to be another
    installation's (fss.installation.InstallationGuard's answer)."""

    may_dispatch = False


def test_a_scheduler_standing_down_takes_its_held_orders_back(cluster: Cluster) -> None:
    c = cluster
    group_id, task_id = ready_on_a(c)
    a = c.nodes["node-a"]
    a.guard = _NotOurBroker()  # type: ignore[assignment]
    a.tick()
    row = c.row(group_id)
    assert row.status == TaskStatus.NONE and row.claimed_by is None
    assert c.queued() == 0 and a.dispatcher.held() == 0
    assert c.redis.get(fence_key(task_id)) == b"revoked:1"
    # A peer on the right broker runs it, under a new attempt.
    b = c.nodes["node-b"]
    c.clock.advance(LEAD.total_seconds())
    c.register("c1")
    b.tick()
    assert c.queued() == 1 and c.row(group_id).attempt == 2


def test_a_task_due_within_the_lead_of_another_is_held_apart(cluster: Cluster) -> None:
    """Two tasks readied in one tick, 10 ms apart: each leaves at its own time."""
    c = cluster
    c.register("c1")
    first = c.add_group(timedelta(seconds=1))
    second = c.add_group(timedelta(seconds=1, milliseconds=10))
    a = c.nodes["node-a"]
    a.tick()
    c.clock.set(T0 + timedelta(seconds=1) - LEAD + timedelta(milliseconds=10))
    c.register("c1")
    a.tick()
    assert a.dispatcher.held() == 2 and c.queued() == 0
    c.clock.set(T0 + timedelta(seconds=1))
    a.tick()
    assert c.queued() == 1 and a.dispatcher.held() == 1
    c.clock.set(T0 + timedelta(seconds=1, milliseconds=9))
    a.tick()
    assert c.queued() == 1
    c.clock.set(T0 + timedelta(seconds=1, milliseconds=10))
    a.tick()
    assert c.queued() == 2 and a.dispatcher.held() == 0
    assert {c.row(first).status, c.row(second).status} == {TaskStatus.SCHEDULER}
