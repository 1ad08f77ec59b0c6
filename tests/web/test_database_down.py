"""With the database down, every page and API call answers 503 saying so, in the page's
language, naming the database without its password; the login form too. Against a real
PostgreSQL that is stopped (tests/throwaway.py) and a real SQLite file whose directory is
gone, and back: the same session works again once the database answers.

The URL carries a password (trust auth lets any through), so every answer and log line is
checked for it."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from throwaway import ThrowawayPostgres, throwaway_postgres  # noqa: F401 (fixture)
from web_helpers import T0, TOKEN, add_group

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.store.engine import create_engine
from fss.store.migrate import upgrade
from fss.web import create_web_app
from fss.web.auth import SESSION_COOKIE, csrf_of
from fss.web.config import WebSettings, parse_users
from fss.web.database_down import LOG_EVERY_S, Outage, OutageLog, reason_of, shown_url

PASSWORD = "s3cret-Pw-4711"
ENGLISH = {"Accept": "text/html", "Accept-Language": "en-US,en;q=0.9"}
CHINESE = {"Accept": "text/html", "Accept-Language": "zh-CN,zh;q=0.9"}
# Each kind of page: the overview, a list, one item by id, the server-rendered audit trail,
# search, the alert targets. -> the top bar's entry marked as the current page.
PAGES = {
    "/": "/", "/groups": "/groups", "/groups/1": "/groups", "/tasks/7": "/tasks",
    "/clients": "/clients", "/audit?action=group.edit": "/audit", "/search?q=x": None,
    "/alerts/targets": "/alerts", "/reports": "/reports",
}


def with_password(url: str) -> str:
    return url.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)


def make_app(url: str) -> FastAPI:
    web = WebSettings(users=parse_users("admin:pw,viewer:pw2:viewer"), token=TOKEN)
    return create_web_app(Settings(database_url=url, broker_url="memory://"), web,
                          ManualClock(T0))


def sign_in(client: TestClient) -> str:
    """The login form, as a browser; returns the session's CSRF token."""
    response = client.post("/login", data={"username": "admin", "password": "pw", "next": "/"},
                           headers=ENGLISH, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client.cookies[SESSION_COOKIE].partition(".")[0])


def banner(html: str) -> str:
    found = re.search(r'<section class="alert alert-error database-down"[^>]*>(.*?)</section>',
                      html, re.S)
    assert found, html[:2000]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found[1])).strip()


def assert_page_says_database_down(response: object, shown: str, chinese: bool,
                                   nav: str | None) -> None:
    html = response.text  # type: ignore[attr-defined]
    assert response.status_code == 503, html[:500]  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == "5"  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    assert PASSWORD not in html
    text = banner(html)
    assert shown in text
    if chinese:
        assert '<html lang="zh-CN">' in html
        assert text.startswith("数据库无法连接。"), text
        assert f"fss 无法连接其数据库 {shown}\uff1a" in text
        assert "恢复后本页会自动重新加载" in text
    else:
        assert text.startswith("Database unreachable."), text
        assert f"fss cannot reach its database {shown}: " in text
        assert "this page loads again by itself" in text
    # The normal layout: the top bar with its navigation, the page marked in it.
    assert '<nav class="nav"' in html and 'id="zone-switch"' in html
    if nav is not None:
        assert re.search(rf'<a href="{re.escape(nav)}" class="nav-link active" '
                         r'aria-current="page">', html), nav


def assert_api_says_database_down(response: object, shown: str) -> None:
    assert response.status_code == 503, response.text  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == "5"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["code"] == "database"
    assert body["params"]["url"] == shown
    assert body["params"]["reason"]
    assert body["error"].startswith("database unavailable: ")
    assert shown in body["error"]
    assert PASSWORD not in response.text  # type: ignore[attr-defined]


@pytest.fixture
def postgres_app(throwaway_postgres: ThrowawayPostgres) -> Iterator[tuple[FastAPI, str, int]]:  # noqa: F811
    url = with_password(throwaway_postgres.url())
    engine = create_engine(url)
    upgrade(engine)
    group_id = add_group(engine, T0, caption="nightly export")
    engine.dispose()
    yield make_app(url), url, group_id


