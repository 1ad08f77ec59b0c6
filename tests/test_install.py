"""A user's install (`pip install .` into a venv without system site packages) runs fss.

The test tools pull in packages fss itself needs (pytest brings `packaging`, which kombu's
Redis transport imports): these tests run on an interpreter that has only what fss declares.
scripts/test builds it and names it in FSS_TEST_RUNTIME_PYTHON; without that variable the
fixture builds one here: `pip install --no-deps .` (~3 s) into a copy of a venv holding what
`pip install .` installed beside fss, kept between runs per setup.cfg (~20 s when it changed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from runtime_python import RUNTIME_PYTHON_ENV
from servers import wait_for

from fss.naming import CLIENTS_QUEUE, EVENTS_QUEUE

ROOT = Path(__file__).resolve().parents[1]


# fss's dependencies as `pip install .` installs them, fss itself uninstalled: one venv per
# setup.cfg and pyproject.toml (which declare them) and interpreter, never changed once built.
DEPENDENCIES_CACHE = Path(tempfile.gettempdir()) / "fss-test-user-dependencies"


def pip(venv_dir: Path, *args: str) -> None:
    subprocess.run(
        [str(venv_dir / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check",
         *args],
        check=True,
        timeout=600,
    )


@contextlib.contextmanager
def building() -> Iterator[None]:
    """One `pip install <checkout>` at a time on this machine: setuptools builds in the
    checkout's own build/ directory, and two builds at once collide there ("File exists")."""
    DEPENDENCIES_CACHE.mkdir(parents=True, exist_ok=True)
    with (DEPENDENCIES_CACHE / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def dependencies_venv() -> Path:
    """Call it while building()."""
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    digest.update(sys.version.encode())
    built = DEPENDENCIES_CACHE / digest.hexdigest()[:16]
    if not (built / "complete").exists():
        shutil.rmtree(built, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, system_site_packages=False).create(built)
        pip(built, "install", str(ROOT))
        pip(built, "uninstall", "-y", "fss")
        (built / "complete").touch()
    return built


def link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # the copy's pip writes new files only: fss's
    except OSError:
        shutil.copy2(source, target)


@pytest.fixture(scope="session")
def user_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    given = os.environ.get(RUNTIME_PYTHON_ENV)
    if given:
        return given
    target = tmp_path_factory.mktemp("user-venv")
    with building():
        shutil.copytree(dependencies_venv(), target, symlinks=True, copy_function=link_or_copy,
                        dirs_exist_ok=True)
        pip(target, "install", "--no-deps", str(ROOT))
    return str(target / "bin" / "python")


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


# -- the floors setup.cfg declares are the ones a test run used ---------------------------------


def load_floors_module() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("floors", ROOT / "scripts" / "floors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_runtime_dependency_has_a_floor_that_scripts_test_installs() -> None:
    floors_module = load_floors_module()
    requirements = floors_module.install_requires(ROOT / "setup.cfg")  # type: ignore[attr-defined]
    floors = floors_module.floors(requirements)  # type: ignore[attr-defined]

    names = {re.split(r"[\[<>=;\s]", r, maxsplit=1)[0] for r in requirements}
    assert set(floors) == names - {"tzdata"}, "a dependency without a tested floor"
    # The floors that broke before (kombu 5.5 could not even be installed with redis 6.4, and
    # lacked producer.batch; celery 5.5/5.6 lacked task_repr_maxlevels) stay raised.
    for name in ("kombu", "celery"):
        assert tuple(int(part) for part in floors[name].split(".")[:2]) >= (5, 7), name
    script = (ROOT / "scripts" / "test").read_text()
    assert "scripts/floors.py" in script and '-c "$venvs/floors/constraints.txt"' in script
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec bash scripts/test")


def test_the_floors_script_turns_each_floor_into_a_pin() -> None:
    floors_module = load_floors_module()
    found = floors_module.floors(  # type: ignore[attr-defined]
        ["celery[redis]>=5.7,<6", "tzdata", "grpcio>=1.85.1", "x==2.0", "y<3",
         "z >= 1.0 ; python_version<'4'"]
    )
    assert found == {"celery": "5.7", "grpcio": "1.85.1", "x": "2.0", "z": "1.0"}


# -- secrets stay out of git ---------------------------------------------------------------------


def test_the_readme_keeps_the_bridge_token_outside_the_checkout_and_git_ignores_token_files(
) -> None:
    for readme_path in ("README.md", "examples/node-worker/README.md"):
        readme = (ROOT / readme_path).read_text()
        paths = [p for p in re.findall(r"--token-file ([^\s\]`|]+)", readme) if p != "F"]
        written = re.findall(r"> *([^\s)]*\.token)\b", readme)
        assert paths and written, f"{readme_path} shows no --token-file example"
        for path in paths + written:
            assert path.startswith(("~/", "/", "$")), (
                f"{readme_path}: {path}: a token path inside the checkout")
    for path in ("bridge.token", "examples/node-worker/bridge.token"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT,
                                 capture_output=True, text=True)
        assert ignored.returncode == 0, f"git does not ignore {path} ({ignored.stderr})"
