"""The HTML pages: Jinja2 shells that small scripts in static/ fill from the JSON API.

The server renders only the frame (navigation, headings, forms, empty tables); the rows come
from /api/v1 and are kept current in the browser. So a page and the API can never disagree,
and a page view costs one cheap render, whatever the store holds.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from fss.domain.alerts import RULES
from fss.domain.group_spec import MISFIRE_POLICIES
from fss.domain.status import TaskStatus
from fss.store.reports import RANGES
from fss.store.rows import LOG_LEVEL_NAMES
from fss.web import audit_page
from fss.web.auth import Viewer
from fss.web.params import MAX_ID
from fss.web.templating import render

router = APIRouter(include_in_schema=False)
router.include_router(audit_page.router)

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
        {
            "page": "groups", "group_id": group_id, "misfire_policies": MISFIRE_POLICIES,
            "ranges": RANGES,
        },
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


@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request, principal: Viewer, q: str = Query("", max_length=200)
) -> HTMLResponse:
    # The script asks /api/v1/search; the box in the header keeps what was asked.
    return render(request, "search.html", {"page": "search", "search_q": q.strip()})


@router.get("/clients", response_class=HTMLResponse)
def clients_page(request: Request, principal: Viewer) -> HTMLResponse:
    return render(request, "clients.html", {"page": "clients"})


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, principal: Viewer) -> HTMLResponse:
    # Range and zone stay in the query string (days, tz); the script reads them there.
    keep_s = int(request.app.state.context.settings.client_offline_keep_s)
    return render(request, "reports.html",
                  {"page": "reports", "ranges": RANGES, "offline_keep_s": keep_s})


@router.get("/nodes", response_class=HTMLResponse)
def nodes_page(request: Request, principal: Viewer) -> HTMLResponse:
    return render(request, "nodes.html", {"page": "nodes"})


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, principal: Viewer) -> HTMLResponse:
    # The filters stay in the query string (state, rule, group); the script reads them there.
    return render(request, "alerts.html", {"page": "alerts", "rules": RULES})


# Before /alerts/{alert_id}: "targets" is no alert id.
@router.get("/alerts/targets", response_class=HTMLResponse)
def alert_targets_page(request: Request, principal: Viewer) -> HTMLResponse:
    return render(request, "alert_targets.html", {"page": "alerts", "rules": RULES})


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(
    request: Request, principal: Viewer, alert_id: int = Path(ge=1, le=MAX_ID)
) -> HTMLResponse:
    return render(request, "alert.html", {"page": "alerts", "alert_id": alert_id, "rules": RULES})
