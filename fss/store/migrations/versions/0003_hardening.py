"""hardening: dead letters, node health, catch-up runs, utf8mb4 on MySQL/MariaDB

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import fss.store.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("task_group", "task", "run_log", "client", "server_node", "lease")


def upgrade() -> None:
    if op.get_bind().dialect.name == "mysql":
        # Tables made by earlier revisions took the database's default character set,
        # which cannot hold 4-byte UTF-8 (emoji) where it is not utf8mb4.
        for name in TABLES:
            op.execute(f"ALTER TABLE {name} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    op.create_table(
        "dead_letter",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("received_at", fss.store.tables.UTCDateTime(), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
        sqlite_autoincrement=True,
        **fss.store.tables.MYSQL_UTF8MB4,
    )
    with op.batch_alter_table("dead_letter") as batch:
        batch.create_index("ix_dead_letter_received_at", ["received_at"], unique=False)
    # Plain ADD COLUMN on every backend: a batch copy on SQLite would drop AUTOINCREMENT.
    op.add_column(
        "task", sa.Column("catch_up", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("server_node", sa.Column("unhealthy_reason", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("server_node") as batch:
        batch.drop_column("unhealthy_reason")
    with op.batch_alter_table("task", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("catch_up")
    op.drop_table("dead_letter")
