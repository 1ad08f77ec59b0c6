"""Sessions of the web UI and refused logins, shared by every `fss web` replica.

A session row is keyed by a hash of the cookie's random token (the database never holds a
usable cookie); it ends when its user logs out or it expires. Refused logins count per key
("user:<name>", "ip:<address>") with one atomic upsert each, so concurrent wrong passwords on
several replicas are all counted; the lock-out policy comes from fss.domain.login_throttle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from fss.store.tables import UTCDateTime, login_failure, web_session

# Ended and expired session rows are deleted this long after they expire.
KEEP_EXPIRED = timedelta(days=1)


def start_session(
    conn: Connection, token_hash: str, user_name: str, now: datetime, expires_at: datetime
) -> None:
    conn.execute(
        web_session.insert().values(
            token_hash=token_hash, user_name=user_name, created_at=now, expires_at=expires_at
        )
    )


def session_user(conn: Connection, token_hash: str, now: datetime) -> str | None:
    """The user of a session that has neither ended nor expired (one primary-key lookup)."""
    return conn.execute(
        sa.select(web_session.c.user_name).where(
            web_session.c.token_hash == token_hash,
            web_session.c.ended_at.is_(None),
            web_session.c.expires_at > now,
        )
    ).scalar()


def end_session(conn: Connection, token_hash: str, now: datetime) -> bool:
    """End one session; False if it had ended already or does not exist."""
    return bool(
        conn.execute(
            web_session.update()
            .where(web_session.c.token_hash == token_hash, web_session.c.ended_at.is_(None))
            .values(ended_at=now)
        ).rowcount
    )


def prune(conn: Connection, now: datetime, forget_before: datetime) -> None:
    """Delete sessions expired a day ago and failure counts that are neither locked nor
    recent enough to count (run at a successful login: logins are rare, the tables small)."""
    conn.execute(web_session.delete().where(web_session.c.expires_at < now - KEEP_EXPIRED))
    conn.execute(
        login_failure.delete().where(
            login_failure.c.last_at < forget_before,
            sa.or_(login_failure.c.locked_until.is_(None), login_failure.c.locked_until < now),
        )
    )


def locked_until(conn: Connection, keys: Sequence[str], now: datetime) -> datetime | None:
    """The latest lock among `keys` that has not run out yet; None if none is locked."""
    return conn.execute(
        sa.select(sa.func.max(login_failure.c.locked_until)).where(
            login_failure.c.key.in_(list(keys)), login_failure.c.locked_until > now
        )
    ).scalar()


def record_failure(
    conn: Connection,
    key: str,
    now: datetime,
    forget_before: datetime,
    schedule: Sequence[datetime],
) -> None:
    """Count one refused login of `key` in one atomic upsert: the count goes up by one (or
    starts again at 1 when the previous failure is older than `forget_before`), and the key
    is locked until schedule[count - 1] (the last entry for every count past the end)."""
    row = login_failure.c
    count = sa.case((row.last_at < forget_before, 1), else_=row.failures + 1)
    lock = sa.case(
        {n: sa.literal(moment, UTCDateTime()) for n, moment in enumerate(schedule[:-1], 1)},
        value=count,
        else_=sa.literal(schedule[-1], UTCDateTime()),
    )
    first = {"key": key, "failures": 1, "last_at": now, "locked_until": schedule[0]}
    # MySQL evaluates ON DUPLICATE KEY UPDATE assignments left to right, a later one seeing
    # the new values of earlier ones: locked_until and failures read the old row first.
    changes = [("locked_until", lock), ("failures", count), ("last_at", now)]
    dialect = conn.dialect.name
    if dialect == "mysql":
        statement: sa.Executable = (
            mysql.insert(login_failure).values(**first).on_duplicate_key_update(changes)
        )
    elif dialect in ("postgresql", "sqlite"):
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(login_failure)
        statement = insert.values(**first).on_conflict_do_update(
            index_elements=[row.key], set_=dict(changes)
        )
    else:
        raise NotImplementedError(f"login throttling on {dialect}")
    conn.execute(statement)


def failures_of(conn: Connection, key: str) -> int:
    return int(
        conn.execute(sa.select(login_failure.c.failures).where(login_failure.c.key == key))
        .scalar() or 0
    )


def clear_failures(conn: Connection, key: str) -> None:
    conn.execute(login_failure.delete().where(login_failure.c.key == key))
