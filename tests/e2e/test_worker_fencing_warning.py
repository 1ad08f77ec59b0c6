"""`fss worker` on a broker that is not Redis says at start when nothing fences its runs.

RabbitMQ is optional: the test runs in a virtual host of its own (made with rabbitmqctl and
deleted after), so no queue of it is left behind."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fss_processes import FssProcesses
from servers import wait_for

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
WARNING = "no Redis for fencing"


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return shutil.which("rabbitmqctl") is not None
    except OSError:
        return False


@pytest.fixture
def amqp_url() -> Iterator[str]:
    if not rabbitmq_answers():
        pytest.skip("no RabbitMQ with rabbitmqctl on 127.0.0.1:5672 (optional)")
    vhost = f"fss_test_{uuid.uuid4().hex[:8]}"
    ctl = ["rabbitmqctl", "-q"]
    subprocess.run([*ctl, "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(
            [*ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True, capture_output=True, timeout=60,
        )
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run([*ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


def started_worker_log(workdir: Path, broker_url: str) -> str:
    shutil.copy(HERE / "e2e_jobs.py", workdir / "e2e_jobs.py")
    processes = FssProcesses(workdir, f"sqlite:///{workdir / 'unused.db'}", broker_url)
    processes.worker("w1", "e2e_jobs", "-c", "1")
    try:
        wait_for(lambda: "client w1 serves" in processes.log_of("w1"), timeout=40,
                 what="the worker to start")
    finally:
        processes.stop_all()
    return processes.log_of("w1")


def test_given_an_amqp_broker_and_no_fence_url_then_the_worker_warns_once(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FSS_FENCE_URL", raising=False)
    log = started_worker_log(tmp_path, amqp_url)
    assert log.count(WARNING) == 1, log
    assert "(amqp)" in log and "guest:guest" not in log  # the URL's password is never shown


def test_given_an_amqp_broker_and_a_fence_url_then_no_warning(
    amqp_url: str, tmp_path: Path, fresh_redis_url: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FSS_FENCE_URL", fresh_redis_url())
    log = started_worker_log(tmp_path, amqp_url)
    assert WARNING not in log, log
