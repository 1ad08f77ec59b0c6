"""/api/v1/groups and /api/v1/schedule/preview: task groups, with the CLI's validation.

A body goes through exactly what `fss group add` / `edit` run (GroupSpec(...).validated(),
then fss.store.groups), so the API accepts and refuses what the CLI does, with the same
messages; pydantic only checks the shape (known fields, JSON types) first.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from fss.domain.clock import parse_time
from fss.domain.group_spec import OVERLAP_POLICIES, POLICY_DEFAULTS, ROUTES, GroupSpec
from fss.domain.preview import first_run, next_fire_times, preview_schedule
from fss.errors import InvalidField
from fss.store import backfills
from fss.store import groups as store
from fss.store.health import blocked_reasons
from fss.store.rows import GroupRow
from fss.store.views import (
    DEFAULT_GROUP_PAGE,
    MAX_GROUP_PAGE,
    group_runs,
    group_view,
    search_groups,
)
from fss.web.api_audit import Audited
from fss.web.auth import Viewer
from fss.web.context import Context, WebContext
from fss.web.filters import GroupQuery
from fss.web.i18n import localized
from fss.web.params import GroupId

router = APIRouter(prefix="/api/v1", tags=["groups"])

# A group's body is at most a 64 KiB data object and a few short fields: anything far larger
# is refused before it is parsed.
MAX_BODY_BYTES = 1024 * 1024
MAX_PREVIEW = 20
OVERLAP = Literal[OVERLAP_POLICIES]  # type: ignore[valid-type]
ROUTE = Literal[ROUTES]  # type: ignore[valid-type]


def limit_body(request: Request) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise InvalidField("body", f"larger than {MAX_BODY_BYTES} bytes")


BodyLimit = Depends(limit_body)


class GroupFields(BaseModel):
    """What may be set on a group; names as in `fss group add` and its --json."""

    model_config = ConfigDict(extra="forbid", strict=True)

    caption: str | None = Field(None, description="Display name, up to 64 characters.")
    job_name: str | None = Field(None, description="The @job name a worker registers.")
    interval_ms: int | None = Field(None, description="Run every N milliseconds (fixed rate).")
    cron: str | None = Field(None, description="Cron, 5 fields or 6 with seconds first.")
    job_sets_next: bool | None = Field(None, description="The job sets its next time.")
    time_zone: str | None = Field(None, description="IANA zone of the cron, e.g. Europe/Berlin.")
    data: dict[str, Any] | None = Field(None, description="JSON object handed to the job.")
    start_at: str | None = Field(None, description="ISO 8601 time of the first run (UTC).")
    is_enable: bool | None = Field(None, description="Enabled (creates the waiting task).")
    timeout_s: int | None = Field(None, description="Fail a run silent this long (seconds).")
    misfire: Literal["run-once", "skip"] | None = Field(None, description="After an outage.")
    key: str | None = Field(None, description="Stable key of a groups file (group apply).")
    # Run policies (README "Run policies"); GroupSpec checks their ranges.
    retries: int | None = Field(None, description="Retries of a failed run, 0..100 [0].")
    retry_delay_ms: int | None = Field(
        None, description="Delay before the first retry, 1..86400000 ms [1000]."
    )
    retry_backoff: float | int | None = Field(
        None, description="Factor of each further retry delay, 1..10 [2]."
    )
    retry_delay_max_ms: int | None = Field(
        None, description="Cap of the retry delay, >= retry_delay_ms (null: none)."
    )
    retry_jitter: bool | None = Field(
        None, description="Wait a random 0..delay (full jitter) [true]."
    )
    max_run_s: int | None = Field(
        None, description="Stop a run still going after this long, 1..604800 s (null: never)."
    )
    overlap: OVERLAP | None = Field(
        None, description="A slot while a run goes on: skip [skip], buffer_one or replace."
    )
    route: ROUTE | None = Field(
        None, description="Which client runs it [round_robin]; broadcast: every client."
    )
    client_tag: str | None = Field(
        None, description="Only clients started with `fss worker --tag` this tag (null: any)."
    )
    on_success: list[str | int] | None = Field(
        None, description="Group keys (strings) or ids (numbers) to run when a run succeeds."
    )
    jitter_ms: int | None = Field(
        None, description="Push each planned start later by 0..N ms, 0..3600000 [0]."
    )
    alert_targets: list[str] | None = Field(
        None, description="Alert targets (names) this group's alerts go to, at most 20 "
        "([] or null: the default targets)."
    )
    alert_rules: list[str] | None = Field(
        None, description="Alert rules on for this group (run_failed, time_limit, hung, "
        "group_late, job_unserved); null: every rule on globally, []: no alerts."
    )
    late_after_s: int | None = Field(
        None, description="Late (group_late) this many seconds after a planned run without "
        "success, 1..31622400 (null: one period plus the grace)."
    )
    disabled_note: str | None = Field(
        None, description="Why the group is disabled (with is_enable false), up to 512."
    )
    enable_at: str | None = Field(
        None, description="ISO 8601 time when a disabled group enables itself."
    )


class NewGroup(GroupFields):
    caption: str = Field(description="Display name, up to 64 characters.")
    job_name: str = Field(description="The @job name a worker registers.")


class GroupChanges(GroupFields):
    """Only the fields given change; `null` clears time_zone or timeout_s. `version` (or an
    If-Match header with the ETag) names the version the change was made from: when the
    group has changed since, nothing is written and the answer is 409."""

    version: int | None = Field(
        None, ge=1, description="The group's version this edit starts from (see ETag)."
    )


# Fields whose null means "clear it"; any other field given as null is refused.
CLEARABLE = frozenset(
    {
        "time_zone", "timeout_s", "interval_ms", "cron", "retry_delay_max_ms", "max_run_s",
        "client_tag", "on_success", "alert_targets", "alert_rules", "late_after_s",
        "disabled_note", "enable_at",
    }
)
POLICY_FIELDS = (*POLICY_DEFAULTS, "disabled_note")


def _start_at(value: str | None) -> datetime | None:
    return _time("start_at", value)


def _time(name: str, value: str | None) -> datetime | None:
    return None if value is None else parse_time(name, value)


def spec_from(body: NewGroup) -> GroupSpec:
    return GroupSpec(
        caption=body.caption,
        job_name=body.job_name,
        interval_ms=body.interval_ms,
        cron=body.cron,
        job_sets_next=bool(body.job_sets_next),
        time_zone=body.time_zone,
        data=body.data if body.data is not None else {},
        start_at=_start_at(body.start_at),
        is_enable=True if body.is_enable is None else body.is_enable,
        timeout_s=body.timeout_s,
        misfire=body.misfire or "run-once",
        enable_at=_time("enable_at", body.enable_at),
        **{name: getattr(body, name) for name in POLICY_FIELDS
           if getattr(body, name) is not None},
    )


def changes_from(body: GroupChanges) -> dict[str, Any]:
    """The fields the body sets, as fss.store.groups.edit_group takes them."""
    given = {name: getattr(body, name) for name in body.model_fields_set if name != "version"}
    for name, value in given.items():
        if value is None and name not in CLEARABLE:
            raise InvalidField(name, "must not be null")
    if "start_at" in given:
        given["start_at"] = _start_at(given["start_at"])
    if "enable_at" in given:
        given["enable_at"] = _time("enable_at", given["enable_at"])
    if "on_success" in given:
        given["on_success"] = tuple(given["on_success"] or ())
    if "alert_targets" in given:
        given["alert_targets"] = tuple(given["alert_targets"] or ())
    if given.get("alert_rules") is not None:
        given["alert_rules"] = tuple(given["alert_rules"])
    return given


@router.get("/groups", summary="Task groups, filtered and sorted")
def list_groups(
    principal: Viewer,
    context: Context,
    filtered: GroupQuery,
    limit: Annotated[int, Query(ge=1, le=MAX_GROUP_PAGE,
                                description="Page size (a page, not all groups)")]
    = DEFAULT_GROUP_PAGE,
    offset: Annotated[int, Query(ge=0, description="Groups to skip, in the sort order")] = 0,
) -> dict[str, Any]:
    """One page of the groups matching the filters (sorted in SQL, ties broken by id) and
    `total`, how many match in all. A page, not the whole table: 1,000 groups in one answer
    cost 130-260 ms (10,000: seconds); the groups page asks for more with "Load more"."""
    wanted = replace(filtered, limit=limit, offset=offset)
    with context.engine.connect() as conn:
        views, total = search_groups(conn, wanted)
        blocked = cannot_run(conn, context, [v.group for v in views])
    return {"items": [localized(v.to_json()) | {"cannot_run": blocked.get(v.group.id, [])}
                      for v in views],
            "total": total}


@router.post("/groups", status_code=201, summary="Create a task group",
             dependencies=[BodyLimit])
def create_group(body: NewGroup, actor: Audited, context: Context) -> dict[str, Any]:
    spec = spec_from(body).validated()
    group_id = store.add_group(context.engine, spec, context.clock.now(), key=body.key,
                               actor=actor)
    return _group_json(context, group_id)


@router.get("/groups/{group_id}", summary="One task group (its version as the ETag)")
def get_group(
    group_id: GroupId, principal: Viewer, context: Context, response: Response
) -> dict[str, Any]:
    body = _group_json(context, group_id)
    response.headers["ETag"] = etag(body["version"])
    return body


def etag(version: int) -> str:
    return f'"{version}"'


def version_from(if_match: str | None, body: GroupChanges) -> int | None:
    """The version an edit starts from: If-Match (an ETag of GET) or the body's `version`."""
    header = None
    if if_match is not None and if_match.strip() != "*":
        text = if_match.strip().removeprefix("W/").strip('"')
        if not text.isdigit():
            raise InvalidField("If-Match", 'must be an ETag of this API, like "3"')
        header = int(text)
    if header is not None and body.version is not None and header != body.version:
        raise InvalidField("version", "differs from the If-Match header")
    return header if header is not None else body.version


