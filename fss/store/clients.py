"""Client registry and server nodes as the scheduler and the CLI see them."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from fss.errors import FssError
from fss.store import audit
from fss.store.audit import Actor
from fss.store.rows import ClientRow
from fss.store.tables import UTCDateTime, client, server_node, task_group


def list_clients(conn: Connection) -> list[ClientRow]:
    rows = conn.execute(sa.select(client).order_by(client.c.id))
    return [ClientRow.from_row(r) for r in rows]


def live_clients(conn: Connection, alive_since: datetime) -> list[ClientRow]:
    rows = conn.execute(sa.select(client).where(client.c.heartbeat_at >= alive_since))
    return [ClientRow.from_row(r) for r in rows]


def heartbeat_node(
    engine: Engine,
    node_id: str,
    now: datetime,
    started_at: datetime,
    unhealthy_reason: str | None = None,
) -> None:
    """Upsert the node's row; `unhealthy_reason` is None while all its loops make progress.
    `started_at` and `pid` are the current process's: a node restarted under the same name
    shows its new start."""
    values = {
        "host": socket.gethostname()[:128],
        "pid": os.getpid(),
        "started_at": started_at,
        "heartbeat_at": now,
        "is_alive": True,
        "unhealthy_reason": unhealthy_reason[:512] if unhealthy_reason else None,
    }
    with engine.begin() as conn:
        updated = conn.execute(
            server_node.update().where(server_node.c.id == node_id).values(**values)
        ).rowcount
        if updated:
            return
        try:
            with conn.begin_nested():
                conn.execute(
                    server_node.insert().values(id=node_id, **values)
                )
        except IntegrityError:
            conn.execute(server_node.update().where(server_node.c.id == node_id).values(**values))


def mark_node_stopped(engine: Engine, node_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(server_node.update().where(server_node.c.id == node_id).values(is_alive=False))


def jobs_of_enabled_groups(conn: Connection) -> dict[str, list[int]]:
    """The job name of every enabled group, with the ids of the groups that run it."""
    rows = conn.execute(
        sa.select(task_group.c.job_name, task_group.c.id)
        .where(task_group.c.is_enable == sa.true())
        .order_by(task_group.c.job_name, task_group.c.id)
    )
    jobs: dict[str, list[int]] = {}
    for job_name, group_id in rows:
        jobs.setdefault(job_name, []).append(group_id)
    return jobs


MAX_KICK_REASON = 128


def kick_client(
    engine: Engine, client_id: str, by: str, now: datetime, actor: Actor | None = None
) -> ClientRow:
    """An operator's kick: nothing more is dispatched to the client (its running tasks go on)
    until an operator admits it again or its worker process restarts."""
    reason = f"operator: {by}"[:MAX_KICK_REASON]
    with engine.begin() as conn:
        before = get_client(conn, client_id)
        conn.execute(
            client.update()
            .where(client.c.id == client_id)
            .values(
                kicked_at=sa.func.coalesce(client.c.kicked_at, sa.literal(now, UTCDateTime())),
                kick_reason=reason,
            )
        )
        after = get_client(conn, client_id)
        _audit(conn, actor, "client.kick", now, before, after)
        return after


def admit_client(
    engine: Engine, client_id: str, now: datetime | None = None, actor: Actor | None = None
) -> ClientRow:
    """Lift a kick (an operator's or the supervisor's): the client takes runs again."""
    with engine.begin() as conn:
        before = get_client(conn, client_id)
        conn.execute(
            client.update()
            .where(client.c.id == client_id)
            .values(kicked_at=None, kick_reason=None, hung_count=0)
        )
        after = get_client(conn, client_id)
        if actor is not None:
            if now is None:
                raise TypeError("an audited admit needs `now`")
            _audit(conn, actor, "client.admit", now, before, after)
        return after


def _audit(
    conn: Connection, actor: Actor | None, action: str, now: datetime, before: ClientRow,
    after: ClientRow,
) -> None:
    def state(row: ClientRow) -> dict[str, Any]:
        return {"kicked_at": row.kicked_at, "kick_reason": row.kick_reason,
                "hung_count": row.hung_count}

    audit.record(conn, actor, action, now, subject=f"client {after.id}",
                 changes=audit.diff(state(before), state(after)),
                 detail={"client_id": after.id, "host": after.host})


def get_client(conn: Connection, client_id: str) -> ClientRow:
    row = conn.execute(sa.select(client).where(client.c.id == client_id)).first()
    if row is None:
        raise ClientNotFound(client_id)
    return ClientRow.from_row(row)


class ClientNotFound(FssError, LookupError):
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"client {client_id!r} is not registered")
