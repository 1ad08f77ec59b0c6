"""The query parameters of the groups and tasks filters, as FastAPI dependencies.

GET /api/v1/groups and /api/v1/export/groups.csv take their filter from `group_filter`,
GET /api/v1/tasks and /api/v1/export/tasks.csv from `task_filter`: a filter added here is
in the list and its CSV export at once (the list adds its page, the export its row count).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

from fss.domain.clock import parse_time
from fss.domain.status import TaskStatus
from fss.errors import InvalidField
from fss.store.views import GROUP_SORTS, GroupFilter, TaskFilter
from fss.web.params import GroupIdFilter


def parse_status(value: str | None) -> TaskStatus | None:
    if value is None or value == "":
        return None
    try:
        return TaskStatus.parse(value)
    except ValueError as exc:
        raise InvalidField("status", str(exc)) from None


def group_filter(
    q: Annotated[str | None, Query(max_length=200,
                                   description="In key, caption, job or data")] = None,
    job_name: Annotated[str | None, Query(max_length=64)] = None,
    enabled: bool | None = None,
    sort: Annotated[str, Query(description=", ".join(GROUP_SORTS))] = "id",
    order: Literal["asc", "desc"] = "asc",
) -> GroupFilter:
    """The groups filter and order of the query (the first page; the caller sets its page)."""
    return GroupFilter(q, job_name, enabled, sort, order == "desc").checked()


def task_filter(
    status: Annotated[str | None, Query(description="None, Scheduler, Working, Success, Fail")]
    = None,
    group_id: GroupIdFilter = None,
    job_name: Annotated[str | None, Query(max_length=64)] = None,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str | None, Query(description="Planned start at or after (ISO 8601)")]
    = None,
    until: Annotated[str | None, Query(description="Planned start before (ISO 8601)")] = None,
    error: Annotated[str | None, Query(max_length=200,
                                       description="Failed runs whose error contains this")]
    = None,
) -> TaskFilter:
    """The tasks filter of the query, checked (a bad one is a 422 before anything is read)."""
    wanted = TaskFilter(
        status=parse_status(status),
        group_id=group_id,
        job_name=job_name or None,
        client_id=client_id or None,
        since=parse_time("since", since) if since else None,
        until=parse_time("until", until) if until else None,
        error=error or None,
    )
    wanted.conditions()
    return wanted


GroupQuery = Annotated[GroupFilter, Depends(group_filter)]
TaskQuery = Annotated[TaskFilter, Depends(task_filter)]
