"""search: an index on task (status, id) of the failed runs, for runs by error text

Search finds failed runs whose error contains a text, newest first, a page at a time
(`status = 3 AND lower(error) LIKE ... ORDER BY id DESC LIMIT n`). Without this index
PostgreSQL walked the primary key backwards through every task and filtered, whenever it
guessed the text common enough to find a page soon: 280-510 ms at 1,000,000 tasks when the
text was rare or absent (bench.web_pages). With it, it walks the failed runs only, newest
first (they are bounded by `fail_max_age_s`). On PostgreSQL and SQLite the index holds the
failed tasks only; MySQL/MariaDB have no partial indexes, so there it holds every task, as
`ix_task_fail_job_name` does.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

FAILED = "status = 3"


def upgrade() -> None:
    op.create_index(
        "ix_task_fail_id",
        "task",
        ["status", "id"],
        postgresql_where=sa.text(FAILED),
        sqlite_where=sa.text(FAILED),
    )


def downgrade() -> None:
    op.drop_index("ix_task_fail_id", table_name="task")
