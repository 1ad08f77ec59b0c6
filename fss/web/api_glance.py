"""GET /api/v1/health/glance: the checks of `fss health` as the overview's banner shows them.

One answer, always 200, naming each problem with where to look: the database down or not
migrated, the broker down, no live scheduler node, a node unhealthy, a job no live client
serves, groups late, dead letters, an alert target that keeps failing. It answers fast with
either dependency down: the broker is asked through the web's QueueDepths (one connection
attempt, a failure held a few seconds) and a failed database is not asked again for
DATABASE_HOLD_S, so a page polling every 2 s never piles up waits.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError

from fss.naming import EVENTS_QUEUE
from fss.store.alert_console import failing_targets, open_alert_count
from fss.store.health import (
    Problem,
    dead_letter_problems,
    late_problems,
    node_problems,
    unserved_problems,
)
from fss.web.auth import Viewer
from fss.web.context import Context, WebContext
from fss.web.health import database_problem, first_line

router = APIRouter(prefix="/api/v1", tags=["health"])

DATABASE_HOLD_S = 5.0


class DatabaseHold:
    """The newest database failure, reused for DATABASE_HOLD_S instead of asking again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._at = float("-inf")

    def check(self, context: WebContext) -> str | None:
        with self._lock:
            if self._problem is not None and time.monotonic() - self._at < DATABASE_HOLD_S:
                return self._problem
        problem = database_problem(context)
        with self._lock:
            self._problem, self._at = problem, time.monotonic()
        return problem


def _hold(request: Request) -> DatabaseHold:
    state = request.app.state
    hold = getattr(state, "database_hold", None)
    if hold is None:
        hold = state.database_hold = DatabaseHold()
    return hold


@router.get("/health/glance", summary="What needs a look now (the overview's health banner)")
def glance(request: Request, principal: Viewer, context: Context) -> dict[str, Any]:
    """`problems`: one per finding, each `{check, level, detail, href, group_ids}`; `check`
    is database, schema, broker, scheduler, node_unhealthy, job_unserved, group_late,
    dead_letters or alert_target; `level` fail (runs stop) or warning (runs go on); `href`
    the page to look at. `healthy`: no problem of level fail. Always 200."""
    now = context.clock.now()
    problems: list[Problem] = []
    context.queue_depths.depths([EVENTS_QUEUE])
    broker = context.queue_depths.state()
    if not broker["reachable"]:
        problems.append(Problem("broker", "fail", f"broker unreachable: {broker['error']}",
                                "/clients"))
    database = _hold(request).check(context)
    alerts_open = None
    if database is not None:
        check = "schema" if "revision" in database else "database"
        problems.insert(0, Problem(check, "fail", database))
    else:
        try:
            found, alerts_open = _store_problems(context)
        except SQLAlchemyError as exc:
            found = [Problem("database", "fail",
                             f"database: {first_line(getattr(exc, 'orig', None) or exc)}")]
        problems.extend(found)
    return {
        "checked_at": now.isoformat(),
        "healthy": all(p.level != "fail" for p in problems),
        "alerts_open": alerts_open,
        "problems": [p.to_json() for p in problems],
    }


def _store_problems(context: WebContext) -> tuple[list[Problem], int]:
    now = context.clock.now()
    settings = context.settings
    alive_since = now - timedelta(seconds=settings.client_timeout_s)
    grace = timedelta(seconds=settings.alert_late_grace_s)
    with context.engine.connect() as conn:
        problems = [
            *node_problems(conn, alive_since),
            *unserved_problems(conn, now, alive_since),
            *late_problems(conn, now, grace),
            *dead_letter_problems(conn),
        ]
        problems.extend(
            Problem("alert_target", "warning", trouble.describe(), "/alerts/targets")
            for trouble in failing_targets(conn, now)
        )
        return problems, open_alert_count(conn)
