"""With the broker down, the overview and the clients page say so in a banner and show the
queue depths as unknown (screenshot: /tmp/fss-broker-banner.png); with it up, no banner."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import USERS, VIEWPORT, LiveFss, ServerThread, login
from playwright.sync_api import Browser, Page, expect

from fss.config import Settings
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

BANNER_SHOT = Path("/tmp/fss-broker-banner.png")
DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def down_url(live_fss: LiveFss) -> Iterator[str]:
    """A second web app over the same database whose broker cannot be reached."""
    settings = Settings(database_url=live_fss.db_url, broker_url=DOWN)
    server = ServerThread(create_web_app(settings, WebSettings(users=parse_users(USERS))))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def down_page(browser: Browser, down_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(10_000)
    login(page, down_url, "admin", "pw")
    yield page
    context.close()


def test_the_overview_and_clients_page_say_the_broker_is_unreachable(
    down_page: Page, down_url: str
) -> None:
    banner = down_page.locator("#broker-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("broker unreachable: ")
    expect(banner).to_contain_text("127.0.0.1:1")
    expect(down_page.locator("#event-queue")).to_have_text("unknown")
    expect(down_page.locator("#queues tbody tr").first).to_contain_text("unknown")
    down_page.screenshot(path=str(BANNER_SHOT), full_page=True)

    down_page.goto(f"{down_url}/clients")
    expect(down_page.locator("#broker-banner")).to_contain_text("broker unreachable: ")
    expect(down_page.locator("#clients tbody tr").first).to_contain_text("unknown")


def test_with_the_broker_up_there_is_no_banner(admin_page: Page, live_fss: LiveFss) -> None:
    expect(admin_page.locator("#event-queue")).to_have_text(re.compile(r"^\d+$"))
    expect(admin_page.locator("#broker-banner")).to_be_hidden()
    expect(admin_page.locator("#event-queue")).not_to_have_text("unknown")
