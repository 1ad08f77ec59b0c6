"""/api/v1/reports: runs ended per day (overall or one group) and per client, for the Reports
page and the group page's report section.

Days are calendar days of the zone asked for (`tz`, an IANA name, default UTC); the
answer repeats the zone so a page can say which one it shows. Counts come from the hourly
run counts (fss.store.reports), which outlive the tasks retention deletes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from fss.store import reports
from fss.store.groups import get_group
from fss.web.auth import Viewer
from fss.web.context import Context
from fss.web.params import MAX_ID

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

Days = Annotated[
    int, Query(ge=1, le=reports.MAX_DAYS, description="How many days back, today included")
]
Zone = Annotated[
    str,
    Query(max_length=reports.MAX_ZONE,
          description="IANA time zone whose calendar days the counts follow"),
]


@router.get("/runs", summary="Runs ended per day, overall or of one group")
def runs(
    principal: Viewer,
    context: Context,
    days: Days = 7,
    tz: Zone = "UTC",
    group_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this group")
    ] = None,
) -> dict[str, Any]:
    """Per day of the last `days` days in `tz`: Success and Fail counts, their total and
    the success rate (null on a day without runs); the totals; how many runs are in flight
    now (dispatched or Working)."""
    window = reports.Window.ending_today(context.clock.now(), days, reports.parse_zone(tz))
    with context.engine.connect() as conn:
        if group_id is not None:
            get_group(conn, group_id)  # 404 for a group that does not exist
        return reports.run_counts(conn, window, group_id).to_json()


@router.get("/clients", summary="Runs per client: processed, failed, running")
def clients(
    principal: Viewer, context: Context, days: Days = 7, tz: Zone = "UTC"
) -> dict[str, Any]:
    """Every registered client and each one that left within FSS_CLIENT_OFFLINE_KEEP_S
    (state `offline`, with when and why it left), with the runs it ended over the last
    `days` days (`processed` = success + failed) and the runs it holds now (`running`).
    Runs of clients that left earlier are summed in `earlier`."""
    now = context.clock.now()
    settings = context.settings
    window = reports.Window.ending_today(now, days, reports.parse_zone(tz))
    alive_since = now - timedelta(seconds=settings.client_timeout_s)
    offline_since = now - timedelta(seconds=settings.client_offline_keep_s)
    with context.engine.connect() as conn:
        body = reports.client_counts(conn, window, alive_since, offline_since).to_json()
    body["offline_keep_s"] = settings.client_offline_keep_s
    return body
