"""The task page lists every attempt of a retried task (status, client, times, error), in a
real browser against a real `fss dev`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from conftest import LiveFss
from playwright.sync_api import Page, expect

from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.store import groups
from fss.store.tables import task, task_run


def test_the_task_page_lists_every_attempt(viewer_page: Page, live_fss: LiveFss) -> None:
    now = datetime.now(timezone.utc)
    # A job nobody serves: the dev scheduler leaves its task alone; its attempts are written
    # here as the recorder writes a retried task's.
    group_id = groups.add_group(
        live_fss.engine,
        GroupSpec(caption="retried import", job_name="nobody-runs-this", interval_ms=3_600_000),
        now,
    )
    first_end = now + timedelta(seconds=1)
    with live_fss.engine.begin() as conn:
        task_id = conn.execute(
            sa.select(task.c.id).where(task.c.task_group_id == group_id)
        ).scalar_one()
        conn.execute(task_run.insert().values(
            task_id=task_id, attempt=1, shard_index=0, task_group_id=group_id,
            client_id="w-first", status=int(TaskStatus.FAIL), progress=40, dispatched_at=now,
            run_at=now, finish_at=first_end,
            error="Traceback (most recent call last):\nValueError: first try failed",
        ))
        conn.execute(task.update().where(task.c.id == task_id).values(
            status=int(TaskStatus.SUCCESS), attempt=2, client_id="w-second", progress=100,
            dispatched_at=first_end, run_at=first_end, finish_at=first_end + timedelta(seconds=1),
            run_speed=1000, open_group_id=None,
        ))

    viewer_page.goto(f"{live_fss.url}/tasks/{task_id}")
    rows = viewer_page.locator("#attempts tbody tr")
    expect(rows).to_have_count(2)
    expect(viewer_page.locator("#attempts-panel")).to_be_visible()
    expect(rows.nth(0)).to_contain_text("w-first")
    expect(rows.nth(0)).to_contain_text("Fail")
    expect(rows.nth(0)).to_contain_text("ValueError: first try failed")
    expect(rows.nth(1)).to_contain_text("w-second")
    expect(rows.nth(1)).to_contain_text("Success")
