"""reports: run ends counted per UTC hour by a trigger on task (run_report), back-filled
from the tasks already finished; clients that left (client_departed)

The trigger fires in the transaction that moves a task to Fail (3) or Success (4), whoever
writes it, and adds one to its hour's rows: `count = count + 1` in SQL, never a value read
before. Each run end is counted exactly once, by the trigger or by the back-fill, while
schedulers keep ending runs during the upgrade:

* PostgreSQL and SQLite create the trigger and back-fill in this one transaction. CREATE
  TRIGGER takes a SHARE ROW EXCLUSIVE lock on task, held to the commit: it waits for the
  transactions already updating task, and holds off new ones until the back-fill is
  committed with it, so every run end is either committed before (back-filled) or after
  (counted by the trigger). A migration killed on the way leaves nothing behind.
* MySQL/MariaDB commit each DDL statement at once, so the steps are made safe one by one:
  the tables are created unless they exist; then, under LOCK TABLES task WRITE, run_report
  WRITE (which waits for the transactions using task and holds off every other session,
  across CREATE TRIGGER's implicit commit), the trigger is created again (DROP IF EXISTS)
  and run_report is recounted from the task table (DELETE, then the back-fill) before
  UNLOCK TABLES commits it. No run ends between the trigger and the back-fill. A migration
  killed anywhere on the way is at 0011 still and is run again: a trigger already created
  (which counted runs meanwhile) is replaced and its counts are recounted from the tasks
  they came from, so nothing is counted twice; only runs whose tasks retention deleted in
  between (a half-done upgrade left for longer than `fail_max_age_s`/`success_max_age_s`)
  would be missing. While the lock is held (the back-fill: three grouped reads of task)
  other sessions wait to read or write task. The user needs the LOCK TABLES
  privilege (GRANT ALL ON the database has it).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

MYSQL_UTF8MB4: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
Moment = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

# Slots of the "all" and "client" rows: the writing connection's id modulo this.
SLOTS = 4

POSTGRES_FUNCTION = f"""
CREATE FUNCTION fss_count_run_end() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_hour timestamp := date_trunc('hour', COALESCE(NEW.finish_at, now() AT TIME ZONE 'UTC'));
    v_ok bigint := CASE WHEN NEW.status = 4 THEN 1 ELSE 0 END;
    v_slot smallint := pg_backend_pid() % {SLOTS};
BEGIN
    INSERT INTO run_report AS r (kind, subject, slot, hour_at, success, fail)
    VALUES ('all', '', v_slot, v_hour, v_ok, 1 - v_ok),
           ('group', CAST(NEW.task_group_id AS text), 0, v_hour, v_ok, 1 - v_ok)
    ON CONFLICT (kind, subject, slot, hour_at) DO UPDATE
        SET success = r.success + EXCLUDED.success, fail = r.fail + EXCLUDED.fail;
    IF NEW.client_id IS NOT NULL THEN
        INSERT INTO run_report AS r (kind, subject, slot, hour_at, success, fail)
        VALUES ('client', NEW.client_id, v_slot, v_hour, v_ok, 1 - v_ok)
        ON CONFLICT (kind, subject, slot, hour_at) DO UPDATE
            SET success = r.success + EXCLUDED.success, fail = r.fail + EXCLUDED.fail;
    END IF;
    RETURN NULL;
END $$
"""

POSTGRES_TRIGGER = """
CREATE TRIGGER fss_task_run_end AFTER UPDATE OF status ON task FOR EACH ROW
WHEN (OLD.status NOT IN (3, 4) AND NEW.status IN (3, 4))
EXECUTE FUNCTION fss_count_run_end()
"""

MYSQL_TRIGGER = f"""
CREATE TRIGGER fss_task_run_end AFTER UPDATE ON task FOR EACH ROW
BEGIN
    DECLARE v_hour DATETIME(6);
    DECLARE v_ok BIGINT;
    DECLARE v_slot SMALLINT;
    IF OLD.status NOT IN (3, 4) AND NEW.status IN (3, 4) THEN
        SET v_hour = TIMESTAMP(DATE_FORMAT(COALESCE(NEW.finish_at, UTC_TIMESTAMP(6)),
                                            '%Y-%m-%d %H:00:00'));
        SET v_ok = IF(NEW.status = 4, 1, 0);
        SET v_slot = CONNECTION_ID() % {SLOTS};
        INSERT INTO run_report (kind, subject, slot, hour_at, success, fail)
        VALUES ('all', '', v_slot, v_hour, v_ok, 1 - v_ok),
               ('group', CAST(NEW.task_group_id AS CHAR), 0, v_hour, v_ok, 1 - v_ok)
        ON DUPLICATE KEY UPDATE success = success + VALUES(success), fail = fail + VALUES(fail);
        IF NEW.client_id IS NOT NULL THEN
            INSERT INTO run_report (kind, subject, slot, hour_at, success, fail)
            VALUES ('client', NEW.client_id, v_slot, v_hour, v_ok, 1 - v_ok)
            ON DUPLICATE KEY UPDATE success = success + VALUES(success),
                                    fail = fail + VALUES(fail);
        END IF;
    END IF;
