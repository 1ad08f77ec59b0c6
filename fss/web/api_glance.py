"""GET /api/v1/health/glance: the checks of `fss health` as the overview's banner shows them.

One answer, always 200, naming each problem with where to look: the database down or not
migrated, the broker down, no live scheduler node, a node unhealthy, a job no live client
serves, groups late, dead letters, an alert target that keeps failing. It answers fast with
either dependency down: the broker is asked through the web's QueueDepths (one connection
attempt, a failure held a few seconds) and a failed database is not asked again for
DATABASE_HOLD_S, so a page polling every 2 s never piles up waits.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError

from fss.naming import EVENTS_QUEUE
from fss.store.alert_console import TargetTrouble, _span, failing_targets, open_alert_count
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
    """`problems`: one per finding, each `{check, level, detail, code, params, href,
    group_ids}` (`detail` in English; `code` and `params` say it in any language: the texts
    are fss.store.health.PROBLEM_TEXTS); `check`
    is database, schema, broker, scheduler, node_unhealthy, job_unserved, group_late,
    dead_letters or alert_target; `level` fail (runs stop) or warning (runs go on); `href`
    the page to look at. `healthy`: no problem of level fail. Always 200."""
    now = context.clock.now()
    problems: list[Problem] = []
    context.queue_depths.depths([EVENTS_QUEUE])
    broker = context.queue_depths.state()
    if not broker["reachable"]:
        problems.append(Problem("broker", "fail", "broker", {"error": broker["error"]},
                                "/clients"))
    database = _hold(request).check(context)
    alerts_open = None
    if database is not None:
        problems.insert(0, database_problem_of(database))
    else:
        try:
            found, alerts_open = _store_problems(context)
        except SQLAlchemyError as exc:
            found = [Problem("database", "fail", "database",
                             {"error": first_line(getattr(exc, "orig", None) or exc)})]
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
            *unserved_problems(conn, alive_since),
            *late_problems(conn, now, grace),
            *dead_letter_problems(conn),
        ]
        problems.extend(target_problem(trouble) for trouble in failing_targets(conn, now))
        return problems, open_alert_count(conn)


_SCHEMA = re.compile(r"^database: at revision (?P<current>\S+), needs (?P<head>\S+) \(")
_UNREACHABLE = re.compile(r"^database: unreachable \((?P<error>.*)\)$", re.S)


def database_problem_of(text: str) -> Problem:
    """fss.web.health's line about the database as a problem with a code (its English kept
    as it was: the code's text is that line)."""
    schema = _SCHEMA.match(text)
    if schema is not None:
        return Problem("schema", "fail", "schema", schema.groupdict())
    down = _UNREACHABLE.match(text)
    if down is not None:
        return Problem("database", "fail", "database_unreachable", down.groupdict())
    return Problem("database", "fail", "database", {"error": text.removeprefix("database: ")})


def target_problem(trouble: TargetTrouble) -> Problem:
    """An alert target failing, as TargetTrouble.describe() says it, with a code."""
    window = _span(trouble.window)
    failures = ({"code": "failed_attempts_one", "params": {"window": window}}
                if trouble.failures == 1 else
                {"code": "failed_attempts", "params": {"count": trouble.failures,
                                                       "window": window}})
    given_up: dict[str, Any] | str = ""
    if trouble.gave_up:
        given_up = ({"code": "given_up_one", "params": {}} if trouble.gave_up == 1 else
                    {"code": "given_up", "params": {"count": trouble.gave_up}})
    last: dict[str, Any] | str = ""
    if trouble.last_error:
        last = {"code": "last_error", "params": {"error": trouble.last_error}}
    return Problem("alert_target", "warning", "alert_target",
                   {"name": trouble.name, "failures": failures, "given_up": given_up,
                    "last": last}, "/alerts/targets")
