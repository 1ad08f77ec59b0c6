"""/api/v1/me, overview, clients (kick, admit), nodes, dead letters, and the OpenAPI list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from web_helpers import (
    CLIENT,
    T0,
    TOKEN,
    WebDatabase,
    add_group,
    client_row,
    counts,
    dispatch_waiting,
    register_client,
    run_once,
    start,
)

from fss.domain.clock import ManualClock
from fss.scheduler.supervisor import LEASE_NAME
from fss.store.clients import heartbeat_node
from fss.store.dead_letters import add_dead_letters, new_dead_letter
from fss.store.supervision import take_lease
from fss.store.views import SUPERVISOR_LEASE


def test_me(admin_client: TestClient, viewer_client: TestClient, anon_client: TestClient) -> None:
    assert admin_client.get("/api/v1/me").json() == {
        "name": "admin", "role": "admin", "can_change": True, "csrf_token": ""}
    assert viewer_client.get("/api/v1/me").json()["can_change"] is False
    response = anon_client.get("/api/v1/me")
    assert response.status_code == 401 and "error" in response.json()
    bearer = anon_client.get("/api/v1/me", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.json()["role"] == "admin"


def test_overview_counts_what_the_store_holds(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    engine = web_db.engine
    register_client(engine, T0)
    group_id = add_group(engine, T0, caption="<script>x</script>")
    run_once(engine, group_id, T0 - timedelta(minutes=3), success=False, error="E1\nstack")
    run_once(engine, group_id, T0 - timedelta(minutes=3))
    run_once(engine, group_id, T0 - timedelta(minutes=90))  # outside the hour
    heartbeat_node(engine, "node-a", T0, T0)
    take_lease(engine, SUPERVISOR_LEASE, "node-a", T0, timedelta(seconds=10))
    body = viewer_client.get("/api/v1/overview").json()
    assert body["tasks_by_status"] == {"None": 1, "Scheduler": 0, "Working": 0, "Success": 2,
                                       "Fail": 1}
    minutes = body["runs_per_minute"]
    assert len(minutes) == 60 and minutes[-1]["minute"] == "2031-03-14T09:26:00+00:00"
    # Each run finishes one second after it was dispatched (09:23:53 -> 09:23:54).
    busy = [m for m in minutes if m["success"] or m["fail"]]
    assert busy == [{"minute": "2031-03-14T09:23:00+00:00", "success": 1, "fail": 1}]
    assert body["clients_online"] == 1
    [node] = body["nodes"]
    assert (node["id"], node["alive"], node["holds_supervisor"]) == ("node-a", True, True)
    [failure] = body["latest_failures"]
    assert (failure["caption"], failure["error"], failure["group_id"]) == (
        "<script>x</script>", "E1", group_id)
    assert body["event_queue_depth"] == 0
    assert body["client_queue_depths"] == {CLIENT: 0}
    assert body["now"] == T0.isoformat()
    clock.advance(11)
    later = viewer_client.get("/api/v1/overview").json()
    assert later["clients_online"] == 0 and later["nodes"][0]["alive"] is False


def test_supervisor_lease_name_matches_the_scheduler() -> None:
    assert SUPERVISOR_LEASE == LEASE_NAME


def test_clients_show_running_tasks_and_state(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    engine = web_db.engine
    register_client(engine, T0)
    group_id = add_group(engine, T0)
    task_id, attempt = dispatch_waiting(engine, group_id, T0)
    start(engine, task_id, attempt, T0)
    clock.advance(2.5)
    [item] = viewer_client.get("/api/v1/clients").json()["items"]
    assert (item["id"], item["state"], item["running"], item["running_task_ids"]) == (
        CLIENT, "ready", 1, [task_id])
    assert (item["heartbeat_age_s"], item["alive"], item["queue_depth"]) == (2.5, True, 0)
    assert item["job_names"] == ["demo.job"] and item["kick_reason"] is None


def test_operator_kick_holds_until_admit_or_restart(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    engine = web_db.engine
    register_client(engine, T0, pid=100, incarnation="a")
    response = admin_client.post(f"/api/v1/clients/{CLIENT}/kick")
    assert response.status_code == 200, response.text
    assert (response.json()["state"], response.json()["kick_reason"]) == (
        "kicked", "operator: admin")
    # A heartbeat of the same process running nothing does not lift an operator's kick ...
    register_client(engine, T0 + timedelta(seconds=1), pid=100, incarnation="a", active=0)
    assert client_row(engine)["kicked_at"] is not None
    # ... an admit does,
    assert admin_client.post(f"/api/v1/clients/{CLIENT}/admit").json()["state"] == "ready"
    row = client_row(engine)
    assert (row["kicked_at"], row["kick_reason"]) == (None, None)
    # ... and so does a restart of the worker (new incarnation).
    admin_client.post(f"/api/v1/clients/{CLIENT}/kick")
    register_client(engine, T0 + timedelta(seconds=2), pid=100, incarnation="b")
    row = client_row(engine)
    assert (row["kicked_at"], row["kick_reason"]) == (None, None)


def test_hung_kick_still_lifts_when_the_client_runs_nothing(web_db: WebDatabase) -> None:
    engine = web_db.engine
    register_client(engine, T0, active=1)
    from fss.store.supervision import count_hung

    with engine.begin() as conn:
        assert count_hung(conn, CLIENT, 1, T0)
    register_client(engine, T0 + timedelta(seconds=1), active=1)
    assert client_row(engine)["kicked_at"] is not None
    register_client(engine, T0 + timedelta(seconds=2), active=0)
    assert client_row(engine)["kicked_at"] is None


def test_kick_refusals(admin_client: TestClient, viewer_client: TestClient,
                       anon_client: TestClient, web_db: WebDatabase) -> None:
    register_client(web_db.engine, T0)
    before = client_row(web_db.engine)
    for action in ("kick", "admit"):
        assert viewer_client.post(f"/api/v1/clients/{CLIENT}/{action}").status_code == 403
        assert anon_client.post(f"/api/v1/clients/{CLIENT}/{action}").status_code == 401
        missing = admin_client.post(f"/api/v1/clients/nobody/{action}")
        assert (missing.status_code, missing.json()["error"]) == (
            404, "client 'nobody' is not registered")
        bad = admin_client.post(f"/api/v1/clients/a%20b/{action}")
        assert (bad.status_code, bad.json()["field"]) == (422, "client_id")
    assert client_row(web_db.engine) == before
    assert counts(web_db.engine)["client"] == 1


def test_nodes_with_claims(viewer_client: TestClient, web_db: WebDatabase) -> None:
    engine = web_db.engine
    heartbeat_node(engine, "node-a", T0, T0)
    heartbeat_node(engine, "node-b", T0 - timedelta(minutes=5), T0 - timedelta(minutes=9))
    from fss.store.tasks import claim_due

    add_group(engine, T0)
    add_group(engine, T0)
    claimed = claim_due(engine, "node-a", T0, timedelta(seconds=2), timedelta(seconds=30))
    assert len(claimed) == 2
    items = {n["id"]: n for n in viewer_client.get("/api/v1/nodes").json()["items"]}
    assert (items["node-a"]["claimed"], items["node-a"]["alive"]) == (2, True)
    assert (items["node-b"]["claimed"], items["node-b"]["alive"]) == (0, False)
    assert items["node-a"]["holds_supervisor"] is False


def test_dead_letters(viewer_client: TestClient, web_db: WebDatabase) -> None:
    with web_db.engine.begin() as conn:
        add_dead_letters(conn, "fss.events", [new_dead_letter("bad", b"{x"),
                                              new_dead_letter("worse", b"{y")], T0)
    items = viewer_client.get("/api/v1/dead-letters?limit=1").json()["items"]
    assert [(d["reason"], d["body"]) for d in items] == [("worse", "{y")]
    assert viewer_client.get("/api/v1/dead-letters?limit=0").status_code == 422


def test_openapi_lists_every_endpoint(
    viewer_client: TestClient, anon_client: TestClient
) -> None:
    assert anon_client.get("/api/v1/openapi.json").status_code == 401
    assert anon_client.get("/api/docs").status_code == 401
    paths = viewer_client.get("/api/v1/openapi.json").json()["paths"]
    expected = {
        "/api/v1/me", "/api/v1/overview", "/api/v1/groups", "/api/v1/groups/{group_id}",
        "/api/v1/groups/{group_id}/run", "/api/v1/groups/{group_id}/enable",
        "/api/v1/groups/{group_id}/disable", "/api/v1/groups/{group_id}/runs",
        "/api/v1/schedule/preview", "/api/v1/tasks", "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/logs", "/api/v1/tasks/{task_id}/logs/stream",
        "/api/v1/clients", "/api/v1/clients/{client_id}/kick",
        "/api/v1/clients/{client_id}/admit", "/api/v1/nodes", "/api/v1/dead-letters",
    }
    assert expected <= set(paths)
    assert set(paths["/api/v1/groups/{group_id}"]) == {"get", "patch", "delete"}
    assert viewer_client.get("/api/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/groups/9223372036854775808", "group_id"),
        ("DELETE", "/api/v1/groups/-4513418889811284459520", "group_id"),
        ("POST", "/api/v1/groups/233710430864801389346816/enable", "group_id"),
        ("GET", "/api/v1/tasks/18446744073709551617", "task_id"),
        ("GET", "/api/v1/tasks/34531807142022234112/logs", "task_id"),
        ("GET", "/api/v1/tasks/33811942475730922766336/logs/stream", "task_id"),
        ("GET", "/api/v1/tasks?group_id=100000000000000000000000", "group_id"),
        ("GET", "/api/v1/tasks/1/logs?after_id=100000000000000000000000", "after_id"),
    ],
)
def test_ids_beyond_bigint_are_a_422_naming_the_field_not_a_500(
    admin_client: TestClient, method: str, path: str, field: str
) -> None:
    # Found by schemathesis: SQLite cannot bind them (OverflowError).
    response = admin_client.request(method, path)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
