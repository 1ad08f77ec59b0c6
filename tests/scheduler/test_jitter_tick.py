"""jitter_ms through two schedulers' ticks: a cron group's run fires at its slot plus the
group's offset (not before, not on the slot), once, whichever scheduler holds it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis
import sqlalchemy as sa
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.jitter import jitter_offset_ms
from fss.domain.status import TaskStatus
from fss.events import ClientHeartbeat, TaskFinished
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.scheduler.service import SchedulerService
from fss.store import groups, recording, tasks
from fss.store.engine import create_engine
from fss.store.recording import upsert_client
from fss.store.tables import task, task_group

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
JITTER = 30_000
MS = timedelta(milliseconds=1)


class Cluster:
    def __init__(self, database_url: str, broker: str) -> None:
        migrated_copy(database_url)  # the schema at head: tests/servers.py
        self.engine: Engine = create_engine(database_url)
        self.clock = ManualClock(T0)
        self.apps = []
        self.fences = []
        self.nodes: dict[str, SchedulerService] = {}
        for name in ("node-a", "node-b"):
            settings = Settings(database_url=database_url, broker_url=broker, node_name=name)
            app, fence = create_app(settings), RedisFence(broker)
            self.apps.append(app)
            self.fences.append(fence)
            self.nodes[name] = SchedulerService(settings, self.engine, app, fence, self.clock)
        self.redis = redis.Redis.from_url(broker)

    def close(self) -> None:
        self.redis.close()
        for fence in self.fences:
            fence.close()
        for app in self.apps:
            app.close()
        self.engine.dispose()

    def register(self, client_id: str, job: str) -> None:
        beat = ClientHeartbeat(client_id, "host", "127.0.0.1", 1, (job,), client_queue(client_id),
                               self.clock.now())
        with self.engine.begin() as conn:
            upsert_client(conn, beat, self.clock.now())

    def tick_both(self) -> None:
        for node in self.nodes.values():
            node.tick()

    def sent(self) -> int:
        return int(self.redis.llen(client_queue("c1")))

    def row(self, group_id: int) -> sa.Row[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(task).where(task.c.task_group_id == group_id).order_by(task.c.id.desc())
            ).first()  # type: ignore[return-value]

    def next_at(self, group_id: int) -> datetime:
        with self.engine.connect() as conn:
            return conn.execute(  # type: ignore[no-any-return]
                sa.select(task_group.c.next_at).where(task_group.c.id == group_id)
            ).scalar_one()


@pytest.fixture
def cluster(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Cluster]:
    c = Cluster(database_url, fresh_redis_url())
    yield c
    c.close()


def fire_at_its_jittered_time(c: Cluster, group_id: int, slot: datetime) -> int:
    """Tick both nodes up to 1 ms before the slot + offset (nothing is sent), then at it
    (exactly one order). Returns the task id."""
    start = slot + jitter_offset_ms(group_id, slot, JITTER) * MS
    row = c.row(group_id)
    assert row.status == TaskStatus.NONE and row.start_at == start
    assert c.next_at(group_id) == slot
    sent_before = c.sent()
    c.clock.set(slot)
    c.register("c1", "job-a")  # alive: it heartbeats while the clock jumps
    c.tick_both()
    if start - MS > slot:
        c.clock.set(start - MS)  # within the dispatch lead: readied, held, not sent
        c.register("c1", "job-a")
        c.tick_both()
    assert c.sent() == sent_before
    c.clock.set(start)
    c.register("c1", "job-a")  # alive: it heartbeats while the clock jumps
    c.tick_both()
    c.tick_both()
    assert c.sent() == sent_before + 1
    row = c.row(group_id)
    assert row.status == TaskStatus.SCHEDULER and row.dispatched_at == start
    return int(row.id)


def test_a_cron_group_with_jitter_fires_at_its_offset_on_either_scheduler(c: Cluster) -> None:
    spec = GroupSpec(caption="j", job_name="job-a", cron="0 * * * * *", jitter_ms=JITTER)
    group_id = groups.add_group(c.engine, spec, T0)

    task_id = fire_at_its_jittered_time(c, group_id, T0)
    with c.engine.begin() as conn:
        event = TaskFinished(task_id, 1, "c1", True, 5, c.clock.now() + 5 * MS)
        recording.record(conn, [event], c.clock.now() + 5 * MS)

    # node-a stops and gives its claims back: node-b fires the next slot at the same offset
    # the hash gives for it (the row carries it; node-b computes nothing of its own).
    tasks.release_claims(c.engine, "node-a")
    del c.nodes["node-a"]
    fire_at_its_jittered_time(c, group_id, T0 + timedelta(minutes=1))
    assert c.row(group_id).server_node == "node-b"


@pytest.fixture
def c(cluster: Cluster) -> Cluster:
    return cluster
