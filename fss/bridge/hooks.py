"""Celery signal hooks that turn the execution of fss jobs into events.

prerun claims the attempt (fence) and emits `started`; postrun emits `finished` and flushes
the events to the broker. The hooks do nothing for tasks that are not fss jobs, or for apps
without an fss runtime, so they are safe to install beside other Celery code.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from billiard.exceptions import WorkerLostError
from celery import Celery, Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_postrun, task_prerun

from fss.errors import InvalidField
from fss.events import Event, TaskFinished
from fss.naming import job_name_of
from fss.orders import RunOrder

log = logging.getLogger(__name__)
RUNTIME_ATTRIBUTE = "fss_runtime"
# Set on Celery's request context of one execution: the delivery token of the run that
# execution began. The context is per execution (thread, greenlet or pool process), while
# the Celery id is shared by every copy of one order.
DELIVERY_ATTRIBUTE = "fss_delivery"


class Flushable(Protocol):
    def flush(self, timeout_s: float = ...) -> bool: ...


class WorkerRuntime(Protocol):
    """What the hooks need of the worker's per-process state (fss.worker_sdk.runtime)."""

    @property
    def publisher(self) -> Flushable: ...

    def begin(self, celery_id: str, kwargs: dict[str, Any]) -> str | None: ...

    def end(self, delivery: str | None, state: str | None = None) -> None: ...

    def emit(self, event: Event) -> None: ...

    def abandoned(self, order: RunOrder, reason: str) -> TaskFinished: ...


def install(app: Celery, runtime: WorkerRuntime) -> None:
    setattr(app, RUNTIME_ATTRIBUTE, runtime)
    task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="fss.bridge.prerun")
    task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="fss.bridge.postrun")
    task_failure.connect(on_task_lost, weak=False, dispatch_uid="fss.bridge.lost")


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
        delivery = runtime.begin(task_id, kwargs or {})
        if delivery is not None and sender is not None:
            setattr(sender.request, DELIVERY_ATTRIBUTE, delivery)
    except InvalidField as exc:
        log.error("dropping malformed run order %s: %s", task_id, exc)
    except Exception:
        # The body finds no active run and does nothing; the supervisor notices the task.
        log.exception("could not start task %s", task_id)


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
    try:
        order = RunOrder.from_kwargs(kwargs or {})
        runtime.emit(runtime.abandoned(order, f"the worker process was lost: {exception}"))
        runtime.publisher.flush()
    except Exception:
        log.exception("could not report the lost task %s", task_id)


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
