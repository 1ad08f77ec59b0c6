"""Search and export: /api/v1/search (a task by id, groups by key/caption/job/data text, failed
runs by error text), /api/v1/search/runs (those runs, paged) and the CSV exports of the
groups and tasks lists with their filters.

A CSV cell is safe to open in a spreadsheet: the csv module quotes commas, quotes and line
breaks, and a text cell starting with = + - @ (or a tab or carriage return) is prefixed with
an apostrophe, so it is shown as text and never run as a formula (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine

from fss.store.views import (
    MAX_GROUP_PAGE,
    MAX_TASK_PAGE,
    GroupFilter,
    TaskFilter,
    decode_cursor,
    search_groups,
    search_tasks,
    task_detail,
)
from fss.web.auth import Viewer
from fss.web.context import Context
from fss.web.filters import GroupQuery, TaskQuery
from fss.web.i18n import localized
from fss.web.params import MAX_ID, GroupIdFilter

router = APIRouter(prefix="/api/v1")

SEARCH_PAGE = 10
MAX_SEARCH_PAGE = 100
DEFAULT_EXPORT_ROWS = 10_000
MAX_EXPORT_ROWS = 100_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SearchText = Annotated[str, Query(min_length=1, max_length=200, description="What to look for")]


def _task_id(text: str) -> int | None:
    """"123" or "#123": a task or group id to look up."""
    digits = text.strip().removeprefix("#")
    if digits.isdigit() and 1 <= int(digits) <= MAX_ID:
        return int(digits)
    return None


@router.get("/search", tags=["search"], summary="Find a task by id, groups, failed runs")
def search(
    principal: Viewer,
    context: Context,
    q: SearchText,
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_PAGE, description="Per kind")] = SEARCH_PAGE,
) -> dict[str, Any]:
    """`task`: the task whose id is `q` ("123" or "#123"), or null. `groups`: the first
    `limit` groups whose key, caption, job or data contains `q` (any case), `total` of them
    (more: GET /api/v1/groups?q=...&offset=...). `runs`: the newest failed runs whose error
    contains `q`, `next_cursor` for GET /api/v1/search/runs."""
    text = q.strip()
    wanted_id = _task_id(text)
    with context.engine.connect() as conn:
        task = None
        if wanted_id is not None:
            try:
                task = task_detail(conn, wanted_id)
            except LookupError:
                task = None
        groups, total = search_groups(conn, GroupFilter(q=text, limit=limit))
        runs, cursor = search_tasks(conn, TaskFilter(error=text, limit=limit))
    return {
        "q": text,
        "task": task,
        "groups": {"items": [localized(g.to_json()) for g in groups], "total": total},
        "runs": {"items": runs, "next_cursor": cursor},
    }


@router.get("/search/runs", tags=["search"], summary="Failed runs by error text, paged")
def search_runs(
    principal: Viewer,
    context: Context,
    q: SearchText,
    group_id: GroupIdFilter = None,
    job_name: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TASK_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of a page")]
    = None,
) -> dict[str, Any]:
    """Failed tasks whose error contains `q` (any case), newest first, a page at a time."""
    wanted = TaskFilter(
        error=q.strip(), group_id=group_id, job_name=job_name or None, limit=limit,
        before_id=decode_cursor(cursor) if cursor else None,
    )
    with context.engine.connect() as conn:
        items, next_cursor = search_tasks(conn, wanted)
    return {"items": items, "next_cursor": next_cursor}


# ---- CSV ---------------------------------------------------------------------------------


def csv_cell(value: Any) -> str | int | float:
    """One cell: numbers as they are, None empty, other values as text that cannot start a
    formula (a leading = + - @ tab or CR gets an apostrophe before it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_response(name: str, lines: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(
        lines, media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "no-store"},
    )


GROUP_COLUMNS = [
    "id", "key", "caption", "job_name", "schedule", "cron", "interval_ms", "time_zone",
    "is_enable", "disabled_note",
    "next_at", "last_status", "last_run_at", "last_error", "run_count", "run_speed_avg",
    "client_tag", "route", "retries", "data",
]


def group_rows(engine: Engine, wanted: GroupFilter, rows: int) -> Iterator[list[Any]]:
    """Every group of the filter in its order, at most `rows`, read a page at a time."""
    offset = 0
    while offset < rows:
        limit = min(MAX_GROUP_PAGE, rows - offset)
        page = replace(wanted, limit=limit, offset=offset)
        with engine.connect() as conn:
            views, _ = search_groups(conn, page)
        for view in views:
            body = view.to_json()
            yield [body.get("schedule_text") if c == "schedule" else body.get(c)
                   for c in GROUP_COLUMNS]
        if len(views) < limit:
            return
        offset += limit


@router.get("/export/groups.csv", tags=["groups"], summary="The groups list as CSV",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_groups(
    principal: Viewer,
    context: Context,
    wanted: GroupQuery,
    rows: Annotated[int, Query(ge=1, le=MAX_EXPORT_ROWS)] = DEFAULT_EXPORT_ROWS,
) -> StreamingResponse:
    """The groups matching the filters of GET /api/v1/groups (the same parameters), in its
    order, every page (up to `rows`); one line per group, `data` as JSON text, the schedule
    in words (`schedule`) with the `cron` or `interval_ms` it says."""
    return csv_response("fss-groups.csv",
                        csv_lines(GROUP_COLUMNS, group_rows(context.engine, wanted, rows)))


TASK_COLUMNS = [
    "id", "task_group_id", "caption", "job_name", "kind", "status", "start_at", "run_at",
    "finish_at", "run_speed", "attempt", "progress", "client_id", "client_host", "error",
]


def task_rows(engine: Engine, wanted: TaskFilter, rows: int) -> Iterator[list[Any]]:
    """The tasks of the filter, newest first, at most `rows`, a keyset page at a time."""
    left, before = rows, wanted.before_id
    while left > 0:
        limit = min(MAX_TASK_PAGE, left)
        page = replace(wanted, limit=limit, before_id=before)
        with engine.connect() as conn:
            items, cursor = search_tasks(conn, page)
        for item in items:
            yield [item.get(c) for c in TASK_COLUMNS]
        left -= len(items)
        if cursor is None or not items:
            return
        before = int(items[-1]["id"])


@router.get("/export/tasks.csv", tags=["tasks"], summary="The tasks list as CSV",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_tasks(
    principal: Viewer,
    context: Context,
    wanted: TaskQuery,
    rows: Annotated[int, Query(ge=1, le=MAX_EXPORT_ROWS)] = DEFAULT_EXPORT_ROWS,
) -> StreamingResponse:
    """The tasks matching the filters of GET /api/v1/tasks (the same parameters, checked
    before the download starts), newest first, up to `rows`."""
    return csv_response("fss-tasks.csv",
                        csv_lines(TASK_COLUMNS, task_rows(context.engine, wanted, rows)))
