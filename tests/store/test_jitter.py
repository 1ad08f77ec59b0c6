"""jitter_ms in the store: every way a group's waiting task is placed (add, enable, edit,
groups file, the recorder's next task, the supervisor's schedule_next) puts it at the slot
plus the group's offset, while next_at keeps the slot, so the schedule never drifts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    NODE,
    SECOND,
    T0,
    add_interval_group,
    dispatch,
    get_group,
    pending,
)

from fss.domain.group_file import GroupEntry
from fss.domain.group_spec import GroupSpec
from fss.domain.jitter import jittered_start
from fss.events import TaskFinished
from fss.store import groups, recording
from fss.store.group_files import apply_groups
from fss.store.recording import ClaimNext

JITTER = 20_000
MS = timedelta(milliseconds=1)


def assert_jittered(engine: Engine, group_id: int, slot: datetime, jitter: int = JITTER) -> None:
    """The group's waiting task is due at the slot plus its offset; next_at is the slot."""
    start = pending(engine, group_id)["start_at"]
    assert start == jittered_start(group_id, slot, jitter)
    assert slot <= start <= slot + jitter * MS
    assert get_group(engine, group_id).next_at == slot


def finish(engine: Engine, group_id: int, now: datetime, claim: ClaimNext | None = None) -> None:
    """Dispatch the group's waiting task and record its success at `now`."""
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, now)
    event = TaskFinished(task_id, attempt, CLIENT, True, 10, now)
    with engine.begin() as conn:
        assert recording.record(conn, [event], now, claim).finished == 1


def test_add_enable_and_edit_place_the_waiting_task_at_the_slot_plus_the_offset(
    engine: Engine,
) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + MINUTE, jitter_ms=JITTER)
    assert_jittered(engine, group_id, T0 + MINUTE)

    groups.set_enabled(engine, group_id, False, T0)
    groups.set_enabled(engine, group_id, True, T0 + SECOND)
    assert_jittered(engine, group_id, T0 + MINUTE)  # the same slot: the same offset

    groups.edit_group(engine, group_id, {"start_at": T0 + 3 * MINUTE}, T0 + 2 * SECOND)
    assert_jittered(engine, group_id, T0 + 3 * MINUTE)


def test_a_group_without_jitter_runs_on_its_slot(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + MINUTE)
    assert pending(engine, group_id)["start_at"] == T0 + MINUTE
    finish(engine, group_id, T0 + MINUTE)
    assert pending(engine, group_id)["start_at"] == T0 + 2 * MINUTE


def test_an_interval_group_with_jitter_keeps_its_grid_run_after_run(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0, jitter_ms=JITTER)
    for k in range(6):
        slot = T0 + k * MINUTE
        assert_jittered(engine, group_id, slot)
        # Ends a few ms after its jittered start: the next slot is on the grid, not start + 1 min.
        start = pending(engine, group_id)["start_at"]
        finish(engine, group_id, start + 5 * MS)
    assert_jittered(engine, group_id, T0 + 6 * MINUTE)


def test_the_recorders_claimed_next_task_carries_the_jittered_start(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, interval_ms=1000, start_at=T0, jitter_ms=500)
    start = pending(engine, group_id)["start_at"]
    claim = ClaimNext(NODE, lease_until=start + MINUTE, horizon=start + MINUTE)
    finish(engine, group_id, start + MS, claim)
    assert_jittered(engine, group_id, T0 + SECOND, 500)
    assert [c.start_at for c in claim.claimed] == [pending(engine, group_id)["start_at"]]


def test_a_cron_group_with_jitter_fires_within_its_window(engine: Engine) -> None:
    spec = GroupSpec(caption="c", job_name="demo.job", cron="0 * * * *", jitter_ms=JITTER)
    group_id = groups.add_group(engine, spec, T0)
    first = T0.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert_jittered(engine, group_id, first)
    finish(engine, group_id, pending(engine, group_id)["start_at"] + SECOND)
    assert_jittered(engine, group_id, first + timedelta(hours=1))


def test_schedule_next_places_the_next_task_with_the_offset(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0, jitter_ms=JITTER)
    start = pending(engine, group_id)["start_at"]
    with engine.begin() as conn:  # as the supervisor ends a run: the task is gone, then this
        groups.withdraw_waiting(conn, [group_id])
        recording.schedule_next(
            conn, group_id=group_id, planned_at=start, finished_at=start + SECOND,
            success=False, run_speed_ms=1000,
        )
    assert_jittered(engine, group_id, T0 + MINUTE)


@pytest.mark.parametrize("jitter", [0, JITTER])
def test_a_groups_file_places_the_same_start_as_add(engine: Engine, jitter: int) -> None:
    spec = GroupSpec(caption="f", job_name="demo.job", interval_ms=60_000, start_at=T0 + MINUTE,
                     jitter_ms=jitter)
    apply_groups(engine, [GroupEntry("nightly", spec)], T0)
    group_id = _group_id_of(engine, "nightly")
    assert_jittered(engine, group_id, T0 + MINUTE, jitter)
    # A new schedule from the file moves the waiting task to the new slot plus its offset.
    moved = GroupSpec(caption="f", job_name="demo.job", interval_ms=60_000,
                      start_at=T0 + 5 * MINUTE, jitter_ms=jitter)
    apply_groups(engine, [GroupEntry("nightly", moved)], T0 + SECOND)
    assert_jittered(engine, group_id, T0 + 5 * MINUTE, jitter)


def _group_id_of(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        return next(g.id for g in groups.list_groups(conn) if g.key == key)
