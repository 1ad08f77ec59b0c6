"""POST /api/v1/groups/{id}/run with an optional body {"data": {...}}: data for this run only."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from web_helpers import T0, WebDatabase, add_group, counts, group_row

from fss.domain.clock import ManualClock
from fss.store.tables import task


def task_of(db: WebDatabase, task_id: int) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(task).where(task.c.id == task_id)).one()


def test_a_run_with_data_keeps_it_on_the_run_and_the_group_data_stays(
    admin_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    group_id = add_group(web_db.engine, clock.now(), start_at=T0 + timedelta(hours=1),
                         data={"cursor": 41})
    response = admin_client.post(f"/api/v1/groups/{group_id}/run",
                                 json={"data": {"cursor": 0, "full": True}})
    assert response.status_code == 200, response.text
    row = task_of(web_db, response.json()["task_id"])
    assert (row.kind, row.start_at) == ("manual", clock.now())
    assert json.loads(row.run_data) == {"cursor": 0, "full": True}
    assert json.loads(group_row(web_db.engine, group_id)["data"]) == {"cursor": 41}
    shown = admin_client.get(f"/api/v1/tasks/{response.json()['task_id']}").json()
    assert (shown["kind"], shown["run_data"]) == ("manual", {"cursor": 0, "full": True})

    # Without a body (or with {}): a manual run on the group's data.
    again = admin_client.post(f"/api/v1/groups/{group_id}/run", json={})
    assert again.status_code == 200, again.text
    assert task_of(web_db, again.json()["task_id"]).run_data is None
    assert admin_client.get(f"/api/v1/tasks/{again.json()['task_id']}").json()["run_data"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": [1, 2]}, "data"),
        ({"data": "text"}, "data"),
        ({"data": {"blob": "x" * 70_000}}, "data"),
        ({"data": {}, "extra": 1}, "extra"),
    ],
    ids=["list", "string", "too_big", "unknown_field"],
)
def test_bad_run_data_is_422_naming_the_field_and_writes_nothing(
    admin_client: TestClient, web_db: WebDatabase, clock: ManualClock, body: Any, field: str
) -> None:
    group_id = add_group(web_db.engine, clock.now(), start_at=T0 + timedelta(hours=1))
    before = counts(web_db.engine), group_row(web_db.engine, group_id)
    with web_db.engine.connect() as conn:
        tasks_before = conn.execute(sa.select(task)).all()
    response = admin_client.post(f"/api/v1/groups/{group_id}/run", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert (counts(web_db.engine), group_row(web_db.engine, group_id)) == before
    with web_db.engine.connect() as conn:
        assert conn.execute(sa.select(task)).all() == tasks_before
