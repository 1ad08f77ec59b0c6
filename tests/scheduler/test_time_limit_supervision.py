"""A run still Working past its group's max_run_s plus two graces (the worker's hard limit
did not end it: a threads/solo pool, a client that ignored `cancel`) is failed by the
supervisor with the time-limit reason. A manual clock, real databases, a real Redis fence."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from test_supervisor import World, world  # noqa: F401 - the fixture

from fss.domain.status import TaskStatus
from fss.events import TaskProgressed, TaskStarted
from fss.store import tasks
from fss.store.tables import task_group


def set_max_run_s(world: World, group_id: int, seconds: int | None) -> None:  # noqa: F811
    with world.engine.begin() as conn:
        conn.execute(
            task_group.update().where(task_group.c.id == group_id).values(max_run_s=seconds)
        )


def test_given_a_run_working_past_its_limit_and_grace_then_it_fails_with_the_reason(
    world: World,  # noqa: F811
) -> None:
    grace = world.settings.time_limit_grace_s  # 10 s by default
    world.beat("threads")
    group_id, task_id = world.dispatch_new_group("threads")
    set_max_run_s(world, group_id, 30)
    world.events(TaskStarted(task_id, 1, "threads", world.clock.now()))

    # Progress keeps it from being hung; only the time limit applies.
    for _ in range(int(30 + 2 * grace) // 5):
        world.clock.advance(5)
        world.beat("threads", active=1)
        world.events(TaskProgressed(task_id, 1, "threads", 50, world.clock.now()))
        assert world.supervisor.sweep().failed == []
    assert world.task(task_id).status == TaskStatus.WORKING  # at 30 s + 2 graces exactly

    world.clock.advance(1)
    world.beat("threads", active=1)
    report = world.supervisor.sweep()
    assert report.failed == [task_id]
    row = world.task(task_id)
    assert row.status == TaskStatus.FAIL
    assert row.error.startswith("time limit exceeded after 30 s"), row.error
    assert any(line.startswith("time limit exceeded after 30 s") for line in world.logs(task_id))


def test_given_no_max_run_s_or_an_unstarted_order_then_no_time_limit_applies(
    world: World,  # noqa: F811
) -> None:
    world.beat("c")
    _, unlimited = world.dispatch_new_group("c", timeout_s=3600)
    limited_group, unstarted = world.dispatch_new_group("c", timeout_s=3600)
    set_max_run_s(world, limited_group, 1)
    world.events(TaskStarted(unlimited, 1, "c", world.clock.now()))
    world.clock.advance(25)
    world.beat("c", active=1)
    assert world.supervisor.sweep().failed == []
    assert world.task(unlimited).status == TaskStatus.WORKING
    # Sent, never started: the stale-order sweep owns it, not the time limit.
    assert world.task(unstarted).status in (TaskStatus.SCHEDULER, TaskStatus.NONE)


def test_claimed_tasks_carry_their_groups_max_run_s(world: World) -> None:  # noqa: F811
    from fss.domain.group_spec import GroupSpec
    from fss.store import groups

    ids = []
    for seconds in (None, 7):
        spec = GroupSpec(caption="g", job_name="job", interval_ms=1000,
                         start_at=world.clock.now())
        group_id = groups.add_group(world.engine, spec, world.clock.now())
        set_max_run_s(world, group_id, seconds)
        ids.append(group_id)
    claimed = tasks.claim_due(world.engine, "n1", world.clock.now(), timedelta(seconds=1),
                              timedelta(seconds=5))
    limits = {c.group_id: c.max_run_s for c in claimed}
    assert limits == {ids[0]: None, ids[1]: 7}
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(task_group)).scalar() == 2
