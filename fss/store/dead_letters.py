"""Messages and events the recorder could not record, kept with why and as they came.

An operator lists them (`fss dead-letters list`), reads one in full, and purges them; the
supervisor's retention deletes them after the fail max age.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.errors import FssError
from fss.events import storable_text
from fss.store.tables import dead_letter

MAX_REASON_CHARS = 2000
# MEDIUMTEXT holds 16 MiB on MySQL/MariaDB: 4 bytes per character at worst, with room left.
MAX_BODY_CHARS = 1_000_000
TRUNCATED = "…(truncated)"


class DeadLetterNotFound(FssError, LookupError):
    def __init__(self, letter_id: int) -> None:
        self.letter_id = letter_id
        super().__init__(f"dead letter {letter_id} does not exist")


@dataclass(frozen=True)
class NewDeadLetter:
    reason: str
    body: str


@dataclass(frozen=True)
class DeadLetter:
    id: int
    received_at: datetime
    queue: str
    reason: str
    body: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "queue": self.queue,
            "reason": self.reason,
            "body": self.body,
        }


def body_text(raw: Any) -> str:
    """The raw body as text any backend stores: JSON for decoded values, bytes as UTF-8."""
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw).decode("utf-8", errors="replace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = json.dumps(raw, ensure_ascii=False, default=repr)
    return _storable(text, MAX_BODY_CHARS)


def new_dead_letter(reason: str, raw: Any) -> NewDeadLetter:
    return NewDeadLetter(_storable(reason, MAX_REASON_CHARS), body_text(raw))


def _storable(text: str, limit: int) -> str:
    text = storable_text(text)
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def add_dead_letters(
    conn: Connection, queue: str, letters: Sequence[NewDeadLetter], now: datetime
) -> None:
    if not letters:
        return
    conn.execute(
        dead_letter.insert(),
        [
            {"received_at": now, "queue": queue[:64], "reason": letter.reason, "body": letter.body}
            for letter in letters
        ],
    )


def list_dead_letters(conn: Connection, limit: int = 50) -> list[DeadLetter]:
    """Newest first."""
    rows = conn.execute(sa.select(dead_letter).order_by(dead_letter.c.id.desc()).limit(limit))
    return [DeadLetter(**row._mapping) for row in rows]


def get_dead_letter(conn: Connection, letter_id: int) -> DeadLetter:
    row = conn.execute(sa.select(dead_letter).where(dead_letter.c.id == letter_id)).first()
    if row is None:
        raise DeadLetterNotFound(letter_id)
    return DeadLetter(**row._mapping)


def delete_dead_letters(conn: Connection, received_before: datetime | None = None) -> int:
    """Delete every dead letter, or those received before the given time; returns how many."""
    statement = dead_letter.delete()
    if received_before is not None:
        statement = statement.where(dead_letter.c.received_at < received_before)
    return conn.execute(statement).rowcount
