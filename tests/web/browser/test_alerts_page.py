"""The Alerts pages in a real browser against a real `fss dev`: an admin acknowledges an
alert, silences a group, reads every delivery attempt, adds a target, tests it against a
real local receiver and removes one; a viewer sees the same without any control; at 390 px
the pages fit the window. Screenshots: docs/screenshots/alerts.png, alert.png,
alert-targets.png (and alerts-narrow.png).

The dev scheduler raises alerts of its own (the flaky group fails): the tests look only at
the rows they made, and their targets are no defaults, so none of its notices go there."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import LiveFss, screenshot
from playwright.sync_api import ConsoleMessage, Page, expect

from fss.domain.alert_targets import TargetSpec
from fss.store import alert_targets
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_silence,
    alert_target,
    inserted_id,
)

SECRET = "whsec-never-on-a-page-0189"
NARROW = {"width": 390, "height": 844}


class Receiver:
    """A local HTTP receiver: 200 with a JSON answer to every POST."""

    def __init__(self) -> None:
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.count += 1
                data = b'{"received": true, "by": "local receiver"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0-secret-path"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def insert(live: LiveFss, table: sa.Table, **values: Any) -> int:
    with live.engine.begin() as conn:
        return inserted_id(conn.execute(table.insert().values(**values)))


def add_alert(live: LiveFss, now: datetime, rule: str, title: str, *, group_id: int | None = None,
              client_id: str | None = None, state: str = "open", count: int = 1,
              age: timedelta = timedelta(minutes=20)) -> int:
    subject = f"group:{group_id}" if group_id is not None else f"client:{client_id}"
    return insert(
        live, alert, rule=rule, subject=subject, state=state, task_group_id=group_id,
        client_id=client_id, title=title, detail="ValueError: the import file is empty",
        count=count, opened_at=now - age, last_at=now - age / 4, notified_at=now - age,
        # A key of its own, so the dev scheduler's own alerts never count these up.
        open_key=f"{rule}|{subject}|browser-test" if state == "open" else None,
        resolved_at=None if state == "open" else now - age / 2,
        resolved_note=None if state == "open" else "the group succeeded again",
    )


def add_deliveries(live: LiveFss, now: datetime, alert_id: int) -> None:
    """The alert's firing notice, delivered to two targets: one after a 500 and a timeout,
    the other at once."""
    ops = alert_targets.add_target(live.engine, TargetSpec(
        "ops-webhook", "webhook", {"url": "https://hooks.example.com/fss/T123", "secret": SECRET},
        is_default=False,
    ).validated(), now)
    chat = alert_targets.add_target(live.engine, TargetSpec(
        "team-dingtalk", "dingtalk", {"url": "https://oapi.dingtalk.com/robot/send?access_token=x1"},
        is_default=False,
    ).validated(), now)
    notice = insert(live, alert_notice, alert_id=alert_id, kind="firing",
                    created_at=now - timedelta(minutes=20), expanded_at=now - timedelta(minutes=20))
    Try = tuple[str, int | None, str | None, str | None, int]
    attempts: list[tuple[alert_targets.TargetRow, list[Try]]] = [
        (ops, [("failed", 500, "upstream unavailable", None, 803),
              ("failed", None, None, "no answer within 5 s", 5001),
              ("sent", 200, "ok", None, 41)]),
        (chat, [("sent", 200, '{"errcode":0,"errmsg":"ok"}', None, 120)]),
    ]
    for target, tries in attempts:
        delivery = insert(
            live, alert_delivery, notice_id=notice, target_id=target.id, target_name=target.name,
            state="sent", attempts=len(tries), created_at=now - timedelta(minutes=20),
            sent_at=now - timedelta(minutes=19), idempotency_key=f"n{notice}-t{target.id}",
        )
        for index, (outcome, status, answer, error, ms) in enumerate(tries):
            insert(live, alert_attempt, delivery_id=delivery, target_name=target.name,
                   at=now - timedelta(minutes=20) + timedelta(seconds=10 * index),
                   outcome=outcome, status_code=status, answer=answer, error=error,
                   duration_ms=ms, node="dev-node")


@pytest.fixture
def seeded(live_fss: LiveFss) -> Iterator[dict[str, int]]:
    now = datetime.now(timezone.utc)
    flaky = live_fss.group_ids["flaky import"]
    nightly = live_fss.group_ids["nightly report"]
    ids = {
        "failed": add_alert(live_fss, now, "run_failed",
                            "flaky import: run failed <script>alert(1)</script>",
                            group_id=flaky, count=3),
        "late": add_alert(live_fss, now, "group_late", "nightly report: no successful run since "
                          "03:00", group_id=nightly, age=timedelta(hours=2)),
        "lost": add_alert(live_fss, now, "client_lost", "client gpu-7 went silent",
                          client_id="gpu-7", age=timedelta(minutes=5)),
        "resolved": add_alert(live_fss, now, "hung", "slow sync: run failed as hung",
                              group_id=live_fss.group_ids["slow sync"], state="resolved",
                              age=timedelta(hours=5)),
    }
    add_deliveries(live_fss, now, ids["failed"])
    yield ids
    with live_fss.engine.begin() as conn:
        for table in (alert_attempt, alert_delivery, alert_notice, alert_silence, alert_target):
            conn.execute(table.delete())
        conn.execute(alert.delete().where(alert.c.id.in_(list(ids.values()))))


def csp_violations(page: Page) -> list[str]:
    found: list[str] = []

    def remember(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            found.append(message.text)

    page.on("console", remember)
    return found


def row_of(page: Page, table: str, alert_id: int) -> Any:
    return page.locator(f"#{table} tbody tr[data-key='{alert_id}']")


def test_an_admin_acknowledges_silences_and_reads_every_attempt(
    admin_page: Page, live_fss: LiveFss, seeded: dict[str, int]
) -> None:
    page, base = admin_page, live_fss.url
    violations = csp_violations(page)
    page.goto(f"{base}/alerts")
    failed = row_of(page, "open-alerts", seeded["failed"])
    expect(failed).to_contain_text("flaky import: run failed <script>alert(1)</script>")
    expect(failed.locator("a[href^='/groups/']")).to_have_text("flaky import")
    expect(row_of(page, "open-alerts", seeded["lost"])).to_contain_text("client:gpu-7")
    expect(row_of(page, "resolved-alerts", seeded["resolved"])).to_contain_text("resolved")

    failed.get_by_role("button", name="Acknowledge").click()
    expect(failed.locator("td").nth(8)).to_have_text("admin")
    expect(failed.get_by_role("button", name="Acknowledge")).to_have_count(0)
    with live_fss.engine.connect() as conn:
        acked = conn.execute(sa.select(alert.c.acked_by).where(alert.c.id == seeded["failed"]))
        assert acked.scalar_one() == "admin"

    late = row_of(page, "open-alerts", seeded["late"])
    late.get_by_role("button", name="silence the group").click()
    dialog = page.locator("#silence-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Silence nightly report")
    dialog.get_by_role("radio", name="4 h", exact=True).check()
    dialog.locator("input[name=note]").fill("report database migrated tonight")
    dialog.get_by_role("button", name="Silence").click()
    expect(page.locator("#silences tbody tr")).to_have_count(1)
    expect(page.locator("#silences")).to_contain_text("report database migrated tonight")
    expect(late).to_contain_text("silenced")
    with live_fss.engine.connect() as conn:
        row = conn.execute(sa.select(alert_silence)).one()
    assert row.task_group_id == live_fss.group_ids["nightly report"] and row.by_user == "admin"
    until = row.until.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)
    assert timedelta(hours=3, minutes=58) < until <= timedelta(hours=4)
    page.reload()  # the screenshot without the toasts, scrolled as a visitor sees it
    expect(row_of(page, "open-alerts", seeded["late"])).to_contain_text("silenced")
    screenshot(page, "alerts")

    page.select_option("#filters select[name=rule]", "client_lost")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/alerts?state=all&rule=client_lost*")
    expect(page.locator("#open-alerts tbody tr[data-key]")).to_have_count(1)
    expect(page.locator("#resolved-panel .empty")).to_be_visible()

    page.goto(f"{base}/alerts/{seeded['failed']}")
    title = "flaky import: run failed <script>alert(1)</script>"
    expect(page.locator("#title")).to_have_text(title)
    expect(page.locator("#state-badge")).to_have_text("open")
    expect(page.locator("#props")).to_contain_text("ValueError: the import file is empty")
    expect(page.locator("#props")).to_contain_text("a run failed after its retries were used up")
    expect(page.locator("#ack-alert")).to_be_hidden()  # acknowledged already
    expect(page.locator("#notices tbody tr")).to_have_count(1)
    expect(page.locator("#deliveries tbody tr")).to_have_count(2)
    attempts = page.locator("#attempts tbody tr")
    expect(attempts).to_have_count(4)
    expect(page.locator("#attempts")).to_contain_text("upstream unavailable")
    expect(page.locator("#attempts")).to_contain_text("no answer within 5 s")
    expect(page.locator("#attempts")).to_contain_text('{"errcode":0,"errmsg":"ok"}')
    expect(attempts.filter(has_text="upstream unavailable")).to_contain_text("500")
    expect(page.locator("#attempts")).to_contain_text("dev-node")
    screenshot(page, "alert")
    assert violations == []


def test_an_admin_adds_tests_and_removes_targets_and_never_sees_a_secret(
    admin_page: Page, live_fss: LiveFss, seeded: dict[str, int], receiver: Receiver
) -> None:
    page, base = admin_page, live_fss.url
    page.goto(f"{base}/alerts/targets")
    expect(page.locator("#targets tbody tr")).to_have_count(2)
    ops = page.locator("#targets tbody tr[data-key='ops-webhook']")
    expect(ops).to_contain_text("secret=***")
    expect(ops).to_contain_text("url=https://hooks.example.com/***")

    form = page.locator("#target-form")
    form.locator("input[name=name]").fill("local-hook")
    form.locator("select[name=kind]").select_option("webhook")
    form.locator("input[name=url]").fill("ftp://files.example.com/in")
    form.get_by_role("button", name="Add target").click()
    expect(form.locator("[data-error-for=url]")).to_contain_text("url: must be http")
    form.locator("input[name=url]").fill(receiver.url)
    form.locator("input[name=secret]").fill(SECRET)
    form.locator("input[name=rules]").fill("run_failed, group_late")
    # Not a default target: the dev scheduler's own alerts must not reach this receiver.
    form.locator("input[name=default]").uncheck()
    form.get_by_role("button", name="Add target").click()
    added = page.locator("#targets tbody tr[data-key='local-hook']")
    expect(added).to_contain_text("group_late")
    expect(form.locator("input[name=secret]")).to_have_value("")  # never filled back in

    added.get_by_role("button", name="Test").click()
    result = page.locator("#test-result")
    expect(result).to_be_visible()
    expect(result.locator("h2")).to_have_text("Test of local-hook: delivered")
    expect(result).to_contain_text('{"received": true, "by": "local receiver"}')
    expect(result).to_contain_text("200")
    assert receiver.count == 1

    chat = page.locator("#targets tbody tr[data-key='team-dingtalk']")
    chat.get_by_role("button", name="Remove").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Remove team-dingtalk?")
    page.click("#confirm-ok")
    expect(chat).to_have_count(0)
    with live_fss.engine.connect() as conn:
        names = sorted(conn.execute(sa.select(alert_target.c.name)).scalars())
    assert names == ["local-hook", "ops-webhook"]
    assert SECRET not in page.content() and "T0-secret-path" not in page.content()
    expect(page.locator(".toast")).to_have_count(0, timeout=8000)  # they fade after 4 s
    screenshot(page, "alert-targets")


def test_a_viewer_reads_the_alerts_without_any_control(
    viewer_page: Page, live_fss: LiveFss, seeded: dict[str, int]
) -> None:
    page, base = viewer_page, live_fss.url
    page.goto(f"{base}/alerts")
    expect(row_of(page, "open-alerts", seeded["failed"])).to_be_visible()
    expect(page.locator("#open-alerts button")).to_have_count(0)
    page.goto(f"{base}/alerts/{seeded['failed']}")
    expect(page.locator("#attempts tbody tr")).to_have_count(4)
    expect(page.locator("#ack-alert, #silence-group")).to_have_count(0)
    page.goto(f"{base}/alerts/targets")
    expect(page.locator("#targets tbody tr")).to_have_count(2)
    expect(page.locator("#target-form, #targets button")).to_have_count(0)
    assert SECRET not in page.content()


def test_the_alerts_page_fits_a_390_px_window(
    admin_page: Page, live_fss: LiveFss, seeded: dict[str, int]
) -> None:
    page, base = admin_page, live_fss.url
    page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    for path in ("/alerts", f"/alerts/{seeded['failed']}", "/alerts/targets"):
        page.goto(f"{base}{path}")
        page.wait_for_selector("table.stack-narrow tbody tr")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW["width"], f"{path} is {width} px wide"
    page.goto(f"{base}/alerts")
    button = row_of(page, "open-alerts", seeded["late"]).get_by_role("button", name="Acknowledge")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= NARROW["width"]
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the shot
    screenshot(page, "alerts-narrow")
