"""fss.store.group_files: a groups file applied set-based, by the rules of add/edit/enable/disable.

Each rule is checked against a twin: the same change made through fss.store.groups (what
`fss group add / edit / enable / disable` run) on a group without a key must leave the same
rows as `apply_groups` leaves on the keyed one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from store_helpers import (
    MINUTE,
    T0,
    UTC,
    count,
    dispatch,
    get_group,
    group_raw,
    pending,
    task_rows,
)

from fss.domain.alert_targets import TargetSpec
from fss.domain.group_file import (
    GroupEntry,
    parse_group_document,
    parse_group_file,
    render_group_file,
)
from fss.domain.group_spec import GroupSpec
from fss.domain.jitter import jitter_offset_ms
from fss.domain.status import TaskStatus
from fss.errors import InvalidField
from fss.store import alert_targets, group_files, groups
from fss.store.tables import alert_target, task, task_group

HOUR = timedelta(hours=1)
# What differs between twins by construction: ids, the key, and the task each one points at.
# applied: what the last apply set (a group made by hand has none); version counts edits
# (edit then enable is two, one apply doing both is one), not what the group is.
IDENTITY = {"id", "key", "task_id", "task_group_id", "open_group_id", "applied", "version"}


def spec(**changes: Any) -> GroupSpec:
    values: dict[str, Any] = {"caption": "every minute", "job_name": "demo.job"}
    values.update(changes)
    if not any(k in values for k in ("interval_ms", "cron", "job_sets_next")):
        values["interval_ms"] = 60_000
    return GroupSpec(**values).validated()


def apply(engine: Engine, now: datetime, *entries: GroupEntry, prune: bool = False) -> Any:
    return group_files.apply_groups(engine, list(entries), now, prune)


def hook(name: str, **changes: Any) -> TargetSpec:
    values: dict[str, Any] = {"name": name, "kind": "webhook",
                              "config": {"url": f"https://hooks.example.com/{name}"}}
    values.update(changes)
    return TargetSpec(**values).validated()


@pytest.fixture
def known_targets(engine: Engine) -> None:
    """The alert targets the groups of these tests name, in the database (apply checks)."""
    for name in ("ops-slack", "oncall.mail", "ops"):
        alert_targets.replace_target(engine, hook(name), T0)


def stored_targets(engine: Engine) -> dict[str, alert_targets.TargetRow]:
    with engine.connect() as conn:
        return {row.name: row for row in alert_targets.list_targets(conn)}


def keyed_id(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(task_group.c.id).where(task_group.c.key == key)).one()[0])


def state(engine: Engine, group_id: int) -> dict[str, Any]:
    """The group row and its tasks, without what identifies them."""
    group = {k: v for k, v in group_raw(engine, group_id).items() if k not in IDENTITY}
    tasks = [{k: v for k, v in t.items() if k not in IDENTITY} for t in task_rows(engine, group_id)]
    # The jitter offset hashes the group id: twins differ by it, so a task placed with it
    # compares as the slot it was planned for (fss.domain.jitter).
    offset = jitter_offset_ms(group_id, group["next_at"], group["jitter_ms"]) * timedelta(
        milliseconds=1
    )
    for t in tasks:
        if offset and t["start_at"] == group["next_at"] + offset:
            t["start_at"] = group["next_at"]
    return {"group": group, "tasks": tasks}


def twins(engine: Engine, given: GroupSpec, now: datetime = T0) -> tuple[int, int]:
    """The same group made by `group add` (no key) and by apply (key "twin")."""
    by_hand = groups.add_group(engine, given, now)
    apply(engine, now, GroupEntry("twin", given))
    by_file = keyed_id(engine, "twin")
    assert state(engine, by_file) == state(engine, by_hand)
    return by_hand, by_file


def assert_twins_agree(engine: Engine, by_hand: int, by_file: int) -> None:
    hand, file = state(engine, by_hand), state(engine, by_file)
    assert file == hand


# Every run policy away from its default (on_success is tested with its own graph).
POLICIES: dict[str, Any] = {
    "retries": 3, "retry_delay_ms": 300, "retry_backoff": 1.5, "retry_delay_max_ms": 9_000,
    "retry_jitter": False, "max_run_s": 60, "overlap": "replace", "route": "least_busy",
    "client_tag": "gpu", "jitter_ms": 100,
}
# Every alert setting away from its default.
ALERTS: dict[str, Any] = {
    "alert_targets": ("ops-slack", "oncall.mail"), "alert_rules": ("run_failed", "group_late"),
    "late_after_s": 5400,
}


# --- creating ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        spec(),
        spec(interval_ms=None, cron="*/10 * * * *", time_zone="Asia/Shanghai"),
        spec(interval_ms=None, job_sets_next=True),
        spec(is_enable=False, data={"x": [1, "✓"]}, timeout_s=30, misfire="skip"),
        spec(start_at=T0 + HOUR),
        spec(start_at=T0 - HOUR - 17 * timedelta(seconds=1)),
        spec(**POLICIES),
        spec(is_enable=False, disabled_note="vendor outage", enable_at=T0 + HOUR),
        spec(**ALERTS),
        spec(alert_rules=()),
    ],
    ids=["interval", "cron", "job_sets_next", "disabled", "future_start", "past_start",
         "policies", "disabled_note", "alerts", "no_alerts"],
)
@pytest.mark.usefixtures("known_targets")
def test_apply_creates_the_rows_group_add_would(engine: Engine, given: GroupSpec) -> None:
    by_hand, by_file = twins(engine, given)

    if given.is_enable:
        assert pending(engine, by_file)["status"] == TaskStatus.NONE
        assert group_raw(engine, by_file)["task_id"] == pending(engine, by_file)["id"]
    else:
        assert task_rows(engine, by_file) == []
    assert group_raw(engine, by_file)["key"] == "twin"
    assert group_raw(engine, by_hand)["key"] is None


def test_applying_the_same_entries_twice_writes_nothing_the_second_time(engine: Engine) -> None:
    entries = [GroupEntry(f"g{i}", spec(caption=f"group {i}")) for i in range(5)]
    apply(engine, T0, *entries)
    before = [state(engine, keyed_id(engine, e.key)) for e in entries]

    second = apply(engine, T0 + MINUTE, *entries)

    assert not second.has_changes and second.unchanged == 5
    assert [state(engine, keyed_id(engine, e.key)) for e in entries] == before


# --- updating: the rules of `group edit` --------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"caption": "renamed"},
        {"interval_ms": 5_000},
        {"interval_ms": None, "cron": "0 3 * * *", "time_zone": "Europe/Berlin"},
        {"interval_ms": None, "job_sets_next": True},
        {"job_name": "other.job"},
        {"start_at": T0 + 2 * HOUR},
        {"data": {"new": True}, "timeout_s": 60, "misfire": "skip"},
        POLICIES,
        {"retries": 1, "route": "broadcast", "jitter_ms": 7},
        ALERTS,
        {"alert_rules": (), "late_after_s": 60},
    ],
    ids=["caption", "interval", "to_cron", "to_job_sets_next", "job_name", "start_at", "fields",
         "policies", "some_policies", "alerts", "no_alerts"],
)
@pytest.mark.usefixtures("known_targets")
def test_an_update_changes_what_group_edit_changes(
    engine: Engine, changes: dict[str, Any]
) -> None:
    by_hand, by_file = twins(engine, spec())
    claimed_before = pending(engine, by_file)["id"]
    later = T0 + 7 * MINUTE + timedelta(microseconds=123)

    groups.edit_group(engine, by_hand, changes, later)
    plan = apply(engine, later, GroupEntry("twin", replace(spec(), **changes).validated()))

    assert [u.key for u in plan.updates] == ["twin"]
    assert_twins_agree(engine, by_hand, by_file)
    assert pending(engine, by_file)["id"] == claimed_before  # moved, never replaced


def test_a_caption_change_leaves_the_claimed_waiting_task_alone(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("a", spec()))
    group_id = keyed_id(engine, "a")
    waiting = pending(engine, group_id)
    with engine.begin() as conn:
        conn.execute(task.update().where(task.c.id == waiting["id"]).values(claimed_by="node-x"))

    apply(engine, T0 + MINUTE, GroupEntry("a", spec(caption="renamed")))

    assert pending(engine, group_id)["claimed_by"] == "node-x"
    assert pending(engine, group_id)["start_at"] == waiting["start_at"]


def test_a_schedule_change_unclaims_and_moves_the_waiting_task(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("a", spec()))
    group_id = keyed_id(engine, "a")
    with engine.begin() as conn:
        conn.execute(task.update().values(claimed_by="node-x", claimed_until=T0 + HOUR))

    apply(engine, T0 + MINUTE, GroupEntry("a", spec(interval_ms=None, cron="0 3 * * *")))

    moved = pending(engine, group_id)
    assert moved["claimed_by"] is None and moved["claimed_until"] is None
    assert moved["start_at"] == datetime(2031, 3, 15, 3, tzinfo=UTC)
    assert group_raw(engine, group_id)["next_at"] == moved["start_at"]


def test_removing_start_at_from_the_file_means_the_creation_time(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("a", spec(start_at=T0 + HOUR)))
    group_id = keyed_id(engine, "a")

    plan = apply(engine, T0 + MINUTE, GroupEntry("a", spec()))

    assert [c.name for c in plan.updates[0].changes] == ["start_at"]
    assert group_raw(engine, group_id)["start_at"] == T0
    assert pending(engine, group_id)["start_at"] == T0 + MINUTE  # on the grid from T0, due now


# --- enabling and disabling: the rules of `group enable` / `group disable` ----------------------


def test_disabling_withdraws_the_waiting_task_as_group_disable_does(engine: Engine) -> None:
    by_hand, by_file = twins(engine, spec())
    later = T0 + 3 * MINUTE

    groups.set_enabled(engine, by_hand, False, later)
    apply(engine, later, GroupEntry("twin", spec(is_enable=False)))

    assert_twins_agree(engine, by_hand, by_file)
    assert task_rows(engine, by_file) == []
    assert group_raw(engine, by_file)["task_id"] is None


def test_enabling_creates_the_waiting_task_as_group_enable_does(engine: Engine) -> None:
    by_hand, by_file = twins(engine, spec(is_enable=False))
    later = T0 + 3 * HOUR + timedelta(milliseconds=5)

    groups.set_enabled(engine, by_hand, True, later)
    apply(engine, later, GroupEntry("twin", spec()))

    assert_twins_agree(engine, by_hand, by_file)
    assert group_raw(engine, by_file)["task_id"] == pending(engine, by_file)["id"]


def test_enabling_with_a_new_schedule_is_edit_then_enable(engine: Engine) -> None:
    by_hand, by_file = twins(engine, spec(is_enable=False))
    later = T0 + 3 * HOUR
    changed = spec(interval_ms=None, cron="*/5 * * * *")

    groups.edit_group(engine, by_hand, {"interval_ms": None, "cron": "*/5 * * * *"}, later)
    groups.set_enabled(engine, by_hand, True, later)
    apply(engine, later, GroupEntry("twin", changed))

    assert_twins_agree(engine, by_hand, by_file)


def test_disabling_a_running_group_lets_the_run_finish(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("a", spec()))
    group_id = keyed_id(engine, "a")
    running = pending(engine, group_id)["id"]
    dispatch(engine, running, T0)

    apply(engine, T0 + MINUTE, GroupEntry("a", spec(is_enable=False)))
    apply(engine, T0 + 2 * MINUTE, GroupEntry("a", spec()))

    rows = task_rows(engine, group_id)
    assert [(r["id"], r["status"]) for r in rows] == [(running, TaskStatus.SCHEDULER)]


# --- ownership and pruning ----------------------------------------------------------------------


def test_groups_without_a_key_or_not_in_the_file_are_left_alone(engine: Engine) -> None:
    by_hand = groups.add_group(engine, spec(caption="by hand"), T0)
    apply(engine, T0, GroupEntry("a", spec()), GroupEntry("b", spec()))
    before = state(engine, by_hand), state(engine, keyed_id(engine, "b"))

    plan = apply(engine, T0 + MINUTE, GroupEntry("a", spec(caption="changed")))

    assert plan.deletes == () and [u.key for u in plan.updates] == ["a"]
    assert (state(engine, by_hand), state(engine, keyed_id(engine, "b"))) == before


def test_prune_deletes_only_keyed_groups_missing_from_the_file(engine: Engine) -> None:
    by_hand = groups.add_group(engine, spec(caption="by hand"), T0)
    apply(engine, T0, *(GroupEntry(key, spec()) for key in ("a", "b", "c")))
    gone = keyed_id(engine, "b")

    plan = apply(engine, T0 + MINUTE, GroupEntry("a", spec()), prune=True)

    assert sorted(e.key for e in plan.deletes) == ["b", "c"]
    with engine.connect() as conn:
        left = conn.execute(sa.select(task_group.c.id, task_group.c.key)).all()
    assert sorted(left) == sorted([(by_hand, None), (keyed_id(engine, "a"), "a")])
    assert task_rows(engine, gone) == []


def test_apply_is_one_transaction(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("kept", spec()))
    before = state(engine, keyed_id(engine, "kept"))
    # Entries straight from code skip the file's duplicate-key check; the unique index fails
    # the INSERT after the update of "kept" was planned and the first creates were sent.
    broken = [
        GroupEntry("kept", spec(caption="changed")),
        GroupEntry("new", spec()),
        GroupEntry("dup", spec()),
        GroupEntry("dup", spec()),
    ]

    with pytest.raises(IntegrityError):
        group_files.apply_groups(engine, broken, T0 + MINUTE, prune=True)

    assert count(engine, task_group) == 1
    assert state(engine, keyed_id(engine, "kept")) == before


# --- export: the round trip ---------------------------------------------------------------------


def varied_entries() -> list[GroupEntry]:
    return [
        GroupEntry("plain", spec()),
        GroupEntry(
            "team/nightly ✓",
            spec(
                caption="Nächtlicher Bericht 😀",
                interval_ms=None,
                cron="30 2 * * *",
                time_zone="Europe/Berlin",
                data={"to": ["ops@example.com"], "deep": {"n": 1.5, "ok": True, "none": None}},
                timeout_s=900,
                misfire="skip",
                **POLICIES,
                **ALERTS,
            ),
        ),
        GroupEntry("off", spec(is_enable=False, start_at=T0 - HOUR, disabled_note="why",
                               enable_at=T0 + 2 * HOUR, on_success=("plain",),
                               alert_rules=())),
        GroupEntry("later", spec(interval_ms=None, job_sets_next=True, start_at=T0 + HOUR)),
    ]


@pytest.mark.parametrize("file_format", ["yaml", "json"])
@pytest.mark.usefixtures("known_targets")
def test_export_then_apply_changes_nothing(engine: Engine, file_format: str) -> None:
    apply(engine, T0, *varied_entries())
    groups.add_group(engine, spec(caption="by hand"), T0)
    # Edited by hand after the apply, still round-trips:
    groups.edit_group(engine, keyed_id(engine, "plain"), {"start_at": T0 - MINUTE}, T0)
    groups.set_enabled(engine, keyed_id(engine, "later"), False, T0)
    ids = [keyed_id(engine, e.key) for e in varied_entries()]
    before = [state(engine, i) for i in ids]

    with engine.connect() as conn:
        exported = group_files.export_entries(conn)
        text = render_group_file(exported, file_format)
        entries = parse_group_file(text, f"groups.{file_format}")
        plan = group_files.plan_groups(conn, entries, prune=True)
    applied = apply(engine, T0 + HOUR, *entries, prune=True)

    assert [e.key for e in exported] == [e.key for e in varied_entries()]
    assert not plan.has_changes, plan.describe()
    assert not applied.has_changes and applied.unchanged == 4
    assert [state(engine, i) for i in ids] == before


@pytest.mark.usefixtures("known_targets")
def test_export_writes_start_at_only_when_it_is_not_the_creation_time(engine: Engine) -> None:
    apply(engine, T0, *varied_entries())

    with engine.connect() as conn:
        starts = {e.key: e.spec.start_at for e in group_files.export_entries(conn)}

    assert starts == {
        "plain": None,
        "team/nightly ✓": None,
        "off": T0 - HOUR,
        "later": T0 + HOUR,
    }


def test_export_filters_by_key_prefix(engine: Engine) -> None:
    apply(engine, T0, *(GroupEntry(k, spec()) for k in ("team-a/x", "team-a/y", "team-b/x")))
    groups.add_group(engine, spec(), T0)

    with engine.connect() as conn:
        team_a = [e.key for e in group_files.export_entries(conn, "team-a/")]
        everything = [e.key for e in group_files.export_entries(conn)]
        unkeyed = group_files.count_unkeyed(conn)

    assert team_a == ["team-a/x", "team-a/y"]
    assert everything == ["team-a/x", "team-a/y", "team-b/x"]
    assert unkeyed == 1


# --- set-based: a few statements, whatever the number of groups ---------------------------------


def statements_during(engine: Engine, action: Any) -> int:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return len(seen)


def test_applying_a_thousand_groups_takes_a_handful_of_statements(engine: Engine) -> None:
    created = [GroupEntry(f"k{i:04}", spec(caption=f"g{i}")) for i in range(1000)]
    changed = [
        GroupEntry(e.key, spec(caption="renamed", interval_ms=5_000, is_enable=i % 2 == 0))
        for i, e in enumerate(created)
    ]

    creating = statements_during(engine, lambda: apply(engine, T0, *created))
    updating = statements_during(engine, lambda: apply(engine, T0 + MINUTE, *changed))
    pruning = statements_during(engine, lambda: apply(engine, T0 + HOUR, prune=True))

    # Per chunk of 500 ids a few statements; an executemany may be sent in pages of rows.
    assert creating <= 20, creating
    assert updating <= 30, updating
    assert pruning <= 12, pruning
    assert count(engine, task_group) == 0 and count(engine, task) == 0


# --- three-way merge: a field changes only when the file changed it ---------------------------


def job_saves(engine: Engine, group_id: int, data: dict[str, Any], at: datetime) -> None:
    """What the recorder does when a run ends with ctx.data changed (a cursor saved)."""
    from fss.store.recording import schedule_next

    with engine.begin() as conn:
        conn.execute(task.delete().where(task.c.task_group_id == group_id))
        schedule_next(conn, group_id=group_id, planned_at=at, finished_at=at, success=True,
                      run_speed_ms=5, data=data)


def test_reapplying_the_same_file_keeps_what_the_job_saved(engine: Engine) -> None:
    entry = GroupEntry("cursor", spec(data={"cursor": 0}))
    apply(engine, T0, entry)
    group_id = keyed_id(engine, "cursor")
    job_saves(engine, group_id, {"cursor": 41}, T0 + MINUTE)

    with engine.connect() as conn:
        assert not group_files.plan_groups(conn, [entry], prune=False).has_changes  # in sync
    plan = apply(engine, T0 + HOUR, entry)

    assert not plan.has_changes
    assert get_group(engine, group_id).data == {"cursor": 41}


def test_a_file_change_of_one_field_keeps_the_jobs_data(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("cursor", spec(data={"cursor": 0})))
    group_id = keyed_id(engine, "cursor")
    job_saves(engine, group_id, {"cursor": 41}, T0 + MINUTE)
    version = get_group(engine, group_id).version

    plan = apply(engine, T0 + HOUR, GroupEntry("cursor", spec(caption="renamed",
                                                               data={"cursor": 0})))

    assert [c.name for u in plan.updates for c in u.changes] == ["caption"]
    group = get_group(engine, group_id)
    assert (group.caption, group.data, group.version) == ("renamed", {"cursor": 41}, version + 1)
    # The next deploy of that file changes nothing.
    again = apply(engine, T0 + 2 * HOUR, GroupEntry("cursor", spec(caption="renamed",
                                                                    data={"cursor": 0})))
    assert not again.has_changes


def test_data_changed_in_the_file_replaces_the_saved_data(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("cursor", spec(data={"cursor": 0})))
    group_id = keyed_id(engine, "cursor")
    job_saves(engine, group_id, {"cursor": 41}, T0 + MINUTE)

    plan = apply(engine, T0 + HOUR, GroupEntry("cursor", spec(data={"cursor": 100})))

    assert [c.name for u in plan.updates for c in u.changes] == ["data"]
    assert get_group(engine, group_id).data == {"cursor": 100}


def test_a_hand_edit_survives_until_the_file_changes_that_field(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("g", spec()))
    group_id = keyed_id(engine, "g")
    groups.edit_group(engine, group_id, {"caption": "by hand", "timeout_s": 60}, T0)

    assert not apply(engine, T0 + MINUTE, GroupEntry("g", spec())).has_changes
    apply(engine, T0 + HOUR, GroupEntry("g", spec(timeout_s=120)))

    group = get_group(engine, group_id)
    assert (group.caption, group.timeout_s) == ("by hand", 120)


def test_a_group_applied_before_records_existed_takes_the_file_once(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("old", spec(data={"cursor": 0})))
    group_id = keyed_id(engine, "old")
    with engine.begin() as conn:  # as migration 0006 leaves groups applied before it
        conn.execute(task_group.update().values(applied=None))
    job_saves(engine, group_id, {"cursor": 41}, T0 + MINUTE)

    first = apply(engine, T0 + HOUR, GroupEntry("old", spec(data={"cursor": 0})))
    assert [c.name for u in first.updates for c in u.changes] == ["data"]  # as before
    assert get_group(engine, group_id).applied is not None
    job_saves(engine, group_id, {"cursor": 7}, T0 + 2 * HOUR)
    assert not apply(engine, T0 + 3 * HOUR, GroupEntry("old", spec(data={"cursor": 0}))).has_changes
    assert get_group(engine, group_id).data == {"cursor": 7}



# --- run policies ---------------------------------------------------------------------------


def test_a_hand_edited_policy_survives_until_the_file_changes_it(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("g", spec(retries=2)))
    group_id = keyed_id(engine, "g")
    groups.edit_group(engine, group_id, {"retries": 5, "route": "sticky"}, T0)

    assert not apply(engine, T0 + MINUTE, GroupEntry("g", spec(retries=2))).has_changes
    plan = apply(engine, T0 + HOUR, GroupEntry("g", spec(retries=2, overlap="buffer_one")))

    assert [c.describe() for u in plan.updates for c in u.changes] == [
        'overlap: "skip" -> "buffer_one"'
    ]
    group = get_group(engine, group_id)
    assert (group.retries, group.route, group.overlap) == (5, "sticky", "buffer_one")


# --- alert settings ----------------------------------------------------------------------------

ALERTS_FILE = """\
alert_targets:
  - name: ops-slack
    kind: slack
    url: https://hooks.slack.example/services/${SLACK_TOKEN}
  - name: oncall.mail
    kind: email
    host: smtp.example.com
    user: fss
    password: ${SMTP_PASSWORD}
    from: fss@example.com
    to: [oncall@example.com]
