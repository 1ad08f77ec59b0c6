"""A scheduler dispatches only through its installation's broker, names the installation in
every order and fence key, and leaves the expiry to the fence's clock (not the worker's)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
from fss.events import ClientHeartbeat
from fss.fence import RedisFence
from fss.installation import MARK_KEY, BrokerMark, InstallationGuard, ScopedFence
from fss.naming import client_queue, fence_key
from fss.scheduler.service import SchedulerService
from fss.store import groups
from fss.store.engine import create_engine
from fss.store.installation import installation_id
from fss.store.recording import upsert_client
from fss.store.tables import server_node, task

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@dataclass
class Scene:
    engine: Engine
    clock: ManualClock
    service: SchedulerService
    redis: redis.Redis
    installation: str


@pytest.fixture
def scene(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Scene]:
    broker = fresh_redis_url()
    settings = Settings(database_url=database_url, broker_url=broker, node_name="node-a")
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    app = create_app(settings)
    installation = installation_id(engine)
    inner = RedisFence(broker)
    guard = InstallationGuard(installation, BrokerMark(broker), list, "the broker")
    service = SchedulerService(
        settings, engine, app, ScopedFence(inner, installation), clock,
        installation=installation, guard=guard,
    )
    client = redis.Redis.from_url(broker)
    yield Scene(engine, clock, service, client, installation)
    # check_broker() starts the recorder thread once the broker is ours: stop it, or it
    # would go on consuming from this Redis db after the db is handed to another test.
    service.stop()
    guard.close()
    client.close()
    inner.close()
    app.close()
    engine.dispose()


def due_task(s: Scene) -> int:
    beat = ClientHeartbeat("c1", "host", "127.0.0.1", 1, ("job-a",), client_queue("c1"),
                           s.clock.now())
    with s.engine.begin() as conn:
        upsert_client(conn, beat, s.clock.now())
    spec = GroupSpec(caption="g", job_name="job-a", interval_ms=1000,
                     start_at=s.clock.now() + timedelta(seconds=0.5))
    group_id = groups.add_group(s.engine, spec, s.clock.now())
    with s.engine.connect() as conn:
        return int(groups.get_group(conn, group_id).task_id or 0)


def fire(s: Scene) -> None:
    s.service.check_broker()
    s.service.tick()
    s.clock.advance(0.5)
    s.service.tick()


def test_orders_and_fence_keys_carry_the_installation_and_no_worker_side_expiry(
    scene: Scene,
) -> None:
    task_id = due_task(scene)

    fire(scene)

    [raw] = scene.redis.lrange(client_queue("c1"), 0, -1)
    message = json.loads(raw)
    assert message["headers"]["expires"] is None  # the worker's clock never judges it
    assert message["properties"]["expiration"] is not None  # the broker's TTL stays
    # the body is base64 JSON of [args, kwargs, embed]
    import base64

    kwargs = json.loads(base64.b64decode(message["body"]))[1]
    assert kwargs["installation"] == scene.installation
    key = fence_key(task_id, scene.installation)
    assert scene.redis.get(key) == b"1"
    # the armed attempt lapses with the order's expiry, counted by Redis' clock
    assert 0 < scene.redis.ttl(key) <= 30
    assert scene.redis.get(fence_key(task_id)) is None
    assert scene.redis.get(MARK_KEY) == scene.installation.encode()


def test_on_another_installations_broker_it_neither_claims_nor_dispatches(
    scene: Scene,
) -> None:
    task_id = due_task(scene)
    scene.redis.set(MARK_KEY, "0ther1d0", ex=60)

    fire(scene)
    scene.service.beat()

    assert scene.redis.llen(client_queue("c1")) == 0
    with scene.engine.connect() as conn:
        row = conn.execute(sa.select(task).where(task.c.id == task_id)).one()
        reason = conn.execute(sa.select(server_node.c.unhealthy_reason)).scalar()
    assert (row.status, row.claimed_by) == (0, None)
    assert reason is not None and "in use by installation 0ther1d0" in reason

    # The other installation stops; its mark lapses: this one takes the broker and runs.
    scene.redis.delete(MARK_KEY)
    scene.clock.advance(5)
    scene.service.guard.check()  # type: ignore[union-attr]
    fire(scene)
    assert scene.redis.llen(client_queue("c1")) == 1


def test_given_fss_fence_url_when_the_broker_url_is_wrong_then_the_scheduler_does_not_dispatch(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    """The guard `fss scheduler` builds: the mark is kept on the broker too, and the live
    workers' beacons (fss worker keeps one on its broker as well) tell a wrong broker URL
    from the right one although both schedulers share the fence and the database."""
    from fss.cli.context import CliContext
    from fss.cli.processes import installation_guard
    from fss.worker_sdk.worker import beacons_for

    broker, fence, wrong = fresh_redis_url(), fresh_redis_url(), fresh_redis_url()
    clock = ManualClock(T0)
    right = Settings(database_url=database_url, broker_url=broker, fence_url=fence)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    installation = installation_id(engine)
    beat = ClientHeartbeat("w1", "host", "127.0.0.1", 1, ("job-a",), client_queue("w1"), T0)
    with engine.begin() as conn:
        upsert_client(conn, beat, T0)
    beacons = beacons_for(right, "w1")
    for beacon in beacons:
        beacon.keep()
    cli = CliContext(settings=right, clock=clock, _engine=engine)
    good = installation_guard(cli, right, installation)
    bad = installation_guard(cli, right.replace(broker_url=wrong), installation)
    try:
        assert len(beacons) == 2
        assert good is not None and good.may_dispatch
        assert bad is not None and not bad.may_dispatch
        judged = bad.check()
        assert judged.reason is not None
        assert f"broker {wrong}" in judged.reason and "FSS_BROKER_URL" in judged.reason
        for url in (broker, fence):
            with redis.Redis.from_url(url) as client:
                assert client.get(MARK_KEY) == installation.encode()
    finally:
        for beacon in beacons:
            beacon.close()
        for guard in (good, bad):
            if guard is not None:
                guard.close()
        engine.dispose()
