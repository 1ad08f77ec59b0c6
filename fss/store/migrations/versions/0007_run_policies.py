"""run policies: retries with backoff, time limits, overlap, routing and broadcast, child
groups, jitter, pause with a note, run with data, backfill; one row per attempt (task_run)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MYSQL_UTF8MB4: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
Moment = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

def group_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("retries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("retry_delay_ms", sa.BigInteger(), nullable=False, server_default="1000"),
        sa.Column("retry_backoff", sa.Float(), nullable=False, server_default="2"),
        sa.Column("retry_delay_max_ms", sa.BigInteger(), nullable=True),
        sa.Column("retry_jitter", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("max_run_s", sa.Integer(), nullable=True),
        sa.Column("overlap", sa.String(16), nullable=False, server_default="skip"),
        sa.Column("route", sa.String(16), nullable=False, server_default="round_robin"),
        sa.Column("client_tag", sa.String(64), nullable=True),
        sa.Column("on_success", sa.Text(), nullable=True),
        sa.Column("jitter_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("disabled_note", sa.String(512), nullable=True),
        sa.Column("enable_at", Moment, nullable=True),
        sa.Column("buffered_at", Moment, nullable=True),
    ]
def task_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("kind", sa.String(16), nullable=False, server_default="scheduled"),
        sa.Column("run_data", LongText, nullable=True),
        sa.Column("kill_requested_at", Moment, nullable=True),
        sa.Column("shard_total", sa.Integer(), nullable=True),
    ]
def run_log_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("shard_index", sa.Integer(), nullable=True),
    ]
def client_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("tags", sa.String(256), nullable=True),
        sa.Column("active_runs", sa.Integer(), nullable=False, server_default="0"),
    ]
ADDED = {
    "task_group": group_columns,
    "task": task_columns,
    "run_log": run_log_columns,
    "client": client_columns,
}


def upgrade() -> None:
    # Plain ADD COLUMN on every backend: SQLite's batch mode would copy the tables and
    # drop their AUTOINCREMENT (ids of deleted groups and tasks must never come back).
    for table, columns in ADDED.items():
        for column in columns():
            op.add_column(table, column)
    # The supervisor's every-sweep look for groups due to enable themselves (disable --until).
    op.create_index("ix_task_group_enable_at", "task_group", ["enable_at"])
    op.create_table(
        "task_run",
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("shard_index", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("task_group_id", sa.BigInteger(), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=False, server_default="1"),
        sa.Column("progress", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("dispatched_at", Moment, nullable=True),
        sa.Column("run_at", Moment, nullable=True),
        sa.Column("finish_at", Moment, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", "attempt", "shard_index", name="pk_task_run"),
        **MYSQL_UTF8MB4,
    )
    op.create_index("ix_task_run_task_group_id", "task_run", ["task_group_id"])
    op.create_table(
        "backfill",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("task_group_id", sa.BigInteger(), nullable=False),
        sa.Column("from_at", Moment, nullable=False),
        sa.Column("to_at", Moment, nullable=False),
        sa.Column("next_at", Moment, nullable=True),
        sa.Column("slots_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("done_at", Moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_backfill"),
        sqlite_autoincrement=True,
        **MYSQL_UTF8MB4,
    )
    op.create_index("ix_backfill_task_group_id", "backfill", ["task_group_id"])


def downgrade() -> None:
    op.drop_index("ix_backfill_task_group_id", table_name="backfill")
    op.drop_index("ix_task_group_enable_at", table_name="task_group")
    op.drop_table("backfill")
    op.drop_index("ix_task_run_task_group_id", table_name="task_run")
    op.drop_table("task_run")
    for table, columns in reversed(list(ADDED.items())):
        with op.batch_alter_table(table) as batch:
            for column in reversed(columns()):
                batch.drop_column(column.name)
