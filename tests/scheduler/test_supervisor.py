"""The supervisor against a manual clock, a real database and a real Redis fence."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import redis
import sqlalchemy as sa
from celery import Celery
from kombu import Exchange, Queue
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    TaskFinished,
    TaskProgressed,
    TaskStarted,
)
from fss.fence import RedisFence
from fss.naming import client_queue, job_task_name
from fss.queue_depths import delete_queues
from fss.scheduler.supervisor import Supervisor
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.recording import record, upsert_client
from fss.store.tables import alert, client, run_log, server_node, task

T0 = datetime(2026, 2, 1, 9, 0, 0, tzinfo=timezone.utc)


@dataclass
class World:
    engine: Engine
    clock: ManualClock
    fence: RedisFence
    supervisor: Supervisor
    settings: Settings

    def beat(self, client_id: str, active: int = 0, pid: int = 1, incarnation: str = "a") -> None:
        beat = ClientHeartbeat(client_id, "h", "127.0.0.1", pid, ("job",), client_queue(client_id),
                               self.clock.now(), active=active, incarnation=incarnation)
        with self.engine.begin() as conn:
            upsert_client(conn, beat, self.clock.now())

    def dispatch_new_group(
        self, client_id: str, node: str = "n1", **spec: object
    ) -> tuple[int, int]:
        values: dict[str, object] = {"caption": "g", "job_name": "job", "interval_ms": 1000,
                                     "start_at": self.clock.now()}
        values.update(spec)
        group_id = groups.add_group(self.engine, GroupSpec(**values),  # type: ignore[arg-type]
                                    self.clock.now())
        claimed = next(c for c in tasks.claim_due(self.engine, node, self.clock.now(),
                                              timedelta(seconds=1), timedelta(seconds=5))
                   if c.group_id == group_id)
        with self.engine.begin() as conn:
            attempt = tasks.mark_dispatched(conn, claimed, node,
                                            tasks.DispatchTarget(client_id, "h", "ip"),
                                            self.clock.now())
        assert attempt == 1
        self.fence.arm(claimed.id, 1)
        return group_id, claimed.id

    def events(self, *events: object) -> None:
        with self.engine.begin() as conn:
            record(conn, list(events), self.clock.now())  # type: ignore[arg-type]

    def task(self, task_id: int) -> sa.Row[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.id == task_id)).one()

    def open_task_of(self, group_id: int) -> sa.Row[tuple[object, ...]] | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.open_group_id == group_id)).first()

    def logs(self, task_id: int) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(run_log.c.content)
                                     .where(run_log.c.task_id == task_id)).scalars())

    def clients(self) -> dict[str, sa.Row[tuple[object, ...]]]:
        with self.engine.connect() as conn:
            return {r.id: r for r in conn.execute(sa.select(client))}


@pytest.fixture
def world(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url(),
                        node_name="n1", hung_timeout_s=60, kick_after_hung=2)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    fence = RedisFence(settings.broker_url)
    yield World(engine, clock, fence, Supervisor(engine, fence, settings, clock), settings)
    fence.close()
    engine.dispose()


def test_given_a_silent_client_holding_an_unstarted_order_then_it_is_dispatched_again(
    world: World,
) -> None:
    world.beat("dead")
    _group_id, task_id = world.dispatch_new_group("dead")
    world.clock.advance(10.5)
    report = world.supervisor.sweep()
    assert report.redispatched == [task_id] and report.removed_clients == ["dead"]
    row = world.task(task_id)
    assert (row.status, row.client_id, row.claimed_by) == (TaskStatus.NONE, None, None)
    assert any("went silent" in line for line in world.logs(task_id))
    # The old attempt can never enter any more, even if its message turns up.
    assert not world.fence.enter(task_id, 1)


def test_given_a_silent_client_that_was_running_then_the_task_fails_and_the_group_goes_on(
    world: World,
) -> None:
    world.beat("dead")
    group_id, task_id = world.dispatch_new_group("dead")
    world.events(TaskStarted(task_id, 1, "dead", world.clock.now()),
                 TaskProgressed(task_id, 1, "dead", 40, world.clock.now()))
    world.clock.advance(10.5)
    report = world.supervisor.sweep()
    assert report.failed == [task_id]
    row = world.task(task_id)
    assert (row.status, row.progress) == (TaskStatus.FAIL, 40)
    assert "while running" in row.error
    following = world.open_task_of(group_id)
    assert following is not None and following.status == TaskStatus.NONE
    assert following.start_at > row.start_at


def test_given_a_silent_client_whose_worker_had_entered_then_it_fails_not_redispatches(
    world: World,
) -> None:
    world.beat("dead")
    _, task_id = world.dispatch_new_group("dead")
    assert world.fence.enter(task_id, 1)  # started, but its `started` event never arrived
    world.clock.advance(10.5)
    report = world.supervisor.sweep()
    assert report.failed == [task_id] and report.redispatched == []
    assert world.task(task_id).status == TaskStatus.FAIL


def test_given_a_live_client_that_never_started_the_order_then_it_is_sent_again_after_expiry(
    world: World,
) -> None:
    world.beat("slow")
    _, task_id = world.dispatch_new_group("slow")
    world.clock.advance(world.settings.dispatch_expires_s)  # not yet past expiry + margin
    world.beat("slow")
    assert world.supervisor.sweep().redispatched == []
    world.clock.advance(3)
    world.beat("slow")
    assert world.supervisor.sweep().redispatched == [task_id]
    assert world.task(task_id).status == TaskStatus.NONE


def test_given_a_live_client_that_entered_but_is_slow_to_report_then_it_is_left_alone(
    world: World,
) -> None:
    world.beat("busy")
    _, task_id = world.dispatch_new_group("busy")
    assert world.fence.enter(task_id, 1)
    world.clock.advance(world.settings.dispatch_expires_s + 5)
    world.beat("busy")
    report = world.supervisor.sweep()
    assert report.redispatched == [] and report.failed == []
    assert world.task(task_id).status == TaskStatus.SCHEDULER


def test_given_hung_runs_then_they_fail_and_the_client_is_kicked_until_it_is_idle(
    world: World,
) -> None:
    world.beat("sticky")
    hung = []
    for _ in range(2):
        _, task_id = world.dispatch_new_group("sticky", timeout_s=30)
        world.events(TaskStarted(task_id, 1, "sticky", world.clock.now()))
        hung.append(task_id)
    world.clock.advance(29)
    world.beat("sticky", active=2)
    assert world.supervisor.sweep().failed == []  # within the group's timeout

    world.clock.advance(2)
    world.beat("sticky", active=2)
    report = world.supervisor.sweep()
    assert sorted(report.failed) == sorted(hung)
    assert report.kicked_clients == ["sticky"]
    assert all("hung" in (world.task(t).error or "") for t in hung)
    assert world.clients()["sticky"].kicked_at is not None

    # A late finish of a run that was failed as hung changes nothing.
    world.events(TaskFinished(hung[0], 1, "sticky", True, 5, world.clock.now()))
    assert world.task(hung[0]).status == TaskStatus.FAIL

    world.beat("sticky", active=1)  # still busy: stays kicked
    assert world.clients()["sticky"].kicked_at is not None
    world.beat("sticky", active=0)  # idle again: taken back
    assert world.clients()["sticky"].kicked_at is None


def test_given_progress_reports_then_a_long_run_is_not_hung(world: World) -> None:
    world.beat("c")
    _, task_id = world.dispatch_new_group("c", timeout_s=30)
    world.events(TaskStarted(task_id, 1, "c", world.clock.now()))
    for step in range(1, 5):
        world.clock.advance(20)
        world.beat("c", active=1)
        world.events(TaskProgressed(task_id, 1, "c", step * 10, world.clock.now()))
        assert world.supervisor.sweep().failed == []
    assert world.task(task_id).status == TaskStatus.WORKING


def test_given_two_schedulers_then_only_the_lease_holder_supervises(world: World) -> None:
    other = Supervisor(world.engine, world.fence, world.settings.replace(node_name="n2"),
                       world.clock)
    assert world.supervisor.sweep().held_lease
    assert not other.sweep().held_lease
    world.clock.advance(world.settings.lease_s + 0.1)  # n1 stopped sweeping: its lease lapses
    assert other.sweep().held_lease
    world.supervisor.release()  # releasing a lease one does not hold changes nothing
    assert not world.supervisor.sweep().held_lease


def test_given_a_silent_scheduler_node_then_it_is_marked_dead(world: World) -> None:
    from fss.store.clients import heartbeat_node

    heartbeat_node(world.engine, "gone", world.clock.now(), world.clock.now())
    world.clock.advance(11)
    assert world.supervisor.sweep().dead_nodes == 1
    with world.engine.connect() as conn:
        alive = conn.execute(sa.select(server_node.c.is_alive)).scalar_one()
    assert not alive


def test_retention_keeps_the_newest_successes_and_recent_failures(world: World) -> None:
    settings = world.settings.replace(keep_success_per_group=3)
    supervisor = Supervisor(world.engine, world.fence, settings, world.clock)
    world.beat("c")
    group_id = groups.add_group(
        world.engine, GroupSpec(caption="g", job_name="job", interval_ms=1000,
                                start_at=world.clock.now()), world.clock.now())
    finished: list[tuple[int, bool]] = []
    for index in range(8):
        claimed = tasks.claim_due(world.engine, "n1", world.clock.now(), timedelta(seconds=2),
                                  timedelta(seconds=5))[0]
        with world.engine.begin() as conn:
            tasks.mark_dispatched(conn, claimed, "n1", tasks.DispatchTarget("c", "h", "ip"),
                                  world.clock.now())
        success = index != 1
        world.events(TaskFinished(claimed.id, 1, "c", success, 3, world.clock.now()))
        finished.append((claimed.id, success))
        world.clock.advance(1)
    world.clock.advance(timedelta(days=2))
    world.beat("c")
    supervisor.sweep()
    with world.engine.connect() as conn:
        left = set(conn.execute(sa.select(task.c.id).where(task.c.task_group_id == group_id))
                   .scalars())
    successes = [t for t, ok in finished if ok]
    failure = next(t for t, ok in finished if not ok)
    assert set(successes[-3:]) <= left and not set(successes[:-3]) & left
    assert failure in left  # failures are kept 7 days
    world.clock.advance(timedelta(days=6))
    world.beat("c")
    supervisor._retention.reset()
    supervisor.sweep()
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(task.c.id).where(task.c.id == failure)).first() is None
        assert conn.execute(sa.select(run_log.c.id).where(run_log.c.task_id == failure)).first() \
            is None


def test_given_a_client_restarted_under_the_same_name_then_what_its_old_process_held_is_settled(
    world: World,
) -> None:
    world.beat("w", incarnation="old")
    _, unstarted = world.dispatch_new_group("w")
    _, entered_by_old = world.dispatch_new_group("w")
    _, taken_by_new = world.dispatch_new_group("w")
    assert world.fence.enter(entered_by_old, 1, "old")
    world.clock.advance(2)
    world.beat("w", incarnation="new")  # kill -9 and restart within the liveness window
    assert world.fence.enter(taken_by_new, 1, "new")  # the new process found it in the queue
    report = world.supervisor.sweep()
    assert report.redispatched == [unstarted]
    # The old process's own report of the run it entered may still be on its way: a sweep
    # REPORT_GRACE later fails it.
    assert report.failed == []
    world.clock.advance(1)
    world.beat("w", incarnation="new")
    report = world.supervisor.sweep()
    assert report.failed == [entered_by_old]
    assert "restarted while running" in world.task(entered_by_old).error
    assert world.task(taken_by_new).status == TaskStatus.SCHEDULER
    assert report.removed_clients == []


def left_with_a_run_open(world: World) -> int:
    """A client (a gRPC bridge session) that entered a run and whose `left` was recorded
    before its own report of that run."""
    world.beat("b", incarnation="s1")
    _, task_id = world.dispatch_new_group("b")
    assert world.fence.enter(task_id, 1, "s1")
    world.events(TaskStarted(task_id, 1, "b", world.clock.now()))
    world.events(ClientLeft("b", world.clock.now(), incarnation="s1"))
    return task_id


def test_given_a_client_that_left_with_a_run_open_then_its_own_late_report_is_kept(
    world: World,
) -> None:
    task_id = left_with_a_run_open(world)
    assert world.supervisor.sweep().failed == []  # its report may be on its way
    disconnected = "the gRPC client b disconnected while running attempt 1; marked failed"
    world.clock.advance(0.5)
    world.events(TaskFinished(task_id, 1, "b", False, 5, world.clock.now(), error=disconnected))
    world.clock.advance(1)
    assert world.supervisor.sweep().failed == []
    row = world.task(task_id)
    assert row.status == TaskStatus.FAIL and row.error == disconnected


def test_given_a_client_that_left_with_a_run_open_and_no_report_then_a_later_sweep_fails_it(
    world: World,
) -> None:
    task_id = left_with_a_run_open(world)
    assert world.supervisor.sweep().failed == []
    world.clock.advance(0.5)
    assert world.supervisor.sweep().failed == []  # not REPORT_GRACE yet
    world.clock.advance(0.5)
    assert world.supervisor.sweep().failed == [task_id]
    unregistered = "client b unregistered while running attempt 1; marked failed"
    assert world.task(task_id).error == unregistered
    world.clock.advance(1)
    assert world.supervisor.sweep().failed == []  # once


def test_given_a_scheduler_that_died_after_dispatching_then_unstarted_orders_go_out_again(
    world: World,
) -> None:
    from fss.store.clients import heartbeat_node

    world.beat("c")
    heartbeat_node(world.engine, "n2", world.clock.now(), world.clock.now())
    _, unstarted = world.dispatch_new_group("c", node="n2")
    _, started = world.dispatch_new_group("c", node="n2")
    assert world.fence.enter(started, 1, "a")
    world.clock.advance(1.5)
    world.beat("c")
    assert world.supervisor.sweep().redispatched == []  # n2 is still within its lease
    world.clock.advance(5)
    world.beat("c")
    report = world.supervisor.sweep()
    assert report.redispatched == [unstarted]
    assert world.task(started).status == TaskStatus.SCHEDULER  # its worker runs it


def test_retention_removes_the_finished_runs_of_deleted_groups_only(world: World) -> None:
    group_id, kept = world.dispatch_new_group("c")
    world.events(TaskFinished(kept, 1, "c", True, 3, world.clock.now()))
    gone_group = group_id + 1000
    with world.engine.begin() as conn:
        for status in (TaskStatus.SUCCESS, TaskStatus.FAIL, TaskStatus.NONE):
            conn.execute(task.insert().values(
                task_group_id=gone_group, job_name="job", start_at=world.clock.now(),
                status=status, create_at=world.clock.now(),
            ))
    world.supervisor.sweep()
    with world.engine.connect() as conn:
        left = conn.execute(sa.select(task.c.task_group_id, task.c.status)).all()
    assert sorted((g, TaskStatus(s)) for g, s in left) == [
        (group_id, TaskStatus.NONE),  # the group's next run
        (group_id, TaskStatus.SUCCESS),
        (gone_group, TaskStatus.NONE),  # unfinished: not retention's to remove
    ]


def test_given_the_wall_clock_stepped_back_an_hour_then_retention_and_judging_go_on(
    world: World,
) -> None:
    assert world.supervisor.sweep().retention_ran
    world.clock.advance(1)
    assert not world.supervisor.sweep().retention_ran  # every retention_every_s only
    world.supervisor.note_outage()
    world.supervisor.sweep()  # judging waits one liveness window after an outage

    world.clock.advance(-3600)  # the wall clock is stepped back an hour
    world.beat("dead")
    _, task_id = world.dispatch_new_group("dead")
    world.clock.advance(10.5)
    report = world.supervisor.sweep()
    assert report.retention_ran  # not an hour later
    assert report.redispatched == [task_id]  # silent clients are judged again


# --- queues of removed clients -------------------------------------------------------------


@pytest.fixture
def dropping(world: World) -> Iterator[tuple[Supervisor, Celery, redis.Redis]]:
    """A supervisor that deletes the queues of removed clients on the world's Redis broker."""
    app = create_app(world.settings)
    supervisor = Supervisor(
        world.engine, world.fence, world.settings, world.clock,
        drop_queues=lambda names: delete_queues(app.connection_for_write(), names),
    )
    raw = redis.Redis.from_url(world.settings.broker_url)
    yield supervisor, app, raw
    raw.close()
    app.close()


