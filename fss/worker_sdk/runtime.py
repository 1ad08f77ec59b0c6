"""Per-process worker state: who this client is, its publisher and fence, and active runs."""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from billiard import common as billiard_common
from celery.exceptions import SoftTimeLimitExceeded

from fss.bridge.hooks import time_limit_reason
from fss.bridge.publisher import EventPublisher
from fss.config import Settings
from fss.domain.clock import Clock, SystemClock
from fss.domain.data_merge import changes_since
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskFinished,
    TaskLogged,
    TaskStarted,
    python_level_to_fss,
)
from fss.fence import Fence, create_fence, new_delivery_token
from fss.hostinfo import local_ip
from fss.naming import client_queue
from fss.orders import RunOrder
from fss.outage import first_line, is_connection_error
from fss.worker_sdk.context import JobContext, data_problem
from fss.worker_sdk.job import Fail, JobSpec

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 8000
# How long a run's end waits for its events to reach the broker; the publisher waits this
# once per outage, later ends return at once while the background thread keeps retrying.
END_FLUSH_TIMEOUT_S = 10.0
# Entering the fence is retried with the same delivery token (a yes if an earlier try got
# through and only its reply was lost) after these pauses, then the order is left to the
# supervisor. While the fence's Redis is unreachable the retries go on for ~10 s, so an
# order taken just before a Redis restart runs once Redis is back, instead of waiting for
# the supervisor's expiry sweep (FSS_DISPATCH_EXPIRES_S + 2 s after it was due, 32 s);
# nothing else could start on this pool process meanwhile. Any other error: two retries.
ENTER_RETRY_PAUSES_S = (0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0)
ENTER_RETRIES_NOT_UNREACHABLE = 2
# The seq of a line the worker's main process writes for a run it reports (a pool process
# killed at its hard time limit, a run killed on request): after every line the job made.
LAST_LINE_SEQ = 2**62


