"""ctx.data on the worker side: data over 64 KiB fails the run with its size (error text and
a run log line); ctx.save_data() sends the data at once; real runtime, real Redis broker."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.simple import SimpleQueue

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.events import Event, TaskDataSaved, TaskFinished, TaskLogged, decode_batch
from fss.fence import RedisFence
from fss.naming import EVENTS_QUEUE
from fss.orders import RunOrder
from fss.worker_sdk import JobContext, job
from fss.worker_sdk.job import discover_jobs
from fss.worker_sdk.runtime import WorkerRuntime

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=timezone.utc)
errors: list[str] = []


@job("hoarder")
def hoarder(ctx: JobContext) -> None:
    ctx.data["blob"] = "x" * 70_000


@job("counter")
def counter(ctx: JobContext) -> None:
    ctx.data["cursor"] += 1
    ctx.data["seen"] = True


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


@job("unprintable")
def unprintable(ctx: JobContext) -> None:
    ctx.data["thing"] = Unprintable()


@job("saver")
def saver(ctx: JobContext) -> None:
    ctx.data["cursor"] = 2
    ctx.save_data()
    ctx.data["cursor"] = 3  # after the save: not in the saved copy
    ctx.data["blob"] = "x" * 70_000
    try:
        ctx.save_data()
    except ValueError as exc:
        errors.append(str(exc))
    del ctx.data["blob"]
    raise RuntimeError("sync failed after the save")


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@job("nester")
def nester(ctx: JobContext) -> None:
    ctx.data["deep"] = _nested(150)  # past the 100 levels the recorder accepts


@job("abyss")
def abyss(ctx: JobContext) -> None:
    ctx.data["deep"] = _nested(100_000)  # json.dumps alone raises RecursionError


@job("surrogate")
def surrogate(ctx: JobContext) -> None:
    ctx.data["text"] = "\ud800"  # a str Python holds but UTF-8 cannot


@pytest.fixture
def runtime(fresh_redis_url: Callable[[], str]) -> Iterator[WorkerRuntime]:
    errors.clear()
    rt = WorkerRuntime(Settings(broker_url=fresh_redis_url()), "client-1",
                       discover_jobs([sys.modules[__name__]]), ManualClock(T0))
    yield rt
    rt.close()


def _run(rt: WorkerRuntime, task_id: int, job_name: str) -> list[Event]:
    RedisFence(rt.settings.broker_url).arm(task_id, 1)
    kwargs: dict[str, Any] = RunOrder(task_id, 1, 7, job_name, "client-1", T0,
                                      {"cursor": 1}).to_kwargs()
    delivery = rt.begin("celery-1", kwargs)
    rt.run(delivery)
    rt.end(delivery, "SUCCESS")
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


def test_data_over_the_limit_fails_the_run_saying_how_big_it_was(
    runtime: WorkerRuntime,
) -> None:
    events = _run(runtime, 21, "hoarder")
    [finished] = [e for e in events if isinstance(e, TaskFinished)]
    expected = "data is 70022 bytes, over the 65536-byte limit"
    assert not finished.success and finished.error == expected and finished.data is None
    assert any(isinstance(e, TaskLogged) and expected in e.content for e in events)


def test_save_data_sends_the_data_now_and_refuses_data_over_the_limit(
    runtime: WorkerRuntime,
) -> None:
    events = _run(runtime, 22, "saver")
    [saved] = [e for e in events if isinstance(e, TaskDataSaved)]
    assert (saved.task_id, saved.attempt, saved.group_id, saved.data) == (22, 1, 7,
                                                                           {"cursor": 2})
    assert saved.data_patch == {"set": [[["cursor"], 2]], "unset": []}
    assert errors == ["data is 70022 bytes, over the 65536-byte limit"]
    [finished] = [e for e in events if isinstance(e, TaskFinished)]
    assert not finished.success and "sync failed" in (finished.error or "")


@pytest.mark.parametrize(("job_name", "expected"), [
    ("nester", "data is nested deeper than 100 levels"),
    ("abyss", "data is nested deeper than 100 levels"),
    ("surrogate", "data contains a lone surrogate \\ud800, which is not valid UTF-8"),
])
def test_data_the_recorder_would_refuse_fails_the_run_naming_why(
    runtime: WorkerRuntime, job_name: str, expected: str
) -> None:
    """Before, such data left the run Working until it was failed as hung: the end report
    raised (lone surrogate, RecursionError) or the recorder set the whole finished event aside
    (too deep), so nothing ended the run."""
    events = _run(runtime, 23, job_name)
    [finished] = [e for e in events if isinstance(e, TaskFinished)]
    assert not finished.success and finished.error == expected and finished.data is None
    assert any(isinstance(e, TaskLogged) and expected in e.content for e in events)


def test_a_run_that_changed_its_data_sends_what_it_changed_beside_the_data(
    runtime: WorkerRuntime,
) -> None:
    events = _run(runtime, 23, "counter")
    [finished] = [e for e in events if isinstance(e, TaskFinished)]
    assert finished.success and finished.data == {"cursor": 2, "seen": True}
    assert finished.data_patch == {"set": [[["cursor"], 2], [["seen"], True]], "unset": []}


def test_data_that_breaks_even_its_comparison_fails_the_run_instead_of_leaving_it_working(
    runtime: WorkerRuntime,
) -> None:
    events = _run(runtime, 24, "unprintable")
    [finished] = [e for e in events if isinstance(e, TaskFinished)]
    assert not finished.success and finished.data is None
    assert finished.error == "ctx.data cannot be saved: no text for you"
