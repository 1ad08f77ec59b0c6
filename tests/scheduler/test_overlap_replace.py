"""The supervisor's `replace` step against a manual clock, a real database and Redis: a
Working run of a replace group whose next slot came is stopped, once; where it cannot be
killed it is failed here and the slot's run starts now. (The kill of a prefork worker's run
is tested with real processes in tests/e2e/test_overlap_e2e.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss import kills
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.events import ClientHeartbeat, TaskFinished, TaskStarted
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.scheduler.supervisor import Supervisor
from fss.store import groups, tasks
from fss.store.recording import record, upsert_client
from fss.store.tables import run_log, task

T0 = datetime(2026, 2, 1, 9, 0, 0, tzinfo=timezone.utc)


@dataclass
class World:
    engine: Engine
    clock: ManualClock
    supervisor: Supervisor
    settings: Settings

    def running(self, client_id: str, language: str, **spec: Any) -> tuple[int, int]:
        """A 2 s group whose first run (slot T0) is Working on `client_id`."""
        beat = ClientHeartbeat(client_id, "h", "127.0.0.1", 1, ("job",),
                               client_queue(client_id), T0, language=language)
        values: dict[str, Any] = {"caption": "g", "job_name": "job", "interval_ms": 2000,
                                  "start_at": T0, "overlap": "replace"}
        values.update(spec)
        group_id = groups.add_group(self.engine, GroupSpec(**values), T0 - timedelta(seconds=1))
        claimed = next(c for c in tasks.claim_due(self.engine, "n1", T0, timedelta(seconds=1),
                                                  timedelta(seconds=5))
                       if c.group_id == group_id)
        with self.engine.begin() as conn:
            upsert_client(conn, beat, T0)
            tasks.mark_dispatched(conn, claimed, "n1", tasks.DispatchTarget(client_id, "h", "ip"),
                                  T0)
            record(conn, [TaskStarted(claimed.id, 1, client_id, T0)], T0)
        return group_id, claimed.id

    def beat(self, client_id: str, language: str) -> None:
        beat = ClientHeartbeat(client_id, "h", "127.0.0.1", 1, ("job",),
                               client_queue(client_id), self.clock.now(), language=language)
        with self.engine.begin() as conn:
            upsert_client(conn, beat, self.clock.now())

    def task(self, task_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.id == task_id)).one()

    def open_task_of(self, group_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.open_group_id == group_id)).one()

    def logs(self, task_id: int) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(run_log.c.content)
                                     .where(run_log.c.task_id == task_id)
                                     .order_by(run_log.c.id)).scalars())


# How long a kill waits here for its answer: nobody answers on this broker (no worker, no
# bridge runs), so each kill waited all of fss.kills.REPLY_TIMEOUT_S (3 s) for the same outcome.
REPLY_WAIT_S = 0.2


@pytest.fixture
def world(
    database_url: str, fresh_redis_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setattr(kills, "REPLY_TIMEOUT_S", REPLY_WAIT_S)
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url(),
                        node_name="n1", hung_timeout_s=600, time_limit_grace_s=5)
    engine = create_engine_migrated(database_url)
    clock = ManualClock(T0)
    fence = RedisFence(settings.broker_url)
    yield World(engine, clock, Supervisor(engine, fence, settings, clock), settings)
    fence.close()
    engine.dispose()


def create_engine_migrated(url: str) -> Engine:
    from fss.store.engine import create_engine

    migrated_copy(url)  # the schema at head: tests/servers.py
    engine = create_engine(url)
    return engine


def test_a_grpc_clients_run_is_failed_at_the_next_slot_and_the_slots_run_starts_now(
    world: World,
) -> None:
    """A gRPC client's run gets the kill through its bridge (fss.bridge.control); with no
    bridge answering (none runs here) the supervisor fails the run itself, once, and the
    recorder's plan starts the slot's run now; the run's late end is ignored."""
    group_id, task_id = world.running("node-1", "node")
    world.clock.set(T0 + timedelta(seconds=2) - timedelta(milliseconds=1))
    world.beat("node-1", "node")
    assert world.supervisor.sweep().failed == []
    assert world.task(task_id).status == TaskStatus.WORKING

    now = T0 + timedelta(milliseconds=2300)
    world.clock.set(now)
    world.beat("node-1", "node")
    report = world.supervisor.sweep()

    assert report.failed == [task_id] and report.replaced == []
    row = world.task(task_id)
    assert row.status == TaskStatus.FAIL and row.kill_requested_at is not None
    assert row.error.startswith("replaced by the run of 09:00:02; not killed (node-1 did not "
                                f"answer within {REPLY_WAIT_S:g} s")
    assert world.logs(task_id)[0] == "replace: slot 09:00:02 came while running; kill requested"
    following = world.open_task_of(group_id)
    assert following.start_at == now and following.status == TaskStatus.NONE
    assert world.logs(following.id) == [
        "replace: slot 09:00:02 came while the previous run went on; runs now"
    ]
    # Asked once: the next sweep finds nothing to do; the run's late end changes nothing.
    assert world.supervisor.sweep().failed == []
    with world.engine.begin() as conn:
        late = TaskFinished(task_id, 1, "node-1", True, 9000, now + timedelta(seconds=6))
        assert record(conn, [late], now + timedelta(seconds=6)).finished == 0
    assert world.task(task_id).status == TaskStatus.FAIL


def test_a_worker_that_does_not_answer_the_kill_has_its_run_failed(world: World) -> None:
    """A Python client nobody answers for (here: no worker listens on the broker) gets the
    real kill command; after its wait for the answer the run is failed here."""
    group_id, task_id = world.running("w-gone", "python")
    world.clock.set(T0 + timedelta(seconds=2))
    world.beat("w-gone", "python")

    report = world.supervisor.sweep()

    assert report.failed == [task_id]
    assert f"w-gone did not answer within {REPLY_WAIT_S:g} s" in world.task(task_id).error
    assert world.open_task_of(group_id).start_at == T0 + timedelta(seconds=2)


def test_a_killed_run_that_does_not_end_within_the_grace_is_failed(world: World) -> None:
    from fss.store.overlap import replaceable_runs, request_replace

    group_id, task_id = world.running("w1", "python")
    slot = T0 + timedelta(seconds=2)
    with world.engine.begin() as conn:
        (run,) = replaceable_runs(conn, slot)
        assert request_replace(conn, run, "replace: asked", slot)  # as a sweep that sent it

    world.clock.set(slot + timedelta(seconds=5))
    world.beat("w1", "python")
    assert world.supervisor.sweep().failed == []  # within the grace (5 s): the kill may land

    world.clock.set(slot + timedelta(seconds=5, milliseconds=1))
    world.beat("w1", "python")
    assert world.supervisor.sweep().failed == [task_id]
    assert world.task(task_id).error == (
        "replaced by the run of 09:00:02: it did not end within 5 s of its kill; marked failed"
    )
    assert world.open_task_of(group_id).status == TaskStatus.NONE


def test_runs_of_skip_and_buffer_one_groups_are_left_alone(world: World) -> None:
    skipping = world.running("node-1", "node", overlap="skip")[1]
    buffering = world.running("node-1", "node", overlap="buffer_one")[1]
    world.clock.set(T0 + timedelta(seconds=9))
    world.beat("node-1", "node")

    assert world.supervisor.sweep().failed == []
    assert {world.task(t).status for t in (skipping, buffering)} == {TaskStatus.WORKING}
