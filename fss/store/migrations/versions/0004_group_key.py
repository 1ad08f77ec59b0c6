"""schedules as code: task_group.key, the stable name a groups file knows a group by

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on every backend: a batch copy on SQLite would drop AUTOINCREMENT.
    op.add_column("task_group", sa.Column("key", sa.String(128), nullable=True))
    # A unique index (not a constraint) everywhere: SQLite cannot add a constraint to an
    # existing table. NULLs never collide, so groups without a key are unconstrained.
    op.create_index("uq_task_group_key", "task_group", ["key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_task_group_key", table_name="task_group")
    with op.batch_alter_table("task_group", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("key")
