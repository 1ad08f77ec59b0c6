"""A run that logs or reports progress is alive: the supervisor's hung check, fed by the
recorder, on a manual clock, a real database and a real Redis fence (issue 6, section 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import ClientHeartbeat, Event, TaskFinished, TaskStarted
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.scheduler.supervisor import Supervisor
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.recording import record
from fss.store.tables import task
from fss.worker_sdk import JobContext

T0 = datetime(2026, 2, 1, 9, 0, 0, tzinfo=timezone.utc)
CLIENT = "worker-1"


@dataclass
class Run:
    """One dispatched run of a group with `--timeout-s 3`, and the JobContext its job sees."""

    group_id: int
    task_id: int
    context: JobContext
    outbox: list[Event] = field(default_factory=list)


@dataclass
class World:
    engine: Engine
    clock: ManualClock
    fence: RedisFence
    supervisor: Supervisor

    def record(self, events: list[Event]) -> None:
        with self.engine.begin() as conn:
            record(conn, events, self.clock.now())

    def beat(self) -> None:
        self.record([ClientHeartbeat(CLIENT, "h", "127.0.0.1", 1, ("job",), client_queue(CLIENT),
                                     self.clock.now(), active=1, incarnation="a")])

    def start_run(self) -> Run:
        spec = GroupSpec(caption="log only", job_name="job", interval_ms=60_000, timeout_s=3,
                         start_at=self.clock.now())
        group_id = groups.add_group(self.engine, spec, self.clock.now())
        (claimed,) = tasks.claim_due(self.engine, "n1", self.clock.now(), timedelta(seconds=1),
                                     timedelta(seconds=5))
        with self.engine.begin() as conn:
            attempt = tasks.mark_dispatched(conn, claimed, "n1",
                                            tasks.DispatchTarget(CLIENT, "h", "ip"),
                                            self.clock.now())
        assert attempt == 1
        self.fence.arm(claimed.id, 1)
        assert self.fence.enter(claimed.id, 1)
        outbox: list[Event] = []
        context = JobContext(task_id=claimed.id, attempt=1, group_id=group_id, job_name="job",
                             data={}, start_at=claimed.start_at, client_id=CLIENT,
                             emit=outbox.append, clock=self.clock)
        run = Run(group_id, claimed.id, context, outbox)
        self.record([TaskStarted(claimed.id, 1, CLIENT, self.clock.now())])
        return run

    def second_passes(self, run: Run) -> list[int]:
        """A second of the run: its events are recorded, then the supervisor sweeps."""
        self.clock.advance(1)
        self.beat()
        self.record(run.outbox)
        run.outbox.clear()
        return self.supervisor.sweep().failed

    def finish(self, run: Run) -> None:
        self.record([TaskFinished(run.task_id, 1, CLIENT, True, 8000, self.clock.now())])

    def task_status(self, task_id: int) -> TaskStatus:
        with self.engine.connect() as conn:
            status = conn.execute(sa.select(task.c.status).where(task.c.id == task_id)).scalar_one()
        return TaskStatus(status)

    def tasks_of(self, group_id: int) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(sa.select(task.c.id)
                                    .where(task.c.task_group_id == group_id)).all())


@pytest.fixture
def world(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url(),
                        node_name="n1", hung_timeout_s=60)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    fence = RedisFence(settings.broker_url)
    world = World(engine, clock, fence, Supervisor(engine, fence, settings, clock))
    world.beat()
    yield world
    fence.close()
    engine.dispose()


def test_given_a_job_that_logs_every_second_for_8_s_with_timeout_3_s_then_it_ends_success(
    world: World,
) -> None:
    run = world.start_run()

    for second in range(1, 9):
        run.context.log.info("still working, second %d", second)
        assert world.second_passes(run) == [], f"failed as hung after {second} s"
        assert world.tasks_of(run.group_id) == 1  # no next run starts while it runs

    world.finish(run)
    assert world.task_status(run.task_id) == TaskStatus.SUCCESS


def test_given_a_job_that_repeats_the_same_progress_every_second_then_it_is_alive(
    world: World,
) -> None:
    run = world.start_run()
    run.context.set_progress(50)

    for _ in range(8):
        run.context.set_progress(50)
        assert world.second_passes(run) == []

    world.finish(run)
    assert world.task_status(run.task_id) == TaskStatus.SUCCESS


def test_given_a_job_that_goes_quiet_then_it_is_failed_as_hung_after_its_timeout(
    world: World,
) -> None:
    """The control: the hung check is live in this setup, so the tests above prove something."""
    run = world.start_run()
    run.context.log.info("one line, then silence")  # recorded at T0 + 1 s

    failed = [world.second_passes(run) for _ in range(5)]

    assert failed == [[], [], [], [], [run.task_id]]  # at T0 + 5 s: more than 3 s of silence
    assert world.task_status(run.task_id) == TaskStatus.FAIL
