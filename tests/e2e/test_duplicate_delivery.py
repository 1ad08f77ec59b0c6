"""One order delivered twice to a real `fss worker -P threads`: the job runs once.

Both copies carry the same Celery id (`fss-<task>-<attempt>`) and run at the same time in two
threads of one process; only the copy that entered the fence may find a run to execute."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
from fss_processes import FssProcesses
from servers import wait_for

from fss.celery_app import create_app
from fss.config import Settings
from fss.fence import RedisFence
from fss.naming import celery_task_id, client_queue, job_task_name
from fss.orders import RunOrder

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent


@pytest.fixture
def worker_env(tmp_path: Path, fresh_redis_url: Callable[[], str]) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "e2e_jobs.py", tmp_path / "e2e_jobs.py")
    # A worker needs the broker only; the database URL is never opened.
    env = FssProcesses(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}", fresh_redis_url())
    yield env
    env.kill_all()


def send_order_twice(broker_url: str, order: RunOrder) -> None:
    """Send the order as the dispatcher does, then put the very same message on the queue
    again (as a broker that redelivers it would)."""
    queue = client_queue(order.client_id)
    app = create_app(Settings(database_url="sqlite://", broker_url=broker_url))
    raw = redis.Redis.from_url(broker_url)
    try:
        app.send_task(
            job_task_name(order.job_name),
            kwargs=order.to_kwargs(),
            queue=queue,
            task_id=celery_task_id(order.task_id, order.attempt),
        )
        message = raw.lindex(queue, 0)
        assert message is not None
        raw.lpush(queue, message)
        assert raw.llen(queue) == 2
    finally:
        raw.close()
        app.close()


@pytest.mark.parametrize("pool", ["threads"])
def test_given_one_order_delivered_twice_to_a_threads_worker_then_the_job_runs_once(
    worker_env: FssProcesses, pool: str
) -> None:
    order = RunOrder(41, 1, 4, "slow", "w1", datetime.now(timezone.utc), {"seconds": 2})
    fence = RedisFence(worker_env.broker_url)
    try:
        assert fence.arm(order.task_id, order.attempt)
    finally:
        fence.close()
    send_order_twice(worker_env.broker_url, order)
    worker_env.worker("w1", "e2e_jobs", "-P", pool, "-c", "2")
    executions = worker_env.workdir / "executions.log"

    def refused() -> bool:
        return "not current any more" in worker_env.log_of("w1")

    wait_for(refused, timeout=40, what="the second copy to be refused")
    wait_for(executions.exists, timeout=10, what="the first copy to run")
    time.sleep(2.5)  # the 2 s job of the first copy has ended; a second run would show now
    lines = executions.read_text().splitlines()
    assert len(lines) == 1, (lines, worker_env.log_of("w1"))
    assert worker_env.stop("w1") == 0
