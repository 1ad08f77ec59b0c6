"""Live tail of a task's run logs as server-sent events (EventSource in the browser).

Events: `log` (one log line, its id as the event id, so a reconnecting browser sends
Last-Event-ID and continues after it), `task` (the task whenever its status or progress
changes) and `end` (the task finished and every log line was sent; the stream closes).
The store is polled every POLL_S; database calls run in the thread pool, never on the loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from fss.domain.status import FINISHED
from fss.errors import InvalidField
from fss.store.rows import LogRow, TaskRow
from fss.store.views import log_key, log_page, require_task, task_state
from fss.web.auth import Viewer
from fss.web.context import Context
from fss.web.params import AfterLogId, TaskId

router = APIRouter(prefix="/api/v1", tags=["tasks"])

POLL_S = 0.5
BATCH = 500
# A comment line now and then keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
# On PostgreSQL/MySQL two recorders may commit run_log rows out of id order: a line whose id
# is below one already sent can appear later. Ids this far below the newest sent one are
# looked at again (one index range of this task's lines) and the unseen ones are sent.
LATE_WINDOW_IDS = 5000


class Tail:
    """Which log ids were sent, so late commits are sent once and nothing twice."""

    def __init__(self, after_id: int) -> None:
        self.after_id = after_id
        # What the browser had when it (re)connected counts as seen.
        self._start = after_id
        self._sent: set[int] = set()

    @property
    def floor(self) -> int:
        return max(self._start, self.after_id - LATE_WINDOW_IDS)

    def unseen(self, rows: list[LogRow]) -> list[LogRow]:
        return [r for r in rows if r.id not in self._sent and r.id > self.floor]

    def sent(self, row: LogRow) -> None:
        self._sent.add(row.id)
        self.after_id = max(self.after_id, row.id)
        if len(self._sent) > 4 * BATCH:
            floor = self.floor
            self._sent = {i for i in self._sent if i > floor}


@dataclass
class Snapshot:
    task: TaskRow | None
    logs: list[LogRow]


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    """One event; JSON never holds a raw newline, so `data` is always a single line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _read(engine: Engine, task_id: int, tail: Tail, min_level: int) -> Snapshot:
    with engine.connect() as conn:
        # The task first: logs read after it include every line written before it finished.
        current = task_state(conn, task_id)
        late = [
            r for r in log_page(conn, task_id, tail.floor, min_level, BATCH)
            if r.id <= tail.after_id
        ]
        newer = log_page(conn, task_id, tail.after_id, min_level, BATCH)
        # In the job's order (seq): the page puts each line in its place by that key too.
        return Snapshot(current, sorted(tail.unseen(late) + newer, key=log_key))


def _require(engine: Engine, task_id: int) -> None:
    with engine.connect() as conn:
        require_task(conn, task_id)


async def tail(
    request: Request, engine: Engine, task_id: int, after_id: int, min_level: int
) -> AsyncIterator[str]:
    last_state: tuple[int, int] | None = None
    idle_s = 0.0
    sent = Tail(after_id)
    while not await request.is_disconnected():
        snap = await run_in_threadpool(_read, engine, task_id, sent, min_level)
        for row in snap.logs:
            sent.sent(row)
            yield sse("log", row.to_json(), sent.after_id)
        if snap.task is None:  # deleted with its group meanwhile
            yield sse("end", {"task_id": task_id, "status": None})
            return
        state = (int(snap.task.status), snap.task.progress)
        if state != last_state:
            last_state = state
            yield sse("task", snap.task.to_json())
        if snap.task.status in FINISHED and len(snap.logs) < BATCH:
            yield sse("end", {"task_id": task_id, "status": snap.task.status.label})
            return
        if len(snap.logs) == BATCH:
            continue  # a backlog: send it without waiting
        idle_s = 0.0 if snap.logs else idle_s + POLL_S
        if idle_s >= KEEPALIVE_S:
            idle_s = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_S)


def _resume_after(after_id: int, last_event_id: str | None) -> int:
    if not last_event_id:
        return after_id
    if not last_event_id.isdigit():
        raise InvalidField("Last-Event-ID", "must be the id of a log event")
    return max(after_id, int(last_event_id))


@router.get(
    "/tasks/{task_id}/logs/stream",
    summary="Live tail of run logs (text/event-stream)",
    response_class=StreamingResponse,
)
async def stream_logs(
    request: Request,
    task_id: TaskId,
    principal: Viewer,
    context: Context,
    after_id: AfterLogId = 0,
    min_level: Annotated[int, Query(ge=0, le=5)] = 0,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    start = _resume_after(after_id, last_event_id)
    engine = context.engine
    await run_in_threadpool(_require, engine, task_id)
    return StreamingResponse(
        tail(request, engine, task_id, start, min_level),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
