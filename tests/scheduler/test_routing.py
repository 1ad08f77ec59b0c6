"""The dispatcher routes each group's runs by its `route` and `client_tag`: real databases
(SQLite, PostgreSQL, MariaDB), a real Redis broker and fence, a manual clock."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import redis
import sqlalchemy as sa
from celery import Celery
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.domain.selection import sticky
from fss.events import ClientHeartbeat, ClientLeft, Event, TaskFinished, TaskStarted
from fss.fence import RedisFence
from fss.naming import client_queue
from fss.scheduler.dispatcher import Dispatcher, Outcome
from fss.store import groups, tasks
from fss.store.engine import create_engine
from fss.store.recording import ClaimNext, record
from fss.store.tables import run_log, task, task_group
from fss.store.tasks import ClaimedTask

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=timezone.utc)
NODE = "node-a"


@dataclass
class Routing:
    engine: Engine
    clock: ManualClock
    redis: redis.Redis
    dispatcher: Dispatcher
    # Every client registered so far, with its tags: beat() keeps them all alive.
    clients: dict[str, tuple[str, ...]]

    def record(self, events: list[Event], claim_next: ClaimNext | None = None) -> None:
        with self.engine.begin() as conn:
            record(conn, events, self.clock.now(), claim_next)

    def register(self, client_id: str, *tags: str, active: int = 0) -> None:
        self.clients[client_id] = tags
        self.record([self._beat(client_id, tags, active)])

    def beat(self, **active: int) -> None:
        self.record([self._beat(c, t, active.get(c, 0)) for c, t in self.clients.items()])

    def _beat(self, client_id: str, tags: tuple[str, ...], active: int) -> ClientHeartbeat:
        return ClientHeartbeat(client_id, "h", "127.0.0.1", 1, ("job",), client_queue(client_id),
                               self.clock.now(), active=active, tags=tags)

    def leave(self, client_id: str) -> None:
        del self.clients[client_id]
        self.record([ClientLeft(client_id, self.clock.now())])

    def later(self, seconds: float) -> None:
        """Time passes (past the client cache), and every client kept beating."""
        self.clock.advance(seconds)
        self.beat()

    def add_groups(self, count: int, route: str = "round_robin",
                   client_tag: str | None = None) -> list[int]:
        ids = []
        for i in range(count):
            spec = GroupSpec(caption=f"g{i}", job_name="job", interval_ms=60_000,
                             start_at=self.clock.now())
            ids.append(groups.add_group(self.engine, spec, self.clock.now()))
        # Set directly: the group fields of spec/CLI/file/API land with another change.
        with self.engine.begin() as conn:
            conn.execute(task_group.update().where(task_group.c.id.in_(ids))
                         .values(route=route, client_tag=client_tag))
        return ids

    def claim(self) -> list[ClaimedTask]:
        claimed = tasks.claim_due(self.engine, NODE, self.clock.now(), timedelta(seconds=1),
                                  timedelta(seconds=30))
        return sorted(claimed, key=lambda c: c.id)

    def dispatch(self, claimed: list[ClaimedTask]) -> dict[int, Outcome]:
        return self.dispatcher.dispatch_many(claimed)

    def client_of(self, task_id: int) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(task.c.client_id).where(task.c.id == task_id)).scalar()
        return None if value is None else str(value)

    def queued(self) -> Counter[str]:
        return Counter({c: int(self.redis.llen(client_queue(c))) for c in self.clients})

    def finish(self, claimed: ClaimedTask) -> list[ClaimedTask]:
        """The dispatched run starts and succeeds; the group's next task comes back claimed
        by the recorder (as in the scheduler), as the wheel would get it."""
        client_id = self.client_of(claimed.id)
        assert client_id is not None
        attempt = claimed.attempt + 1
        claim_next = ClaimNext(NODE, self.clock.now() + timedelta(seconds=120),
                               self.clock.now() + timedelta(seconds=120))
        self.record([TaskStarted(claimed.id, attempt, client_id, self.clock.now()),
                     TaskFinished(claimed.id, attempt, client_id, True, 5, self.clock.now())],
                    claim_next)
        return claim_next.claimed


@pytest.fixture
def routing(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Routing]:
    broker = fresh_redis_url()
    settings = Settings(database_url=database_url, broker_url=broker, node_name=NODE)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    clock = ManualClock(T0)
    app: Celery = create_app(settings)
    fence = RedisFence(broker)
    client = redis.Redis.from_url(broker)
    dispatcher = Dispatcher(engine, app, fence, settings, clock)
    yield Routing(engine, clock, client, dispatcher, {})
    client.close()
    fence.close()
    app.close()
    engine.dispose()


def test_given_a_group_with_a_client_tag_then_every_run_goes_to_a_client_with_that_tag(
    routing: Routing,
) -> None:
    r = routing
    r.register("w-cpu", "cpu")
    r.register("w-gpu", "gpu", "big")
    r.register("w-plain")
    tagged = r.add_groups(6, client_tag="gpu")
    untagged = r.add_groups(6)
    claimed = r.claim()

    assert set(r.dispatch(claimed).values()) == {Outcome.SENT}

    on = {c.group_id: r.client_of(c.id) for c in claimed}
    assert {on[g] for g in tagged} == {"w-gpu"}
    # Untagged groups go round robin over every client, tagged ones included.
    assert Counter(on[g] for g in untagged) == {"w-cpu": 2, "w-gpu": 2, "w-plain": 2}


def test_given_tagged_and_untagged_runs_alternating_then_the_untagged_ones_still_spread(
    routing: Routing,
) -> None:
    r = routing
    r.register("w-cpu", "cpu")
    r.register("w-gpu", "gpu")
    tagged = r.add_groups(1, client_tag="gpu")
    untagged = r.add_groups(1)
    on: dict[int, list[str | None]] = {tagged[0]: [], untagged[0]: []}
    claimed = r.claim()
    for _ in range(4):  # the two groups' runs come one after the other, as on a timer
        nexts = []
        for c in claimed:
            r.dispatch([c])
            on[c.group_id].append(r.client_of(c.id))
            nexts += r.finish(c)
        r.later(60)
        claimed = nexts
    assert on[tagged[0]] == ["w-gpu"] * 4
    assert Counter(on[untagged[0]]) == {"w-cpu": 2, "w-gpu": 2}


def test_given_no_live_client_with_the_tag_then_the_run_waits_and_says_which_tag(
    routing: Routing, caplog: pytest.LogCaptureFixture
) -> None:
    r = routing
    r.register("w-cpu", "cpu")
    r.add_groups(1, client_tag="gpu")
    claimed = r.claim()

    with caplog.at_level(logging.WARNING, "fss.scheduler.dispatcher"):
        for _ in range(3):
            assert r.dispatch(claimed) == {claimed[0].id: Outcome.NO_CLIENT}
            r.later(1)
    assert r.queued() == {"w-cpu": 0}
    with r.engine.connect() as conn:
        lines = conn.execute(sa.select(run_log.c.content)
                             .where(run_log.c.task_id == claimed[0].id)).scalars().all()
    assert lines == ["no live client with tag 'gpu' has registered job 'job'; "
                     "the task waits until one does"]
    assert "with tag 'gpu'" in caplog.text

    r.register("w-gpu", "gpu")  # a gpu client comes: the waiting run goes to it
    assert r.dispatch(claimed) == {claimed[0].id: Outcome.SENT}
    assert r.client_of(claimed[0].id) == "w-gpu"


def test_given_least_busy_then_runs_go_to_the_clients_running_the_fewest(
    routing: Routing,
) -> None:
    r = routing
    r.register("w1", active=3)
    r.register("w2", active=0)
    r.register("w3", active=1)
    r.clock.advance(0.1)
    r.add_groups(5, route="least_busy")

    r.dispatch(r.claim())

    # Runs sent in one go count before the clients' heartbeats do: 3+0, 0+3, 1+2.
    assert r.queued() == {"w1": 0, "w2": 3, "w3": 2}


def test_given_least_busy_when_heartbeats_report_new_loads_then_those_decide(
    routing: Routing,
) -> None:
    r = routing
    r.register("w1")
    r.register("w2")
    r.add_groups(2, route="least_busy")
    r.dispatch(r.claim())
    assert r.queued() == {"w1": 1, "w2": 1}

    # Later both report: w1 still runs its run, w2's ended. w2 is the least busy.
    r.clock.advance(1)
    r.beat(w1=1, w2=0)
    r.clock.advance(1)
    r.add_groups(1, route="least_busy")
    r.dispatch(r.claim())
    assert r.queued() == {"w1": 1, "w2": 2}


def test_given_round_robin_groups_then_least_busy_loads_are_not_read(
    routing: Routing,
) -> None:
    r = routing
    r.register("w1", active=9)
    r.register("w2", active=0)
    r.add_groups(4)
    r.dispatch(r.claim())
    assert r.queued() == {"w1": 2, "w2": 2}


def test_given_sticky_groups_then_each_keeps_its_client_and_only_a_leaving_clients_groups_move(
    routing: Routing,
) -> None:
    r = routing
    for name in ("w1", "w2", "w3"):
        r.register(name)
    ids = r.add_groups(12, route="sticky")
    claimed = r.claim()
    r.dispatch(claimed)
    first = {c.group_id: r.client_of(c.id) for c in claimed}
    assert first == {g: sticky(g, ["w1", "w2", "w3"]) for g in ids}
    assert len(set(first.values())) > 1  # 12 groups over 3 clients do spread

    # Each run ends; the recorder claims the next ones, which keep the group's route.
    nexts = [n for c in claimed for n in r.finish(c)]
    assert {n.route for n in nexts} == {"sticky"}
    r.later(60)
    r.dispatch(nexts)
    second = {n.group_id: r.client_of(n.id) for n in nexts}
    assert second == first

    # w2 leaves: its groups move to the others, every other group stays.
    r.leave("w2")
    thirds = [n for c in nexts for n in r.finish(c)]
    r.later(60)
    r.dispatch(thirds)
    third = {n.group_id: r.client_of(n.id) for n in thirds}
    for group_id, was in first.items():
        if was == "w2":
            assert third[group_id] in ("w1", "w3")
        else:
            assert third[group_id] == was


def test_given_failover_then_every_run_goes_to_the_first_client_by_name_until_it_leaves(
    routing: Routing,
) -> None:
    r = routing
    for name in ("w-c", "w-a", "w-b"):
        r.register(name)
    r.add_groups(4, route="failover")
    claimed = r.claim()
    r.dispatch(claimed)
    assert r.queued() == {"w-a": 4, "w-b": 0, "w-c": 0}

    r.leave("w-a")
    nexts = [n for c in claimed for n in r.finish(c)]
    assert {n.route for n in nexts} == {"failover"}
    r.later(60)
    r.dispatch(nexts)
    assert {r.client_of(n.id) for n in nexts} == {"w-b"}


def test_given_a_sticky_group_with_a_tag_then_it_sticks_among_the_tagged_clients(
    routing: Routing,
) -> None:
    r = routing
    r.register("w1", "gpu")
    r.register("w2")
    r.register("w3", "gpu")
    ids = r.add_groups(8, route="sticky", client_tag="gpu")
    claimed = r.claim()
    r.dispatch(claimed)
    assert {c.group_id: r.client_of(c.id) for c in claimed} == {
        g: sticky(g, ["w1", "w3"]) for g in ids
    }


def test_given_an_unknown_route_in_the_database_then_the_run_waits(
    routing: Routing, caplog: pytest.LogCaptureFixture
) -> None:
    r = routing
    r.register("w1")
    r.add_groups(1, route="random")
    claimed = r.claim()
    with caplog.at_level(logging.ERROR, "fss.scheduler.dispatcher"):
        assert r.dispatch(claimed) == {claimed[0].id: Outcome.NO_CLIENT}
    assert "unknown route 'random'" in caplog.text
    assert r.queued() == {"w1": 0}


def test_given_an_empty_client_tag_then_the_group_is_untagged(routing: Routing) -> None:
    r = routing
    r.register("w1", "gpu")
    r.register("w2")
    r.add_groups(2, client_tag="")
    claimed = r.claim()
    assert {c.client_tag for c in claimed} == {None}
    assert set(r.dispatch(claimed).values()) == {Outcome.SENT}
    assert r.queued() == {"w1": 1, "w2": 1}
    assert {n.client_tag for c in claimed for n in r.finish(c)} == {None}
