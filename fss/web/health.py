"""GET /healthz (the process answers) and GET /readyz (it can serve: database reachable and
migrated to the newest revision, broker reachable). No authentication: probes carry none,
and the answers say nothing but ok or which dependency failed."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu.connection import Connection as BrokerConnection
from sqlalchemy.exc import SQLAlchemyError

from fss.store import migrate
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