END
"""

# SQLite has one writer at a time: slot 0. Times are text; the hour keeps the microseconds
# part so it compares with the values SQLAlchemy binds ('2031-03-14 09:00:00.000000').
SQLITE_HOUR = "strftime('%Y-%m-%d %H:00:00.000000', COALESCE(NEW.finish_at, 'now'))"
SQLITE_OK = "(CASE WHEN NEW.status = 4 THEN 1 ELSE 0 END)"
SQLITE_UPSERT = (
    "ON CONFLICT (kind, subject, slot, hour_at) DO UPDATE "
    "SET success = success + excluded.success, fail = fail + excluded.fail"
)
SQLITE_TRIGGER = f"""
CREATE TRIGGER fss_task_run_end AFTER UPDATE OF status ON task FOR EACH ROW
WHEN OLD.status NOT IN (3, 4) AND NEW.status IN (3, 4)
BEGIN
    INSERT INTO run_report (kind, subject, slot, hour_at, success, fail)
    VALUES ('all', '', 0, {SQLITE_HOUR}, {SQLITE_OK}, 1 - {SQLITE_OK}) {SQLITE_UPSERT};
    INSERT INTO run_report (kind, subject, slot, hour_at, success, fail)
    VALUES ('group', CAST(NEW.task_group_id AS TEXT), 0, {SQLITE_HOUR}, {SQLITE_OK},
            1 - {SQLITE_OK}) {SQLITE_UPSERT};
    INSERT INTO run_report (kind, subject, slot, hour_at, success, fail)
    SELECT 'client', NEW.client_id, 0, {SQLITE_HOUR}, {SQLITE_OK}, 1 - {SQLITE_OK}
    WHERE NEW.client_id IS NOT NULL {SQLITE_UPSERT};
END
"""

HOUR_OF = {
    "postgresql": "date_trunc('hour', finish_at)",
    "mysql": "TIMESTAMP(DATE_FORMAT(finish_at, '%Y-%m-%d %H:00:00'))",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', finish_at)",
}
TEXT_TYPE = {"postgresql": "TEXT", "mysql": "CHAR", "sqlite": "TEXT"}


def backfill_statements(dialect: str) -> list[str]:
    """The finished tasks still in the table, counted per hour (slot 0)."""
    hour = HOUR_OF[dialect]
    counts = (
        "SUM(CASE WHEN status = 4 THEN 1 ELSE 0 END), SUM(CASE WHEN status = 3 THEN 1 ELSE 0 END)"
    )
    finished = "status IN (3, 4) AND finish_at IS NOT NULL"
    into = "INSERT INTO run_report (kind, subject, slot, hour_at, success, fail)"
    return [
        f"{into} SELECT 'all', '', 0, {hour}, {counts} FROM task WHERE {finished} "
        f"GROUP BY {hour}",
        f"{into} SELECT 'group', CAST(task_group_id AS {TEXT_TYPE[dialect]}), 0, {hour}, "
        f"{counts} FROM task WHERE {finished} GROUP BY task_group_id, {hour}",
        f"{into} SELECT 'client', client_id, 0, {hour}, {counts} FROM task "
        f"WHERE {finished} AND client_id IS NOT NULL GROUP BY client_id, {hour}",
    ]


def _create_client_departed() -> None:
    op.create_table(
        "client_departed",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("job_names", sa.Text(), nullable=False),
        sa.Column("tags", sa.String(256), nullable=True),
        sa.Column("registered_at", Moment, nullable=False),
        sa.Column("heartbeat_at", Moment, nullable=False),
        sa.Column("left_at", Moment, nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_client_departed"),
        **MYSQL_UTF8MB4,
    )


def _create_run_report() -> None:
    op.create_table(
        "run_report",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("hour_at", Moment, nullable=False),
        sa.Column("success", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("fail", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("kind", "subject", "slot", "hour_at", name="pk_run_report"),
        **MYSQL_UTF8MB4,
    )


TABLES = (
    ("client_departed", _create_client_departed, "ix_client_departed_left_at", ["left_at"]),
    ("run_report", _create_run_report, "ix_run_report_kind_hour_at", ["kind", "hour_at"]),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "mysql":
        _upgrade_mysql()
        return
    for name, create, index, columns in TABLES:
        create()
        op.create_index(index, name, columns)
    if dialect == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)
    for statement in backfill_statements(dialect):
        op.execute(sa.text(statement))


def _upgrade_mysql() -> None:
    """Each step committed at once (DDL), so each can be done again after a kill: the
    objects already there are kept, the trigger and the counts are made again together."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for name, create, index, columns in TABLES:
        if not inspector.has_table(name):
            create()
        if index not in {i["name"] for i in inspector.get_indexes(name)}:
            op.create_index(index, name, columns)
    # Held across CREATE TRIGGER's implicit commit (tested): nothing updates task, and
    # nothing reads it half counted, until UNLOCK TABLES commits the recount.
    op.execute("LOCK TABLES task WRITE, run_report WRITE")
    try:
        op.execute("DROP TRIGGER IF EXISTS fss_task_run_end")
        op.execute(MYSQL_TRIGGER)
        op.execute("DELETE FROM run_report")
        for statement in backfill_statements("mysql"):
            op.execute(sa.text(statement))
        op.execute("COMMIT")
    except BaseException:
        # Not committed by the UNLOCK below: a failed recount leaves the counts as they were.
        with contextlib.suppress(sa.exc.DBAPIError):
            op.execute("ROLLBACK")
        raise
    finally:
        # Always: a pooled connection keeping the table locks would stop every writer.
        with contextlib.suppress(sa.exc.DBAPIError):
            op.execute("UNLOCK TABLES")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS fss_task_run_end ON task")
        op.execute("DROP FUNCTION IF EXISTS fss_count_run_end()")
    else:
        op.execute("DROP TRIGGER IF EXISTS fss_task_run_end")
    op.drop_index("ix_run_report_kind_hour_at", table_name="run_report")
    op.drop_table("run_report")
    op.drop_index("ix_client_departed_left_at", table_name="client_departed")
    op.drop_table("client_departed")
