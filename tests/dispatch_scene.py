"""A dispatcher against a real database and a real Redis, with one registered client `c1`:
shared by the fence tests and the dispatcher's send tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import redis
import sqlalchemy as sa
from celery import Celery
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.events import ClientHeartbeat
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.scheduler.dispatcher import Dispatcher
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.recording import upsert_client
from fss.store.tables import task
from fss.store.tasks import ClaimedTask

NODE = "node-a"
CLIENT = "c1"


@dataclasses.dataclass
class Scene:
    engine: Engine
    clock: ManualClock
    fence: RedisFence
    redis: redis.Redis
    settings: Settings
    apps: list[Celery] = dataclasses.field(default_factory=list)

    def due_tasks(self, count: int) -> list[ClaimedTask]:
        """`count` new groups due now, claimed by NODE (in id order)."""
        ids = []
        for i in range(count):
            spec = GroupSpec(caption=f"g{i}", job_name="job", interval_ms=60_000,
                             start_at=self.clock.now(), data={"n": i})
            ids.append(groups.add_group(self.engine, spec, self.clock.now()))
        claimed = tasks.claim_due(
            self.engine, NODE, self.clock.now(), timedelta(seconds=1), timedelta(seconds=5)
        )
        return sorted((c for c in claimed if c.group_id in ids), key=lambda c: c.id)

    def due_task(self) -> ClaimedTask:
        return self.due_tasks(1)[0]

    def row(self, task_id: int) -> sa.Row[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task).where(task.c.id == task_id)).one()

    def dispatcher(self, broker_url: str) -> Dispatcher:
        app = create_app(self.settings.replace(broker_url=broker_url))
        self.apps.append(app)
        return Dispatcher(self.engine, app, self.fence, self.settings, self.clock)


@contextmanager
def dispatch_scene(database_url: str, broker_url: str, now: datetime) -> Iterator[Scene]:
    settings = Settings(database_url=database_url, broker_url=broker_url, node_name=NODE)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    beat = ClientHeartbeat(CLIENT, "h", "127.0.0.1", 1, ("job",), client_queue(CLIENT), now)
    with engine.begin() as conn:
        upsert_client(conn, beat, now)
    made = Scene(engine, ManualClock(now), RedisFence(broker_url),
                 redis.Redis.from_url(broker_url), settings)
    try:
        yield made
    finally:
        for app in made.apps:
            app.close()
        made.redis.close()
        made.fence.close()
        engine.dispose()
