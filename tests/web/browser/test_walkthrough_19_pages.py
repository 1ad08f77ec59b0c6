"""What the operator's walk-through of issue 19 found in a real browser (notes:
walkthrough-19.md), each checked here so it stays fixed.

* Time charts: a group's run history with one run spanned 1000 days (uPlot widens a single
  point by 86400 "ms" on a seconds scale) and labelled its ticks "03-01 00:00, 06-01 00:00,
  ..." with no year; ticks with a day in their label overlapped on a 700 px chart; ticks
  seconds apart all read "13:05".
* The groups table in English was 1347 px wide in a 1280 px window: each row's Delete button
  sat outside the visible part of the table.
* A next run whose time had passed (a group no worker serves) read "14 min ago" under "Next
  run"; it says "due 14 min ago".
* Searching a task id that has no task (deleted with its group) showed nothing about tasks.
* A bad cron field in the group form on a zh-CN page read "cron: ... minute 字段有误 (...
  '61' is not 0-59)", the field's name and the reason in English.
* The overview's "Clients online: 1" with its only client kicked, beside a banner saying no
  live client serves any job: the card says how many of them take no new runs.
* Dark scheme: the overview's health banner kept its light-scheme dark red text on the dark
  red panel (1.7:1), and the groups' selection bar its light blue under light text.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conftest import USERS, LiveFss, login, wait_until
from playwright.sync_api import Browser, Page
from test_phone_and_a11y import AXE

from fss.domain.clock import SystemClock
from fss.domain.group_spec import GroupSpec
from fss.store import groups

# A chart through FSS.makeChart on a page, as group.js and overview.js make theirs; returns
# the x scale and the tick labels uPlot drew (after its first draw).
CHART = """async ([xs, width]) => {
  const box = document.createElement("div");
  box.style.width = width + "px";
  document.body.appendChild(box);
  const u = FSS.makeChart(box, {
    zone: null, height: 200, scales: { x: { time: true } },
    axes: [FSS.axis(), FSS.axis()], series: [{}, { label: "a" }],
  }, [xs, xs.map(() => 1)]);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const splits = u.axes[0]._splits || [];
  return { min: u.scales.x.min, max: u.scales.x.max, labels: u.axes[0]._values || [],
           pixels: splits.map((s) => u.valToPos(s, "x")) };
}"""


UNSERVED = "nobody-serves-this-job"


def _unserved_group(live: LiveFss) -> None:
    """A cron group no worker serves: a banner on the overview, long words in the table."""
    if "walk: nightly export" not in live.group_ids:
        live.group_ids["walk: nightly export"] = groups.add_group(live.engine, GroupSpec(
            caption="walk: nightly export", job_name=UNSERVED, cron="0 30 2 * * *",
            time_zone="Asia/Shanghai").validated(), SystemClock().now())


def _chart(page: Page, live: LiveFss, xs: list[float], width: int) -> dict[str, Any]:
    page.goto(f"{live.url}/groups")
    page.wait_for_function("typeof FSS !== 'undefined' && typeof uPlot !== 'undefined'")
    return page.evaluate(CHART, [xs, width])  # type: ignore[no-any-return]


def test_a_time_chart_of_one_point_spans_minutes_with_distinct_labels(
    admin_page: Page, live_fss: LiveFss
) -> None:
    now = SystemClock().now().timestamp()
    chart = _chart(admin_page, live_fss, [now], 700)
    assert chart["max"] - chart["min"] <= 600, chart  # was 86,400,000 s
    assert chart["min"] <= now <= chart["max"]
    labels = chart["labels"]
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels


def test_time_chart_ticks_with_days_do_not_overlap_and_seconds_are_told_apart(
    admin_page: Page, live_fss: LiveFss
) -> None:
    now = SystemClock().now().timestamp()
    days = _chart(admin_page, live_fss, [now - 30 * 86400, now], 690)
    gaps = [b - a for a, b in zip(days["pixels"], days["pixels"][1:], strict=False)]
    assert all(" " in label for label in days["labels"]), days["labels"]  # "11-18 00:00"
    assert gaps and min(gaps) >= 85, (gaps, days["labels"])  # a label is ~75 px wide
    seconds = _chart(admin_page, live_fss, [now - 90, now - 60, now - 30, now], 690)
    assert len(set(seconds["labels"])) == len(seconds["labels"]), seconds["labels"]


def test_the_groups_table_with_its_row_actions_fits_a_1280_px_window_in_english(
    admin_page: Page, live_fss: LiveFss
) -> None:
    _unserved_group(live_fss)
    admin_page.goto(f"{live_fss.url}/groups")
    wait_until(lambda: admin_page.locator("#groups tbody .row-actions").count() >= 5, 15,
               "the groups table")
    fit = admin_page.evaluate("""() => {
      const wrap = document.querySelector("#groups").closest(".table-wrap");
      const right = wrap.getBoundingClientRect().right;
      const buttons = [...document.querySelectorAll("#groups tbody .row-actions button")];
      return { table: document.querySelector("#groups").scrollWidth, wrap: wrap.clientWidth,
               outside: buttons.filter((b) => b.getBoundingClientRect().right > right + 0.5)
                 .map((b) => b.textContent) };
    }""")
    assert fit["outside"] == [] and fit["table"] <= fit["wrap"], fit


def _contrast_violations(page: Page, selector: str) -> list[str]:
    page.add_script_tag(content=AXE)
    found: list[str] = page.evaluate("""async (selector) => {
      const r = await axe.run(selector, { runOnly: { type: 'rule', values: ['color-contrast'] },
                                          resultTypes: ['violations'] });
      return r.violations.flatMap((v) => v.nodes.map((n) => n.target.join(' ') + ' :: '
        + ((n.any[0] || {}).message || '')));
    }""", selector)
    return found


def test_the_health_banner_and_the_selection_bar_are_readable_in_the_dark_scheme(
    browser: Browser, live_fss: LiveFss
) -> None:
    _unserved_group(live_fss)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark",
                                  bypass_csp=True)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        admin, password = USERS.split(",")[0].split(":")
        login(page, live_fss.url, admin, password)
        page.wait_for_selector("#health-banner:not([hidden]) [data-check=job_unserved]")
        assert _contrast_violations(page, "#health-banner") == []  # 1.7:1 before
        page.goto(f"{live_fss.url}/groups")
        page.locator("#groups tbody input.select-group").first.check()
        page.wait_for_selector("#bulk-bar:not([hidden])")
        assert _contrast_violations(page, "#bulk-bar") == []
    finally:
        context.close()


def test_a_next_run_already_past_says_it_is_due(admin_page: Page, live_fss: LiveFss) -> None:
    past = SystemClock().now() - timedelta(minutes=10)
    group_id = groups.add_group(live_fss.engine, GroupSpec(
        caption="walk: unserved every minute", job_name="nobody-serves-this-either",
        interval_ms=60_000).validated(), past)
    admin_page.goto(f"{live_fss.url}/groups")
    row = admin_page.locator(f"#groups tbody tr:has(a[href='/groups/{group_id}'])")
    cell = row.locator("time").first
    wait_until(lambda: cell.count() == 1, 15, "the unserved group's row")
    assert cell.text_content().startswith("due "), cell.text_content()  # was "10 min ago"
    admin_page.goto(f"{live_fss.url}/groups/{group_id}")
    admin_page.wait_for_selector("#next-rel")
    wait_until(lambda: admin_page.text_content("#next-rel").startswith("(due "), 10,
               "the group page's next run")


def test_searching_a_task_id_without_a_task_says_there_is_none(
    admin_page: Page, live_fss: LiveFss
) -> None:
    admin_page.goto(f"{live_fss.url}/search?q=987654")
    admin_page.wait_for_selector("#task-missing:not([hidden])")
    assert "#987654" in admin_page.text_content("#task-missing")
    admin_page.goto(f"{live_fss.url}/search?q=gateway")
    admin_page.wait_for_selector("#group-results:not([hidden])")
    assert admin_page.locator("#task-missing").is_hidden()


def test_a_bad_cron_field_is_said_in_chinese_in_the_group_form(
    browser: Browser, live_fss: LiveFss
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                  extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        admin, password = USERS.split(",")[0].split(":")
        login(page, live_fss.url, admin, password)
        page.goto(f"{live_fss.url}/groups")
        page.click("#new-group")
        page.fill("input[name=caption]", "坏的 cron")
        page.fill("input[name=job_name]", "hello")
        page.check("input[name=kind][value=cron]")
        page.fill("input[name=cron]", "0 0 * 13 *")
        page.click("#group-save")
        error = page.locator("[data-field=cron] .field-error")
        wait_until(lambda: error.text_content(), 10, "the cron field's error")
        text = error.text_content() or ""
        assert "月字段有误" in text and "JAN-DEC" in text, text
        assert "month" not in text and " is not " not in text and " or " not in text, text
    finally:
        context.close()


def test_the_overview_card_says_an_online_client_is_kicked(
    admin_page: Page, live_fss: LiveFss
) -> None:
    admin_page.goto(f"{live_fss.url}/clients")
    kick = admin_page.locator("#clients tbody button").first
    kick.click()
    admin_page.click("#confirm-ok")
    admin_page.wait_for_selector("#clients tbody .badge:has-text('kicked')")
    try:
        admin_page.goto(f"{live_fss.url}/")
        admin_page.wait_for_selector("#clients-idle:not([hidden])")
        assert "1 take no new runs" in (admin_page.text_content("#clients-idle") or "")
    finally:
        admin_page.goto(f"{live_fss.url}/clients")
        admin_page.locator("#clients tbody button").first.click()
        if admin_page.locator("#confirm-dialog[open]").count():
            admin_page.click("#confirm-ok")
        admin_page.wait_for_selector("#clients tbody .badge:has-text('ready')")
