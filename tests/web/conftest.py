"""Fixtures of the web tests: an fss web app over a real, migrated database, and clients.

* ``web_db`` (parametrized ``sqlite`` / ``postgres``): a migrated database (a copy of the
  session's template, tests/servers.py) shared by the session per backend and emptied before
  each test (an alembic upgrade per test would cost 0.5-0.9 s on PostgreSQL).
  ``web_db.url``, ``web_db.engine`` (to arrange rows and check them).
Constants and arrangers (T0, TOKEN, ADMIN, VIEWER, basic(), WebDatabase, add_group, ...) are
in ``web_helpers`` (``from web_helpers import ...``): with several conftest modules,
``from conftest import`` would be ambiguous.

* ``clock``: a ManualClock at ``T0`` the app reads its time from.
* ``web_settings``: users ``admin:pw`` (admin) and ``viewer:pw2`` (viewer), token ``TOKEN``.
* ``app``: ``create_web_app`` over ``web_db`` with broker ``memory://`` (queue depths 0).
* ``admin_client`` / ``viewer_client`` (HTTP Basic) / ``anon_client`` (no credentials):
  TestClients with the app's lifespan running; closed (engine disposed) after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from servers import SchemaTemplates
from web_helpers import ADMIN, T0, TOKEN, VIEWER, WebDatabase, basic

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.store.engine import create_engine
from fss.store.tables import metadata
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

WEB_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def _web_sqlite(
    tmp_path_factory: pytest.TempPathFactory, schema_templates: SchemaTemplates
) -> Iterator[WebDatabase]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('web')) / 'fss.db'}"
    engine = create_engine(schema_templates.fill(url))
    yield WebDatabase("sqlite", url, engine)
    engine.dispose()


@pytest.fixture(scope="session")
def _web_postgres(
    postgres_server: Any, schema_templates: SchemaTemplates
) -> Iterator[WebDatabase]:
    url = schema_templates.new_database("postgres")
    engine = create_engine(url)
    yield WebDatabase("postgres", url, engine)
    engine.dispose()
    postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def _web_mysql(mysql_server: Any, schema_templates: SchemaTemplates) -> Iterator[WebDatabase]:
    url = schema_templates.new_database("mysql")
    engine = create_engine(url)
    yield WebDatabase("mysql", url, engine)
    engine.dispose()
    mysql_server.drop_database(url)


def _emptied(request: pytest.FixtureRequest) -> WebDatabase:
    db: WebDatabase = request.getfixturevalue(f"_web_{request.param}")
    with db.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    return db


@pytest.fixture(params=WEB_BACKENDS)
def web_db(request: pytest.FixtureRequest) -> WebDatabase:
    """A migrated database of the backend, with every fss table empty."""
    return _emptied(request)


@pytest.fixture(params=[*WEB_BACKENDS, "mysql"])
def web_db_all(request: pytest.FixtureRequest) -> WebDatabase:
    """As web_db, on MariaDB too: a module whose API must answer on every backend names
    its web_db this one."""
    return _emptied(request)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(users=parse_users("admin:pw,viewer:pw2:viewer"), token=TOKEN)


@pytest.fixture
def app(web_db: WebDatabase, web_settings: WebSettings, clock: ManualClock) -> FastAPI:
    settings = Settings(database_url=web_db.url, broker_url="memory://")
    return create_web_app(settings, web_settings, clock)


def _client(app: FastAPI, auth: tuple[str, str] | None) -> Iterator[TestClient]:
    with TestClient(app, headers=basic(auth) if auth else None) as client:
        yield client


@pytest.fixture
def admin_client(app: FastAPI) -> Iterator[TestClient]:
    yield from _client(app, ADMIN)


@pytest.fixture
def viewer_client(app: FastAPI) -> Iterator[TestClient]:
    yield from _client(app, VIEWER)


@pytest.fixture
def anon_client(app: FastAPI) -> Iterator[TestClient]:
    yield from _client(app, None)
