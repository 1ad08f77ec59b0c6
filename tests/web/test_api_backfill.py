"""POST/DELETE /api/v1/groups/{id}/backfill on the real web app and database: who may, CSRF, the
backfill it stores (the waiting task becomes the first slot), 422 naming the field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from probe import log_in, probe_app
from web_helpers import WebDatabase, add_group

from fss.domain.clock import ManualClock
from fss.store.tables import backfill, task
from fss.web.config import WebSettings

MINUTE = timedelta(minutes=1)


def window(clock: ManualClock, minutes: int = 3) -> dict[str, str]:
    """The last `minutes` whole minutes (slots of an every-minute cron)."""
    end = clock.now().replace(second=0, microsecond=0) - MINUTE
    return {"from": (end - (minutes - 1) * MINUTE).isoformat(), "to": end.isoformat()}


def hourly_cron(web_db: WebDatabase, clock: ManualClock) -> int:
    return add_group(web_db.engine, clock.now(), interval_ms=None, cron="* * * * *")


def rows(web_db: WebDatabase) -> list[Any]:
    with web_db.engine.connect() as conn:
        return conn.execute(sa.select(backfill)).all()


def test_an_admin_backfills_and_cancels(
    admin_client: TestClient, web_db: WebDatabase, clock: ManualClock
) -> None:
    group_id = add_group(web_db.engine, clock.now(), interval_ms=3_600_000,
                         start_at=clock.now().replace(microsecond=0) + timedelta(minutes=30))
    body = {"from": (clock.now() - timedelta(hours=3)).isoformat(),
            "to": (clock.now() - timedelta(minutes=1)).isoformat()}

    response = admin_client.post(f"/api/v1/groups/{group_id}/backfill", json=body)

    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["slots_total"], made["slots_done"], made["started"]) == (3, 0, True)
    with web_db.engine.connect() as conn:
        waiting = conn.execute(sa.select(task).where(task.c.open_group_id == group_id)).one()
    assert waiting.kind == "backfill" and made["next_at"] == waiting.start_at.isoformat()

    cancelled = admin_client.delete(f"/api/v1/groups/{group_id}/backfill")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["done_at"] is not None
    again = admin_client.delete(f"/api/v1/groups/{group_id}/backfill")
    assert again.status_code == 422 and again.json()["field"] == "backfill"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"from": "later", "to": "2020-01-01T00:00:00"}, "from"),
        ({"from": "2031-03-14T09:00:00", "to": "2031-03-14T08:00:00"}, "from"),
        ({"from": "2031-03-14T08:00:00", "to": "2099-01-01T00:00:00"}, "to"),
        ({"from": "2031-03-01T00:00:00", "to": "2031-03-14T00:00:00"}, "to"),  # > 10,000
        ({"from": "2031-03-14T08:00:00"}, "to"),
        ({"from": "2031-03-14T08:00:00", "to": "2031-03-14T08:10:00", "x": 1}, "x"),
    ],
    ids=["not_a_time", "from_after_to", "future", "too_many", "missing_to", "unknown"],
)
def test_a_bad_window_is_422_naming_the_field_and_writes_nothing(
    admin_client: TestClient, web_db: WebDatabase, clock: ManualClock, body: Any, field: str
) -> None:
    group_id = hourly_cron(web_db, clock)

    response = admin_client.post(f"/api/v1/groups/{group_id}/backfill", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.json()
    assert rows(web_db) == []


def test_only_an_admin_with_its_csrf_token_may_backfill(
    viewer_client: TestClient, anon_client: TestClient, web_db: WebDatabase,
    web_settings: WebSettings, clock: ManualClock,
) -> None:
    group_id = hourly_cron(web_db, clock)
    path = f"/api/v1/groups/{group_id}/backfill"
    assert viewer_client.post(path, json=window(clock)).status_code == 403
    assert anon_client.post(path, json=window(clock)).status_code == 401
    with TestClient(probe_app(web_db.url, web_settings, clock)) as client:
        csrf = log_in(client, "admin", "pw")
        without = client.post(path, json=window(clock))
        right = client.post(path, json=window(clock), headers={"X-CSRF-Token": csrf})
    assert without.status_code == 403 and without.json()["error"].startswith("csrf_token: ")
    assert right.status_code == 201, right.text
    assert len(rows(web_db)) == 1
