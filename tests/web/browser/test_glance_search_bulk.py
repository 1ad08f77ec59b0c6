"""Health at a glance, search and bulk actions in Chromium against the real web app: the
overview's banner names the broker down and the database down (the page then says its data
is stale, since when and why), the header's search box finds groups and tasks, three groups
are disabled with one confirmation naming them, and the groups list downloads as CSV.
Screenshots: docs/screenshots/health-banner.png, search.png, bulk.png."""

from __future__ import annotations

import contextlib
import csv
import re
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import USERS, VIEWPORT, LiveFss, ServerThread, login, screenshot
from playwright.sync_api import Browser, Page, expect

from fss.config import Settings
from fss.domain.group_spec import GroupSpec
from fss.store import groups
from fss.store.engine import create_engine
from fss.store.migrate import upgrade
from fss.store.tables import task_group
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

BROKER_DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _page(browser: Browser, url: str, locale: str = "en-US") -> Iterator[Page]:
    context = browser.new_context(  # type: ignore[arg-type]
        viewport=VIEWPORT, accept_downloads=True, locale=locale,
        extra_http_headers={"Accept-Language": locale})
    page = context.new_page()
    page.set_default_timeout(10_000)
    login(page, url, "admin", "pw")
    yield page
    context.close()


# ---- broker down ---------------------------------------------------------------------------


@pytest.fixture
def broker_down_url(live_fss: LiveFss) -> Iterator[str]:
    settings = Settings(database_url=live_fss.db_url, broker_url=BROKER_DOWN)
    server = ServerThread(create_web_app(settings, WebSettings(users=parse_users(USERS))))
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_overview_banner_names_the_broker_down(
    browser: Browser, broker_down_url: str
) -> None:
    for page in _page(browser, broker_down_url):
        banner = page.locator("#health-banner")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Groups cannot run as they should")
        item = banner.locator("li", has_text="Broker down")
        expect(item).to_contain_text("127.0.0.1:1")
        expect(item.locator("a")).to_have_attribute("href", "/clients")
        expect(page.locator("#stale-banner")).to_be_hidden()  # the numbers are current
        screenshot(page, "health-banner")


def test_with_everything_up_the_banner_only_says_what_needs_a_look(
    admin_page: Page, live_fss: LiveFss
) -> None:
    expect(admin_page.locator("#health-checked")).not_to_be_empty()
    expect(admin_page.locator("#health-banner")).not_to_contain_text("Broker down")
    expect(admin_page.locator("#health-banner")).not_to_contain_text("No scheduler")


# ---- database down -------------------------------------------------------------------------


