"""/api/v1/reports on the real web app and database (SQLite, PostgreSQL, MariaDB): runs per
day overall and of one group in the zone asked for, clients with their counts (departed
ones as offline), bad input in one line naming the field, and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from web_helpers import CLIENT, T0, WebDatabase, add_group, record, register_client, run_once

from fss.domain.clock import ManualClock
from fss.events import ClientLeft

UTC = timezone.utc
# T0 is 2031-03-14 09:26 UTC; 17:30 UTC is already the 15th in Shanghai.
LATE = datetime(2031, 3, 14, 17, 30, tzinfo=UTC)


@pytest.fixture
def web_db(web_db_all: WebDatabase) -> WebDatabase:
    """SQLite, PostgreSQL and MariaDB (tests/web/conftest.py)."""
    return web_db_all


def _arrange(engine: Engine) -> tuple[int, int]:
    """Group a: success at T0, fail at LATE; group b: success at LATE (all on worker-1)."""
    register_client(engine, T0 - timedelta(minutes=1))
    a = add_group(engine, T0 - timedelta(minutes=1), caption="a")
    b = add_group(engine, T0 - timedelta(minutes=1), caption="b")
    run_once(engine, a, T0)
    run_once(engine, a, LATE, success=False, error="boom")
    run_once(engine, b, LATE + timedelta(minutes=1))
    return a, b


def _nonzero(body: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {d["day"]: (d["success"], d["fail"]) for d in body["days"] if d["total"]}


def test_runs_per_day_follow_the_zone_and_the_group(
    web_db: WebDatabase, viewer_client: TestClient, clock: ManualClock
) -> None:
    a, _ = _arrange(web_db.engine)
    clock.set(datetime(2031, 3, 16, 3, tzinfo=UTC))

    utc = viewer_client.get("/api/v1/reports/runs?days=7").json()
    east = viewer_client.get("/api/v1/reports/runs?days=7&tz=Asia/Shanghai").json()
    mine = viewer_client.get(f"/api/v1/reports/runs?days=30&tz=Asia/Shanghai&group_id={a}")

    assert utc["tz"] == "UTC" and len(utc["days"]) == 7 and utc["last_day"] == "2031-03-16"
    assert _nonzero(utc) == {"2031-03-14": (2, 1)}
    assert utc["totals"] == {"success": 2, "fail": 1, "total": 3, "success_rate": 0.6667}
    assert _nonzero(east) == {"2031-03-14": (1, 0), "2031-03-15": (1, 1)}
    assert east["last_day"] == "2031-03-16" and east["from"] == "2031-03-09T16:00:00+00:00"
    assert mine.status_code == 200
    assert _nonzero(mine.json()) == {"2031-03-14": (1, 0), "2031-03-15": (0, 1)}
    assert len(mine.json()["days"]) == 30
    assert mine.json()["group_id"] == a


def test_clients_show_counts_running_and_who_left(
    web_db: WebDatabase, viewer_client: TestClient, clock: ManualClock
) -> None:
    _arrange(web_db.engine)
    register_client(web_db.engine, LATE, client_id="worker-2")
    record(web_db.engine, LATE + timedelta(minutes=5), ClientLeft(CLIENT, LATE, incarnation="a"))
    clock.set(LATE + timedelta(minutes=10))

    body = viewer_client.get("/api/v1/reports/clients?days=7").json()

    rows = {c["id"]: c for c in body["items"]}
    assert set(rows) == {CLIENT, "worker-2"}
    gone = rows[CLIENT]
    assert (gone["state"], gone["processed"], gone["success"], gone["failed"]) == (
        "offline", 3, 2, 1)
    assert gone["left_reason"] == "left" and gone["left_at"].startswith("2031-03-14T17:35")
    assert rows["worker-2"]["state"] == "silent"  # registered, last heartbeat 10 min ago
    assert body["offline_keep_s"] == 24 * 3600

    clock.set(LATE + timedelta(hours=25))  # past the offline window: summed as "earlier"
    later = viewer_client.get("/api/v1/reports/clients?days=7").json()
    assert [c["id"] for c in later["items"]] == ["worker-2"]
    assert later["earlier"] == {"clients": 1, "processed": 3, "success": 2, "failed": 1}


@pytest.mark.parametrize(
    ("query", "field"),
    [("days=0", "days"), ("days=91", "days"), ("days=x", "days"), ("tz=Mars/Base", "tz"),
     ("tz=..%2Fetc", "tz"), ("group_id=0", "group_id")],
)
def test_bad_input_is_one_line_naming_the_field(
    web_db: WebDatabase, viewer_client: TestClient, query: str, field: str
) -> None:
    response = viewer_client.get(f"/api/v1/reports/runs?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == field and "\n" not in body["error"]


def test_an_unknown_group_is_404_and_anonymous_is_401(
    web_db: WebDatabase, viewer_client: TestClient, anon_client: TestClient
) -> None:
    assert viewer_client.get("/api/v1/reports/runs?group_id=999").status_code == 404
    assert anon_client.get("/api/v1/reports/runs").status_code == 401
    assert anon_client.get("/api/v1/reports/clients").status_code == 401


def test_the_openapi_document_has_the_report_endpoints(
    web_db: WebDatabase, viewer_client: TestClient
) -> None:
    paths = viewer_client.get("/api/v1/openapi.json").json()["paths"]
    runs = paths["/api/v1/reports/runs"]["get"]
    assert {p["name"] for p in runs["parameters"]} == {"days", "tz", "group_id"}
    assert "/api/v1/reports/clients" in paths
    assert runs["tags"] == ["reports"]


def test_the_pages_carry_the_report(web_db: WebDatabase, viewer_client: TestClient) -> None:
    group = add_group(web_db.engine, T0)
    page = viewer_client.get("/reports").text
    assert 'aria-current="page">Reports<' in page and "data-run-report" in page
    assert "Days are calendar days in UTC." in page and "/static/report.js" in page
    # How long a client that left stays shown is in the page itself, not filled in later.
    assert '<span id="offline-keep">24 h</span>' in page
    zh = viewer_client.get("/reports", headers={"Accept-Language": "zh-CN"}).text
    assert '<span id="offline-keep">24 小时</span>' in zh
    group_page = viewer_client.get(f"/groups/{group}").text
    assert f'data-group-id="{group}"' in group_page and "data-run-report" in group_page
