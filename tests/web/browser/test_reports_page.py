"""The Reports page and a group's report section in Chromium, over a SQLite database whose
runs were recorded through fss.store (the trigger counted them) at known times, and a web
app on a manual clock: the totals, the chart's accessible name, the per-day table, the
zone switch (the browser's zone, Asia/Shanghai, moves an evening run to the next day) and
the clients, one of which left. Screenshot docs/screenshots/reports.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import CHROMIUM_ARGS, USERS, ServerThread, login, screenshot
from playwright.sync_api import Browser, Page, Route, expect
from web_helpers import CLIENT, add_group, record, register_client, run_once

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.events import ClientLeft
from fss.store.engine import create_engine
from fss.store.migrate import upgrade
from fss.web import create_web_app
from fss.web.config import WebSettings, parse_users

UTC = timezone.utc
NOW = datetime(2031, 3, 20, 10, 0, tzinfo=UTC)
# (days before NOW's day, hour UTC, success?) for group "import"; "export" runs once a day.
RUNS = [(6, 9, True), (6, 10, True), (5, 9, False), (4, 9, True), (4, 11, True),
        (3, 9, True), (2, 9, False), (2, 10, True), (1, 20, True), (0, 8, True)]
_ = CHROMIUM_ARGS  # the browser fixture (conftest) launches Chromium with these


class Seeded:
    def __init__(self, url: str, import_id: int) -> None:
        self.url = url
        self.import_id = import_id


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    db_url = f"sqlite:///{Path(tmp_path_factory.mktemp('reports')) / 'fss.db'}"
    engine = create_engine(db_url)
    upgrade(engine)
    start = NOW - timedelta(days=8)
    register_client(engine, start)
    register_client(engine, start, client_id="worker-2")
    importer = add_group(engine, start, caption="import")
    exporter = add_group(engine, start, caption="export")
    for back, hour, ok in RUNS:
        day = NOW.replace(hour=hour) - timedelta(days=back)
        run_once(engine, importer, day, success=ok, error=None if ok else "boom")
    for back in range(7):
        run_once(engine, exporter, NOW.replace(hour=7) - timedelta(days=back))
    record(engine, NOW - timedelta(hours=1), ClientLeft(CLIENT, NOW, incarnation="a"))
    register_client(engine, NOW - timedelta(seconds=2), client_id="worker-2")
    engine.dispose()
    settings = Settings(database_url=db_url, broker_url="memory://")
    app = create_web_app(settings, WebSettings(users=parse_users(USERS)), ManualClock(NOW))
    server = ServerThread(app)
    url = server.start()
    try:
        yield Seeded(url, importer)
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, seeded: Seeded) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id="Asia/Shanghai"
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    login(page, seeded.url, "viewer", "pw2")
    yield page
    context.close()


def test_the_reports_page_shows_the_seeded_runs(page: Page, seeded: Seeded) -> None:
    page.goto(f"{seeded.url}/reports")
    report = page.locator("[data-run-report]")
    expect(report.locator("[data-report-total]")).to_have_text("17")
    expect(report.locator("[data-report-success]")).to_have_text("15")
    expect(report.locator("[data-report-fail]")).to_have_text("2")
    expect(report.locator("[data-report-rate]")).to_have_text("88.2 %")
    expect(report.locator("[data-report-zone]")).to_have_text("Days are calendar days in UTC.")
    chart = page.get_by_role(
        "img", name="Runs per day, last 7 days in UTC: 15 succeeded, 2 failed.")
    expect(chart).to_be_visible()
    days = report.locator("[data-report-days-table] tbody tr")
    expect(days).to_have_count(7)
    report.locator("summary").click()
    # 2031-03-18 (two days back): one failure at 09:00, one success at 10:00, export at 07:00
    expect(days.nth(2)).to_have_text("2031-03-1832166.7 %")

    clients = page.locator("#client-report-table tbody tr")
    expect(clients).to_have_count(2)
    gone = page.locator('#client-report-table tr[data-client="worker-1"]')
    expect(gone).to_have_attribute("data-state", "offline")
    expect(gone.locator('[data-col="processed"]')).to_have_text("17")
    expect(gone.locator('[data-col="failed"]')).to_have_text("2")
    expect(page.locator('#client-report-table tr[data-client="worker-2"]')).to_have_attribute(
        "data-state", "online")
    screenshot(page, "reports")


def test_the_browser_zone_moves_an_evening_run_to_the_next_day(
    page: Page, seeded: Seeded
) -> None:
    page.goto(f"{seeded.url}/reports")
    report = page.locator("[data-run-report]")
    expect(report.locator("[data-report-total]")).to_have_text("17")
    report.locator("[data-report-tz]").select_option("Asia/Shanghai")
    expect(report.locator("[data-report-zone]")).to_have_text(
        "Days are calendar days in Asia/Shanghai.")
    assert "tz=Asia%2FShanghai" in page.url or "tz=Asia/Shanghai" in page.url
    report.locator("summary").click()
    # the run of 2031-03-19 20:00 UTC is on the 20th in Shanghai, with today's two runs
    expect(report.locator("[data-report-days-table] tbody tr").first).to_have_text(
        "2031-03-20330100.0 %")
    report.locator("[data-report-days]").select_option("30")
    expect(report.locator("[data-report-days-table] tbody tr")).to_have_count(30)
    expect(page.get_by_role("img", name="Runs per day, last 30 days in Asia/Shanghai: "
                                        "15 succeeded, 2 failed.")).to_be_visible()


def test_the_group_page_reports_its_own_runs(page: Page, seeded: Seeded) -> None:
    page.goto(f"{seeded.url}/groups/{seeded.import_id}")
    report = page.locator("[data-run-report]")
    expect(report.locator("[data-report-total]")).to_have_text("10")
    expect(report.locator("[data-report-fail]")).to_have_text("2")
    expect(page.get_by_role("img", name="Runs per day, last 7 days in UTC: 8 succeeded, "
                                        "2 failed.")).to_be_visible()


CHART_COLOURS = """(svg) => {
    const rgb = (text) => (text.match(/[\\d.]+/g) || []).slice(0, 4).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map((c) => {
        const s = c / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    }).reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
    let node = svg, back = null;
    while (node && !back) {  // the first ancestor with a background of its own
        const c = rgb(getComputedStyle(node).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0)) back = c;
        node = node.parentElement;
    }
    const ratio = (colour) => {
        const [a, b] = [lum(rgb(colour)), lum(back)].sort((x, y) => y - x);
        return Math.round(((a + 0.05) / (b + 0.05)) * 100) / 100;
    };
    const of = (selector, prop) => getComputedStyle(svg.querySelector(selector))[prop];
    return {
        axis: ratio(of(".axis", "fill")), rate: ratio(of(".rate-line", "stroke")),
        dot: ratio(of(".rate-dot", "fill")), success: ratio(of(".bar-success", "fill")),
        fail: ratio(of(".bar-fail", "fill")), grid: of(".grid", "stroke"),
    };
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_chart_follows_the_colour_scheme_with_enough_contrast(
    browser: Browser, seeded: Seeded, scheme: str
) -> None:
    """Axis text 4.5:1 and the rate line, its dots and the bars 3:1 (WCAG 1.4.3, 1.4.11)
    against the panel, light and dark: the chart had fixed light colours, its rate line
    1.1:1 on the dark panel."""
    context = browser.new_context(viewport={"width": 1280, "height": 800},  # type: ignore[arg-type]
                                  color_scheme=scheme)
    page = context.new_page()
    try:
        login(page, seeded.url, "viewer", "pw2")
        page.goto(f"{seeded.url}/reports")
        svg = page.locator("[data-report-chart] svg")
        expect(svg.locator(".rate-line")).to_have_count(1)
        contrast = svg.evaluate(CHART_COLOURS)
        assert contrast["axis"] >= 4.5, contrast
        assert min(contrast["rate"], contrast["dot"], contrast["success"],
                   contrast["fail"]) >= 3, contrast
        if scheme == "dark":
            assert contrast["grid"] != "rgb(236, 238, 241)", contrast  # the light grid
            screenshot(page, "reports-dark")
    finally:
        context.close()


def test_a_range_chosen_while_a_refresh_is_under_way_is_shown(
    page: Page, seeded: Seeded
) -> None:
    """The page refreshes every 30 s; a choice made while a refresh was in flight was
    dropped (poll's now() did nothing while running) and shown only 30 s later. The clients
    report is held 1.5 s so the choice lands inside the refresh."""
    def slow(route: Route) -> None:
        time.sleep(1.5)
        route.continue_()

    page.route("**/api/v1/reports/clients*", slow)
    page.goto(f"{seeded.url}/reports")
    report = page.locator("[data-run-report]")
    expect(report.locator("[data-report-total]")).to_have_text("17")  # clients still pending
    report.locator("[data-report-days]").select_option("30")
    expect(report.locator("[data-report-days-table] tbody tr")).to_have_count(30, timeout=8000)
