"""A heartbeat's tags and active run count land on the client row (all backends); older
heartbeats without tags are still accepted; a bad tag is refused naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.events import ClientHeartbeat, decode_events, encode_batch
from fss.store.clients import list_clients
from fss.store.engine import create_engine
from fss.store.recording import record

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    made = create_engine(database_url)
    yield made
    made.dispose()


def beat(at: datetime, tags: tuple[str, ...] = (), active: int = 0) -> ClientHeartbeat:
    return ClientHeartbeat("w1", "h", "127.0.0.1", 1, ("job",), "q.w1", at, active=active,
                           tags=tags)


def test_given_heartbeats_then_the_client_row_has_their_tags_and_active_runs(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        record(conn, [beat(T0, ("gpu", "big"), active=2)], T0)
        (row,) = list_clients(conn)
    assert (row.tags, row.active_runs) == ("big,gpu", 2)
    assert row.to_json()["tags"] == ["big", "gpu"]

    later = T0 + timedelta(seconds=1)
    with engine.begin() as conn:  # restarted without tags: the row follows its heartbeat
        record(conn, [beat(later, active=0)], later)
        (row,) = list_clients(conn)
    assert (row.tags, row.active_runs) == (None, 0)
    assert row.to_json()["tags"] == []


def test_given_a_heartbeat_from_an_older_sender_without_tags_then_it_is_accepted() -> None:
    body = encode_batch([beat(T0)])
    del body["events"][0]["tags"]
    events, rejected = decode_events(body)
    assert rejected == []
    assert events == [beat(T0)]


@pytest.mark.parametrize("tags", [["a,b"], [""], ["x" * 65], "gpu", [1]])
def test_given_a_heartbeat_with_a_bad_tag_then_it_is_refused_naming_tags(tags: object) -> None:
    body = encode_batch([beat(T0)])
    body["events"][0]["tags"] = tags
    events, rejected = decode_events(body)
    assert events == []
    assert rejected[0].reason.startswith("tags: ")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="gpucGPU019_.:-", min_size=1, max_size=64), max_size=3))
def test_tags_round_trip_through_the_event(tags: list[str]) -> None:
    (event,), rejected = decode_events(encode_batch([beat(T0, tuple(tags))]))
    assert rejected == [] and isinstance(event, ClientHeartbeat)
    assert event.tags == tuple(tags)
