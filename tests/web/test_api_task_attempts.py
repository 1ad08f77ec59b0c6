"""GET /api/v1/tasks/{id} lists every attempt of a retried task, each with its own client,
times and error; the task page has the table the attempts go into."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from web_helpers import T0, WebDatabase, add_group, dispatch_waiting, finish, start

from fss.domain.clock import ManualClock
from fss.store.tables import task_group


def test_a_retried_task_shows_every_attempt(
    viewer_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    engine = web_db.engine
    group_id = add_group(engine, clock.now(), caption="import")
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == group_id)
                     .values(retries=2, retry_delay_ms=1000, retry_jitter=False))
    task_id, attempt = dispatch_waiting(engine, group_id, T0)
    start(engine, task_id, attempt, T0)
    finish(engine, task_id, attempt, T0 + timedelta(seconds=1), success=False,
           error="Traceback (most recent call last):\nValueError: first")

    waiting = viewer_client.get(f"/api/v1/tasks/{task_id}").json()
    assert waiting["status"] == "None"
    assert [(a["attempt"], a["status"]) for a in waiting["attempts"]] == [(1, "Fail")]

    again = T0 + timedelta(seconds=3)
    task_id_2, attempt_2 = dispatch_waiting(engine, group_id, again)
    start(engine, task_id, attempt_2, again)
    running = viewer_client.get(f"/api/v1/tasks/{task_id}").json()
    finish(engine, task_id, attempt_2, again + timedelta(seconds=1))
    done = viewer_client.get(f"/api/v1/tasks/{task_id}").json()

    assert (task_id_2, attempt_2) == (task_id, 2)
    assert [(a["attempt"], a["status"]) for a in running["attempts"]] == [
        (1, "Fail"), (2, "Working")]
    first, second = done["attempts"]
    assert (done["status"], done["attempt"]) == ("Success", 2)
    assert (first["client_id"], first["error"]) == ("worker-1", waiting["error"])
    assert first["run_at"] == T0.isoformat()
    assert first["finish_at"] == (T0 + timedelta(seconds=1)).isoformat()
    assert (second["status"], second["error"], second["run_at"]) == (
        "Success", None, again.isoformat())

    page = viewer_client.get(f"/tasks/{task_id}")
    assert page.status_code == 200 and 'id="attempts"' in page.text
