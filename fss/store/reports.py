"""Run reports: runs ended per day (Success, Fail) overall, per group and per client.

Read from `run_report`, the run ends a trigger on `task` counts per UTC hour (migration
0012), so a report covers 90 days whatever retention deleted from `task`, and costs at most
24 rows per day and subject. A day is a calendar day of the zone the reader picks: each hour
counts on the local day its start falls on, exact for every zone whose offset from UTC is
whole hours (UTC, Asia/Shanghai, Europe/Berlin with its summer time); for the few zones off
by 30 or 45 minutes (Asia/Kolkata) runs in the half hour around midnight may count on the
neighbouring day.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.broadcast import BROADCAST_CLIENT
from fss.domain.status import TaskStatus
from fss.errors import InvalidField
from fss.store.tables import client, client_departed, run_report, task

RANGES = (7, 30, 90)
MAX_DAYS = 90
SLOTS = range(4)  # the trigger's slots (0012): the connection id modulo 4
IN_FLIGHT = (int(TaskStatus.SCHEDULER), int(TaskStatus.WORKING))
MAX_ZONE = 64


def parse_zone(name: str, field_name: str = "tz") -> ZoneInfo:
    """An IANA zone name ("UTC", "Asia/Shanghai"); anything else is an InvalidField."""
    text = name.strip()
    if not text or len(text) > MAX_ZONE or text.startswith(("/", ".")) or ".." in text:
        raise InvalidField(field_name, f"{name!r} is not a time zone name like Asia/Shanghai")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidField(field_name, f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class Window:
    """The last `days` calendar days of `zone` up to today, as a half-open UTC range."""

    zone: ZoneInfo
    first_day: date
    last_day: date

    @classmethod
    def ending_today(cls, now: datetime, days: int, zone: ZoneInfo) -> Window:
        if not 1 <= days <= MAX_DAYS:
            raise InvalidField("days", f"must be 1..{MAX_DAYS}, got {days}")
        today = now.astimezone(zone).date()
        return cls(zone, today - timedelta(days=days - 1), today)

    @property
    def days(self) -> list[date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=i) for i in range(count)]

    @property
    def start(self) -> datetime:
        """The UTC hour the first local day starts in."""
        return _utc_hour(datetime.combine(self.first_day, time(0), self.zone))

    @property
    def end(self) -> datetime:
        """The UTC hour after the one the last local day ends in."""
        after = datetime.combine(self.last_day + timedelta(days=1), time(0), self.zone)
        hour = _utc_hour(after)
        return hour if hour == after else hour + timedelta(hours=1)

    def day_of(self, hour_at: datetime) -> date:
        return hour_at.astimezone(self.zone).date()


def _utc_hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Counts:
    success: int = 0
    fail: int = 0

    @property
    def total(self) -> int:
        return self.success + self.fail

    @property
    def success_rate(self) -> float | None:
        """Successes per ended run, 0..1; None without runs."""
        return round(self.success / self.total, 4) if self.total else None

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.success + other.success, self.fail + other.fail)

    def to_json(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "fail": self.fail,
            "total": self.total,
            "success_rate": self.success_rate,
        }


@dataclass(frozen=True)
class RunReport:
    window: Window
    per_day: dict[date, Counts]
    running: int
    group_id: int | None = None

    @property
    def totals(self) -> Counts:
        return sum(self.per_day.values(), Counts())

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "tz": self.window.zone.key,
            "first_day": self.window.first_day.isoformat(),
            "last_day": self.window.last_day.isoformat(),
            "from": self.window.start.isoformat(),
            "until": self.window.end.isoformat(),
            "days": [
                {"day": day.isoformat(), **self.per_day.get(day, Counts()).to_json()}
                for day in self.window.days
            ],
            "totals": self.totals.to_json(),
            "running": self.running,
        }


def run_counts(conn: Connection, window: Window, group_id: int | None = None) -> RunReport:
    """Runs ended per local day of the window, overall or of one group, and how many runs
    are in flight now (dispatched or Working)."""
    in_flight: sa.ColumnElement[bool]
    if group_id is None:
        scope = [run_report.c.kind == "all", run_report.c.subject == "",
                 run_report.c.slot.in_(list(SLOTS))]
        in_flight = task.c.status.in_(IN_FLIGHT)
    else:
        scope = [run_report.c.kind == "group", run_report.c.subject == str(group_id),
                 run_report.c.slot == 0]
        in_flight = sa.and_(task.c.task_group_id == group_id, task.c.status.in_(IN_FLIGHT))
    rows = conn.execute(
        sa.select(
            run_report.c.hour_at,
            sa.func.sum(run_report.c.success),
            sa.func.sum(run_report.c.fail),
        )
        .where(*scope, run_report.c.hour_at >= window.start, run_report.c.hour_at < window.end)
        .group_by(run_report.c.hour_at)
    )
    per_day = _by_day(window, ((r[0], Counts(int(r[1]), int(r[2]))) for r in rows))
    running = conn.execute(sa.select(sa.func.count()).select_from(task).where(in_flight))
    return RunReport(window, per_day, int(running.scalar_one()), group_id)


def _by_day(window: Window, hours: Iterable[tuple[datetime, Counts]]) -> dict[date, Counts]:
    per_day: dict[date, Counts] = {}
    for hour_at, counts in hours:
        day = window.day_of(hour_at)
        if window.first_day <= day <= window.last_day:
            per_day[day] = per_day.get(day, Counts()) + counts
    return per_day


# ---- clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientReport:
    """One client's runs over the window. state: online (heartbeat within the liveness
    window), silent (registered, heartbeat late: the supervisor is about to drop it),
    offline (left within FSS_CLIENT_OFFLINE_KEEP_S)."""

    id: str
    state: str
    counts: Counts
    running: int
    host: str | None = None
    ip: str | None = None
    heartbeat_at: datetime | None = None
    left_at: datetime | None = None
    left_reason: str | None = None
    job_names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "host": self.host,
            "ip": self.ip,
            "job_names": list(self.job_names),
            "processed": self.counts.total,
            "success": self.counts.success,
            "failed": self.counts.fail,
            "success_rate": self.counts.success_rate,
            "running": self.running,
            "heartbeat_at": _iso(self.heartbeat_at),
            "left_at": _iso(self.left_at),
            "left_reason": self.left_reason,
        }


@dataclass(frozen=True)
class ClientsReport:
    window: Window
    clients: list[ClientReport]
    # Runs of clients neither registered nor departed recently (left before the offline
    # window): one line, so the clients add up to every run with a client.
    earlier: Counts = field(default_factory=Counts)
    earlier_clients: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "tz": self.window.zone.key,
            "first_day": self.window.first_day.isoformat(),
            "last_day": self.window.last_day.isoformat(),
            "items": [c.to_json() for c in self.clients],
            "earlier": {
                "clients": self.earlier_clients,
                "processed": self.earlier.total,
                "success": self.earlier.success,
                "failed": self.earlier.fail,
            },
        }


def client_counts(
    conn: Connection, window: Window, alive_since: datetime, offline_since: datetime
) -> ClientsReport:
    """Every registered client and every one that left since `offline_since`, with the runs
    each ended over the window and the runs it holds now."""
    counts = _client_run_counts(conn, window)
    running = {
        str(r[0]): int(r[1])
        for r in conn.execute(
            sa.select(task.c.client_id, sa.func.count())
            .where(task.c.status.in_(IN_FLIGHT), task.c.client_id.is_not(None))
            .group_by(task.c.client_id)
        )
    }
    items: dict[str, ClientReport] = {}
    for row in conn.execute(sa.select(client).order_by(client.c.id)):
        state = "online" if row.heartbeat_at >= alive_since else "silent"
        items[row.id] = ClientReport(
            row.id, state, counts.get(row.id, Counts()), running.get(row.id, 0),
            row.host, row.ip, row.heartbeat_at, job_names=_job_names(row.job_names),
        )
    departed = conn.execute(
        sa.select(client_departed)
        .where(client_departed.c.left_at >= offline_since)
        .order_by(client_departed.c.id)
    )
    for row in departed:
        if row.id in items:  # registered again
            continue
        items[row.id] = ClientReport(
            row.id, "offline", counts.get(row.id, Counts()), running.get(row.id, 0),
            row.host, row.ip, row.heartbeat_at, row.left_at, row.reason,
            _job_names(row.job_names),
        )
    earlier = [c for cid, c in counts.items() if cid not in items and cid != BROADCAST_CLIENT]
    ordered = sorted(items.values(), key=lambda c: (c.state != "online", c.id))
    return ClientsReport(window, ordered, sum(earlier, Counts()), len(earlier))


def _client_run_counts(conn: Connection, window: Window) -> dict[str, Counts]:
    rows = conn.execute(
        sa.select(
            run_report.c.subject,
            sa.func.sum(run_report.c.success),
            sa.func.sum(run_report.c.fail),
        )
        .where(
            run_report.c.kind == "client",
            run_report.c.hour_at >= window.start,
            run_report.c.hour_at < window.end,
        )
        .group_by(run_report.c.subject)
    )
    return {str(r[0]): Counts(int(r[1]), int(r[2])) for r in rows}


def _job_names(text: str | None) -> tuple[str, ...]:
    try:
        names = json.loads(text or "[]")
    except ValueError:
        return ()
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# ---- retention and rebuild ---------------------------------------------------------------


def delete_report_hours(conn: Connection, before: datetime) -> int:
    """Retention: whole hours before `before` (kind by kind, along ix_run_report_kind_hour_at)."""
    return conn.execute(
        run_report.delete().where(
            run_report.c.kind.in_(["all", "group", "client"]), run_report.c.hour_at < before
        )
    ).rowcount


def rebuild(conn: Connection) -> None:
    """Count the runs of the tasks in the table again from scratch (what migration 0012
    back-fills): for a database filled behind the trigger's back (a bulk load). Hours whose
    tasks retention deleted lose their counts: use it on a fresh load only."""
    conn.execute(run_report.delete())
    finished = sa.and_(
        task.c.status.in_([int(TaskStatus.FAIL), int(TaskStatus.SUCCESS)]),
        task.c.finish_at.is_not(None),
    )
    hour = _hour_of(conn, task.c.finish_at)
    ok = sa.func.sum(sa.case((task.c.status == int(TaskStatus.SUCCESS), 1), else_=0))
    failed = sa.func.sum(sa.case((task.c.status == int(TaskStatus.FAIL), 1), else_=0))
    subject_of = {
        "all": sa.literal(""),
        "group": sa.cast(task.c.task_group_id, sa.String()),
        "client": task.c.client_id,
    }
    for kind, subject in subject_of.items():
        where = [finished] + ([task.c.client_id.is_not(None)] if kind == "client" else [])
        keys = [] if kind == "all" else [subject]
        select = (
            sa.select(sa.literal(kind), subject, sa.literal(0), hour, ok, failed)
            .where(*where)
            .group_by(*keys, hour)
        )
        conn.execute(
            run_report.insert().from_select(
                ["kind", "subject", "slot", "hour_at", "success", "fail"], select
            )
        )


def _hour_of(conn: Connection, column: Any) -> Any:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return sa.func.date_trunc("hour", column)
    if dialect == "mysql":
        return sa.func.timestamp(sa.func.date_format(column, "%Y-%m-%d %H:00:00"))
    return sa.func.strftime("%Y-%m-%d %H:00:00.000000", column)
