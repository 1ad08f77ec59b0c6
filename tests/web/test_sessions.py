"""Server-side sessions on every backend: logout ends a session for every copy of its cookie
and on every replica, a changed password ends the user's sessions, expired and unknown
sessions are refused, and the database never holds a usable cookie."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from probe import log_in, probe_app
from servers import migrated_copy
from web_helpers import T0

from fss.domain.clock import ManualClock
from fss.store.engine import create_engine
from fss.store.tables import web_session
from fss.web import WebSettings
from fss.web.auth import SESSION_COOKIE
from fss.web.config import parse_users

USERS = "admin:pw,viewer:pw2:viewer"


@pytest.fixture
def migrated_url(database_url: str) -> Iterator[str]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    engine.dispose()
    yield database_url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def replica(url: str, clock: ManualClock, users: str = USERS) -> TestClient:
    return TestClient(probe_app(url, WebSettings(users=parse_users(users)), clock))


def use_cookie(client: TestClient, cookie: str) -> None:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)


def test_a_cookie_captured_before_logout_is_refused_after_it(
    migrated_url: str, clock: ManualClock
) -> None:
    with replica(migrated_url, clock) as a, replica(migrated_url, clock) as b:
        log_in(a, "admin", "pw")
        captured = a.cookies[SESSION_COOKIE]
        use_cookie(b, captured)
        assert b.get("/api/v1/_probe").status_code == 200

        assert a.post("/logout", follow_redirects=False).status_code == 303
        clock.advance(timedelta(seconds=1))

        assert b.get("/api/v1/_probe").status_code == 401  # another replica, same cookie
        use_cookie(a, captured)
        assert a.get("/api/v1/_probe").status_code == 401
        # Logging out again changes nothing; a new login is a new session.
        assert a.post("/logout", follow_redirects=False).status_code == 303
        a.cookies.clear()
        log_in(a, "admin", "pw")
        assert a.cookies[SESSION_COOKIE] != captured

    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(web_session)).all()
    engine.dispose()
    assert len(rows) == 2
    assert sorted(r.ended_at is None for r in rows) == [False, True]
    # The database holds hashes, never the token a cookie carries.
    assert all(captured.partition(".")[0] not in r.token_hash for r in rows)


def test_a_changed_password_ends_the_users_sessions(
    migrated_url: str, clock: ManualClock
) -> None:
    with replica(migrated_url, clock) as admin, replica(migrated_url, clock) as viewer:
        log_in(admin, "admin", "pw")
        log_in(viewer, "viewer", "pw2")
        admin_cookie = admin.cookies[SESSION_COOKIE]
        viewer_cookie = viewer.cookies[SESSION_COOKIE]

    # Restarted (or another replica) with admin's new password; viewer's is unchanged.
    with replica(migrated_url, clock, "admin:new-pw,viewer:pw2:viewer") as after:
        use_cookie(after, admin_cookie)
        assert after.get("/api/v1/_probe").status_code == 401
        use_cookie(after, viewer_cookie)
        assert after.get("/api/v1/_probe").json()["name"] == "viewer"
    # A user removed from FSS_WEB_USERS is out too.
    with replica(migrated_url, clock, "admin:pw") as removed:
        use_cookie(removed, viewer_cookie)
        assert removed.get("/api/v1/_probe").status_code == 401


def test_an_expired_session_is_refused_on_every_backend(
    migrated_url: str, clock: ManualClock
) -> None:
    with replica(migrated_url, clock) as client:
        log_in(client, "viewer", "pw2")
        clock.advance(timedelta(hours=12))

        assert client.get("/api/v1/_probe").status_code == 401