def queue_order(app: Celery, client_id: str, task_id: int) -> None:
    """Put an order on the client's queue as the dispatcher does, the queue declared by its
    sender (kombu's binding entry included: declared here, as kombu's declaration cache may
    skip it for a queue this process declared before)."""
    with app.connection_for_write() as conn:
        name = client_queue(client_id)
        Queue(name, Exchange(name, type="direct", durable=True), routing_key=name,
              durable=True)(conn.default_channel).declare()
    app.send_task(job_task_name("job"), kwargs={"task_id": task_id}, queue=client_queue(client_id),
                  task_id=f"fss-{task_id}-1")


def test_given_a_removed_client_then_its_queue_is_deleted_after_its_orders_are_settled(
    world: World, dropping: tuple[Supervisor, Celery, redis.Redis]
) -> None:
    supervisor, app, raw = dropping
    world.beat("dead")
    world.beat("alive")
    _, task_id = world.dispatch_new_group("dead")
    queue_order(app, "dead", task_id)
    queue_order(app, "alive", 999)
    assert raw.llen(client_queue("dead")) == 1
    assert raw.smembers("_kombu.binding.fss.client.dead")

    world.clock.advance(10.5)
    world.beat("alive")
    report = supervisor.sweep()

    assert report.removed_clients == ["dead"] and report.redispatched == [task_id]
    assert report.dropped_queues == [client_queue("dead")]
    assert not raw.exists(client_queue("dead"))
    assert not raw.smembers("_kombu.binding.fss.client.dead")
    assert raw.llen(client_queue("alive")) == 1  # a live client's queue is left alone
    assert not world.fence.enter(task_id, 1)  # revoked before its queue went


