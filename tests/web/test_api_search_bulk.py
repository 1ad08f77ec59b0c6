"""Search, bulk actions, CSV exports, cannot-run badges and the health glance on the real web
app and database (SQLite, PostgreSQL, MariaDB): what each finds and refuses, that a bulk
change applies each group whole or not at all and names why one failed, that CSV cells are
quoted and never start a formula, and that the endpoints are in the OpenAPI document."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from web_helpers import (
    T0,
    WebDatabase,
    add_group,
    counts,
    group_row,
    register_client,
    run_once,
)

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.status import TaskStatus
from fss.store.clients import heartbeat_node
from fss.store.dead_letters import add_dead_letters, new_dead_letter
from fss.store.tables import audit_event, task
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_tokens, parse_users

DEPLOY_TOKEN = "deploy-token-0123456789"


@pytest.fixture
def web_db(web_db_all: WebDatabase) -> WebDatabase:
    """SQLite, PostgreSQL and MariaDB (tests/web/conftest.py)."""
    return web_db_all


def _groups(db: WebDatabase) -> dict[str, int]:
    """Four groups: keyed, data with an address, a formula caption, and a tagged one."""
    before = T0  # planned now: none is late yet
    return {
        "nightly": add_group(db.engine, before, "nightly report", "reports.nightly",
                             data={"to": "ops@example.com"}),
        "import": add_group(db.engine, before, "import orders", "orders.import"),
        "formula": add_group(db.engine, before, "=HYPERLINK(\"x\")", "demo.job",
                             data={"note": "-2+3"}),
        "tagged": add_group(db.engine, before, "gpu render", "demo.job", client_tag="gpu"),
    }


# ---- search -------------------------------------------------------------------------------


def test_search_finds_a_task_by_id_groups_by_text_and_runs_by_error(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    ids = _groups(web_db)
    register_client(web_db.engine, T0 - timedelta(seconds=1))
    failed = run_once(web_db.engine, ids["import"], T0, success=False,
                      error="Traceback (most recent call last):\nValueError: Disk FULL on /data")
    ok_run = run_once(web_db.engine, ids["formula"], T0 + timedelta(seconds=5))

    by_id = admin_client.get(f"/api/v1/search?q=%23{ok_run}").json()
    assert by_id["task"]["id"] == ok_run and by_id["task"]["status"] == "Success"

    # Data text, any case: only the group whose data holds the address.
    data = admin_client.get("/api/v1/search?q=OPS@EXAMPLE").json()
    assert [g["id"] for g in data["groups"]["items"]] == [ids["nightly"]]
    assert data["task"] is None and data["runs"]["items"] == []
    # Job text; and the groups list pages the same matches.
    job = admin_client.get("/api/v1/search", params={"q": "demo.job", "limit": 1}).json()
    assert job["groups"]["total"] == 2 and len(job["groups"]["items"]) == 1
    listed = admin_client.get("/api/v1/groups", params={"q": "demo.job", "offset": 1}).json()
    assert [g["id"] for g in listed["items"]] == [ids["tagged"]]

    runs = admin_client.get("/api/v1/search?q=disk full").json()["runs"]["items"]
    assert [r["id"] for r in runs] == [failed]
    assert runs[0]["caption"] == "import orders"
    # A success never matches an error search, whatever its text.
    assert admin_client.get("/api/v1/search/runs?q=zzz").json() == {"items": [],
                                                                      "next_cursor": None}


def test_runs_by_error_text_page_by_cursor(admin_client: TestClient, web_db: WebDatabase) -> None:
    group = add_group(web_db.engine, T0 - timedelta(minutes=5))
    register_client(web_db.engine, T0 - timedelta(seconds=1))
    failed = [run_once(web_db.engine, group, T0 + timedelta(seconds=i), success=False,
                       error=f"timeout after {i} s") for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        page = admin_client.get("/api/v1/search/runs",
                                params={"q": "TIMEOUT", "limit": 2, **({"cursor": cursor}
                                                                       if cursor else {})})
        assert page.status_code == 200, page.text
        seen += [r["id"] for r in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(failed, reverse=True)
    via_tasks = admin_client.get("/api/v1/tasks", params={"error": "after 3 s"}).json()
    assert [t["id"] for t in via_tasks["items"]] == [failed[3]]


@pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
def test_search_refuses_bad_input_naming_the_field(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    for path, field in [("/api/v1/search?q=", "q"), (f"/api/v1/search?q={'x' * 201}", "q"),
                        ("/api/v1/search?q=a&limit=0", "limit"),
                        ("/api/v1/search/runs?q=a&cursor=nope", "cursor")]:
        response = admin_client.get(path)
        assert response.status_code == 422, path
        assert response.json()["field"] == field, response.text


# ---- bulk ---------------------------------------------------------------------------------


def test_bulk_disable_applies_each_group_and_names_the_one_that_failed(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    ids = _groups(web_db)
    targets = [ids["nightly"], 999_999, ids["import"], ids["formula"]]
    response = admin_client.post("/api/v1/groups/bulk", json={
        "action": "disable", "ids": targets, "note": "db maintenance"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ok"], body["failed"]) == (3, 1)
    assert [r["ok"] for r in body["results"]] == [True, False, True, True]
    assert body["results"][1] == {"id": 999_999, "ok": False,
                                  "error": "task group 999999 does not exist"}
    for group_id in (ids["nightly"], ids["import"], ids["formula"]):
        row = group_row(web_db.engine, group_id)
        assert row is not None
        assert (bool(row["is_enable"]), row["disabled_note"]) == (False, "db maintenance")
        with web_db.engine.connect() as conn:  # the waiting task withdrawn with it
            waiting = conn.execute(sa.select(sa.func.count()).select_from(task).where(
                task.c.task_group_id == group_id, task.c.status == TaskStatus.NONE)).scalar()
        assert waiting == 0
    assert bool(group_row(web_db.engine, ids["tagged"])["is_enable"])  # type: ignore[index]
    # One audit entry per group changed, by the admin, as the single routes write them.
    with web_db.engine.connect() as conn:
        audited = conn.execute(sa.select(audit_event.c.task_group_id, audit_event.c.actor)
                               .where(audit_event.c.action == "group.disable")).all()
    assert sorted(g for g, _ in audited) == sorted(
        [ids["nightly"], ids["import"], ids["formula"]])
    assert {a for _, a in audited} == {"admin"}


def test_bulk_run_enable_and_delete(admin_client: TestClient, web_db: WebDatabase) -> None:
    ids = _groups(web_db)
    chosen = [ids["nightly"], ids["import"]]
    run = admin_client.post("/api/v1/groups/bulk", json={"action": "run", "ids": chosen}).json()
    assert run["ok"] == 2 and all(isinstance(r["task_id"], int) for r in run["results"])
    admin_client.post("/api/v1/groups/bulk", json={"action": "disable", "ids": chosen})
    enabled = admin_client.post("/api/v1/groups/bulk", json={"action": "enable", "ids": chosen})
    assert enabled.json()["ok"] == 2
    assert all(group_row(web_db.engine, g)["is_enable"] for g in chosen)  # type: ignore[index]
    deleted = admin_client.post("/api/v1/groups/bulk", json={"action": "delete", "ids": chosen})
    assert deleted.json()["ok"] == 2
    assert all(group_row(web_db.engine, g) is None for g in chosen)
    with web_db.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(task).where(
            task.c.task_group_id.in_(chosen))).scalar()
    assert left == 0
    again = admin_client.post("/api/v1/groups/bulk", json={"action": "delete", "ids": chosen})
    assert again.json()["failed"] == 2


def test_bulk_writes_an_audit_entry_per_group_naming_the_token_that_called(
    web_db: WebDatabase, clock: ManualClock
) -> None:
    """Each action of a bulk request by a named API token: one entry per group changed, with
    the token's name, its kind and address, as the single-group routes write them; the id
    that fails writes none."""
    ids = _groups(web_db)
    chosen = [ids["nightly"], ids["import"]]
    web = WebSettings(users=parse_users("admin:pw"),
                      tokens=parse_tokens(f"deploy:{DEPLOY_TOKEN}:admin"))
    settings = Settings(database_url=web_db.url, broker_url="memory://")
    with TestClient(create_web_app(settings, web, clock)) as client:
        for action in ("run", "disable", "enable", "delete"):
            answer = client.post("/api/v1/groups/bulk",
                                 headers={"Authorization": f"Bearer {DEPLOY_TOKEN}"},
                                 json={"action": action, "ids": [*chosen, 999_999]})
            assert answer.status_code == 200, answer.text
            assert (answer.json()["ok"], answer.json()["failed"]) == (2, 1), answer.text
    with web_db.engine.connect() as conn:
        rows = conn.execute(sa.select(
            audit_event.c.action, audit_event.c.task_group_id, audit_event.c.actor,
            audit_event.c.actor_kind, audit_event.c.source).order_by(audit_event.c.id)).all()
    assert [(r.action, r.task_group_id) for r in rows] == [
        (f"group.{action}", group) for action in ("run", "disable", "enable", "delete")
        for group in chosen]
    assert {(r.actor, r.actor_kind, r.source) for r in rows} == {("deploy", "token", "testclient")}


@pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("body", "field"), [
    ({"action": "disable", "ids": []}, "ids"),
    ({"action": "disable", "ids": [1, 1]}, "ids"),
    ({"action": "disable", "ids": [0]}, "ids.0"),
    ({"action": "pause", "ids": [1]}, "action"),
    ({"action": "enable", "ids": [1], "note": "x"}, "note"),
    ({"action": "disable", "ids": [1], "note": "x" * 513}, "disabled_note"),
    ({"action": "disable", "ids": [1], "until": "2000-01-01T00:00:00Z"}, "until"),
    ({"action": "disable", "ids": list(range(1, 502))}, "ids"),
    ({"action": "disable", "ids": ["1"]}, "ids.0"),
])
def test_a_bad_bulk_request_changes_nothing_and_names_the_field(
    admin_client: TestClient, web_db: WebDatabase, body: dict[str, Any], field: str
) -> None:
    group = add_group(web_db.engine, T0)
    body = {**body, "ids": [group if i == 1 else i for i in body["ids"]]}
    before = counts(web_db.engine)
    response = admin_client.post("/api/v1/groups/bulk", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.text
    assert counts(web_db.engine) == before
    assert bool(group_row(web_db.engine, group)["is_enable"])  # type: ignore[index]


@pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
def test_bulk_needs_an_admin_and_a_sessions_csrf_token(
    viewer_client: TestClient, anon_client: TestClient, web_db: WebDatabase
) -> None:
    group = add_group(web_db.engine, T0)
    body = {"action": "disable", "ids": [group]}
    assert viewer_client.post("/api/v1/groups/bulk", json=body).status_code == 403
    signed_in = anon_client.post("/login", data={"username": "admin", "password": "pw",
                                                 "next": "/"}, follow_redirects=False)
    assert signed_in.status_code == 303, signed_in.text
    csrf = anon_client.get("/api/v1/me").json()["csrf_token"]
    assert anon_client.post("/api/v1/groups/bulk", json=body).status_code == 403
    assert bool(group_row(web_db.engine, group)["is_enable"])  # type: ignore[index]
    ok = anon_client.post("/api/v1/groups/bulk", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["ok"] == 1


# ---- CSV ----------------------------------------------------------------------------------


def _csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.reader(io.StringIO(response.text)))


def test_groups_csv_has_the_filters_quotes_and_no_formulas(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    ids = _groups(web_db)
    rows = _csv(admin_client.get("/api/v1/export/groups.csv?sort=caption&order=desc"))
    header, lines = rows[0], rows[1:]
    assert header[:4] == ["id", "key", "caption", "job_name"]
    assert [int(r[0]) for r in lines] == [ids["nightly"], ids["import"], ids["tagged"],
                                          ids["formula"]]  # caption descending
    formula = next(r for r in lines if int(r[0]) == ids["formula"])
    assert formula[2] == "'=HYPERLINK(\"x\")"  # quoted by csv, defused by the apostrophe
    assert formula[header.index("data")] == '{"note": "-2+3"}'
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in lines for cell in r)
    assert '"\'=HYPERLINK(""x"")"' in admin_client.get("/api/v1/export/groups.csv").text

    filtered = _csv(admin_client.get("/api/v1/export/groups.csv", params={"q": "demo.job"}))
    assert sorted(int(r[0]) for r in filtered[1:]) == sorted([ids["formula"], ids["tagged"]])


def test_tasks_csv_follows_the_tasks_filters(admin_client: TestClient, web_db: WebDatabase) -> None:
    group = add_group(web_db.engine, T0 - timedelta(minutes=5))
    register_client(web_db.engine, T0 - timedelta(seconds=1))
    bad = run_once(web_db.engine, group, T0, success=False, error="@SUM(1) broke\nsecond line")
    run_once(web_db.engine, group, T0 + timedelta(seconds=3))
    rows = _csv(admin_client.get("/api/v1/export/tasks.csv", params={"status": "Fail"}))
    header = rows[0]
    assert [int(r[0]) for r in rows[1:]] == [bad]
    assert rows[1][header.index("error")] == "'@SUM(1) broke\nsecond line"
    everything = _csv(admin_client.get("/api/v1/export/tasks.csv"))
    assert len(everything) - 1 == 3  # two runs and the waiting task
    capped = _csv(admin_client.get("/api/v1/export/tasks.csv", params={"rows": 1}))
    assert len(capped) == 2
    assert admin_client.get("/api/v1/export/tasks.csv?status=Nope").json()["field"] == "status"


# ---- cannot run, glance ---------------------------------------------------------------------


def test_groups_say_why_they_cannot_run(admin_client: TestClient, web_db: WebDatabase) -> None:
    ids = _groups(web_db)
    admin_client.post(f"/api/v1/groups/{ids['import']}/disable", json={"note": "paused"})
    reasons = {g["id"]: [r["reason"] for r in g["cannot_run"]]
               for g in admin_client.get("/api/v1/groups").json()["items"]}
    assert reasons == {ids["nightly"]: ["unserved"], ids["import"]: ["disabled"],
                       ids["formula"]: ["unserved"], ids["tagged"]: ["unserved"]}
    # A live client serving demo.job (no tags): demo.job groups run, the gpu one does not.
    register_client(web_db.engine, T0 - timedelta(seconds=1))
    reasons = {g["id"]: [r["reason"] for r in g["cannot_run"]]
               for g in admin_client.get("/api/v1/groups").json()["items"]}
    assert reasons[ids["formula"]] == [] and reasons[ids["tagged"]] == ["unserved"]
    one = admin_client.get(f"/api/v1/groups/{ids['tagged']}").json()["cannot_run"]
    assert one == [{"reason": "unserved", "detail": "no live client serves demo.job with tag gpu",
                    "code": "unserved_tag", "params": {"job": "demo.job", "tag": "gpu"}}]


def test_glance_names_each_problem_with_where_to_look(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    def checks() -> dict[str, dict[str, Any]]:
        body = admin_client.get("/api/v1/health/glance").json()
        return {p["check"]: p for p in body["problems"]}

    assert set(checks()) == {"scheduler"}
    assert checks()["scheduler"]["href"] == "/nodes"

    heartbeat_node(web_db.engine, "node-a", T0, T0 - timedelta(minutes=1), "claim loop stuck")
    group = add_group(web_db.engine, T0 - timedelta(hours=2), "hourly", "ghost.job",
                      interval_ms=60_000)
    with web_db.engine.begin() as conn:
        add_dead_letters(conn, "fss.events", [new_dead_letter("not JSON", b"\x00")], T0)
    found = checks()
    assert set(found) == {"node_unhealthy", "job_unserved", "group_late", "dead_letters"}
    assert "claim loop stuck" in found["node_unhealthy"]["detail"]
    assert "'ghost.job'" in found["job_unserved"]["detail"]
    assert found["job_unserved"]["group_ids"] == [group]
    assert found["group_late"]["href"] == f"/groups/{group}"
    assert found["dead_letters"]["detail"].startswith("1 event message set aside")
    body = admin_client.get("/api/v1/health/glance").json()
    assert body["healthy"] is False and body["alerts_open"] == 0


@pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)
def test_the_new_endpoints_are_in_the_openapi_document(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    paths = admin_client.get("/api/v1/openapi.json").json()["paths"]
    for path in ["/api/v1/search", "/api/v1/search/runs", "/api/v1/export/groups.csv",
                 "/api/v1/export/tasks.csv", "/api/v1/health/glance"]:
        assert {"session": []} in paths[path]["get"]["security"], path
    bulk = paths["/api/v1/groups/bulk"]["post"]
    assert {"session": [], "csrf": []} in bulk["security"]
    assert "error" in {p["name"] for p in paths["/api/v1/tasks"]["get"]["parameters"]}
