"""Ctrl-C on real processes: the first says in one line that running runs finish and how to
stop at once; the second stops at once in one line, reports the runs failed, no traceback."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fss_processes import FSS, FssProcesses, query
from kombu.connection import Connection
from kombu.simple import SimpleQueue
from servers import wait_for
from test_dev_command import WORKING, clean_env, count, fss

from fss.celery_app import create_app
from fss.config import Settings
from fss.events import ClientLeft, Event, TaskFinished, decode_batch
from fss.fence import RedisFence
from fss.naming import CLIENTS_QUEUE, EVENTS_QUEUE, celery_task_id, client_queue, job_task_name
from fss.orders import RunOrder

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
FIRST = "stopping: finishing 1 running run(s); press Ctrl-C again to stop at once"
SECOND = "stopping now: 1 unfinished run(s) reported failed"
FAIL = 3


@pytest.fixture
def worker_env(tmp_path: Path, fresh_redis_url: Callable[[], str]) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "e2e_jobs.py", tmp_path / "e2e_jobs.py")
    env = FssProcesses(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}", fresh_redis_url())
    yield env
    env.kill_all()


def send_order(broker_url: str, order: RunOrder) -> None:
    fence = RedisFence(broker_url)
    app = create_app(Settings(database_url="sqlite://", broker_url=broker_url))
    try:
        assert fence.arm(order.task_id, order.attempt)
        app.send_task(
            job_task_name(order.job_name),
            kwargs=order.to_kwargs(),
            queue=client_queue(order.client_id),
            task_id=celery_task_id(order.task_id, order.attempt),
        )
    finally:
        fence.close()
        app.close()


def events_on(broker_url: str) -> list[Event]:
    """What the worker sent: run events and client events (heartbeats, left)."""
    events: list[Event] = []
    for name in (EVENTS_QUEUE, CLIENTS_QUEUE):
        with Connection(broker_url) as conn:  # one each: a channel polls one queue set
            queue = SimpleQueue(conn, name)
            while True:
                try:
                    message = queue.get(timeout=0.5)
                except queue.Empty:
                    break
                events.extend(decode_batch(message.payload))
                message.ack()
            queue.close()
    return events


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_given_a_worker_running_a_job_when_ctrl_c_twice_then_one_line_each_and_it_stops_at_once(
    worker_env: FssProcesses, pool: str
) -> None:
    order = RunOrder(51, 1, 5, "slow", "w1", datetime.now(timezone.utc), {"seconds": 60})
    send_order(worker_env.broker_url, order)
    worker = worker_env.worker("w1", "e2e_jobs", "-P", pool, "-c", "2")
    executions = worker_env.workdir / "executions.log"
    wait_for(executions.exists, timeout=40, what="the job to start")

    worker.send_signal(signal.SIGINT)
    wait_for(lambda: FIRST in worker_env.log_of("w1"), timeout=10, what="the first line")
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=1.5)  # it waits for the 60 s run
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=15) != 0
    worker_env.running.pop("w1")

    log = worker_env.log_of("w1")
    after = log[log.index(FIRST) :]
    assert "Traceback" not in log and "kill_job" not in log, log
    said = [line for line in after.splitlines() if line.strip()]
    assert len(said) == 2 and SECOND in said[1], said  # one line each, nothing else
    events = events_on(worker_env.broker_url)
    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert [(f.task_id, f.success) for f in finished] == [(51, False)]
    assert "second Ctrl-C" in (finished[0].error or "")
    assert any(isinstance(e, ClientLeft) for e in events), [type(e).__name__ for e in events]


def test_given_fss_dev_running_a_job_when_ctrl_c_twice_then_it_stops_at_once_and_records_it(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fss-dev.db'}"
    assert fss(tmp_path, "db", "upgrade", "--database-url", db_url).returncode == 0
    assert fss(tmp_path, "group", "add", "--caption", "long", "--job-name", "sleepy",
               "--interval-ms", "60000", "--data", '{"seconds": 60}',
               "--database-url", db_url).returncode == 0

    out_path = tmp_path / "dev.out"
    with out_path.open("wb") as out:
        dev = subprocess.Popen([*FSS, "dev", "--no-web"], cwd=tmp_path, env=clean_env(),
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: count(db_url, "SELECT COUNT(*) FROM task WHERE job_name = 'sleepy' "
                               f"AND status = {WORKING}") == 1,
                 timeout=30, what="the sleepy run to start")
        dev.send_signal(signal.SIGINT)
        wait_for(lambda: FIRST in out_path.read_text(), timeout=10, what="the first line")
        with pytest.raises(subprocess.TimeoutExpired):
            dev.wait(timeout=1.5)
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=20)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    output = out_path.read_text()
    assert "Traceback" not in output and "kill_job" not in output, output
    after = [line for line in output[output.index(FIRST) :].splitlines() if line.strip()]
    assert len(after) == 2 and SECOND in after[1], after
    rows = query(db_url, "SELECT status, error FROM task WHERE job_name = 'sleepy' ORDER BY id")
    assert rows[0][0] == FAIL and "second Ctrl-C" in str(rows[0][1]), rows
    assert count(db_url, "SELECT COUNT(*) FROM client") == 0  # the worker unregistered
