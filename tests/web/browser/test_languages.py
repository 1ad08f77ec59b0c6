"""Languages in a real browser (issue 19 item 1): every page the navigation links to, plus a
group, a task, an alert, the alert targets, the login form and an error page, rendered and
filled by its scripts in Chromium, in Simplified Chinese (chosen by the browser's
Accept-Language, and by the switch in the top bar) and in English.

A page in Chinese fails on any English word in its visible text, placeholders or control
names outside an explicit allowlist: product and protocol names and units (fss, API, CSV,
JSON, UTC, HTTP, ms ...), API values shown beside their words (skip, failover ...), and the
store's own values: ids, job names, cron and JSON (.mono, <code>, <pre>), the seeded
groups' captions, error text of runs (.error-line) and alert titles (.cell-title, #title),
which are the messages that were sent. An English page fails on any Chinese character
outside the switch's own "中文". Screenshots: docs/screenshots/zh-*.png.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from conftest import SEED_GROUPS, VIEWPORT, LiveFss, login, screenshot, wait_until
from playwright.sync_api import Browser, Page, expect

# Words that stay as they are on a Chinese page (see the module docstring).
ALLOWED = frozenset([
    "fss", "Celery", "API", "CSV", "JSON", "UTC", "HTTP", "HTTPS", "Basic", "Bearer", "ID",
    "PID", "IP", "ms", "Cron", "cron", "English", "Web", "URL", "SMTP", "TLS", "STARTTLS",
    "Webhook", "Slack", "Incoming",
    "skip", "replace", "failover", "broadcast", "sticky", "hung", "admin",
    "demo", "hello", "every",  # the demo group fss dev adds: "demo: hello every 2 s"
    *(word for spec in SEED_GROUPS for word in re.findall(r"[A-Za-z]+", spec.caption)),
    *re.findall(r"[A-Za-z]+", socket.gethostname()),  # the clients' and nodes' host
])
# The store's values and the messages that were sent: not UI text.
RAW = (".mono, code, pre, script, style, template, .error-line, .cell-title, #title, "
       "[data-detail], .log-content, .lang-switch, .chip, .raw-schedule, .store-text, datalist")
CHINESE = {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}
ENGLISH = {"locale": "en-US", "extra_http_headers": {"Accept-Language": "en-US,en;q=0.9"}}

VISIBLE_TEXT = """(raw) => {
  const parts = [];
  const shown = (node) => {
    const box = node.getBoundingClientRect();
    const style = getComputedStyle(node);
    return box.width > 0 && box.height > 0 && style.visibility !== 'hidden';
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(raw) || !shown(parent) || !node.textContent.trim()) continue;
    parts.push(node.textContent.trim());
  }
  for (const node of document.querySelectorAll('[placeholder], [aria-label], option, button')) {
    if (node.closest(raw)) continue;
    if (node.tagName === 'OPTION') { parts.push(node.textContent.trim()); continue; }
    if (!shown(node)) continue;
    for (const name of ['placeholder', 'aria-label']) {
      if (node.getAttribute(name)) parts.push(node.getAttribute(name));
    }
  }
  return parts;
}"""
WORD = re.compile(r"[A-Za-z][\w'.@/-]*[A-Za-z0-9]")


def english_words(page: Page) -> list[str]:
    found: set[str] = set()
    for part in page.evaluate(VISIBLE_TEXT, RAW):
        for word in WORD.findall(part):
            if word in ALLOWED or re.search(r"[_.@/-]", word):  # ids, job names, zones
                continue
            found.add(word)
    return sorted(found)


def context_page(browser: Browser, live: LiveFss, language: dict[str, object]) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, **language)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(10_000)
    login(page, live.url, "admin", "pw")
    yield page
    context.close()


@pytest.fixture
def zh_page(browser: Browser, live_fss: LiveFss) -> Iterator[Page]:
    yield from context_page(browser, live_fss, CHINESE)


@pytest.fixture
def en_page(browser: Browser, live_fss: LiveFss) -> Iterator[Page]:
    yield from context_page(browser, live_fss, ENGLISH)


def settle(page: Page) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(400)


def page_paths(page: Page, live: LiveFss) -> list[str]:
    page.goto(f"{live.url}/")
    hrefs = page.eval_on_selector_all("nav.nav a[href]",
                                      "links => links.map(a => a.getAttribute('href'))")
    paths = [h for h in hrefs if h.startswith("/") and h != "/api/docs"]
    group_id = live.group_ids["flaky import"]
    paths += [f"/groups/{group_id}", "/alerts/targets", "/search?q=flaky", "/no-such-page"]
    wait_until(lambda: _one(live, f"SELECT MAX(id) FROM task WHERE task_group_id = {group_id}"
                            " AND status = 3"), 20, "a failed run of the flaky group")
    task = _one(live, f"SELECT MAX(id) FROM task WHERE task_group_id = {group_id}")
    paths.append(f"/tasks/{task}")
    alert = _one(live, "SELECT MAX(id) FROM alert")
    if alert:
        paths.append(f"/alerts/{alert}")
    return list(dict.fromkeys(paths))


def _one(live: LiveFss, sql: str) -> int | None:
    with live.engine.connect() as conn:
        value = conn.exec_driver_sql(sql).scalar()
    return int(value) if value else None


def test_every_page_in_chinese_has_no_english_text(zh_page: Page, live_fss: LiveFss) -> None:
    page = zh_page
    paths = page_paths(page, live_fss)
    assert len(paths) >= 12, paths
    problems = []
    for path in paths:
        page.goto(f"{live_fss.url}{path}")
        settle(page)
        assert page.evaluate("document.documentElement.lang") == "zh-CN", path
        words = english_words(page)
        if words:
            problems.append(f"{path}: {words}")
    # The group form and the confirmation dialogs, opened.
    page.goto(f"{live_fss.url}/groups")
    expect(page.locator("#groups tbody tr").first).to_be_visible()
    page.click("#new-group")
    expect(page.locator("#group-dialog")).to_be_visible()
    settle(page)
    problems.extend(f"group form: {w}" for w in english_words(page))
    page.keyboard.press("Escape")
    page.locator("#groups tbody tr").first.get_by_role("button", name="删除").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    problems.extend(f"delete dialog: {w}" for w in english_words(page))
    page.keyboard.press("Escape")
    assert problems == [], "\n".join(problems)


def test_the_login_page_in_chinese(browser: Browser, live_fss: LiveFss) -> None:
    context = browser.new_context(viewport=VIEWPORT, **CHINESE)  # type: ignore[arg-type]
    page = context.new_page()
    try:
        page.goto(f"{live_fss.url}/login")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        expect(page.locator("h1")).to_have_text("登录")
        assert english_words(page) == []
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        expect(page.locator(".alert-error")).to_have_text("用户名或密码错误。")
    finally:
        context.close()


def test_every_page_in_english_has_no_chinese(en_page: Page, live_fss: LiveFss) -> None:
    page = en_page
    problems = []
    for path in page_paths(page, live_fss):
        page.goto(f"{live_fss.url}{path}")
        settle(page)
        assert page.evaluate("document.documentElement.lang") == "en", path
        text = " ".join(page.evaluate(VISIBLE_TEXT, ".lang-switch, script, style, template"))
        chinese = re.findall(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+", text)
        if chinese:
            problems.append(f"{path}: {chinese[:8]}")
    assert problems == [], "\n".join(problems)


def test_the_switch_sticks_and_formats_follow(en_page: Page, live_fss: LiveFss) -> None:
    page = en_page
    page.goto(f"{live_fss.url}/groups")
    expect(page.locator("h1")).to_have_text("Task groups")
    page.locator(".topbar .lang-switch a[lang=zh-CN]").click()
    page.wait_for_url(f"{live_fss.url}/groups")
    expect(page.locator("h1")).to_have_text("任务组")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    # The cookie sticks: another page, and a reload, stay Chinese though the browser asks
    # for English.
    page.goto(f"{live_fss.url}/tasks")
    expect(page.locator("h1")).to_have_text("任务")
    expect(page.locator("#tasks tbody tr").first).to_be_visible()
    durations = page.locator("#tasks tbody td.num").all_inner_texts()
    assert any(re.search(r"\d(\.\d+)? ?(秒|毫秒)", d) for d in durations), durations
    times = page.locator("#tasks tbody time").all_inner_texts()
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[+-]?\d*", t)
                         for t in times[:5]), times[:5]
    # The schedule in words comes from the API in the page's language.
    page.goto(f"{live_fss.url}/groups")
    expect(page.locator("#groups tbody tr", has_text="slow sync").locator(".schedule")
           ).to_have_text("每 2 秒 500 毫秒")
    page.locator(".topbar .lang-switch a[lang=en]").click()
    page.wait_for_url(f"{live_fss.url}/groups")
    expect(page.locator("h1")).to_have_text("Task groups")
    expect(page.locator("#groups tbody tr", has_text="slow sync").locator(".schedule")
           ).to_have_text("every 2 s 500 ms")


def test_a_refused_edit_is_told_in_chinese(zh_page: Page, live_fss: LiveFss) -> None:
    """The API's 422 carries a code and params; the form shows its Chinese text."""
    page = zh_page
    group_id = live_fss.group_ids["nightly report"]
    page.goto(f"{live_fss.url}/groups/{group_id}")
    expect(page.locator("#caption")).to_have_text("nightly report")
    page.click("#edit-group")
    page.fill("input[name=cron]", "* * *")
    page.click("#group-save")
    error = page.locator('[data-field="cron"] .field-error')
    # cron, a full-width colon, the expression in quotes, "has 3 fields"
    told = "^cron\uff1a\u201c\\* \\* \\*\u201d \u6709 3 \u4e2a\u5b57\u6bb5"
    expect(error).to_have_text(re.compile(told))
    page.keyboard.press("Escape")


def test_screenshots_in_chinese(zh_page: Page, live_fss: LiveFss) -> None:
    page = zh_page
    page.goto(f"{live_fss.url}/")
    expect(page.locator("[data-status-count=Success]")).not_to_have_text("\u2013")
    expect(page.locator(".cards .stat-label").first).to_have_text("等待中")
    settle(page)
    screenshot(page, "zh-overview")
    page.goto(f"{live_fss.url}/groups")
    expect(page.locator("#groups tbody tr").first).to_be_visible()
    settle(page)
    screenshot(page, "zh-groups")
    page.goto(f"{live_fss.url}/groups/{live_fss.group_ids['flaky import']}")
    expect(page.locator("#props dt").first).to_have_text("作业")
    settle(page)
    screenshot(page, "zh-group")
