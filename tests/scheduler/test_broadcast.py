"""Route `broadcast`: one run per live client, each a shard with its own fence, status,
progress, log and client; the task ends when every shard ended, Success only if all did,
and a retry re-runs only the failed shards. Real databases (SQLite, PostgreSQL, MariaDB),
a real Redis broker and fence, the real dispatcher, recorder and supervisor, a manual clock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from celery import Celery
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.broadcast import BROADCAST_CLIENT
from fss.domain.clock import ManualClock
from fss.domain.data_merge import data_patch
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import (
    ClientHeartbeat,
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
)
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.orders import RunOrder
from fss.scheduler.dispatcher import Dispatcher, Outcome
from fss.scheduler.supervisor import Supervisor
from fss.store import groups, kills, tasks
from fss.store.engine import create_engine
from fss.store.recording import record
from fss.store.retries import task_attempts
from fss.store.tables import run_log, task, task_group, task_run
from fss.store.tasks import ClaimedTask

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=timezone.utc)
NODE = "node-a"


@dataclass
class Scene:
    engine: Engine
    clock: ManualClock
    redis: redis.Redis
    fence: RedisFence
    dispatcher: Dispatcher
    settings: Settings
    clients: list[str]

    def record(self, events: list[Event]) -> None:
        with self.engine.begin() as conn:
            record(conn, events, self.clock.now())

    def beat(self, *client_ids: str) -> None:
        self.record([
            ClientHeartbeat(c, "h", "127.0.0.1", 1, ("job",), client_queue(c), self.clock.now())
            for c in client_ids or self.clients
        ])

    def add_group(self, **policies: Any) -> int:
        spec = GroupSpec(caption="bc", job_name="job", interval_ms=60_000,
                         start_at=self.clock.now(), route="broadcast", **policies)
        return groups.add_group(self.engine, spec, self.clock.now())

    def claim(self) -> list[ClaimedTask]:
        return tasks.claim_due(self.engine, NODE, self.clock.now(), timedelta(seconds=1),
                               timedelta(seconds=30))

    def orders(self) -> dict[str, list[RunOrder]]:
        """The orders waiting in each client's queue (taken off it)."""
        found: dict[str, list[RunOrder]] = {}
        for client_id in self.clients:
            while (item := self.redis.rpop(client_queue(client_id))) is not None:
                message = json.loads(item)
                kwargs = json.loads(base64.b64decode(message["body"]))[1]
                found.setdefault(client_id, []).append(RunOrder.from_kwargs(kwargs))
        return found

    def task_row(self, task_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.id == task_id)).one()

    def shard_rows(self, task_id: int) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(task_run).where(task_run.c.task_id == task_id)
                .order_by(task_run.c.attempt, task_run.c.shard_index)
            ))

    def start(self, order: RunOrder) -> None:
        self.record([TaskStarted(order.task_id, order.attempt, order.client_id,
                                 self.clock.now(), shard=order.shard)])

    def end(self, order: RunOrder, success: bool, error: str | None = None,
            retry: bool = True) -> None:
        self.record([TaskFinished(order.task_id, order.attempt, order.client_id, success, 7,
                                  self.clock.now(), error=error, retry=retry,
                                  shard=order.shard)])


@pytest.fixture
def scene(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Scene]:
    broker = fresh_redis_url()
    settings = Settings(database_url=database_url, broker_url=broker, node_name=NODE)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    app: Celery = create_app(settings)
    fence = RedisFence(broker)
    client = redis.Redis.from_url(broker)
    scene = Scene(engine, clock, client, fence, Dispatcher(engine, app, fence, settings, clock),
                  settings, ["w1", "w2", "w3"])
    scene.beat()
    yield scene
    client.close()
    fence.close()
    app.close()
    engine.dispose()


def dispatch_all(s: Scene) -> tuple[ClaimedTask, dict[str, list[RunOrder]]]:
    (claimed,) = s.claim()
    assert s.dispatcher.dispatch_many([claimed]) == {claimed.id: Outcome.SENT}
    return claimed, s.orders()


