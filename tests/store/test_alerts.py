"""Alerts raised and resolved in the transactions of the events behind them, their outbox
turned into deliveries, storms folded, attempts recorded; on SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

import functools
import json
import random
import re
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    SECOND,
    T0,
    add_interval_group,
    dispatch,
    emptied,
    group_raw,
    pending,
    statements_of,
)

from fss.domain.alert_targets import TargetSpec
from fss.domain.alerts import (
    GROUP_LATE,
    HUNG,
    JOB_UNSERVED,
    RUN_FAILED,
    TIME_LIMIT,
    AlertPolicy,
    group_rules_on,
    group_subject,
    open_key,
)
from fss.events import ClientHeartbeat, Event, TaskFinished, TaskStarted
from fss.store import alert_checks, recording, supervision
from fss.store.alert_outbox import (
    FOLDED,
    PENDING,
    SILENCED,
    AttemptResult,
    compose,
    due_deliveries,
    expand_notices,
    record_attempt,
)
from fss.store.alert_targets import add_target
from fss.store.alerts import raise_alert, resolve_alerts
from fss.store.dead_letters import NewDeadLetter, add_dead_letters
from fss.store.deadlocks import in_transaction_retrying
from fss.store.tables import (
    alert,
    alert_attempt,
    alert_delivery,
    alert_notice,
    alert_silence,
    client,
    dead_letter,
    server_node,
    task,
    task_group,
)

BOOM = "Traceback (most recent call last):\nValueError: boom\n"
GRACE = timedelta(seconds=60)


def _record(engine: Engine, events: Sequence[Event], now: datetime, **kw: Any) -> None:
    with engine.begin() as conn:
        recording.record(conn, events, now, **kw)


def _run(engine: Engine, task_id: int, now: datetime, success: bool, error: str | None = None,
         **kw: Any) -> None:
    attempt = dispatch(engine, task_id, now)
    finished = TaskFinished(task_id, attempt, CLIENT, success, 100, now + SECOND,
                            error=None if success else (error or BOOM))
    _record(engine, [TaskStarted(task_id, attempt, CLIENT, now), finished], now + 2 * SECOND,
            **kw)


def _alerts(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(alert).order_by(alert.c.id))]


def _notices(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alert_notice.c.alert_id, alert_notice.c.kind).order_by(alert_notice.c.id)
        )
        return [(int(a), k) for a, k in rows]


def _deliveries(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alert_delivery).order_by(alert_delivery.c.id))
        return [dict(r._mapping) for r in rows]


def _group(engine: Engine, **values: Any) -> tuple[int, int]:
    group_id = add_interval_group(engine, T0 - MINUTE, start_at=T0, caption="nightly")
    if values:
        with engine.begin() as conn:
            conn.execute(task_group.update().where(task_group.c.id == group_id).values(**values))
    return group_id, pending(engine, group_id)["id"]


def _target(engine: Engine, name: str = "ops", **kw: Any) -> int:
    spec = TargetSpec(name, "webhook", {"url": "http://127.0.0.1:9/hook"}, **kw)
    return add_target(engine, spec, T0).id


def test_a_final_failure_opens_one_alert_that_repeats_count_up_and_a_success_resolves(
    engine: Engine,
) -> None:
    group_id, task_id = _group(engine)
    _run(engine, task_id, T0, success=False)

    (opened,) = _alerts(engine)
    assert opened["rule"] == RUN_FAILED
    assert opened["state"] == "open"
    assert opened["open_key"] == open_key(RUN_FAILED, group_subject(group_id))
    assert opened["task_id"] == task_id
    assert "ValueError: boom" in opened["detail"]
    assert "nightly" in opened["title"]
    assert opened["planned_at"] == T0
    assert group_raw(engine, group_id)["alert_open"]
    assert _notices(engine) == [(opened["id"], "firing")]

    second = pending(engine, group_id)["id"]
    _run(engine, second, T0 + MINUTE, success=False)
    (repeated,) = _alerts(engine)
    assert repeated["count"] == 2
    assert repeated["task_id"] == second
    assert _notices(engine) == [(opened["id"], "firing")]  # no second message

    third = pending(engine, group_id)["id"]
    _run(engine, third, T0 + 2 * MINUTE, success=True)
    (closed,) = _alerts(engine)
    assert closed["state"] == "resolved"
    assert closed["open_key"] is None
    assert closed["resolved_at"] is not None
    assert "succeeded again" in closed["resolved_note"]
    assert _notices(engine) == [(opened["id"], "firing"), (opened["id"], "resolved")]
    assert not group_raw(engine, group_id)["alert_open"]

    # Once its resolution was told, the next failure is a new alert with a new firing notice.
    with engine.begin() as conn:
        conn.execute(alert_notice.update().values(expanded_at=T0 + 2 * MINUTE + 3 * SECOND))
    fourth = pending(engine, group_id)["id"]
    _run(engine, fourth, T0 + 3 * MINUTE, success=False)
    assert [a["state"] for a in _alerts(engine)] == ["resolved", "open"]
    assert [k for _, k in _notices(engine)] == ["firing", "resolved", "firing"]


def test_a_flapping_group_reopens_its_alert_while_the_resolved_notice_is_held_back(
    engine: Engine,
) -> None:
    """Failure, success, failure within the resolve hold (60 s): one alert, reopened and
    counted up; its resolved notice withdrawn before anyone was told, no second firing."""
    hold = timedelta(seconds=60)
    group_id, task_id = _group(engine)  # every 60 s from T0

    def next_run(success: bool) -> datetime:
        waiting = pending(engine, group_id)
        _run(engine, waiting["id"], waiting["start_at"], success=success)
        return waiting["start_at"] + 2 * SECOND  # when it was recorded

    def expand(now: datetime) -> int:
        with engine.begin() as conn:
            return expand_notices(conn, now, storm_threshold=10, installation="i",
                                  resolve_hold=hold)

    _run(engine, task_id, T0, success=False)
    resolved_at = next_run(success=True)  # T0 + 62 s
    assert expand(resolved_at + 10 * SECOND) == 1  # the firing notice; the resolved one waits
    next_run(success=False)  # T0 + 122 s: 60 s after, within the hold
    (flapping,) = _alerts(engine)
    assert (flapping["state"], flapping["count"], flapping["resolved_at"]) == ("open", 2, None)
    assert [k for _, k in _notices(engine)] == ["firing"]
    assert group_raw(engine, group_id)["alert_open"]
    # Healthy for longer than the hold: resolved, and told once.
    resolved_at = next_run(success=True)
    assert expand(resolved_at + 30 * SECOND) == 0
    assert expand(resolved_at + 61 * SECOND) == 1
    next_run(success=True)
    next_run(success=False)
    assert [a["state"] for a in _alerts(engine)] == ["resolved", "open"]
    assert [k for _, k in _notices(engine)] == ["firing", "resolved", "firing"]


def test_a_success_of_a_group_without_an_open_alert_writes_nothing(engine: Engine) -> None:
    _, task_id = _group(engine)
    _run(engine, task_id, T0, success=True)
    assert _alerts(engine) == [] and _notices(engine) == []


def test_rules_off_for_the_group_or_globally_raise_nothing(engine: Engine) -> None:
    _, quiet_task = _group(engine, alert_rules="[]")
    _run(engine, quiet_task, T0, success=False)
    assert _alerts(engine) == []

    _, loud_task = _group(engine)
    _run(engine, loud_task, T0, success=False,
         alerting=AlertPolicy(rules=frozenset({GROUP_LATE})))
    assert _alerts(engine) == []

    _, hung_only_task = _group(engine, alert_rules='["hung"]')
    _run(engine, hung_only_task, T0, success=False)
    assert _alerts(engine) == []


def test_a_failure_with_retries_left_raises_nothing_until_the_last_attempt(
    engine: Engine,
) -> None:
    _, task_id = _group(engine, retries=1, retry_delay_ms=1000, retry_jitter=False)
    _run(engine, task_id, T0, success=False)
    assert _alerts(engine) == []
    _run(engine, task_id, T0 + 5 * SECOND, success=False)
    (opened,) = _alerts(engine)
    assert opened["rule"] == RUN_FAILED
    assert "attempt 2" in opened["detail"]
    # The run's planned slot, not the retry's start.
    assert opened["planned_at"] == T0


@pytest.mark.parametrize(
    ("error", "rule"),
    [("time limit exceeded after 5 s", TIME_LIMIT), ("SoftTimeLimitExceeded: x", RUN_FAILED)],
)
def test_a_time_limit_failure_raises_its_own_rule(engine: Engine, error: str, rule: str) -> None:
    _, task_id = _group(engine)
    _run(engine, task_id, T0, success=False, error=error)
    assert [a["rule"] for a in _alerts(engine)] == [rule]


def test_the_supervisor_failing_a_hung_run_raises_hung(engine: Engine) -> None:
    group_id, task_id = _group(engine)
    dispatch(engine, task_id, T0)
    with engine.connect() as conn:
        (open_task,) = [t for t in supervision.in_flight_tasks(conn) if t.id == task_id]
    with engine.begin() as conn:
        assert supervision.fail_task(conn, open_task, "hung: no progress for 300 s", T0 + MINUTE)
    (opened,) = _alerts(engine)
    assert (opened["rule"], opened["task_group_id"]) == (HUNG, group_id)


def test_a_reminder_comes_once_per_window_and_never_for_an_acknowledged_alert(
    engine: Engine,
) -> None:
    hour = timedelta(hours=1)

    def again(now: datetime) -> Any:
        with engine.begin() as conn:
            return raise_alert(conn, rule="client_lost", subject="client:w1", title="w1 lost",
                               now=now, repeat_after=hour)

    first = again(T0)
    assert first.new
    assert not again(T0 + 30 * MINUTE).reminded
    assert again(T0 + hour + SECOND).reminded
    assert not again(T0 + hour + 2 * SECOND).reminded
    with engine.begin() as conn:
        conn.execute(alert.update().values(acked_by="ann", acked_at=T0 + 2 * hour))
    assert not again(T0 + 5 * hour).reminded
    assert [k for _, k in _notices(engine)] == ["firing", "reminder"]
    assert _alerts(engine)[0]["count"] == 5


def test_raisers_racing_on_one_subject_open_one_alert_with_one_notice(engine: Engine) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def raiser() -> None:
        try:
            barrier.wait()
            # As the callers do (the recorder, the supervisor's next sweep): a transaction
            # the database chose as a deadlock's victim runs again from the start (MariaDB
            # picks one when two INSERT IGNOREs met the same new key).
            in_transaction_retrying(
                engine,
                lambda conn: raise_alert(
                    conn, rule="client_lost", subject="client:w9", title="w9 lost", now=T0
                ),
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=raiser) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (only,) = _alerts(engine)
    assert only["count"] == 6
    assert _notices(engine) == [(only["id"], "firing")]


def test_resolving_a_key_with_nothing_open_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert resolve_alerts(conn, ["run_failed|group:1"], "x", T0) == []
    assert _notices(engine) == []


def _raise_group(engine: Engine, group_id: int, now: datetime = T0, rule: str = RUN_FAILED) -> int:
    with engine.begin() as conn:
        return raise_alert(conn, rule=rule, subject=group_subject(group_id),
                           title=f"group {group_id} failed", now=now, group_id=group_id).alert_id


def _expand(engine: Engine, now: datetime = T0, threshold: int = 10) -> int:
    with engine.begin() as conn:
        return expand_notices(conn, now, storm_threshold=threshold, installation="inst")


def test_notices_go_to_the_default_targets_or_to_the_group_s_own(engine: Engine) -> None:
    default = _target(engine, "ops")
    _target(engine, "not-default", is_default=False)
    pager = _target(engine, "pager", is_default=False)
    only_late = _target(engine, "late-only", rules=frozenset({GROUP_LATE}))
    plain, _ = _group(engine)
    own, _ = _group(engine, alert_targets='["pager", "gone"]')
    _raise_group(engine, plain)
    _raise_group(engine, own)

    assert _expand(engine) == 2
    assert _expand(engine) == 0  # expanded once
    with engine.connect() as conn:
        notice_of = dict(conn.execute(sa.select(alert_notice.c.alert_id, alert_notice.c.id)).all())
    got = {(d["notice_id"], d["target_id"]) for d in _deliveries(engine)}
    alerts = {a["task_group_id"]: a["id"] for a in _alerts(engine)}
    assert got == {(notice_of[alerts[plain]], default), (notice_of[alerts[own]], pager)}
    assert only_late not in {t for _, t in got}
    keys = [d["idempotency_key"] for d in _deliveries(engine)]
    assert len(set(keys)) == 2 and all(k.startswith("fss-inst-") for k in keys)


def test_a_silenced_group_s_notices_are_recorded_not_sent(engine: Engine) -> None:
    _target(engine)
    group_id, _ = _group(engine)
    with engine.begin() as conn:
        conn.execute(alert_silence.insert().values(
            task_group_id=group_id, until=T0 + MINUTE, by_user="ann", created_at=T0))
    _raise_group(engine, group_id)
    _expand(engine)
    assert [d["state"] for d in _deliveries(engine)] == [SILENCED]
    with engine.connect() as conn:
        assert due_deliveries(conn, T0 + SECOND) == []


def test_a_storm_becomes_one_summary_naming_the_likely_cause(engine: Engine) -> None:
    target = _target(engine)
    with engine.begin() as conn:
        raise_alert(conn, rule="client_lost", subject="client:w1", title="client w1 lost",
                    now=T0 - MINUTE, client_id="w1")
    _expand(engine, T0 - MINUTE)
    group_ids = [_group(engine)[0] for _ in range(25)]
    for group_id in group_ids:
        _raise_group(engine, group_id, rule=GROUP_LATE)

    _expand(engine, T0, threshold=10)

    rows = [d for d in _deliveries(engine) if d["created_at"] == T0]
    summaries = [d for d in rows if d["notice_id"] is None]
    assert len(summaries) == 1
    folded = [d for d in rows if d["state"] == FOLDED]
    assert len(folded) == 25
    assert {d["folded_into"] for d in folded} == {summaries[0]["id"]}
    with engine.connect() as conn:
        due = [d for d in due_deliveries(conn, T0 + SECOND) if d.notice_id is None]
        (message,) = compose(conn, due, T0, "inst", "http://console").values()
    assert message.title == "25 groups late"
    assert "likely cause: client w1 lost" in message.text
    assert message.count == 25 and len(message.alert_ids) == 25
    assert message.url == "http://console/alerts"
    assert summaries[0]["target_id"] == target


def test_an_attempt_is_recorded_sent_retried_with_backoff_or_failed_for_good(
    engine: Engine,
) -> None:
    _target(engine)
    group_id, _ = _group(engine)
    _raise_group(engine, group_id)
    _expand(engine)

    def attempt(now: datetime, ok: bool, max_attempts: int = 3) -> bool:
        with engine.begin() as conn:
            (due,) = due_deliveries(conn, now)
            error = None if ok else "HTTP 500"
            result = AttemptResult(ok, 200 if ok else 500, "answer", error, 12)
            return record_attempt(conn, due, result, now, node="n1", max_attempts=max_attempts)

    assert attempt(T0, ok=False)
    (row,) = _deliveries(engine)
    assert (row["state"], row["attempts"], row["next_at"]) == (PENDING, 1, T0 + 5 * SECOND)
    with engine.connect() as conn:
        assert due_deliveries(conn, T0 + SECOND) == []
    assert attempt(T0 + 5 * SECOND, ok=False)
    assert _deliveries(engine)[0]["next_at"] == T0 + 15 * SECOND
    assert attempt(T0 + 15 * SECOND, ok=False)
    (row,) = _deliveries(engine)
    assert (row["state"], row["attempts"]) == ("failed", 3)
    with engine.connect() as conn:
        outcomes = conn.execute(sa.select(alert_attempt.c.outcome)).scalars().all()
    assert outcomes == ["failed"] * 3


def test_a_second_record_of_the_same_attempt_changes_nothing(engine: Engine) -> None:
    _target(engine)
    group_id, _ = _group(engine)
    _raise_group(engine, group_id)
    _expand(engine)
    with engine.connect() as conn:
        (due,) = due_deliveries(conn, T0)
    ok = AttemptResult(True, 200, "ok", None, 5)
    with engine.begin() as conn:
        assert record_attempt(conn, due, ok, T0, node="a", max_attempts=3)
    with engine.begin() as conn:
        assert not record_attempt(conn, due, ok, T0, node="b", max_attempts=3)
    (row,) = _deliveries(engine)
    assert (row["state"], row["attempts"], row["sent_at"]) == ("sent", 1, T0)


def test_a_group_is_late_after_one_period_plus_grace_without_a_success(engine: Engine) -> None:
    policy = AlertPolicy()
    group_id, task_id = _group(engine)

    def check(now: datetime) -> list[int]:
        with engine.begin() as conn:
            return alert_checks.check_late_groups(conn, now, policy, GRACE)

    assert check(T0 + 120 * SECOND) == []  # 60 s + 60 s grace: not yet
    assert check(T0 + 121 * SECOND) == [group_id]
    assert check(T0 + 180 * SECOND) == []  # open already
    (late,) = _alerts(engine)
    assert late["rule"] == GROUP_LATE
    assert "has not been dispatched" in late["detail"]
    # A success resolves it.
    _run(engine, task_id, T0 + 200 * SECOND, success=True)
    assert _alerts(engine)[0]["state"] == "resolved"


def test_a_group_whose_every_run_fails_goes_late_too(engine: Engine) -> None:
    policy = AlertPolicy()
    group_id, task_id = _group(engine, late_after_s=300)
    _run(engine, task_id, T0, success=False)
    with engine.begin() as conn:
        assert alert_checks.check_late_groups(conn, T0 + 200 * SECOND, policy, GRACE) == []
        assert alert_checks.check_late_groups(conn, T0 + 301 * SECOND, policy, GRACE) == [
            group_id
        ]
    late = [a for a in _alerts(engine) if a["rule"] == GROUP_LATE]
    assert "failed" in late[0]["detail"]


def test_a_disabled_group_is_never_late_and_its_open_alerts_resolve(engine: Engine) -> None:
    policy = AlertPolicy()
    group_id, _ = _group(engine)
    _raise_group(engine, group_id)
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(
            is_enable=False))
        assert alert_checks.check_late_groups(conn, T0 + 3600 * SECOND, policy, GRACE) == []
        assert len(alert_checks.resolve_gone_groups(conn, T0 + 3600 * SECOND)) == 1
    assert _alerts(engine)[0]["state"] == "resolved"


def test_three_hundred_late_groups_are_raised_in_one_check(engine: Engine) -> None:
    policy = AlertPolicy()
    _target(engine)
    ids = [add_interval_group(engine, T0 - MINUTE, start_at=T0, caption=f"g{i}")
           for i in range(300)]
    with engine.begin() as conn:
        newly = alert_checks.check_late_groups(conn, T0 + 10 * MINUTE, policy, GRACE)
    assert sorted(newly) == sorted(ids)
    _expand(engine, T0 + 10 * MINUTE)
    sendable = [d for d in _deliveries(engine) if d["state"] == PENDING]
    assert len(sendable) == 1 and sendable[0]["notice_id"] is None



def test_what_alerts_cost_a_run_s_end(engine: Engine) -> None:
    """A success with nothing open costs no statement; a final failure with its rule off
    none either; with it on: a look for a recently resolved one to reopen, the group's
    name, the alert, its notice, the group's flag."""
    costs = {}
    for name, success, policy in (
        ("ok", True, AlertPolicy()),
        ("fail, rules off", False, AlertPolicy(rules=frozenset())),
        ("fail", False, AlertPolicy()),
    ):
        _, task_id = _group(engine)
        attempt = dispatch(engine, task_id, T0)
        event = TaskFinished(task_id, attempt, CLIENT, success, 10, T0,
                             error=None if success else "x")
        costs[name] = statements_of(
            engine, functools.partial(_record, engine, [event], T0, alerting=policy)
        )
    touching = re.compile(r"\b(FROM|INTO|UPDATE) alert", re.IGNORECASE)
    assert not any(touching.search(s) for s in costs["ok"])
    assert not any(touching.search(s) for s in costs["fail, rules off"])
    extra = len(costs["fail"]) - len(costs["fail, rules off"])
    assert extra == 5, costs["fail"]



