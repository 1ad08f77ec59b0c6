"""The audit trail (fss.store.audit) on SQLite, PostgreSQL and MariaDB: each change writes its
entry in its own transaction (none for a refused or rolled-back change, and no change
without its entry), before -> after per field with the data, no secret, filters and paging,
retention, and two writers at once each with their own correct entry."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import MINUTE, SECOND, T0

from fss.domain.alert_targets import TargetSpec
from fss.domain.group_file import GroupEntry
from fss.domain.group_spec import GroupSpec
from fss.errors import InvalidField
from fss.store import alert_console, alert_targets, audit, backfills, clients, group_files, groups
from fss.store.audit import Actor, AuditFilter, AuditRow
from fss.store.tables import alert, audit_event, client, dead_letter

ALICE = Actor("alice", "session", "10.1.2.3")
DEPLOY = Actor("deploy", "token", "10.9.9.9")
BOB = Actor("bob", "cli", "ops-host")


def spec(**changes: Any) -> GroupSpec:
    values: dict[str, Any] = {"caption": "nightly", "job_name": "demo.job", "interval_ms": 60_000}
    return GroupSpec(**(values | changes))


def entries(engine: Engine, **filters: Any) -> list[AuditRow]:
    """Oldest first."""
    with engine.connect() as conn:
        return list(reversed(audit.list_audit(conn, AuditFilter(**filters))))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_event)).scalar_one())


def test_group_changes_are_recorded_with_who_where_and_each_field_before_after(
    engine: Engine,
) -> None:
    group_id = groups.add_group(engine, spec(data={"region": "eu"}), T0, key="nightly",
                                actor=ALICE)
    groups.edit_group(engine, group_id, {"caption": "nightly v2", "data": {"region": "us"}},
                      T0 + SECOND, actor=DEPLOY)
    groups.set_enabled(engine, group_id, False, T0 + 2 * SECOND, note="db maintenance",
                       actor=BOB)
    groups.set_enabled(engine, group_id, True, T0 + 3 * SECOND, actor=BOB)
    task_id = groups.run_now(engine, group_id, T0 + 4 * SECOND, {"once": True}, ALICE)
    groups.delete_group(engine, group_id, T0 + 5 * SECOND, ALICE)

    rows = entries(engine)
    assert [r.action for r in rows] == [
        "group.create", "group.edit", "group.disable", "group.enable", "group.run",
        "group.delete",
    ]
    create, edit, disable, enable, run, delete = rows
    assert (create.actor, create.actor_kind, create.source, create.at) == (
        "alice", "session", "10.1.2.3", T0)
    assert create.group_id == group_id and create.subject == "nightly"
    assert create.changes["caption"] == [None, "nightly"]
    assert create.changes["data"] == [None, {"region": "eu"}]
    assert create.changes["interval_ms"] == [None, 60_000]
    assert (edit.actor, edit.actor_kind, edit.source) == ("deploy", "token", "10.9.9.9")
    assert edit.changes == {
        "caption": ["nightly", "nightly v2"], "data": [{"region": "eu"}, {"region": "us"}],
    }
    assert edit.detail == {"version": [1, 2]}
    assert disable.changes == {"is_enable": [True, False],
                               "disabled_note": [None, "db maintenance"]}
    assert (disable.actor, disable.actor_kind, disable.source) == ("bob", "cli", "ops-host")
    assert enable.changes == {"is_enable": [False, True],
                              "disabled_note": ["db maintenance", None]}
    assert run.detail == {"task_id": task_id, "data": {"once": True}}
    assert delete.changes["caption"] == ["nightly v2", None]
    assert delete.changes["data"] == [{"region": "us"}, None]
    assert all(r.at.tzinfo is not None for r in rows)


def test_a_refused_or_rolled_back_change_writes_no_entry(engine: Engine) -> None:
    group_id = groups.add_group(engine, spec(), T0, actor=ALICE)
    before = count(engine)

    with pytest.raises(groups.GroupChanged):
        groups.edit_group(engine, group_id, {"caption": "x"}, T0, expected_version=7, actor=ALICE)
    with pytest.raises(InvalidField):  # written, then refused by the on_success check
        groups.add_group(engine, spec(on_success=("no-such-key",)), T0, actor=ALICE)
    with pytest.raises(InvalidField):
        groups.set_enabled(engine, group_id, True, T0, note="why", actor=ALICE)

    assert count(engine) == before


def test_a_change_whose_entry_cannot_be_written_does_not_commit(engine: Engine) -> None:
    """The entry is part of the change: with the table gone the change fails whole."""
    group_id = groups.add_group(engine, spec(), T0)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_event RENAME TO audit_event_away")
    try:
        with pytest.raises(sa.exc.DBAPIError):
            groups.edit_group(engine, group_id, {"caption": "lost"}, T0, actor=ALICE)
        with pytest.raises(sa.exc.DBAPIError):
            groups.add_group(engine, spec(caption="never"), T0, actor=ALICE)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE audit_event_away RENAME TO audit_event")
    with engine.connect() as conn:
        assert groups.get_group(conn, group_id).caption == "nightly"
        assert [g.caption for g in groups.list_groups(conn)] == ["nightly"]


def test_without_an_actor_nothing_is_recorded(engine: Engine) -> None:
    group_id = groups.add_group(engine, spec(), T0)
    groups.edit_group(engine, group_id, {"caption": "y"}, T0)
    assert count(engine) == 0


def test_groups_file_apply_writes_one_entry_per_group_changed(engine: Engine) -> None:
    def apply(*entries_: GroupEntry, prune: bool = False) -> None:
        group_files.apply_file(engine, entries_, (), T0, prune, BOB, {"file": "groups.yaml"})

    apply(GroupEntry("a", spec(caption="A")), GroupEntry("b", spec(caption="B")))
    apply(GroupEntry("a", spec(caption="A2", data={"k": 1})), GroupEntry("b", spec(caption="B")))
    apply(GroupEntry("a", spec(caption="A2", data={"k": 1})), prune=True)

    rows = entries(engine, action="group.apply")
    assert [(r.subject, r.detail) for r in rows] == [
        ("a", {"op": "create", "file": "groups.yaml"}),
        ("b", {"op": "create", "file": "groups.yaml"}),
        ("a", {"op": "update", "file": "groups.yaml"}),
        ("b", {"op": "delete", "file": "groups.yaml"}),
    ]
    assert rows[2].changes == {"caption": ["A", "A2"], "data": [{}, {"k": 1}]}
    assert rows[3].changes["caption"] == ["B", None]
    assert {r.actor for r in rows} == {"bob"}
    # Both groups found by key, the deleted one by the key it had.
    assert [r.detail["op"] for r in entries(engine, group="a")] == ["create", "update"]
    assert [r.detail["op"] for r in entries(engine, group="b")] == ["create", "delete"]


SECRET_HOOK = TargetSpec(
    "ops-hook", "webhook",
    {"url": "https://hooks.example/x/tok-1", "secret": "s3cr3t-one"},
)


def test_alert_targets_are_recorded_with_their_secrets_masked(engine: Engine) -> None:
    alert_targets.add_target(engine, SECRET_HOOK, T0, ALICE)
    changed = TargetSpec("ops-hook", "webhook",
                         {"url": "https://hooks.example/x/tok-1", "secret": "s3cr3t-two"},
                         rate_per_min=5)
    alert_targets.replace_target(engine, changed, T0 + SECOND, ALICE)
    alert_targets.replace_target(engine, changed, T0 + 2 * SECOND, ALICE)  # no change: no entry
    alert_targets.remove_target(engine, "ops-hook", T0 + 3 * SECOND, ALICE)

    rows = entries(engine)
    assert [r.action for r in rows] == ["target.create", "target.update", "target.delete"]
    assert rows[1].changes == {
        "rate_per_min": [20, 5], "config.secret": ["***", "*** (changed)"],
    }
    with engine.connect() as conn:
        stored = conn.execute(sa.select(audit_event.c.changes, audit_event.c.detail)).all()
    text = json.dumps([list(r) for r in stored])
    for secret in ("s3cr3t-one", "s3cr3t-two", "tok-1"):
        assert secret not in text


def test_clients_dead_letters_alerts_and_backfills_are_recorded(engine: Engine) -> None:
    group_id = groups.add_group(engine, spec(), T0, key="g")
    with engine.begin() as conn:
        conn.execute(client.insert().values(
            id="w1", host="h1", ip="10.0.0.1", pid=1, job_names="[]", queue="q",
            registered_at=T0, heartbeat_at=T0,
        ))
        alert_id = conn.execute(alert.insert().values(
            rule="run_failed", subject=f"group:{group_id}", state="open", title="failed",
            opened_at=T0, last_at=T0, open_key="x", task_group_id=group_id,
        )).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(dead_letter.insert().values(received_at=T0, queue="q", reason="r", body="b"))
    clients.kick_client(engine, "w1", "alice", T0, ALICE)
    clients.admit_client(engine, "w1", T0 + SECOND, ALICE)
    alert_console.ack_alert(engine, alert_id, "alice", T0, ALICE)
    alert_console.ack_alert(engine, alert_id, "alice", T0 + SECOND, ALICE)  # changes nothing
    alert_console.silence_group(engine, group_id, T0 + MINUTE, "alice", "deploy", T0, ALICE)
    alert_console.unsilence_group(engine, group_id, T0 + SECOND, ALICE)
    backfills.create_backfill(engine, group_id, T0 - 10 * MINUTE, T0 - 5 * MINUTE, T0,
                              actor=ALICE)
    backfills.cancel_backfill(engine, group_id, T0 + SECOND, ALICE)

    rows = entries(engine)
    assert [r.action for r in rows] == [
        "client.kick", "client.admit", "alert.ack", "alert.silence", "alert.unsilence",
        "group.backfill", "group.backfill_cancel",
    ]
    kick, admit, ack, silence, unsilence, backfill, cancel = rows
    assert kick.subject == "client w1"
    assert kick.changes["kick_reason"] == [None, "operator: alice"]
    assert admit.changes["kick_reason"] == ["operator: alice", None]
    assert ack.changes["acked_by"] == [None, "alice"] and ack.group_id == group_id
    assert silence.changes == {"until": [None, (T0 + MINUTE).isoformat()],
                               "by": [None, "alice"], "note": [None, "deploy"]}
    assert unsilence.changes["note"] == ["deploy", None]
    assert backfill.detail["slots"] == 6 and cancel.group_id == group_id


def test_filters_and_paging(engine: Engine) -> None:
    first = groups.add_group(engine, spec(), T0, key="first", actor=ALICE)
    second = groups.add_group(engine, spec(caption="other"), T0 + MINUTE, actor=BOB)
    for n in range(5):
        groups.edit_group(engine, first, {"timeout_s": 10 + n}, T0 + (2 + n) * MINUTE,
                          actor=DEPLOY)

    assert len(entries(engine, group=first)) == 6
    assert len(entries(engine, group="first")) == 6
    assert len(entries(engine, group=str(second))) == 1
    assert entries(engine, group="nothing-has-this-key") == []
    assert [r.actor for r in entries(engine, user="bob")] == ["bob"]
    assert len(entries(engine, since=T0 + 4 * MINUTE)) == 3
    assert len(entries(engine, action="group.create")) == 2

    with engine.connect() as conn:
        page = audit.list_audit(conn, AuditFilter(limit=3))
        older = audit.list_audit(conn, AuditFilter(limit=3, before_id=page[-1].id))
        last = audit.list_audit(conn, AuditFilter(limit=3, before_id=older[-1].id))
    ids = [r.id for r in page + older + last]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
    with pytest.raises(InvalidField, match="action"):
        AuditFilter(action="group.explode")
    with pytest.raises(InvalidField, match="limit"):
        AuditFilter(limit=0)


def test_retention_deletes_entries_older_than_the_age(engine: Engine) -> None:
    group_id = groups.add_group(engine, spec(), T0, actor=ALICE)
    for n in range(5):
        groups.edit_group(engine, group_id, {"timeout_s": 10 + n}, T0 + n * MINUTE, actor=ALICE)

    removed = audit.prune_audit(engine, T0 + 3 * MINUTE, batch=2)

    assert removed == 4
    assert [r.at for r in entries(engine)] == [T0 + 3 * MINUTE, T0 + 4 * MINUTE]


def run_together(*work: Callable[[], Any]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work))

    def body(function: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            function()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(w,)) for w in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def test_two_editors_at_once_each_get_their_own_correct_entry(engine: Engine) -> None:
    """Two edits of one group race: each entry shows the value its own edit replaced, so
    the entries chain (original -> one -> other), whoever won."""
    group_id = groups.add_group(engine, spec(caption="start"), T0)
    for round_ in range(5):
        start = f"start-{round_}" if round_ else "start"
        run_together(
            functools.partial(groups.edit_group, engine, group_id,
                              {"caption": f"alice-{round_}"}, T0, actor=ALICE),
            functools.partial(groups.edit_group, engine, group_id,
                              {"caption": f"bob-{round_}"}, T0, actor=BOB),
        )
        rows = entries(engine)[-2:]
        assert {r.actor for r in rows} == {"alice", "bob"}
        first, second = rows
        assert first.changes["caption"][0] == start
        assert second.changes["caption"][0] == first.changes["caption"][1]
        assert first.changes["caption"][1] == f"{first.actor}-{round_}"
        assert second.changes["caption"][1] == f"{second.actor}-{round_}"
        assert [first.detail["version"][1], second.detail["version"][1]] == [
            first.detail["version"][0] + 1, first.detail["version"][0] + 2]
        groups.edit_group(engine, group_id, {"caption": f"start-{round_ + 1}"}, T0)
