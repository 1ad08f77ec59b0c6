"""/api/v1/tasks: task search with cursor pagination, one task with its timeline, run logs."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from fss.kills import Outcome, kill_task
from fss.store.kills import NotRunning
from fss.store.retries import task_attempts
from fss.store.views import (
    MAX_TASK_PAGE,
    LogCursor,
    decode_cursor,
    log_lines,
    log_page,
    require_task,
    search_tasks,
    task_detail,
)
from fss.web.api_audit import Audited
from fss.web.auth import Viewer
from fss.web.context import Context
from fss.web.filters import TaskQuery
from fss.web.params import AfterLogId, TaskId

router = APIRouter(prefix="/api/v1", tags=["tasks"])
MAX_LOG_PAGE = 1000


@router.get("/tasks", summary="Tasks, newest first, one page at a time")
def list_tasks(
    principal: Viewer,
    context: Context,
    filtered: TaskQuery,
    limit: Annotated[int, Query(ge=1, le=MAX_TASK_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of a page")]
    = None,
) -> dict[str, Any]:
    wanted = replace(filtered, limit=limit,
                     before_id=decode_cursor(cursor) if cursor else None)
    with context.engine.connect() as conn:
        items, next_cursor = search_tasks(conn, wanted)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/tasks/{task_id}", summary="One task with its timeline and every attempt")
def get_task(task_id: TaskId, principal: Viewer, context: Context) -> dict[str, Any]:
    """`attempts`: every attempt, oldest first, each with its own status, client, dispatch,
    start and end times and error (a retried task has one per try; an attempt sent again
    before it started shows as "Not started")."""
    with context.engine.connect() as conn:
        body = task_detail(conn, task_id)
        body["attempts"] = [a.to_json() for a in task_attempts(conn, task_id)]
        return body


@router.get("/tasks/{task_id}/logs", summary="Run logs of a task in the job's order, paged")
def get_logs(
    task_id: TaskId,
    principal: Viewer,
    context: Context,
    after_id: AfterLogId = 0,
    min_level: Annotated[int, Query(ge=0, le=5)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE)] = 500,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of a page")]
    = None,
) -> dict[str, Any]:
    """Lines in the job's order (its line numbers; lines recorded before fss kept them, by
    id). `next_cursor` continues with the next page and is null on the last one. `after_id`
    (lines with a larger id, by id, `last_id` to continue) is what a live poller uses."""
    with context.engine.connect() as conn:
        require_task(conn, task_id)
        if after_id and cursor is None:
            rows = log_page(conn, task_id, after_id, min_level, limit)
            return {"items": [r.to_json() for r in rows], "next_cursor": None,
                    "last_id": rows[-1].id if rows else after_id}
        after = LogCursor.decode(cursor) if cursor else None
        rows, next_page = log_lines(conn, task_id, after, min_level, limit)
    return {
        "items": [r.to_json() for r in rows],
        "next_cursor": next_page.encode() if next_page else None,
        "last_id": max((r.id for r in rows), default=after_id),
    }


@router.post("/tasks/{task_id}/kill", summary="Stop a running task now")
def kill(task_id: TaskId, actor: Audited, context: Context) -> dict[str, Any]:
    """Celery's revoke with terminate on the worker running it (a gRPC client: `cancel`);
    the run ends Fail "killed by <you> (web)". 409 when the task is not running, or when
    its worker cannot kill it (a threads or solo pool: the run goes on) or did not answer."""
    try:
        result = kill_task(
            context.engine, context.settings, context.clock, task_id, f"{actor.name} (web)",
            actor,
        )
    except NotRunning as exc:
        raise HTTPException(409, str(exc)) from None
    if result.outcome is not Outcome.SENT:
        raise HTTPException(409, result.message)
    return result.to_json()
