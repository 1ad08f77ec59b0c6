"""The dispatcher sends a tick's orders together and keeps its promise when that send fails:
every order not known to be out is revoked at the fence first, then undone. Real Redis, a
SQLite file (the send path does not depend on the database)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from fss.domain.status import TaskStatus
from fss.naming import client_queue
from fss.scheduler.dispatcher import Outcome
from tests.dispatch_scene import Scene, dispatch_scene

T0 = datetime.now(timezone.utc).replace(microsecond=0)
QUEUE = client_queue("c1")


@pytest.fixture
def scene(sqlite_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Scene]:
    with dispatch_scene(sqlite_url, fresh_redis_url(), T0) as made:
        yield made


def status(scene: Scene, task_id: int) -> tuple[object, ...]:
    row = scene.row(task_id)
    return (row.status, row.attempt, row.client_id)


@pytest.fixture
def no_lpush_url(scene: Scene) -> Iterator[str]:
    """The scene's broker, logged in as a Redis user that may do all but LPUSH: declaring
    the client's queue works, pushing the orders fails."""
    name = f"fss-test-nolpush-{id(scene)}"
    scene.redis.acl_setuser(name, enabled=True, nopass=True, keys=["*"], channels=["*"],
                            categories=["+@all"], commands=["-lpush"])
    yield scene.settings.broker_url.replace("redis://", f"redis://{name}:x@", 1)
    scene.redis.acl_deluser(name)


def test_given_a_tick_of_due_tasks_then_all_orders_are_sent_with_their_data(
    scene: Scene,
) -> None:
    due = scene.due_tasks(5)

    outcomes = scene.dispatcher(scene.settings.broker_url).dispatch_many(due)

    assert set(outcomes.values()) == {Outcome.SENT}
    queued = [json.loads(m) for m in reversed(scene.redis.lrange(QUEUE, 0, -1))]
    assert [m["headers"]["id"] for m in queued] == [f"fss-{c.id}-1" for c in due]
    for claimed in due:
        assert status(scene, claimed.id) == (TaskStatus.SCHEDULER, 1, "c1")
        assert scene.fence.arm(claimed.id, 1)  # armed for attempt 1, still open to enter


def test_given_a_broker_refusing_the_tick_then_every_order_is_revoked_and_undone(
    scene: Scene, no_lpush_url: str
) -> None:
    due = scene.due_tasks(3)

    outcomes = scene.dispatcher(no_lpush_url).dispatch_many(due)

    assert outcomes == {c.id: Outcome.FAILED for c in due}
    assert scene.redis.llen(QUEUE) == 0
    for claimed in due:
        assert status(scene, claimed.id) == (TaskStatus.NONE, 1, None)
        # Should an order turn up after all, it can never enter.
        assert not scene.fence.enter(claimed.id, 1, "late-worker")


def test_given_a_failed_tick_whose_order_a_worker_entered_then_that_dispatch_is_kept(
    scene: Scene, no_lpush_url: str
) -> None:
    due = scene.due_tasks(2)
    first, second = due
    dispatcher = scene.dispatcher(no_lpush_url)
    # The round trip's outcome is uncertain: one order got through and its worker entered
    # before the take-back (played here by entering as soon as the fence is armed).
    real_arm_many = scene.fence.arm_many

    def arm_then_enter(items: list[tuple[int, int]], **options: Any) -> list[int]:
        refused = real_arm_many(items, **options)
        assert scene.fence.enter(first.id, 1, "w")
        return refused

    scene.fence.arm_many = arm_then_enter  # type: ignore[method-assign]

    outcomes = dispatcher.dispatch_many(due)

    assert outcomes == {first.id: Outcome.SENT, second.id: Outcome.FAILED}
    assert status(scene, first.id) == (TaskStatus.SCHEDULER, 1, "c1")
    assert scene.fence.holder(first.id, 1) == "w"
    assert status(scene, second.id) == (TaskStatus.NONE, 1, None)