def test_given_three_live_clients_then_each_gets_one_shard_with_its_index_and_total(
    scene: Scene,
) -> None:
    s = scene
    s.add_group()
    claimed, orders = dispatch_all(s)
    assert {c: [(o.shard_index, o.shard_total, o.attempt) for o in os]
            for c, os in orders.items()} == {
        "w1": [(0, 3, 1)], "w2": [(1, 3, 1)], "w3": [(2, 3, 1)]}
    row = s.task_row(claimed.id)
    assert (row.status, row.client_id, row.shard_total) == (
        TaskStatus.SCHEDULER, BROADCAST_CLIENT, 3)
    assert [(r.shard_index, r.client_id, r.status) for r in s.shard_rows(claimed.id)] == [
        (0, "w1", TaskStatus.SCHEDULER), (1, "w2", TaskStatus.SCHEDULER),
        (2, "w3", TaskStatus.SCHEDULER)]
    # Each shard has a fence of its own: every client enters its shard, nobody another's.
    for client_id, (order,) in orders.items():
        assert s.fence.enter(order.task_id, 1, client_id, shard=order.shard_index)
    assert not s.fence.enter(claimed.id, 1, "w9", shard=1)


def test_given_shards_reporting_then_each_keeps_its_own_status_progress_and_log_and_the_task_ends_with_the_last(  # noqa: E501
    scene: Scene,
) -> None:
    s = scene
    group_id = s.add_group()
    claimed, orders = dispatch_all(s)
    o1, o2, o3 = orders["w1"][0], orders["w2"][0], orders["w3"][0]
    s.start(o1)
    assert s.task_row(claimed.id).status == TaskStatus.WORKING
    s.start(o2)
    s.record([TaskProgressed(o1.task_id, 1, "w1", 60, s.clock.now(), shard=0),
              TaskProgressed(o2.task_id, 1, "w2", 30, s.clock.now(), shard=1),
              TaskLogged(o2.task_id, 1, "w2", group_id, 2, "from shard 1", s.clock.now(),
                         seq=1, shard=1),
              # A shard's event under another client's name is not that shard's.
              TaskProgressed(o3.task_id, 1, "w1", 99, s.clock.now(), shard=2)])
    assert s.task_row(claimed.id).progress == 30  # (60 + 30 + 0) / 3
    assert [(r.status, r.progress) for r in s.shard_rows(claimed.id)] == [
        (TaskStatus.WORKING, 60), (TaskStatus.WORKING, 30), (TaskStatus.SCHEDULER, 0)]
    s.clock.advance(2)
    s.end(o1, True)
    s.end(o2, True)
    s.end(o2, True)  # a replay changes nothing
    assert s.task_row(claimed.id).status == TaskStatus.WORKING
    s.start(o3)
    s.end(o3, False, "Traceback (most recent call last):\n  ...\nValueError: disk full")
    row = s.task_row(claimed.id)
    assert row.status == TaskStatus.FAIL
    assert row.error == "1 of 3 shards failed\nshard 2 of 3 (w3): ValueError: disk full"
    assert [r.status for r in s.shard_rows(claimed.id)] == [
        TaskStatus.SUCCESS, TaskStatus.SUCCESS, TaskStatus.FAIL]
    with s.engine.connect() as conn:
        lines = list(conn.execute(sa.select(run_log.c.content, run_log.c.shard_index)
                                  .where(run_log.c.task_id == claimed.id)))
        next_tasks = conn.execute(sa.select(sa.func.count()).select_from(task).where(
            task.c.task_group_id == group_id, task.c.status == TaskStatus.NONE)).scalar()
        attempts = task_attempts(conn, claimed.id)
    assert ("from shard 1", 1) in [(line.content, line.shard_index) for line in lines]
    assert next_tasks == 1  # the group's next run was planned once
    assert [(a.attempt, a.shard_index, a.client_id) for a in attempts] == [
        (1, 0, "w1"), (1, 1, "w2"), (1, 2, "w3")]