def test_a_group_back_from_being_late_gets_a_fresh_late_after_for_what_it_still_owes(
    engine: Engine,
) -> None:
    """After an outage the catch-up run is planned in the past; the success that resolved
    the group's alert restarts the switch instead of raising it again at once."""
    policy = AlertPolicy()
    group_id, task_id = _group(engine)
    with engine.begin() as conn:
        assert alert_checks.check_late_groups(conn, T0 + 10 * MINUTE, policy, GRACE) == [group_id]
    _run(engine, task_id, T0 + 10 * MINUTE, success=True)  # resolves at T0 + 10 min + 2 s
    with engine.begin() as conn:
        conn.execute(task_group.update().where(task_group.c.id == group_id).values(
            next_at=T0 + MINUTE))
        conn.execute(task.update().where(task.c.status == 0).values(start_at=T0 + MINUTE))
        assert alert_checks.check_late_groups(conn, T0 + 11 * MINUTE, policy, GRACE) == []
        assert alert_checks.check_late_groups(conn, T0 + 13 * MINUTE, policy, GRACE) == [
            group_id
        ]


def _open_rules(engine: Engine) -> dict[str, str]:
    return {a["subject"]: a["rule"] for a in _alerts(engine) if a["state"] == "open"}


def test_a_job_without_a_live_client_is_unserved_until_one_serves_it(engine: Engine) -> None:
    policy = AlertPolicy()
    alive_since = T0 - 10 * SECOND
    _group(engine)  # job demo.job
    _group(engine, client_tag="gpu")
    _group(engine, alert_rules='["run_failed"]', job_name="quiet.job")
    with engine.connect() as conn:
        needs = alert_checks.unserved_needs(conn, alive_since, policy)
    assert [n.subject for n in needs] == ["job:demo.job", "job:demo.job#gpu"]
    with engine.begin() as conn:
        for need in needs:
            assert alert_checks.raise_unserved(conn, need, T0 - MINUTE, T0, policy)
    assert "no live client for 60 s" in _alerts(engine)[0]["title"]
    # A worker serving demo.job without the tag: only the untagged need is served.
    beat = ClientHeartbeat("w1", "h", "127.0.0.1", 1, ("demo.job",), "q.w1", T0)
    with engine.begin() as conn:
        recording.upsert_client(conn, beat, T0)
        still = alert_checks.unserved_needs(conn, alive_since, policy)
        assert [n.subject for n in still] == ["job:demo.job#gpu"]
        alert_checks.resolve_served(conn, [n.subject for n in still], T0)
    assert _open_rules(engine) == {"job:demo.job#gpu": "job_unserved"}


