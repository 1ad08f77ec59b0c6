"""This database's installation id (one row, drawn by migration 0006)."""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from fss.domain.clock import Clock, SystemClock
from fss.store.tables import client, installation


def installation_id(engine: Engine, clock: Clock | None = None) -> str:
    """The id; drawn now if the table is empty (a schema made without the migrations).
    Should two processes draw at once, both then read the same one: the oldest row."""
    found = _oldest(engine)
    if found is not None:
        return found
    now = (clock or SystemClock()).now()
    try:
        with engine.begin() as conn:
            conn.execute(installation.insert().values(id=secrets.token_hex(4), created_at=now))
    except IntegrityError:
        pass
    found = _oldest(engine)
    if found is None:
        raise RuntimeError("no installation id after drawing one")
    return found


def _oldest(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(installation.c.id)
            .order_by(installation.c.created_at, installation.c.id)
            .limit(1)
        ).scalar()


def live_beacon_workers(engine: Engine, heard_since: datetime) -> list[str]:
    """Ids of the Python workers heard from since then: each keeps a presence beacon on
    the installation's Redis (gRPC clients do not)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(client.c.id).where(
                    client.c.heartbeat_at >= heard_since, client.c.language == "python"
                )
            ).scalars()
        )
