# ruff: noqa: RUF001  (expected Chinese text: full-width punctuation is correct there)
"""What fss itself writes, in Chinese in a real browser (issue 19 item 1).

* FSS.said (fss.js) gives for every sentence fss writes what fss.web.i18n.sentences.said
  gives on the server, and FSS.problemText what i18n.problem_text gives: the page and the
  tests that hold the catalogue (tests/web/test_i18n_reasons.py) agree;
* the overview of a cluster with a job no client serves shows the health banner in Chinese,
  the group shows why it cannot run in Chinese;
* a run the supervisor failed at its time limit (the real `fss dev` threads pool cannot
  stop a job: the supervisor's own sentence) shows its error and run log line in Chinese.
Screenshots: docs/screenshots/zh-reasons-overview.png, zh-reasons-task.png.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import sqlalchemy as sa
from conftest import LiveFss, screenshot, wait_until
from playwright.sync_api import Browser, Page, expect

from fss.domain.clock import SystemClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.store import groups
from fss.store.health import PROBLEM_TEXTS
from fss.store.tables import task
from fss.web import i18n
from fss.web.i18n.sentences import SENTENCES, said

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_i18n_reasons import NESTED, VALUE_SAMPLES, english, instance

CHINESE = {"locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"},
           "viewport": {"width": 1280, "height": 800}}


def chinese_page(browser: Browser, live: LiveFss) -> Page:
    context = browser.new_context(**CHINESE)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live.url}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/")
    return page


def test_the_page_translates_as_the_server_does(browser: Browser, live_fss: LiveFss) -> None:
    page = chinese_page(browser, live_fss)
    try:
        texts = [instance(s) for s in SENTENCES] + [
            "ValueError: boom", "attempt 2 failed: KeyError: 'a'; retry 1 of 3 in 5 s"]
        shown = page.evaluate("(texts) => texts.map((t) => FSS.said(t))", texts)
        assert shown == [said(i18n.CHINESE, t) for t in texts]
        problems = [{"code": code, "params": {
            n: NESTED.get(n) or VALUE_SAMPLES.get(n, "7") for n in re.findall(r"\{(\w+)\}", text)}}
            for code, text in PROBLEM_TEXTS.items()]
        problems.append({"code": "alert_target", "params": {
            "name": "ops", "failures": {"code": "failed_attempts",
                                        "params": {"count": 3, "window": "1 h"}},
            "given_up": {"code": "given_up_one", "params": {}},
            "last": {"code": "last_error", "params": {"error": "HTTP 500"}}}})
        shown = page.evaluate("(items) => items.map((p) => FSS.problemText(p, 'x'))", problems)
        assert shown == [i18n.problem_text(i18n.CHINESE, p["code"], p["params"])  # type: ignore[arg-type]
                         for p in problems]
    finally:
        page.context.close()


def test_health_banner_cannot_run_and_a_supervisor_failure_in_chinese(
    browser: Browser, live_fss: LiveFss
) -> None:
    now = SystemClock().now()
    unserved = groups.add_group(live_fss.engine, GroupSpec(
        caption="orphan export", job_name="nobody.serves", interval_ms=3_600_000).validated(), now)
    limited = groups.add_group(live_fss.engine, GroupSpec(
        caption="too slow", job_name="tail", interval_ms=3_600_000, max_run_s=1, retries=0,
        data={"lines": 400, "pause_s": 0.25}).validated(), now)
    page = chinese_page(browser, live_fss)
    try:
        item = page.locator('#health-problems li[data-check="job_unserved"]')
        expect(item).to_contain_text("没有在线客户端服务作业“nobody.serves”（1 个已启用任务组）")
        details = page.locator("#health-problems [data-detail]").all_inner_texts()
        assert details and all(not english(d, {"orphan", "export"}) for d in details), details
        page.wait_for_timeout(300)
        path = screenshot(page, "zh-reasons-overview")
        assert path.stat().st_size > 10_000

        page.goto(f"{live_fss.url}/groups/{unserved}")
        expect(page.locator("#blocked-reasons")).to_contain_text(
            "没有在线客户端服务作业 nobody.serves")
        assert not english(page.locator("#blocked-reasons").inner_text(), {"orphan", "export"})

        def failed() -> int | None:
            with live_fss.engine.connect() as conn:
                row = conn.execute(sa.select(task.c.id, task.c.error).where(
                    task.c.task_group_id == limited, task.c.status == TaskStatus.FAIL)).first()
            return None if row is None else int(row.id)

        task_id = wait_until(failed, 60, "the supervisor to fail the run at its time limit")
        page.goto(f"{live_fss.url}/tasks/{task_id}")
        error = page.locator(".prop-value .error-line, dd .error-line").first
        expect(error).to_contain_text("超出运行时限 1 秒")
        expect(page.locator(".log-content", has_text="超出运行时限 1 秒").first).to_be_visible()
        text = error.inner_text()
        assert not english(text), text
        with live_fss.engine.connect() as conn:
            stored = conn.execute(sa.select(task.c.error).where(task.c.id == task_id)).scalar()
        assert str(stored).startswith("time limit exceeded after 1 s: still working")
        page.wait_for_timeout(300)
        screenshot(page, "zh-reasons-task")
    finally:
        page.context.close()
