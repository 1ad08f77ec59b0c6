"""`raise fss.Fail(reason, retry=...)` in a job, through the real runtime and a real Redis
broker: the run fails with the reason as its error, and says whether it may be retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import fss
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.events import TaskFinished, TaskLogged, decode_batch, to_dict
from fss.fence import RedisFence
from fss.worker_sdk import JobContext, job
from fss.worker_sdk.job import discover_jobs
from fss.worker_sdk.runtime import WorkerRuntime
from tests.worker_sdk.test_runtime import T0, drain_events, order, run_once


@job("refuses")
def refuses(ctx: JobContext) -> None:
    raise fss.Fail("the input file is corrupt", retry=False)


@job("fails-softly")
def fails_softly(ctx: JobContext) -> None:
    ctx.log.info("attempt %d", ctx.attempt)
    raise fss.Fail("upstream said 503")


def this_module() -> ModuleType:
    import sys

    return sys.modules[__name__]


@pytest.fixture
def runtime(fresh_redis_url: Callable[[], str]) -> Iterator[WorkerRuntime]:
    rt = WorkerRuntime(Settings(broker_url=fresh_redis_url()), "client-1",
                       discover_jobs([this_module()]), ManualClock(T0))
    yield rt
    rt.close()


def test_given_fail_with_retry_false_then_the_finished_event_refuses_retries(
    runtime: WorkerRuntime,
) -> None:
    RedisFence(runtime.settings.broker_url).arm(31, 1)
    run_once(runtime, "c-1", order(31, "refuses"))
    events = drain_events(runtime)
    finished = events[-1]
    assert isinstance(finished, TaskFinished)
    assert (finished.success, finished.retry) == (False, False)
    assert finished.error == "the input file is corrupt"  # the reason, no traceback
    assert [e.content for e in events if isinstance(e, TaskLogged)] == [
        "job 'refuses' failed: the input file is corrupt"
    ]


def test_given_fail_then_the_run_fails_and_may_be_retried(runtime: WorkerRuntime) -> None:
    RedisFence(runtime.settings.broker_url).arm(32, 2)
    run_once(runtime, "c-1", order(32, "fails-softly", attempt=2))
    events = drain_events(runtime)
    finished = events[-1]
    assert isinstance(finished, TaskFinished)
    assert (finished.success, finished.retry, finished.attempt) == (False, True, 2)
    assert finished.error == "upstream said 503"
    assert "attempt 2" in [e.content for e in events if isinstance(e, TaskLogged)]


def test_a_finished_event_without_retry_means_retry() -> None:
    event = TaskFinished(1, 1, "c", False, 5, T0, error="x", retry=False)
    body = to_dict(event)
    assert body["retry"] is False
    del body["retry"]  # an older worker, or a gRPC client
    (decoded,) = decode_batch({"v": 1, "events": [body]})
    assert isinstance(decoded, TaskFinished) and decoded.retry is True