_JOBS = ("a", "a.b", "B", "job-1", "z:9", "zz")
_TAGS = (None, "", "gpu", "GPU", "eu-1", "x@y")
_RULES = (None, '["run_failed"]', '["job_unserved"]', "[]", "not json")


def _expected_needs(
    groups: list[tuple[int, str, str | None, bool, str | None]],
    clients: list[tuple[tuple[str, ...], str | None, bool]],
    policy: AlertPolicy,
) -> list[tuple[str, str | None, tuple[int, ...], int]]:
    """What unserved_needs must answer, worked out in Python from the rows as generated."""
    served = {(job, tag) for jobs, tags, live in clients if live for job in jobs
              for tag in {None, *(t for t in (tags or "").split(",") if t)}}
    by_key: dict[tuple[str, str | None], dict[str | None, list[int]]] = {}
    for group_id, job, tag, enabled, rules in groups:
        if enabled and JOB_UNSERVED in group_rules_on(policy.rules, rules):
            by_key.setdefault((job, tag or None), {}).setdefault(rules, []).append(group_id)
    expected = []
    for (job, tag), by_rules in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if (job, tag) in served:
            continue
        ids = {i for members in by_rules.values() for i in (min(members), max(members))}
        expected.append((job, tag, tuple(sorted(ids)), sum(map(len, by_rules.values()))))
    return expected


