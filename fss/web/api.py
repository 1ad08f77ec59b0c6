"""The JSON API under /api/v1: what the pages show and do, for scripts too.

Field names are those of `fss ... --json` (fss.store.rows to_json()); reads need a viewer,
writes an admin. Groups live in api_groups, tasks and logs in api_tasks, the live log tail
in live; this module has the overview, clients, nodes and dead letters.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from fss.naming import EVENTS_QUEUE, validate_client_id
from fss.store.clients import ClientNotFound, admit_client, kick_client
from fss.store.dead_letters import list_dead_letters
from fss.store.views import (
    client_views,
    count_live_clients,
    latest_failures,
    node_views,
    runs_per_minute,
    tasks_by_status,
)
from fss.web import api_audit, api_groups, api_tasks, live
from fss.web.api_audit import Audited
from fss.web.auth import Viewer
from fss.web.context import Context, WebContext

router = APIRouter()
api = APIRouter(prefix="/api/v1")


class Me(BaseModel):
    name: str
    role: str
    can_change: bool
    csrf_token: str


@api.get("/me", tags=["session"], summary="Who is asking", response_model=Me)
def me(principal: Viewer) -> Me:
    return Me(
        name=principal.name,
        role=principal.role.value,
        can_change=principal.can_change,
        csrf_token=principal.csrf,
    )


def _alive_since(context: WebContext, now: datetime) -> datetime:
    return now - timedelta(seconds=context.settings.client_timeout_s)


@api.get("/overview", tags=["overview"], summary="Everything the overview page shows")
def overview(principal: Viewer, context: Context) -> dict[str, Any]:
    now = context.clock.now()
    alive_since = _alive_since(context, now)
    with context.engine.connect() as conn:
        body: dict[str, Any] = {
            "tasks_by_status": tasks_by_status(conn),
            "runs_per_minute": runs_per_minute(conn, now),
            "clients_online": count_live_clients(conn, alive_since),
            "nodes": [n.to_json(now) for n in node_views(conn, now, alive_since)],
            "latest_failures": latest_failures(conn),
        }
        views = client_views(conn, alive_since)
        queues = {c.client.id: c.client.queue for c in views}
    # Online but taking no new runs (kicked, draining): the card said "1 online" beside a
    # banner saying no live client serves any job.
    body["clients_not_taking_runs"] = sum(1 for v in views if v.alive and v.state != "ready")
    depths = context.queue_depths.depths([EVENTS_QUEUE, *queues.values()])
    body["event_queue_depth"] = depths[EVENTS_QUEUE]
    body["client_queue_depths"] = {cid: depths[queue] for cid, queue in queues.items()}
    body["broker"] = context.queue_depths.state()
    body["now"] = now.isoformat()
    return body


@api.get("/clients", tags=["clients"], summary="Registered clients with their running tasks")
def clients(principal: Viewer, context: Context) -> dict[str, Any]:
    now = context.clock.now()
    with context.engine.connect() as conn:
        views = client_views(conn, _alive_since(context, now))
    depths = context.queue_depths.depths(v.client.queue for v in views)
    return {
        "items": [v.to_json(now, depths[v.client.queue]) for v in views],
        "broker": context.queue_depths.state(),
    }


def _client_json(context: WebContext, client_id: str) -> dict[str, Any]:
    now = context.clock.now()
    with context.engine.connect() as conn:
        views = client_views(conn, _alive_since(context, now))
    view = next((v for v in views if v.client.id == client_id), None)
    if view is None:  # unregistered meanwhile
        raise ClientNotFound(client_id)
    return view.to_json(now, context.queue_depths.depth(view.client.queue))


@api.post("/clients/{client_id}/kick", tags=["clients"], summary="Dispatch nothing more to it")
def kick(client_id: str, actor: Audited, context: Context) -> dict[str, Any]:
    """Its running tasks go on; it gets no new ones until admitted again or restarted."""
    validate_client_id(client_id, "client_id")
    kick_client(context.engine, client_id, actor.name, context.clock.now(), actor)
    return _client_json(context, client_id)


@api.post("/clients/{client_id}/admit", tags=["clients"], summary="Lift a kick")
def admit(client_id: str, actor: Audited, context: Context) -> dict[str, Any]:
    validate_client_id(client_id, "client_id")
    admit_client(context.engine, client_id, context.clock.now(), actor)
    return _client_json(context, client_id)


@api.get("/nodes", tags=["nodes"], summary="Scheduler nodes, the supervisor, their claims")
def nodes(principal: Viewer, context: Context) -> dict[str, Any]:
    now = context.clock.now()
    with context.engine.connect() as conn:
        views = node_views(conn, now, _alive_since(context, now))
    return {"items": [v.to_json(now) for v in views]}


@api.get("/dead-letters", tags=["dead letters"], summary="Events the recorder set aside")
def dead_letters(
    principal: Viewer, context: Context, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    with context.engine.connect() as conn:
        rows = list_dead_letters(conn, limit)
    return {"items": [r.to_json() for r in rows]}


router.include_router(api)
router.include_router(api_groups.router)
router.include_router(api_audit.router)
router.include_router(api_tasks.router)
router.include_router(live.router)
