"""A client's `left` removes only the incarnation that left, and a batch of heartbeats and
`left`s leaves the table as the same events written one by one (fss.store.recording)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import CLIENT, SECOND, T0, client_rows

from fss.events import ClientHeartbeat, ClientLeft, Event, from_dict, to_dict
from fss.naming import client_queue
from fss.store import recording
from fss.store.recording import client_steps, record_client_events
from fss.store.tables import client, client_departed


def _record(engine: Engine, events: Sequence[Event], now: datetime) -> None:
    with engine.begin() as conn:
        recording.record(conn, events, now)


def _beat(incarnation: str, pid: int = 1) -> ClientHeartbeat:
    return ClientHeartbeat(CLIENT, "h", "127.0.0.1", pid, ("j",), client_queue(CLIENT), T0,
                           incarnation=incarnation)


def test_a_replayed_left_of_an_old_incarnation_keeps_the_restarted_client(
    engine: Engine,
) -> None:
    """The worker left (incarnation A), restarted under the same id (B) and beat; then A's
    `left` came again (redelivered): B's row stays, so its runs are not failed."""
    _record(engine, [_beat("A"), ClientLeft(CLIENT, T0, incarnation="A")], T0)
    assert client_rows(engine) == []
    _record(engine, [_beat("B", pid=2)], T0 + SECOND)
    _record(engine, [ClientLeft(CLIENT, T0, incarnation="A")], T0 + 2 * SECOND)  # replayed

    [row] = client_rows(engine)
    assert (row["incarnation"], row["pid"]) == ("B", 2)
    _record(engine, [ClientLeft(CLIENT, T0 + 3 * SECOND, incarnation="B")], T0 + 3 * SECOND)
    assert client_rows(engine) == []


def test_a_left_without_an_incarnation_removes_the_client_as_before(engine: Engine) -> None:
    _record(engine, [_beat("B")], T0)
    _record(engine, [ClientLeft(CLIENT, T0)], T0 + SECOND)
    assert client_rows(engine) == []


def test_left_events_carry_their_incarnation_and_old_ones_still_decode() -> None:
    event = ClientLeft(CLIENT, T0, incarnation="abc")
    assert from_dict(to_dict(event)) == event
    old = {"type": "left", "client_id": CLIENT, "at": T0.isoformat()}
    assert from_dict(old) == ClientLeft(CLIENT, T0)


CASES = 40
NAMES = ("c1", "c2")
# "" is an older sender's (no incarnation): its `left` is not guarded, and neither is its row.
INCARNATIONS = ("", "inc-a", "inc-b", "inc-c")


def beat(client_id: str, incarnation: str, pid: int) -> ClientHeartbeat:
    return ClientHeartbeat(
        client_id, "h", "127.0.0.1", pid, ("j",), client_queue(client_id), T0,
        incarnation=incarnation,
    )


def generated_events(rng: random.Random, prefix: str) -> tuple[list[Event], list[Event]]:
    """Events written before (the table's state) and the batch under test, for ids `prefix`+."""
    def one() -> Event:
        client_id = prefix + rng.choice(NAMES)
        incarnation = rng.choice(INCARNATIONS)
        if rng.random() < 0.4:
            return ClientLeft(client_id, T0, incarnation=incarnation)
        return beat(client_id, incarnation, rng.randrange(1, 5))
    before = [one() for _ in range(rng.randrange(0, 4))]
    batch = [one() for _ in range(rng.randrange(1, 9))]
    return before, batch


def renamed(events: list[Event], prefix: str) -> list[Event]:
    out: list[Event] = []
    for event in events:
        assert isinstance(event, ClientHeartbeat | ClientLeft)
        name = event.client_id.split("-", 1)[1]
        if isinstance(event, ClientLeft):
            out.append(ClientLeft(prefix + name, event.at, incarnation=event.incarnation))
        else:
            out.append(beat(prefix + name, event.incarnation, event.pid))
    return out


def table_of(engine: Engine, prefix: str) -> tuple[list[tuple[str, str | None, int]], list[str]]:
    """The registrations (name, incarnation, pid) and the departed names under `prefix`."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(client.c.id, client.c.incarnation, client.c.pid)
            .where(client.c.id.like(prefix + "%")).order_by(client.c.id)
        ).all()
        departed = conn.execute(
            sa.select(client_departed.c.id, client_departed.c.pid)
            .where(client_departed.c.id.like(prefix + "%")).order_by(client_departed.c.id)
        ).all()
    cut = len(prefix)
    return (
        [(r.id[cut:], r.incarnation or "", r.pid) for r in rows],
        [f"{r.id[cut:]}:{r.pid}" for r in departed],
    )


def test_given_generated_batches_then_the_table_ends_as_with_the_events_written_one_by_one(
    engine: Engine,
) -> None:
    rng = random.Random(20261207)
    for case in range(CASES):
        one_by_one, batched = f"s{case}-", f"b{case}-"
        before, batch = generated_events(rng, one_by_one)
        now = T0 + timedelta(seconds=case)
        for prefix in (one_by_one, batched):
            with engine.begin() as conn:
                for event in renamed(before, prefix):
                    record_client_events(conn, [event], now)
        with engine.begin() as conn:
            for event in batch:
                record_client_events(conn, [event], now)
        with engine.begin() as conn:
            record_client_events(conn, renamed(batch, batched), now)

        assert table_of(engine, batched) == table_of(engine, one_by_one), (case, before, batch)


def test_given_a_late_left_of_the_replaced_incarnation_then_the_new_registration_stands(
    engine: Engine,
) -> None:
    # Given: c1 registered by incarnation a; in one batch b registers (it replaced a) and
    # a's `left` follows (a gRPC session kicked by its successor reports its end last)
    with engine.begin() as conn:
        record_client_events(conn, [beat("c1", "inc-a", 1)], T0)
    batch: list[Event] = [beat("c1", "inc-b", 2), ClientLeft("c1", T0, incarnation="inc-a")]

    # When
    with engine.begin() as conn:
        record_client_events(conn, batch, T0)

    # Then: b is registered (its heartbeat took the row over; a's `left` finds it not a's)
    assert table_of(engine, "") == ([("c1", "inc-b", 2)], [])


def test_given_only_heartbeats_then_each_client_costs_one_upsert() -> None:
    events: list[Event] = [beat("c1", "a", 1), beat("c2", "a", 2), beat("c1", "a", 1)]
    steps = client_steps(events)
    assert {k: len(v) for k, v in steps.items()} == {"c1": 1, "c2": 1}
