"""The Audit page in Chromium: an admin edits a group in the UI, and the entry is on the
Audit page with who, from where and each field before -> after; the filters narrow it.
Screenshot: docs/screenshots/audit.png."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from conftest import VIEWPORT, LiveFss, login, screenshot
from playwright.sync_api import Browser, Page, expect

from fss.domain.group_spec import GroupSpec
from fss.store import audit, groups
from fss.store.audit import Actor

ENGLISH = {"locale": "en-US", "extra_http_headers": {"Accept-Language": "en-US,en;q=0.9"}}
CHINESE = {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}


def test_a_group_edited_in_the_ui_is_on_the_audit_page(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    group_id = groups.add_group(
        live_fss.engine,
        # First run an hour away: a run saving its data meanwhile would make the edit stale.
        GroupSpec(caption="billing export", job_name="hello", interval_ms=3_600_000,
                  data={"region": "eu", "batch": 500},
                  start_at=datetime.now(timezone.utc) + timedelta(hours=1)).validated(),
        datetime.now(timezone.utc),
        key="billing.export",
    )
    page.goto(f"{base}/groups/{group_id}")
    expect(page.locator("#caption")).to_have_text("billing export")
    page.click("#edit-group")
    page.fill("[name=caption]", "billing export (EU)")
    page.fill("[name=timeout_s]", "120")
    page.fill("[name=data]", '{"region": "eu-west", "batch": 500}')
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    expect(page.locator("#caption")).to_have_text("billing export (EU)")

    # The group page links its own audit history; the edit's versions are told in words.
    page.click("#group-audit")
    page.wait_for_url(f"{base}/audit?group={group_id}")
    history = page.locator("#audit tbody tr")
    expect(history).to_have_count(1)
    expect(history.locator(".audit-detail li", has_text="version")).to_have_text(
        re.compile(r"^version\s+(\d+) → (\d+)$"))
    expect(history.locator(".audit-detail")).not_to_contain_text("[")

    page.click("nav >> text=Audit")
    page.wait_for_url(f"{base}/audit")
    row = page.locator('#audit tr[data-action="group.edit"]').first
    expect(row).to_contain_text("Group edited")
    expect(row).to_contain_text("admin")
    expect(row).to_contain_text("127.0.0.1")
    expect(row).to_contain_text(f"group {group_id}")
    expect(row).to_contain_text("billing.export")
    expect(row.locator("li", has_text="caption")).to_contain_text(
        "billing export → billing export (EU)")
    expect(row.locator("li", has_text="timeout_s")).to_contain_text("(none) → 120")
    expect(row.locator("li", has_text="data")).to_contain_text('"region": "eu-west"')
    expect(page.locator('#audit tr[data-action="login"]').first).to_contain_text("Logged in")

    # Filtered to the group by its key: only its entries.
    page.fill("#audit-filters [name=group]", "billing.export")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    expect(page.locator("#audit tbody tr")).to_have_attribute("data-action", "group.edit")
    page.goto(f"{base}/audit?since=2020-01-01T00:00:00Z")
    screenshot(page, "audit")
    page.select_option("#audit-filters [name=action]", "login.refused")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator(".empty")).to_contain_text("No entries match these filters")


def test_a_viewer_sees_the_audit_page_and_a_bad_time_is_told_at_the_filter(
    viewer_page: Page, live_fss: LiveFss
) -> None:
    page, base = viewer_page, live_fss.url
    page.goto(f"{base}/audit?since=last+week")
    expect(page.locator("#audit-error")).to_contain_text("since:")
    expect(page.locator("#audit-filters [name=since]")).to_have_attribute("aria-invalid", "true")
    page.goto(f"{base}/audit")
    expect(page.locator('#audit tr[data-action="login"]').first).to_be_visible()


AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_audit_times_follow_the_zone_switch_with_their_zone_labelled(
    browser: Browser, live_fss: LiveFss
) -> None:
    """An entry of a group in Asia/Tokyo (UTC+9), seen from a browser in Asia/Shanghai
    (UTC+8): the browser's zone by default, then UTC, then the group's zone, each time
    24-hour with its zone's label; in zh-CN too."""
    group_id = groups.add_group(
        live_fss.engine,
        GroupSpec(caption="tokyo report", job_name="hello", cron="0 9 * * *",
                  time_zone="Asia/Tokyo", is_enable=False).validated(),
        datetime.now(timezone.utc),
    )
    with live_fss.engine.begin() as conn:
        audit.record(conn, Actor("alice", "cli", "ops-host"), "group.enable", AT,
                     group_id=group_id, subject="tokyo report")
    for language, header in ((ENGLISH, "When"), (CHINESE, "时间")):
        context = browser.new_context(viewport=VIEWPORT, timezone_id="Asia/Shanghai",  # type: ignore[arg-type]
                                      **language)
        page = context.new_page()
        page.set_default_timeout(10_000)
        try:
            login(page, live_fss.url, "admin", "pw")
            page.goto(f"{live_fss.url}/audit?group={group_id}")
            expect(page.locator("#audit thead th").nth(1)).to_have_text(header)
            shown = page.locator("#audit tbody tr time").first
            expect(shown).to_have_text("2030-01-02 11:04:05 UTC+8")  # the browser's zone
            assert "Asia/Shanghai" in (shown.get_attribute("title") or "")
            assert (shown.get_attribute("title") or "").endswith("2030-01-02T03:04:05+00:00")
            with page.expect_navigation():
                page.select_option("#zone-switch", "utc")
            expect(shown).to_have_text("2030-01-02 03:04:05 UTC")
            with page.expect_navigation():
                page.select_option("#zone-switch", "group")
            expect(shown).to_have_text("2030-01-02 12:04:05 UTC+9")
            assert "Asia/Tokyo" in (shown.get_attribute("title") or "")
            if language is ENGLISH:
                screenshot(page, "audit-group-zone")
            # An entry without a group (a login) is shown in UTC under "group".
            page.goto(f"{live_fss.url}/audit?action=login")
            expect(page.locator("#audit tbody tr time").first).to_have_text(
                re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
            page.wait_for_load_state("networkidle")
        finally:
            context.close()
