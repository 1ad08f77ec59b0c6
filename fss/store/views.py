"""Read models of the web UI and its JSON API: overview, group table, task search, clients.

Every query here is bounded for a store of 10,000 groups and 1,000,000 tasks: counts and
per-minute buckets are aggregated in SQL over indexed ranges (migration 0005 adds the
indexes), nothing counts all the Success rows (see tasks_by_status), task lists are
keyset-paginated, group lists are pages of at most MAX_GROUP_PAGE, and per-group "last
result" lookups read one index entry per group. Plain SQLAlchemy Core, the same on
PostgreSQL, MySQL and SQLite.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from fss.domain.schedule_words import schedule_words
from fss.domain.status import FINISHED, TaskStatus
from fss.errors import GroupNotFound, InvalidField, TaskNotFound
from fss.store.clients import list_clients
from fss.store.nodes import list_nodes
from fss.store.rows import ClientRow, GroupRow, LogRow, NodeRow, TaskRow
from fss.store.tables import UTCDateTime, client, run_log, task, task_group
from fss.store.tasks import run_data_of

# The cluster lease the supervisor holds (fss.scheduler.supervisor.LEASE_NAME; the web layer
# may not import the scheduler, so the name is repeated here and checked by a test).
SUPERVISOR_LEASE = "supervisor"
FINISHED_CODES = tuple(int(s) for s in sorted(FINISHED))
RUNNING_CODES = (int(TaskStatus.SCHEDULER), int(TaskStatus.WORKING))
ALL_STATUS_CODES = tuple(int(s) for s in TaskStatus)
CHART_MINUTES = 60
LATEST_FAILURES = 10
MAX_TASK_PAGE = 500
DEFAULT_GROUP_PAGE = 100
# 500 groups with their last results: ~70 ms; 1000: 130-260 ms, most of it in to_json.
MAX_GROUP_PAGE = 500
GROUP_SORTS = ("id", "caption", "job_name", "next_at", "run_count", "run_speed_avg", "last_run_at")


def first_line(text: str | None) -> str | None:
    if text is None:
        return None
    stripped = text.strip()
    if not stripped:
        return ""
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    # A Python traceback: the exception is its last line, not "Traceback (...)".
    return lines[-1] if lines[0].startswith("Traceback (most recent call last)") else lines[0]


# ---- overview ------------------------------------------------------------------------------


def tasks_by_status(conn: Connection) -> dict[str, int]:
    """Every status named, zeros included. None, Scheduler, Working and Fail are the rows the
    store holds now; Success is the number of successful runs ever recorded (the sum of the
    groups' run_count), not the Success rows held.

    Why: counting the Success rows is a scan of nearly every task (1,000,000 rows: 60-130 ms
    even as a parallel index-only scan, and the number never shrinks below
    keep_success_per_group x groups), while the other statuses are a few thousand rows
    reached through ix_task_status_start_at (unfinished: at most one waiting task per group
    plus the running ones; Fail: bounded by fail_max_age_s), and run_count is one small scan
    of task_group. Retention prunes Success rows but never lowers run_count, so the figure
    only grows (deleting a group removes its runs)."""
    counts = dict.fromkeys((s.label for s in TaskStatus), 0)
    held = (int(s) for s in TaskStatus if s != TaskStatus.SUCCESS)
    rows = conn.execute(
        sa.select(task.c.status, sa.func.count())
        .where(task.c.status.in_(tuple(held)))
        .group_by(task.c.status)
    )
    for status, n in rows:
        counts[TaskStatus(status).label] = int(n)
    successes = conn.execute(sa.select(sa.func.sum(task_group.c.run_count))).scalar_one()
    counts[TaskStatus.SUCCESS.label] = int(successes or 0)
    return counts


def _minute_key(conn: Connection, column: Any) -> ColumnElement[Any]:
    """'YYYY-MM-DD HH:MM' of a stored (naive UTC) time, in the backend's own dialect."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return sa.func.to_char(column, "YYYY-MM-DD HH24:MI")
    if dialect == "mysql":
        return sa.func.date_format(column, "%Y-%m-%d %H:%i")
    return sa.func.strftime("%Y-%m-%d %H:%M", column)


def runs_per_minute(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Successes and failures finished in each of the last 60 minutes, oldest first (the
    current minute last). Reads the (status, finish_at) index over one hour only."""
    current = now.replace(second=0, microsecond=0)
    first = current - timedelta(minutes=CHART_MINUTES - 1)
    minute = _minute_key(conn, task.c.finish_at).label("minute")
    rows = conn.execute(
        sa.select(minute, task.c.status, sa.func.count())
        .where(task.c.status.in_(FINISHED_CODES), task.c.finish_at >= first)
        .group_by(minute, task.c.status)
    )
    buckets: dict[str, dict[str, int]] = {}
    for key, status, n in rows:
        counts = buckets.setdefault(str(key), {"success": 0, "fail": 0})
        counts["success" if status == TaskStatus.SUCCESS else "fail"] += int(n)
    series = []
    for step in range(CHART_MINUTES):
        moment = first + timedelta(minutes=step)
        counts = buckets.get(moment.strftime("%Y-%m-%d %H:%M"), {"success": 0, "fail": 0})
        series.append({"minute": moment.isoformat(), **counts})
    return series


def latest_failures(conn: Connection, limit: int = LATEST_FAILURES) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            task.c.id, task.c.task_group_id, task.c.job_name, task.c.finish_at, task.c.error,
            task_group.c.caption,
        )
        .select_from(task.outerjoin(task_group, task_group.c.id == task.c.task_group_id))
        .where(task.c.status == TaskStatus.FAIL)
        .order_by(task.c.finish_at.desc(), task.c.id.desc())
        .limit(limit)
    )
    return [
        {
            "task_id": r.id,
            "group_id": r.task_group_id,
            "caption": r.caption,
            "job_name": r.job_name,
            "finish_at": r.finish_at.isoformat() if r.finish_at else None,
            "error": first_line(r.error),
        }
        for r in rows
    ]


def count_live_clients(conn: Connection, alive_since: datetime) -> int:
    query = sa.select(sa.func.count()).select_from(client)
    return int(conn.execute(query.where(client.c.heartbeat_at >= alive_since)).scalar_one())


# ---- nodes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    node: NodeRow
    alive: bool
    claimed: int

    def to_json(self, now: datetime) -> dict[str, Any]:
        body = self.node.to_json()
        body["holds_supervisor"] = body.pop("holds_lease")
        body["alive"] = self.alive
        body["heartbeat_age_s"] = self.node.heartbeat_age_s(now)
        body["claimed"] = self.claimed
        return body


def node_views(conn: Connection, now: datetime, alive_since: datetime) -> list[NodeView]:
    """Every scheduler node with its liveness and how many waiting tasks it holds claimed."""
    claimed: dict[str, int] = {
        holder: int(n)
        for holder, n in conn.execute(
            sa.select(task.c.claimed_by, sa.func.count())
            .where(
                task.c.status == TaskStatus.NONE,
                task.c.claimed_by.is_not(None),
                task.c.claimed_until >= now,
            )
            .group_by(task.c.claimed_by)
        )
    }
    return [
        NodeView(n, n.is_alive and n.heartbeat_at >= alive_since, int(claimed.get(n.id, 0)))
        for n in list_nodes(conn, SUPERVISOR_LEASE, now)
    ]


# ---- clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientView:
    client: ClientRow
    alive: bool
    running_task_ids: list[int] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.client.kicked_at is not None:
            return "kicked"
        return "ready" if self.client.accepting else "draining"

    def to_json(self, now: datetime, queue_depth: int | None) -> dict[str, Any]:
        body = self.client.to_json()
        body.update(
            state=self.state,
            running=len(self.running_task_ids),
            running_task_ids=self.running_task_ids,
            heartbeat_age_s=round((now - self.client.heartbeat_at).total_seconds(), 1),
            queue_depth=queue_depth,
            alive=self.alive,
        )
        return body


def client_views(conn: Connection, alive_since: datetime) -> list[ClientView]:
    """Every registered client with the tasks dispatched to it or running on it now."""
    running: dict[str, list[int]] = {}
    rows = conn.execute(
        sa.select(task.c.client_id, task.c.id)
        .where(task.c.status.in_(RUNNING_CODES), task.c.client_id.is_not(None))
        .order_by(task.c.id)
    )
    for client_id, task_id in rows:
        running.setdefault(client_id, []).append(int(task_id))
    return [
        ClientView(c, c.heartbeat_at >= alive_since, running.get(c.id, []))
        for c in list_clients(conn)
    ]


# ---- groups --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFilter:
    q: str | None = None
    job_name: str | None = None
    enabled: bool | None = None
    sort: str = "id"
    descending: bool = False
    limit: int = DEFAULT_GROUP_PAGE
    offset: int = 0

    def checked(self) -> GroupFilter:
        if self.sort not in GROUP_SORTS:
            raise InvalidField("sort", f"{self.sort!r} is not one of {', '.join(GROUP_SORTS)}")
        if not 1 <= self.limit <= MAX_GROUP_PAGE:
            raise InvalidField("limit", f"must be 1..{MAX_GROUP_PAGE}")
        if self.offset < 0:
            raise InvalidField("offset", "must be >= 0")
        return self


@dataclass(frozen=True)
class GroupView:
    group: GroupRow
    last_status: TaskStatus | None
    last_error: str | None
    # Failed runs still held (retention deletes old ones); run_count counts successes ever.
    fail_count: int = 0

    def to_json(self) -> dict[str, Any]:
        body = self.group.to_json()
        body["schedule_text"] = schedule_words(self.group.schedule)
        body["last_status"] = self.last_status.label if self.last_status is not None else None
        body["last_error"] = first_line(self.last_error)
        body["fail_count"] = self.fail_count
        return body


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _group_conditions(wanted: GroupFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if wanted.q:
        pattern = _like(wanted.q.lower())
        # Key, caption, job and the data's JSON text (10,000 groups: one scan of task_group).
        conditions.append(
            sa.or_(
                *(sa.func.lower(column).like(pattern, escape="\\") for column in (
                    task_group.c.caption, task_group.c.job_name, task_group.c.key,
                    task_group.c.data,
                ))
            )
        )
    if wanted.job_name:
        conditions.append(task_group.c.job_name == wanted.job_name)
    if wanted.enabled is not None:
        conditions.append(task_group.c.is_enable == sa.true() if wanted.enabled else
                          task_group.c.is_enable == sa.false())
    return conditions


def search_groups(conn: Connection, wanted: GroupFilter) -> tuple[list[GroupView], int]:
    """A page of groups matching the filter, sorted; and how many match in all."""
    wanted = wanted.checked()
    conditions = _group_conditions(wanted)
    total = int(
        conn.execute(sa.select(sa.func.count()).select_from(task_group).where(*conditions))
        .scalar_one()
    )
    column = task_group.c[wanted.sort]
    order = [column.desc() if wanted.descending else column.asc()]
    if wanted.sort != "id":
        order.append(task_group.c.id.desc() if wanted.descending else task_group.c.id.asc())
    rows = conn.execute(
        sa.select(task_group).where(*conditions).order_by(*order)
        .limit(wanted.limit).offset(wanted.offset)
    ).all()
    groups = [GroupRow.from_row(r) for r in rows]
    return with_last_results(conn, groups), total


def with_last_results(conn: Connection, groups: Sequence[GroupRow]) -> list[GroupView]:
    """Each group with the status and error of its newest finished task, and its failed
    runs still held."""
    last = _last_finished(conn, [g.id for g in groups])
    fails = _fail_counts(conn, [g.id for g in groups])
    views = []
    for g in groups:
        status, error = last.get(g.id, (None, None))
        views.append(GroupView(g, status, error, fails.get(g.id, 0)))
    return views


def _fail_counts(conn: Connection, group_ids: Sequence[int]) -> dict[int, int]:
    """Failed tasks held per group: one grouped count on ix_task_group_status per 500 groups."""
    found: dict[int, int] = {}
    for start in range(0, len(group_ids), 500):
        ids = list(group_ids[start : start + 500])
        rows = conn.execute(
            sa.select(task.c.task_group_id, sa.func.count())
            .where(task.c.task_group_id.in_(ids), task.c.status == int(TaskStatus.FAIL))
            .group_by(task.c.task_group_id)
        )
        found.update((int(group_id), int(count)) for group_id, count in rows)
    return found


def _last_finished(
    conn: Connection, group_ids: Sequence[int]
) -> dict[int, tuple[TaskStatus, str | None]]:
    """Newest finished task per group: one (task_group_id, id) index probe per group."""
    inner = task.alias("newest")
    newest = (
        sa.select(inner.c.id)
        .where(inner.c.task_group_id == task_group.c.id, inner.c.status.in_(FINISHED_CODES))
        .order_by(inner.c.id.desc())
        .limit(1)
        .correlate(task_group)
        .scalar_subquery()
    )
    found: dict[int, tuple[TaskStatus, str | None]] = {}
    for start in range(0, len(group_ids), 500):
        ids = list(group_ids[start : start + 500])
        task_ids = [
            int(task_id)
            for (task_id,) in conn.execute(sa.select(newest).where(task_group.c.id.in_(ids)))
            if task_id is not None
        ]
        if not task_ids:
            continue
        rows = conn.execute(
            sa.select(task.c.task_group_id, task.c.status, task.c.error).where(
                task.c.id.in_(task_ids)
            )
        )
        for group_id, status, error in rows:
            found[int(group_id)] = (TaskStatus(status), error)
    return found


def group_view(conn: Connection, group_id: int) -> GroupView:
    row = conn.execute(sa.select(task_group).where(task_group.c.id == group_id)).first()
    if row is None:
        raise GroupNotFound(group_id)
    return with_last_results(conn, [GroupRow.from_row(row)])[0]


def group_runs(conn: Connection, group_id: int, limit: int) -> list[dict[str, Any]]:
    """The group's newest finished runs, oldest first (a duration chart reads left to right)."""
    if conn.execute(sa.select(task_group.c.id).where(task_group.c.id == group_id)).first() is None:
        raise GroupNotFound(group_id)
    rows = conn.execute(
        sa.select(
            task.c.id, task.c.status, task.c.start_at, task.c.run_at, task.c.finish_at,
            task.c.run_speed, task.c.attempt,
        )
        .where(task.c.task_group_id == group_id, task.c.status.in_(FINISHED_CODES))
        .order_by(task.c.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": r.id,
            "status": TaskStatus(r.status).label,
            "start_at": r.start_at.isoformat(),
            "begin_at": r.run_at.isoformat() if r.run_at else None,
            "finish_at": r.finish_at.isoformat() if r.finish_at else None,
            "run_speed": r.run_speed,
            "attempt": r.attempt,
        }
        for r in reversed(rows)
    ]


# ---- tasks ---------------------------------------------------------------------------------

CURSOR_PREFIX = "t1:"


def encode_cursor(task_id: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{task_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The task id a cursor continues below; InvalidField("cursor") for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith(CURSOR_PREFIX):
            raise ValueError(text)
        task_id = int(text[len(CURSOR_PREFIX):])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidField("cursor", "not a cursor this API handed out") from None
    if task_id < 0:
        raise InvalidField("cursor", "not a cursor this API handed out")
    return task_id


@dataclass(frozen=True)
class TaskFilter:
    status: TaskStatus | None = None
    group_id: int | None = None
    job_name: str | None = None
    client_id: str | None = None
    # Planned start time (start_at) range: since <= start_at < until.
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    # Only tasks with a smaller id (keyset pagination, newest first).
    before_id: int | None = None
    # Only failed tasks whose error contains this text (any case).
    error: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        if not 1 <= self.limit <= MAX_TASK_PAGE:
            raise InvalidField("limit", f"must be 1..{MAX_TASK_PAGE}")
        conditions: list[ColumnElement[bool]] = []
        if self.status is not None:
            conditions.append(task.c.status == self.status)
        if self.group_id is not None:
            conditions.append(task.c.task_group_id == self.group_id)
        if self.job_name is not None:
            conditions.append(task.c.job_name == self.job_name)
        if self.client_id is not None:
            conditions.append(task.c.client_id == self.client_id)
        if self.status is None and (self.since is not None or self.until is not None):
            # Always true (status is NOT NULL), but it lets the time range be an index range
            # of ix_task_status_start_at per status instead of a scan of the whole index.
            conditions.append(task.c.status.in_(ALL_STATUS_CODES))
        if self.since is not None:
            conditions.append(task.c.start_at >= sa.literal(self.since, UTCDateTime()))
        if self.until is not None:
            conditions.append(task.c.start_at < sa.literal(self.until, UTCDateTime()))
        if self.before_id is not None:
            conditions.append(task.c.id < self.before_id)
        if self.error:
            # Errors are kept on failed runs: the Fail rows (bounded by fail_max_age_s), read
            # newest first along ix_task_fail_id (status, id; migration 0013).
            if self.status is None:
                conditions.append(task.c.status == TaskStatus.FAIL)
            conditions.append(text_position(sa.func.lower(task.c.error), self.error.lower()) > 0)
        return conditions

    def newest_first(self) -> ColumnElement[Any]:
        """The order of a page. With two or more of group, job and client, `id + 0`: the
        planner then combines their indexes ((job_name, id), (client_id, ...), (task_group_id,
        id)) and sorts what matches, instead of walking the primary key backwards and
        filtering, which it prefers when it takes the filters to be independent, and which
        reads the whole table when the combination matches nothing (480 ms at 1,000,000
        tasks; 13-60 ms this way)."""
        narrowing = [self.group_id, self.job_name, self.client_id]
        if sum(value is not None for value in narrowing) >= 2:
            return (task.c.id + 0).desc()
        return task.c.id.desc()


class text_position(FunctionElement[int]):
    """text_position(text, part): where `part` starts in `text` (from 1), 0 when it is not
    in it: strpos() on PostgreSQL, instr() on MySQL/MariaDB and SQLite.

    The runs-by-error filter is this rather than `LIKE '%part%'`: PostgreSQL guesses a LIKE
    pattern's share of rows from its length, and for a long text (taken as rare) it read and
    sorted every failed run for a page that the newest hundred already filled (290-590 ms
    at 30,000 failed runs, load 10-15), or for a short one walked the primary key through every
    task when the text was in none (280-510 ms at 1,000,000 tasks). A comparison with a
    function's result gets its default share (a third), so the planner walks the failed
    runs newest first (ix_task_fail_id) and stops at the page: 0.4 ms when recent runs hold
    the text, every failed run held (bounded by fail_max_age_s) when none does."""

    type = sa.Integer()
    inherit_cache = True
    name = "text_position"


@compiles(text_position)
def _instr(element: text_position, compiler: Any, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(text_position, "postgresql")
def _strpos(element: text_position, compiler: Any, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


def search_tasks(conn: Connection, wanted: TaskFilter) -> tuple[list[dict[str, Any]], str | None]:
    """A page of tasks, newest first, with their group's caption and time_zone (in the same
    join: the page shows times in the group's zone); and the cursor of the next page (None on
    the last one)."""
    rows = conn.execute(
        sa.select(task, task_group.c.caption, task_group.c.time_zone)
        .select_from(task.outerjoin(task_group, task_group.c.id == task.c.task_group_id))
        .where(*wanted.conditions())
        .order_by(wanted.newest_first())
        .limit(wanted.limit + 1)
    ).all()
    page = rows[: wanted.limit]
    items = [{**TaskRow.from_row(r).to_json(), "caption": r.caption, "time_zone": r.time_zone}
             for r in page]
    more = len(rows) > wanted.limit
    return items, encode_cursor(page[-1].id) if more else None


def task_detail(conn: Connection, task_id: int) -> dict[str, Any]:
    """The task with its group's caption, the data given to this run only (run_data, None
    when it had the group's data), how many log lines it has, and its timeline."""
    row = conn.execute(
        sa.select(task, task_group.c.caption, task_group.c.time_zone)
        .select_from(task.outerjoin(task_group, task_group.c.id == task.c.task_group_id))
        .where(task.c.id == task_id)
    ).first()
    if row is None:
        raise TaskNotFound(task_id)
    logs_count = conn.execute(
        sa.select(sa.func.count()).select_from(run_log).where(run_log.c.task_id == task_id)
    ).scalar_one()
    body = TaskRow.from_row(row).to_json()
    moments = [
        ("created", row.create_at),
        ("dispatched", row.dispatched_at),
        ("started", row.run_at),
        ("finished", row.finish_at),
    ]
    body.update(
        caption=row.caption,
        time_zone=row.time_zone,
        run_data=run_data_of(row.run_data),
        logs_count=int(logs_count),
        timeline=[{"event": e, "at": at.isoformat()} for e, at in moments if at is not None],
    )
    return body


def task_state(conn: Connection, task_id: int) -> TaskRow | None:
    row = conn.execute(sa.select(task).where(task.c.id == task_id)).first()
    return TaskRow.from_row(row) if row is not None else None


def log_page(
    conn: Connection, task_id: int, after_id: int = 0, min_level: int = 0, limit: int = 500
) -> list[LogRow]:
    """Log lines of a task with an id above `after_id` at `min_level` or above, by id: the
    live tail finds new lines by id (and sorts what it sends by `log_key`); readers that page
    a whole log use log_lines, in the job's order."""
    rows = conn.execute(
        sa.select(run_log)
        .where(run_log.c.task_id == task_id, run_log.c.id > after_id,
               run_log.c.log_level >= min_level)
        .order_by(run_log.c.id)
        .limit(limit)
    )
    return [LogRow.from_row(r) for r in rows]


# The job's own order: seq (its line number); lines recorded before seq was kept (NULL)
# come first, by id, which is the order they were recorded in.
LOG_ORDER = (sa.case((run_log.c.seq.is_(None), 0), else_=1), run_log.c.seq, run_log.c.id)
LOG_CURSOR_PREFIX = "l1:"


def log_key(row: LogRow) -> tuple[int, int, int]:
    """LOG_ORDER in Python."""
    return (0, 0, row.id) if row.seq is None else (1, row.seq, row.id)


@dataclass(frozen=True)
class LogCursor:
    """Where a page of log lines ended: the last line's (seq, id)."""

    seq: int | None
    id: int

    def encode(self) -> str:
        seq = "" if self.seq is None else str(self.seq)
        text = f"{LOG_CURSOR_PREFIX}{seq}:{self.id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str, field_name: str = "cursor") -> LogCursor:
        """InvalidField naming `field_name` for anything this API did not hand out."""
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            if not text.startswith(LOG_CURSOR_PREFIX):
                raise ValueError(text)
            seq, _, line_id = text[len(LOG_CURSOR_PREFIX):].partition(":")
            found = cls(int(seq) if seq else None, int(line_id))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidField(field_name, "not a log cursor this API handed out") from None
        if found.id < 0 or (found.seq is not None and found.seq < 0):
            raise InvalidField(field_name, "not a log cursor this API handed out")
        return found

    def after(self) -> ColumnElement[bool]:
        """The lines after this one in LOG_ORDER."""
        seq, line_id = run_log.c.seq, run_log.c.id
        if self.seq is None:
            return sa.or_(seq.is_not(None), sa.and_(seq.is_(None), line_id > self.id))
        return sa.and_(
            seq.is_not(None), sa.or_(seq > self.seq, sa.and_(seq == self.seq, line_id > self.id))
        )


def log_lines(
    conn: Connection,
    task_id: int,
    after: LogCursor | None = None,
    min_level: int = 0,
    limit: int = 500,
) -> tuple[list[LogRow], LogCursor | None]:
    """One page of a task's log lines in the job's order, and the cursor of the next page
    (None on the last one)."""
    conditions = [run_log.c.task_id == task_id, run_log.c.log_level >= min_level]
    if after is not None:
        conditions.append(after.after())
    rows = [
        LogRow.from_row(r)
        for r in conn.execute(
            sa.select(run_log).where(*conditions).order_by(*LOG_ORDER).limit(limit + 1)
        )
    ]
    page = rows[:limit]
    more = len(rows) > limit
    return page, LogCursor(page[-1].seq, page[-1].id) if more else None


def require_task(conn: Connection, task_id: int) -> None:
    if conn.execute(sa.select(task.c.id).where(task.c.id == task_id)).first() is None:
        raise TaskNotFound(task_id)
