"""mark_dispatched_many: one guarded move for many claims (set-based on PostgreSQL) that
moves exactly what mark_dispatched would have moved, one by one."""

from __future__ import annotations

import dataclasses
import threading

from sqlalchemy.engine import Engine
from store_helpers import (
    NODE,
    SECOND,
    T0,
    add_interval_group,
    claim,
    pending,
    task_row,
)

from fss.domain.status import TaskStatus
from fss.store import tasks
from fss.store.tasks import ClaimedTask, DispatchTarget

NODE_B = "node-b"


def _targets(claims: list[ClaimedTask]) -> list[tuple[ClaimedTask, DispatchTarget]]:
    return [(c, DispatchTarget(f"client-{c.id}", f"host-{c.id}", "10.0.0.1")) for c in claims]


def test_moves_each_claim_it_holds_once_with_its_own_client(engine: Engine) -> None:
    task_ids = [pending(engine, add_interval_group(engine, T0))["id"] for _ in range(5)]
    claims = sorted(claim(engine, T0), key=lambda c: c.id)
    assert [c.id for c in claims] == task_ids
    now = T0 + SECOND
    done = claims[3]
    with engine.begin() as conn:  # already dispatched: stays as it is
        assert tasks.mark_dispatched(conn, done, NODE, DispatchTarget("first", "h", "ip"), now)
    moved_start = dataclasses.replace(claims[4], start_at=T0 - SECOND)  # not its row any more

    with engine.begin() as conn:
        moved = tasks.mark_dispatched_many(
            conn, _targets([*claims[:3], done, moved_start]), NODE, now
        )
    with engine.begin() as conn:
        not_b = tasks.mark_dispatched_many(conn, _targets(claims[:3]), NODE_B, now)

    assert moved == set(task_ids[:3])
    assert not_b == set()
    for claimed in claims[:3]:
        row = task_row(engine, claimed.id)
        assert (row["status"], row["attempt"]) == (TaskStatus.SCHEDULER, 1)
        assert (row["client_id"], row["client_host"]) == (
            f"client-{claimed.id}",
            f"host-{claimed.id}",
        )
        assert (row["server_node"], row["dispatched_at"]) == (NODE, now)
        assert (row["claimed_by"], row["claimed_until"]) == (None, None)
    assert task_row(engine, done.id)["client_id"] == "first"
    assert task_row(engine, done.id)["attempt"] == 1
    assert task_row(engine, task_ids[4])["status"] == TaskStatus.NONE
    # Again: only the claim that was still current moves, the others went out once.
    with engine.begin() as conn:
        again = tasks.mark_dispatched_many(conn, _targets([*claims, moved_start]), NODE, now)
    assert again == {task_ids[4]}


def test_two_dispatchers_racing_for_the_same_claims_move_each_once(engine: Engine) -> None:
    for _ in range(20):
        add_interval_group(engine, T0)
    claims = claim(engine, T0)
    barrier = threading.Barrier(2)
    results: dict[str, set[int]] = {}

    def run(name: str, order: list[ClaimedTask]) -> None:
        barrier.wait(timeout=10)
        with engine.begin() as conn:
            results[name] = tasks.mark_dispatched_many(
                conn, [(c, DispatchTarget(name, "h", "ip")) for c in order], NODE, T0
            )

    threads = [
        threading.Thread(target=run, args=("one", claims)),
        threading.Thread(target=run, args=("two", list(reversed(claims)))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results["one"] | results["two"] == {c.id for c in claims}
    assert results["one"] & results["two"] == set()
    for name, ids in results.items():
        assert all(task_row(engine, i)["client_id"] == name for i in ids)
