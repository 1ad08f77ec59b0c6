"""Celery signal hooks that turn the execution of fss jobs into events.

prerun claims the attempt (fence) and emits `started`; postrun emits `finished` and flushes
the events to the broker. The hooks do nothing for tasks that are not fss jobs, or for apps
without an fss runtime, so they are safe to install beside other Celery code.

Runs that end without their job's own report are reported by the worker's main process:
a pool process killed at the order's hard time limit (`task_failure` with
TimeLimitExceeded), lost (WorkerLostError), or terminated by a revoke (`task_revoked`;
`fss task kill` sends it through the `fss_kill` remote control command, which names who
asked and refuses plainly on a pool that cannot kill a running job).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from billiard.exceptions import WorkerLostError
from celery import Celery, Task
from celery.concurrency.base import BasePool
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_postrun, task_prerun, task_revoked
from celery.worker import state as worker_state
from celery.worker.control import Panel, control_command

from fss.errors import InvalidField
from fss.events import Event, TaskFinished
from fss.naming import job_name_of
from fss.orders import RunOrder
from fss.outage import first_line, is_connection_error

log = logging.getLogger(__name__)
RUNTIME_ATTRIBUTE = "fss_runtime"
# Set on Celery's request context of one execution: the delivery token of the run that
# execution began. The context is per execution (thread, greenlet or pool process), while
# the Celery id is shared by every copy of one order.
DELIVERY_ATTRIBUTE = "fss_delivery"
# The remote control command `fss task kill` sends (Celery's revoke with terminate, plus why).
KILL_COMMAND = "fss_kill"
# The error of a run terminated by a plain Celery revoke (e.g. `celery control revoke
# --terminate`), which names nobody.
REVOKED_REASON = "killed: revoked with terminate"


class Flushable(Protocol):
    def flush(self, timeout_s: float = ...) -> bool: ...


class WorkerRuntime(Protocol):
    """What the hooks need of the worker's per-process state (fss.worker_sdk.runtime)."""

    @property
    def publisher(self) -> Flushable: ...

    def begin(
        self, celery_id: str, kwargs: dict[str, Any], soft_limit_s: float | None = ...
    ) -> str | None: ...

    def end(self, delivery: str | None, state: str | None = None) -> None: ...

    def emit(self, event: Event) -> None: ...

    def abandoned(self, order: RunOrder, reason: str) -> TaskFinished: ...

    def stopped(self, order: RunOrder, reason: str) -> list[Event]: ...

    @property
    def kill_reasons(self) -> dict[str, str]: ...


def install(app: Celery, runtime: WorkerRuntime) -> None:
    setattr(app, RUNTIME_ATTRIBUTE, runtime)
    task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="fss.bridge.prerun")
    task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="fss.bridge.postrun")
    task_failure.connect(on_task_lost, weak=False, dispatch_uid="fss.bridge.lost")
    task_revoked.connect(on_task_revoked, weak=False, dispatch_uid="fss.bridge.revoked")
    if KILL_COMMAND not in Panel.data:
        control_command(
            name=KILL_COMMAND,
            args=[("task_id", str), ("reason", str)],
            signature="<celery task id> <reason>",
        )(fss_kill)


def runtime_of(task: Task | None) -> WorkerRuntime | None:
    if task is None or job_name_of(task.name or "") is None:
        return None
    runtime: WorkerRuntime | None = getattr(task.app, RUNTIME_ATTRIBUTE, None)
    return runtime


def delivery_of(task: Task | None) -> str | None:
    """The delivery token the prerun hook gave the execution now running `task`."""
    request = getattr(task, "request", None)
    delivery = getattr(request, DELIVERY_ATTRIBUTE, None)
    return delivery if isinstance(delivery, str) else None


