"""Flower keeps working: fss workers are Celery workers, so Flower started against the same
broker lists them and the fss tasks they ran (docs/flower.md). Flower is a test dependency
(setup.cfg [test]/[dev]); it runs on the test interpreter, fss on the runtime one."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from fss_processes import FssProcesses
from servers import wait_for

pytestmark = pytest.mark.e2e

FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-pw"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def flower(fss_env: FssProcesses) -> Iterator[str]:
    port = free_port()
    log = (fss_env.workdir / "flower.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "--broker", fss_env.broker_url, "flower",
         "--address=127.0.0.1", f"--port={port}", f"--basic-auth={FLOWER_USER}:{FLOWER_PASSWORD}"],
        cwd=fss_env.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def get_json(url: str) -> object:
    try:
        response = httpx.get(url, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_flower_lists_fss_workers_and_their_fss_tasks(
    fss_env: FssProcesses, flower: str
) -> None:
    fss_env.scheduler("s1")
    # -E: the worker sends task events from the start (Flower also asks for them).
    fss_env.worker("w1", "e2e_jobs", "-E")
    fss_env.cli("group", "add", "--caption", "ticks", "--job-name", "tick",
                "--interval-ms", "300")

    def workers() -> dict[str, object]:
        found = get_json(f"{flower}/api/workers?refresh=1")
        return found if isinstance(found, dict) else {}

    def tick_tasks() -> list[dict[str, object]]:
        found = get_json(f"{flower}/api/tasks?taskname=fss.job.tick")
        return list(found.values()) if isinstance(found, dict) else []

    wait_for(lambda: any(name.startswith("w1@") for name in workers()), timeout=30,
             interval=0.5, what="Flower to list the fss worker w1")
    wait_for(lambda: any(t.get("state") == "SUCCESS" for t in tick_tasks()), timeout=30,
             interval=0.5, what="Flower to list a succeeded fss.job.tick task")

    succeeded = [t for t in tick_tasks() if t.get("state") == "SUCCESS"]
    assert str(succeeded[0]["worker"]).startswith("w1@")
    assert str(succeeded[0]["uuid"]).startswith("fss-")  # fss's own Celery task ids
