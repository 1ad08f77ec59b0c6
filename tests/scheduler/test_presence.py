"""A dead worker is noticed from its closed Redis connection (its beacon), in seconds.

Real Redis throughout (CLIENT LIST is server-wide: every test uses its own client ids);
the supervisor runs against a manual clock and a real database.
"""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.status import TaskStatus
from fss.events import TaskStarted
from fss.fence import RedisFence
from fss.presence import Presence, PresenceBeacon, beacon_name, create_beacon, create_presence
from fss.scheduler.supervisor import Supervisor
from fss.store.engine import create_engine
from tests.runtime_python import runtime_python
from tests.scheduler.test_supervisor import T0, World


def unique_client() -> str:
    return f"presence-{uuid.uuid4().hex[:10]}"


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def listed(presence: Presence, client_id: str) -> bool:
    connected = presence.connected()
    assert connected is not None
    return beacon_name(client_id) in connected


@pytest.fixture
def presence(redis_url: str) -> Iterator[Presence]:
    made = Presence(redis_url)
    yield made
    made.close()


def test_a_beacon_is_listed_while_open_and_not_after_close(
    redis_url: str, presence: Presence
) -> None:
    client_id = unique_client()
    beacon = PresenceBeacon(redis_url, client_id)
    assert not listed(presence, client_id)  # nothing connects before the first keep()
    beacon.keep()
    assert listed(presence, client_id)
    beacon.keep()  # the same connection: still exactly one
    connected = presence.connected()
    assert connected is not None and beacon_name(client_id) in connected
    beacon.close()
    assert wait_for(lambda: not listed(presence, client_id))


def test_names_redis_refuses_are_made_printable() -> None:
    assert beacon_name("host 1/ü") == "fss-client:host_1/_"
    assert beacon_name("w-1.example") == "fss-client:w-1.example"


BEACON_PROCESS = """
import sys, time
from fss.presence import PresenceBeacon
beacon = PresenceBeacon(sys.argv[1], sys.argv[2])
beacon.keep()
print("ready", flush=True)
time.sleep(60)
"""


def test_a_killed_process_drops_off_the_list_at_once(redis_url: str, presence: Presence) -> None:
    client_id = unique_client()
    process = subprocess.Popen(
        [runtime_python(), "-c", BEACON_PROCESS, redis_url, client_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        assert listed(presence, client_id)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert wait_for(lambda: not listed(presence, client_id), timeout_s=2.0)
    finally:
        process.kill()
        process.wait(timeout=10)


def _sleep_in_child(seconds: float) -> None:
    time.sleep(seconds)


def test_a_forked_child_does_not_keep_the_parents_beacon_alive(
    redis_url: str, presence: Presence
) -> None:
    client_id = unique_client()
    beacon = PresenceBeacon(redis_url, client_id)
    beacon.keep()
    child = multiprocessing.get_context("fork").Process(target=_sleep_in_child, args=(20,))
    child.start()
    try:
        time.sleep(0.3)  # the child runs, holding whatever it inherited
        beacon.close()
        assert wait_for(lambda: not listed(presence, client_id), timeout_s=2.0)
        assert child.is_alive()
    finally:
        child.kill()
        child.join(timeout=10)


def test_only_redis_urls_get_a_beacon_or_a_presence() -> None:
    assert create_beacon("amqp://guest@localhost//", "w") is None
    assert create_presence("memory://") is None
    assert isinstance(create_beacon("redis://127.0.0.1:6379/0", "w"), PresenceBeacon)


@pytest.fixture
def world(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url(), node_name="n1")
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine: Engine = create_engine(database_url)
    clock = ManualClock(T0)
    fence = RedisFence(settings.broker_url)
    presence = Presence(settings.broker_url)
    supervisor = Supervisor(engine, fence, settings, clock, presence=presence)
    yield World(engine, clock, fence, supervisor, settings)
    presence.close()
    fence.close()
    engine.dispose()


def running_client(world: World) -> tuple[str, PresenceBeacon, int, int]:
    client_id = unique_client()
    beacon = PresenceBeacon(world.settings.broker_url, client_id)
    beacon.keep()
    world.beat(client_id)
    group_id, task_id = world.dispatch_new_group(client_id)
    assert world.fence.enter(task_id, 1)
    world.events(TaskStarted(task_id, 1, client_id, world.clock.now()))
    return client_id, beacon, group_id, task_id


def test_given_a_worker_whose_process_died_then_its_run_fails_and_the_group_goes_on_in_seconds(
    world: World,
) -> None:
    client_id, beacon, group_id, task_id = running_client(world)
    assert world.supervisor.sweep().removed_clients == []  # beacon seen
    beacon.close()  # what the kernel does when the process is killed
    time.sleep(0.2)

    world.clock.advance(1.0)
    assert world.supervisor.sweep().removed_clients == []  # missing, heartbeat 1 s late only
    world.clock.advance(2.5)  # heartbeat 3.5 s late, beacon missing 2.5 s
    report = world.supervisor.sweep()

    assert report.removed_clients == [client_id]
    assert report.failed == [task_id]
    row = world.task(task_id)
    assert row.status == TaskStatus.FAIL
    assert f"the process of client {client_id} is gone" in row.error
    following = world.open_task_of(group_id)
    assert following is not None and following.status == TaskStatus.NONE
    assert client_id not in world.clients()


def test_given_a_live_worker_whose_heartbeats_are_late_then_its_beacon_keeps_it(
    world: World,
) -> None:
    client_id, beacon, _group_id, task_id = running_client(world)
    try:
        for _ in range(9):  # heartbeats held up for 9 s (a slow recorder): beacon connected
            world.clock.advance(1.0)
            report = world.supervisor.sweep()
            assert report.removed_clients == [] and report.failed == []
        assert world.task(task_id).status == TaskStatus.WORKING
        world.clock.advance(1.5)  # past client_timeout_s: silence alone still counts
        assert world.supervisor.sweep().removed_clients == [client_id]
    finally:
        beacon.close()


def test_given_a_client_without_a_beacon_then_only_the_liveness_timeout_drops_it(
    world: World,
) -> None:
    client_id = unique_client()  # e.g. a gRPC bridge session: never had a beacon
    world.beat(client_id)
    world.supervisor.sweep()
    world.clock.advance(5.0)
    assert world.supervisor.sweep().removed_clients == []
    world.clock.advance(5.5)
    assert world.supervisor.sweep().removed_clients == [client_id]


def test_given_a_beacon_that_comes_back_then_the_client_is_kept(world: World) -> None:
    _client_id, beacon, _group_id, task_id = running_client(world)
    world.supervisor.sweep()
    beacon.close()
    time.sleep(0.2)
    world.clock.advance(1.0)
    world.supervisor.sweep()  # missing since here
    beacon.keep()  # reconnected (Redis restarted, say) before it counted as gone
    world.clock.advance(3.0)
    report = world.supervisor.sweep()
    beacon.close()
    assert report.removed_clients == [] and world.task(task_id).status == TaskStatus.WORKING