def on_task_prerun(
    sender: Task | None = None,
    task_id: str | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    runtime = runtime_of(sender)
    if runtime is None or task_id is None:
        return
    try:
        delivery = runtime.begin(task_id, kwargs or {}, soft_limit_of(sender))
        if delivery is not None and sender is not None:
            setattr(sender.request, DELIVERY_ATTRIBUTE, delivery)
    except InvalidField as exc:
        log.error("dropping malformed run order %s: %s", task_id, exc)
    except Exception as exc:
        # The body finds no active run and does nothing; the supervisor notices the task.
        if not is_connection_error(exc):
            log.exception("could not start task %s", task_id)
            return
        # The fence's Redis stayed away through every retry: one line, not a traceback.
        log.error(
            "could not start task %s: the fence's Redis is unreachable (%s); the supervisor "
            "dispatches it again once its order expires", task_id, first_line(exc),
        )


def on_task_lost(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """The pool process running a job died or was killed for its hard time limit: the
    main process reports the run failed, since the job's own hooks never ran to the end."""
    runtime = runtime_of(sender)
    if runtime is None or not isinstance(exception, WorkerLostError | TimeLimitExceeded):
        return
    if isinstance(exception, TimeLimitExceeded):
        # Celery's hard limit (the order's timelimit header): the job went on past the soft
        # one and its pool process was killed. Same reason as a job stopped at the soft one.
        hard = _number(exception.args[0] if exception.args else None)
        reason = (
            f"{time_limit_reason(hard)}: the job went on past its soft limit and its "
            "process was killed at the hard limit"
        )
        _report_stopped(runtime, task_id, kwargs, reason)
        return
    try:
        order = RunOrder.from_kwargs(kwargs or {})
        runtime.emit(runtime.abandoned(order, f"the worker process was lost: {exception}"))
        runtime.publisher.flush()
    except Exception:
        log.exception("could not report the lost task %s", task_id)


def on_task_revoked(
    sender: Task | None = None,
    request: Any = None,
    terminated: bool = False,
    **_: Any,
) -> None:
    """A running fss job terminated by a revoke (`fss task kill`): its pool process was
    signalled, so the main process reports the run failed, naming who asked."""
    runtime = runtime_of(sender)
    if runtime is None or not terminated or request is None:
        return
    task_id = getattr(request, "id", None)
    reason = runtime.kill_reasons.pop(str(task_id), REVOKED_REASON)
    _report_stopped(runtime, task_id, getattr(request, "kwargs", None), reason)


def _report_stopped(
    runtime: WorkerRuntime, task_id: str | None, kwargs: dict[str, Any] | None, reason: str
) -> None:
    try:
        order = RunOrder.from_kwargs(dict(kwargs or {}))
        for event in runtime.stopped(order, reason):
            runtime.emit(event)
        runtime.publisher.flush()
    except Exception:
        log.exception("could not report the stopped task %s", task_id)


def can_kill(pool: Any) -> bool:
    """Whether the pool can stop a running job (prefork, eventlet, gevent can; threads and
    solo cannot: a thread cannot be killed, and solo runs the job in the main process)."""
    method = getattr(pool, "terminate_job", None)
    return method is not None and getattr(method, "__func__", None) is not BasePool.terminate_job


def fss_kill(state: Any, task_id: str, reason: str = "", **_: Any) -> dict[str, str]:
    """Remote control command: kill the running fss run with this Celery id, recording
    `reason` as its error. Celery's own revoke with terminate (SIGTERM to the pool process
    running it) does the kill; the answer says plainly when it cannot be done here."""
    consumer = getattr(state, "consumer", None)
    pool = getattr(consumer, "pool", None)
    if not can_kill(pool):
        module = type(pool).__module__.rsplit(".", 1)[-1] if pool is not None else "unknown"
        name = {"thread": "threads"}.get(module, module)  # as `fss worker -P` names it
        return {"error": f"the {name} pool cannot kill a running job; the run goes on"}
    if not any(r.id == task_id for r in list(worker_state.active_requests)):
        return {"error": "not running on this worker"}
    runtime: WorkerRuntime | None = getattr(state.app, RUNTIME_ATTRIBUTE, None)
    if runtime is not None:
        runtime.kill_reasons[task_id] = reason or REVOKED_REASON
    answer: dict[str, str] = Panel.data["revoke"](
        state, task_id, terminate=True, signal="SIGTERM"
    )
    return answer


def soft_limit_of(task: Task | None) -> float | None:
    """The soft time limit of the order the task is executing (its `timelimit` header)."""
    limits = getattr(getattr(task, "request", None), "timelimit", None)
    if isinstance(limits, list | tuple) and len(limits) == 2:
        return _number(limits[1])
    return None


def time_limit_reason(seconds: float | None) -> str:
    """The error of a run stopped by its time limit (the group's max_run_s); the same words
    whoever stops it (the job at the soft limit, the pool at the hard one, the supervisor)."""
    return "time limit exceeded" if seconds is None else f"time limit exceeded after {seconds:g} s"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def on_task_postrun(
    sender: Task | None = None,
    task_id: str | None = None,
    state: str | None = None,
    **_: Any,
) -> None:
    runtime = runtime_of(sender)
    if runtime is None or task_id is None:
        return
    try:
        runtime.end(delivery_of(sender), state)
    except Exception:
        log.exception("could not report the end of task %s", task_id)
