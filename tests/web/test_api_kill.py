"""POST /api/v1/tasks/{id}/kill on the real web app and database: who may kill, CSRF, and the
plain answers when there is nothing to kill or nobody kills it. The kill of a run on a real
worker is in tests/e2e/test_time_limits.py (the same endpoint, a real fss worker)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from probe import log_in, probe_app
from web_helpers import T0, WebDatabase, add_group, dispatch_waiting, register_client, start

from fss import kills
from fss.domain.clock import ManualClock
from fss.store.tables import run_log, task
from fss.web.config import WebSettings

# How long a kill waits here for its worker's answer: nobody answers on the app's memory://
# broker, so each such kill waited all of fss.kills.REPLY_TIMEOUT_S (3 s) for the same 409.
REPLY_WAIT_S = 0.2


@pytest.fixture
def short_reply_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kills, "REPLY_TIMEOUT_S", REPLY_WAIT_S)


def running_task(web_db: WebDatabase) -> int:
    register_client(web_db.engine, T0)
    group_id = add_group(web_db.engine, T0)
    task_id, attempt = dispatch_waiting(web_db.engine, group_id, T0)
    start(web_db.engine, task_id, attempt, T0)
    return task_id


def test_only_an_admin_may_kill(
    viewer_client: TestClient, anon_client: TestClient, web_db: WebDatabase
) -> None:
    task_id = running_task(web_db)
    assert viewer_client.post(f"/api/v1/tasks/{task_id}/kill").status_code == 403
    assert anon_client.post(f"/api/v1/tasks/{task_id}/kill").status_code == 401


def test_a_session_kill_needs_the_csrf_token(
    web_db: WebDatabase, web_settings: WebSettings, clock: ManualClock, short_reply_wait: None
) -> None:
    task_id = running_task(web_db)
    with TestClient(probe_app(web_db.url, web_settings, clock)) as client:
        csrf = log_in(client, "admin", "pw")
        response = client.post(f"/api/v1/tasks/{task_id}/kill")
        wrong = client.post(f"/api/v1/tasks/{task_id}/kill", headers={"X-CSRF-Token": "x" + csrf})
        right = client.post(f"/api/v1/tasks/{task_id}/kill", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 403 and wrong.status_code == 403
    assert response.json()["error"].startswith("csrf_token: ")
    assert right.status_code == 409  # past the CSRF check: no worker answers here


def test_given_a_task_not_running_then_409_says_so_and_404_for_none(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    group_id = add_group(web_db.engine, T0)
    with web_db.engine.connect() as conn:
        waiting = conn.execute(task.select().where(task.c.task_group_id == group_id)).one()
    response = admin_client.post(f"/api/v1/tasks/{waiting.id}/kill")
    assert response.status_code == 409
    assert response.json()["error"] == (
        f"task {waiting.id} is not running (status None); nothing to kill")
    assert admin_client.post("/api/v1/tasks/987654/kill").status_code == 404


def test_given_a_worker_that_does_not_answer_then_409_and_the_run_log_says_so(
    admin_client: TestClient, web_db: WebDatabase, short_reply_wait: None
) -> None:
    task_id = running_task(web_db)  # its client "worker-1" is no process at all
    response = admin_client.post(f"/api/v1/tasks/{task_id}/kill")
    assert response.status_code == 409
    assert f"did not answer within {REPLY_WAIT_S:g} s" in response.json()["error"]
    with web_db.engine.connect() as conn:
        row = conn.execute(task.select().where(task.c.id == task_id)).one()
        lines = list(conn.execute(run_log.select().where(run_log.c.task_id == task_id)))
    assert row.kill_requested_at is None
    assert any("kill requested by admin (web), not done" in line.content for line in lines)
