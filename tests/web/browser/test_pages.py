"""The web UI in a real browser: every page, live updates, forms, roles and untrusted text.

Runs against a real `fss dev` (see conftest.py). Every page is screenshotted into
docs/screenshots/ (1280x800, full page) each run.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from conftest import LiveFss, screenshot, wait_until
from playwright.sync_api import Page, expect

from fss.domain.group_spec import GroupSpec
from fss.store import groups

PAGES_TIMEOUT_S = 15.0


def newest_task_id(live: LiveFss, group_id: int, status: int | None = None) -> int | None:
    query = f"SELECT MAX(id) FROM task WHERE task_group_id = {int(group_id)}"
    if status is not None:
        query += f" AND status = {int(status)}"
    with live.engine.connect() as conn:
        value = conn.exec_driver_sql(query).scalar()
    return int(value) if value is not None else None


def test_every_page_renders_from_the_api_and_is_screenshotted(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    flaky = live_fss.group_ids["flaky import"]
    # Some history first, so the screenshots show a working system.
    wait_until(lambda: newest_task_id(live_fss, flaky, status=3), PAGES_TIMEOUT_S, "a failed run")

    page.goto(f"{base}/")
    expect(page.locator("[data-status-count=Success]")).not_to_have_text("\u2013")
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    expect(page.locator("#failures tbody tr").first).to_contain_text("flaky")
    page.wait_for_selector("#runs-chart canvas")
    screenshot(page, "overview")

    page.goto(f"{base}/groups")
    expect(page.locator("#groups tbody tr")).to_have_count(5)
    expect(page.locator("#groups")).to_contain_text("nightly report")
    screenshot(page, "groups")
    page.click("#new-group")
    page.fill("[name=caption]", "hourly export")
    page.fill("[name=job_name]", "export.run")
    page.check("input[name=kind][value=cron]")
    page.fill("[name=cron]", "0 * * * *")
    expect(page.locator("#preview li")).to_have_count(5)
    expect(page.locator("#preview li").nth(1)).to_contain_text(":00:00")  # hourly, not the interval
    screenshot(page, "group-form")
    page.click("#group-dialog [data-close] >> nth=1")

    page.goto(f"{base}/groups/{flaky}")
    expect(page.locator("#caption")).to_have_text("flaky import")
    expect(page.locator("#tasks tbody tr").first).to_be_visible()
    page.wait_for_selector("#runs-chart canvas")
    screenshot(page, "group")

    page.goto(f"{base}/tasks")
    expect(page.locator("#tasks tbody tr").first).to_be_visible()
    screenshot(page, "tasks")

    failed = newest_task_id(live_fss, flaky, status=3)
    page.goto(f"{base}/tasks/{failed}")
    expect(page.locator("#status-badge")).to_have_text("Fail")
    expect(page.locator("#tail-state")).to_have_text("finished")
    expect(page.locator("#timeline .tl-item.done")).to_have_count(4)
    screenshot(page, "task")

    page.goto(f"{base}/clients")
    expect(page.locator("#clients tbody tr")).to_have_count(1)
    expect(page.locator("#clients")).to_contain_text("ready")
    screenshot(page, "clients")

    page.goto(f"{base}/nodes")
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    expect(page.locator("#nodes")).to_contain_text("supervisor")
    screenshot(page, "nodes")

    # A narrow window: the page reflows, wide tables scroll inside their panel.
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto(f"{base}/groups")
    expect(page.locator("#groups tbody tr").first).to_be_visible()
    wide = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
        .filter((e) => e.getBoundingClientRect().right > 421
                       && !e.parentElement.closest('.table-wrap'))
        .map((e) => e.tagName + '.' + e.className)""")
    assert page.evaluate("document.documentElement.scrollWidth") <= 421, wide
    screenshot(page, "groups-narrow")


XSS_CAPTION = "<script>alert(1)</script><img src=x onerror=alert(2)>"
XSS_LOG = "<script>alert('log')</script><img src=x onerror=alert(3)>"
WORKING, FAIL, SUCCESS = 2, 3, 4


def count_groups(live: LiveFss) -> int:
    with live.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM task_group").scalar() or 0)