def test_with_postgres_stopped_every_page_and_api_call_answers_503_and_says_why(
    throwaway_postgres: ThrowawayPostgres,  # noqa: F811
    postgres_app: tuple[FastAPI, str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, url, group_id = postgres_app
    shown = f"postgresql+psycopg2://postgres:***@127.0.0.1:{throwaway_postgres.port}/postgres"
    caplog.set_level(logging.WARNING, logger="fss.web.database")
    with TestClient(app) as browser, TestClient(app) as stranger:
        csrf = sign_in(browser)
        assert browser.get("/groups", headers=ENGLISH).status_code == 200
        assert browser.get(f"/api/v1/groups/{group_id}").status_code == 200

        throwaway_postgres.stop()

        # Signed in (a session needs the database to be checked): each kind of page.
        for path, nav in PAGES.items():
            for chinese, headers in ((False, ENGLISH), (True, CHINESE)):
                response = browser.get(path, headers=headers, follow_redirects=False)
                assert_page_says_database_down(response, shown, chinese, nav)
        # The API: reads and a write, by the session, by HTTP Basic and by the token.
        assert_api_says_database_down(browser.get("/api/v1/overview"), shown)
        assert_api_says_database_down(browser.get("/api/v1/audit"), shown)
        assert_api_says_database_down(
            browser.post(f"/api/v1/groups/{group_id}/run", headers={"X-CSRF-Token": csrf}),
            shown)
        assert_api_says_database_down(stranger.get("/api/v1/groups", auth=("admin", "pw")),
                                      shown)
        assert_api_says_database_down(
            stranger.get("/api/v1/tasks", headers={"Authorization": f"Bearer {TOKEN}"}), shown)
        # A page asked for by a script (no text/html in Accept) gets the JSON too.
        assert_api_says_database_down(browser.get("/groups", headers={"Accept": "*/*"}), shown)
        zh_error = browser.get("/api/v1/overview", headers={"Accept-Language": "zh-CN"})
        assert zh_error.json()["code"] == "database"  # the console fills the zh text

        # Not signed in: the page sends to the login form, which says the database is down.
        redirect = stranger.get("/groups", headers=ENGLISH, follow_redirects=False)
        assert redirect.status_code == 303
        assert redirect.headers["location"] == "/login?next=/groups"
        for chinese, headers in ((False, ENGLISH), (True, CHINESE)):
            form = stranger.get("/login?next=/groups", headers=headers)
            assert form.status_code == 503
            assert PASSWORD not in form.text
            text = banner(form.text)
            assert shown in text
            assert ("登录需要数据库" if chinese else "Signing in needs the database") in text
            assert 'name="password"' in form.text and 'value="/groups"' in form.text
        refused = stranger.post("/login", headers=ENGLISH, follow_redirects=False,
                                data={"username": "viewer", "password": "pw2", "next": "/tasks"})
        assert refused.status_code == 503
        assert SESSION_COOKIE not in refused.cookies
        assert "Signing in needs the database" in banner(refused.text)
        assert 'value="viewer"' in refused.text and 'value="/tasks"' in refused.text

        # Logged once for the whole outage, masked, without a traceback.
        lines = [r for r in caplog.records if r.name == "fss.web.database"]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
        assert shown in lines[0].getMessage()
        assert PASSWORD not in caplog.text

        # Back: the same session, the same pages.
        throwaway_postgres.start()
        assert browser.get("/groups", headers=ENGLISH).status_code == 200
        assert browser.get(f"/api/v1/groups/{group_id}").json()["caption"] == "nightly export"
        assert "database-banner" not in browser.get("/audit", headers=ENGLISH).text
    assert url.count(PASSWORD) == 1  # the test's URL did carry it


def test_a_sqlite_file_that_cannot_be_opened_is_a_database_down_too(tmp_path: Path) -> None:
    """The file's directory is gone (a volume not mounted): new connections fail. (A
    connection already open keeps the file it has, so the pool is emptied, as a restart of
    the web process or a connection recycled would.)"""
    folder = tmp_path / "data"
    folder.mkdir()
    url = f"sqlite:///{folder / 'fss.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    app = make_app(url)
    with TestClient(app) as browser:
        sign_in(browser)
        assert browser.get("/audit", headers=ENGLISH).status_code == 200
        folder.rename(tmp_path / "moved")
        app.state.context.close()

        for chinese, headers in ((False, ENGLISH), (True, CHINESE)):
            page = browser.get("/audit", headers=headers)
            assert_page_says_database_down(page, url, chinese, "/audit")
        api = browser.get("/api/v1/audit")
        assert_api_says_database_down(api, url)
        assert api.json()["params"]["reason"] == "unable to open database file"

        (tmp_path / "moved").rename(folder)
        assert browser.get("/audit", headers=ENGLISH).status_code == 200
        assert browser.get("/api/v1/audit").status_code == 200
    shutil.rmtree(folder)


def test_what_is_shown_of_the_url_and_the_reason_holds_no_secret() -> None:
    assert shown_url("postgresql://fss:pa55@db.example:5432/fss?sslmode=require&password=x") \
        == "postgresql://fss:***@db.example:5432/fss"
    assert shown_url("mysql+pymysql://root@127.0.0.1:3306/fss") == \
        "mysql+pymysql://root@127.0.0.1:3306/fss"
    assert shown_url("sqlite:////var/lib/fss/fss.db") == "sqlite:////var/lib/fss/fss.db"
    assert shown_url("not a url") == "(the configured database URL)"

    class DriverError(Exception):
        pass

    error = DriverError("could not connect to postgresql://fss:pa55@db/fss (pa55 refused)\n"
                        "DETAIL: more")
    assert reason_of(error, "postgresql://fss:pa55@db/fss") == \
        "could not connect to postgresql://fss:***@db/fss (*** refused)"
    assert len(reason_of(DriverError("x" * 1000), "sqlite://")) == 300


def test_an_outage_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outages = OutageLog(monotonic=lambda: now[0])
    outage = Outage("postgresql://fss:***@db/fss", "Connection refused")
    caplog.set_level(logging.WARNING, logger="fss.web.database")
    for _ in range(50):  # pages polling every 2 s, many of them
        outages.note(outage)
        now[0] += LOG_EVERY_S / 100
    assert outages.logged == 1
    now[0] += LOG_EVERY_S
    outages.note(outage)
    assert outages.logged == 2
    assert len(caplog.records) == 2
    assert caplog.records[0].getMessage().startswith(
        "database postgresql://fss:***@db/fss unreachable: Connection refused")
