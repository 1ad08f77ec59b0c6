"""The CSV exports take the list endpoints' filters (one FastAPI dependency each,
fss.web.filters): for every filter, the export of a filtered list is the list's rows, in its
order, cell for cell (SQLite, PostgreSQL, MariaDB); and the two have the same filter
parameters, so a filter added to a list is in its export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_helpers import (
    T0,
    WebDatabase,
    add_group,
    dispatch_waiting,
    record,
    register_client,
)

from fss.events import TaskFinished, TaskStarted
from fss.web.api_search import GROUP_COLUMNS, TASK_COLUMNS, csv_cell


@pytest.fixture
def web_db(web_db_all: WebDatabase) -> WebDatabase:
    """SQLite, PostgreSQL and MariaDB (tests/web/conftest.py)."""
    return web_db_all


def _run(db: WebDatabase, group: int, at: Any, client_id: str, error: str | None) -> int:
    task_id, attempt = dispatch_waiting(db.engine, group, at, client_id)
    record(db.engine, at, TaskStarted(task_id=task_id, attempt=attempt, client_id=client_id,
                                      at=at))
    record(db.engine, at, TaskFinished(task_id=task_id, attempt=attempt, client_id=client_id,
                                       success=error is None, run_speed_ms=700, at=at,
                                       error=error))
    return task_id


def _arrange(db: WebDatabase) -> dict[str, int]:
    """Nine groups over three jobs (two disabled, data with text in it) and runs on two
    clients, some failed with errors, over two hours; every group keeps a waiting task."""
    ids: dict[str, int] = {}
    for i in range(9):
        job = ["reports.nightly", "orders.import", "demo.job"][i % 3]
        ids[f"g{i}"] = add_group(
            db.engine, T0 - timedelta(minutes=5), f"group {i} {'=SUM(1)' if i == 4 else ''}",
            job, data={"n": i, "to": "ops@example.com" if i % 2 else "dev@example.com"},
            is_enable=i not in (2, 7),
        )
    for client_id in ("worker-1", "worker-2"):
        register_client(db.engine, T0 - timedelta(seconds=1), client_id)
    at = T0
    for n in range(14):
        group = ids[f"g{[0, 1, 3, 4, 5, 6, 8][n % 7]}"]
        error = f"ValueError: disk {'FULL' if n % 2 else 'gone'} run {n}\nTraceback" \
            if n % 3 == 0 else None
        _run(db, group, at, f"worker-{1 + n % 2}", error)
        at += timedelta(minutes=10)
    return ids


def _csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text)))


def _cells(item: dict[str, Any], columns: list[str]) -> list[str]:
    """The list item's cells as the CSV writes them (numbers and text through csv_cell)."""
    values = [item.get("schedule_text") if c == "schedule" else item.get(c) for c in columns]
    return [str(csv_cell(v)) for v in values]


def _group_pages(client: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every group of the list, two at a time (offset paging)."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.get("/api/v1/groups", params={**params, "limit": 2,
                                                     "offset": len(items)})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        if len(items) >= body["total"]:
            assert len(items) == body["total"]
            return items


def _task_pages(client: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every task of the list, three at a time (cursor paging)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/api/v1/tasks", params={**params, "limit": 3,
                                                    **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


GROUP_FILTERS: list[dict[str, Any]] = [
    {},
    {"q": "OPS@example"},
    {"q": "group 4"},
    {"job_name": "orders.import"},
    {"enabled": "false"},
    {"enabled": "true", "sort": "caption", "order": "desc"},
    {"q": "dev@", "job_name": "reports.nightly", "sort": "run_count", "order": "desc"},
    {"sort": "last_run_at"},
    {"q": "nothing matches this"},
]


def test_the_groups_csv_of_a_filtered_list_is_the_lists_rows(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    _arrange(web_db)
    seen_sizes = set()
    for params in GROUP_FILTERS:
        listed = _group_pages(admin_client, params)
        rows = _csv(admin_client.get("/api/v1/export/groups.csv", params=params))
        assert rows[0] == GROUP_COLUMNS
        assert rows[1:] == [_cells(item, GROUP_COLUMNS) for item in listed], params
        seen_sizes.add(len(listed))
    # The filters narrow: not every case is all nine groups (or none).
    assert {0, 9} < seen_sizes and len(seen_sizes) >= 5


def test_the_tasks_csv_of_a_filtered_list_is_the_lists_rows(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    ids = _arrange(web_db)
    filters: list[dict[str, Any]] = [
        {},
        {"status": "Fail"},
        {"status": "Success", "client_id": "worker-2"},
        {"group_id": ids["g1"]},
        {"job_name": "orders.import"},
        {"client_id": "worker-1"},
        {"since": (T0 + timedelta(minutes=30)).isoformat(),
         "until": (T0 + timedelta(minutes=90)).isoformat()},
        {"error": "disk full"},
        {"error": "DISK", "job_name": "reports.nightly"},
        {"status": "None"},
        {"error": "nothing matches this"},
    ]
    seen_sizes = set()
    for params in filters:
        listed = _task_pages(admin_client, params)
        rows = _csv(admin_client.get("/api/v1/export/tasks.csv", params=params))
        assert rows[0] == TASK_COLUMNS
        assert rows[1:] == [_cells(item, TASK_COLUMNS) for item in listed], params
        seen_sizes.add(len(listed))
    assert 0 in seen_sizes and len(seen_sizes) >= 6


def test_a_bad_filter_is_refused_alike_by_the_list_and_its_export(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    for path, export, params, field in [
        ("/api/v1/groups", "/api/v1/export/groups.csv", {"sort": "nope"}, "sort"),
        ("/api/v1/tasks", "/api/v1/export/tasks.csv", {"status": "Nope"}, "status"),
        ("/api/v1/tasks", "/api/v1/export/tasks.csv", {"since": "yesterday"}, "since"),
    ]:
        listed, exported = admin_client.get(path, params=params), \
            admin_client.get(export, params=params)
        assert listed.status_code == exported.status_code == 422
        assert listed.json()["field"] == exported.json()["field"] == field


def _query_names(document: dict[str, Any], path: str) -> set[str]:
    return {p["name"] for p in document["paths"][path]["get"]["parameters"]
            if p["in"] == "query"}


@pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
def test_a_list_and_its_export_take_the_same_filters(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    document = admin_client.get("/api/v1/openapi.json").json()
    groups_list = _query_names(document, "/api/v1/groups")
    groups_csv = _query_names(document, "/api/v1/export/groups.csv")
    assert groups_list - {"limit", "offset"} == groups_csv - {"rows"} == {
        "q", "job_name", "enabled", "sort", "order"}
    tasks_list = _query_names(document, "/api/v1/tasks")
    tasks_csv = _query_names(document, "/api/v1/export/tasks.csv")
    assert tasks_list - {"limit", "cursor"} == tasks_csv - {"rows"} == {
        "status", "group_id", "job_name", "client_id", "since", "until", "error"}
