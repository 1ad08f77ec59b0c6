"""Every queue name, Celery task name and Redis key fss uses, declared once."""

from __future__ import annotations

import re

from fss.errors import InvalidField

EVENTS_QUEUE = "fss.events"
# Heartbeats and unregistrations travel apart from task events, so a backlog of task
# events never makes a live client look silent.
CLIENTS_QUEUE = "fss.clients"
CLIENT_QUEUE_PREFIX = "fss.client."
JOB_TASK_PREFIX = "fss.job."
FENCE_KEY_PREFIX = "fss:fence:"
# A client id names its queue, so it keeps to characters every broker takes in a name.
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@\-]{1,100}$")


def validate_client_id(name: str, field: str = "name") -> str:
    """`name` if it is a valid client id (Celery workers and gRPC clients alike)."""
    if not CLIENT_ID_PATTERN.match(name):
        raise InvalidField(field, f"{name!r} must be 1..100 letters, digits or _ . : @ -")
    return name


def client_queue(client_id: str) -> str:
    return f"{CLIENT_QUEUE_PREFIX}{client_id}"


def job_task_name(job_name: str) -> str:
    return f"{JOB_TASK_PREFIX}{job_name}"


def job_name_of(task_name: str) -> str | None:
    if task_name.startswith(JOB_TASK_PREFIX):
        return task_name[len(JOB_TASK_PREFIX) :]
    return None


def celery_task_id(task_id: int, attempt: int, shard: int | None = None) -> str:
    """The Celery id of an order; each shard of a broadcast attempt has its own."""
    if shard is None:
        return f"fss-{task_id}-{attempt}"
    return f"fss-{task_id}-{attempt}-s{shard}"


def fence_key(task_id: int, installation: str = "", shard: int = 0) -> str:
    """The fence of a task of one installation: task ids of two installations sharing a
    Redis (or of a database re-created under an old Redis) never meet. Each shard of a
    broadcast run has a fence of its own; shard 0 is the task's own."""
    suffix = f"/{shard}" if shard else ""
    if installation:
        return f"{FENCE_KEY_PREFIX}{installation}:{task_id}{suffix}"
    return f"{FENCE_KEY_PREFIX}{task_id}{suffix}"
