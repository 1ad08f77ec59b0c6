"""A retry's fence: the next attempt may be armed over the attempt that ended failed, and
only over that one. Real Redis, the in-memory fence, and a real dispatcher and database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from fss.domain.status import TaskStatus
from fss.events import TaskFinished, TaskStarted
from fss.fence import Fence, MemoryFence, RedisFence
from fss.naming import client_queue
from fss.scheduler.dispatcher import Outcome
from fss.store import recording, tasks
from fss.store.tables import task_group
from tests.dispatch_scene import CLIENT, NODE, Scene, dispatch_scene

T0 = datetime(2026, 4, 1, 10, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["redis", "memory"])
def fence(request: pytest.FixtureRequest, fresh_redis_url: Callable[[], str]) -> Iterator[Fence]:
    made: Fence = RedisFence(fresh_redis_url()) if request.param == "redis" else MemoryFence()
    yield made
    made.close()


def test_a_retry_is_armed_over_the_attempt_it_follows(fence: Fence) -> None:
    assert fence.arm(1, 1)
    assert fence.enter(1, 1, "worker-a")
    assert fence.arm_many([(1, 2)]) == [1]  # no retry: the entered attempt stays
    assert fence.arm_many([(1, 2)], replacing={1}) == []
    assert fence.holder(1, 1) is None
    assert not fence.enter(1, 1, "late-copy")  # the ended attempt can never enter again
    assert fence.enter(1, 2, "worker-b")
    assert fence.holder(1, 2) == "worker-b"


def test_a_retry_never_replaces_another_attempt(fence: Fence) -> None:
    assert fence.arm(2, 1) and fence.enter(2, 1, "w")
    assert fence.arm_many([(2, 3)], replacing={2}) == [2]  # 1 is not the attempt before 3
    assert fence.arm_many([(2, 1)], replacing={2}) == [2]
    assert fence.holder(2, 1) == "w"
    fence.arm(3, 1)
    assert fence.revoke(3, 1)
    assert fence.arm_many([(3, 1)], replacing={3}) == [3]  # a revoke stays closed


@pytest.fixture
def scene(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Scene]:
    with dispatch_scene(database_url, fresh_redis_url(), T0) as made:
        yield made


def test_a_failed_attempt_with_retries_left_is_dispatched_again_as_the_next_attempt(
    scene: Scene,
) -> None:
    claimed = scene.due_task()
    with scene.engine.begin() as conn:
        conn.execute(
            task_group.update()
            .where(task_group.c.id == claimed.group_id)
            .values(retries=1, retry_delay_ms=500, retry_jitter=False)
        )
    dispatcher = scene.dispatcher(scene.settings.broker_url)
    assert dispatcher.dispatch(claimed) is Outcome.SENT
    assert scene.fence.enter(claimed.id, 1, "worker")
    ended = T0 + timedelta(milliseconds=100)
    with scene.engine.begin() as conn:
        recording.record(
            conn,
            [
                TaskStarted(claimed.id, 1, CLIENT, T0),
                TaskFinished(claimed.id, 1, CLIENT, False, 100, ended, error="boom"),
            ],
            ended,
        )
    due = ended + timedelta(milliseconds=500)
    scene.clock.set(due)
    (retry,) = [
        c
        for c in tasks.claim_due(scene.engine, NODE, due, timedelta(seconds=1),
                                 timedelta(seconds=5))
        if c.id == claimed.id
    ]
    assert retry.retrying and retry.attempt == 1

    assert dispatcher.dispatch(retry) is Outcome.SENT

    row = scene.row(claimed.id)
    assert (row.status, row.attempt) == (TaskStatus.SCHEDULER, 2)
    assert scene.fence.enter(claimed.id, 2, "worker")
    assert scene.redis.llen(client_queue(CLIENT)) == 2  # both orders went out
    with scene.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(task_group)).scalar() == 1
