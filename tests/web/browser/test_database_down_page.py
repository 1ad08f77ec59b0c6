"""The console in Chromium while its PostgreSQL is stopped and started again: the open page
keeps its rows and says they are stale and why; a page loaded meanwhile is the layout with a
banner naming the database (no password) in English and in Chinese, answered with 503, and
loads by itself once the database is back. The login form says it too.
Screenshots: docs/screenshots/database-down.png, zh-database-down.png, database-down-stale.png,
zh-login-database-down.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import VIEWPORT, ServerThread, login, screenshot
from playwright.sync_api import Browser, Page, expect
from throwaway import ThrowawayPostgres, throwaway_postgres  # noqa: F401 (fixture)

from fss.config import Settings
from fss.domain.clock import SystemClock
from fss.domain.group_spec import GroupSpec
from fss.store import groups
from fss.store.engine import create_engine
from fss.store.migrate import upgrade
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

PASSWORD = "s3cret-Pw-4711"
ENGLISH = {"locale": "en-US", "extra_http_headers": {"Accept-Language": "en-US,en;q=0.9"}}
# dbwait.js asks every 5 s: within 15 s it has asked at least twice.
RETRY_WAIT_MS = 15_000
CHINESE = {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}


@dataclass
class Console:
    url: str
    database: ThrowawayPostgres
    shown: str  # the database's URL as the console names it


@pytest.fixture
def console(throwaway_postgres: ThrowawayPostgres) -> Iterator[Console]:  # noqa: F811
    url = throwaway_postgres.url().replace("://postgres@", f"://postgres:{PASSWORD}@")
    engine = create_engine(url)
    upgrade(engine)
    now = SystemClock().now()
    for caption in ("nightly export", "hourly sync"):
        groups.add_group(engine, GroupSpec(caption=caption, job_name="hello",
                                           interval_ms=3_600_000, is_enable=False).validated(),
                         now)
    engine.dispose()
    app = create_web_app(Settings(database_url=url, broker_url="memory://"),
                         WebSettings(users=parse_users("admin:pw")))
    server = ServerThread(app)
    try:
        yield Console(server.start(), throwaway_postgres,
                      f"postgresql+psycopg2://postgres:***@127.0.0.1:{throwaway_postgres.port}"
                      "/postgres")
    finally:
        server.stop()


def new_page(browser: Browser, language: dict[str, object]) -> Page:
    context = browser.new_context(viewport=VIEWPORT, timezone_id="Asia/Shanghai",  # type: ignore[arg-type]
                                  **language)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def test_the_console_while_the_database_is_down_and_back(
    browser: Browser, console: Console
) -> None:
    page = new_page(browser, ENGLISH)
    try:
        login(page, console.url, "admin", "pw")
        page.goto(f"{console.url}/groups")
        rows = page.locator("#groups tbody tr")
        expect(rows).to_have_count(2)

        console.database.stop()

        # The open page keeps what it showed and says since when, and why.
        stale = page.locator("#stale-banner")
        expect(stale).to_be_visible()
        # (An English page shows the API's own `error` line; a Chinese one its code's text.)
        expect(stale).to_contain_text("Refreshing fails: database unavailable: ")
        expect(stale).to_contain_text(f"Connection refused ({console.shown})")
        expect(rows).to_have_count(2)
        expect(rows.filter(has_text="hourly sync")).to_have_count(1)
        screenshot(page, "database-down-stale")

        # Loaded now: the layout and the banner, 503.
        response = page.reload()
        assert response is not None and response.status == 503
        banner = page.locator("#database-banner")
        expect(banner).to_contain_text("Database unreachable.")
        expect(banner.locator(".database-url")).to_have_text(console.shown)
        expect(banner.locator(".database-reason")).to_contain_text("Connection refused")
        expect(page.locator("h1")).to_have_text("Groups")
        expect(page.locator("nav a[aria-current=page]")).to_have_text("Groups")
        # The page asks again every 5 s, and says when it last found the database down.
        checked = page.locator("#database-checked")
        expect(checked).to_be_visible(timeout=RETRY_WAIT_MS)
        expect(checked).to_have_text(re.compile(r"^Still unreachable at \d\d:\d\d:\d\d UTC\+8\.$"))
        assert PASSWORD not in page.content()
        screenshot(page, "database-down")

        # In Chinese.
        response = page.goto(f"{console.url}/lang?to=zh-CN&next=/groups")
        assert response is not None and response.status == 503
        expect(banner).to_contain_text("数据库无法连接。")
        expect(banner).to_contain_text("恢复后本页会自动重新加载")
        expect(page.locator("h1")).to_have_text("任务组")
        expect(checked).to_be_visible(timeout=RETRY_WAIT_MS)
        expect(checked).to_have_text(re.compile(r"^\d\d:\d\d:\d\d UTC\+8 时仍无法连接。$"))
        assert PASSWORD not in page.content()
        screenshot(page, "zh-database-down")

        # The login form, in Chinese, for someone not signed in.
        stranger = new_page(browser, CHINESE)
        try:
            response = stranger.goto(f"{console.url}/groups")
            assert response is not None and response.status == 503
            assert stranger.url.startswith(f"{console.url}/login")
            expect(stranger.locator("#database-banner")).to_contain_text("登录需要数据库")
            expect(stranger.locator("input[name=password]")).to_be_visible()
            screenshot(stranger, "zh-login-database-down")
        finally:
            stranger.context.close()

        # Back: the page loads by itself, with its rows.
        console.database.start()
        expect(rows).to_have_count(2, timeout=RETRY_WAIT_MS)
        expect(banner).to_have_count(0)
        expect(page.locator("#stale-banner")).to_be_hidden()
        page.wait_for_load_state("networkidle")
    finally:
        page.context.close()
