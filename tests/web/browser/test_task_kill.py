"""The task page's Kill button: shown to admins while the task is Working, confirmed in the
page's own dialog, sent with the session's CSRF token; the answer is the toast. `fss dev`
runs a threads pool in another process (broker memory://), so the kill reaches no worker
here and the page shows that refusal: the kill itself is tested on a real worker in
tests/e2e/test_time_limits.py."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import LiveFss, wait_until
from playwright.sync_api import Page, expect

from fss import kills
from fss.domain.clock import SystemClock
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.store import groups
from fss.store.tables import run_log, task


def working_task(live: LiveFss) -> int:
    spec = GroupSpec(caption="long tail", job_name="tail", interval_ms=3_600_000,
                     data={"lines": 120, "pause_s": 0.25})
    group_id = groups.add_group(live.engine, spec.validated(), SystemClock().now())

    def running() -> int | None:
        with live.engine.connect() as conn:
            row = conn.execute(sa.select(task.c.id).where(
                task.c.task_group_id == group_id, task.c.status == TaskStatus.WORKING)).first()
        return None if row is None else int(row.id)

    found = wait_until(running, 20, "the long run to start")
    return int(found)  # type: ignore[call-overload]


def test_an_admin_asks_a_kill_from_the_task_page_and_sees_the_answer(
    admin_page: Page, viewer_page: Page, live_fss: LiveFss, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The web app runs in this process: nobody can answer its kill, so it waits a fraction of
    # fss.kills.REPLY_TIMEOUT_S (3 s) for the same refusal.
    monkeypatch.setattr(kills, "REPLY_TIMEOUT_S", 0.2)
    task_id = working_task(live_fss)

    viewer_page.goto(f"{live_fss.url}/tasks/{task_id}")
    expect(viewer_page.locator("#status-badge")).to_contain_text("Working")
    assert viewer_page.locator("#kill-task").count() == 0  # no write controls for a viewer

    page = admin_page
    page.goto(f"{live_fss.url}/tasks/{task_id}")
    kill = page.locator("#kill-task")
    expect(kill).to_be_visible()
    kill.click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text(f"Kill task {task_id}?")
    page.click("#confirm-ok")
    # The request went through auth and CSRF to the kill; nobody answers it here.
    toast = page.locator(".toast-error")
    expect(toast).to_contain_text(f"task {task_id}: not killed", timeout=10_000)
    with live_fss.engine.connect() as conn:
        lines = list(conn.execute(sa.select(run_log.c.content)
                                  .where(run_log.c.task_id == task_id)).scalars())
    assert any(line.startswith("kill requested by admin (web), not done") for line in lines)


def test_the_kill_button_is_hidden_when_the_task_is_not_working(
    admin_page: Page, live_fss: LiveFss
) -> None:
    with live_fss.engine.connect() as conn:
        waiting = conn.execute(sa.select(task.c.id).where(task.c.status == TaskStatus.NONE)
                               .limit(1)).scalar_one()
    admin_page.goto(f"{live_fss.url}/tasks/{waiting}")
    expect(admin_page.locator("#status-badge")).to_contain_text("Waiting")
    expect(admin_page.locator("#kill-task")).to_be_hidden()
