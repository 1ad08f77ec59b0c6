"""A user's install (`pip install .` into a venv without system site packages) runs fss.

The test tools pull in packages fss itself needs (pytest brings `packaging`, which kombu's
Redis transport imports): these tests run on an interpreter that has only what fss declares.
scripts/test builds it and names it in FSS_TEST_RUNTIME_PYTHON; without that variable the
fixture builds one here (about 20 s).
"""

from __future__ import annotations

import os
import subprocess
import venv
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from runtime_python import RUNTIME_PYTHON_ENV
from servers import wait_for

from fss.naming import CLIENTS_QUEUE, EVENTS_QUEUE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def user_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    given = os.environ.get(RUNTIME_PYTHON_ENV)
    if given:
        return given
    target = tmp_path_factory.mktemp("user-venv")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(target)
    python = str(target / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        check=True,
        timeout=600,
    )
    return python


def test_the_install_sees_no_system_site_packages(user_python: str) -> None:
    probe = "import sys; print(sys.prefix != sys.base_prefix); import pytest"
    result = subprocess.run([user_python, "-c", probe], capture_output=True, text=True)

    assert result.stdout.strip() == "True"
    assert "No module named 'pytest'" in result.stderr


def test_every_fss_module_imports_with_the_declared_dependencies(user_python: str) -> None:
    probe = (
        "import importlib, pkgutil, fss\n"
        "names = [m.name for m in pkgutil.walk_packages(fss.__path__, 'fss.')\n"
        "         if '.migrations' not in m.name and not m.name.endswith('__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "import kombu.transport.redis, psycopg2\n"
        "print(len(names))\n"
    )
    result = subprocess.run([user_python, "-c", probe], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 30


def test_a_worker_runs_on_redis(
    user_python: str, fresh_redis_url: Callable[[], str], tmp_path: Path
) -> None:
    broker_url = fresh_redis_url()
    env = {**os.environ, "FSS_BROKER_URL": broker_url, "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [user_python, "-m", "fss", "worker", "-A", "fss.examples.jobs", "--name", "probe"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis.from_url(broker_url)
    try:

        def registered() -> bool:
            # Its heartbeat (the registration) is on the broker, whichever queue carries it.
            return bool(client.llen(CLIENTS_QUEUE) + client.llen(EVENTS_QUEUE))

        wait_for(registered, timeout=60, what="the worker's first heartbeat on Redis")
        assert worker.poll() is None, log_path.read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        client.close()
    output = log_path.read_text()
    assert "Traceback" not in output
    assert "ModuleNotFoundError" not in output