class Proxy:
    """A TCP forwarder to PostgreSQL that the test can cut: the database goes down for the
    web app (refused connections, dropped sessions) while the server runs on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                incoming, _ = self.listener.accept()
            except OSError:
                return
            outgoing = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [incoming, outgoing]
            for a, b in ((incoming, outgoing), (outgoing, incoming)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def database_down(postgres_server: Any) -> Iterator[tuple[str, Proxy]]:
    url = postgres_server.create_database()
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    parsed = sa.engine.make_url(url)
    proxy = Proxy(parsed.port or 5432)
    via_proxy = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)
    settings = Settings(database_url=via_proxy, broker_url="memory://")
    server = ServerThread(create_web_app(settings, WebSettings(users=parse_users(USERS))))
    try:
        yield server.start(), proxy
    finally:
        server.stop()
        proxy.cut()
        postgres_server.drop_database(url)


def test_with_the_database_down_the_page_says_its_data_is_stale_and_why(
    browser: Browser, database_down: tuple[str, Proxy]
) -> None:
    url, proxy = database_down
    for page in _page(browser, url):
        expect(page.locator("[data-status-count='Working']")).to_have_text("0")
        expect(page.locator("#health-banner")).to_contain_text("No scheduler")
        proxy.cut()
        stale = page.locator("#stale-banner")
        # The next poll finds the database gone: within a poll and the API's answer.
        expect(stale).to_be_visible(timeout=15_000)
        expect(stale).to_contain_text("This page shows the data of")
        expect(page.locator("#stale-since")).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
        expect(page.locator("#stale-reason")).to_contain_text("database unavailable")
        banner = page.locator("#health-banner")
        expect(banner.locator("li", has_text="Database down")).to_contain_text(
            "Connection refused")
        expect(page.locator("#live")).to_have_attribute("data-state", "offline")
        screenshot(page, "health-banner-database")


def test_with_the_database_down_the_chinese_banner_names_the_database(
    browser: Browser, database_down: tuple[str, Proxy]
) -> None:
    # The 503's message is in Chinese there: the banner goes by the error's code.
    url, proxy = database_down
    for page in _page(browser, url, "zh-CN"):
        expect(page.locator("[data-status-count='Working']")).to_have_text("0")
        proxy.cut()
        banner = page.locator("#health-banner")
        expect(banner.locator("li[data-check=database]")).to_contain_text(
            "数据库不可用", timeout=15_000)
        expect(banner.locator("li[data-check=unreachable]")).to_have_count(0)


# ---- search, bulk, CSV -----------------------------------------------------------------------


def test_the_header_search_finds_groups_and_a_task(admin_page: Page, live_fss: LiveFss) -> None:
    admin_page.fill("#global-search", "nightly")
    admin_page.press("#global-search", "Enter")
    admin_page.wait_for_url(re.compile(r"/search\?q=nightly"))
    rows = admin_page.locator("#found-groups tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("nightly report")
    expect(admin_page.locator("#global-search")).to_have_value("nightly")
    screenshot(admin_page, "search")

    with live_fss.engine.connect() as conn:
        task_id = conn.execute(sa.text("SELECT MAX(id) FROM task")).scalar()
    admin_page.fill("#search-q", f"#{task_id}")
    admin_page.press("#search-q", "Enter")
    expect(admin_page.locator("#task-result")).to_be_visible()
    expect(admin_page.locator("#task-link")).to_have_attribute("href", f"/tasks/{task_id}")


def test_three_groups_disabled_at_once_after_one_confirmation(
    admin_page: Page, live_fss: LiveFss
) -> None:
    now = datetime.now(timezone.utc)
    ids = [groups.add_group(live_fss.engine, GroupSpec(caption=f"bulk batch {n}",
                                                       job_name="hello", interval_ms=60_000),
                            now) for n in "abc"]
    admin_page.goto(f"{live_fss.url}/groups?q=bulk%20batch")
    expect(admin_page.locator("#groups tbody tr")).to_have_count(3)
    admin_page.check("#select-all")
    expect(admin_page.locator("#bulk-count")).to_have_text("3 selected")
    admin_page.click("[data-bulk='disable']")
    dialog = admin_page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-title")).to_have_text("Disable 3 groups?")
    for group_id, letter in zip(ids, "abc", strict=True):
        named = f"#{group_id} “bulk batch {letter}”"
        expect(dialog.locator("#confirm-list")).to_contain_text(named)
    screenshot(admin_page, "bulk")
    dialog.locator("#confirm-ok").click()
    expect(admin_page.locator(".toast")).to_contain_text("Disable: 3 of 3 groups done")
    expect(admin_page.locator("#bulk-bar")).to_be_hidden()
    for row in admin_page.locator("#groups tbody tr").all():
        expect(row.locator(".blocked")).to_contain_text("disabled")
    with live_fss.engine.connect() as conn:
        enabled = conn.execute(sa.select(task_group.c.is_enable)
                               .where(task_group.c.id.in_(ids))).scalars().all()
    assert enabled == [False, False, False]


def test_the_groups_list_downloads_as_csv_with_its_filter(
    admin_page: Page, live_fss: LiveFss
) -> None:
    admin_page.goto(f"{live_fss.url}/groups")
    admin_page.fill("#filter", "report")
    expect(admin_page.locator("#groups tbody tr")).to_have_count(1)
    expect(admin_page.locator("#export-csv")).to_have_attribute("href", re.compile(r"q=report"))
    with admin_page.expect_download() as info:
        admin_page.click("#export-csv")
    download = info.value
    assert download.suggested_filename == "fss-groups.csv"
    with open(download.path(), newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:4] == ["id", "key", "caption", "job_name"]
    assert [r[2] for r in rows[1:]] == ["nightly report"]
