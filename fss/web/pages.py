"""The HTML pages: Jinja2 shells that small scripts in static/ fill from the JSON API.

The server renders only the frame (navigation, headings, forms, empty tables); the rows come
from /api/v1 and are kept current in the browser. So a page and the API can never disagree,
and a page view costs one cheap render, whatever the store holds.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from fss.domain.group_spec import MISFIRE_POLICIES
from fss.domain.status import TaskStatus
from fss.store.rows import LOG_LEVEL_NAMES
from fss.web.auth import Viewer
from fss.web.params import MAX_ID
from fss.web.templating import render

router = APIRouter(include_in_schema=False)

STATUS_LABELS = [status.label for status in TaskStatus]


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, principal: Viewer) -> HTMLResponse:
    return render(request, "overview.html", {"page": "overview", "statuses": STATUS_LABELS})


@router.get("/groups", response_class=HTMLResponse)
def groups_page(request: Request, principal: Viewer) -> HTMLResponse:
    return render(
        request, "groups.html", {"page": "groups", "misfire_policies": MISFIRE_POLICIES}
    )


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(
    request: Request, principal: Viewer, group_id: int = Path(ge=1, le=MAX_ID)
) -> HTMLResponse:
    return render(
        request,
        "group.html",
        {"page": "groups", "group_id": group_id, "misfire_policies": MISFIRE_POLICIES},
    )


@router.get("/tasks", response_class=HTMLResponse)
def tasks_page(request: Request, principal: Viewer) -> HTMLResponse:
    # The filters stay in the query string (bookmarkable); the script reads them from there.
    return render(request, "tasks.html", {"page": "tasks", "statuses": STATUS_LABELS})


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(
    request: Request, principal: Viewer, task_id: int = Path(ge=1, le=MAX_ID)
) -> HTMLResponse:
    levels = sorted(LOG_LEVEL_NAMES.items())
    return render(request, "task.html", {"page": "tasks", "task_id": task_id, "levels": levels})


@router.get("/clients", response_class=HTMLResponse)
def clients_page(request: Request, principal: Viewer) -> HTMLResponse:
    return render(request, "clients.html", {"page": "clients"})


@router.get("/nodes", response_class=HTMLResponse)
def nodes_page(request: Request, principal: Viewer) -> HTMLResponse:
    return render(request, "nodes.html", {"page": "nodes"})
