"""The API docs page (Swagger UI) works offline: its files are vendored, nothing from a CDN."""

from __future__ import annotations

from conftest import LiveFss, screenshot
from playwright.sync_api import Page, Request, expect


def test_the_api_docs_render_from_vendored_files_only(
    admin_page: Page, live_fss: LiveFss
) -> None:
    requested: list[str] = []

    def remember(request: Request) -> None:
        requested.append(request.url)

    admin_page.on("request", remember)
    admin_page.goto(f"{live_fss.url}/api/docs")

    expect(admin_page.locator(".swagger-ui .title")).to_contain_text("fss")
    expect(admin_page.locator(".opblock-summary-path").first).to_be_visible()
    paths = admin_page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/groups" in [p.replace("\u200b", "") for p in paths]
    foreign = [url for url in requested if not url.startswith((live_fss.url, "data:"))]
    assert foreign == []
    screenshot(admin_page, "api-docs")
