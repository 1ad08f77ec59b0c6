"""A client's `left` removes only the incarnation that left (fss.store.recording)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Engine
from store_helpers import CLIENT, SECOND, T0, client_rows

from fss.events import ClientHeartbeat, ClientLeft, Event, from_dict, to_dict
from fss.naming import client_queue
from fss.store import recording


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