@router.patch(
    "/groups/{group_id}",
    summary="Change a task group",
    dependencies=[BodyLimit],
    responses={409: {"description": "The group changed since `version` / If-Match"}},
)
def edit_group(
    group_id: GroupId,
    body: GroupChanges,
    actor: Audited,
    context: Context,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """Only the fields given change (one guarded UPDATE that bumps `version`). With a version
    (If-Match or `version`) a stale edit writes nothing and answers 409 with the group as it
    is now (`current`), so a client can show what changed meanwhile."""
    changes = changes_from(body)
    expected = version_from(if_match, body)
    if not changes:
        raise InvalidField("body", "nothing to change; give at least one field")
    try:
        store.edit_group(context.engine, group_id, changes, context.clock.now(), expected, actor)
    except store.GroupChanged as exc:
        current = _group_json(context, group_id)
        return JSONResponse(
            {"error": str(exc), "field": "version", "version": current["version"],
             "current": current},
            status_code=409,
            headers={"ETag": etag(current["version"])},
        )
    body_now = _group_json(context, group_id)
    return JSONResponse(body_now, headers={"ETag": etag(body_now["version"])})


@router.delete("/groups/{group_id}", status_code=204, summary="Delete a group, its tasks, logs")
def delete_group(group_id: GroupId, actor: Audited, context: Context) -> Response:
    store.delete_group(context.engine, group_id, context.clock.now(), actor)
    return Response(status_code=204)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    data: dict[str, Any] | None = Field(
        None, description="ctx.data for this run only; the group's data stays unless the job "
        "changes it (validated as the group's data)."
    )


@router.post("/groups/{group_id}/run", summary="Run now", dependencies=[BodyLimit])
def run_group(
    group_id: GroupId, actor: Audited, context: Context, body: RunRequest | None = None
) -> dict[str, int]:
    """An optional body {"data": {...}} gives this run its own data."""
    data = None if body is None else body.data
    return {"task_id": store.run_now(context.engine, group_id, context.clock.now(), data, actor)}


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    from_: str = Field(alias="from", description="ISO 8601: the window's first moment.")
    to: str = Field(description="ISO 8601: the window's last moment, not later than now.")


@router.post("/groups/{group_id}/backfill", status_code=201, summary="Backfill a past window",
             dependencies=[BodyLimit])
def backfill_group(
    group_id: GroupId, actor: Audited, context: Context, body: BackfillRequest
) -> dict[str, Any]:
    """Run the group's slots in [from, to] one at a time, in order, between its regular runs
    (as `fss group backfill`); 422 naming the field for a bad window (at most 10,000 slots)
    or while the group has an unfinished backfill. `started`: its first slot runs now."""
    row = backfills.create_backfill(
        context.engine, group_id, parse_time("from", body.from_), parse_time("to", body.to),
        context.clock.now(), actor=actor,
    )
    return row.to_json() | {"started": row.started}


@router.delete("/groups/{group_id}/backfill", summary="Cancel the unfinished backfill")
def cancel_backfill(group_id: GroupId, actor: Audited, context: Context) -> dict[str, Any]:
    return backfills.cancel_backfill(
        context.engine, group_id, context.clock.now(), actor
    ).to_json()


@router.post("/groups/{group_id}/enable", summary="Enable (creates the waiting task)")
def enable_group(group_id: GroupId, actor: Audited, context: Context) -> dict[str, Any]:
    store.set_enabled(context.engine, group_id, True, context.clock.now(), actor=actor)
    return _group_json(context, group_id)


class DisableRequest(BaseModel):
    # The example is what Swagger UI's "Try it out" sends as is: a valid body, not "string".
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"example": {"note": "database maintenance", "until": None}},
    )

    note: str | None = Field(None, description="Why, up to 512 characters (disabled_note).")
    until: str | None = Field(
        None, description="ISO 8601 time when the group enables itself (enable_at)."
    )


