"""The security headers in a real browser: no page of the UI (the Alerts pages included, with
an alert and its delivery attempts to show; nor the login form or the API docs) reports a
Content-Security-Policy violation, and a page on another port of the same
host cannot frame the signed-in UI (screenshot of the attempt: /tmp/fss-framing-attempt.png).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import VIEWPORT, LiveFss, wait_until
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from fss.domain.alert_targets import TargetSpec
from fss.store import alert_targets
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_target,
    inserted_id,
)

FRAMING_SHOT = Path("/tmp/fss-framing-attempt.png")
# Recorded before any script of the page runs, so a violation during loading is seen too.
COLLECT_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(
    `${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
});
"""


def watch(page: Page) -> list[str]:
    console: list[str] = []

    def remember(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            console.append(message.text)

    page.on("console", remember)
    page.add_init_script(COLLECT_VIOLATIONS)
    return console


def first_id(live: LiveFss, table: str) -> int:
    with live.engine.connect() as conn:
        value = conn.exec_driver_sql(f"SELECT MIN(id) FROM {table}").scalar()
    assert value is not None, table
    return int(value)


@pytest.fixture
def an_alert(live_fss: LiveFss) -> Iterator[int]:
    """An open alert with a notice delivered to a target after one failed attempt: the
    alert page then renders every part it has (deliveries, attempts, the answer)."""
    now = datetime.now(timezone.utc)
    target = alert_targets.add_target(live_fss.engine, TargetSpec(
        "csp-webhook", "webhook", {"url": "https://hooks.example.com/fss/T1", "secret": "s3"},
        is_default=False,
    ).validated(), now)

    def insert(table: sa.Table, **values: object) -> int:
        with live_fss.engine.begin() as conn:
            return inserted_id(conn.execute(table.insert().values(**values)))

    group_id = first_id(live_fss, "task_group")
    subject = f"group:{group_id}"
    alert_id = insert(
        alert, rule="run_failed", subject=subject, state="open", task_group_id=group_id,
        title="csp check: run failed", detail="ValueError: <b>not markup</b>", count=2,
        opened_at=now - timedelta(minutes=5), last_at=now, notified_at=now,
        open_key=f"run_failed|{subject}|csp-test",
    )
    notice = insert(alert_notice, alert_id=alert_id, kind="firing", created_at=now,
                    expanded_at=now)
    delivery = insert(
        alert_delivery, notice_id=notice, target_id=target.id, target_name=target.name,
        state="sent", attempts=2, created_at=now, sent_at=now,
        idempotency_key=f"n{notice}-t{target.id}",
    )
    for outcome, status in (("failed", 500), ("sent", 200)):
        insert(alert_attempt, delivery_id=delivery, target_name=target.name, at=now,
               outcome=outcome, status_code=status, answer="ok", error=None, duration_ms=12,
               node="csp-node")
    yield alert_id
    with live_fss.engine.begin() as conn:
        conn.execute(alert_attempt.delete().where(alert_attempt.c.delivery_id == delivery))
        conn.execute(alert_delivery.delete().where(alert_delivery.c.id == delivery))
        conn.execute(alert_notice.delete().where(alert_notice.c.id == notice))
        conn.execute(alert.delete().where(alert.c.id == alert_id))
        conn.execute(alert_target.delete().where(alert_target.c.id == target.id))


def test_no_page_reports_a_csp_violation(
    admin_page: Page, live_fss: LiveFss, browser: Browser, an_alert: int
) -> None:
    console = watch(admin_page)
    wait_until(lambda: first_id(live_fss, "task"), 15, "a task")
    paths = ["/", "/groups", f"/groups/{first_id(live_fss, 'task_group')}", "/tasks",
             f"/tasks/{first_id(live_fss, 'task')}", "/clients", "/nodes", "/alerts",
             f"/alerts/{an_alert}", "/alerts/targets", "/api/docs"]
    violations: dict[str, list[str]] = {}
    for path in paths:
        admin_page.goto(f"{live_fss.url}{path}")
        admin_page.wait_for_load_state("load")
        admin_page.wait_for_timeout(800)  # the page's scripts fetch and render
        violations[path] = admin_page.evaluate("window.__csp")
        if path == f"/alerts/{an_alert}":  # its script filled it: attempts are listed
            expect(admin_page.get_by_text("csp check: run failed").first).to_be_visible()
            expect(admin_page.get_by_text("csp-webhook").first).to_be_visible()
    # The docs page rendered, so its inline setup script ran under the nonce.
    # (Swagger UI builds it from the OpenAPI document after load: slow on a busy host.)
    expect(admin_page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible(
        timeout=20_000)

    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    login = context.new_page()
    console += watch(login)
    login.goto(f"{live_fss.url}/login")
    login.wait_for_load_state("load")
    violations["/login"] = login.evaluate("window.__csp")
    context.close()

    assert {p: v for p, v in violations.items() if v} == {}
    assert console == []


def test_the_task_list_progress_bars_need_no_style_attribute(
    admin_page: Page, live_fss: LiveFss
) -> None:
    """A running task's bar gets its width through the CSSOM: with style-src-attr 'none' a
    style attribute would be refused (and the bar would stay empty)."""
    watch(admin_page)
    admin_page.goto(f"{live_fss.url}/tasks")
    # "slow sync" runs 1.2 s of every 2.5 s: a poll sees it Scheduler or Working.
    bar = admin_page.wait_for_selector(".mini-progress-bar", state="attached", timeout=15_000)
    assert bar is not None
    assert bar.evaluate("b => b.style.width").endswith("%")
    assert admin_page.evaluate("window.__csp") == []


@pytest.fixture
def framer(tmp_path: Path, live_fss: LiveFss) -> Iterator[str]:
    """An attacker's page on another port of the same host, framing the signed-in UI."""
    (tmp_path / "index.html").write_text(
        "<!doctype html><title>framer</title><h1>another site on this host</h1>"
        f'<iframe id="ui" src="{live_fss.url}/groups" width="1200" height="600"></iframe>'
    )
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_page_on_another_port_cannot_frame_the_signed_in_ui(
    admin_page: Page, framer: str, live_fss: LiveFss
) -> None:
    console: list[str] = []
    admin_page.on("console", lambda m: console.append(m.text))
    # The signed-in UI itself works in this browser context (its cookie is there).
    admin_page.goto(f"{live_fss.url}/groups")
    admin_page.wait_for_selector("#groups tbody tr")

    admin_page.goto(framer)
    admin_page.wait_for_load_state("load")
    admin_page.wait_for_timeout(1000)
    admin_page.screenshot(path=str(FRAMING_SHOT), full_page=True)

    (frame,) = [f for f in admin_page.frames if f != admin_page.main_frame]
    assert not frame.url.startswith(live_fss.url), frame.url  # an error page, not the UI
    assert any("frame-ancestors" in line or "X-Frame-Options" in line for line in console), (
        console
    )
