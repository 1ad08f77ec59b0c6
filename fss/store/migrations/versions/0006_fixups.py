"""fix-ups: installation identity, group versions and last-applied specs, run log order,
server-side web sessions and login throttling

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MYSQL_UTF8MB4: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
Moment = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    installation = op.create_table(
        "installation",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("broker_token", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_installation"),
        **MYSQL_UTF8MB4,
    )
    # The identity is drawn here, once: every later upgrade keeps it.
    op.bulk_insert(
        installation,
        [{"id": secrets.token_hex(4),
          "created_at": datetime.now(timezone.utc).replace(tzinfo=None)}],
    )
    with op.batch_alter_table("task_group") as batch:
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("applied", LongText, nullable=True))
    with op.batch_alter_table("run_log") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
    op.create_table(
        "web_session",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("expires_at", Moment, nullable=False),
        sa.Column("ended_at", Moment, nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_web_session"),
        **MYSQL_UTF8MB4,
    )
    op.create_index("ix_web_session_user_name", "web_session", ["user_name"])
    op.create_table(
        "login_failure",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_at", Moment, nullable=False),
        sa.Column("locked_until", Moment, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_login_failure"),
        **MYSQL_UTF8MB4,
    )


def downgrade() -> None:
    op.drop_table("login_failure")
    op.drop_index("ix_web_session_user_name", table_name="web_session")
    op.drop_table("web_session")
    with op.batch_alter_table("run_log") as batch:
        batch.drop_column("seq")
    with op.batch_alter_table("task_group") as batch:
        batch.drop_column("applied")
        batch.drop_column("version")
    op.drop_table("installation")