def test_unserved_needs_match_what_generated_groups_and_clients_imply(engine: Engine) -> None:
    """Differential: random groups (jobs, tags with the empty one, enabled or not, their own
    rules) and clients (alive or not, draining, kicked, tagged) against the answer worked
    out in Python, by the index walk and by its fallback, the aggregate of every group."""
    rng = random.Random(20261207)
    for _ in range(25):
        emptied(engine)
        groups: list[tuple[int, str, str | None, bool, str | None]] = []
        clients: list[tuple[tuple[str, ...], str | None, bool]] = []
        policy = rng.choice([AlertPolicy(), AlertPolicy(rules=frozenset({RUN_FAILED}))])
        with engine.begin() as conn:
            for _ in range(rng.randint(0, 40)):
                job, tag = rng.choice(_JOBS), rng.choice(_TAGS)
                enabled, rules = rng.random() < 0.7, rng.choice(_RULES)
                group_id = conn.execute(task_group.insert().values(
                    caption="g", job_name=job, data="{}", start_at=T0, next_at=T0,
                    activate_at=T0, created_at=T0, interval_ms=1000, client_tag=tag,
                    is_enable=enabled, alert_rules=rules,
                )).inserted_primary_key[0]
                groups.append((int(group_id), job, tag, enabled, rules))
            for n in range(rng.randint(0, 4)):
                jobs = tuple(rng.sample(_JOBS, rng.randint(0, 3)))
                tags = rng.choice([None, "", "gpu", "gpu,eu-1", "GPU,x@y", ",gpu,"])
                alive, accepting, kicked = (rng.random() < 0.7 for _ in range(3))
                conn.execute(client.insert().values(
                    id=f"w{n}", host="h", ip="127.0.0.1", pid=n, job_names=json.dumps(jobs),
                    queue=f"q.w{n}", registered_at=T0 - MINUTE, tags=tags,
                    heartbeat_at=T0 if alive else T0 - MINUTE, accepting=accepting,
                    kicked_at=T0 if kicked else None,
                ))
                clients.append((jobs, tags, alive and accepting and not kicked))
        expected = _expected_needs(groups, clients, policy)
        with engine.connect() as conn:
            for probes in (alert_checks.PAIR_PROBES, 0, 5):
                needs = alert_checks.unserved_needs(conn, T0 - 10 * SECOND, policy, probes)
                found = [(n.job_name, n.tag, n.groups, n.count) for n in needs]
                assert found == expected, (probes, groups, clients)


