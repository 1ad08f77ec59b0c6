"""The FSS tables (the seed's columns in snake_case, plus client and server_node)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, CursorResult, Dialect

from fss.domain.status import TaskStatus

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def naive_utc(moment: datetime) -> datetime:
    """How UTCDateTime stores a time: naive UTC. Also for values that bypass the column
    type (arrays unnested by the set-based PostgreSQL statements)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stored as naive UTC with microseconds on every backend; read back as aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


# Every table in full UTF-8 (4-byte characters included) with exact comparisons, whatever
# the database's default character set, so MySQL/MariaDB stores and compares text as the
# other backends do.
MYSQL_UTF8MB4: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")

task_group = sa.Table(
    "task_group",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("caption", sa.String(64), nullable=False),
    sa.Column("job_name", sa.String(64), nullable=False),
    sa.Column("data", LongText, nullable=False),
    sa.Column("start_at", UTCDateTime(), nullable=False),
    sa.Column("next_at", UTCDateTime(), nullable=False),
    sa.Column("task_id", sa.BigInteger(), nullable=True),
    sa.Column("activate_at", UTCDateTime(), nullable=False),
    sa.Column("last_run_at", UTCDateTime(), nullable=True),
    sa.Column("run_speed_avg", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("run_count", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("is_enable", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("interval_ms", sa.BigInteger(), nullable=True),
    sa.Column("cron", sa.String(128), nullable=True),
    sa.Column("time_zone", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # A Working task silent this long is failed as hung; NULL = max(2.5 x average, default).
    sa.Column("timeout_s", sa.Integer(), nullable=True),
    # What a run missed while no scheduler was up does: "run-once" (then back on schedule)
    # or "skip" (wait for the next slot).
    sa.Column("misfire", sa.String(16), nullable=False, server_default="run-once"),
    # The stable name a groups file (`fss group apply`) knows the group by; NULL for groups
    # made by `fss group add`, which apply never touches.
    sa.Column("key", sa.String(128), nullable=True),
    # A unique index rather than a constraint: SQLite can add only an index to an existing
    # table, and the same declaration on every backend keeps the schemas comparable.
    sa.Index("uq_task_group_key", "key", unique=True),
    # Bumped by every change of the group's settings (not by runs): an edit names the
    # version it started from and is refused (409) when someone changed the group meanwhile.
    sa.Column("version", sa.BigInteger(), nullable=False, server_default="1"),
    # What `fss group apply` last applied to this group (JSON of its spec fields), so the
    # next apply merges three ways: a field changes only when the file changed it.
    sa.Column("applied", LongText, nullable=True),
    # Run policies (migration 0007); the defaults keep the behaviour groups had before.
    # Retries: a failed attempt runs again after retry_delay_ms * retry_backoff^(n-1),
    # capped by retry_delay_max_ms, as an upper bound drawn from (full jitter) when set.
    sa.Column("retries", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("retry_delay_ms", sa.BigInteger(), nullable=False, server_default="1000"),
    sa.Column("retry_backoff", sa.Float(), nullable=False, server_default="2"),
    sa.Column("retry_delay_max_ms", sa.BigInteger(), nullable=True),
    sa.Column("retry_jitter", sa.Boolean(), nullable=False, server_default=sa.true()),
    # A run still going after this long is stopped (Celery's soft/hard time limits).
    sa.Column("max_run_s", sa.Integer(), nullable=True),
    # skip | buffer_one | replace: what a slot that passes while a run goes on does.
    sa.Column("overlap", sa.String(16), nullable=False, server_default="skip"),
    # round_robin | least_busy | sticky | failover | broadcast
    sa.Column("route", sa.String(16), nullable=False, server_default="round_robin"),
    # Only clients started with `fss worker --tag <client_tag>` take the group's runs.
    sa.Column("client_tag", sa.String(64), nullable=True),
    # The alert sender finds the (job, tag) pairs the groups need served by walking this
    # index, a probe per pair, and reads the enabled groups of an unserved pair off it
    # (migration 0014): not an aggregate over every group.
    sa.Index("ix_task_group_job_tag", "job_name", "client_tag", "is_enable"),
    # JSON list of group keys or ids that run when a run of this group ends Success.
    sa.Column("on_success", sa.Text(), nullable=True),
    # Each planned start moves later by a deterministic 0..jitter_ms (hash of group, slot).
    sa.Column("jitter_ms", sa.BigInteger(), nullable=False, server_default="0"),
    # Why the group is disabled (shown wherever the group is), and when it enables itself.
    sa.Column("disabled_note", sa.String(512), nullable=True),
    sa.Column("enable_at", UTCDateTime(), nullable=True),
    # The supervisor looks for groups due to enable themselves every sweep: by this index.
    sa.Index("ix_task_group_enable_at", "enable_at"),
    # buffer_one: the slot that passed while a run went on, run right after it ends.
    sa.Column("buffered_at", UTCDateTime(), nullable=True),
    # Alerts (migration 0010): JSON lists of the alert targets (names) this group's alerts
    # go to (NULL: the default targets) and of the rules on for it (NULL: every rule on
    # globally); how long after a planned run without success the group is late (NULL:
    # one period plus the grace); whether an alert about the group is open (a success then
    # resolves it, and only then costs a statement).
    sa.Column("alert_targets", sa.Text(), nullable=True),
    sa.Column("alert_rules", sa.Text(), nullable=True),
    sa.Column("late_after_s", sa.Integer(), nullable=True),
    sa.Column("alert_open", sa.Boolean(), nullable=False, server_default=sa.false()),
    # The supervisor's every-sweep look for runs of `replace` groups (fss.store.overlap):
    # only groups away from the default `skip` (every group on MySQL: no partial indexes).
    sa.Index(
        "ix_task_group_overlap", "overlap",
        postgresql_where=sa.text("overlap <> 'skip'"), sqlite_where=sa.text("overlap <> 'skip'"),
    ),
    # Ids are never reused (SQLite would reuse the highest after a delete): a late event
    # naming a deleted task must not match a new one.
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)


task = sa.Table(
    "task",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("task_group_id", sa.BigInteger(), nullable=False),
    sa.Column("job_name", sa.String(64), nullable=False),
    sa.Column("start_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("progress", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("run_speed", sa.BigInteger(), nullable=True),
    sa.Column("client_id", sa.String(128), nullable=True),
    sa.Column("client_host", sa.String(128), nullable=True),
    sa.Column("client_ip", sa.String(64), nullable=True),
    sa.Column("server_node", sa.String(128), nullable=True),
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claimed_until", UTCDateTime(), nullable=True),
    sa.Column("dispatched_at", UTCDateTime(), nullable=True),
    sa.Column("run_at", UTCDateTime(), nullable=True),
    sa.Column("finish_at", UTCDateTime(), nullable=True),
    sa.Column("reported_at", UTCDateTime(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("no_client_warned", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Equals task_group_id while the task is unfinished and NULL afterwards: the unique
    # index makes "at most one unfinished task per group" a property of the schema.
    sa.Column("open_group_id", sa.BigInteger(), nullable=True),
    sa.Column("create_at", UTCDateTime(), nullable=False),
    # True when this run was pulled forward to "as soon as possible" because the job asked
    # for a time already past: the run after it follows the schedule, so a job that keeps
    # returning a past time cannot spin the group in a tight loop.
    sa.Column("catch_up", sa.Boolean(), nullable=False, server_default=sa.false()),
    # scheduled | manual (fss group run) | backfill | child (on_success of another group)
    sa.Column("kind", sa.String(16), nullable=False, server_default="scheduled"),
    # Data for this run only (fss group run --data); NULL: the group's data.
    sa.Column("run_data", LongText, nullable=True),
    # Set by `fss task kill` / the overlap policy `replace`: stop the running attempt.
    sa.Column("kill_requested_at", UTCDateTime(), nullable=True),
    # Broadcast runs: how many shards (one per live client) the current attempt has.
    sa.Column("shard_total", sa.Integer(), nullable=True),
    sa.Index("ix_task_status_start_at", "status", "start_at"),
    sa.Index("ix_task_group_status", "task_group_id", "status"),
    sa.Index("ix_task_client_status", "client_id", "status"),
    sa.Index("ix_task_status_finish_at", "status", "finish_at"),
    sa.Index("ix_task_task_group_id_id", "task_group_id", "id"),
    sa.Index("ix_task_job_name_id", "job_name", "id"),
    sa.Index("ix_task_client_id_id", "client_id", "id"),
    # Failed tasks only (status 3 = Fail) on PostgreSQL and SQLite; a full index on MySQL.
    sa.Index(
        "ix_task_fail_job_name", "status", "job_name",
        postgresql_where=sa.text("status = 3"), sqlite_where=sa.text("status = 3"),
    ),
    # Failed runs newest first (search by error text, migration 0013); partial as above.
    sa.Index(
        "ix_task_fail_id", "status", "id",
        postgresql_where=sa.text("status = 3"), sqlite_where=sa.text("status = 3"),
    ),
    sa.UniqueConstraint("open_group_id", name="uq_task_open_group_id"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)

# The statements that find their rows by a list of ids test the status through this
# expression, which no index covers. Written as `status = 0` or `status IN (1, 2)`, the
# guard let the planner pick a bitmap scan of every index entry with that status: a busy
# task table holds thousands of dead ones (each run leaves one per status it passed) that
# the statistics do not count, 1-7 ms per batch instead of a key probe per id
# (bench.throughput, 2026-12-06); and right after a bulk load, before autovacuum has
# analyzed the table, the planner expects a few rows with status 0 where there are a
# million, and renewing a scheduler's claims took 90 ms (bench.scale at 1M groups).
STATUS_UNINDEXED = "(task.status + 0)"
# The same for SQLAlchemy Core statements.
status_unindexed = (task.c.status + sa.literal_column("0")).self_group()


run_log = sa.Table(
    "run_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.BigInteger(), nullable=False),
    sa.Column("task_group_id", sa.BigInteger(), nullable=False),
    sa.Column("log_level", sa.SmallInteger(), nullable=False),
    sa.Column("content", LongText, nullable=False),
    sa.Column("create_at", UTCDateTime(), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=True),
    # The job's own order of its lines within one attempt (1, 2, ...): lines travel in
    # batches from several flushes and land out of order; readers sort by (task_id, seq).
    sa.Column("seq", sa.BigInteger(), nullable=True),
    # Which attempt (and broadcast shard) wrote the line: retries keep their own lines.
    sa.Column("attempt", sa.Integer(), nullable=True),
    sa.Column("shard_index", sa.Integer(), nullable=True),
    sa.Index("ix_run_log_task_id", "task_id"),
    sa.Index("ix_run_log_group_id", "task_group_id"),
    sa.UniqueConstraint("event_id", name="uq_run_log_event_id"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)

client = sa.Table(
    "client",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(128), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("language", sa.String(32), nullable=False, server_default="python"),
    sa.Column("job_names", sa.Text(), nullable=False),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("registered_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    # False while the worker drains (SIGTERM): alive, finishing its runs, takes no new ones.
    sa.Column("accepting", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("hung_count", sa.Integer(), nullable=False, server_default="0"),
    # Kicked for hanging: not dispatched to until it reports no active run (or restarts).
    sa.Column("kicked_at", UTCDateTime(), nullable=True),
    # Changes when the worker process behind this client id restarts; `registered_at` is
    # then moved to the restart, so orders sent to the previous process can be told apart.
    sa.Column("incarnation", sa.String(32), nullable=True),
    # Who kicked it: NULL for a hung-client kick by the supervisor, "operator: <name>" for
    # an operator's kick, which only an admit or a restart of the worker lifts.
    sa.Column("kick_reason", sa.String(128), nullable=True),
    # `fss worker --tag` values, comma separated (group.client_tag picks among them).
    sa.Column("tags", sa.String(256), nullable=True),
    # Runs the client reported running in its last heartbeat (route least_busy).
    sa.Column("active_runs", sa.Integer(), nullable=False, server_default="0"),
    **MYSQL_UTF8MB4,
)

# Clients that left (unregistered, or dropped by the supervisor as silent or gone): a copy
# of their last registration, written in the transaction that deleted the `client` row, so
# the Reports page shows them as offline for FSS_CLIENT_OFFLINE_KEEP_S instead of letting
# them vanish. Liveness never reads this table; a client that registers again is live by
# its `client` row, whatever is left here.
client_departed = sa.Table(
    "client_departed",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(128), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("job_names", sa.Text(), nullable=False),
    sa.Column("tags", sa.String(256), nullable=True),
    sa.Column("registered_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("left_at", UTCDateTime(), nullable=False),
    # "left" (it unregistered), or why the supervisor dropped it.
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Index("ix_client_departed_left_at", "left_at"),
    **MYSQL_UTF8MB4,
)

# Run ends counted per UTC hour (migration 0012): kind "all" (every run), "group" (subject
# = the group id) and "client" (subject = the client of the run's last attempt). Written
# by a database trigger on `task` in the transaction that ends a run (status -> Fail or
# Success), whoever ends it (recorder, supervisor, a kill), as `count = count + 1`; rows
# of "all" and "client" are spread over `slot` (the connection's id modulo 4) so recorders
# on different slots share no row, and two on one slot queue at their "all" row (each
# run's first) instead of deadlocking on client rows. A group ends one run at a time: its
# rows have slot 0. Kept after retention deletes the tasks: reports read 90 days here.
run_report = sa.Table(
    "run_report",
    metadata,
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("slot", sa.SmallInteger(), nullable=False),
    sa.Column("hour_at", UTCDateTime(), nullable=False),
    sa.Column("success", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("fail", sa.BigInteger(), nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint("kind", "subject", "slot", "hour_at", name="pk_run_report"),
    # The clients' rows of a range (and retention, kind by kind).
    sa.Index("ix_run_report_kind_hour_at", "kind", "hour_at"),
    **MYSQL_UTF8MB4,
)

# Cluster-wide chores (supervision, retention) are leased like tasks: one holder at a time.
lease = sa.Table(
    "lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=True),
    sa.Column("until", UTCDateTime(), nullable=True),
    **MYSQL_UTF8MB4,
)

server_node = sa.Table(
    "server_node",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(128), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("is_alive", sa.Boolean(), nullable=False, server_default=sa.true()),
    # NULL while every loop of the node (claims, recorder, supervisor) makes progress;
    # otherwise which loop is stuck or failing, and why.
    sa.Column("unhealthy_reason", sa.String(512), nullable=True),
    **MYSQL_UTF8MB4,
)

# Event messages the recorder could not decode, validate or store: set aside with the
# reason and the raw body, so one bad message never blocks the others.
dead_letter = sa.Table(
    "dead_letter",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("body", LongText, nullable=False),
    sa.Index("ix_dead_letter_received_at", "received_at"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)


# One row per dispatch of one attempt (and one shard of a broadcast run): its own client,
# times, status and error, so a task shows every attempt; the task row holds the latest.
task_run = sa.Table(
    "task_run",
    metadata,
    sa.Column("task_id", sa.BigInteger(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("shard_index", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("task_group_id", sa.BigInteger(), nullable=False),
    sa.Column("client_id", sa.String(128), nullable=True),
    sa.Column("status", sa.SmallInteger(), nullable=False, server_default="1"),
    sa.Column("progress", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("dispatched_at", UTCDateTime(), nullable=True),
    sa.Column("run_at", UTCDateTime(), nullable=True),
    sa.Column("finish_at", UTCDateTime(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    # Broadcast shards in flight: the shard's last sign of life (its hung check), and
    # whether its failure may be retried (False: its job raised fss.Fail(retry=False)).
    sa.Column("reported_at", UTCDateTime(), nullable=True),
    sa.Column("retry", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.PrimaryKeyConstraint("task_id", "attempt", "shard_index", name="pk_task_run"),
    sa.Index("ix_task_run_task_group_id", "task_group_id"),
    # The supervisor's look at shards in flight (status 1 or 2) every sweep.
    sa.Index(
        "ix_task_run_in_flight", "status",
        postgresql_where=sa.text("status IN (1, 2)"), sqlite_where=sa.text("status IN (1, 2)"),
    ),
    **MYSQL_UTF8MB4,
)

# `fss group backfill`: the slots of a window, run one at a time between regular runs.
backfill = sa.Table(
    "backfill",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("task_group_id", sa.BigInteger(), nullable=False),
    sa.Column("from_at", UTCDateTime(), nullable=False),
    sa.Column("to_at", UTCDateTime(), nullable=False),
    # The next slot to run; NULL once every slot of the window ran.
    sa.Column("next_at", UTCDateTime(), nullable=True),
    sa.Column("slots_done", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("done_at", UTCDateTime(), nullable=True),
    sa.Index("ix_backfill_task_group_id", "task_group_id"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)


# One row: the identity of this installation, made by `fss db upgrade`. Everything the
# installation puts on a shared broker (fence keys, queues, orders, events) carries it.
installation = sa.Table(
    "installation",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # A random token the first scheduler writes both here and on the broker: a scheduler
    # whose broker does not hold it is on another broker and does not dispatch.
    sa.Column("broker_token", sa.String(64), nullable=True),
    **MYSQL_UTF8MB4,
)

# Web sessions live on the server, so a logout (or a password change) ends them for good:
# the cookie carries a random token; the row holds its SHA-256.
web_session = sa.Table(
    "web_session",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Index("ix_web_session_user_name", "user_name"),
    **MYSQL_UTF8MB4,
)

# Refused logins per key ("user:<name>" or "ip:<address>"): shared by every web replica,
# so throttling and lock-out hold behind a load balancer too.
login_failure = sa.Table(
    "login_failure",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_at", UTCDateTime(), nullable=False),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
    **MYSQL_UTF8MB4,
)


# Alerts (fss.domain.alerts): where they go (targets), what was raised (alert), the outbox
# of what to tell (alert_notice, written in the transaction that raised or resolved the
# alert), one delivery per notice and target, and every attempt of a delivery.
alert_target = sa.Table(
    "alert_target",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    # JSON of the kind's settings, secrets included (never shown: fss.domain.alert_targets).
    sa.Column("config", LongText, nullable=False),
    # Used for every group that names no targets of its own.
    sa.Column("is_default", sa.Boolean(), nullable=False, server_default=sa.true()),
    # JSON list of the rules this target is told about; NULL: all.
    sa.Column("rules", sa.Text(), nullable=True),
    sa.Column("rate_per_min", sa.Integer(), nullable=False, server_default="20"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("uq_alert_target_name", "name", unique=True),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)

alert = sa.Table(
    "alert",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(32), nullable=False),
    # What the alert is about: "group:12", "client:w1", "job:report", "node:n1", ...
    sa.Column("subject", sa.String(200), nullable=False),
    # "<rule>|<subject>" while open, NULL once resolved: the unique index keeps one open
    # alert per (rule, subject) on every backend (NULLs never collide).
    sa.Column("open_key", sa.String(240), nullable=True),
    sa.Column("state", sa.String(16), nullable=False, server_default="open"),
    sa.Column("task_group_id", sa.BigInteger(), nullable=True),
    sa.Column("task_id", sa.BigInteger(), nullable=True),
    sa.Column("client_id", sa.String(128), nullable=True),
    # The planned time of the run that raised it (run rules): when the group last owed a run.
    sa.Column("planned_at", UTCDateTime(), nullable=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("detail", LongText, nullable=True),
    # How often it was raised while open (repeats within the silence window count up).
    sa.Column("count", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("last_at", UTCDateTime(), nullable=False),
    sa.Column("notified_at", UTCDateTime(), nullable=True),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    sa.Column("resolved_note", sa.String(300), nullable=True),
    sa.Column("acked_by", sa.String(64), nullable=True),
    sa.Column("acked_at", UTCDateTime(), nullable=True),
    sa.Index("uq_alert_open_key", "open_key", unique=True),
    # A resolved alert raised again soon is reopened: found by its rule and subject.
    sa.Index("ix_alert_rule_subject", "rule", "subject"),
    sa.Index("ix_alert_opened_at", "opened_at"),
    sa.Index("ix_alert_task_group_id", "task_group_id"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)

alert_notice = sa.Table(
    "alert_notice",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.BigInteger(), nullable=False),
    # firing | reminder | resolved
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # NULL until the sender turned it into deliveries (one per target).
    sa.Column("expanded_at", UTCDateTime(), nullable=True),
    sa.Index(
        "ix_alert_notice_pending", "expanded_at",
        postgresql_where=sa.text("expanded_at IS NULL"),
        sqlite_where=sa.text("expanded_at IS NULL"),
    ),
    sa.Index("ix_alert_notice_alert_id", "alert_id"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)

alert_delivery = sa.Table(
    "alert_delivery",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # NULL for a storm summary, which stands for many notices (`folded_into` on theirs).
    sa.Column("notice_id", sa.BigInteger(), nullable=True),
    sa.Column("target_id", sa.BigInteger(), nullable=False),
    sa.Column("target_name", sa.String(64), nullable=False),
    # pending | sent | failed (attempts used up) | silenced | folded (into a summary)
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("folded_into", sa.BigInteger(), nullable=True),
    # A storm summary's message (JSON), as it was composed when the storm was folded.
    sa.Column("summary", LongText, nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    # The same for every attempt, by every sender: receivers drop a repeat by it.
    sa.Column("idempotency_key", sa.String(100), nullable=False),
    sa.Index("ix_alert_delivery_state_next_at", "state", "next_at"),
    sa.Index("ix_alert_delivery_notice_id", "notice_id"),
    sa.Index("ix_alert_delivery_target_sent", "target_id", "sent_at"),
    sa.Index("uq_alert_delivery_notice_target", "notice_id", "target_id", unique=True),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)

alert_attempt = sa.Table(
    "alert_attempt",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.BigInteger(), nullable=False),
    sa.Column("target_name", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    # sent | failed
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("answer", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration_ms", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("node", sa.String(128), nullable=True),
    sa.Index("ix_alert_attempt_delivery_id", "delivery_id"),
    sa.Index("ix_alert_attempt_at", "at"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)

# An admin's "quiet, please" for one group's alerts until a time: they are still raised and
# shown, their notices not sent.
alert_silence = sa.Table(
    "alert_silence",
    metadata,
    sa.Column("task_group_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("until", UTCDateTime(), nullable=False),
    sa.Column("by_user", sa.String(64), nullable=False),
    sa.Column("note", sa.String(300), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    **MYSQL_UTF8MB4,
)


# The audit trail (fss.store.audit): one row per change an operator made, written in the
# change's own transaction. Kept FSS_AUDIT_RETENTION_DAYS (the supervisor's retention).
audit_event = sa.Table(
    "audit_event",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    # Who: a web user's name, an API token's name (FSS_WEB_TOKENS), the OS user of the CLI.
    sa.Column("actor", sa.String(128), nullable=False),
    # How the actor proved who it is: session | basic | token | noauth (web), cli.
    sa.Column("actor_kind", sa.String(16), nullable=False),
    # From where: the web client's IP address, the CLI's host.
    sa.Column("source", sa.String(256), nullable=True),
    # group.create, group.edit, client.kick, login.refused, ... (fss.store.audit.ACTIONS)
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("task_group_id", sa.BigInteger(), nullable=True),
    # What the action was on when not (only) a group: "client:w1", "task:42", "alert:7".
    sa.Column("subject", sa.String(200), nullable=True),
    # JSON {field: [before, after]}, secrets masked; NULL when nothing but the action is told.
    sa.Column("changes", LongText, nullable=True),
    # JSON of what else the action carried (run data, a note, the groups of an apply).
    sa.Column("detail", LongText, nullable=True),
    sa.Index("ix_audit_event_at", "at"),
    sa.Index("ix_audit_event_task_group_id_id", "task_group_id", "id"),
    sa.Index("ix_audit_event_actor_id", "actor", "id"),
    sqlite_autoincrement=True,
    **MYSQL_UTF8MB4,
)


def insert_waiting_task(
    conn: Connection, group_id: int, job_name: str, start_at: datetime, now: datetime
) -> int:
    """The group's next run, status None; the unique open_group_id keeps it the only one."""
    return inserted_id(
        conn.execute(task.insert().values(waiting_task_values(group_id, job_name, start_at, now)))
    )


def waiting_task_values(
    group_id: int, job_name: str, start_at: datetime, now: datetime
) -> dict[str, Any]:
    """The columns of a group's waiting task (one row, or one of many in a bulk INSERT)."""
    return {
        "task_group_id": group_id,
        "job_name": job_name,
        "start_at": start_at,
        "status": TaskStatus.NONE,
        "open_group_id": group_id,
        "create_at": now,
    }


def inserted_id(result: CursorResult[Any]) -> int:
    """The new primary key of a single-row INSERT."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the INSERT returned no primary key")
    return int(key[0])


def version_after_data(new_data: Any) -> Any:
    """The group's version once a job's data is written: one more when the data changed,
    so an edit begun on the old data (the web form, the API with its version) is refused
    as stale instead of overwriting what the job saved; unchanged data (NULL: none sent)
    leaves it as it was."""
    return sa.case(
        (sa.or_(new_data.is_(None), new_data == task_group.c.data), task_group.c.version),
        else_=task_group.c.version + 1,
    )