def test_given_a_failed_shard_and_retries_then_only_that_shard_runs_again(scene: Scene) -> None:
    s = scene
    s.add_group(retries=2, retry_delay_ms=1000, retry_jitter=False)
    claimed, orders = dispatch_all(s)
    for client_id, (order,) in orders.items():
        s.start(order)
        s.end(order, client_id != "w2", None if client_id != "w2" else "boom")
    row = s.task_row(claimed.id)
    assert (row.status, row.attempt) == (TaskStatus.NONE, 1)  # waiting for its retry
    # w2 is gone by then: the failed shard 1 runs on a client live now.
    s.clients = ["w1", "w3"]
    s.clock.advance(11)
    s.beat()
    retry, orders = dispatch_all(s)
    assert retry.attempt == 1 and retry.retrying
    assert {c: [(o.shard_index, o.shard_total, o.attempt) for o in os]
            for c, os in orders.items()} == {"w1": [(1, 3, 2)]}
    (order,) = orders["w1"]
    s.start(order)
    s.end(order, True)
    row = s.task_row(claimed.id)
    assert (row.status, row.attempt, row.error) == (TaskStatus.SUCCESS, 2, None)
    assert [(r.attempt, r.shard_index, r.client_id, r.status)
            for r in s.shard_rows(claimed.id)] == [
        (1, 0, "w1", TaskStatus.SUCCESS), (1, 1, "w2", TaskStatus.FAIL),
        (1, 2, "w3", TaskStatus.SUCCESS), (2, 1, "w1", TaskStatus.SUCCESS)]


def test_given_every_failed_shard_refusing_retries_then_the_task_fails_at_once(
    scene: Scene,
) -> None:
    s = scene
    s.add_group(retries=3)
    claimed, orders = dispatch_all(s)
    for client_id, (order,) in orders.items():
        s.start(order)
        s.end(order, client_id == "w1", "bad input", retry=False)
    row = s.task_row(claimed.id)
    assert (row.status, row.attempt) == (TaskStatus.FAIL, 1)
    assert row.error.startswith("2 of 3 shards failed")


def test_given_a_shard_client_that_dies_then_the_supervisor_fails_that_shard_alone(
    scene: Scene,
) -> None:
    s = scene
    s.add_group()
    claimed, orders = dispatch_all(s)
    for order in (orders["w1"][0], orders["w2"][0], orders["w3"][0]):
        s.start(order)
    supervisor = Supervisor(s.engine, s.fence, s.settings, s.clock,
                            kill=lambda running, reason: (Outcome.SENT, ""))  # type: ignore[arg-type,return-value]
    # w2 goes silent past the liveness timeout; the others keep beating.
    for _ in range(12):
        s.clock.advance(1)
        s.beat("w1", "w3")
        s.record([TaskProgressed(claimed.id, 1, "w1", 10, s.clock.now(), shard=0),
                  TaskProgressed(claimed.id, 1, "w3", 10, s.clock.now(), shard=2)])
    report = supervisor.sweep()
    supervisor.release()
    assert report.failed == [claimed.id]
    shards = s.shard_rows(claimed.id)
    assert [r.status for r in shards] == [
        TaskStatus.WORKING, TaskStatus.FAIL, TaskStatus.WORKING]
    assert "client w2 lost while running" in (shards[1].error or "")
    assert s.task_row(claimed.id).status == TaskStatus.WORKING
    s.end(orders["w1"][0], True)
    s.end(orders["w3"][0], True)
    row = s.task_row(claimed.id)
    assert row.status == TaskStatus.FAIL
    assert "shard 1 of 3 (w2)" in row.error


def test_given_no_live_client_then_a_broadcast_run_waits(scene: Scene) -> None:
    s = scene
    s.add_group()
    s.clock.advance(60)  # every client silent
    (claimed,) = s.claim()
    assert s.dispatcher.dispatch_many([claimed]) == {claimed.id: Outcome.NO_CLIENT}
    assert s.task_row(claimed.id).status == TaskStatus.NONE


def test_given_broadcast_and_a_job_that_sets_its_next_time_then_the_group_is_refused(
    scene: Scene,
) -> None:
    from fss.errors import InvalidField

    spec = GroupSpec(caption="bc", job_name="job", job_sets_next=True, route="broadcast")
    with pytest.raises(InvalidField) as refused:
        spec.validated()
    assert refused.value.field == "route"
    with scene.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(task_group)).scalar() == 0



