"""audit trail: one row per change an operator made (who, when, from where, what changed)

Written in the transaction of the change it records, so a change without its row cannot
commit and a refused change leaves none. `changes` is JSON {field: [before, after]} with
secrets masked; `detail` is JSON of what else the action carried (run data, a note).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MYSQL_UTF8MB4: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
Moment = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", Moment, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(256), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("task_group_id", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("changes", LongText, nullable=True),
        sa.Column("detail", LongText, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_event"),
        sqlite_autoincrement=True,
        **MYSQL_UTF8MB4,
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.create_index("ix_audit_event_task_group_id_id", "audit_event", ["task_group_id", "id"])
    op.create_index("ix_audit_event_actor_id", "audit_event", ["actor", "id"])


def downgrade() -> None:
    op.drop_table("audit_event")