def test_unserved_needs_read_no_group_of_a_served_job(engine: Engine) -> None:
    """Every job served: the check walks the pairs (three statements per job and tag) and
    reads no group; it used to aggregate every enabled group every 15 s."""
    for job in ("demo.job", "other.job"):
        _group(engine, job_name=job)
    _group(engine, job_name="demo.job", client_tag="gpu")
    beat = ClientHeartbeat("w1", "h", "127.0.0.1", 1, ("demo.job", "other.job"), "q.w1", T0,
                           tags=("gpu",))
    with engine.begin() as conn:
        recording.upsert_client(conn, beat, T0)

    def check() -> None:
        with engine.connect() as conn:
            assert alert_checks.unserved_needs(conn, T0 - 10 * SECOND, AlertPolicy()) == []

    statements = statements_of(engine, check)
    assert not [s for s in statements if "GROUP BY" in s.upper()], statements
    assert len(statements) <= 10, statements


def test_a_lost_client_and_node_resolve_when_they_are_back(engine: Engine) -> None:
    policy = AlertPolicy()
    with engine.begin() as conn:
        raise_alert(conn, rule="client_lost", subject="client:w1", title="w1 lost", now=T0,
                    client_id="w1")
        raise_alert(conn, rule="node_lost", subject="node:n2", title="n2 lost", now=T0)
        conn.execute(server_node.insert().values(id="n2", host="h", pid=1, started_at=T0,
                                                 heartbeat_at=T0 - MINUTE, is_alive=False))
        alert_checks.resolve_returned_clients(conn, T0 - 10 * SECOND, T0)
        alert_checks.check_nodes(conn, T0 - 10 * SECOND, T0, policy)
    assert _open_rules(engine) == {"client:w1": "client_lost", "node:n2": "node_lost"}
    beat = ClientHeartbeat("w1", "h", "127.0.0.1", 1, ("demo.job",), "q.w1", T0 + SECOND)
    with engine.begin() as conn:
        recording.upsert_client(conn, beat, T0 + SECOND)
        conn.execute(server_node.update().values(heartbeat_at=T0 + SECOND, is_alive=True,
                                                 unhealthy_reason="claim loop stuck for 31 s"))
        alert_checks.resolve_returned_clients(conn, T0 - 9 * SECOND, T0 + SECOND)
        alert_checks.check_nodes(conn, T0 - 9 * SECOND, T0 + SECOND, policy)
    assert _open_rules(engine) == {"node:n2": "node_unhealthy"}
    with engine.begin() as conn:
        conn.execute(server_node.update().values(unhealthy_reason=None))
        alert_checks.check_nodes(conn, T0 - 8 * SECOND, T0 + 2 * SECOND, policy)
    assert _open_rules(engine) == {}
    notes = {a["rule"]: a["resolved_note"] for a in _alerts(engine)}
    assert notes == {"client_lost": "the client is back", "node_lost": "the node heartbeats again",
                     "node_unhealthy": "the node is healthy again (or stopped)"}


def test_dead_letters_open_one_alert_until_none_are_left(engine: Engine) -> None:
    policy = AlertPolicy()
    with engine.begin() as conn:
        alert_checks.check_dead_letters(conn, T0, policy)
    assert _alerts(engine) == []
    with engine.begin() as conn:
        add_dead_letters(conn, "fss.events", [NewDeadLetter("not JSON", "xx"),
                                              NewDeadLetter("bad time", "yy")], T0)
        alert_checks.check_dead_letters(conn, T0, policy)
        alert_checks.check_dead_letters(conn, T0 + SECOND, policy)
    (opened,) = _alerts(engine)
    assert opened["rule"] == "dead_letters" and opened["count"] == 1
    assert opened["detail"].startswith("2 dead letters; newest from fss.events: bad time")
    with engine.begin() as conn:
        conn.execute(dead_letter.delete())
        alert_checks.check_dead_letters(conn, T0 + 2 * SECOND, policy)
    assert _alerts(engine)[0]["state"] == "resolved"
