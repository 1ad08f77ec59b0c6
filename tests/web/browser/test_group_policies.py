"""The run policies in the web UI: the group form's "Run policies" section sets every policy,
an edit sends only what changed, and the group page shows them with the disabled note; the
form's "Alerts" section sets, shows and clears a group's alert settings the same way.
Screenshots: docs/screenshots/group-policies-form.png and group-policies.png."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from conftest import LiveFss, screenshot
from playwright.sync_api import Page, expect

from fss.domain.group_spec import OVERLAP_POLICIES, ROUTES, GroupSpec
from fss.store import groups
from fss.store.rows import GroupRow


def group_by_caption(live: LiveFss, caption: str) -> GroupRow:
    with live.engine.connect() as conn:
        group_id = conn.exec_driver_sql(
            "SELECT id FROM task_group WHERE caption = ?", (caption,)
        ).scalar_one()
        return groups.get_group(conn, int(group_id))


def test_the_form_sets_every_policy_and_an_edit_sends_only_the_changed_one(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    target = groups.add_group(
        live_fss.engine,
        GroupSpec(caption="mailer", job_name="hello", interval_ms=3_600_000).validated(),
        datetime.now(timezone.utc),
        key="mailer",
    )
    page.goto(f"{base}/groups")
    page.click("#new-group")
    options = page.locator("[name=overlap] option").evaluate_all("(os) => os.map((o) => o.value)")
    assert tuple(options) == OVERLAP_POLICIES
    options = page.locator("[name=route] option").evaluate_all("(os) => os.map((o) => o.value)")
    assert tuple(options) == ROUTES
    page.fill("[name=caption]", "invoice run")
    page.fill("[name=job_name]", "hello")
    page.fill("[name=interval_ms]", "600000")
    page.fill("[name=retries]", "3")
    page.fill("[name=retry_delay_ms]", "2000")
    page.fill("[name=retry_backoff]", "1.5")
    page.fill("[name=retry_delay_max_ms]", "60000")
    page.uncheck("[name=retry_jitter]")
    page.fill("[name=max_run_s]", "900")
    page.select_option("[name=overlap]", "buffer_one")
    page.select_option("[name=route]", "least_busy")
    page.fill("[name=client_tag]", "eu-1")
    page.fill("[name=jitter_ms]", "5000")
    page.fill("[name=on_success]", f"mailer, {target}")
    expect(page.locator("#preview li")).to_have_count(5)
    page.locator("#policies-title").scroll_into_view_if_needed()
    screenshot(page, "group-policies-form")
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()

    group = group_by_caption(live_fss, "invoice run")
    assert (group.retries, group.retry_delay_ms, group.retry_backoff) == (3, 2000, 1.5)
    assert (group.retry_delay_max_ms, group.retry_jitter, group.max_run_s) == (60000, False, 900)
    assert (group.overlap, group.route, group.client_tag, group.jitter_ms) == (
        "buffer_one", "least_busy", "eu-1", 5000
    )
    assert group.on_success == ("mailer", target)

    # A bad value: the server's message next to the field, nothing saved.
    page.goto(f"{base}/groups/{group.id}")
    expect(page.locator("#caption")).to_have_text("invoice run")
    page.click("#edit-group")
    page.fill("[name=retries]", "101")
    page.click("#group-save")
    expect(page.locator('[data-field="retries"] .field-error')).to_contain_text(
        "retries: must be 0..100, got 101"
    )
    page.fill("[name=retries]", "4")
    requests: list[str] = []
    page.on("request",
            lambda r: requests.append(r.post_data or "") if r.method == "PATCH" else None)
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    assert len(requests) == 1 and '"retries":4' in requests[0].replace(" ", "")
    assert "route" not in requests[0]  # only what changed is sent
    edited = group_by_caption(live_fss, "invoice run")
    assert (edited.retries, edited.route, edited.version) == (4, "least_busy", group.version + 1)


def test_the_group_page_shows_the_policies_and_why_it_is_disabled_until_when(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    now = datetime.now(timezone.utc)
    child = groups.add_group(
        live_fss.engine,
        GroupSpec(caption="report mail", job_name="hello", interval_ms=3_600_000).validated(),
        now, key="report.mail",
    )
    spec = GroupSpec(
        caption="warehouse sync", job_name="hello", cron="*/15 * * * *", retries=5,
        retry_delay_ms=30_000, retry_backoff=2, retry_delay_max_ms=600_000, max_run_s=1800,
        overlap="replace", route="sticky", client_tag="dc-east", jitter_ms=20_000,
        on_success=("report.mail", child),
    ).validated()
    group_id = groups.add_group(live_fss.engine, spec, now)
    until = (now + timedelta(days=2)).replace(microsecond=0)
    groups.set_enabled(live_fss.engine, group_id, False, now,
                       note="warehouse DB migration (OPS-412)", until=until)

    page.goto(f"{base}/groups/{group_id}")
    expect(page.locator("#caption")).to_have_text("warehouse sync")
    note = page.locator("#disabled-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Disabled: warehouse DB migration (OPS-412)")
    expect(note).to_contain_text("enables itself at")
    policies = page.locator("#policies")
    times = "\u00d7"  # the page writes a multiplication sign
    expect(policies).to_contain_text(f"5 {times} after 30.0 s, {times}2 each, at most 10 min 0 s")
    expect(policies).to_contain_text("1800 s")
    expect(policies).to_contain_text("replace")
    expect(policies).to_contain_text("sticky")
    expect(policies).to_contain_text("dc-east")
    expect(policies).to_contain_text("report.mail")
    expect(policies.locator(f'a[href="/groups/{child}"]')).to_have_count(1)
    screenshot(page, "group-policies")

    # The form shows the note and the time, and enabling from it clears both.
    page.click("#edit-group")
    expect(page.locator("[name=disabled_note]")).to_have_value("warehouse DB migration (OPS-412)")
    page.check("[name=is_enable]")
    expect(page.locator("[name=disabled_note]")).to_be_hidden()
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    expect(note).to_be_hidden()
    with live_fss.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT is_enable, disabled_note, enable_at FROM task_group WHERE id = :i"),
            {"i": group_id},
        ).one()
    assert (bool(row.is_enable), row.disabled_note, row.enable_at) == (True, None, None)


def test_the_form_sets_edits_and_clears_the_alert_settings(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    page.goto(f"{base}/groups")
    page.click("#new-group")
    expect(page.locator("[name=alert_rule]").first).to_be_disabled()  # until "chosen"
    page.fill("[name=caption]", "alerted")
    page.fill("[name=job_name]", "no.worker.serves.this")
    page.fill("[name=interval_ms]", "600000")
    page.fill("[name=alert_targets]", "ops-slack, oncall.mail")
    page.fill("[name=late_after_s]", "5400")
    page.check("[name=alert_rules_mode][value=chosen]")
    page.check("[name=alert_rule][value=group_late]")
    page.check("[name=alert_rule][value=run_failed]")
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    group = group_by_caption(live_fss, "alerted")
    assert (group.alert_targets, group.alert_rules, group.late_after_s) == (
        ("ops-slack", "oncall.mail"), ("run_failed", "group_late"), 5400
    )

    page.goto(f"{base}/groups/{group.id}")
    policies = page.locator("#policies")
    expect(policies).to_contain_text("ops-slack, oncall.mail")
    expect(policies).to_contain_text("run_failed, group_late")
    expect(policies).to_contain_text("5400 s after a planned run without success")
    page.click("#edit-group")
    expect(page.locator("[name=alert_targets]")).to_have_value("ops-slack, oncall.mail")
    expect(page.locator("[name=alert_rule][value=group_late]")).to_be_checked()
    expect(page.locator("[name=alert_rule][value=hung]")).not_to_be_checked()
    # A bad target name: the server's message next to the field.
    page.fill("[name=alert_targets]", "a b")
    page.click("#group-save")
    expect(page.locator('[data-field="alert_targets"] .field-error')).to_contain_text(
        "alert_targets: 'a b' is not a target name"
    )
    page.fill("[name=alert_targets]", "ops-slack, oncall.mail")
    requests: list[str] = []
    page.on("request",
            lambda r: requests.append(r.post_data or "") if r.method == "PATCH" else None)
    page.uncheck("[name=alert_rule][value=group_late]")
    page.uncheck("[name=alert_rule][value=run_failed]")
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    sent = requests[0].replace(" ", "")
    assert '"alert_rules":[]' in sent and "alert_targets" not in sent and "late_after" not in sent
    expect(policies).to_contain_text("none (no alerts for this group)")

    page.click("#edit-group")
    page.check("[name=alert_rules_mode][value=default]")
    page.fill("[name=late_after_s]", "")
    page.fill("[name=alert_targets]", "")
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    expect(policies).to_contain_text("every rule on globally")
    expect(policies).to_contain_text("the default targets")
    cleared = group_by_caption(live_fss, "alerted")
    assert (cleared.alert_targets, cleared.alert_rules, cleared.late_after_s) == ((), None, None)


def test_an_edit_that_leaves_the_alerts_section_alone_sends_no_alert_field(
    admin_page: Page, live_fss: LiveFss
) -> None:
    page, base = admin_page, live_fss.url
    # A job no worker of the live fss serves: no run changes the group (its data, its
    # version) while the form is open.
    group_id = groups.add_group(
        live_fss.engine,
        GroupSpec(caption="quiet", job_name="no.worker.serves.this", interval_ms=3_600_000,
                  alert_rules=(), alert_targets=("x",)).validated(),
        datetime.now(timezone.utc),
    )
    page.goto(f"{base}/groups/{group_id}")
    expect(page.locator("#caption")).to_have_text("quiet")
    page.click("#edit-group")
    expect(page.locator("[name=alert_rules_mode][value=chosen]")).to_be_checked()
    page.fill("[name=caption]", "quiet2")
    requests: list[str] = []
    page.on("request",
            lambda r: requests.append(r.post_data or "") if r.method == "PATCH" else None)
    page.click("#group-save")
    expect(page.locator("#group-dialog")).not_to_be_visible()
    assert len(requests) == 1 and "alert" not in requests[0], requests
    quiet = group_by_caption(live_fss, "quiet2")
    assert (quiet.alert_targets, quiet.alert_rules) == (("x",), ())
