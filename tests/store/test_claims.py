"""Claims and guarded dispatch (fss.store.tasks): leases, SKIP LOCKED, exactly one dispatch."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    LEASE,
    LOOKAHEAD,
    MINUTE,
    NODE,
    SECOND,
    T0,
    TARGET,
    add_interval_group,
    claim,
    claim_one,
    dispatch,
    log_rows,
    migrated_engine,
    pending,
    task_row,
)

from fss.domain.status import TaskStatus
from fss.events import TaskStarted
from fss.store import groups, recording, tasks
from fss.store.tables import task, task_group
from fss.store.tasks import ClaimedTask, DispatchTarget

NODE_B = "node-b"
MICRO = timedelta(microseconds=1)
R = TypeVar("R")
T = TypeVar("T")


def _mark(engine: Engine, claimed: ClaimedTask, node: str = NODE, now: datetime = T0) -> int | None:
    with engine.begin() as conn:
        return tasks.mark_dispatched(conn, claimed, node, TARGET, now)


def _in_threads(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """Run work(item) for every item, each in its own thread; re-raises their exceptions."""
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(work, item) for item in items]
        return [f.result(timeout=60) for f in futures]


# --- claim_due ------------------------------------------------------------------------------


def test_claim_due_returns_only_waiting_tasks_due_within_the_lookahead(engine: Engine) -> None:
    offsets = {
        "overdue": -SECOND,
        "now": timedelta(0),
        "soon": LOOKAHEAD - SECOND,
        "edge": LOOKAHEAD,
        "late": LOOKAHEAD + MICRO,
        "far": timedelta(hours=1),
    }
    ids = {}
    for name, offset in offsets.items():
        group_id = add_interval_group(
            engine, T0 - timedelta(minutes=1), start_at=T0 + offset, data={"name": name}
        )
        ids[name] = pending(engine, group_id)["id"]
    # A dispatched task that is due is not claimable any more.
    busy_group = add_interval_group(engine, T0 - timedelta(minutes=1), start_at=T0 - SECOND)
    busy_id = pending(engine, busy_group)["id"]
    dispatch(engine, busy_id, T0 - SECOND)
    # A disabled group has nothing to claim.
    add_interval_group(engine, T0 - timedelta(minutes=1), start_at=T0, is_enable=False)

    claimed = claim(engine, T0)

    assert [c.id for c in claimed] == [ids["overdue"], ids["now"], ids["soon"], ids["edge"]]
    first = claimed[0]
    assert first.start_at == T0 - SECOND
    assert first.attempt == 0
    assert first.job_name == "demo.job"
    assert json.loads(first.data) == {"name": "overdue"}
    for c in claimed:
        row = task_row(engine, c.id)
        assert row["claimed_by"] == NODE
        assert row["claimed_until"] == T0 + LEASE
        assert row["status"] == TaskStatus.NONE
        assert c.group_id == row["task_group_id"]
    for name in ("late", "far"):
        assert task_row(engine, ids[name])["claimed_by"] is None
    assert task_row(engine, busy_id)["claimed_by"] is None


def test_claim_due_respects_the_limit_in_start_order(engine: Engine) -> None:
    ids = []
    for i in range(5):
        group_id = add_interval_group(engine, T0 - MINUTE, start_at=T0 - (5 - i) * SECOND)
        ids.append(pending(engine, group_id)["id"])

    assert [c.id for c in claim(engine, T0, limit=3)] == ids[:3]
    assert [c.id for c in claim(engine, T0, NODE_B, limit=3)] == ids[3:]


def test_claim_due_on_an_empty_table_is_empty(engine: Engine) -> None:
    assert claim(engine, T0) == []


def test_another_node_cannot_claim_until_the_lease_expires(engine: Engine) -> None:
    task_id = pending(engine, add_interval_group(engine, T0))["id"]
    held = claim_one(engine, task_id, T0, NODE)

    assert claim(engine, T0, NODE_B) == []
    assert claim(engine, T0 + LEASE - SECOND, NODE_B) == []
    assert claim(engine, T0 + LEASE, NODE_B) == []  # expires strictly after claimed_until
    assert task_row(engine, task_id)["claimed_by"] == NODE

    later = T0 + LEASE + MICRO
    taken = claim_one(engine, task_id, later, NODE_B)
    row = task_row(engine, task_id)
    assert row["claimed_by"] == NODE_B
    assert row["claimed_until"] == later + LEASE
    # The first node lost it: its claim can no longer be dispatched, the new holder's can.
    assert _mark(engine, held, NODE, later) is None
    assert _mark(engine, taken, NODE_B, later) == 1
    assert task_row(engine, task_id)["server_node"] == NODE_B


def test_the_same_node_reclaiming_after_its_lease_lapsed_gets_a_new_lease(engine: Engine) -> None:
    task_id = pending(engine, add_interval_group(engine, T0))["id"]
    claim_one(engine, task_id, T0)

    again = claim_one(engine, task_id, T0 + LEASE + 10 * SECOND)

    assert again.id == task_id
    assert task_row(engine, task_id)["claimed_until"] == T0 + 2 * LEASE + 10 * SECOND
    assert claim(engine, T0 + LEASE + 11 * SECOND, NODE_B) == []


def test_extend_claims_only_touches_own_waiting_claims(engine: Engine) -> None:
    mine = pending(engine, add_interval_group(engine, T0))["id"]
    theirs = pending(engine, add_interval_group(engine, T0))["id"]
    claim(engine, T0, NODE, limit=1)
    claim(engine, T0, NODE_B, limit=1)

    tasks.extend_claims(engine, NODE, [mine, theirs], T0 + timedelta(minutes=5))
    tasks.extend_claims(engine, NODE, [], T0 + timedelta(hours=5))

    assert task_row(engine, mine)["claimed_until"] == T0 + timedelta(minutes=5)
    assert task_row(engine, theirs)["claimed_until"] == T0 + LEASE
    assert task_row(engine, theirs)["claimed_by"] == NODE_B


def test_release_all_claims_lets_another_node_claim_at_once(engine: Engine) -> None:
    ids = [pending(engine, add_interval_group(engine, T0))["id"] for _ in range(3)]
    other = pending(engine, add_interval_group(engine, T0))["id"]
    assert len(claim(engine, T0, NODE, limit=3)) == 3
    assert [c.id for c in claim(engine, T0, NODE_B)] == [other]

    assert tasks.release_claims(engine, NODE) == 3

    for task_id in ids:
        assert task_row(engine, task_id)["claimed_by"] is None
        assert task_row(engine, task_id)["claimed_until"] is None
    assert task_row(engine, other)["claimed_by"] == NODE_B
    # NODE_B gets the released tasks; the one it already holds it keeps (not re-claimed).
    assert sorted(c.id for c in claim(engine, T0 + SECOND, NODE_B)) == sorted(ids)


def test_release_some_claims(engine: Engine) -> None:
    ids = [pending(engine, add_interval_group(engine, T0))["id"] for _ in range(3)]
    claim(engine, T0)

    assert tasks.release_claims(engine, NODE, []) == 0
    assert tasks.release_claims(engine, NODE, [ids[0]]) == 1
    assert tasks.release_claims(engine, NODE_B, [ids[1]]) == 0

    assert task_row(engine, ids[0])["claimed_by"] is None
    assert task_row(engine, ids[1])["claimed_by"] == NODE
    assert [c.id for c in claim(engine, T0, NODE_B)] == [ids[0]]


def test_release_claims_until_frees_them_from_that_time(engine: Engine) -> None:
    task_id = pending(engine, add_interval_group(engine, T0))["id"]
    claim(engine, T0)

    assert tasks.release_claims(engine, NODE, until=T0 + 2 * SECOND) == 1

    assert task_row(engine, task_id)["claimed_by"] == NODE
    assert claim(engine, T0 + SECOND, NODE_B) == []
    assert [c.id for c in claim(engine, T0 + 3 * SECOND, NODE_B)] == [task_id]


def test_release_claims_leaves_dispatched_tasks(engine: Engine) -> None:
    task_id = pending(engine, add_interval_group(engine, T0))["id"]
    dispatch(engine, task_id, T0)

    assert tasks.release_claims(engine, NODE) == 0
    assert task_row(engine, task_id)["status"] == TaskStatus.SCHEDULER


# --- mark_dispatched ------------------------------------------------------------------------


def test_mark_dispatched_moves_none_to_scheduler_once(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    task_id = pending(engine, group_id)["id"]
    claimed = claim_one(engine, task_id, T0)
    now = T0 + 250 * timedelta(milliseconds=1)

    assert _mark(engine, claimed, NODE_B, now) is None  # not B's claim
    assert _mark(engine, claimed, NODE, now) == 1
    assert _mark(engine, claimed, NODE, now) is None
    assert _mark(engine, claimed, NODE_B, now) is None

    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.SCHEDULER
    assert row["attempt"] == 1
    assert row["client_id"] == CLIENT
    assert row["client_host"] == TARGET.host
    assert row["client_ip"] == TARGET.ip
    assert row["server_node"] == NODE
    assert row["dispatched_at"] == now
    assert row["claimed_by"] is None
    assert row["claimed_until"] is None
    assert row["open_group_id"] == group_id
    # Dispatched is not claimable again.
    assert claim(engine, now + timedelta(hours=1)) == []


def test_concurrent_dispatch_of_one_claim_has_one_winner(engine: Engine) -> None:
    task_id = pending(engine, add_interval_group(engine, T0))["id"]
    claimed = claim_one(engine, task_id, T0)
    targets = [DispatchTarget(f"client-{i}", "h", "127.0.0.1") for i in range(4)]
    barrier = threading.Barrier(len(targets))

    def attempt(target: DispatchTarget) -> int | None:
        barrier.wait(timeout=10)
        with engine.begin() as conn:
            return tasks.mark_dispatched(conn, claimed, NODE, target, T0)

    results = _in_threads(attempt, targets)

    assert sorted(results, key=lambda r: r is None) == [1, None, None, None]
    winner = targets[results.index(1)].client_id
    assert task_row(engine, task_id)["client_id"] == winner


@pytest.mark.parametrize(
    "move",
    [
        lambda e, group_id, now: groups.run_now(e, group_id, now),
        lambda e, group_id, now: groups.edit_group(e, group_id, {"cron": "* * * * * *"}, now),
    ],
    ids=["run_now", "edit"],
)
def test_a_claim_whose_start_changed_cannot_be_dispatched(
    engine: Engine, move: Callable[[Engine, int, datetime], object]
) -> None:
    group_id = add_interval_group(engine, T0, start_at=T0 + 3 * SECOND)
    task_id = pending(engine, group_id)["id"]
    old = claim_one(engine, task_id, T0)
    assert old.start_at == T0 + 3 * SECOND

    move(engine, group_id, T0 + SECOND)
    # The same node claims it again (so claimed_by matches): only the start time differs.
    fresh = claim_one(engine, task_id, T0 + SECOND)
    assert fresh.start_at != old.start_at

    assert _mark(engine, old, NODE, T0 + SECOND) is None
    assert task_row(engine, task_id)["status"] == TaskStatus.NONE
    assert _mark(engine, fresh, NODE, T0 + SECOND) == 1


# --- undo_dispatch --------------------------------------------------------------------------


def test_undo_dispatch_returns_the_task_to_waiting(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    task_id = pending(engine, group_id)["id"]
    attempt = dispatch(engine, task_id, T0)

    with engine.begin() as conn:
        assert tasks.undo_dispatch(conn, task_id, attempt + 1) is False
        assert tasks.undo_dispatch(conn, task_id, attempt) is True
        assert tasks.undo_dispatch(conn, task_id, attempt) is False

    row = task_row(engine, task_id)
    assert row["status"] == TaskStatus.NONE
    assert row["client_id"] is None
    assert row["client_host"] is None
    assert row["client_ip"] is None
    assert row["open_group_id"] == group_id
    # It can be claimed and dispatched again, as the next attempt.
    again = claim_one(engine, task_id, T0 + SECOND, NODE_B)
    assert again.attempt == attempt
    assert _mark(engine, again, NODE_B, T0 + SECOND) == attempt + 1


def test_undo_dispatch_after_start_does_nothing(engine: Engine) -> None:
    task_id = pending(engine, add_interval_group(engine, T0))["id"]
    attempt = dispatch(engine, task_id, T0)
    with engine.begin() as conn:
        recording.record(conn, [TaskStarted(task_id, attempt, CLIENT, T0)], T0)
        assert tasks.undo_dispatch(conn, task_id, attempt) is False

    assert task_row(engine, task_id)["status"] == TaskStatus.WORKING


# --- warn_no_client_once --------------------------------------------------------------------


def test_warn_no_client_once_writes_one_warning(engine: Engine) -> None:
    group_id = add_interval_group(engine, T0)
    task_id = pending(engine, group_id)["id"]
    claimed = claim_one(engine, task_id, T0)

    results = []
    for i in range(5):
        with engine.begin() as conn:
            results.append(tasks.warn_no_client_once(conn, claimed, T0 + i * SECOND))

    assert results == [True, False, False, False, False]
    logs = log_rows(engine, task_id)
    assert len(logs) == 1
    assert logs[0]["log_level"] == 3
    assert logs[0]["task_group_id"] == group_id
    assert logs[0]["create_at"] == T0
    assert "demo.job" in logs[0]["content"]
    assert task_row(engine, task_id)["no_client_warned"]


# --- concurrent claims ----------------------------------------------------------------------


def _seed_due_tasks(engine: Engine, n: int) -> set[int]:
    """n enabled groups with one due task each, in two bulk statements."""
    with engine.begin() as conn:
        conn.execute(
            task_group.insert(),
            [
                {
                    "id": i,
                    "caption": f"g{i}",
                    "job_name": "demo.job",
                    "data": "{}",
                    "start_at": T0,
                    "next_at": T0,
                    "activate_at": T0,
                    "interval_ms": 60_000,
                    "created_at": T0,
                }
                for i in range(1, n + 1)
            ],
        )
        conn.execute(
            task.insert(),
            [
                {
                    "task_group_id": i,
                    "job_name": "demo.job",
                    "start_at": T0 - timedelta(milliseconds=i),
                    "status": TaskStatus.NONE,
                    "open_group_id": i,
                    "create_at": T0,
                }
                for i in range(1, n + 1)
            ],
        )
        return set(conn.execute(sa.select(task.c.id)).scalars())


def _claim_concurrently(
    engine: Engine, nodes: int, n_tasks: int, limit: int
) -> dict[str, list[ClaimedTask]]:
    """Seed n_tasks due tasks, let `nodes` threads claim at the same `now`; check disjointness."""
    all_ids = _seed_due_tasks(engine, n_tasks)
    barrier = threading.Barrier(nodes)

    def run(node: str) -> list[ClaimedTask]:
        barrier.wait(timeout=10)
        return claim(engine, T0, node, limit=limit)

    names = [f"node-{i}" for i in range(nodes)]
    results = dict(zip(names, _in_threads(run, names), strict=True))

    seen: dict[int, str] = {}
    for node, claimed in results.items():
        for c in claimed:
            assert c.id not in seen, f"task {c.id} claimed by {seen[c.id]} and {node}"
            seen[c.id] = node
    assert set(seen) == all_ids
    with engine.connect() as conn:
        holders = {
            r.id: r.claimed_by for r in conn.execute(sa.select(task.c.id, task.c.claimed_by))
        }
    assert holders == seen
    return results


def _dispatch_concurrently(engine: Engine, claims: dict[str, list[ClaimedTask]]) -> None:
    """Each node dispatches its own claims, then tries some of a peer's (the real ClaimedTask
    objects, so only the holder check stops it): every task goes out once, by its holder."""
    names = list(claims)
    now = T0 + SECOND

    def run(node: str) -> int:
        with engine.begin() as conn:
            won = [tasks.mark_dispatched(conn, c, node, TARGET, now) for c in claims[node]]
        peer = names[(names.index(node) + 1) % len(names)]
        for stolen in claims[peer][:10]:
            with engine.begin() as conn:
                assert tasks.mark_dispatched(conn, stolen, node, TARGET, now) is None
        assert won == [1] * len(won)
        return len(won)

    total = sum(_in_threads(run, names))
    assert total == sum(len(c) for c in claims.values())
    expected = {c.id: (TaskStatus.SCHEDULER, 1, node) for node in names for c in claims[node]}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(task.c.id, task.c.status, task.c.attempt, task.c.server_node))
        assert {r.id: (r.status, r.attempt, r.server_node) for r in rows} == expected


@pytest.fixture(params=["postgres", "mysql"])
def server_database_url(request: pytest.FixtureRequest) -> str:
    name = "pg_database_url" if request.param == "postgres" else "mysql_database_url"
    return str(request.getfixturevalue(name))


@pytest.mark.parametrize("limit", [50, 500], ids=["limit50", "limit500"])
def test_nodes_claiming_concurrently_get_disjoint_sets_skip_locked(
    server_database_url: str, limit: int
) -> None:
    """4 nodes, 200 due tasks, one claim each at the same `now`: limit 50 makes every node
    skip its peers' locked rows; limit 500 lets the first take everything."""
    with migrated_engine(server_database_url) as engine:
        claims = _claim_concurrently(engine, nodes=4, n_tasks=200, limit=limit)
        if limit == 50:
            assert sorted(len(c) for c in claims.values()) == [50, 50, 50, 50]
            _dispatch_concurrently(engine, claims)


