"""fss group backfill in the store and the recorder (manual clock, every backend): the slots of a
past window run one at a time, oldest first, each due at its slot (ctx.start_at), alternating
with the group's regular runs; a replayed finish advances nothing twice; bad windows are refused
with one line naming the field."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    NODE,
    SECOND,
    TARGET,
    UTC,
    add_interval_group,
    claim_one,
    dispatch,
    pending,
    task_row,
    task_rows,
)

from fss.domain.group_spec import GroupSpec
from fss.errors import InvalidField
from fss.events import TaskFinished
from fss.store import backfills, groups, recording, supervision, tasks
from fss.store.recording import ClaimNext
from fss.store.tables import backfill

HOUR = timedelta(hours=1)
NOW0 = datetime(2031, 3, 14, 12, 30, tzinfo=UTC)
AT = {h: datetime(2031, 3, 14, h, tzinfo=UTC) for h in range(24)}


def hourly(engine: Engine, now: datetime = NOW0, **changes: Any) -> int:
    spec = GroupSpec(caption="hourly", job_name="demo.job", cron="0 * * * *", **changes)
    return groups.add_group(engine, spec, now)


def backfill_row(engine: Engine, group_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(backfill).where(backfill.c.task_group_id == group_id)
        ).all()
    assert len(rows) == 1, rows
    return dict(rows[0]._mapping)


def run_open_task(
    engine: Engine, group_id: int, now: datetime, success: bool = True
) -> tuple[int, str, datetime]:
    """Claim, dispatch and finish the group's open task at `now`: (task id, kind, the start_at
    its order carried, which the job sees as ctx.start_at)."""
    task_id = pending(engine, group_id)["id"]
    claimed = claim_one(engine, task_id, now)
    attempt = dispatch_claimed(engine, claimed, now)
    finish(engine, task_id, attempt, now + SECOND, success)
    return task_id, claimed.kind, claimed.start_at


def dispatch_claimed(engine: Engine, claimed: Any, now: datetime) -> int:
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(conn, claimed, NODE, TARGET, now)
    assert attempt is not None
    return attempt


def finish(engine: Engine, task_id: int, attempt: int, now: datetime,
           success: bool = True) -> int:
    event = TaskFinished(task_id, attempt, CLIENT, success, 50, now)
    with engine.begin() as conn:
        return recording.record(conn, [event], now).finished


def test_an_hourly_group_backfilled_over_five_past_hours_alternates_slot_and_regular_run(
    engine: Engine,
) -> None:
    group_id = hourly(engine)
    waiting = pending(engine, group_id)
    assert waiting["start_at"] == AT[13]

    created = backfills.create_backfill(engine, group_id, AT[7], AT[11], NOW0)

    assert (created.slots_total, created.next_at, created.started) == (5, AT[7], True)
    first = pending(engine, group_id)
    assert (first["id"], first["kind"], first["start_at"]) == (waiting["id"], "backfill", AT[7])
    assert groups_next_at(engine, group_id) == AT[13]  # the regular slot waits

    ran: list[tuple[str, datetime]] = []
    now = NOW0
    for _ in range(11):
        due = pending(engine, group_id)["start_at"]
        now = max(now, due)
        _, kind, start_at = run_open_task(engine, group_id, now)
        ran.append((kind, start_at))
        now += 2 * SECOND
    assert ran == [
        ("backfill", AT[7]), ("scheduled", AT[13]),
        ("backfill", AT[8]), ("scheduled", AT[14]),
        ("backfill", AT[9]), ("scheduled", AT[15]),
        ("backfill", AT[10]), ("scheduled", AT[16]),
        ("backfill", AT[11]), ("scheduled", AT[17]),
        ("scheduled", AT[18]),
    ]
    row = backfill_row(engine, group_id)
    assert (row["slots_done"], row["next_at"]) == (5, None)
    assert row["done_at"] is not None
    with engine.connect() as conn:
        assert backfills.current_backfill(conn, group_id) is None


def groups_next_at(engine: Engine, group_id: int) -> datetime:
    with engine.connect() as conn:
        return groups.get_group(conn, group_id).next_at


def test_a_replayed_finish_of_a_backfill_run_advances_nothing_twice(engine: Engine) -> None:
    group_id = hourly(engine)
    backfills.create_backfill(engine, group_id, AT[7], AT[9], NOW0)
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, NOW0)
    assert finish(engine, task_id, attempt, NOW0 + SECOND) == 1
    before = backfill_row(engine, group_id), task_rows(engine, group_id)

    assert finish(engine, task_id, attempt, NOW0 + 5 * SECOND) == 0

    assert (backfill_row(engine, group_id), task_rows(engine, group_id)) == before
    assert before[0]["slots_done"] == 1 and before[0]["next_at"] == AT[8]


def test_a_regular_run_due_soon_runs_first_and_the_backfill_begins_at_its_end(
    engine: Engine,
) -> None:
    group_id = hourly(engine)
    now = AT[13] - SECOND  # the regular run is due within the look-ahead: it stays

    created = backfills.create_backfill(engine, group_id, AT[7], AT[8], now)

    assert not created.started
    assert pending(engine, group_id)["kind"] == "scheduled"
    _, kind, start_at = run_open_task(engine, group_id, AT[13])
    assert (kind, start_at) == ("scheduled", AT[13])
    assert (pending(engine, group_id)["kind"], pending(engine, group_id)["start_at"]) == (
        "backfill", AT[7]
    )
    assert groups_next_at(engine, group_id) == AT[14]


def test_a_claimed_regular_task_is_not_taken_over(engine: Engine) -> None:
    group_id = hourly(engine)
    claim_one(engine, pending(engine, group_id)["id"], AT[13] - 3 * SECOND)

    assert not backfills.create_backfill(engine, group_id, AT[7], AT[8], NOW0).started
    assert pending(engine, group_id)["start_at"] == AT[13]


def test_the_recorders_claimed_hand_over_carries_the_slot_and_the_kind(engine: Engine) -> None:
    group_id = hourly(engine)
    now = AT[13]
    backfills.create_backfill(engine, group_id, AT[7], AT[8], now - 10 * SECOND)
    _, kind, _ = run_open_task(engine, group_id, now)  # the converted task: slot 07:00
    assert kind == "backfill"
    regular = pending(engine, group_id)
    assert regular["start_at"] == AT[13]  # passed meanwhile: due now, the misfire rule applies
    attempt = dispatch(engine, regular["id"], now + 5 * SECOND)
    claim_next = ClaimNext("node-a", now + 60 * SECOND, now + 20 * SECOND)
    event = TaskFinished(regular["id"], attempt, CLIENT, True, 50, now + 6 * SECOND)
    with engine.begin() as conn:
        recording.record(conn, [event], now + 6 * SECOND, claim_next)

    [handed] = claim_next.claimed
    assert (handed.kind, handed.start_at) == ("backfill", AT[8])
    assert task_row(engine, handed.id)["kind"] == "backfill"


def test_a_failed_backfill_run_is_retried_and_then_advances_once(engine: Engine) -> None:
    group_id = hourly(engine, retries=1, retry_delay_ms=1000, retry_jitter=False)
    backfills.create_backfill(engine, group_id, AT[7], AT[8], NOW0)
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, NOW0)
    finish(engine, task_id, attempt, NOW0 + SECOND, success=False)
    retry = pending(engine, group_id)
    assert (retry["id"], retry["kind"]) == (task_id, "backfill")
    assert backfill_row(engine, group_id)["slots_done"] == 0

    attempt = dispatch(engine, task_id, retry["start_at"])
    finish(engine, task_id, attempt, retry["start_at"] + SECOND, success=False)

    row = backfill_row(engine, group_id)
    assert (row["slots_done"], row["next_at"]) == (1, AT[8])
    assert (pending(engine, group_id)["kind"], pending(engine, group_id)["start_at"]) == (
        "scheduled", AT[13]
    )


def test_a_backfill_run_failed_by_the_supervisor_advances_its_backfill(engine: Engine) -> None:
    group_id = hourly(engine)
    backfills.create_backfill(engine, group_id, AT[7], AT[8], NOW0)
    task_id = pending(engine, group_id)["id"]
    dispatch(engine, task_id, NOW0)
    with engine.begin() as conn:
        [open_task] = supervision.in_flight_tasks(conn)
        assert open_task.kind == "backfill"
        assert supervision.fail_task(conn, open_task, "client gone", NOW0 + SECOND)

    assert backfill_row(engine, group_id)["next_at"] == AT[8]
    nxt = pending(engine, group_id)
    assert (nxt["kind"], nxt["start_at"]) == ("scheduled", AT[13])
    # and the regular run that ends next hands over to the slot 08:00
    _, kind, _ = run_open_task(engine, group_id, AT[13])
    assert kind == "scheduled"
    assert (pending(engine, group_id)["kind"], pending(engine, group_id)["start_at"]) == (
        "backfill", AT[8]
    )


def test_an_interval_group_backfills_on_its_grid_from_start_at_even_before_it(
    engine: Engine,
) -> None:
    start = datetime(2031, 3, 14, 12, 0, 10, tzinfo=UTC)
    group_id = add_interval_group(engine, NOW0, interval_ms=600_000, start_at=start)

    created = backfills.create_backfill(
        engine, group_id, start - HOUR, start - HOUR + timedelta(minutes=25), NOW0
    )

    assert (created.slots_total, created.next_at) == (3, start - HOUR)
    with engine.connect() as conn:
        current = backfills.current_backfill(conn, group_id)
    assert current is not None and (current.slots_done, current.slots_total) == (0, 3)


def test_cancel_gives_the_waiting_slot_back_to_the_regular_run(engine: Engine) -> None:
    group_id = hourly(engine)
    waiting = pending(engine, group_id)
    backfills.create_backfill(engine, group_id, AT[7], AT[9], NOW0)

    cancelled = backfills.cancel_backfill(engine, group_id, NOW0 + SECOND)

    assert (cancelled.slots_done, cancelled.slots_total, cancelled.next_at) == (0, 3, None)
    back = pending(engine, group_id)
    assert (back["id"], back["kind"], back["start_at"]) == (waiting["id"], "scheduled", AT[13])
    assert backfill_row(engine, group_id)["done_at"] == NOW0 + SECOND
    with pytest.raises(InvalidField, match=r"backfill: group .* has no unfinished backfill"):
        backfills.cancel_backfill(engine, group_id, NOW0 + SECOND)


@pytest.mark.parametrize(
    ("window", "field", "words"),
    [
        ((AT[9], AT[7]), "from", "is after to"),
        ((AT[7], AT[13]), "to", "is in the future"),
        ((AT[7] + SECOND, AT[7] + 2 * SECOND), "from", "no slot of cron 0 \\* \\* \\* \\*"),
    ],
)
def test_bad_windows_are_refused_naming_the_field(
    engine: Engine, window: tuple[datetime, datetime], field: str, words: str
) -> None:
    group_id = hourly(engine)
    before = task_rows(engine, group_id)

    with pytest.raises(InvalidField, match=rf"^{field}: .*{words}"):
        backfills.create_backfill(engine, group_id, *window, NOW0)

    assert task_rows(engine, group_id) == before
    assert count_backfills(engine) == 0


def count_backfills(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(backfill)).scalar_one())


def test_a_window_beyond_10000_slots_is_refused(engine: Engine) -> None:
    spec = GroupSpec(caption="each minute", job_name="demo.job", cron="* * * * *")
    group_id = groups.add_group(engine, spec, NOW0)
    days = NOW0 - timedelta(days=7)  # 10,080 minutes

    with pytest.raises(InvalidField, match=r"^to: the window holds more than 10,000 slots"):
        backfills.create_backfill(engine, group_id, days, NOW0, NOW0)
    # exactly 10,000 is fine
    created = backfills.create_backfill(
        engine, group_id, NOW0 - timedelta(minutes=9_999, seconds=30), NOW0, NOW0
    )
    assert created.slots_total == 10_000


def test_a_group_whose_job_sets_its_next_time_has_no_slots(engine: Engine) -> None:
    spec = GroupSpec(caption="self", job_name="demo.job", job_sets_next=True)
    group_id = groups.add_group(engine, spec, NOW0)

    with pytest.raises(InvalidField, match=r"^schedule: .*neither interval_ms nor cron"):
        backfills.create_backfill(engine, group_id, AT[7], AT[8], NOW0)


def test_a_second_backfill_is_refused_while_one_is_unfinished(engine: Engine) -> None:
    group_id = hourly(engine)
    backfills.create_backfill(engine, group_id, AT[7], AT[8], NOW0)

    with pytest.raises(InvalidField, match=r"^backfill: .*unfinished backfill"):
        backfills.create_backfill(engine, group_id, AT[9], AT[10], NOW0)
    # cancelled while its run goes on: the next waits for that run's end
    dispatch(engine, pending(engine, group_id)["id"], NOW0)
    backfills.cancel_backfill(engine, group_id, NOW0)
    with pytest.raises(InvalidField, match=r"^backfill: .*has not ended yet"):
        backfills.create_backfill(engine, group_id, AT[9], AT[10], NOW0)
    assert count_backfills(engine) == 1


def test_a_backfill_run_of_a_replace_group_is_not_replaced(engine: Engine) -> None:
    from fss.events import TaskStarted
    from fss.store.overlap import replaceable_runs

    group_id = hourly(engine, overlap="replace")
    backfills.create_backfill(engine, group_id, AT[7], AT[8], NOW0)
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, NOW0)
    with engine.begin() as conn:
        recording.record(conn, [TaskStarted(task_id, attempt, CLIENT, NOW0)], NOW0)
    assert task_row(engine, task_id)["status"] == 2
    with engine.begin() as conn:
        # slot 08:00 (after the run's own 07:00) passed long ago, 13:00 has not come
        assert replaceable_runs(conn, NOW0 + SECOND) == []
