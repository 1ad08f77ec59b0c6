"""`fss node ...`: the scheduler instances sharing the database."""

from __future__ import annotations

from datetime import datetime

import click

from fss.cli.context import CliContext, pass_cli
from fss.cli.output import emit_json, emit_table
from fss.scheduler.supervisor import LEASE_NAME as SUPERVISOR_LEASE
from fss.store.nodes import list_nodes
from fss.store.rows import NodeRow


@click.group("node")
def node_cli() -> None:
    """Server nodes: running scheduler instances."""


@node_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_cli
def list_node_rows(cli: CliContext, as_json: bool) -> None:
    """Scheduler nodes with their heartbeat, health and the supervisor lease."""
    now = cli.clock.now()
    with cli.engine.connect() as conn:
        rows = list_nodes(conn, SUPERVISOR_LEASE, now)
    if as_json:
        emit_json([node_json(n, now) for n in rows])
        return
    emit_table(
        [
            "id",
            "host",
            "pid",
            "started_at",
            "heartbeat_age_s",
            "is_alive",
            "unhealthy_reason",
            "supervisor",
        ],
        [
            [
                n.id,
                n.host,
                n.pid,
                n.started_at,
                n.heartbeat_age_s(now),
                n.is_alive,
                n.unhealthy_reason,
                n.holds_lease,
            ]
            for n in rows
        ],
    )


def node_json(node: NodeRow, now: datetime) -> dict[str, object]:
    body = node.to_json()
    body["heartbeat_age_s"] = node.heartbeat_age_s(now)
    body["holds_supervisor_lease"] = body.pop("holds_lease")
    return body
