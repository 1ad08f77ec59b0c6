"""The Audit page: the trail rendered on the server (rows, filters and paging in HTML, every
label in the template), read from the same query as GET /api/v1/audit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Connection

from fss.errors import InvalidField
from fss.store import audit
from fss.store.audit import ACTIONS, AuditRow
from fss.store.tables import task_group
from fss.web.api_audit import audit_filter
from fss.web.auth import Viewer
from fss.web.context import Context
from fss.web.i18n import translate
from fss.web.i18n.errors import ERROR_TEXTS, describe_field
from fss.web.params import MAX_ID
from fss.web.templating import page_locale, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
# A value longer than this shows its start, the whole in a <details> below it.
SHORT_VALUE = 80


@dataclass(frozen=True)
class Value:
    """A before or after value as the page shows it: None (empty), or its text."""

    text: str | None

    @property
    def short(self) -> str | None:
        if self.text is None or len(self.text) <= SHORT_VALUE:
            return self.text
        return self.text[: SHORT_VALUE - 1] + "…"

    @property
    def is_long(self) -> bool:
        return self.text is not None and len(self.text) > SHORT_VALUE


def value(raw: Any) -> Value:
    if raw is None:
        return Value(None)
    if isinstance(raw, str):
        return Value(raw)
    return Value(json.dumps(raw, ensure_ascii=False, sort_keys=True))


@dataclass(frozen=True)
class Change:
    field: str
    before: Value
    after: Value


def changes_of(row: AuditRow) -> list[Change]:
    return [Change(name, value(before), value(after))
            for name, (before, after) in row.changes.items()]


def detail_value(name: str, raw: Any) -> Value:
    """A detail as the page shows it: an edit's version pair [2, 3] as `2 → 3` (the version
    before and after the edit), anything else as value() shows it."""
    if name == "version" and isinstance(raw, list) and len(raw) == 2:
        return Value(f"{raw[0]} → {raw[1]}")
    return value(raw)


def details_of(row: AuditRow) -> list[tuple[str, Value]]:
    return [(name, detail_value(name, raw)) for name, raw in row.detail.items()]


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    principal: Viewer,
    context: Context,
    group: Annotated[str, Query(max_length=128)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    user: Annotated[str, Query(max_length=128)] = "",
    action: Annotated[str, Query(max_length=32)] = "",
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    filters = {"group": group, "since": since, "user": user, "action": action}
    error: InvalidField | None = None
    rows: list[AuditRow] = []
    with context.engine.connect() as conn:
        try:
            wanted = audit_filter(group, since, user, action, before_id, PAGE_SIZE)
            rows = audit.list_audit(conn, wanted)
        except InvalidField as exc:
            error = exc
        users = audit.actors(conn)
        zones = group_zones(conn, {row.group_id for row in rows if row.group_id is not None})
    entries = [(row, changes_of(row), details_of(row)) for row in rows]
    older = rows[-1].id if len(rows) == PAGE_SIZE else None
    return render(
        request,
        "audit.html",
        {
            "page": "audit", "entries": entries, "filters": filters, "actions": ACTIONS,
            "users": users, "zones": zones, "error": error,
            "error_text": _error_text(request, error), "older": older,
            "paged": before_id is not None,
            "query": {k: v for k, v in filters.items() if v},
        },
        status_code=400 if error else 200,
    )


def group_zones(conn: Connection, group_ids: set[int]) -> dict[int, str]:
    """The time zone of each listed group that has one: the zone switch's "group" choice
    shows an entry's time in it (a deleted group, or one without a zone: UTC)."""
    if not group_ids:
        return {}
    query = sa.select(task_group.c.id, task_group.c.time_zone).where(
        task_group.c.id.in_(sorted(group_ids)), task_group.c.time_zone.is_not(None))
    return {int(row.id): str(row.time_zone) for row in conn.execute(query)}


def _error_text(request: Request, error: InvalidField | None) -> str:
    """A bad filter in the page's language (the API's error code and params)."""
    if error is None:
        return ""
    code, params = describe_field(error.field, error.reason)
    return translate(page_locale(request), ERROR_TEXTS[code], **params)