@dataclass
class ActiveRun:
    order: RunOrder
    context: JobContext
    original_data: str
    started_monotonic: float
    outcome: tuple[bool, str | None] | None = None
    # False when the job raised Fail(retry=False): this failure is not retried.
    retry: bool = True
    # The order's soft time limit (Celery's `timelimit` header), None without one.
    soft_limit_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class WorkerRuntime:
    def __init__(
        self,
        settings: Settings,
        client_id: str,
        jobs: dict[str, JobSpec],
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.jobs = jobs
        self.queue = client_queue(client_id)
        self.clock: Clock = clock or SystemClock()
        self.host = socket.gethostname()[:128]
        # Made in the main process before the pool forks, so its children share it.
        self.incarnation = uuid.uuid4().hex[:16]
        self.ip = local_ip()
        self._publisher: EventPublisher | None = None
        self._fence: Fence | None = None
        self._pid = os.getpid()
        self._active: dict[str, ActiveRun] = {}
        self._lock = threading.Lock()
        self._kill_reasons: dict[str, str] = {}
        # Run after a second Ctrl-C reported the running runs, right before the process
        # leaves without waiting for them (fss dev records them and unregisters here).
        self.before_exit: list[Callable[[], None]] = []

    @property
    def publisher(self) -> EventPublisher:
        self._per_process()
        if self._publisher is None:
            self._publisher = EventPublisher.for_settings(self.settings)
        return self._publisher

    @property
    def fence(self) -> Fence:
        self._per_process()
        if self._fence is None:
            self._fence = create_fence(self.settings.effective_fence_url)
        return self._fence

    def emit(self, event: Event) -> None:
        self.publisher.emit(event)

    def heartbeat(self, accepting: bool = True, active: int = 0) -> ClientHeartbeat:
        return ClientHeartbeat(
            client_id=self.client_id,
            host=self.host,
            ip=self.ip,
            pid=os.getpid(),
            job_names=tuple(sorted(self.jobs)),
            queue=self.queue,
            at=self.clock.now(),
            accepting=accepting,
            active=active,
            incarnation=self.incarnation,
        )

    def abandoned(self, order: RunOrder, reason: str) -> TaskFinished:
        """The failure report for a run this worker gives up on (shutdown past its grace)."""
        return TaskFinished(
            task_id=order.task_id,
            attempt=order.attempt,
            client_id=self.client_id,
            success=False,
            run_speed_ms=max(0, int((self.clock.now() - order.start_at).total_seconds() * 1000)),
            at=self.clock.now(),
            error=reason,
            shard=order.shard,
        )

    @property
    def kill_reasons(self) -> dict[str, str]:
        """Why a run is being killed, by Celery id: set by the `fss_kill` command in the
        main process, read when Celery reports the revoked run."""
        return self._kill_reasons

    def stopped(self, order: RunOrder, reason: str) -> list[Event]:
        """A run the main process saw end without its job's own report (its pool process
        killed at the hard time limit or on request): a run log line and the failure."""
        line = TaskLogged(
            task_id=order.task_id,
            attempt=order.attempt,
            client_id=self.client_id,
            group_id=order.group_id,
            level=python_level_to_fss(logging.ERROR),
            content=reason,
            at=self.clock.now(),
            seq=LAST_LINE_SEQ,
            shard=order.shard,
            # One id per run and reason: Celery reports a hard time limit through
            # task_failure twice, and the recorder stores a line id once.
            event_id=uuid.uuid5(
                uuid.NAMESPACE_URL,
                f"fss-stopped:{order.installation}:{order.task_id}:{order.attempt}:"
                f"{order.shard}:{reason}",
            ).hex,
        )
        return [line, self.abandoned(order, reason)]

    def left(self) -> ClientLeft:
        return ClientLeft(self.client_id, self.clock.now(), incarnation=self.incarnation)

    # The three steps of a run: the bridge's prerun hook, the task body, the postrun hook.
    # One delivery of an order is one run, named by a token `begin` draws: two copies of
    # one order (same Celery id) executing at once in a threads pool are two deliveries,
    # and only the one that entered the fence finds its run.

    def begin(
        self, celery_id: str, kwargs: dict[str, Any], soft_limit_s: float | None = None
    ) -> str | None:
        """Enter the fence for this delivery of an order; its token if the job may run.
        `soft_limit_s`: the order's soft time limit, named in the error when it strikes."""
        order = RunOrder.from_kwargs(kwargs)
        if order.client_id != self.client_id:
            log.warning(
                "task %s attempt %s was sent to %s, not to this client %s; not running it",
                order.task_id,
                order.attempt,
                order.client_id,
                self.client_id,
            )
            return None
        delivery = new_delivery_token()
        if not self._enter(order, delivery):
            log.warning(
                "task %s attempt %s is not current any more; not running it",
                order.task_id,
                order.attempt,
            )
            return None
        context = JobContext(
            task_id=order.task_id,
            attempt=order.attempt,
            group_id=order.group_id,
            job_name=order.job_name,
            data=copy.deepcopy(order.data),
            start_at=order.start_at,
            client_id=self.client_id,
            emit=self.emit,
            clock=self.clock,
            shard=order.shard,
            shard_total=order.shard_total,
            base_data=order.data,
            installation=order.installation,
        )
        run = ActiveRun(order, context, _canonical(order.data), time.monotonic())
        run.soft_limit_s = soft_limit_s
        with self._lock:
            self._active[delivery] = run
        self.publisher.run_of_installation(order.task_id, order.attempt, order.installation)
        self.emit(
            TaskStarted(
                order.task_id, order.attempt, self.client_id, self.clock.now(),
                installation=order.installation, shard=order.shard,
            )
        )
        return delivery

    def _enter(self, order: RunOrder, delivery: str) -> bool:
        """One line when the first try fails (the retries are quiet), one when a retry gets
        through; the error of the last try if none does."""
        first_failure: float | None = None
        for tries, pause in enumerate((*ENTER_RETRY_PAUSES_S, None)):
            try:
                entered = self.fence.enter(
                    order.task_id,
                    order.attempt,
                    self.incarnation,
                    installation=order.installation,
                    delivery=delivery,
                    shard=order.shard_index,
                )
            except Exception as exc:
                unreachable = is_connection_error(exc)
                if pause is None or (not unreachable and tries >= ENTER_RETRIES_NOT_UNREACHABLE):
                    raise
                if first_failure is None:
                    first_failure = time.monotonic()
                    log.warning(
                        "task %s attempt %s: entering the fence failed (%s); trying again",
                        order.task_id,
                        order.attempt,
                        exc,
                    )
                time.sleep(pause)
                continue
            if first_failure is not None:
                log.info(
                    "task %s attempt %s: the fence answered after %.1f s (entered: %s)",
                    order.task_id,
                    order.attempt,
                    time.monotonic() - first_failure,
                    entered,
                )
            return entered
        raise AssertionError("unreachable")

    def run(self, delivery: str | None) -> None:
        """Run the job of a begun order; the outcome goes out with `end`. Returns nothing:
        Celery reprs and pickles a task's return value on every run (the result is ignored),
        which cost 6% of a pool process's CPU for a two-key dict."""
        if delivery is None:
            return
        with self._lock:
            active = self._active.get(delivery)
        if active is None:
            return
        spec = self.jobs[active.order.job_name]
        try:
            result = spec.call(active.context)
        except SoftTimeLimitExceeded:
            # Raised in the job by Celery at the soft limit (a prefork pool): the job let it
            # through, or re-raised it after cleaning up.
            elapsed = round(time.monotonic() - active.started_monotonic, 1)
            reason = time_limit_reason(active.soft_limit_s or elapsed)
            active.context.log.error("%s (max_run_s): the job was stopped", reason)
            active.outcome = (False, reason)
        except Fail as exc:
            # The job's own verdict: its reason is the error, no traceback.
            active.context.log.error("job %r failed: %s", spec.name, exc.reason)
            active.outcome, active.retry = (False, exc.reason[-MAX_ERROR_CHARS:]), exc.retry
        except Exception as exc:
            error = "".join(traceback.format_exception(exc))
            active.context.log.error(
                "job %r raised %s", spec.name, type(exc).__name__, exc_info=exc
            )
            active.outcome = (False, error[-MAX_ERROR_CHARS:])
        else:
            if result is False:
                active.context.log.warning("job %r returned False", spec.name)
                active.outcome = (False, "job returned False")
            else:
                active.outcome = (True, None)

    def end(self, delivery: str | None, state: str | None = None) -> None:
        if delivery is None:
            return
        with self._lock:
            active = self._active.pop(delivery, None)
        if active is None:
            return
        if active.outcome is None and _terminated_by_signal():
            # This pool process is being terminated (the order's hard time limit, `fss task
            # kill`, a stop): the worker's main process reports the run with the reason it
            # knows, and a report from here, in the same batch, would replace it.
            return
        success, error = active.outcome or (
            False,
            f"the worker process stopped before the job returned ({state or 'interrupted'})",
        )
        context = active.context
        try:
            data, problem = _changed_data(context, active.original_data)
            patch = changes_since(active.order.data, data) if data is not None else None
        except Exception as exc:  # whatever the job left in ctx.data, the run still ends
            log.exception("could not read the data of task %s", active.order.task_id)
            data, patch, problem = None, None, f"ctx.data cannot be saved: {first_line(exc)}"
        if problem is not None and success:
            success, error = False, problem  # data it cannot save fails the run, saying why
        self.emit(
            TaskFinished(
                task_id=active.order.task_id,
                attempt=active.order.attempt,
                client_id=self.client_id,
                success=success,
                run_speed_ms=int((time.monotonic() - active.started_monotonic) * 1000),
                at=self.clock.now(),
                next_at=context.next_at,
                error=error,
                data=data,
                retry=active.retry,
                shard=active.order.shard,
                data_patch=patch,
                installation=active.order.installation,
            )
        )
        self.publisher.flush(timeout_s=END_FLUSH_TIMEOUT_S)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        if self._fence is not None:
            self._fence.close()

    def _per_process(self) -> None:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._publisher = None
            self._fence = None
            self._active = {}
            self._lock = threading.Lock()


def _terminated_by_signal() -> bool:
    """Whether this process's terminate-signal handler (billiard's, in a prefork pool
    process) has fired: the job is being unwound towards the process's exit."""
    fired = getattr(billiard_common, "terminate_handler_fired", None)
    return bool(fired()) if callable(fired) else False


def _changed_data(context: JobContext, original: str) -> tuple[dict[str, Any] | None, str | None]:
    """The changed data to save, or why it cannot be saved (the run then fails)."""
    if _canonical(context.data) == original:
        return None, None
    problem = data_problem(context.data)
    if problem is not None:
        context.log.error("ctx.data was changed but cannot be saved: %s", problem)
        return None, problem
    return context.data, None


def _canonical(data: Any) -> str:
    try:
        return json.dumps(data, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(data)
    except RecursionError:  # nested too deep to encode: never equal to data a group holds
        return ""
