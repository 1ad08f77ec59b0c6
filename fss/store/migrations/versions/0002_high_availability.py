"""high availability: group timeout and misfire policy, client draining/kicking, leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import fss.store.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_group") as batch:
        batch.add_column(sa.Column("timeout_s", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("misfire", sa.String(16), nullable=False, server_default="run-once")
        )
    with op.batch_alter_table("client") as batch:
        batch.add_column(
            sa.Column("accepting", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("hung_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("kicked_at", fss.store.tables.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("incarnation", sa.String(32), nullable=True))
    with op.batch_alter_table("run_log") as batch:
        # Room for any client's event ids (a canonical UUID is 36 characters).
        batch.alter_column(
            "event_id", existing_type=sa.String(32), type_=sa.String(64), existing_nullable=True
        )
    op.create_table(
        "lease",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("until", fss.store.tables.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lease")),
        **fss.store.tables.MYSQL_UTF8MB4,
    )


def downgrade() -> None:
    op.drop_table("lease")
    with op.batch_alter_table("run_log") as batch:
        batch.alter_column(
            "event_id", existing_type=sa.String(64), type_=sa.String(32), existing_nullable=True
        )
    with op.batch_alter_table("client") as batch:
        batch.drop_column("incarnation")
        batch.drop_column("kicked_at")
        batch.drop_column("hung_count")
        batch.drop_column("accepting")
    with op.batch_alter_table("task_group") as batch:
        batch.drop_column("misfire")
        batch.drop_column("timeout_s")
