"""The API docs page (Swagger UI) works offline: its files are vendored, nothing from a CDN."""

from __future__ import annotations

from conftest import LiveFss, screenshot
from playwright.sync_api import Page, Request, expect

# Swagger UI renders every operation of the API in the page's one thread: on a slow host
# under the whole suite a click on an operation waited over the pages' usual 10 s for the
# renderer (Locator.click timed out after "performing click action"). What these tests
# check is what the page does, not how fast.
SWAGGER_TIMEOUT_MS = 30_000


def test_the_api_docs_render_from_vendored_files_only(
    admin_page: Page, live_fss: LiveFss
) -> None:
    admin_page.set_default_timeout(SWAGGER_TIMEOUT_MS)
    requested: list[str] = []

    def remember(request: Request) -> None:
        requested.append(request.url)

    admin_page.on("request", remember)
    admin_page.goto(f"{live_fss.url}/api/docs")

    expect(admin_page.locator(".swagger-ui .title")).to_contain_text(
        "fss", timeout=SWAGGER_TIMEOUT_MS
    )
    expect(admin_page.locator(".opblock-summary-path").first).to_be_visible(
        timeout=SWAGGER_TIMEOUT_MS
    )
    paths = admin_page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/groups" in [p.replace("\u200b", "") for p in paths]
    foreign = [url for url in requested if not url.startswith((live_fss.url, "data:"))]
    assert foreign == []
    screenshot(admin_page, "api-docs")


def test_try_it_out_writes_when_signed_in_by_the_session(
    admin_page: Page, live_fss: LiveFss
) -> None:
    """POST /api/v1/groups/{id}/disable through Swagger UI's "Try it out" with the session
    cookie: the page adds the session's CSRF token, so it answers 200, not 403."""
    group_id = live_fss.group_ids["paused cleanup"]
    admin_page.set_default_timeout(SWAGGER_TIMEOUT_MS)
    admin_page.goto(f"{live_fss.url}/api/docs")
    operation = admin_page.locator(".opblock-post").filter(
        has=admin_page.locator(".opblock-summary-path", has_text="/disable")
    )
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("input[placeholder='group_id']").fill(str(group_id))
    path = f"/groups/{group_id}/disable"
    with admin_page.expect_response(lambda r: r.url.endswith(path)) as sent:
        operation.locator("button.execute").click()
    response = sent.value

    assert response.request.headers.get("x-csrf-token")
    assert response.status == 200, response.text()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_contain_text("200", timeout=SWAGGER_TIMEOUT_MS)
    admin_page.screenshot(path="/tmp/fss-try-it-out.png", full_page=False)
    # The same request without the token is refused: the token is what made it pass.
    refused = admin_page.evaluate(
        "async (url) => (await fetch(url, {method: 'POST'})).status",
        f"/api/v1/groups/{group_id}/disable",
    )
    assert refused == 403
