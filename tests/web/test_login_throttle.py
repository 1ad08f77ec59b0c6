"""Refused logins slow down and lock out per user name and per address, on every backend:
the policy (pure), the atomic counter under concurrent wrong logins, the form and HTTP Basic
on the real app with the injectable clock, and the WARNING lines (never a password)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from probe import basic, log_in, probe_app
from servers import migrated_copy
from sqlalchemy.engine import Engine
from web_helpers import T0

from fss.domain import login_throttle
from fss.domain.clock import ManualClock
from fss.domain.login_throttle import FORGET_AFTER, MAX_LOCK, lock_for, lock_schedule
from fss.store import web_sessions
from fss.store.engine import create_engine
from fss.store.tables import login_failure
from fss.web import WebSettings
from fss.web.config import parse_users

USERS = "admin:pw,viewer:pw2:viewer"
SECRET_GUESS = "hunter2-guess"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    migrated = create_engine(database_url)
    yield migrated
    migrated.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def client(engine: Engine, clock: ManualClock) -> Iterator[TestClient]:
    app = probe_app(engine.url.render_as_string(hide_password=False),
                    WebSettings(users=parse_users(USERS)), clock)
    with TestClient(app) as test_client:
        yield test_client


def form(client: TestClient, name: str, password: str) -> int:
    response = client.post("/login", data={"username": name, "password": password},
                           follow_redirects=False)
    return response.status_code


def failures(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        return web_sessions.failures_of(conn, key)


# ---- the policy ---------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=10_000))
def test_locks_grow_with_each_failure_up_to_the_cap(failures: int) -> None:
    assert timedelta(0) <= lock_for(failures) <= MAX_LOCK
    assert lock_for(failures) <= lock_for(failures + 1)
    schedule = lock_schedule(T0)
    assert schedule[min(failures, len(schedule)) - 1] == T0 + lock_for(failures)


def test_the_documented_steps() -> None:
    assert [int(lock_for(n).total_seconds()) for n in range(1, 11)] == [
        0, 1, 2, 4, 60, 120, 240, 480, 900, 900
    ]


# ---- the counter --------------------------------------------------------------------------


def test_concurrent_wrong_logins_are_all_counted(engine: Engine) -> None:
    """Threads on their own connections count failures of one key at the same moment: one
    atomic upsert each, so none is lost (a read-modify-write would lose some)."""
    threads_n, rounds = 8, 5
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                with engine.begin() as conn:
                    web_sessions.record_failure(
                        conn, "user:bob", T0, T0 - FORGET_AFTER, lock_schedule(T0)
                    )
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert failures(engine, "user:bob") == threads_n * rounds
    with engine.connect() as conn:
        assert web_sessions.locked_until(conn, ["user:bob"], T0) == T0 + MAX_LOCK


def test_an_old_failure_is_forgotten_and_counting_starts_again(engine: Engine) -> None:
    for moment in (T0, T0 + timedelta(seconds=5)):
        with engine.begin() as conn:
            web_sessions.record_failure(conn, "ip:10.0.0.9", moment, moment - FORGET_AFTER,
                                        lock_schedule(moment))
    assert failures(engine, "ip:10.0.0.9") == 2
    later = T0 + FORGET_AFTER + timedelta(seconds=6)
    with engine.begin() as conn:
        web_sessions.record_failure(conn, "ip:10.0.0.9", later, later - FORGET_AFTER,
                                    lock_schedule(later))
        until = web_sessions.locked_until(conn, ["ip:10.0.0.9", "user:x"], later)

    assert failures(engine, "ip:10.0.0.9") == 1
    assert until is None  # one failure locks nothing


# ---- the login form and HTTP Basic ---------------------------------------------------------


def test_twenty_quick_wrong_passwords_get_two_checked(
    client: TestClient, engine: Engine
) -> None:
    """The issue: 20 wrong passwords were all checked in 0.09 s."""
    answers = [form(client, "admin", f"{SECRET_GUESS}{n}") for n in range(20)]

    assert answers == [401, 401] + [429] * 18
    assert failures(engine, login_throttle.user_key("admin")) == 2


def test_wrong_passwords_lock_the_user_out_until_the_clock_passes(
    client: TestClient, clock: ManualClock, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "fss.web.auth")
    answers = []
    for wait_s in (0, 0, 1, 2, 4):
        clock.advance(timedelta(seconds=wait_s))
        answers.append(form(client, "admin", SECRET_GUESS))
    too_soon = form(client, "admin", "pw")  # even the right password waits out the lock
    locked = client.post("/login", data={"username": "admin", "password": SECRET_GUESS})

    assert answers == [401] * 5
    assert too_soon == 429
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "60"
    assert "Too many failed logins: try again in 60 s." in locked.text
    assert failures(engine, login_throttle.user_key("admin")) == 5

    clock.advance(timedelta(seconds=59))
    assert form(client, "admin", "pw") == 429
    clock.advance(timedelta(seconds=1))
    log_in(client, "admin", "pw")
    # The user's count is cleared; the address keeps its own (5 failures there).
    assert failures(engine, login_throttle.user_key("admin")) == 0
    assert failures(engine, login_throttle.address_key("testclient")) == 5

    refused = [r.getMessage() for r in caplog.records if r.name == "fss.web.auth"]
    assert len(refused) == 8, refused
    assert all("user 'admin' from testclient" in line for line in refused)
    assert sum("wrong password" in line for line in refused) == 5
    assert sum("is locked until" in line for line in refused) == 3
    assert not any(SECRET_GUESS in r.getMessage() or "'pw'" in r.getMessage()
                   for r in caplog.records)


def test_one_address_guessing_at_many_names_is_locked_out(
    client: TestClient, clock: ManualClock
) -> None:
    answers = []
    for n, wait_s in enumerate((0, 0, 1, 2, 4, 0)):
        clock.advance(timedelta(seconds=wait_s))
        answers.append(form(client, f"guess{n}", SECRET_GUESS))

    assert answers == [401, 401, 401, 401, 401, 429]
    assert form(client, "viewer", "pw2") == 429  # same address


def test_basic_is_throttled_too_but_a_proven_script_keeps_working(
    client: TestClient, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "fss.web.auth")
    assert client.get("/api/v1/_probe", headers=basic("viewer", "pw2")).status_code == 200

    first, second = (client.get("/api/v1/_probe", headers=basic("viewer", SECRET_GUESS))
                     for _ in range(2))
    third = client.get("/api/v1/_probe", headers=basic("viewer", SECRET_GUESS))
    script = client.get("/api/v1/_probe", headers=basic("viewer", "pw2"))

    assert (first.status_code, second.status_code) == (401, 401)
    assert third.status_code == 429
    assert third.headers["retry-after"] == "1"
    assert third.json()["error"].startswith("too many failed logins")
    assert script.status_code == 200  # its password was proven before the guessing began
    assert any("login refused (HTTP Basic): user 'viewer' from testclient: wrong password"
               in r.getMessage() for r in caplog.records)


def test_a_refused_bearer_token_is_logged_without_the_token(
    engine: Engine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "fss.web.auth")
    web = WebSettings(users=parse_users(USERS), token="the-right-token-0123")
    url = engine.url.render_as_string(hide_password=False)
    with TestClient(probe_app(url, web, clock)) as client:
        refused = client.get("/api/v1/_probe",
                             headers={"Authorization": "Bearer a-wrong-token-98765"})

    assert refused.status_code == 401
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bearer token refused from testclient"]


def test_a_successful_login_prunes_old_rows(
    client: TestClient, clock: ManualClock, engine: Engine
) -> None:
    assert form(client, "nobody", SECRET_GUESS) == 401
    clock.advance(FORGET_AFTER + timedelta(seconds=1))
    log_in(client, "viewer", "pw2")

    with engine.connect() as conn:
        keys = conn.execute(sa.select(login_failure.c.key)).scalars().all()
    assert keys == []
