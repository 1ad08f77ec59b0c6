"""The worker behind `fss worker`: a Celery worker that is also an fss client.

It registers one Celery task per @job, consumes only its own queue, installs the bridge
hooks and sends a heartbeat (which doubles as its registration) every second.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from billiard.process import active_children
from celery import Celery, bootsteps, platforms, signals
from celery.platforms import EX_FAILURE, EX_OK
from celery.worker import state as worker_state

from fss.bridge import hooks
from fss.celery_app import create_app, is_redis_broker
from fss.config import Settings
from fss.domain.clock import Clock
from fss.domain.selection import validate_tags
from fss.errors import InvalidField
from fss.naming import job_name_of, job_task_name, validate_client_id
from fss.orders import RunOrder
from fss.presence import PresenceBeacon, create_beacon
from fss.worker_sdk.job import JobImportError, JobSpec, discover_jobs, import_modules
from fss.worker_sdk.runtime import WorkerRuntime

log = logging.getLogger(__name__)

# The app attribute holding the worker's `--tag` values, sent in every heartbeat.
TAGS_ATTRIBUTE = "fss_client_tags"


def client_id_for(name: str | None, pid: int) -> str:
    if name:
        return validate_client_id(name, "name")
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:80]
    return f"{host}-{pid}"


def build_worker_app(
    settings: Settings,
    jobs: dict[str, JobSpec],
    client_id: str,
    clock: Clock | None = None,
    tags: tuple[str, ...] = (),
) -> tuple[Celery, WorkerRuntime]:
    if not jobs:
        raise InvalidField("jobs", "no @job functions found in the given modules")
    tags = validate_tags(tags, "--tag")
    app = create_app(settings, main=f"fss-worker-{client_id}")
    setattr(app, TAGS_ATTRIBUTE, tags)
    if is_redis_broker(settings.broker_url):
        # Orders need no broker-side ack bookkeeping: one the worker took and never started
        # (a kill -9) is sent again by the supervisor under a new attempt, the fence shuts the
        # old one out, and a graceful stop still puts taken orders back. kombu's emulation
        # costs two Redis pipelines per order in the consumer process.
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "ack_emulation": False,
        }
    runtime = WorkerRuntime(settings, client_id, jobs, clock=clock)
    register_jobs(app, runtime)
    hooks.install(app, runtime)
    app.steps["worker"].add(HeartbeatStep)
    return app, runtime


def load_jobs(module_names: list[str]) -> dict[str, JobSpec]:
    """The @job functions of the modules; each module must define at least one."""
    modules = import_modules(module_names)
    for module in modules:
        if not discover_jobs([module]):
            raise JobImportError(module.__name__, "defines no @job functions")
    return discover_jobs(modules)


def register_jobs(app: Celery, runtime: WorkerRuntime) -> None:
    for spec in runtime.jobs.values():
        app.task(name=job_task_name(spec.name), bind=True, ignore_result=True)(_task_body(runtime))


def _task_body(runtime: WorkerRuntime) -> Any:
    def run_fss_job(self: Any, **_order: Any) -> None:
        # Not the Celery id: a copy of this order running in another thread shares it.
        runtime.run(hooks.delivery_of(self))

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
    """Registers the client and keeps it alive; drains on SIGTERM; unregisters at the end.

    On SIGTERM the heartbeat says `accepting=False` at once, so no new run is sent here,
    while Celery's warm shutdown lets the running jobs finish. Runs still going after
    FSS_SHUTDOWN_GRACE_S are reported failed and the worker goes to a cold shutdown.
    The final `left` event goes out when the worker has stopped.
    """

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        self._beacon_thread: threading.Thread | None = None
        self._runtime: WorkerRuntime | None = None
        self._beacons: list[PresenceBeacon] = []
        self._beacons_failing: set[str] = set()
        self._uid = f"fss.heartbeat.{id(self)}"
        self._interrupts = 0
        self._hostname = ""
        self._tags: tuple[str, ...] = ()

    def start(self, worker: Any) -> None:
        runtime: WorkerRuntime | None = getattr(worker.app, hooks.RUNTIME_ATTRIBUTE, None)
        if runtime is None:
            return
        self._runtime = runtime
        self._hostname = str(getattr(worker, "hostname", ""))
        self._tags = tuple(getattr(worker.app, TAGS_ATTRIBUTE, ()))
        warn_if_unfenced(runtime.settings)
        if threading.current_thread() is threading.main_thread():
            # After Celery's own handlers (installed before the steps start): ours replace
            # its Ctrl-C, whose second press printed a 60-line traceback on a threads pool.
            platforms.signals["SIGINT"] = self._on_interrupt
        # Opened after the pool has forked its processes, so they do not hold it open.
        self._beacons = beacons_for(runtime.settings, runtime.client_id)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, args=(runtime,), name="fss-heartbeat", daemon=True
        )
        self._thread.start()
        if self._beacons:
            # Its own thread: a busy or unreachable presence Redis (the fence's) must never
            # hold up the heartbeats, which go through the broker.
            self._beacon_thread = threading.Thread(
                target=self._keep_beacon_loop, args=(runtime.settings.heartbeat_s,),
                name="fss-beacon", daemon=True,
            )
            self._beacon_thread.start()
        signals.worker_shutting_down.connect(
            self._on_shutting_down, weak=False, dispatch_uid=self._uid + ".draining"
        )
        signals.worker_shutdown.connect(
            self._on_shutdown, weak=False, dispatch_uid=self._uid + ".left"
        )
        log.info(
            "client %s serves %s on queue %s%s",
            runtime.client_id,
            ", ".join(sorted(runtime.jobs)),
            runtime.queue,
            f" with tags {', '.join(self._tags)}" if self._tags else "",
        )

    def stop(self, worker: Any) -> None:
        # Called before the pool drains: keep beating (as draining) until worker_shutdown.
        self._start_draining()

    def _on_interrupt(self, *_: Any) -> None:
        """Ctrl-C. The first: a warm stop (running runs finish), said in one line. The second:
        running runs are reported failed and the process stops at once, in one line."""
        self._interrupts += 1
        if self._interrupts == 1:
            worker_state.should_stop = EX_OK
            signals.worker_shutting_down.send(
                sender=self._hostname, sig="SIGINT", how="Warm", exitcode=EX_OK
            )
            target = self._say_finishing
        elif self._interrupts == 2:
            target = self._stop_now
        else:
            return
        # Logging and publishing take locks the interrupted code may hold: not in here.
        threading.Thread(target=target, name="fss-interrupt", daemon=True).start()

    def _say_finishing(self) -> None:
        log.warning(
            "stopping: finishing %d running run(s); press Ctrl-C again to stop at once",
            len(running_orders()),
        )

    def _stop_now(self) -> None:
        orders = running_orders()
        log.warning("stopping now: %d unfinished run(s) reported failed", len(orders))
        runtime = self._runtime
        try:
            if runtime is not None:
                for order in orders:
                    runtime.emit(
                        runtime.abandoned(order, "the worker was stopped (a second Ctrl-C)")
                    )
                runtime.emit(runtime.left())
                runtime.publisher.flush(timeout_s=5)
                for hook in list(runtime.before_exit):
                    hook()
        except Exception as exc:
            log.warning("could not report the stop (%s)", exc)
        finally:
            # Pool processes reset SIGTERM to its default: they end with their jobs. Threads
            # cannot be stopped, so the process leaves without waiting for them.
            for child in active_children():
                child.terminate()
            os._exit(EX_FAILURE)

    def _on_shutting_down(self, **_: Any) -> None:
        # Runs inside a signal handler: only flip flags and start a timer thread.
        self._start_draining()

    def _start_draining(self) -> None:
        if self._draining.is_set() or self._runtime is None:
            return
        self._draining.set()
        self._wake.set()
        grace = threading.Thread(target=self._enforce_grace, name="fss-shutdown-grace", daemon=True)
        grace.start()

    def _enforce_grace(self) -> None:
        runtime = self._runtime
        if runtime is None or self._stop.wait(runtime.settings.shutdown_grace_s):
            return
        orders = running_orders()
        if not orders:
            return
        log.warning(
            "shutdown grace of %g s is over: failing %d running job(s) and stopping",
            runtime.settings.shutdown_grace_s,
            len(orders),
        )
        for order in orders:
            runtime.emit(
                runtime.abandoned(
                    order, "the worker stopped before the run ended (shutdown grace over)"
                )
            )
        runtime.publisher.flush(timeout_s=5)
        os.kill(os.getpid(), signal.SIGQUIT)  # Celery's cold shutdown ends the pool

    def _on_shutdown(self, **_: Any) -> None:
        runtime = self._runtime
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if runtime is not None:
            runtime.emit(runtime.left())
            runtime.publisher.flush(timeout_s=5)
            log.info("client %s unregistered", runtime.client_id)
        if self._beacon_thread is not None:
            self._beacon_thread.join(timeout=1)
        for beacon in self._beacons:
            beacon.close()

    def _beat(self, runtime: WorkerRuntime) -> None:
        interval = runtime.settings.heartbeat_s
        while not self._stop.is_set():
            try:
                beat = runtime.heartbeat(
                    accepting=not self._draining.is_set(), active=len(running_orders())
                )
                if self._tags:
                    beat = dataclasses.replace(beat, tags=self._tags)
                runtime.emit(beat)
                runtime.publisher.flush(timeout_s=interval)
            except Exception:
                log.exception("heartbeat failed")
            self._wake.wait(interval)
            self._wake.clear()

    def _keep_beacon_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._keep_beacon()
            self._stop.wait(interval)

    def _keep_beacon(self) -> None:
        for beacon in self._beacons:
            try:
                beacon.keep()
            except Exception as exc:
                # Not fatal: without its beacon the client is judged by its heartbeat alone.
                # INFO: a Redis outage is already reported (once each way) by the publisher.
                if beacon.url_label not in self._beacons_failing:
                    log.info(
                        "presence connection to Redis %s lost (%s); reconnecting",
                        beacon.url_label, exc,
                    )
                self._beacons_failing.add(beacon.url_label)
            else:
                self._beacons_failing.discard(beacon.url_label)


def beacons_for(settings: Settings, client_id: str) -> list[PresenceBeacon]:
    """The beacon on the fence Redis (the supervisor's presence check), and one on the
    broker's Redis too when FSS_FENCE_URL names another: a scheduler given another broker URL
    than its workers' then sees that none of them is connected to its broker."""
    beacons = [create_beacon(settings.effective_fence_url, client_id)]
    if settings.broker_url != settings.effective_fence_url:
        beacons.append(create_beacon(settings.broker_url, client_id))
    return [beacon for beacon in beacons if beacon is not None]


def warn_if_unfenced(settings: Settings) -> None:
    """A broker that is not Redis and no FSS_FENCE_URL: nothing stops a re-sent order from
    running twice. Said once at start, as the scheduler does (the broker URL is not shown:
    it may hold a password)."""
    if settings.effective_fence_url != "none":
        return
    scheme = urlsplit(settings.broker_url).scheme or "unknown"
    log.warning(
        "no Redis for fencing: the broker (%s) is not Redis and FSS_FENCE_URL is not set, so "
        "an order sent again could run twice; set FSS_FENCE_URL to the Redis URL the "
        "schedulers use",
        scheme,
    )


def running_orders() -> list[RunOrder]:
    """Orders of the fss runs this worker process is executing (Celery's own bookkeeping)."""
    orders = []
    for request in list(worker_state.active_requests):
        if job_name_of(getattr(request, "name", "") or "") is None:
            continue
        try:
            orders.append(RunOrder.from_kwargs(dict(request.kwargs or {})))
        except InvalidField:
            continue
    return orders
