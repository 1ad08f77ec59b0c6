"""/healthz and /readyz: no login needed; /readyz names the dependency that is not ready."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.store import migrate
from fss.store.engine import create_engine
from fss.web import WebSettings, WebUser, create_web_app

WEB = WebSettings(users=(WebUser("admin", "pw"),))
# Nothing listens on port 1: a broker that cannot be reached, refused at once.
DEAD_BROKER = "redis://127.0.0.1:1/0"


def client_for(database_url: str, broker_url: str) -> TestClient:
    settings = Settings(database_url=database_url, broker_url=broker_url)
    return TestClient(create_web_app(settings, WEB))


def migrated(database_url: str) -> Engine:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
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