@router.post("/groups/{group_id}/disable", summary="Disable (withdraws the waiting task)",
             dependencies=[BodyLimit])
def disable_group(
    group_id: GroupId, actor: Audited, context: Context, body: DisableRequest | None = None
) -> dict[str, Any]:
    """An optional body gives a note (shown wherever the group shows) and `until`, when the
    group enables itself again; enabling clears both."""
    wanted = body or DisableRequest(note=None, until=None)
    store.set_enabled(
        context.engine, group_id, False, context.clock.now(),
        note=wanted.note, until=_time("until", wanted.until), actor=actor, until_field="until",
    )
    return _group_json(context, group_id)


@router.get("/groups/{group_id}/runs", summary="Newest finished runs, oldest first")
def list_runs(
    group_id: GroupId,
    principal: Viewer,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    with context.engine.connect() as conn:
        return {"items": group_runs(conn, group_id, limit)}


def _group_json(context: Context, group_id: int) -> dict[str, Any]:
    with context.engine.connect() as conn:
        view = group_view(conn, group_id)
        blocked = cannot_run(conn, context, [view.group])
        return localized(view.to_json()) | {"cannot_run": blocked.get(group_id, [])}


def cannot_run(
    conn: Connection, context: WebContext, groups: list[GroupRow]
) -> dict[int, list[dict[str, str]]]:
    """`cannot_run` of each group: why it cannot run now ({reason, detail}: disabled,
    unserved (no live client for its job and tag), late); [] when it can."""
    now = context.clock.now()
    settings = context.settings
    return blocked_reasons(
        conn, groups, now, now - timedelta(seconds=settings.client_timeout_s),
        timedelta(seconds=settings.alert_late_grace_s),
    )


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    interval_ms: int | None = None
    cron: str | None = None
    time_zone: str | None = None
    start_at: str | None = Field(None, description="Preview from this time instead of now.")
    count: int = Field(5, ge=1, le=MAX_PREVIEW)


@router.post("/schedule/preview", tags=["groups"], summary="Next fire times of a schedule",
             dependencies=[BodyLimit])
def preview(body: PreviewRequest, principal: Viewer, context: Context) -> dict[str, Any]:
    """The times `fss group next --cron/--interval-ms` prints; reads nothing, writes nothing."""
    schedule = preview_schedule(body.cron, body.interval_ms, body.time_zone)
    since = _start_at(body.start_at) or context.clock.now()
    return {
        "schedule": schedule.describe(),
        "time_zone": schedule.time_zone,
        "next": next_fire_times(schedule, first_run(schedule, since), body.count),
    }