groups:
  - key: backup
    caption: Nightly backup
    job_name: backup.run
    cron: "0 2 * * *"
    alert_targets: [ops-slack, oncall.mail]
    alert_rules: [group_late, run_failed]
    late_after_s: 7200
  - key: noisy
    caption: Noisy
    job_name: noisy.run
    interval_ms: 60000
    alert_rules: []
  - key: plain
    caption: Plain
    job_name: plain.run
    interval_ms: 60000
"""


ALERTS_ENV = {"SLACK_TOKEN": "T000/B000/XXXX", "SMTP_PASSWORD": "pa55-w0rd"}


def test_alert_settings_go_file_to_apply_to_export_unchanged(engine: Engine) -> None:
    document = parse_group_document(ALERTS_FILE, "groups.yaml", ALERTS_ENV)
    plan, targets = group_files.apply_file(engine, document.entries, document.targets, T0)
    assert [e.key for e in plan.creates] == ["backup", "noisy", "plain"]
    assert [t.name for t in targets.creates] == ["ops-slack", "oncall.mail"]
    assert stored_targets(engine)["oncall.mail"].spec.config["password"] == "pa55-w0rd"
    backup, noisy, plain = (get_group(engine, keyed_id(engine, k)) for k in
                            ("backup", "noisy", "plain"))
    assert (backup.alert_targets, backup.alert_rules, backup.late_after_s) == (
        ("ops-slack", "oncall.mail"), ("run_failed", "group_late"), 7200
    )
    assert (noisy.alert_targets, noisy.alert_rules, noisy.late_after_s) == ((), (), None)
    assert (plain.alert_targets, plain.alert_rules, plain.late_after_s) == ((), None, None)
    raw = group_raw(engine, noisy.id)
    assert (raw["alert_targets"], raw["alert_rules"]) == (None, "[]")

    with engine.connect() as conn:
        exported = render_group_file(group_files.export_entries(conn), "yaml")
    # The rules in one canonical order; [] kept (no alerts), defaults left out.
    assert exported.split("- key: ")[1:] == [
        "backup\n  caption: Nightly backup\n  job_name: backup.run\n  cron: 0 2 * * *\n"
        "  alert_targets:\n  - ops-slack\n  - oncall.mail\n"
        "  alert_rules:\n  - run_failed\n  - group_late\n  late_after_s: 7200\n",
        "noisy\n  caption: Noisy\n  job_name: noisy.run\n  interval_ms: 60000\n"
        "  alert_rules: []\n",
        "plain\n  caption: Plain\n  job_name: plain.run\n  interval_ms: 60000\n",
    ]
    assert list(yaml.safe_load(exported)) == ["groups"]  # no targets: they hold secrets
    again = parse_group_file(exported, "export.yaml")
    with engine.connect() as conn:
        assert not group_files.plan_groups(conn, again, prune=True).has_changes
    assert not apply(engine, T0 + HOUR, *again, prune=True).has_changes


@pytest.mark.usefixtures("known_targets")
def test_a_file_change_of_an_alert_setting_is_an_update_that_bumps_the_version(
    engine: Engine,
) -> None:
    apply(engine, T0, GroupEntry("g", spec()))
    group_id = keyed_id(engine, "g")
    version = get_group(engine, group_id).version
    plan = apply(engine, T0 + MINUTE, GroupEntry("g", spec(alert_targets=("ops",),
                                                           late_after_s=600)))
    assert plan.describe() == [
        "~ update g", '    alert_targets: null -> ["ops"]', "    late_after_s: null -> 600",
    ]
    group = get_group(engine, group_id)
    assert (group.alert_targets, group.late_after_s, group.version) == (
        ("ops",), 600, version + 1
    )
    plan = apply(engine, T0 + HOUR, GroupEntry("g", spec()))
    assert [c.name for u in plan.updates for c in u.changes] == ["alert_targets", "late_after_s"]
    group = get_group(engine, group_id)
    assert (group.alert_targets, group.late_after_s) == ((), None)


def test_hand_edited_alert_settings_survive_until_the_file_changes_them(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("g", spec()))
    group_id = keyed_id(engine, "g")
    groups.edit_group(engine, group_id, {"alert_targets": ("pager",), "alert_rules": ()}, T0)

    assert not apply(engine, T0 + MINUTE, GroupEntry("g", spec())).has_changes
    group = get_group(engine, group_id)
    assert (group.alert_targets, group.alert_rules) == (("pager",), ())
    plan = apply(engine, T0 + HOUR, GroupEntry("g", spec(alert_rules=("hung",))))
    assert [c.describe() for u in plan.updates for c in u.changes] == [
        'alert_rules: [] -> ["hung"]'
    ]
    assert get_group(engine, group_id).alert_targets == ("pager",)


def test_a_note_comes_and_goes_with_its_disabling(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("g", spec(is_enable=False, disabled_note="deploy")))
    group_id = keyed_id(engine, "g")
    assert (get_group(engine, group_id).disabled_note, task_rows(engine, group_id)) == (
        "deploy", []
    )
    plan = apply(engine, T0 + MINUTE, GroupEntry("g", spec()))
    assert [c.name for u in plan.updates for c in u.changes] == ["enabled", "disabled_note"]
    group = get_group(engine, group_id)
    assert (group.is_enable, group.disabled_note) == (True, None)
    assert pending(engine, group_id)["status"] == TaskStatus.NONE


def test_on_success_may_name_the_files_own_groups_and_groups_by_id(engine: Engine) -> None:
    by_hand = groups.add_group(engine, spec(), T0)
    apply(
        engine, T0,
        GroupEntry("a", spec(on_success=("b", by_hand))),
        GroupEntry("b", spec()),
    )
    assert get_group(engine, keyed_id(engine, "a")).on_success == ("b", by_hand)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([GroupEntry("a", spec(on_success=("b",))), GroupEntry("b", spec(on_success=("a",)))],
         r"^on_success: cycle a -> b -> a$"),
        ([GroupEntry("a", spec(on_success=("a",)))], r"^on_success: cycle a -> a$"),
        ([GroupEntry("a", spec(on_success=("nope",)))],
         r"^on_success: group a: no group has the key 'nope'$"),
    ],
    ids=["two", "self", "unknown"],
)
def test_a_file_closing_an_on_success_cycle_or_naming_no_group_writes_nothing(
    engine: Engine, entries: list[GroupEntry], message: str
) -> None:
    with pytest.raises(InvalidField, match=message):
        apply(engine, T0, *entries)
    assert count(engine, task_group) == 0 and count(engine, task) == 0


def test_a_file_closing_a_cycle_through_the_database_is_refused(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("a", spec()), GroupEntry("b", spec(on_success=("a",))))
    groups.add_group(engine, spec(on_success=("b",)), T0, key="c")  # by hand: c -> b -> a
    with pytest.raises(InvalidField, match=r"^on_success: cycle a -> c -> b -> a$"):
        apply(engine, T0 + MINUTE, GroupEntry("a", spec(on_success=("c",))),
              GroupEntry("b", spec(on_success=("a",))))
    assert get_group(engine, keyed_id(engine, "a")).on_success == ()



def plan(engine: Engine, *entries: GroupEntry, prune: bool = False) -> Any:
    """What `fss group diff` and `apply --dry-run` compute: the plan, nothing written."""
    with engine.connect() as conn:
        return group_files.plan_file(conn, list(entries), (), prune)[0]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([GroupEntry("a", spec(on_success=("b",))), GroupEntry("b", spec(on_success=("a",)))],
         r"^on_success: cycle a -> b -> a$"),
        ([GroupEntry("a", spec(on_success=("a",)))], r"^on_success: cycle a -> a$"),
        ([GroupEntry("a", spec(on_success=("nope",)))],
         r"^on_success: group a: no group has the key 'nope'$"),
        ([GroupEntry("a", spec(on_success=(987654,)))],
         r"^on_success: group a: no group has the id 987654$"),
    ],
    ids=["two", "self", "unknown-key", "unknown-id"],
)
def test_diff_refuses_the_on_success_cycles_and_unknown_groups_apply_refuses(
    engine: Engine, entries: list[GroupEntry], message: str
) -> None:
    # diff and apply --dry-run said "+ create" (exit 1 / 0) where apply then refused.
    with pytest.raises(InvalidField, match=message):
        plan(engine, *entries)
    assert count(engine, task_group) == 0


def test_diff_sees_a_cycle_through_the_database_and_groups_pruned_away(engine: Engine) -> None:
    apply(engine, T0, GroupEntry("a", spec()), GroupEntry("b", spec(on_success=("a",))),
          GroupEntry("gone", spec()))
    by_hand = groups.add_group(engine, spec(on_success=("b",)), T0, key="c")  # c -> b -> a
    closing = [GroupEntry("a", spec(on_success=("c",))), GroupEntry("b", spec(on_success=("a",)))]
    with pytest.raises(InvalidField, match=r"^on_success: cycle a -> c -> b -> a$"):
        plan(engine, *closing, GroupEntry("gone", spec()))
    # Dropping b's edge in the same file breaks the cycle: apply takes it, so does diff.
    fine = plan(engine, GroupEntry("a", spec(on_success=("c", by_hand))),
                GroupEntry("b", spec()), GroupEntry("gone", spec()))
    assert [u.key for u in fine.updates] == ["a", "b"]
    # A group the file prunes is no group to start.
    gone_id = keyed_id(engine, "gone")
    pruning = [GroupEntry("a", spec(on_success=(gone_id,))), GroupEntry("b", spec())]
    unknown = rf"^on_success: group a: no group has the id {gone_id}$"
    with pytest.raises(InvalidField, match=unknown):
        plan(engine, *pruning, prune=True)
    with pytest.raises(InvalidField, match=rf"no group has the id {gone_id}$"):
        apply(engine, T0 + MINUTE, *pruning, prune=True)
    # What plan accepts, apply writes.
    assert plan(engine, *pruning).has_changes
    apply(engine, T0 + MINUTE, *pruning)
    written: tuple[Any, ...] = get_group(engine, keyed_id(engine, "a")).on_success
    assert written == (gone_id,)


# --- alert targets in the groups file -----------------------------------------------------------


def apply_file(engine: Engine, now: datetime, targets: list[TargetSpec],
               *entries: GroupEntry) -> Any:
    return group_files.apply_file(engine, list(entries), targets, now)


def test_the_files_targets_are_written_with_its_groups_and_others_are_left_alone(
    engine: Engine,
) -> None:
    alert_targets.replace_target(engine, hook("kept"), T0)
    alert_targets.replace_target(engine, hook("ops", config={"url": "https://old.example/x"}), T0)
    kept_before = stored_targets(engine)["kept"]
    ops_id = stored_targets(engine)["ops"].id

    plan, targets = apply_file(
        engine, T0 + MINUTE, [hook("ops", config={"url": "https://new.example/x", "secret": "s1"}),
                              hook("pager")],
        GroupEntry("a", spec(alert_targets=("ops", "pager", "kept"))),
    )

    assert [e.key for e in plan.creates] == ["a"]
    assert [t.name for t in targets.creates] == ["pager"]
    assert targets.describe()[1:] == [
        "~ update alert target ops", "    secret added",
        '    url: "https://old.example/***" -> "https://new.example/***"',
    ]
    stored = stored_targets(engine)
    assert stored["kept"] == kept_before  # not in the file: untouched, no prune
    assert stored["ops"].id == ops_id and stored["ops"].spec.config["secret"] == "s1"
    assert stored["ops"].updated_at == T0 + MINUTE
    assert get_group(engine, keyed_id(engine, "a")).alert_targets == ("ops", "pager", "kept")

    # The same file again: nothing to write, the targets' rows stay as they are.
    again, targets_again = apply_file(
        engine, T0 + HOUR, [hook("ops", config={"url": "https://new.example/x", "secret": "s1"}),
                            hook("pager")],
        GroupEntry("a", spec(alert_targets=("ops", "pager", "kept"))),
    )
    assert not again.has_changes and not targets_again.has_changes
    assert targets_again.unchanged == 2
    assert stored_targets(engine)["ops"].updated_at == T0 + MINUTE


@pytest.mark.parametrize("defined_in", ["file", "database"])
def test_a_group_may_name_a_target_of_the_file_or_of_the_database(
    engine: Engine, defined_in: str
) -> None:
    file_targets = [hook("ops")] if defined_in == "file" else []
    if defined_in == "database":
        alert_targets.replace_target(engine, hook("ops"), T0)
    plan, _ = apply_file(engine, T0, file_targets, GroupEntry("a", spec(alert_targets=("ops",))))
    assert [e.key for e in plan.creates] == ["a"]


def test_a_group_naming_a_target_nobody_defined_refuses_the_whole_file(engine: Engine) -> None:
    alert_targets.replace_target(engine, hook("ops"), T0)
    apply(engine, T0, GroupEntry("a", spec()))
    before_groups = state(engine, keyed_id(engine, "a"))
    before_targets = stored_targets(engine)
    file_targets = [hook("ops", rate_per_min=3), hook("pager")]
    entries = [
        GroupEntry("a", spec(caption="changed", alert_targets=("ops",))),
        GroupEntry("b", spec()),
        GroupEntry("c", spec(alert_targets=("pager", "nobody"))),
    ]
    expected = (
        r"^groups\[2\]\.alert_targets: group 'c' names alert target 'nobody', which is neither "
        r"in the file's alert_targets nor in the database$"
    )

    with engine.connect() as conn, pytest.raises(InvalidField, match=expected):
        group_files.plan_file(conn, entries, file_targets, prune=False)  # diff says it too
    with pytest.raises(InvalidField, match=expected):
        group_files.apply_file(engine, entries, file_targets, T0 + MINUTE)

    # Nothing half-written: no target created or changed, no group created or changed.
    assert stored_targets(engine) == before_targets
    assert count(engine, task_group) == 1
    assert state(engine, keyed_id(engine, "a")) == before_groups


def test_a_removed_target_named_by_an_unchanged_file_is_reported(engine: Engine) -> None:
    """The file is what is checked: naming a target that was removed since is an error the
    next apply reports, not a group left pointing at nothing unnoticed."""
    alert_targets.replace_target(engine, hook("ops"), T0)
    entry = GroupEntry("a", spec(alert_targets=("ops",)))
    apply(engine, T0, entry)
    alert_targets.remove_target(engine, "ops")
    with pytest.raises(InvalidField, match=r"^groups\[0\]\.alert_targets: group 'a' names"):
        apply(engine, T0 + MINUTE, entry)


def test_a_file_without_targets_still_checks_its_groups_names(engine: Engine) -> None:
    with pytest.raises(InvalidField, match=r"'ops'.*\(1 more such name\)$"):
        apply(engine, T0, GroupEntry("a", spec(alert_targets=("ops",))),
              GroupEntry("b", spec(alert_targets=("ops",))))
    assert count(engine, task_group) == 0 and count(engine, alert_target) == 0
