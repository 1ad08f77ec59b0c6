"""initial FSS schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import fss.store.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=32), server_default="python", nullable=False),
        sa.Column("job_names", sa.Text(), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("registered_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client")),
        **fss.store.tables.MYSQL_UTF8MB4,
    )
    op.create_table(
        "run_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("task_group_id", sa.BigInteger(), nullable=False),
        sa.Column("log_level", sa.SmallInteger(), nullable=False),
        sa.Column("content", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.Column("create_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_log")),
        sa.UniqueConstraint("event_id", name="uq_run_log_event_id"),
        sqlite_autoincrement=True,
        **fss.store.tables.MYSQL_UTF8MB4,
    )
    with op.batch_alter_table("run_log", schema=None) as batch_op:
        batch_op.create_index("ix_run_log_group_id", ["task_group_id"], unique=False)
        batch_op.create_index("ix_run_log_task_id", ["task_id"], unique=False)

    op.create_table(
        "server_node",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("is_alive", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_node")),
        **fss.store.tables.MYSQL_UTF8MB4,
    )
    op.create_table(
        "task",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_group_id", sa.BigInteger(), nullable=False),
        sa.Column("job_name", sa.String(length=64), nullable=False),
        sa.Column("start_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("status", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("progress", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("run_speed", sa.BigInteger(), nullable=True),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("client_host", sa.String(length=128), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("server_node", sa.String(length=128), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claimed_until", fss.store.tables.UTCDateTime(), nullable=True),
        sa.Column("dispatched_at", fss.store.tables.UTCDateTime(), nullable=True),
        sa.Column("run_at", fss.store.tables.UTCDateTime(), nullable=True),
        sa.Column("finish_at", fss.store.tables.UTCDateTime(), nullable=True),
        sa.Column("reported_at", fss.store.tables.UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("no_client_warned", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("open_group_id", sa.BigInteger(), nullable=True),
        sa.Column("create_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.UniqueConstraint("open_group_id", name="uq_task_open_group_id"),
        sqlite_autoincrement=True,
        **fss.store.tables.MYSQL_UTF8MB4,
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index("ix_task_client_status", ["client_id", "status"], unique=False)
        batch_op.create_index("ix_task_group_status", ["task_group_id", "status"], unique=False)
        batch_op.create_index("ix_task_status_start_at", ["status", "start_at"], unique=False)

    op.create_table(
        "task_group",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("caption", sa.String(length=64), nullable=False),
        sa.Column("job_name", sa.String(length=64), nullable=False),
        sa.Column("data", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.Column("start_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("next_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("activate_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("last_run_at", fss.store.tables.UTCDateTime(), nullable=True),
        sa.Column("run_speed_avg", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("run_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("is_enable", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("interval_ms", sa.BigInteger(), nullable=True),
        sa.Column("cron", sa.String(length=128), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=True),
        sa.Column("created_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_group")),
        sqlite_autoincrement=True,
        **fss.store.tables.MYSQL_UTF8MB4,
    )


def downgrade() -> None:
    op.drop_table("task_group")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index("ix_task_status_start_at")
        batch_op.drop_index("ix_task_group_status")
        batch_op.drop_index("ix_task_client_status")

    op.drop_table("task")
    op.drop_table("server_node")
    with op.batch_alter_table("run_log", schema=None) as batch_op:
        batch_op.drop_index("ix_run_log_task_id")
        batch_op.drop_index("ix_run_log_group_id")

    op.drop_table("run_log")
    op.drop_table("client")
