"""/api/v1/audit and who a change is recorded as.

Every route that changes something takes `actor: Audited` (an admin, with the address the
request came from) and hands it to the store, which writes the audit entry in the change's
own transaction (fss.store.audit).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from fss.domain.clock import parse_time
from fss.store import audit
from fss.store.audit import ACTIONS, Actor, AuditFilter
from fss.web.auth import Admin, Principal, Viewer, client_address
from fss.web.context import Context
from fss.web.params import MAX_ID

router = APIRouter(prefix="/api/v1", tags=["audit"])

# Principal.method -> audit_event.actor_kind
ACTOR_KINDS = {"session": "session", "basic": "basic", "token": "token", "anonymous": "noauth"}


def actor_of(request: Request, principal: Principal) -> Actor:
    return Actor(principal.name, ACTOR_KINDS[principal.method], client_address(request))


def require_actor(request: Request, principal: Admin) -> Actor:
    """An admin's change, as the audit trail records it."""
    return actor_of(request, principal)


Audited = Annotated[Actor, Depends(require_actor)]
ActionName = Literal[ACTIONS]  # type: ignore[valid-type]


def audit_filter(
    group: str | None,
    since: str | None,
    user: str | None,
    action: str | None,
    before_id: int | None,
    limit: int,
) -> AuditFilter:
    return AuditFilter(
        group=group or None,
        since=None if not since else parse_time("since", since),
        user=user or None,
        action=action or None,
        before_id=before_id,
        limit=limit,
    )


@router.get("/audit", summary="The audit trail: who changed what, newest first")
def list_audit(
    principal: Viewer,
    context: Context,
    group: Annotated[str | None, Query(max_length=128,
                                       description="A group id, or a group key")] = None,
    since: Annotated[str | None, Query(max_length=40,
                                       description="ISO 8601: entries at or after")] = None,
    user: Annotated[str | None, Query(max_length=128,
                                      description="Who: a user, token or OS user name")] = None,
    action: Annotated[ActionName | None, Query(description="One action")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                           description="Entries older than this id (paging)")]
    = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = audit.DEFAULT_PAGE,
) -> dict[str, Any]:
    """Each entry: when (`at`, UTC), who (`actor`; `actor_kind` session, basic, token,
    noauth or cli), from where (`source`: the web client's address, the CLI's host),
    `action`, the group (`group_id`, `subject`: its key or caption), `changes`
    ({field: [before, after]}, secrets masked) and `detail`. `next_before_id`: pass it as
    `before_id` for the next (older) page; null on the last."""
    wanted = audit_filter(group, since, user, action, before_id, limit)
    with context.engine.connect() as conn:
        rows = audit.list_audit(conn, wanted)
    return {
        "items": [r.to_json() for r in rows],
        "next_before_id": rows[-1].id if len(rows) == limit else None,
    }