def test_given_a_client_that_left_with_orders_queued_then_its_queue_is_deleted(
    world: World, dropping: tuple[Supervisor, Celery, redis.Redis]
) -> None:
    supervisor, app, raw = dropping
    world.beat("leaver")
    _, task_id = world.dispatch_new_group("leaver")
    queue_order(app, "leaver", task_id)  # a graceful stop put the order it took back
    with world.engine.begin() as conn:
        conn.execute(client.delete().where(client.c.id == "leaver"))  # its `left` recorded

    report = supervisor.sweep()

    assert report.redispatched == [task_id]
    assert report.dropped_queues == [client_queue("leaver")]
    assert not raw.exists(client_queue("leaver"))


def test_given_the_broker_down_when_dropping_then_it_is_retried_unless_the_client_came_back(
    world: World, dropping: tuple[Supervisor, Celery, redis.Redis]
) -> None:
    _, app, raw = dropping
    calls: list[list[str]] = []

    def down_once(names: list[str]) -> None:
        calls.append(names)
        if len(calls) == 1:
            raise ConnectionError("broker down")
        delete_queues(app.connection_for_write(), names)

    supervisor = Supervisor(world.engine, world.fence, world.settings, world.clock,
                            drop_queues=down_once)
    for name in ("gone", "back"):
        world.beat(name)
        queue_order(app, name, 1)
    world.clock.advance(10.5)
    assert supervisor.sweep().dropped_queues == []
    world.beat("back")  # restarted under its name: it reads its queue again
    world.clock.advance(1)

    assert supervisor.sweep().dropped_queues == [client_queue("gone")]
    assert calls == [[client_queue("back"), client_queue("gone")], [client_queue("gone")]]
    assert not raw.exists(client_queue("gone"))
    assert raw.llen(client_queue("back")) == 1


