"""`fss dead-letters ...`: an operator lists, reads and purges what the recorder set aside."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from cli_support import Fss, fss_json, sqlite_only
from sqlalchemy.engine import Engine

from fss.cli import main
from fss.store.dead_letters import add_dead_letters, new_dead_letter
from fss.store.tables import dead_letter

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
BAD_TIME = {"type": "started", "at": "0001-01-01T00:00:00+05:00"}


def set_aside(engine: Engine) -> list[int]:
    """Two dead letters as the recorder writes them; their ids, oldest first."""
    with engine.begin() as conn:
        add_dead_letters(
            conn, "fss.events", [new_dead_letter("at: '0001-...' is outside years", BAD_TIME)], T0
        )
        add_dead_letters(
            conn,
            "fss.clients",
            [new_dead_letter("undecodable application/json body: x", b"not json\x1b[2J")],
            T0 + timedelta(seconds=1),
        )
        return list(conn.execute(sa.select(dead_letter.c.id).order_by(dead_letter.c.id)).scalars())


def test_given_dead_letters_when_listed_as_json_then_newest_first_with_reason_and_body(
    fss: Fss, engine: Engine
) -> None:
    first, second = set_aside(engine)

    listed = fss_json(fss, "dead-letters", "list")

    assert [(d["id"], d["queue"]) for d in listed] == [
        (second, "fss.clients"),
        (first, "fss.events"),
    ]
    assert json.loads(listed[1]["body"]) == BAD_TIME
    assert listed[1]["reason"] == "at: '0001-...' is outside years"
    assert fss_json(fss, "dead-letters", "list", "--limit", "1") == listed[:1]


@sqlite_only
def test_given_dead_letters_when_listed_as_a_table_then_one_row_each(
    fss: Fss, engine: Engine
) -> None:
    first, second = set_aside(engine)

    lines = fss("dead-letters", "list").stdout.splitlines()

    assert lines[0].split() == ["ID", "RECEIVED_AT", "QUEUE", "REASON"]
    assert [line.split()[0] for line in lines[1:]] == [str(second), str(first)]


@sqlite_only
def test_given_a_dead_letter_when_shown_then_its_body_is_printed_with_controls_escaped(
    fss: Fss, engine: Engine
) -> None:
    _, second = set_aside(engine)

    out = fss("dead-letters", "show", str(second)).stdout
    document = fss_json(fss, "dead-letters", "show", str(second))

    assert "not json\\x1b[2J" in out and "\x1b" not in out
    assert document["body"] == "not json\x1b[2J"
    assert document["reason"] == "undecodable application/json body: x"


@sqlite_only
def test_given_purge_with_yes_then_every_dead_letter_is_deleted(fss: Fss, engine: Engine) -> None:
    set_aside(engine)

    assert fss("dead-letters", "purge", "--yes").stdout == "deleted 2 dead letters\n"

    assert fss_json(fss, "dead-letters", "list") == []


@sqlite_only
@pytest.mark.parametrize(
    ("argument", "code", "message"),
    [
        ("424242", 1, "error: dead letter 424242 does not exist"),
        ("99999999999999999999", 2, "error: letter_id: "),
        ("-3", 2, "error: letter_id: "),
    ],
)
def test_given_a_bad_id_when_shown_then_one_line_and_an_exit_code(
    fss: Fss,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    argument: str,
    code: int,
    message: str,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dead-letters", "show", argument, "--database-url", database_url])

    err = capsys.readouterr().err
    assert exit_info.value.code == code
    assert err.startswith(message) and err.count("\n") == 1
