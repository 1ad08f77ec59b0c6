"""The worker behind `fss worker`: a Celery worker that is also an fss client.

It registers one Celery task per @job, consumes only its own queue, installs the bridge
hooks and sends a heartbeat (which doubles as its registration) every second.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from typing import Any

from celery import Celery, bootsteps

from fss.bridge import hooks
from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import Clock
from fss.errors import InvalidField
from fss.naming import job_task_name
from fss.worker_sdk.job import JobSpec, discover_jobs, import_modules
from fss.worker_sdk.runtime import WorkerRuntime

log = logging.getLogger(__name__)
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@\-]{1,100}$")


def client_id_for(name: str | None, pid: int) -> str:
    if name:
        if not CLIENT_ID_PATTERN.match(name):
            raise InvalidField("name", f"{name!r} may only use letters, digits and _ . : @ -")
        return name
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:80]
    return f"{host}-{pid}"


def build_worker_app(
    settings: Settings,
    jobs: dict[str, JobSpec],
    client_id: str,
    clock: Clock | None = None,
) -> tuple[Celery, WorkerRuntime]:
    if not jobs:
        raise InvalidField("jobs", "no @job functions found in the given modules")
    app = create_app(settings, main=f"fss-worker-{client_id}")
    runtime = WorkerRuntime(settings, client_id, jobs, clock=clock)
    register_jobs(app, runtime)
    hooks.install(app, runtime)
    app.steps["worker"].add(HeartbeatStep)
    return app, runtime


def load_jobs(module_names: list[str]) -> dict[str, JobSpec]:
    return discover_jobs(import_modules(module_names))


def register_jobs(app: Celery, runtime: WorkerRuntime) -> None:
    for spec in runtime.jobs.values():
        app.task(name=job_task_name(spec.name), bind=True, ignore_result=True)(_task_body(runtime))


def _task_body(runtime: WorkerRuntime) -> Any:
    def run_fss_job(self: Any, **_order: Any) -> dict[str, Any]:
        return runtime.run(self.request.id)

    return run_fss_job


def worker_options(
    runtime: WorkerRuntime, concurrency: int, pool: str, loglevel: str
) -> dict[str, Any]:
    return {
        "queues": [runtime.queue],
        "hostname": f"{runtime.client_id}@{runtime.host}",
        "concurrency": concurrency,
        "pool": pool,
        "loglevel": loglevel,
        "without_gossip": True,
        "without_mingle": True,
        "without_heartbeat": True,
        "redirect_stdouts": False,
    }


def worker_argv(
    runtime: WorkerRuntime, concurrency: int, pool: str, loglevel: str, extra: list[str]
) -> list[str]:
    options = worker_options(runtime, concurrency, pool, loglevel)
    return [
        "worker",
        "-Q",
        options["queues"][0],
        "-n",
        options["hostname"],
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-l",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *extra,
    ]


class HeartbeatStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Registers the client and keeps it alive; unregisters it when the worker stops."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        runtime: WorkerRuntime | None = getattr(worker.app, hooks.RUNTIME_ATTRIBUTE, None)
        if runtime is None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, args=(runtime,), name="fss-heartbeat", daemon=True
        )
        self._thread.start()
        log.info(
            "client %s serves %s on queue %s",
            runtime.client_id,
            ", ".join(sorted(runtime.jobs)),
            runtime.queue,
        )

    def stop(self, worker: Any) -> None:
        runtime: WorkerRuntime | None = getattr(worker.app, hooks.RUNTIME_ATTRIBUTE, None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if runtime is not None:
            runtime.emit(runtime.left())
            runtime.publisher.flush(timeout_s=5)

    def _beat(self, runtime: WorkerRuntime) -> None:
        interval = runtime.settings.heartbeat_s
        while not self._stop.is_set():
            try:
                runtime.emit(runtime.heartbeat())
                runtime.publisher.flush(timeout_s=interval)
            except Exception:
                log.exception("heartbeat failed")
            self._stop.wait(interval)
