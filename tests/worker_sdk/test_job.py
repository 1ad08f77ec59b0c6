"""The @job decorator: named, bare (the function's name, like Celery's @app.task), or misused
(one line naming the field, never Python's own 'expected string or bytes-like object')."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.errors import InvalidField
from fss.fence import RedisFence
from fss.orders import RunOrder
from fss.worker_sdk import JobContext, job
from fss.worker_sdk.job import JOB_ATTRIBUTE, JobImportError, JobSpec, discover_jobs
from fss.worker_sdk.runtime import WorkerRuntime
from fss.worker_sdk.worker import load_jobs

ran: list[str] = []


@job
def nightly_report(ctx: JobContext) -> None:
    ran.append(ctx.job_name)


@job()
async def cleanup(ctx: JobContext) -> None:
    ran.append(ctx.job_name)


@job("named-one")
def named(ctx: JobContext) -> None:
    ran.append(ctx.job_name)


def this_module() -> ModuleType:
    return sys.modules[__name__]


def test_a_bare_job_decorator_names_the_job_after_the_function() -> None:
    jobs = discover_jobs([this_module()])
    assert set(jobs) == {"nightly_report", "cleanup", "named-one"}
    assert jobs["nightly_report"].function is nightly_report  # the function itself, unwrapped
    assert isinstance(getattr(cleanup, JOB_ATTRIBUTE), JobSpec)


def test_given_a_bare_job_when_a_worker_runs_its_order_then_it_runs(
    fresh_redis_url: Callable[[], str],
) -> None:
    url = fresh_redis_url()
    at = datetime(2026, 5, 1, tzinfo=timezone.utc)
    runtime = WorkerRuntime(
        Settings(broker_url=url), "c1", discover_jobs([this_module()]), ManualClock(at)
    )
    fence = RedisFence(url)
    ran.clear()
    try:
        for task_id, name in enumerate(["nightly_report", "cleanup"], start=1):
            fence.arm(task_id, 1)
            kwargs: dict[str, Any] = RunOrder(task_id, 1, 9, name, "c1", at, {}).to_kwargs()
            delivery = runtime.begin(f"fss-{task_id}-1", kwargs)
            runtime.run(delivery)
            runtime.end(delivery, "SUCCESS")
        assert ran == ["nightly_report", "cleanup"]
    finally:
        fence.close()
        runtime.close()


@pytest.mark.parametrize("wrong", [123, 4.5, b"bytes", ["a"]])
def test_given_a_job_name_that_is_not_a_string_then_one_line_naming_the_field(
    wrong: Any,
) -> None:
    with pytest.raises(InvalidField) as raised:
        job(wrong)
    message = str(raised.value)
    assert message.startswith("job_name: must be a string like @job(")
    assert "\n" not in message and "bytes-like" not in message


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("bare_jobs_mod", "bad_jobs_mod"):
        sys.modules.pop(name, None)


def test_given_modules_using_the_decorator_both_ways_then_fss_worker_loads_or_names_the_error(
    module_dir: Path,
) -> None:
    (module_dir / "bare_jobs_mod.py").write_text(
        "from fss.worker_sdk import job\n\n@job\ndef sync_orders(ctx):\n    pass\n"
    )
    (module_dir / "bad_jobs_mod.py").write_text(
        "from fss.worker_sdk import job\n\n@job(42)\ndef sync_orders(ctx):\n    pass\n"
    )
    assert set(load_jobs(["bare_jobs_mod"])) == {"sync_orders"}
    with pytest.raises(JobImportError) as raised:
        load_jobs(["bad_jobs_mod"])
    assert "job_name: must be a string like @job(" in str(raised.value)