def bindings(raw: redis.Redis, client_id: str) -> list[str]:
    """kombu's binding keys of the client's queue (`_kombu.binding.` and
    `_kombu.binding_permanent.`), sorted."""
    keys = raw.keys(f"_kombu.binding*.{client_queue(client_id)}")
    return sorted(k.decode() if isinstance(k, bytes) else k for k in keys)


def test_given_clients_that_left_with_nothing_queued_then_their_bindings_go_unless_back(
    world: World, dropping: tuple[Supervisor, Celery, redis.Redis]
) -> None:
    supervisor, app, raw = dropping
    for name in ("leaver", "back"):
        world.beat(name, incarnation="a")
        queue_order(app, name, 1)
        raw.delete(client_queue(name))  # taken and run: the queue is empty, its bindings stay
    assert len(bindings(raw, "leaver")) == 2
    world.events(ClientLeft("leaver", world.clock.now(), "a"),
                 ClientLeft("back", world.clock.now(), "a"))
    world.beat("back", incarnation="b")  # restarted under its name
    world.clock.advance(1)

    report = supervisor.sweep()

    assert report.dropped_queues == [client_queue("leaver")]
    assert bindings(raw, "leaver") == []
    assert len(bindings(raw, "back")) == 2  # the restarted client keeps its queue...
    app.send_task(job_task_name("job"), kwargs={"task_id": 2}, queue=client_queue("back"),
                  task_id="fss-2-1")
    assert raw.llen(client_queue("back")) == 1  # ...and its orders reach it
    assert supervisor.sweep().dropped_queues == []  # each departure is handled once

    world.clock.advance(1)
    world.events(ClientLeft("back", world.clock.now(), "b"))
    assert supervisor.sweep().dropped_queues == [client_queue("back")]
    assert bindings(raw, "back") == [] and not raw.exists(client_queue("back"))


