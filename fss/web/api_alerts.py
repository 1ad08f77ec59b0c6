"""/api/v1/alerts, /api/v1/alert-targets and a group's silence: the Alerts pages' API.

Reads need a viewer, writes an admin (with the CSRF token on a session), as everywhere in
the API. A target's secrets (signing secrets, passwords, tokens in webhook URLs) never
leave the server: every answer carries a target's public() view only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from fss.alerting.deliver import send_test
from fss.domain.alert_targets import TargetSpec, target_from_document
from fss.domain.clock import parse_time
from fss.errors import InvalidField
from fss.store import alert_console, alert_targets
from fss.web.api_audit import Audited
from fss.web.api_groups import BodyLimit
from fss.web.auth import Admin, Viewer
from fss.web.context import Context
from fss.web.params import MAX_ID, GroupId

router = APIRouter(prefix="/api/v1", tags=["alerts"])

MAX_ALERT_PAGE = 500
# A silence longer than this is a rule switched off: do that with the group's alert_rules.
MAX_SILENCE = timedelta(days=30)
# The body's keys that are the target's own; every other key is a setting of its kind.
TARGET_KEYS = frozenset({"name", "kind", "config", "default", "rules", "rate_per_min"})

AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="Alert id")]
TargetName = Annotated[str, Path(min_length=1, max_length=64, description="Target name")]


# ---- alerts ------------------------------------------------------------------------------


@router.get("/alerts", summary="Alerts, newest first, one page at a time")
def list_alerts(
    principal: Viewer,
    context: Context,
    state: Annotated[Literal["open", "resolved", "all"], Query()] = "all",
    group: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only this group")] = None,
    rule: Annotated[str | None, Query(max_length=32, description="Only this rule")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERT_PAGE)] = 200,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                        description="Only alerts with a smaller id")] = None,
) -> dict[str, Any]:
    """`next_before` (null on the last page) asks for the next, older page."""
    with context.engine.connect() as conn:
        rows = alert_console.list_alerts(
            conn, state=None if state == "all" else state, group_id=group,
            rule=rule or None, limit=limit, before_id=before,
        )
    items = [row.to_json() for row in rows]
    next_before = items[-1]["id"] if len(items) == limit else None
    return {"items": items, "next_before": next_before}


@router.get("/alerts/{alert_id}", summary="One alert, its notices and every delivery attempt")
def get_alert(alert_id: AlertId, principal: Viewer, context: Context) -> dict[str, Any]:
    with context.engine.connect() as conn:
        detail: dict[str, Any] = alert_console.get_alert(conn, alert_id).to_json()
    return detail


@router.post("/alerts/{alert_id}/ack", summary="Acknowledge: someone is on it")
def ack_alert(
    alert_id: AlertId, principal: Admin, actor: Audited, context: Context
) -> dict[str, Any]:
    """Records who acknowledged it and when (shown on the pages); no reminders follow.
    Acknowledging again keeps the first acknowledgement; a resolved alert answers 409."""
    try:
        alert_console.ack_alert(
            context.engine, alert_id, principal.name, context.clock.now(), actor
        )
    except alert_console.AlertNotOpen as exc:
        raise HTTPException(409, str(exc)) from None
    return get_alert(alert_id, principal, context)


# ---- silences ----------------------------------------------------------------------------


class SilenceRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"example": {"for_s": 3600, "note": "database maintenance"}},
    )

    for_s: int | None = Field(None, description="Silence for this many seconds from now.")
    until: str | None = Field(None, description="Or until this ISO 8601 time.")
    note: str | None = Field(None, description="Why, up to 300 characters.")


def silence_until(body: SilenceRequest, now: datetime) -> datetime:
    if (body.for_s is None) == (body.until is None):
        raise InvalidField("for_s", "give either for_s (seconds) or until (a time)")
    if body.for_s is not None:
        if not 1 <= body.for_s <= MAX_SILENCE.total_seconds():
            raise InvalidField("for_s", f"must be 1..{int(MAX_SILENCE.total_seconds())} seconds")
        return now + timedelta(seconds=body.for_s)
    until = parse_time("until", body.until or "")
    if until <= now:
        raise InvalidField("until", "must be in the future")
    if until - now > MAX_SILENCE:
        raise InvalidField("until", f"at most {MAX_SILENCE.days} days from now")
    return until


@router.post("/groups/{group_id}/silence", summary="Silence a group's alerts for a time",
             dependencies=[BodyLimit])
def silence_group(
    group_id: GroupId, body: SilenceRequest, actor: Audited, context: Context
) -> dict[str, Any]:
    """Its alerts are still raised and shown; their notices are not sent until `until`.
    Silencing again replaces the silence."""
    now = context.clock.now()
    until = silence_until(body, now)
    row = alert_console.silence_group(
        context.engine, group_id, until, actor.name, body.note, now, actor
    )
    return row.to_json()


@router.delete("/groups/{group_id}/silence", status_code=204, summary="Lift a group's silence")
def unsilence_group(group_id: GroupId, actor: Audited, context: Context) -> Response:
    """204 also when the group had no silence: it has none now either way."""
    alert_console.unsilence_group(context.engine, group_id, context.clock.now(), actor)
    return Response(status_code=204)


@router.get("/alert-silences", summary="Groups silenced now")
def list_silences(principal: Viewer, context: Context) -> dict[str, Any]:
    with context.engine.connect() as conn:
        rows = alert_console.list_silences(conn, context.clock.now())
    return {"items": [row.to_json() for row in rows]}


# ---- targets -----------------------------------------------------------------------------


@router.get("/alert-targets", tags=["alert targets"], summary="Where alerts go (no secrets)")
def list_targets(principal: Viewer, context: Context) -> dict[str, Any]:
    """Each target's name, kind, settings without their secrets, default, rules and rate;
    `failing`: targets whose recent deliveries keep failing."""
    now = context.clock.now()
    with context.engine.connect() as conn:
        rows = alert_targets.list_targets(conn)
        failing = alert_console.failing_targets(conn, now)
    return {"items": [row.public() for row in rows], "failing": [f.to_json() for f in failing]}


def spec_from_body(body: dict[str, Any]) -> TargetSpec:
    """The target of a body: its own keys, and its kind's settings under `config` or beside
    them (as a targets file has them)."""
    entry = {key: value for key, value in body.items() if key != "config"}
    config = body.get("config")
    if config is not None and not isinstance(config, dict):
        raise InvalidField("config", "must be an object of the kind's settings")
    for key, value in (config or {}).items():
        if key in TARGET_KEYS:
            raise InvalidField(f"config.{key}", "belongs beside config, not in it")
        if key in entry:
            raise InvalidField(key, "given twice: in config and beside it")
        entry[key] = value
    return target_from_document(entry)


@router.post("/alert-targets", status_code=201, tags=["alert targets"],
             summary="Add an alert target", dependencies=[BodyLimit])
def add_target(
    actor: Audited,
    context: Context,
    body: Annotated[dict[str, Any], Body(examples=[{
        "name": "ops-hook", "kind": "webhook", "config": {"url": "https://example.com/hook"},
        "default": True, "rules": None, "rate_per_min": 20,
    }])],
) -> dict[str, Any]:
    """`{name, kind, config: {...the kind's settings}, default, rules, rate_per_min}` (the
    kind's settings may also stand beside the other keys). 422 naming the field."""
    row = alert_targets.add_target(
        context.engine, spec_from_body(body), context.clock.now(), actor
    )
    return row.public()


@router.delete("/alert-targets/{name}", status_code=204, tags=["alert targets"],
               summary="Remove an alert target")
def remove_target(name: TargetName, actor: Audited, context: Context) -> Response:
    alert_targets.remove_target(context.engine, name, context.clock.now(), actor)
    return Response(status_code=204)


@router.post("/alert-targets/{name}/test", tags=["alert targets"],
             summary="Send a test message; the receiver's answer")
def test_target(name: TargetName, principal: Admin, context: Context) -> dict[str, Any]:
    """Sent now, outside the outbox (nothing is recorded). `ok` false with `error` when the
    receiver refused it or could not be reached; 200 either way (the test ran)."""
    with context.engine.connect() as conn:
        row = alert_targets.get_target(conn, name)
    result = send_test(row.spec, context.clock.now(), context.settings.alert_send_timeout_s)
    return {
        "target": name, "ok": result.ok, "status_code": result.status_code,
        "answer": result.answer, "error": result.error, "duration_ms": result.duration_ms,
    }