def test_claim_renew_and_release_lock_only_the_listed_rows_on_mariadb(
    mysql_database_url: str,
) -> None:
    """Every UPDATE naming tasks by id reads those rows only (a range over the primary key).
    InnoDB had planned the claim's UPDATE over 200 tasks as a scan of the whole key, locking
    each row as it passed; a peer's SKIP LOCKED claim then skipped a task nobody claimed,
    and the test above failed once in a few dozen runs under load."""
    plans: list[tuple[str, str, str]] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("UPDATE") and "task.id IN" in statement:
            with engine.connect() as own:
                cur = own.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cur.execute("EXPLAIN " + statement, parameters)
                row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
            plans.append((statement.split(" SET ")[0], row["type"], row["key"]))

    with migrated_engine(mysql_database_url) as engine:
        all_ids = _seed_due_tasks(engine, 200)
        sa.event.listen(engine, "before_cursor_execute", explain)
        try:
            claimed = [c.id for c in claim(engine, T0, limit=50)]
            tasks.extend_claims(engine, NODE, claimed, T0 + timedelta(minutes=5))
            assert tasks.release_claims(engine, NODE, claimed[:10]) == 10
        finally:
            sa.event.remove(engine, "before_cursor_execute", explain)
    assert len(claimed) == 50 and set(claimed) <= all_ids
    assert len(plans) == 3, plans  # the claim's UPDATE, the renewal, the release
    assert [(kind, key) for _, kind, key in plans] == [("range", "PRIMARY")] * 3, plans


@pytest.mark.parametrize("limit", [100, 500], ids=["limit100", "limit500"])
def test_sqlite_nodes_claiming_concurrently_get_disjoint_sets(sqlite_url: str, limit: int) -> None:
    """BEGIN IMMEDIATE serializes the two claim transactions."""
    with migrated_engine(sqlite_url) as engine:
        claims = _claim_concurrently(engine, nodes=2, n_tasks=200, limit=limit)
        if limit == 100:
            _dispatch_concurrently(engine, claims)


def test_a_node_does_not_reclaim_what_it_already_holds(engine: Engine) -> None:
    task_id = pending(engine, add_interval_group(engine, T0))["id"]
    claim_one(engine, task_id, T0)

    assert claim(engine, T0 + SECOND, NODE) == []  # held: renewed by extend_claims, not claims
    assert task_row(engine, task_id)["claimed_until"] == T0 + LEASE
