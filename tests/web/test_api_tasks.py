"""/api/v1/tasks, one task, its logs and the live log stream (SSE)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from web_helpers import (
    T0,
    WebDatabase,
    add_group,
    dispatch_waiting,
    finish,
    log,
    progress,
    register_client,
    run_once,
    start,
)

from fss.domain.clock import ManualClock
from fss.store import groups
from fss.store.tables import run_log


def page(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/tasks", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_search_newest_first_with_cursor_pages(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    group_id = add_group(web_db.engine, clock.now(), caption="<b>pay</b>")
    done = [run_once(web_db.engine, group_id, T0 + timedelta(minutes=i)) for i in range(5)]
    waiting = groups.run_now(web_db.engine, group_id, T0 + timedelta(minutes=9))
    everything = [waiting, *reversed(done)]
    seen: list[int] = []
    cursor = None
    for _ in range(3):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = page(viewer_client, **params)
        seen += [t["id"] for t in body["items"]]
        cursor = body["next_cursor"]
    assert seen == everything and cursor is None
    first = page(viewer_client, limit=1)["items"][0]
    assert first["caption"] == "<b>pay</b>" and first["status"] == "None"
    assert [t["id"] for t in page(viewer_client, status="Success")["items"]] == done[::-1]
    assert page(viewer_client, status="fail")["items"] == []
    assert [t["id"] for t in page(viewer_client, client_id="worker-1", limit=500)["items"]] == (
        done[::-1]
    )
    assert page(viewer_client, group_id=group_id + 1)["items"] == []
    assert page(viewer_client, job_name="demo.job", limit=1)["next_cursor"] is not None
    window = page(viewer_client, since=(T0 + timedelta(minutes=1)).isoformat(),
                  until=(T0 + timedelta(minutes=3)).isoformat())
    assert [t["id"] for t in window["items"]] == [done[2], done[1]]


def test_tasks_carry_their_groups_time_zone_from_one_query(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    """The tasks list shows times in the group's zone: each task carries its group's
    time_zone (None for a group without one), read in the page's one join whatever the page's
    size; the task's own page carries it too."""
    zoned = add_group(web_db.engine, clock.now(), "zoned", cron="30 2 * * *",
                      interval_ms=None, time_zone="Asia/Shanghai")
    plain = add_group(web_db.engine, clock.now(), "plain")
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def listed(limit: int) -> list[dict[str, Any]]:
        statements.clear()
        sa.event.listen(Engine, "before_cursor_execute", count)
        try:
            items: list[dict[str, Any]] = page(viewer_client, limit=limit)["items"]
        finally:
            sa.event.remove(Engine, "before_cursor_execute", count)
        return items

    for minute in range(3):
        run_once(web_db.engine, zoned, T0 + timedelta(minutes=minute))
        run_once(web_db.engine, plain, T0 + timedelta(minutes=minute, seconds=30))
    items = listed(50)
    assert len(items) >= 8
    assert {t["task_group_id"]: t["time_zone"] for t in items} == {
        zoned: "Asia/Shanghai", plain: None}
    reads = [s for s in statements if "task_group" in s]
    assert len(reads) == 1, reads  # one join for the page, no statement per row
    task_id = next(t["id"] for t in items if t["task_group_id"] == zoned)
    detail = viewer_client.get(f"/api/v1/tasks/{task_id}").json()
    assert detail["time_zone"] == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "Done"}, "status"), ({"since": "yesterday"}, "since"),
     ({"until": "2031-13-01"}, "until"), ({"cursor": "garbage!"}, "cursor"),
     ({"cursor": "dDE6LTE"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"),
     ({"group_id": "x"}, "group_id")],
)
def test_search_refuses_bad_parameters(viewer_client: TestClient, params: dict[str, Any],
                                       field: str) -> None:
    response = viewer_client.get("/api/v1/tasks", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_task_detail_timeline_and_logs(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    engine = web_db.engine
    group_id = add_group(engine, clock.now(), caption="import")
    task_id, attempt = dispatch_waiting(engine, group_id, T0)
    body = viewer_client.get(f"/api/v1/tasks/{task_id}").json()
    assert [e["event"] for e in body["timeline"]] == ["created", "dispatched"]
    start(engine, task_id, attempt, T0 + timedelta(seconds=1))
    log(engine, task_id, attempt, group_id, "debug line", T0, level=1)
    log(engine, task_id, attempt, group_id, "<script>alert(1)</script>", T0, level=3)
    finish(engine, task_id, attempt, T0 + timedelta(seconds=2), success=False, error="bad\nx")
    body = viewer_client.get(f"/api/v1/tasks/{task_id}").json()
    assert (body["caption"], body["job_name"], body["status"], body["logs_count"]) == (
        "import", "demo.job", "Fail", 2)
    assert [e["event"] for e in body["timeline"]] == ["created", "dispatched", "started",
                                                      "finished"]
    logs = viewer_client.get(f"/api/v1/tasks/{task_id}/logs").json()
    assert [r["content"] for r in logs["items"]] == ["debug line", "<script>alert(1)</script>"]
    assert logs["last_id"] == logs["items"][-1]["id"]
    warned = viewer_client.get(f"/api/v1/tasks/{task_id}/logs?min_level=3").json()
    assert [r["level"] for r in warned["items"]] == ["Warning"]
    after = viewer_client.get(f"/api/v1/tasks/{task_id}/logs?after_id={logs['last_id']}")
    assert after.json() == {"items": [], "next_cursor": None, "last_id": logs["last_id"]}
    assert viewer_client.get(f"/api/v1/tasks/{task_id}/logs?min_level=9").status_code == 422


def test_unknown_task_is_404(viewer_client: TestClient) -> None:
    for path in ("/api/v1/tasks/77", "/api/v1/tasks/77/logs", "/api/v1/tasks/77/logs/stream"):
        response = viewer_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "task 77 does not exist"


def read_events(lines: Iterator[str], until: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """Server-sent events from the stream's `lines` up to and including the first `until`."""
    events: list[tuple[str, dict[str, Any], str | None]] = []
    name, event_id = "", None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("id: "):
            event_id = line[len("id: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):]), event_id))
            if name == until:
                return events
            name, event_id = "", None
    return events


def test_stream_tails_logs_until_the_task_finishes(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    engine = web_db.engine
    register_client(engine, T0)
    group_id = add_group(engine, T0)
    task_id, attempt = dispatch_waiting(engine, group_id, T0)
    start(engine, task_id, attempt, T0)
    log(engine, task_id, attempt, group_id, "first", T0)

    def worker_goes_on() -> None:
        # Runs once the stream has sent what existed; the stream polls the store for it.
        progress(engine, task_id, attempt, 60, T0)
        log(engine, task_id, attempt, group_id, "second", T0)
        finish(engine, task_id, attempt, T0 + timedelta(seconds=1))

    with viewer_client.stream("GET", f"/api/v1/tasks/{task_id}/logs/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = read_events(lines, until="task")
        assert [(e[0], e[1].get("content", e[1].get("status"))) for e in first] == [
            ("log", "first"), ("task", "Working")]
        writer = threading.Thread(target=worker_goes_on)
        writer.start()
        rest = read_events(lines, until="end")
        writer.join()
    logs = [e for e in rest if e[0] == "log"]
    assert [e[1]["content"] for e in logs] == ["second"]
    assert logs[0][2] == str(logs[0][1]["id"])
    assert rest[-1] == ("end", {"task_id": task_id, "status": "Success"}, None)
    statuses = [(e[1]["status"], e[1]["progress"]) for e in rest if e[0] == "task"]
    assert statuses[-1][0] == "Success"


def test_stream_resumes_after_last_event_id(
    viewer_client: TestClient, web_db: WebDatabase
) -> None:
    engine = web_db.engine
    group_id = add_group(engine, T0)
    task_id, attempt = dispatch_waiting(engine, group_id, T0)
    for text in ("a", "b", "c"):
        log(engine, task_id, attempt, group_id, text, T0, level=2 if text != "b" else 4)
    finish(engine, task_id, attempt, T0)
    url = f"/api/v1/tasks/{task_id}/logs/stream"
    with viewer_client.stream("GET", url) as response:
        everything = read_events(response.iter_lines(), until="end")
    ids = [int(e[2]) for e in everything if e[0] == "log" and e[2]]
    with viewer_client.stream("GET", url, headers={"Last-Event-ID": str(ids[0])}) as response:
        resumed = read_events(response.iter_lines(), until="end")
    assert [e[1]["content"] for e in resumed if e[0] == "log"] == ["b", "c"]
    with viewer_client.stream("GET", f"{url}?min_level=4") as response:
        errors = read_events(response.iter_lines(), until="end")
    assert [e[1]["content"] for e in errors if e[0] == "log"] == ["b"]
    assert viewer_client.get(url, headers={"Last-Event-ID": "x"}).status_code == 422


def test_stream_sends_a_line_committed_late_with_a_lower_id_once(
    viewer_client: TestClient, web_db: WebDatabase
) -> None:
    """Two recorders can commit run_log rows out of id order (PostgreSQL, MySQL): a line
    whose id is below one already streamed still reaches the browser, and only once."""
    engine = web_db.engine
    group_id = add_group(engine, T0)
    task_id, attempt = dispatch_waiting(engine, group_id, T0)
    start(engine, task_id, attempt, T0)

    def insert(log_id: int, content: str) -> None:
        with engine.begin() as conn:
            conn.execute(run_log.insert().values(
                id=log_id, task_id=task_id, task_group_id=group_id, log_level=2,
                content=content, create_at=T0,
            ))

    insert(1000, "committed first")
    url = f"/api/v1/tasks/{task_id}/logs/stream"
    with viewer_client.stream("GET", url) as response:
        lines = response.iter_lines()
        first = read_events(lines, until="log")
        insert(990, "committed late")
        finish(engine, task_id, attempt, T0)
        rest = read_events(lines, until="end")

    contents = [e[1]["content"] for e in first + rest if e[0] == "log"]
    assert contents == ["committed first", "committed late"]


def test_logs_come_in_the_jobs_order_and_a_cursor_pages_through_all(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    engine = web_db.engine
    group_id = add_group(engine, clock.now())
    task_id, _ = dispatch_waiting(engine, group_id, T0)
    seqs = [None, 5, 3, 4, 1, 2, None]  # two flushes landed out of order; two lines from before
    with engine.begin() as conn:
        conn.execute(run_log.insert(), [
            {"task_id": task_id, "task_group_id": group_id, "log_level": 2,
             "content": f"{seq}", "create_at": T0, "seq": seq} for seq in seqs])
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = viewer_client.get(f"/api/v1/tasks/{task_id}/logs", params=params).json()
        seen += [r["content"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["None", "None", "1", "2", "3", "4", "5"]
    bad = viewer_client.get(f"/api/v1/tasks/{task_id}/logs", params={"cursor": "nope"})
    assert (bad.status_code, bad.json()["field"]) == (422, "cursor")
