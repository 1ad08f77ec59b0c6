"""alerts: an index on task_group (job_name, client_tag, is_enable) for unserved jobs

The alert sender's job_unserved check needs the (job, tag) pairs of the enabled groups.
It read them with one aggregate over every enabled group every 15 s: 0.6-1 s of
PostgreSQL at a million groups (pg_stat_activity sampled under bench.scale). With this
index it walks the distinct pairs, one index probe each, and reads the groups of a pair
only when no live client serves it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_task_group_job_tag", "task_group", ["job_name", "client_tag", "is_enable"]
    )


def downgrade() -> None:
    op.drop_index("ix_task_group_job_tag", table_name="task_group")