def group_row(live: LiveFss, caption: str) -> sa.Row | None:  # type: ignore[type-arg]
    with live.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT id, job_name, interval_ms, data, is_enable FROM task_group "
                    "WHERE caption = :caption"), {"caption": caption}
        ).first()


def mark_document(page: Page) -> None:
    """A flag on window that a reload or a navigation would lose."""
    page.evaluate("window.__sameDocument = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_login_form_refuses_a_wrong_password_and_pages_redirect_to_it(
    browser: object, live_fss: LiveFss
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{live_fss.url}/groups")
        page.wait_for_url(re.compile(r"/login\?next=(%2F|/)groups$"))
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        expect(page.locator("[role=alert]")).to_have_text("Wrong user name or password.")
        screenshot(page, "login")
        page.fill("input[name=password]", "pw")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_fss.url}/groups")
        expect(page.locator(".user")).to_contain_text("admin")
        page.click("text=Log out")
        page.wait_for_url(f"{live_fss.url}/login")
    finally:
        context.close()


def test_a_group_created_in_the_form_shows_its_runs_without_a_reload(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    page.goto(f"{base}/groups")
    expect(page.locator("#groups tbody tr").first).to_be_visible()
    mark_document(page)
    before = count_groups(live_fss)

    page.click("#new-group")
    page.fill("[name=caption]", XSS_CAPTION)
    page.fill("[name=job_name]", "tail")
    page.fill("[name=interval_ms]", "1000")
    expect(page.locator("#preview li")).to_have_count(5)
    # Invalid JSON is refused in the browser: nothing is sent.
    page.fill("[name=data]", "{not json")
    expect(page.locator("[data-field=data] .field-error")).to_contain_text("not valid JSON")
    page.click("#group-save")
    expect(page.locator("#group-dialog")).to_be_visible()
    # The server's 422 is shown next to the field it names.
    page.fill("[name=data]", '{"lines": 3, "pause_s": 0.1, "say": "' + XSS_LOG + '"}')
    page.check("input[name=kind][value=cron]")
    page.fill("[name=cron]", "61 * * * *")
    page.click("#group-save")
    expect(page.locator("[data-field=cron] .field-error")).to_contain_text("cron")
    assert count_groups(live_fss) == before, "a refused form wrote a group"

    page.check("input[name=kind][value=interval]")
    page.click("#group-save")
    expect(page.locator("#group-dialog")).to_be_hidden()
    row = page.locator("#groups tbody tr", has_text=XSS_CAPTION)
    expect(row).to_have_count(1)
    stored = group_row(live_fss, XSS_CAPTION)
    assert stored is not None and stored.job_name == "tail" and stored.interval_ms == 1000

    # Its runs arrive in the table while we look, with no reload.
    expect(row.locator(".badge")).to_have_text("Success", timeout=15_000)
    assert_same_document(page)
    row.locator(".caption").click()
    page.wait_for_url(f"{base}/groups/{stored.id}")
    expect(page.locator("#caption")).to_have_text(XSS_CAPTION)
    mark_document(page)
    first = page.locator("#tasks tbody tr").count()
    expect(page.locator("#tasks tbody tr .badge", has_text="Success")).not_to_have_count(0)
    wait_until(lambda: page.locator("#tasks tbody tr").count() >= first + 2, 15, "two more runs")
    assert_same_document(page)
    # The page's strings travel in a JSON element (type application/json), which never runs.
    assert page.locator("#caption img, #groups img, "
                        "script:not([src]):not([type='application/json'])").count() == 0


def test_a_running_task_tails_its_logs_live_and_shows_markup_as_text(
    admin_page: Page, live_fss: LiveFss
) -> None:
    from fss.domain.clock import SystemClock
    from fss.domain.group_spec import GroupSpec
    from fss.store import groups

    page, base = admin_page, live_fss.url
    spec = GroupSpec(caption="live tail", job_name="tail", interval_ms=3_600_000,
                     data={"lines": 8, "pause_s": 0.5, "say": XSS_LOG})
    group_id = groups.add_group(live_fss.engine, spec.validated(), SystemClock().now())
    task_id = wait_until(lambda: newest_task_id(live_fss, group_id, status=WORKING), 15,
                         "the tail task to start")

    page.goto(f"{base}/tasks/{task_id}")
    mark_document(page)
    expect(page.locator("#status-badge")).to_have_text("Working")
    expect(page.locator(".log-content", has_text="step 1 of 8")).to_be_visible()
    # The page holds part of the log now, and more arrives while the task runs.
    assert page.locator(".log-line").count() < 8
    screenshot(page, "task-live")
    expect(page.locator(".log-content", has_text="step 8 of 8")).to_be_visible(timeout=10_000)
    expect(page.locator("#status-badge")).to_have_text("Success")
    expect(page.locator("#tail-state")).to_have_text("finished")
    expect(page.locator("#progress-text")).to_have_text("100 %")
    expect(page.locator(".log-content", has_text=XSS_LOG)).to_have_count(1)
    assert page.locator("#logs img, #logs script").count() == 0
    assert_same_document(page)

    # The level filter: only the warning line is at least Warning.
    page.select_option("#min-level", "3")
    expect(page.locator(".log-line")).to_have_count(1)
    expect(page.locator(".log-line")).to_contain_text(XSS_LOG)


def test_disable_a_group_on_its_page_and_enable_it_from_the_table(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    group_id = live_fss.group_ids["slow sync"]
    page.goto(f"{base}/groups/{group_id}")
    expect(page.locator("#enabled-badge")).to_have_text("enabled")
    page.click("#toggle-enabled")
    expect(page.locator("#enabled-badge")).to_have_text("disabled")
    expect(page.locator("#toggle-enabled")).to_have_text("Enable")
    assert not group_row(live_fss, "slow sync").is_enable

    page.goto(f"{base}/groups")
    switch = page.locator(f'#groups tr[data-key="{group_id}"] input[role=switch]')
    expect(switch).not_to_be_checked()
    switch.click()
    expect(switch).to_be_checked()
    wait_until(lambda: group_row(live_fss, "slow sync").is_enable, 5, "the group enabled")


def test_kick_a_client_and_admit_it_again(admin_page: Page, live_fss: LiveFss) -> None:
    page = admin_page
    page.goto(f"{live_fss.url}/clients")
    row = page.locator("#clients tbody tr").first
    expect(row).to_contain_text("ready")
    client_id = row.get_attribute("data-key")

    def kicked_at() -> object:
        with live_fss.engine.connect() as conn:
            return conn.execute(sa.text("SELECT kicked_at FROM client WHERE id = :id"),
                                {"id": client_id}).scalar()

    row.locator("button", has_text="Kick").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-ok")
    expect(row).to_contain_text("kicked")
    assert kicked_at() is not None
    row.locator("button", has_text="Admit").click()
    expect(row).to_contain_text("ready")
    assert kicked_at() is None


def test_a_viewer_sees_no_control_that_changes_anything(
    viewer_page: Page, live_fss: LiveFss
) -> None:
    page, base = viewer_page, live_fss.url
    group_id = live_fss.group_ids["flaky import"]
    task_id = wait_until(lambda: newest_task_id(live_fss, group_id), 10, "a task")
    pages = {
        "/": "#nodes tbody tr",
        "/groups": "#groups tbody tr",
        f"/groups/{group_id}": "#tasks tbody tr",
        "/tasks": "#tasks tbody tr",
        f"/tasks/{task_id}": "#timeline li",
        "/clients": "#clients tbody tr",
        "/nodes": "#nodes tbody tr",
    }
    for path, filled in pages.items():
        page.goto(f"{base}{path}")
        expect(page.locator(filled).first).to_be_visible()
        assert page.locator("[data-write], dialog, input[role=switch]").count() == 0, path
        buttons = set(page.locator("button:visible").all_inner_texts())
        assert buttons <= {"Log out", "Filter", "Load more"}, (path, buttons)
    expect(page.locator(".role")).to_have_text("viewer")
    status = page.evaluate(
        """async (id) => (await fetch(`/api/v1/groups/${id}/run`, {method: "POST", headers:
        {"X-CSRF-Token": document.querySelector("meta[name=csrf-token]").content}})).status""",
        group_id,
    )
    assert status == 403


def test_the_groups_table_is_paged_by_the_server_and_loads_more(
    viewer_page: Page, live_fss: LiveFss
) -> None:
    """The table asks for one page (here /groups?limit=2) in the server's order, and
    "Load more" adds the next page."""
    page, base = viewer_page, live_fss.url
    with live_fss.engine.connect() as conn:
        ids = [str(r[0]) for r in conn.exec_driver_sql("SELECT id FROM task_group ORDER BY id")]
    assert len(ids) > 2
    page.goto(f"{base}/groups?limit=2")
    rows = page.locator("#groups tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#count")).to_contain_text("2 of")
    assert [rows.nth(i).get_attribute("data-key") for i in range(2)] == ids[:2]
    page.click("#groups-load-more")
    expect(rows).to_have_count(min(4, len(ids)))
    assert [rows.nth(i).get_attribute("data-key") for i in range(min(4, len(ids)))] == ids[:4]


def test_a_stale_edit_form_saves_nothing_and_names_what_changed_meanwhile(
    admin_page: Page, live_fss: LiveFss
) -> None:
    """The form was opened; meanwhile a run saved its counter and someone disabled the group.
    Saving a rename must neither put the counter back nor enable the group again."""
    page, base, engine = admin_page, live_fss.url, live_fss.engine
    later = datetime.now(timezone.utc) + timedelta(days=1)
    group_id = groups.add_group(
        engine,
        GroupSpec(caption="counter", job_name="hello", interval_ms=3_600_000,
                  data={"n": 1}, start_at=later),
        datetime.now(timezone.utc),
    )
    page.goto(f"{base}/groups/{group_id}")
    expect(page.locator("#caption")).to_have_text("counter")
    page.click("#edit-group")
    expect(page.locator("[name=caption]")).to_have_value("counter")

    with engine.begin() as conn:  # what the recorder writes when a run saves ctx.data
        conn.execute(sa.text("UPDATE task_group SET data = :d WHERE id = :id"),
                     {"d": '{"n":9}', "id": group_id})
    groups.set_enabled(engine, group_id, False, datetime.now(timezone.utc))

    page.fill("[name=caption]", "counter renamed")
    page.click("#group-save")
    expect(page.locator("#form-error")).to_contain_text("changed meanwhile: enabled")
    with engine.connect() as conn:
        stored = groups.get_group(conn, group_id)
    assert (stored.caption, stored.is_enable, stored.data) == ("counter", False, {"n": 9})
    expect(page.locator("[name=is_enable]")).not_to_be_checked()  # the form shows it now
    expect(page.locator("[name=caption]")).to_have_value("counter renamed")  # input kept

    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    with engine.connect() as conn:
        stored = groups.get_group(conn, group_id)
    assert (stored.caption, stored.is_enable, stored.data) == ("counter renamed", False, {"n": 9})


def test_an_edit_goes_through_data_a_run_saved_meanwhile_but_not_an_edit_of_that_data(
    admin_page: Page, live_fss: LiveFss
) -> None:
    """A job saving its data every run bumps the version each time: a rename refused for
    that never got through the form (409 'changed meanwhile: data', again after every
    retry, for a group running every few seconds). A rename goes through and keeps the saved
    data; an edit of the data itself is still refused and named."""
    page, base, engine = admin_page, live_fss.url, live_fss.engine
    later = datetime.now(timezone.utc) + timedelta(days=1)
    group_id = groups.add_group(
        engine,
        GroupSpec(caption="cursor", job_name="hello", interval_ms=3_600_000,
                  data={"n": 1}, start_at=later),
        datetime.now(timezone.utc),
    )

    def run_saves(n: int) -> None:  # what the recorder writes when a run changed ctx.data
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE task_group SET data = :d, version = version + 1"
                                 " WHERE id = :id"), {"d": f'{{"n":{n}}}', "id": group_id})

    page.goto(f"{base}/groups/{group_id}")
    expect(page.locator("#caption")).to_have_text("cursor")
    page.click("#edit-group")
    expect(page.locator("[name=caption]")).to_have_value("cursor")
    run_saves(2)
    run_saves(3)
    page.fill("[name=caption]", "cursor renamed")
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    with engine.connect() as conn:
        stored = groups.get_group(conn, group_id)
    assert (stored.caption, stored.data) == ("cursor renamed", {"n": 3})

    expect(page.locator("#caption")).to_have_text("cursor renamed")  # the page shows the save
    page.click("#edit-group")
    expect(page.locator("[name=caption]")).to_have_value("cursor renamed")
    run_saves(4)
    page.fill("[name=data]", '{"n": 100}')
    page.click("#group-save")
    expect(page.locator("#form-error")).to_contain_text("changed meanwhile: data")
    with engine.connect() as conn:
        assert groups.get_group(conn, group_id).data == {"n": 4}


