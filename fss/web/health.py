"""GET /healthz (the process answers) and GET /readyz (it can serve: database reachable and
migrated to the newest revision, broker reachable). No authentication: probes carry none,
and the answers say nothing but ok or which dependency failed.

GET /api/v1/health (a viewer's login) adds what needs a look without stopping anything: the
open alerts, and a warning per alert target that keeps failing (as `fss health` says it)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu.connection import Connection as BrokerConnection
from sqlalchemy.exc import SQLAlchemyError

from fss.store import migrate
from fss.store.alert_console import failing_targets, open_alert_count
from fss.web.auth import Viewer
from fss.web.context import Context, WebContext

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database reachable and migrated, broker reachable",
    responses={503: {"description": "what is not ready, in one line"}},
)
def readyz(context: Context) -> JSONResponse:
    # Sync: FastAPI runs it in the thread pool, so a slow database never blocks the loop.
    problems = [p for p in (database_problem(context), broker_problem(context)) if p]
    if problems:
        return JSONResponse({"error": "; ".join(problems)}, status_code=503)
    return JSONResponse({"database": "ok", "broker": "ok"})


@router.get(
    "/api/v1/health",
    summary="Ready, open alerts, and alert targets that keep failing",
    responses={503: {"description": "the database or the broker is not ready"}},
)
def health(principal: Viewer, context: Context) -> JSONResponse:
    """`checks`: one per dependency (database, broker) and `alerts` (how many are open), each
    with `level` ok or fail, plus one `alert_target` check of level warning per target whose
    last attempts within 15 minutes failed (or that gave a delivery up). A warning leaves
    `healthy` true and the status 200; a failed dependency makes them false and 503."""
    database = database_problem(context)
    checks = [_check("database", database), _check("broker", broker_problem(context))]
    alerts_open = None
    if database is None:
        with context.engine.connect() as conn:
            alerts_open = open_alert_count(conn)
            failing = failing_targets(conn, context.clock.now())
        checks.append(_check("alerts", None, f"{alerts_open} open"))
        checks.extend(
            {"check": "alert_target", "level": "warning", "detail": trouble.describe(),
             "target": trouble.to_json()}
            for trouble in failing
        )
    healthy = all(c["level"] != "fail" for c in checks)
    return JSONResponse(
        {"healthy": healthy, "alerts_open": alerts_open, "checks": checks},
        status_code=200 if healthy else 503,
    )


def _check(name: str, problem: str | None, detail: str = "ok") -> dict[str, object]:
    if problem is None:
        return {"check": name, "level": "ok", "detail": detail}
    return {"check": name, "level": "fail", "detail": problem}


def database_problem(context: WebContext) -> str | None:
    try:
        with context.engine.connect() as conn:
            conn.execute(sa.select(1))
        current = migrate.current_revision(context.engine)
    except SQLAlchemyError as exc:
        return f"database: unreachable ({first_line(getattr(exc, 'orig', None) or exc)})"
    head = migrate.head_revision()
    if current != head:
        return f"database: at revision {current or 'none'}, needs {head} (run `fss db upgrade`)"
    return None


def broker_problem(context: WebContext) -> str | None:
    url = context.settings.broker_url
    if url.startswith("memory://"):
        return None  # in-process (`fss dev`): there whenever this process is
    try:
        with BrokerConnection(url, connect_timeout=BROKER_TIMEOUT_S) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_S
            )
    except Exception as exc:
        return f"broker: unreachable ({first_line(exc)})"
    return None


def first_line(exc: object) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
