"""fss.domain.alerts without servers: rule switches, which rule a failure raises, when a
group is late, the delivery backoff, storms, and the message a target is told."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fss.domain.alerts import (
    ALL_RULES,
    FIRING,
    GROUP_LATE,
    HUNG,
    RESOLVED,
    RULES,
    RUN_FAILED,
    TIME_LIMIT,
    AlertView,
    delivery_backoff,
    failure_rule,
    group_rules_on,
    late_after,
    notice_message,
    parse_rules,
    plan_storm,
    storm_message,
)
from fss.errors import InvalidField

T0 = datetime(2031, 3, 14, 9, 0, tzinfo=timezone.utc)
GRACE = timedelta(seconds=60)


def test_rule_switches_parse_all_none_and_lists_and_refuse_unknown_names() -> None:
    assert parse_rules("all") == parse_rules("") == parse_rules(None) == ALL_RULES
    assert parse_rules("none") == frozenset()
    assert parse_rules(" run_failed , hung ") == {RUN_FAILED, HUNG}
    with pytest.raises(InvalidField, match="unknown rule 'run_faild'"):
        parse_rules("run_failed,run_faild")


@given(st.lists(st.sampled_from(sorted(RULES)), unique=True),
       st.lists(st.sampled_from(sorted(RULES)), unique=True))
def test_a_group_never_turns_on_a_rule_that_is_off_globally(
    global_on: list[str], own: list[str]
) -> None:
    import json

    on = group_rules_on(frozenset(global_on), json.dumps(own))
    assert on == frozenset(global_on) & frozenset(own)
    assert group_rules_on(frozenset(global_on), None) == frozenset(global_on)


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        ("time limit exceeded after 30 s", TIME_LIMIT),
        ("shard 2: time limit exceeded after 30 s: still working", TIME_LIMIT),
        ("hung: no progress or log from w1 for 300 s", HUNG),
        ("shard 1 on w2: hung: no progress", HUNG),
        ("Traceback ...\nValueError: the run hung up the phone", RUN_FAILED),
        (None, RUN_FAILED),
    ],
)
def test_which_rule_a_final_failure_raises(error: str | None, rule: str) -> None:
    assert failure_rule(error) == rule


def test_late_after_is_one_period_plus_grace_or_the_group_s_own() -> None:
    def allowed(planned: datetime = T0, **kw: object) -> timedelta:
        values: dict[str, object] = {"interval_ms": None, "cron": None, "time_zone": None,
                                     "late_after_s": None, "grace": GRACE}
        values.update(kw)
        return late_after(planned, **values)  # type: ignore[arg-type]

    assert allowed(interval_ms=5000) == timedelta(seconds=65)
    # A cron run planned on its slot: the gap to the next slot.
    at_two = T0.replace(hour=2)
    assert allowed(at_two, cron="0 2 * * *") == timedelta(hours=24, seconds=60)
    # 02:00 in Shanghai is 18:00 UTC the day before: its slot, and a day to the next one.
    shanghai_two = datetime(2031, 3, 13, 18, 0, tzinfo=timezone.utc)
    assert allowed(shanghai_two, cron="0 2 * * *", time_zone="Asia/Shanghai") == timedelta(
        hours=24, seconds=60)
    assert allowed(cron="*/15 * * * * *") == timedelta(seconds=75)
    # A weekly cron on Sunday written as 7: a week, not a day (2031-03-16 is a Sunday).
    sunday = datetime(2031, 3, 16, tzinfo=timezone.utc)
    assert allowed(sunday, cron="0 0 * * 7") == timedelta(days=7, seconds=60)
    assert allowed(interval_ms=5000, late_after_s=600) == timedelta(seconds=600)
    assert allowed() == GRACE  # the job sets the next time: only the grace


@given(st.integers(min_value=0, max_value=10_000))
def test_the_delivery_backoff_grows_and_stays_within_ten_minutes(attempts: int) -> None:
    wait = delivery_backoff(attempts)
    assert timedelta(seconds=5) <= wait <= timedelta(minutes=10)
    assert delivery_backoff(attempts + 1) >= wait


@given(
    st.lists(
        st.tuples(st.sampled_from(["firing", "resolved", "reminder"]),
                  st.sampled_from([RUN_FAILED, GROUP_LATE, HUNG])),
        max_size=60,
    ),
    st.integers(min_value=0, max_value=20),
)
def test_a_storm_plan_places_every_notice_once(
    kinds: list[tuple[str, str]], threshold: int
) -> None:
    notices = [(i, kind, rule) for i, (kind, rule) in enumerate(kinds)]
    plan = plan_storm(notices, threshold)
    folded = [i for ids in plan.folded.values() for i in ids]
    assert sorted(plan.alone + folded) == [n[0] for n in notices]
    for (kind, rule), ids in plan.folded.items():
        assert threshold > 0 and len(ids) > threshold
        assert all(notices[i][1:] == (kind, rule) for i in ids)


def test_the_resolved_notices_of_a_storm_fold_too_and_few_go_alone() -> None:
    notices = [(i, "resolved", GROUP_LATE) for i in range(1, 13)]
    notices += [(20, "firing", GROUP_LATE), (21, "reminder", GROUP_LATE)]
    plan = plan_storm(notices, threshold=10)
    assert plan.folded == {("resolved", GROUP_LATE): list(range(1, 13))}
    assert plan.alone == [20, 21]
    assert plan_storm(notices, threshold=0).folded == {}


def test_the_stragglers_of_a_continuing_storm_fold_from_two_and_one_goes_alone() -> None:
    notices = [(1, "firing", GROUP_LATE), (2, "firing", GROUP_LATE), (3, "firing", HUNG)]
    plan = plan_storm(notices, threshold=10, continuing={("firing", GROUP_LATE)})
    assert plan.folded == {("firing", GROUP_LATE): [1, 2]}
    assert plan.alone == [3]
    assert plan_storm(notices[:1], 10, {("firing", GROUP_LATE)}).alone == [1]
    assert plan_storm(notices, 0, {("firing", GROUP_LATE)}).folded == {}


def _view(**kw: object) -> AlertView:
    values: dict[str, object] = {
        "id": 7, "rule": RUN_FAILED, "subject": "group:12", "state": "open",
        "title": "backup (db.dump): run failed", "detail": "task 99 attempt 3: ValueError: x",
        "count": 4, "opened_at": T0, "resolved_at": None, "resolved_note": None,
        "task_group_id": 12, "task_id": 99, "client_id": "w1", "group_key": "backup",
        "group_caption": "Backup", "job_name": "db.dump",
    }
    values.update(kw)
    return AlertView(**values)  # type: ignore[arg-type]


def test_a_firing_notice_says_what_failed_and_links_the_task_page() -> None:
    message = notice_message(_view(), FIRING, "k1", T0, console_url="http://c.example/")
    assert message.headline == "[fss FIRING] backup (db.dump): run failed"
    assert "ValueError: x" in message.text
    assert message.url == "http://c.example/tasks/99"
    body = message.to_json()
    assert (body["id"], body["state"], body["rule"], body["count"]) == ("k1", "firing",
                                                                        RUN_FAILED, 4)
    assert body["group"] == {"id": 12, "key": "backup", "caption": "Backup",
                             "job_name": "db.dump"}


def test_a_resolved_notice_says_how_long_it_was_open() -> None:
    view = _view(state="resolved", resolved_at=T0 + timedelta(hours=1),
                 resolved_note="the group succeeded again (task 120)")
    message = notice_message(view, RESOLVED, "k2", T0)
    assert message.to_json()["state"] == "resolved"
    assert message.text.startswith("the group succeeded again")
    assert message.url is None  # no console URL configured


def test_a_storm_summary_counts_names_a_few_and_the_cause() -> None:
    views = [_view(id=i, rule=GROUP_LATE, title=f"g{i}: late") for i in range(25)]
    cause = _view(id=99, rule="client_lost", title="client w1 lost", task_group_id=None)
    message = storm_message(FIRING, GROUP_LATE, views, [cause], "s1", T0, "http://c")
    assert message.title == "25 groups late"
    assert message.text.splitlines()[0] == "likely cause: client w1 lost"
    assert "... and 15 more" in message.text
    resolved = storm_message(RESOLVED, GROUP_LATE, views, [cause], "s2", T0)
    assert resolved.title == "25 groups late resolved"
    assert "likely cause" not in resolved.text
    assert resolved.to_json()["state"] == "resolved"