def test_the_task_page_shows_log_lines_in_the_jobs_order(
    admin_page: Page, live_fss: LiveFss
) -> None:
    """Lines that landed out of order (two flushes) show in the job's order, with every line
    of a log longer than one page of the stream."""
    page, base = admin_page, live_fss.url
    flaky = live_fss.group_ids["flaky import"]
    failed = wait_until(lambda: newest_task_id(live_fss, flaky, status=3), PAGES_TIMEOUT_S,
                        "a failed run")
    seqs = [*range(1001, 1201), *range(1, 1001)]  # the last flush was recorded first
    with live_fss.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO run_log (task_id, task_group_id, log_level, content, create_at,"
                    " seq) VALUES (:t, :g, 2, :c, CURRENT_TIMESTAMP, :s)"),
            [{"t": failed, "g": flaky, "c": f"ordered {s}", "s": 100_000 + s} for s in seqs],
        )
    page.goto(f"{base}/tasks/{failed}")
    # 1,200+ lines stream in pages: on a loaded 2-core CI the default 5 s was too short once.
    expect(page.locator("#tail-state")).to_have_text("finished", timeout=30_000)
    lines = page.locator(".log-content", has_text="ordered ").all_inner_texts()
    assert lines == [f"ordered {s}" for s in range(1, 1201)]


