"""Clients that left: their registration is deleted (liveness reads only `client`), and a
copy goes to `client_departed` in the same transaction, so reports show them as offline
for a while instead of letting them vanish."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from fss.store.tables import client, client_departed

MAX_REASON = 128


def remove_client(conn: Connection, conditions: list[Any], reason: str, now: datetime) -> bool:
    """Delete the one client row that meets `conditions` (the caller's guard: its id, and
    what must still hold) and keep a copy of it; False when no row met them. The row is
    locked first, so the copy is the row the DELETE removed."""
    row = conn.execute(sa.select(client).where(*conditions).with_for_update()).first()
    if row is None:
        return False
    if conn.execute(client.delete().where(*conditions)).rowcount != 1:
        return False
    note_departure(conn, row, reason, now)
    return True


def note_departure(conn: Connection, row: Row[Any], reason: str, now: datetime) -> None:
    """Upsert the departed client's last registration (a client that left twice keeps the
    latest)."""
    values = {
        "host": row.host,
        "ip": row.ip,
        "pid": row.pid,
        "job_names": row.job_names,
        "tags": row.tags,
        "registered_at": row.registered_at,
        "heartbeat_at": row.heartbeat_at,
        "left_at": now,
        "reason": reason[:MAX_REASON],
    }
    update = client_departed.update().where(client_departed.c.id == row.id).values(**values)
    if conn.execute(update).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(client_departed.insert().values(id=row.id, **values))
    except IntegrityError:
        conn.execute(update)


def delete_departed(conn: Connection, left_before: datetime) -> int:
    """Retention: departed clients are shown for FSS_CLIENT_OFFLINE_KEEP_S, then forgotten."""
    return conn.execute(
        client_departed.delete().where(client_departed.c.left_at < left_before)
    ).rowcount


def departures_since(conn: Connection, since: datetime | None) -> list[tuple[str, datetime]]:
    """(client id, left_at) of the clients that left at or after `since` (all kept: None)."""
    query = sa.select(client_departed.c.id, client_departed.c.left_at)
    if since is not None:
        query = query.where(client_departed.c.left_at >= since)
    return [(str(row.id), row.left_at) for row in conn.execute(query)]
