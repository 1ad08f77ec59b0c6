"""POST /api/v1/groups/bulk: enable, disable, run or delete many groups in one request.

Each group goes through the very store call its single-group route makes (set_enabled,
run_now, delete_group: each one guarded transaction, with its audit entry), one group at a
time: a group is changed completely or not at all, and one group's refusal (gone, busy, a
database error) stops nothing for the others. The answer names each group's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from fss.domain.clock import parse_time
from fss.domain.group_spec import validate_disabled_note
from fss.errors import FssError, InvalidField
from fss.store import groups as store
from fss.store.audit import Actor
from fss.web.api_audit import Audited
from fss.web.api_groups import BodyLimit
from fss.web.context import Context, WebContext
from fss.web.params import MAX_ID

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["groups"])

MAX_BULK = 500
BulkAction = Literal["enable", "disable", "run", "delete"]


class BulkRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"example": {"action": "disable", "ids": [3, 4, 5],
                                       "note": "database maintenance"}},
    )

    action: BulkAction = Field(description="enable, disable, run (now) or delete")
    ids: list[int] = Field(min_length=1, max_length=MAX_BULK,
                           description=f"Group ids, 1..{MAX_BULK}, each once")
    note: str | None = Field(None, description="disable: why (the groups' disabled_note).")
    until: str | None = Field(
        None, description="disable: ISO 8601 time when the groups enable themselves."
    )


def _checked(body: BulkRequest) -> list[int]:
    for index, group_id in enumerate(body.ids):
        if not 1 <= group_id <= MAX_ID:
            raise_invalid(f"ids.{index}", f"must be 1..{MAX_ID}")
    if len(set(body.ids)) != len(body.ids):
        raise_invalid("ids", "names a group more than once")
    if body.action != "disable" and (body.note is not None or body.until is not None):
        raise_invalid("note" if body.note is not None else "until", "only with action disable")
    validate_disabled_note(body.note)  # refused here, not once per group
    return body.ids


def raise_invalid(field: str, message: str) -> None:
    raise InvalidField(field, message)


def _action(body: BulkRequest, context: WebContext, actor: Actor) -> Callable[[int], Any]:
    """What is done to one group: the single-group route's store call, with the actor."""
    engine, now = context.engine, context.clock.now()
    until = None if body.until is None else parse_time("until", body.until)
    if until is not None and until <= now:
        raise InvalidField("until", "must be in the future")

    def enable(group_id: int) -> None:
        store.set_enabled(engine, group_id, True, now, actor=actor)

    def disable(group_id: int) -> None:
        store.set_enabled(engine, group_id, False, now, note=body.note, until=until, actor=actor)

    def run(group_id: int) -> dict[str, int]:
        return {"task_id": store.run_now(engine, group_id, now, None, actor)}

    def delete(group_id: int) -> None:
        store.delete_group(engine, group_id, now, actor)

    return {"enable": enable, "disable": disable, "run": run, "delete": delete}[body.action]


@router.post(
    "/groups/bulk",
    summary="Enable, disable, run or delete many groups",
    dependencies=[BodyLimit],
)
def bulk(body: BulkRequest, actor: Audited, context: Context) -> dict[str, Any]:
    """Applies `action` to each group in its own transaction, in the order given. `results`:
    one per id, `{"id", "ok": true}` (run adds `task_id`) or `{"id", "ok": false, "error"}`
    naming why (not found, busy, database error); `ok` and `failed` count them. 200 even
    when some failed; 422 naming the field for a malformed request (nothing applied)."""
    ids = _checked(body)
    apply = _action(body, context, actor)
    results = [_one(apply, group_id) for group_id in ids]
    done = sum(1 for r in results if r["ok"])
    return {"action": body.action, "ok": done, "failed": len(results) - done,
            "results": results}


def _one(apply: Callable[[int], Any], group_id: int) -> dict[str, Any]:
    try:
        extra = apply(group_id)
    except FssError as exc:
        return {"id": group_id, "ok": False, "error": str(exc)}
    except SQLAlchemyError as exc:
        log.warning("bulk change of group %s failed: %s", group_id, exc)
        line = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return {"id": group_id, "ok": False,
                "error": f"database error: {line[0] if line else type(exc).__name__}"}
    return {"id": group_id, "ok": True, **(extra or {})}
