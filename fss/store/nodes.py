"""Scheduler nodes as operators see them: heartbeat, health, and who holds a cluster lease."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.store.rows import NodeRow
from fss.store.tables import lease, server_node


def list_nodes(conn: Connection, lease_name: str, now: datetime) -> list[NodeRow]:
    """Every node, newest first; `holds_lease` marks the holder of an unexpired `lease_name`."""
    holder = (
        sa.select(lease.c.holder)
        .where(lease.c.name == lease_name, lease.c.until >= now)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(server_node, (server_node.c.id == holder).label("holds_lease")).order_by(
            server_node.c.started_at.desc(), server_node.c.id
        )
    )
    return [NodeRow.from_row(r) for r in rows]


def live_nodes(conn: Connection, alive_since: datetime) -> list[NodeRow]:
    """Nodes that have not stopped and whose last heartbeat is not older than `alive_since`."""
    rows = conn.execute(
        sa.select(server_node)
        .where(server_node.c.is_alive == sa.true(), server_node.c.heartbeat_at >= alive_since)
        .order_by(server_node.c.id)
    )
    return [NodeRow.from_row(r) for r in rows]
