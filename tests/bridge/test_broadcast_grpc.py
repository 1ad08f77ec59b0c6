"""Route broadcast on gRPC clients, through the whole path: a real scheduler service
(dispatcher, recorder, supervisor) in-process, a real bridge, two real gRPC clients, Redis and
PostgreSQL. Each client gets one shard of the run with its index and the total, its reports
land on its own shard row, and `fss task kill` of the run sends each client `cancel`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from bridge_helpers import RawClient, ready_channel
from servers import migrated_copy, wait_for

from fss.bridge.grpc_server import RunningBridge, start_bridge
from fss.bridge.proto.fss.v1 import fss_pb2
from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import SystemClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.fence import RedisFence
from fss.kills import kill_task
from fss.scheduler.service import SchedulerService
from fss.store import groups
from fss.store.engine import create_engine
from fss.store.tables import client, task, task_run

CLIENTS = ("bc-a", "bc-b")


@dataclass
class World:
    settings: Settings
    engine: sa.Engine
    bridge: RunningBridge
    channel: grpc.Channel

    def client(self, name: str) -> RawClient:
        raw = RawClient(self.channel)
        raw.register(name)
        raw.beating.set()
        raw.next("registered")
        return raw

    def broadcast_group(self) -> int:
        now = datetime.now(timezone.utc)
        spec = GroupSpec(caption="bc", job_name="j", interval_ms=3_600_000, start_at=now,
                         route="broadcast")
        return groups.add_group(self.engine, spec, now)

    def task_of(self, group_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(task).where(task.c.task_group_id == group_id).order_by(task.c.id)
            ).first()

    def shards(self, task_id: int) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(task_run).where(task_run.c.task_id == task_id)
                .order_by(task_run.c.shard_index)
            ))

    def live(self, names: tuple[str, ...]) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(client.c.id).where(client.c.id.in_(names))).all()
        return len(found) == len(names)


@pytest.fixture
def world(pg_database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    broker_url = fresh_redis_url()
    settings = Settings(
        database_url=pg_database_url, broker_url=broker_url, node_name="node-bc",
        heartbeat_s=0.2, client_timeout_s=3, poll_s=0.1, lookahead_s=1, lease_s=3,
        supervise_s=0.2, no_client_retry_s=0.2, event_flush_ms=5, recorder_flush_ms=10,
        time_limit_grace_s=1.0,
    )
    migrated_copy(pg_database_url)  # the schema at head: tests/servers.py
    engine = create_engine(pg_database_url)
    app = create_app(settings)
    fence = RedisFence(broker_url)
    service = SchedulerService(settings, engine, app, fence, SystemClock())
    service.start()
    bridge = start_bridge(settings)
    channel = ready_channel(bridge.address)
    try:
        yield World(settings, engine, bridge, channel)
    finally:
        channel.close()
        bridge.stop(grace_s=2)
        service.stop()
        fence.close()
        app.close()
        engine.dispose()


def shard_orders(world: World) -> tuple[int, dict[str, tuple[RawClient, fss_pb2.RunOrder]]]:
    """Both clients live, a broadcast group added: its run's task id and each client's order."""
    raws = {name: world.client(name) for name in CLIENTS}
    wait_for(lambda: world.live(CLIENTS), 10, what="both clients registered")
    group_id = world.broadcast_group()
    orders = {name: (raw, raw.next("order").order) for name, raw in raws.items()}
    return group_id, orders


def test_each_grpc_client_runs_one_shard_and_its_reports_land_on_its_shard(
    world: World,
) -> None:
    group_id, orders = shard_orders(world)
    assert sorted(o.shard_index for _, o in orders.values()) == [0, 1]
    assert {o.shard_total for _, o in orders.values()} == {2}
    task_id = next(iter(orders.values()))[1].task_id
    progress = {"bc-a": 40, "bc-b": 80}
    for name, (raw, order) in orders.items():
        task_id, attempt = order.task_id, order.attempt
        raw.send(started=fss_pb2.Started(task_id=task_id, attempt=attempt))
        raw.send(progress=fss_pb2.Progress(task_id=task_id, attempt=attempt,
                                           progress=progress[name]))
    # Each shard's progress is its own; the task shows their mean.
    wait_for(lambda: {r.client_id: r.progress for r in world.shards(task_id)} == progress, 10,
             what="each shard's progress")
    wait_for(lambda: world.task_of(group_id).progress == 60, 10, what="the mean on the task")
    for raw, order in orders.values():
        raw.send(finished=fss_pb2.Finished(task_id=order.task_id, attempt=order.attempt,
                                           success=True))
    wait_for(lambda: world.task_of(group_id).status == TaskStatus.SUCCESS, 15, what="success")
    by_client = {row.client_id: row for row in world.shards(task_id)}
    assert set(by_client) == set(CLIENTS)
    for name, (_raw, order) in orders.items():
        row = by_client[name]
        assert (row.shard_index, row.status) == (order.shard_index, TaskStatus.SUCCESS)
    for raw, _ in orders.values():
        raw.close()


def test_a_kill_of_a_broadcast_run_cancels_every_grpc_shard(world: World) -> None:
    group_id, orders = shard_orders(world)
    task_id = next(iter(orders.values()))[1].task_id
    for raw, order in orders.values():
        raw.send(started=fss_pb2.Started(task_id=order.task_id, attempt=order.attempt))
    wait_for(lambda: world.task_of(group_id).status == TaskStatus.WORKING, 10, what="working")
    result = kill_task(world.engine, world.settings, SystemClock(), task_id, "tester")
    assert result.detail.count(": kill sent") == 2, result.detail
    for raw, order in orders.values():
        cancel = raw.next("cancel").cancel
        assert (cancel.task_id, cancel.attempt, cancel.reason) == (
            order.task_id, order.attempt, "killed by tester")
        raw.send(finished=fss_pb2.Finished(
            task_id=order.task_id, attempt=order.attempt, success=False, error="stopped"))
    wait_for(lambda: world.task_of(group_id).status == TaskStatus.FAIL, 15, what="failed")
    assert {row.error for row in world.shards(task_id)} == {
        "killed by tester; the client said: stopped"}
    for raw, _ in orders.values():
        raw.close()
