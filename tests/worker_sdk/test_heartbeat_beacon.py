"""Heartbeats never wait on the presence beacon: a busy fence Redis (where the beacon lives)
must not silence a worker whose broker is fine, and a Redis answering BUSY for a while does
not switch the supervisor's presence check off for good.

Real Redis throughout: the broker is a db of the shared server, the fence a redis-server of
the test's own, stalled by a busy Lua script (DEBUG SLEEP is disabled on some servers).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import redis
from celery import signals
from throwaway import ThrowawayRedis, throwaway_redis

from fss.config import Settings
from fss.naming import CLIENTS_QUEUE
from fss.presence import Presence, beacon_name
from fss.worker_sdk.job import JobSpec
from fss.worker_sdk.worker import HeartbeatStep, build_worker_app

__all__ = ["throwaway_redis"]  # fixture used below

HEARTBEAT_S = 0.2

# Keeps Redis busy for ARGV[1] milliseconds (by its own clock): every other client waits.
BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000 + math.floor(t[2] / 1000)
while true do
  t = redis.call('TIME')
  if t[1] * 1000 + math.floor(t[2] / 1000) - start >= tonumber(ARGV[1]) then return 1 end
end
"""


def noop(ctx: object) -> None:
    return None


def stall(url: str, seconds: float) -> threading.Thread:
    """Redis at `url` busy for `seconds`, from a thread; returns once the script runs."""
    client = redis.Redis.from_url(url, socket_timeout=seconds + 30)
    script = client.register_script(BUSY_SCRIPT)
    script(args=[0])  # loaded: the stall itself starts at once
    thread = threading.Thread(target=script, kwargs={"args": [int(seconds * 1000)]}, daemon=True)
    thread.start()
    time.sleep(0.1)
    return thread


def waited(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def heartbeat(
    fresh_redis_url: Callable[[], str], throwaway_redis: ThrowawayRedis
) -> Iterator[tuple[HeartbeatStep, str, str]]:
    broker = fresh_redis_url()
    settings = Settings(
        database_url="sqlite://",
        broker_url=broker,
        fence_url=throwaway_redis.url(0),
        heartbeat_s=HEARTBEAT_S,
    )
    client_id = f"beat-{uuid.uuid4().hex[:8]}"
    app, _runtime = build_worker_app(settings, {"noop": JobSpec("noop", noop)}, client_id)
    worker = SimpleNamespace(app=app, hostname=client_id)
    step = HeartbeatStep(worker)
    # Started off the main thread: the step only takes over SIGINT on the main thread.
    starter = threading.Thread(target=step.start, args=(worker,))
    starter.start()
    starter.join()
    try:
        yield step, broker, throwaway_redis.url(0)
    finally:
        step._on_shutdown()
        for signal in (signals.worker_shutting_down, signals.worker_shutdown):
            signal.disconnect(dispatch_uid=step._uid + ".draining")
            signal.disconnect(dispatch_uid=step._uid + ".left")


def test_heartbeats_go_on_while_the_fence_redis_is_busy(
    heartbeat: tuple[HeartbeatStep, str, str],
) -> None:
    step, broker, fence = heartbeat
    presence = Presence(fence)
    try:
        assert len(step._beacons) == 2  # on the fence Redis, and on the broker's
        name = step._beacons[0].name
        assert waited(lambda: name in (presence.connected() or set()))
        with redis.Redis.from_url(broker) as client:
            assert waited(lambda: client.llen(CLIENTS_QUEUE) >= 2)
            stalled_s = 3.0
            busy = stall(fence, stalled_s)
            before = client.llen(CLIENTS_QUEUE)
            time.sleep(stalled_s - 0.5)
            during = client.llen(CLIENTS_QUEUE) - before
            busy.join(timeout=30)
        # One heartbeat every 0.2 s: about 12 in 2.5 s. Before the fix the heartbeat thread
        # sat in the beacon's PING for the whole stall and sent none.
        assert during >= 6, f"{during} heartbeats reached the broker while the fence was busy"
        # The beacon is still there (or back) once the fence answers again.
        assert waited(lambda: name in (presence.connected() or set()), timeout_s=8)
    finally:
        presence.close()


def test_a_busy_reply_does_not_turn_presence_off(throwaway_redis: ThrowawayRedis) -> None:
    url = throwaway_redis.url(0)
    with redis.Redis.from_url(url) as admin:
        admin.config_set("busy-reply-threshold", 100)  # BUSY after 0.1 s instead of 5 s
    holder = redis.Redis.from_url(url, client_name=beacon_name("busy-probe"))
    holder.ping()
    presence = Presence(url)
    try:
        assert beacon_name("busy-probe") in (presence.connected() or set())
        busy = stall(url, 1.5)
        time.sleep(0.2)
        assert presence.connected() is None  # BUSY: cannot say now
        busy.join(timeout=30)
        # Before the fix a BUSY reply counted as "CLIENT LIST refused": presence stayed off,
        # and dead workers were noticed only after the full liveness timeout.
        assert beacon_name("busy-probe") in (presence.connected() or set())
    finally:
        presence.close()
        holder.close()