def test_the_tasks_page_shows_every_task_that_came_between_two_polls(
    admin_page: Page, live_fss: LiveFss
) -> None:
    """More than a page (50) of new tasks between two polls: all of them appear, none is
    skipped; more than the page fetches in one go (1,000): the table starts again from the
    newest and says so."""
    from fss.domain.status import TaskStatus
    from fss.store.tables import task

    page, base, engine = admin_page, live_fss.url, live_fss.engine
    group_id = live_fss.group_ids["paused cleanup"]  # disabled: only the tasks made here

    def add_tasks(count: int) -> list[int]:
        now = datetime.now(timezone.utc)
        with engine.begin() as conn:
            first = conn.execute(sa.select(sa.func.max(task.c.id))).scalar() or 0
            conn.execute(task.insert(), [
                {"task_group_id": group_id, "job_name": "hello", "start_at": now,
                 "status": TaskStatus.SUCCESS, "create_at": now, "finish_at": now}
                for _ in range(count)])
            return [int(i) for (i,) in conn.execute(
                sa.select(task.c.id).where(task.c.id > first, task.c.task_group_id == group_id))]

    page.goto(f"{base}/tasks?group_id={group_id}")
    expect(page.locator("#tasks tbody tr")).to_have_count(0)
    first = add_tasks(3)
    expect(page.locator("#tasks tbody tr")).to_have_count(3)
    burst = add_tasks(120)  # one poll later: 2.4 pages of new tasks
    expect(page.locator("#tasks tbody tr")).to_have_count(123, timeout=10_000)
    shown = {int(t.lstrip("#")) for t in page.locator("#tasks tbody tr td:first-child")
             .all_inner_texts()}
    assert shown == set(first + burst)
    expect(page.locator("#tasks-restarted")).to_be_hidden()

    flood = add_tasks(1100)
    expect(page.locator("#tasks-restarted")).to_be_visible(timeout=40_000)  # 20 pages, loaded host
    expect(page.locator("#tasks-restarted")).to_contain_text("starts again from the newest")
    expect(page.locator("#tasks tbody tr td:first-child").first).to_have_text(f"#{max(flood)}")
    expect(page.locator("#tasks tbody tr")).to_have_count(1000)
    expect(page.locator("#load-more")).to_be_visible()
