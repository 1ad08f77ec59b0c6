"""web UI: operator kicks (client.kick_reason) and indexes behind the overview and task pages

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Who kicked a client: NULL for the supervisor's kick of a hung client (lifted once it
    # runs nothing), "operator: <name>" for a kick from the web UI (lifted by an admit or a
    # restart of the worker only).
    op.add_column("client", sa.Column("kick_reason", sa.String(128), nullable=True))
    # Runs per minute and the latest failures: finished tasks by finish time.
    op.create_index("ix_task_status_finish_at", "task", ["status", "finish_at"])
    # A group's newest tasks (last result, run history, task search by group), newest first.
    op.create_index("ix_task_task_group_id_id", "task", ["task_group_id", "id"])
    # Task search by job or by client, newest first: without them a filter that matches
    # little walked the primary key through most of the table (bench.web_pages).
    op.create_index("ix_task_job_name_id", "task", ["job_name", "id"])
    op.create_index("ix_task_client_id_id", "task", ["client_id", "id"])
    # Failed runs per job (/metrics): the failed tasks only, index-only (30,000 rows: 6 ms
    # instead of 25-150 ms of heap reads); a partial index costs nothing on other rows.
    # MySQL has no partial indexes: there it is a full (status, job_name) index.
    op.create_index(
        "ix_task_fail_job_name", "task", ["status", "job_name"],
        postgresql_where=sa.text("status = 3"), sqlite_where=sa.text("status = 3"),
    )


def downgrade() -> None:
    op.drop_index("ix_task_fail_job_name", table_name="task")
    op.drop_index("ix_task_client_id_id", table_name="task")
    op.drop_index("ix_task_job_name_id", table_name="task")
    op.drop_index("ix_task_task_group_id_id", table_name="task")
    op.drop_index("ix_task_status_finish_at", table_name="task")
    with op.batch_alter_table("client") as batch:
        batch.drop_column("kick_reason")
