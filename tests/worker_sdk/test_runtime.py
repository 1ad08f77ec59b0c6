"""A run as the bridge hooks drive it: fence, started, job, finished, all on a real Redis broker."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.simple import SimpleQueue
from throwaway import ThrowawayRedis, throwaway_redis

import fss.worker_sdk.runtime as runtime_module
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.events import (
    Event,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
    decode_batch,
)
from fss.fence import RedisFence, fence_key
from fss.naming import EVENTS_QUEUE
from fss.orders import RunOrder
from fss.worker_sdk import JobContext, job
from fss.worker_sdk.job import discover_jobs
from fss.worker_sdk.runtime import WorkerRuntime

__all__ = ["throwaway_redis"]  # a fixture used below

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=timezone.utc)
calls: list[int] = []


@job("ok")
def ok_job(ctx: JobContext) -> None:
    calls.append(ctx.task_id)
    ctx.set_progress(30)
    ctx.log.warning("careful: %s", ctx.data.get("x"))
    ctx.data["seen"] = True
    ctx.set_next_at(timedelta(minutes=5))


@job("fails")
def failing_job(ctx: JobContext) -> None:
    calls.append(ctx.task_id)
    ctx.set_progress(70)
    raise KeyError("missing thing")


@job("says-no")
def says_no(ctx: JobContext) -> bool:
    calls.append(ctx.task_id)
    return False


@job("async")
async def async_job(ctx: JobContext) -> None:
    await asyncio.sleep(0)
    calls.append(ctx.task_id)
    ctx.set_progress(100)


def this_module() -> ModuleType:
    import sys

    return sys.modules[__name__]


@pytest.fixture
def runtime(fresh_redis_url: Callable[[], str]) -> Iterator[WorkerRuntime]:
    calls.clear()
    settings = Settings(broker_url=fresh_redis_url())
    rt = WorkerRuntime(settings, "client-1", discover_jobs([this_module()]), ManualClock(T0))
    yield rt
    rt.close()


def order(
    task_id: int, job_name: str, attempt: int = 1, client: str = "client-1"
) -> dict[str, Any]:
    return RunOrder(task_id, attempt, 7, job_name, client, T0, {"x": 1}).to_kwargs()


def drain_events(rt: WorkerRuntime) -> list[Event]:
    rt.publisher.flush()
    events: list[Event] = []
    with Connection(rt.settings.broker_url) as conn:
        queue = SimpleQueue(conn, EVENTS_QUEUE)
        while True:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                break
            events.extend(decode_batch(message.payload))
            message.ack()
        queue.close()
    return events


def run_once(rt: WorkerRuntime, celery_id: str, kwargs: dict[str, Any]) -> None:
    delivery = rt.begin(celery_id, kwargs)
    rt.run(delivery)
    rt.end(delivery, "SUCCESS")


def test_discovery_finds_every_marked_function() -> None:
    assert set(discover_jobs([this_module()])) == {"ok", "fails", "says-no", "async"}


def test_given_the_armed_attempt_when_run_then_events_tell_the_whole_story(
    runtime: WorkerRuntime,
) -> None:
    RedisFence(runtime.settings.broker_url).arm(11, 1)
    run_once(runtime, "c-1", order(11, "ok"))
    events = drain_events(runtime)
    kinds = [type(e) for e in events]
    assert kinds == [TaskStarted, TaskProgressed, TaskLogged, TaskFinished]
    log = events[2]
    assert isinstance(log, TaskLogged) and log.level == 3 and log.content == "careful: 1"
    finished = events[3]
    assert isinstance(finished, TaskFinished)
    assert finished.success and finished.error is None
    assert finished.data == {"x": 1, "seen": True}
    assert finished.next_at == T0 + timedelta(minutes=5)
    assert calls == [11]


def test_given_a_stale_attempt_when_delivered_then_the_job_never_runs(
    runtime: WorkerRuntime,
) -> None:
    fence = RedisFence(runtime.settings.broker_url)
    fence.arm(12, 1)
    assert fence.revoke(12, 1)  # the supervisor took attempt 1 back before anyone entered
    fence.arm(12, 2)  # ... and the scheduler re-dispatched
    run_once(runtime, "c-old", order(12, "ok", attempt=1))
    assert calls == []
    assert drain_events(runtime) == []
    run_once(runtime, "c-new", order(12, "ok", attempt=2))
    assert calls == [12]
    assert not fence.revoke(12, 2)  # attempt 2 is running: it cannot be taken back


def test_given_one_attempt_delivered_twice_then_it_runs_once(runtime: WorkerRuntime) -> None:
    RedisFence(runtime.settings.broker_url).arm(13, 1)
    run_once(runtime, "c-a", order(13, "ok"))
    run_once(runtime, "c-b", order(13, "ok"))
    assert calls == [13]


def test_given_two_copies_of_one_order_running_at_once_then_only_the_entered_one_runs(
    runtime: WorkerRuntime,
) -> None:
    # A threads pool: both copies share the Celery id and are begun before either ends.
    RedisFence(runtime.settings.broker_url).arm(18, 1)
    first = runtime.begin("fss-18-1", order(18, "ok"))
    second = runtime.begin("fss-18-1", order(18, "ok"))
    assert first and second is None
    runtime.run(second)
    runtime.end(second, "SUCCESS")  # the refused copy ends first: the entered run stays
    runtime.run(first)
    runtime.end(first, "SUCCESS")
    assert calls == [18]
    finished = [e for e in drain_events(runtime) if isinstance(e, TaskFinished)]
    assert [(f.task_id, f.success) for f in finished] == [(18, True)]


def test_given_an_order_of_an_installation_then_the_worker_enters_its_fence(
    runtime: WorkerRuntime,
) -> None:
    fence = RedisFence(runtime.settings.broker_url)
    fence.arm(19, 1, installation="inst-a")
    kwargs = dataclasses.replace(
        RunOrder.from_kwargs(order(19, "ok")), installation="inst-a"
    ).to_kwargs()
    run_once(runtime, "c-1", kwargs)
    assert calls == [19]
    assert fence.holder(19, 1, installation="inst-a") == runtime.incarnation
    assert fence.holder(19, 1) is None
    fence.close()
    # Every event of the run names the installation, whoever made it (runtime or context).
    events = [e for e in drain_events(runtime) if getattr(e, "task_id", None) == 19]
    assert {type(e).__name__ for e in events} >= {"TaskStarted", "TaskFinished", "TaskLogged",
                                                  "TaskProgressed"}
    assert {e.installation for e in events} == {"inst-a"}


def test_given_an_order_for_another_client_then_it_is_not_run(runtime: WorkerRuntime) -> None:
    RedisFence(runtime.settings.broker_url).arm(14, 1)
    run_once(runtime, "c-1", order(14, "ok", client="someone-else"))
    assert calls == []


def test_given_a_job_that_raises_then_finished_is_a_failure_with_the_traceback(
    runtime: WorkerRuntime,
) -> None:
    RedisFence(runtime.settings.broker_url).arm(15, 1)
    run_once(runtime, "c-1", order(15, "fails"))
    events = drain_events(runtime)
    finished = events[-1]
    assert isinstance(finished, TaskFinished) and not finished.success
    assert "KeyError: 'missing thing'" in (finished.error or "")
    logs = [e for e in events if isinstance(e, TaskLogged)]
    assert logs and logs[0].level == 4 and "Traceback" in logs[0].content
    assert [e.progress for e in events if isinstance(e, TaskProgressed)] == [70]


def test_given_a_job_returning_false_then_it_fails(runtime: WorkerRuntime) -> None:
    RedisFence(runtime.settings.broker_url).arm(16, 1)
    run_once(runtime, "c-1", order(16, "says-no"))
    finished = drain_events(runtime)[-1]
    assert isinstance(finished, TaskFinished) and not finished.success
    assert finished.error == "job returned False"


def test_given_an_async_job_then_it_is_awaited(runtime: WorkerRuntime) -> None:
    RedisFence(runtime.settings.broker_url).arm(17, 1)
    run_once(runtime, "c-1", order(17, "async"))
    finished = drain_events(runtime)[-1]
    assert calls == [17]
    assert isinstance(finished, TaskFinished) and finished.success and finished.data is None


def test_given_the_broker_down_then_only_the_first_run_end_waits_for_it(
    fresh_redis_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "END_FLUSH_TIMEOUT_S", 0.5)
    calls.clear()
    with socket.socket() as probe:  # a port nothing listens on: the broker is down
        probe.bind(("127.0.0.1", 0))
        down = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    settings = Settings(broker_url=down, fence_url=fresh_redis_url())
    rt = WorkerRuntime(settings, "client-1", discover_jobs([this_module()]), ManualClock(T0))
    fence = RedisFence(settings.fence_url)
    try:
        ends = []
        for task_id in (21, 22, 23):
            fence.arm(task_id, 1)
            delivery = rt.begin(f"c-{task_id}", order(task_id, "ok"))
            assert delivery
            rt.run(delivery)
            started = time.monotonic()
            rt.end(delivery, "SUCCESS")
            ends.append(time.monotonic() - started)
        assert calls == [21, 22, 23]
        assert ends[0] >= 0.5  # the first end waits for the broker once ...
        assert max(ends[1:]) < 0.1  # ... the next ones do not wait 10 s each
        assert rt.publisher.pending() == 3 * 4  # nothing is lost meanwhile
    finally:
        fence.close()
        rt.close()


def test_given_the_fences_redis_restarting_then_an_order_taken_meanwhile_runs_once_it_is_back(
    fresh_redis_url: Callable[[], str], throwaway_redis: ThrowawayRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An order taken as Redis went away used to be dropped after 1.2 s of retries, left to
    the supervisor's expiry sweep (32 s later); the fence's state outlives the restart
    (AOF), so the run now starts as soon as Redis answers again."""
    calls.clear()
    settings = Settings(broker_url=fresh_redis_url(), fence_url=throwaway_redis.url())
    rt = WorkerRuntime(settings, "client-1", discover_jobs([this_module()]), ManualClock(T0))
    fence = RedisFence(settings.fence_url)
    try:
        fence.arm(31, 1)
        throwaway_redis.stop()
        threading.Timer(1.5, throwaway_redis.start).start()
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="fss.worker_sdk.runtime"):
            delivery = rt.begin("c-31", order(31, "ok"))
        waited = time.monotonic() - started
        assert delivery is not None and 1.5 <= waited < 8, waited
        rt.run(delivery)
        rt.end(delivery, "SUCCESS")
        assert calls == [31]
        assert fence.holder(31, 1) == rt.incarnation
        lines = [r.getMessage() for r in caplog.records]
        assert len([line for line in lines if "entering the fence failed" in line]) == 1, lines
        assert any("the fence answered after" in line and "(entered: True)" in line
                   for line in lines), lines
    finally:
        fence.close()
        rt.close()


def test_given_a_fence_error_other_than_unreachable_then_the_order_is_given_up_soon(
    runtime: WorkerRuntime,
) -> None:
    """Not a Redis that is away (a key of another type here, as a misconfigured shared
    Redis could leave): two retries, then the error, not ten seconds of them."""
    with redis.Redis.from_url(runtime.settings.broker_url) as client:
        client.rpush(fence_key(41, "", 0), "not a fence")
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ResponseError):
        runtime.begin("c-41", order(41, "ok"))
    assert time.monotonic() - started < 2
    assert calls == []


def test_a_stopped_run_reported_twice_gives_its_line_one_id(runtime: WorkerRuntime) -> None:
    """Celery reports a hard time limit through task_failure twice: the main process's line
    about it carries one id per run and reason, so the recorder stores it once."""
    stopped = RunOrder.from_kwargs(order(31, "ok"))
    first, second = runtime.stopped(stopped, "time limit"), runtime.stopped(stopped, "time limit")
    assert first[0].event_id == second[0].event_id  # type: ignore[attr-defined]
    retried = dataclasses.replace(stopped, attempt=2)
    assert runtime.stopped(retried, "time limit")[0].event_id != first[0].event_id  # type: ignore[attr-defined]
