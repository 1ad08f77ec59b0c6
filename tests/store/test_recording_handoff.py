"""record(..., claim_next): a finished run's next task due soon is created already claimed by
the recording node, so the scheduler fires it without a claim round trip (issue 9)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    NODE,
    SECOND,
    T0,
    TARGET,
    add_interval_group,
    claim,
    dispatch,
    pending,
    task_row,
)

from fss.domain.status import TaskStatus
from fss.events import TaskFinished
from fss.store import groups, recording, tasks
from fss.store.recording import ClaimNext

LEASE = timedelta(seconds=5)
LOOKAHEAD = timedelta(seconds=2)


def _claim_next(now: datetime, node: str = NODE) -> ClaimNext:
    return ClaimNext(node, lease_until=now + LEASE, horizon=now + LOOKAHEAD)


def _finish(engine: Engine, event: TaskFinished, now: datetime) -> ClaimNext:
    claim_next = _claim_next(now)
    with engine.begin() as conn:
        recording.record(conn, [event], now, claim_next)
    return claim_next


def _dispatched_group(engine: Engine, **group: object) -> tuple[int, int, int]:
    group_id = add_interval_group(engine, T0 - MINUTE, start_at=T0, **group)
    task_id = pending(engine, group_id)["id"]
    return group_id, task_id, dispatch(engine, task_id, T0)


def test_a_next_run_due_at_once_is_created_claimed_and_handed_over(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched_group(engine, data={"n": 1})
    now = T0 + 10 * timedelta(milliseconds=1)
    event = TaskFinished(task_id, attempt, CLIENT, True, 3, now, next_at=now, data={"n": 2})

    handed = _finish(engine, event, now).claimed

    nxt = pending(engine, group_id)
    assert [c.id for c in handed] == [nxt["id"]]
    assert (nxt["claimed_by"], nxt["claimed_until"]) == (NODE, now + LEASE)
    (claimed,) = handed
    assert (claimed.group_id, claimed.start_at, claimed.attempt) == (group_id, now, 0)
    assert claimed.data == '{"n":2}'  # the data the finished run saved, as a claim would read
    # The handed task is a claim like any other: the dispatch guard accepts it.
    with engine.begin() as conn:
        assert tasks.mark_dispatched(conn, claimed, NODE, TARGET, now) == 1
    assert task_row(engine, claimed.id)["status"] == TaskStatus.SCHEDULER


def test_a_handed_over_task_is_not_claimed_by_a_peer_until_its_lease_ends(engine: Engine) -> None:
    _, task_id, attempt = _dispatched_group(engine, interval_ms=1000)
    now = T0 + SECOND
    (handed,) = _finish(engine, TaskFinished(task_id, attempt, CLIENT, True, 3, now), now).claimed

    assert claim(engine, now, node="node-b") == []
    # The recording node died before firing it: its peer takes it once the lease is over.
    taken = claim(engine, now + LEASE + timedelta(milliseconds=1), node="node-b")
    assert [c.id for c in taken] == [handed.id]


def test_a_next_run_beyond_the_look_ahead_is_left_for_the_claim_poll(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched_group(engine, interval_ms=60_000)
    now = T0 + SECOND

    claim_next = _finish(engine, TaskFinished(task_id, attempt, CLIENT, True, 3, now), now)

    assert claim_next.claimed == []
    nxt = pending(engine, group_id)
    assert (nxt["claimed_by"], nxt["claimed_until"]) == (None, None)
    assert [c.id for c in claim(engine, T0 + MINUTE, node="node-b")] == [nxt["id"]]


def test_a_replayed_finish_hands_nothing_over(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched_group(engine, interval_ms=1000)
    now = T0 + SECOND
    event = TaskFinished(task_id, attempt, CLIENT, True, 3, now)
    assert len(_finish(engine, event, now).claimed) == 1

    assert _finish(engine, event, now + SECOND).claimed == []
    assert pending(engine, group_id)["claimed_until"] == now + LEASE  # untouched


def test_a_disabled_group_gets_no_next_task_to_hand_over(engine: Engine) -> None:
    group_id, task_id, attempt = _dispatched_group(engine, interval_ms=1000)
    groups.set_enabled(engine, group_id, False, T0)
    now = T0 + SECOND
    assert _finish(engine, TaskFinished(task_id, attempt, CLIENT, True, 3, now), now).claimed == []
