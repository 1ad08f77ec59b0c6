"""The scheduler's tick against a manual clock, a real database and a real Redis broker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock, as_utc
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import ClientHeartbeat
from fss.fence import RedisFence
from fss.naming import client_queue, fence_key
from fss.scheduler.service import SchedulerService
from fss.store import groups, tasks
from fss.store.clients import heartbeat_node
from fss.store.engine import create_engine
from fss.store.recording import upsert_client
from fss.store.tables import run_log, server_node, task

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@dataclass
class Harness:
    engine: Engine
    clock: ManualClock
    service: SchedulerService
    redis: redis.Redis

    def register(self, client_id: str, *jobs: str) -> None:
        beat = ClientHeartbeat(client_id, "host", "127.0.0.1", 1, jobs, client_queue(client_id),
                               self.clock.now())
        with self.engine.begin() as conn:
            upsert_client(conn, beat, self.clock.now())

    def task_row(self, task_id: int) -> sa.Row[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.id == task_id)).one()


@contextmanager
def harness_for(database_url: str, broker: str, **settings_: Any) -> Iterator[Harness]:
    settings = Settings(database_url=database_url, broker_url=broker, node_name="node-a",
                        **settings_)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    app = create_app(settings)
    fence = RedisFence(broker)
    service = SchedulerService(settings, engine, app, fence, clock)
    client = redis.Redis.from_url(broker)
    try:
        yield Harness(engine, clock, service, client)
    finally:
        client.close()
        fence.close()
        app.close()
        engine.dispose()


@pytest.fixture
def harness(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Harness]:
    with harness_for(database_url, fresh_redis_url()) as h:
        yield h


def add_group(h: Harness, start_in_s: float, **spec: object) -> int:
    values: dict[str, object] = {"caption": "g", "job_name": "job-a", "interval_ms": 1000}
    values.update(spec)
    values["start_at"] = h.clock.now() + timedelta(seconds=start_in_s)
    return groups.add_group(h.engine, GroupSpec(**values), h.clock.now())  # type: ignore[arg-type]


def pending_task_id(h: Harness, group_id: int) -> int:
    with h.engine.connect() as conn:
        return int(groups.get_group(conn, group_id).task_id or 0)


def test_given_a_task_due_later_when_ticking_then_it_fires_at_its_time_not_before(
    harness: Harness,
) -> None:
    """With the default lead (20 ms) the order is readied 20 ms ahead (client chosen, fence
    armed, row moved) and sent exactly at its start_at, never before."""
    h = harness
    h.register("c1", "job-a")
    group_id = add_group(h, start_in_s=1.5)
    task_id = pending_task_id(h, group_id)

    wait = h.service.tick()  # claims it (within the look-ahead) but must not send it yet
    assert wait == pytest.approx(0.5)  # the next claim poll comes before the fire time
    assert h.redis.llen(client_queue("c1")) == 0
    assert h.task_row(task_id).claimed_by == "node-a"

    h.clock.advance(1.2)
    assert h.service.tick() == pytest.approx(0.28)  # sleeps until 20 ms before its time
    h.clock.advance(0.279)
    h.service.tick()
    assert h.task_row(task_id).status == TaskStatus.NONE

    h.clock.advance(0.001)  # 20 ms before: readied, held
    assert h.service.tick() == pytest.approx(0.02)  # sleeps exactly until the start_at
    row = h.task_row(task_id)
    assert row.status == TaskStatus.SCHEDULER
    assert row.dispatched_at == h.clock.now() + timedelta(milliseconds=20)  # when it is sent
    assert h.redis.get(fence_key(task_id)) == b"1"
    assert h.redis.llen(client_queue("c1")) == 0
    h.clock.advance(0.019)
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 0  # never before its time

    h.clock.advance(0.001)
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 1
    row = h.task_row(task_id)
    assert row.status == TaskStatus.SCHEDULER
    assert (row.client_id, row.server_node, row.attempt) == ("c1", "node-a", 1)
    assert h.service.sent == 1
    assert h.redis.get(fence_key(task_id)) == b"1"


def test_given_no_lead_when_a_task_is_due_later_then_it_is_readied_and_sent_at_its_time(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    with harness_for(database_url, fresh_redis_url(), dispatch_lead_ms=0) as h:
        h.register("c1", "job-a")
        task_id = pending_task_id(h, add_group(h, start_in_s=1.5))
        h.service.tick()
        h.clock.advance(1.2)
        assert h.service.tick() == pytest.approx(0.3)
        h.clock.advance(0.299)
        h.service.tick()
        assert h.task_row(task_id).status == TaskStatus.NONE
        assert h.redis.llen(client_queue("c1")) == 0
        h.clock.advance(0.001)
        h.service.tick()
        assert h.redis.llen(client_queue("c1")) == 1
        assert h.task_row(task_id).dispatched_at == h.clock.now()


def test_given_two_clients_when_tasks_fire_then_they_alternate_round_robin(
    harness: Harness,
) -> None:
    h = harness
    h.register("c1", "job-a")
    h.register("c2", "job-a")
    for _ in range(6):
        add_group(h, start_in_s=0)
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 3
    assert h.redis.llen(client_queue("c2")) == 3


def test_given_no_client_for_the_job_when_due_then_the_task_waits_and_warns_once(
    harness: Harness,
) -> None:
    h = harness
    h.register("c1", "other-job")
    group_id = add_group(h, start_in_s=0)
    task_id = pending_task_id(h, group_id)
    for _ in range(5):
        h.service.tick()
        h.clock.advance(1.0)
    assert h.task_row(task_id).status == TaskStatus.NONE
    with h.engine.connect() as conn:
        warnings = conn.execute(sa.select(run_log).where(run_log.c.task_id == task_id)).all()
    assert len(warnings) == 1
    assert "no live client" in warnings[0].content

    # When a client for the job appears, the waiting task goes to it.
    h.register("c2", "job-a")
    h.clock.advance(1.0)
    h.service.tick()
    assert h.task_row(task_id).client_id == "c2"


def test_given_a_silent_client_when_due_then_it_is_not_chosen(harness: Harness) -> None:
    h = harness
    h.register("old", "job-a")
    h.clock.advance(11)  # past the 10 s liveness window
    h.register("fresh", "job-a")
    for _ in range(3):
        add_group(h, start_in_s=0)
    h.service.tick()
    assert h.redis.llen(client_queue("old")) == 0
    assert h.redis.llen(client_queue("fresh")) == 3


def test_given_a_claim_held_by_another_node_when_ticking_then_it_is_left_alone_until_the_lease_ends(
    harness: Harness, database_url: str
) -> None:
    h = harness
    h.register("c1", "job-a")
    group_id = add_group(h, start_in_s=0)
    task_id = pending_task_id(h, group_id)
    with h.engine.begin() as conn:
        conn.execute(
            task.update().where(task.c.id == task_id).values(
                claimed_by="node-b", claimed_until=h.clock.now() + timedelta(seconds=5)
            )
        )
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 0

    h.clock.advance(5.001)  # node-b's lease expired: node-a takes over
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 1
    assert h.task_row(task_id).server_node == "node-a"


def test_given_the_scheduler_stops_then_its_claims_are_released(harness: Harness) -> None:
    h = harness
    h.register("c1", "job-a")
    group_id = add_group(h, start_in_s=1)
    task_id = pending_task_id(h, group_id)
    h.service.tick()
    assert h.task_row(task_id).claimed_by == "node-a"
    h.service.stop()
    assert h.task_row(task_id).claimed_by is None


def test_given_an_outage_and_misfire_run_once_then_the_missed_run_fires_once(
    harness: Harness,
) -> None:
    h = harness
    h.register("c1", "job-a")
    group_id = add_group(h, start_in_s=1)
    h.clock.advance(60)  # no scheduler ticked for a minute: 60 slots were missed
    h.register("c1", "job-a")
    for _ in range(3):
        h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 1
    assert h.task_row(pending_task_id(h, group_id)).status == TaskStatus.SCHEDULER


def test_given_an_outage_and_misfire_skip_then_the_missed_run_waits_for_the_next_slot(
    harness: Harness,
) -> None:
    h = harness
    h.register("c1", "job-a")
    group_id = add_group(h, start_in_s=1, misfire="skip", interval_ms=10_000)
    task_id = pending_task_id(h, group_id)
    planned = h.task_row(task_id).start_at
    h.clock.advance(60.5)
    h.register("c1", "job-a")
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 0
    moved = h.task_row(task_id)
    assert moved.status == TaskStatus.NONE
    assert moved.start_at == planned + timedelta(seconds=60)  # next slot on the grid
    with h.engine.connect() as conn:
        logs = conn.execute(sa.select(run_log.c.content).where(run_log.c.task_id == task_id))
        assert any("misfire=skip" in line for line in logs.scalars())
    h.clock.set(moved.start_at)
    h.service.tick()
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 1


# --- the wall clock stepped back -------------------------------------------------------------

HOUR = timedelta(hours=1)


def test_given_the_wall_clock_stepped_back_an_hour_then_claims_and_renewals_go_on(
    harness: Harness,
) -> None:
    h = harness
    h.register("c1", "job-a")
    held_id = pending_task_id(h, add_group(h, start_in_s=1.8, interval_ms=600_000))
    h.service.tick()  # claims the held task, due within the look-ahead
    assert h.task_row(held_id).claimed_by == "node-a"

    h.clock.set(T0 - HOUR)  # NTP or an operator steps the clock back
    h.register("c1", "job-a")
    due_id = pending_task_id(h, add_group(h, start_in_s=0))
    wait = h.service.tick()
    assert wait <= h.service.settings.poll_s  # never sleeps out the hour
    # Claims go on: the new task is claimed and sent on this very tick.
    assert h.task_row(due_id).status == TaskStatus.SCHEDULER
    assert h.redis.llen(client_queue("c1")) == 1
    # Lease renewals go on: the held claim was renewed from the clock's new reading.
    renewed = h.task_row(held_id).claimed_until
    assert renewed == (T0 - HOUR + timedelta(seconds=h.service.settings.lease_s)).replace(
        tzinfo=renewed.tzinfo
    )


def test_given_the_wall_clock_stepped_back_then_node_heartbeats_go_on(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    broker = fresh_redis_url()
    settings = Settings(database_url=database_url, broker_url=broker, node_name="node-hb",
                        heartbeat_s=0.05)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    app = create_app(settings)
    fence = RedisFence(broker)
    service = SchedulerService(settings, engine, app, fence, clock)

    def beat_at() -> datetime | None:
        with engine.connect() as conn:
            at = conn.execute(sa.select(server_node.c.heartbeat_at)).scalar_one_or_none()
        return None if at is None else as_utc(at)

    service.start()
    try:
        wait_for(lambda: beat_at() == T0, timeout=10, what="first node heartbeat")
        clock.set(T0 - HOUR)
        wait_for(lambda: beat_at() == T0 - HOUR, timeout=5, what="heartbeat after the step")
    finally:
        service.stop()
        fence.close()
        app.close()
        engine.dispose()


# --- misfire=skip and runs put back by the supervisor ---------------------------------------


def test_given_misfire_skip_when_the_supervisor_puts_a_run_back_then_it_is_sent_not_skipped(
    harness: Harness,
) -> None:
    h = harness
    h.register("lost", "job-a")
    group_id = add_group(h, start_in_s=0, misfire="skip", interval_ms=600_000)
    task_id = pending_task_id(h, group_id)
    h.service.tick()
    assert h.task_row(task_id).client_id == "lost"

    h.clock.advance(10.5)  # the worker died with the order: past the grace of misfire=skip
    h.register("alive", "job-a")
    report = h.service.supervisor.sweep()
    assert report.redispatched == [task_id]  # the supervisor's real re-queue path
    h.service.tick()
    h.service.tick()
    row = h.task_row(task_id)
    assert (row.status, row.client_id, row.attempt) == (TaskStatus.SCHEDULER, "alive", 2)
    assert h.redis.llen(client_queue("alive")) == 1


def test_given_a_run_finished_whose_next_time_is_now_then_it_is_sent_without_waiting_for_a_poll(
    harness: Harness,
) -> None:
    """The handoff of issue 9: the recorder creates the next task claimed by this node and
    hands it to the wheel, so the next tick sends it although no claim poll is due."""
    from fss.events import TaskFinished
    from fss.scheduler.recorder import Recorder

    h = harness
    h.register("c1", "job-a")
    group_id = add_group(h, start_in_s=0, interval_ms=60_000)
    first = pending_task_id(h, group_id)
    h.service.tick()  # claims (the poll) and sends the first run
    assert h.task_row(first).status == TaskStatus.SCHEDULER
    h.redis.delete(client_queue("c1"))

    h.clock.advance(0.01)  # far from the next claim poll (poll_s = 0.5)
    now = h.clock.now()
    recorder = Recorder(h.engine, h.service.settings, h.clock, on_claimed=h.service.hand_over)
    recorder._tasks._transaction([TaskFinished(first, 1, "c1", True, 3, now, next_at=now)], [])

    second = pending_task_id(h, group_id)
    assert second != first
    assert h.task_row(second).claimed_by == "node-a"
    assert h.service.tick() == pytest.approx(0.49)  # it went out; the next wait is the poll's
    assert h.redis.llen(client_queue("c1")) == 1
    row = h.task_row(second)
    assert (row.status, row.client_id, row.dispatched_at) == (TaskStatus.SCHEDULER, "c1", now)


def test_given_a_run_finished_whose_next_time_is_later_then_it_fires_at_its_time(
    harness: Harness,
) -> None:
    from fss.events import TaskFinished
    from fss.scheduler.recorder import Recorder

    h = harness
    h.register("c1", "job-a")
    group_id = add_group(h, start_in_s=0, interval_ms=1000)
    first = pending_task_id(h, group_id)
    h.service.tick()
    h.redis.delete(client_queue("c1"))
    h.clock.advance(0.2)
    recorder = Recorder(h.engine, h.service.settings, h.clock, on_claimed=h.service.hand_over)
    recorder._tasks._transaction([TaskFinished(first, 1, "c1", True, 3, h.clock.now())], [])

    assert h.service.tick() == pytest.approx(0.3)  # the claim poll at 0.5 s comes first
    assert h.redis.llen(client_queue("c1")) == 0
    h.clock.advance(0.8)  # the planned time of the second run (T0 + 1 s)
    h.service.tick()
    assert h.redis.llen(client_queue("c1")) == 1
    assert h.task_row(pending_or_last(h, group_id)).dispatched_at == T0 + timedelta(seconds=1)


def pending_or_last(h: Harness, group_id: int) -> int:
    with h.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.max(task.c.id)).where(task.c.task_group_id == group_id)
            ).scalar_one()
        )


# --- a send taken back, and a scheduler restarted under the same name -----------------------


@contextmanager
def service_on(h: Harness, broker_url: str, **changes: object) -> Iterator[SchedulerService]:
    """Another scheduler process on the harness' database and clock (`changes` to its
    settings): its own app and fence, closed after."""
    settings = h.service.settings.replace(broker_url=broker_url, **changes)
    app = create_app(settings)
    fence = RedisFence(h.service.settings.broker_url)
    try:
        yield SchedulerService(settings, h.engine, app, fence, h.clock)
    finally:
        fence.close()
        app.close()


def test_given_a_send_taken_back_then_the_retry_sends_the_next_attempt(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    h.register("c1", "job-a")
    task_id = pending_task_id(h, add_group(h, start_in_s=0))
    user = f"fss-test-nolpush-{id(h)}"
    # Logged in as a Redis user that may do all but LPUSH: the send of the order fails.
    h.redis.acl_setuser(user, enabled=True, nopass=True, keys=["*"], channels=["*"],
                        categories=["+@all"], commands=["-lpush"])
    broker = h.service.settings.broker_url.replace("redis://", f"redis://{user}:x@", 1)
    # Claim polls far apart: the wheel's retry (1 s), not a new claim, sends it again.
    with service_on(h, broker, poll_s=5.0) as service:
        try:
            service.tick()
            row = h.task_row(task_id)
            assert (row.status, row.attempt, row.client_id) == (TaskStatus.NONE, 1, None)
            assert row.claimed_by == "node-a"  # still ours: the retry may dispatch it
            assert h.redis.get(fence_key(task_id)) == b"revoked:1"

            h.redis.acl_setuser(user, commands=["+lpush"])  # the broker is back
            h.clock.advance(1.0)  # the retry after a failed send
            with caplog.at_level(logging.WARNING, logger="fss"):
                service.tick()
        finally:
            h.redis.acl_deluser(user)
    row = h.task_row(task_id)
    assert (row.status, row.attempt, row.client_id) == (TaskStatus.SCHEDULER, 2, "c1")
    assert h.redis.get(fence_key(task_id)) == b"2"
    assert h.redis.llen(client_queue("c1")) == 1
    assert not [r for r in caplog.records if "holds an attempt" in r.getMessage()]


def test_given_a_scheduler_restarted_under_the_same_name_then_what_it_never_sent_goes_out(
    harness: Harness,
) -> None:
    """The previous process of node-a dispatched two tasks in SQL and died before sending:
    the restarted node-a is alive again under that name, so no peer ever sees it silent.
    Its first tick sends the one nobody entered again; the one a worker entered runs."""
    h = harness
    h.register("c1", "job-a")
    unsent = pending_task_id(h, add_group(h, start_in_s=0))
    entered = pending_task_id(h, add_group(h, start_in_s=0))
    fence = RedisFence(h.service.settings.broker_url)
    claims = tasks.claim_due(h.engine, "node-a", h.clock.now(), timedelta(seconds=1),
                             timedelta(seconds=5))
    with h.engine.begin() as conn:
        for claimed in claims:
            tasks.mark_dispatched(conn, claimed, "node-a",
                                  tasks.DispatchTarget("c1", "host", "127.0.0.1"), h.clock.now())
    assert fence.arm_many([(unsent, 1), (entered, 1)]) == []
    assert fence.enter(entered, 1, "worker-incarnation")
    fence.close()
    heartbeat_node(h.engine, "node-a", h.clock.now(), h.clock.now())  # the old process' beat

    h.clock.advance(1.5)  # restarted well within the lease (4 s)
    h.service.tick()

    row = h.task_row(unsent)
    assert (row.status, row.attempt, row.client_id) == (TaskStatus.SCHEDULER, 2, "c1")
    assert h.redis.llen(client_queue("c1")) == 1
    with h.engine.connect() as conn:
        logs = list(conn.execute(sa.select(run_log.c.content).where(run_log.c.task_id == unsent))
                    .scalars())
    assert any("scheduler node-a restarted" in line for line in logs)
    row = h.task_row(entered)
    assert (row.status, row.attempt) == (TaskStatus.SCHEDULER, 1)  # a worker runs it
    assert (h.redis.get(fence_key(entered)) or b"").startswith(b"1:run:worker-incarnation")
