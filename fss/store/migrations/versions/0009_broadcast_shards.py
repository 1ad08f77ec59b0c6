"""broadcast: each shard's own last sign of life and retry wish; an index on shards in flight

A broadcast run's shards live in task_run while they run (one row per shard of the attempt).
The supervisor judges each shard on its own (its client lost, not started, hung, over its
time limit), so a shard keeps its last report time; a failed shard keeps whether its job
refused retries (fss.Fail(retry=False)) until its task's last shard ends. The supervisor
looks for shards in flight every sweep: on PostgreSQL and SQLite the index holds only those
(status 1 or 2), on MySQL/MariaDB every row.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Moment = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
IN_FLIGHT = "status IN (1, 2)"


def upgrade() -> None:
    with op.batch_alter_table("task_run") as batch:
        batch.add_column(sa.Column("reported_at", Moment, nullable=True))
        batch.add_column(
            sa.Column("retry", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.create_index(
        "ix_task_run_in_flight",
        "task_run",
        ["status"],
        postgresql_where=sa.text(IN_FLIGHT),
        sqlite_where=sa.text(IN_FLIGHT),
    )


def downgrade() -> None:
    op.drop_index("ix_task_run_in_flight", table_name="task_run")
    with op.batch_alter_table("task_run") as batch:
        batch.drop_column("retry")
        batch.drop_column("reported_at")
