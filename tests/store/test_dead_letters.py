"""The dead_letter store: what the recorder sets aside is kept storable, listed, and pruned."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import SECOND, T0

from fss.store import dead_letters as store
from fss.store.dead_letters import DeadLetterNotFound, new_dead_letter
from fss.store.supervision import RetentionPolicy, prune
from fss.store.tables import dead_letter

DAY = 24 * 3600 * SECOND


def add(engine: Engine, reason: str, raw: object, now: datetime = T0, queue: str = "q") -> None:
    with engine.begin() as conn:
        store.add_dead_letters(conn, queue, [new_dead_letter(reason, raw)], now)


def test_given_dead_letters_then_they_list_newest_first_and_show_in_full(engine: Engine) -> None:
    add(engine, "first", {"events": [1]})
    add(engine, "second", b"raw bytes", T0 + SECOND, queue="fss.clients")

    with engine.connect() as conn:
        listed = store.list_dead_letters(conn)
        limited = store.list_dead_letters(conn, limit=1)
        shown = store.get_dead_letter(conn, listed[1].id)

    assert [(r.reason, r.queue, r.received_at) for r in listed] == [
        ("second", "fss.clients", T0 + SECOND),
        ("first", "q", T0),
    ]
    assert [r.reason for r in limited] == ["second"]
    assert json.loads(shown.body) == {"events": [1]}
    assert listed[0].body == "raw bytes"
    assert shown.to_json()["received_at"] == T0.isoformat()


def test_given_an_unknown_id_then_dead_letter_not_found_names_it(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(DeadLetterNotFound, match="dead letter 77 "):
        store.get_dead_letter(conn, 77)


def test_given_bodies_no_database_could_store_then_they_are_stored_with_replacements(
    engine: Engine,
) -> None:
    add(engine, "nul\x00 reason", b"\xff\xfenot utf-8\x00")
    add(engine, "surrogate", {"content": "lone \ud800"})

    with engine.connect() as conn:
        second, first = store.list_dead_letters(conn)

    assert first.reason == "nul\ufffd reason"
    assert first.body == "\ufffd\ufffdnot utf-8\ufffd"
    assert json.loads(second.body) == {"content": "lone \ufffd"}


def test_given_a_huge_body_then_it_is_cut_with_a_mark(engine: Engine) -> None:
    add(engine, "r" * 5000, "x" * (store.MAX_BODY_CHARS + 10))

    with engine.connect() as conn:
        (row,) = store.list_dead_letters(conn)

    assert len(row.body) == store.MAX_BODY_CHARS
    assert row.body.endswith(store.TRUNCATED)
    assert len(row.reason) == store.MAX_REASON_CHARS


def test_purge_deletes_every_dead_letter(engine: Engine) -> None:
    add(engine, "a", 1)
    add(engine, "b", 2)

    with engine.begin() as conn:
        assert store.delete_dead_letters(conn) == 2
        assert store.list_dead_letters(conn) == []


def test_retention_deletes_dead_letters_older_than_the_fail_max_age(engine: Engine) -> None:
    policy = RetentionPolicy(fail_max_age=7 * DAY)
    add(engine, "old", 1, T0 - 8 * DAY)
    add(engine, "recent", 2, T0 - 6 * DAY)

    prune(engine, T0, policy)

    with engine.connect() as conn:
        reasons = conn.execute(sa.select(dead_letter.c.reason)).scalars().all()
    assert reasons == ["recent"]
