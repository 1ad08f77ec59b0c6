"""alerts: targets, alerts, their outbox of notices, deliveries and attempts, silences; the
group's alert targets, rules, late_after_s and whether an alert about it is open

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

MYSQL_UTF8MB4: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
Moment = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = "expanded_at IS NULL"


def group_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("alert_targets", sa.Text(), nullable=True),
        sa.Column("alert_rules", sa.Text(), nullable=True),
        sa.Column("late_after_s", sa.Integer(), nullable=True),
        sa.Column("alert_open", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]


def upgrade() -> None:
    # Plain ADD COLUMN (as 0007): SQLite's batch mode would drop the table's AUTOINCREMENT.
    for column in group_columns():
        op.add_column("task_group", column)
    op.create_table(
        "alert_target",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("config", LongText, nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("rules", sa.Text(), nullable=True),
        sa.Column("rate_per_min", sa.Integer(), nullable=False, server_default="20"),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("updated_at", Moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_target"),
        sqlite_autoincrement=True,
        **MYSQL_UTF8MB4,
    )
    op.create_index("uq_alert_target_name", "alert_target", ["name"], unique=True)
    op.create_table(
        "alert",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("open_key", sa.String(240), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="open"),
        sa.Column("task_group_id", sa.BigInteger(), nullable=True),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("planned_at", Moment, nullable=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("detail", LongText, nullable=True),
        sa.Column("count", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("opened_at", Moment, nullable=False),
        sa.Column("last_at", Moment, nullable=False),
        sa.Column("notified_at", Moment, nullable=True),
        sa.Column("resolved_at", Moment, nullable=True),
        sa.Column("resolved_note", sa.String(300), nullable=True),
        sa.Column("acked_by", sa.String(64), nullable=True),
        sa.Column("acked_at", Moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert"),
        sqlite_autoincrement=True,
        **MYSQL_UTF8MB4,
    )
    op.create_index("uq_alert_open_key", "alert", ["open_key"], unique=True)
    op.create_index("ix_alert_rule_subject", "alert", ["rule", "subject"])
    op.create_index("ix_alert_opened_at", "alert", ["opened_at"])
    op.create_index("ix_alert_task_group_id", "alert", ["task_group_id"])
    op.create_table(
        "alert_notice",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("expanded_at", Moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_notice"),
        sqlite_autoincrement=True,
        **MYSQL_UTF8MB4,
    )
    op.create_index(
        "ix_alert_notice_pending",
        "alert_notice",
        ["expanded_at"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    op.create_index("ix_alert_notice_alert_id", "alert_notice", ["alert_id"])
    op.create_table(
        "alert_delivery",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.BigInteger(), nullable=True),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("target_name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("folded_into", sa.BigInteger(), nullable=True),
        sa.Column("summary", LongText, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_at", Moment, nullable=True),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("sent_at", Moment, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_delivery"),
        sqlite_autoincrement=True,
        **MYSQL_UTF8MB4,
    )
    op.create_index(
        "ix_alert_delivery_state_next_at", "alert_delivery", ["state", "next_at"]
    )
    op.create_index("ix_alert_delivery_notice_id", "alert_delivery", ["notice_id"])
    op.create_index(
        "ix_alert_delivery_target_sent", "alert_delivery", ["target_id", "sent_at"]
    )
    op.create_index(
        "uq_alert_delivery_notice_target",
        "alert_delivery",
        ["notice_id", "target_id"],
        unique=True,
    )
    op.create_table(
        "alert_attempt",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("target_name", sa.String(64), nullable=False),
        sa.Column("at", Moment, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("node", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_attempt"),
        sqlite_autoincrement=True,
        **MYSQL_UTF8MB4,
    )
    op.create_index("ix_alert_attempt_delivery_id", "alert_attempt", ["delivery_id"])
    op.create_index("ix_alert_attempt_at", "alert_attempt", ["at"])
    op.create_table(
        "alert_silence",
        sa.Column("task_group_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("until", Moment, nullable=False),
        sa.Column("by_user", sa.String(64), nullable=False),
        sa.Column("note", sa.String(300), nullable=True),
        sa.Column("created_at", Moment, nullable=False),
        sa.PrimaryKeyConstraint("task_group_id", name="pk_alert_silence"),
        **MYSQL_UTF8MB4,
    )


def downgrade() -> None:
    op.drop_table("alert_silence")
    op.drop_table("alert_attempt")
    op.drop_table("alert_delivery")
    op.drop_table("alert_notice")
    op.drop_table("alert")
    op.drop_table("alert_target")
    with op.batch_alter_table("task_group") as batch:
        for column in reversed(group_columns()):
            batch.drop_column(column.name)
