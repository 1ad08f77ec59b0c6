"""/healthz and /readyz: no login needed; /readyz names the dependency that is not ready."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.store import migrate
from fss.store.engine import create_engine
from fss.store.tables import alert, alert_attempt, alert_delivery
from fss.web import WebSettings, WebUser, create_web_app

WEB = WebSettings(users=(WebUser("admin", "pw"),))
# Nothing listens on port 1: a broker that cannot be reached, refused at once.
DEAD_BROKER = "redis://127.0.0.1:1/0"


def client_for(database_url: str, broker_url: str) -> TestClient:
    settings = Settings(database_url=database_url, broker_url=broker_url)
    return TestClient(create_web_app(settings, WEB))


def migrated(database_url: str) -> Engine:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    return engine


def test_healthz_answers_without_credentials(sqlite_url: str) -> None:
    with client_for(sqlite_url, DEAD_BROKER) as client:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_database_is_migrated_and_broker_answers(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    migrated(database_url).dispose()
    with client_for(database_url, fresh_redis_url()) as client:
        response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"database": "ok", "broker": "ok"}


def test_readyz_names_an_unmigrated_database(
    sqlite_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    engine = migrated(sqlite_url)
    migrate.downgrade(engine, "0001")
    engine.dispose()
    with client_for(sqlite_url, fresh_redis_url()) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error.startswith("database: at revision 0001"), error
    assert "fss db upgrade" in error
    assert "\n" not in error


def test_readyz_names_an_unreachable_database(fresh_redis_url: Callable[[], str]) -> None:
    url = "postgresql+psycopg2://postgres@127.0.0.1:1/nothing"
    with client_for(url, fresh_redis_url()) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["error"].startswith("database: unreachable (")


def test_readyz_names_an_unreachable_broker(sqlite_url: str) -> None:
    migrated(sqlite_url).dispose()
    with client_for(sqlite_url, DEAD_BROKER) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error.startswith("broker: unreachable ("), error
    assert "database" not in error


NOW = datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc)
ADMIN_BASIC = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}


def add_failing_target(engine: Engine) -> None:
    """One open and one resolved alert; ops-webhook failed its last 4 attempts (HTTP 502),
    chat failed once and then sent."""
    with engine.begin() as conn:
        conn.execute(alert.insert().values(
            rule="group_late", subject="group:3", open_key="group_late|group:3", state="open",
            title="group 3 late", opened_at=NOW, last_at=NOW,
        ))
        conn.execute(alert.insert().values(
            rule="run_failed", subject="group:3", state="resolved", title="group 3 failed",
            opened_at=NOW, last_at=NOW, resolved_at=NOW,
        ))
        conn.execute(alert_delivery.insert().values(
            id=1, notice_id=1, target_id=1, target_name="ops-webhook", state="pending",
            created_at=NOW, idempotency_key="k1",
        ))
        for minutes, target, outcome in (
            (9, "ops-webhook", "failed"), (7, "ops-webhook", "failed"),
            (5, "ops-webhook", "failed"), (3, "ops-webhook", "failed"),
            (4, "chat", "failed"), (2, "chat", "sent"),
        ):
            conn.execute(alert_attempt.insert().values(
                delivery_id=1, target_name=target, at=NOW - timedelta(minutes=minutes),
                outcome=outcome, status_code=502 if outcome == "failed" else 200,
                answer="Bad Gateway" if outcome == "failed" else "ok", duration_ms=9,
            ))


def test_api_health_counts_open_alerts_and_warns_about_a_failing_target(
    database_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    engine = migrated(database_url)
    add_failing_target(engine)
    engine.dispose()
    settings = Settings(database_url=database_url, broker_url=fresh_redis_url())
    with TestClient(create_web_app(settings, WEB, ManualClock(NOW))) as client:
        anonymous = client.get("/api/v1/health")
        response = client.get("/api/v1/health", headers=ADMIN_BASIC)
        ready = client.get("/readyz")

    assert anonymous.status_code == 401
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["healthy"] is True and body["alerts_open"] == 1
    assert [(c["check"], c["level"]) for c in body["checks"]] == [
        ("database", "ok"), ("broker", "ok"), ("alerts", "ok"), ("alert_target", "warning"),
    ]
    warning = body["checks"][-1]
    assert warning["detail"] == (
        "alert target ops-webhook failing: 4 failed attempts in 15 min, last: HTTP 502 Bad Gateway"
    )
    assert warning["target"]["name"] == "ops-webhook"
    # The probe stays what it was: a failing target is no reason to take a replica out.
    assert ready.status_code == 200 and ready.json() == {"database": "ok", "broker": "ok"}


def test_api_health_is_503_naming_an_unreachable_broker(sqlite_url: str) -> None:
    migrated(sqlite_url).dispose()
    with client_for(sqlite_url, DEAD_BROKER) as client:
        response = client.get("/api/v1/health", headers=ADMIN_BASIC)

    assert response.status_code == 503
    body = response.json()
    assert body["healthy"] is False and body["alerts_open"] == 0
    assert body["checks"][1]["level"] == "fail"
    assert body["checks"][1]["detail"].startswith("broker: unreachable (")