def test_given_a_group_disabled_until_a_time_then_the_supervisor_enables_it_then(
    world: World,
) -> None:
    group_id = groups.add_group(
        world.engine,
        GroupSpec(caption="g", job_name="job", interval_ms=1000, start_at=world.clock.now()),
        world.clock.now(),
    )
    groups.set_enabled(world.engine, group_id, False, world.clock.now(), note="db upgrade",
                       until=world.clock.now() + timedelta(minutes=5))
    assert world.open_task_of(group_id) is None

    world.clock.advance(299)
    assert world.supervisor.sweep().enabled_groups == []
    world.clock.advance(1)
    assert world.supervisor.sweep().enabled_groups == [group_id]

    with world.engine.connect() as conn:
        group = groups.get_group(conn, group_id)
    assert (group.is_enable, group.disabled_note, group.enable_at) == (True, None, None)
    assert world.open_task_of(group_id) is not None
    assert world.supervisor.sweep().enabled_groups == []  # once


def _alert_rows(world: World) -> list[sa.Row[tuple[object, ...]]]:
    with world.engine.connect() as conn:
        return list(conn.execute(sa.select(alert).order_by(alert.c.id)))


def test_given_a_client_dropped_or_a_node_lost_then_the_sweep_raises_their_alerts(
    world: World,
) -> None:
    world.beat("gone")
    with world.engine.begin() as conn:
        conn.execute(server_node.insert().values(
            id="other-node", host="h", pid=1, started_at=world.clock.now(),
            heartbeat_at=world.clock.now()))
    world.clock.advance(10.5)
    report = world.supervisor.sweep()
    assert report.removed_clients == ["gone"]
    rows = {(r.rule, r.subject): r for r in _alert_rows(world)}
    lost = rows[("client_lost", "client:gone")]
    assert lost.client_id == "gone" and "served job" in lost.detail
    assert ("node_lost", "node:other-node") in rows
    # Swept again: nothing new (the client is gone, the node marked dead).
    world.clock.advance(1)
    world.supervisor.sweep()
    assert len(_alert_rows(world)) == 2


def test_given_alert_rules_off_then_the_sweep_drops_the_client_and_raises_nothing(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url(),
                        node_name="n1", alert_rules="none")
    fence = RedisFence(settings.broker_url)
    quiet = World(engine, clock, fence, Supervisor(engine, fence, settings, clock), settings)
    try:
        quiet.beat("gone")
        clock.advance(10.5)
        assert quiet.supervisor.sweep().removed_clients == ["gone"]
        assert _alert_rows(quiet) == []
    finally:
        engine.dispose()