def test_given_shards_that_change_different_keys_of_the_data_then_every_change_is_kept(
    scene: Scene,
) -> None:
    s = scene
    group_id = s.add_group(data={"total": 0, "parts": {}})
    claimed, orders = dispatch_all(s)
    for client_id in ("w1", "w2", "w3"):
        order = orders[client_id][0]
        s.start(order)
        data = {"total": 0, "parts": {str(order.shard): order.shard + 10}}
        s.record([TaskFinished(order.task_id, order.attempt, client_id, True, 7, s.clock.now(),
                               data=data, shard=order.shard,
                               data_patch=data_patch(order.data, data))])
    assert s.task_row(claimed.id).status == TaskStatus.SUCCESS
    with s.engine.connect() as conn:
        stored = conn.execute(sa.select(task_group.c.data).where(
            task_group.c.id == group_id)).scalar_one()
    assert json.loads(stored) == {"total": 0, "parts": {"0": 10, "1": 11, "2": 12}}


def test_given_a_killed_broadcast_run_that_is_retried_then_its_retry_is_not_taken_for_killed(
    scene: Scene,
) -> None:
    """Found by an outside check (real scheduler, two workers): after `fss task kill` of a
    broadcast run with retries, every later attempt's shards were failed 'did not end within
    N s of its kill' a grace after they started, though nobody killed them: the task's
    kill_requested_at outlived the attempt it was asked for."""
    s = scene
    s.add_group(retries=1, retry_delay_ms=1000, retry_jitter=False)
    claimed, orders = dispatch_all(s)
    for (order,) in orders.values():
        s.start(order)
    with s.engine.begin() as conn:
        running = kills.running_attempt(conn, claimed.id)
        assert kills.mark_kill_requested(conn, running, "kill requested by test", s.clock.now())
    for (order,) in orders.values():
        s.end(order, False, "killed by test")
    assert s.task_row(claimed.id).status == TaskStatus.NONE  # waiting for its retry
    s.clock.advance(2)
    s.beat()
    _, orders = dispatch_all(s)
    for (order,) in orders.values():
        s.start(order)
    supervisor = Supervisor(s.engine, s.fence, s.settings, s.clock,
                            kill=lambda running, reason: (Outcome.SENT, ""))  # type: ignore[arg-type,return-value]
    s.clock.advance(s.settings.time_limit_grace_s + 1)
    s.beat()
    report = supervisor.sweep()
    supervisor.release()

    assert report.failed == []
    assert [r.status for r in s.shard_rows(claimed.id) if r.attempt == 2] == [
        TaskStatus.WORKING] * 3
    assert s.task_row(claimed.id).kill_requested_at is None


def test_given_a_kill_marked_after_the_killed_run_ended_then_its_waiting_retry_is_not_marked(
    scene: Scene,
) -> None:
    """`fss task kill` sends the kill, then marks it: the shards die at once and the retry
    may be waiting (its attempt number unchanged until dispatched) when the mark comes.
    Seen with a real scheduler and workers: that retry's shards were failed a grace after
    they started, 'did not end within N s of its kill'."""
    s = scene
    s.add_group(retries=1, retry_delay_ms=1000, retry_jitter=False)
    claimed, orders = dispatch_all(s)
    for (order,) in orders.values():
        s.start(order)
    with s.engine.connect() as conn:
        running = kills.running_attempt(conn, claimed.id)
    for (order,) in orders.values():
        s.end(order, False, "killed by test")
    with s.engine.begin() as conn:
        assert not kills.mark_kill_requested(conn, running, "kill requested by test",
                                             s.clock.now())
    assert s.task_row(claimed.id).kill_requested_at is None
    s.clock.advance(2)
    s.beat()
    _, orders = dispatch_all(s)
    for (order,) in orders.values():
        s.start(order)
    supervisor = Supervisor(s.engine, s.fence, s.settings, s.clock,
                            kill=lambda running, reason: (Outcome.SENT, ""))  # type: ignore[arg-type,return-value]
    s.clock.advance(s.settings.time_limit_grace_s + 1)
    s.beat()
    report = supervisor.sweep()
    supervisor.release()

    assert report.failed == []
    assert [r.status for r in s.shard_rows(claimed.id) if r.attempt == 2] == [
        TaskStatus.WORKING] * 3
