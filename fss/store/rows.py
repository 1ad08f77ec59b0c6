"""Read models: what queries hand back to the CLI, the web UI and the scheduler."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from fss.domain.schedule import Schedule
from fss.domain.selection import parse_tags
from fss.domain.status import TaskStatus


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, TaskStatus):
        return value.label
    return value


@dataclass(frozen=True)
class GroupRow:
    id: int
    caption: str
    job_name: str
    data: dict[str, Any]
    start_at: datetime
    next_at: datetime
    task_id: int | None
    activate_at: datetime
    last_run_at: datetime | None
    run_speed_avg: int
    run_count: int
    is_enable: bool
    interval_ms: int | None
    cron: str | None
    time_zone: str | None
    created_at: datetime
    timeout_s: int | None = None
    misfire: str = "run-once"
    # The name a groups file knows it by (`fss group apply`); None for groups made by hand.
    key: str | None = None
    # Bumped by every settings change: an edit names it and is refused when it is stale.
    version: int = 1
    # The spec `fss group apply` last applied (its JSON text), the base of its three-way merge.
    applied: str | None = None
    # Run policies (see fss.store.tables.task_group).
    retries: int = 0
    retry_delay_ms: int = 1000
    retry_backoff: float = 2.0
    retry_delay_max_ms: int | None = None
    retry_jitter: bool = True
    max_run_s: int | None = None
    overlap: str = "skip"
    route: str = "round_robin"
    client_tag: str | None = None
    on_success: tuple[str, ...] = ()
    jitter_ms: int = 0
    # Alerts: target names (empty = the defaults), rules (None = every rule on globally,
    # () = none), seconds after a planned run without success until late (None = default).
    alert_targets: tuple[str, ...] = ()
    alert_rules: tuple[str, ...] | None = None
    late_after_s: int | None = None
    disabled_note: str | None = None
    enable_at: datetime | None = None
    buffered_at: datetime | None = None

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.interval_ms, self.cron, self.time_zone)

    @classmethod
    def from_row(cls, row: Row[Any]) -> GroupRow:
        values = {k: v for k, v in row._mapping.items() if k in cls.__dataclass_fields__}
        values["data"] = json.loads(values["data"] or "{}")
        values["is_enable"] = bool(values["is_enable"])
        if "retry_jitter" in values:
            values["retry_jitter"] = bool(values["retry_jitter"])
        if "on_success" in values:
            values["on_success"] = tuple(json.loads(values["on_success"] or "[]"))
        if "alert_targets" in values:
            values["alert_targets"] = tuple(json.loads(values["alert_targets"] or "[]"))
        if values.get("alert_rules") is not None:
            values["alert_rules"] = tuple(json.loads(values["alert_rules"]))
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        internal = ("applied", "buffered_at")
        body = {
            f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in internal
        }
        body["on_success"] = list(self.on_success)
        body["alert_targets"] = list(self.alert_targets)
        body["alert_rules"] = None if self.alert_rules is None else list(self.alert_rules)
        body["schedule"] = self.schedule.describe()
        return body


@dataclass(frozen=True)
class TaskRow:
    id: int
    task_group_id: int
    job_name: str
    start_at: datetime
    status: TaskStatus
    progress: int
    attempt: int
    run_speed: int | None
    client_id: str | None
    client_host: str | None
    client_ip: str | None
    server_node: str | None
    dispatched_at: datetime | None
    run_at: datetime | None
    finish_at: datetime | None
    error: str | None
    create_at: datetime
    # scheduled | manual (fss group run) | child (on_success) | backfill (fss group backfill)
    kind: str = "scheduled"
    # A broadcast run's number of shards (one per client it ran on); None for other runs.
    shard_total: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> TaskRow:
        values = {k: v for k, v in row._mapping.items() if k in cls.__dataclass_fields__}
        values["status"] = TaskStatus(values["status"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class LogRow:
    id: int
    task_id: int
    task_group_id: int
    log_level: int
    content: str
    create_at: datetime
    # The job's own order of its lines (None for lines recorded before it was kept).
    seq: int | None = None
    # Which attempt wrote it, and which shard of a broadcast run (None for other runs).
    attempt: int | None = None
    shard_index: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> LogRow:
        values = {k: v for k, v in row._mapping.items() if k in cls.__dataclass_fields__}
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        body = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        body["level"] = LOG_LEVEL_NAMES.get(self.log_level, str(self.log_level))
        return body


@dataclass(frozen=True)
class ClientRow:
    id: str
    host: str
    ip: str
    pid: int
    language: str
    job_names: tuple[str, ...]
    queue: str
    registered_at: datetime
    heartbeat_at: datetime
    accepting: bool = True
    hung_count: int = 0
    kicked_at: datetime | None = None
    incarnation: str | None = None
    kick_reason: str | None = None
    # `fss worker --tag` values (comma separated), and runs it reported running.
    tags: str | None = None
    active_runs: int = 0

    @property
    def dispatchable(self) -> bool:
        return self.accepting and self.kicked_at is None

    @classmethod
    def from_row(cls, row: Row[Any]) -> ClientRow:
        values = {k: v for k, v in row._mapping.items() if k in cls.__dataclass_fields__}
        values["job_names"] = tuple(json.loads(values["job_names"] or "[]"))
        values["accepting"] = bool(values.get("accepting", True))
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        body = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        body["job_names"] = list(self.job_names)
        body["tags"] = sorted(parse_tags(self.tags))
        return body


@dataclass(frozen=True)
class NodeRow:
    """A scheduler instance, with whether it holds the named cluster lease (the supervisor)."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    is_alive: bool
    unhealthy_reason: str | None
    holds_lease: bool = False

    def heartbeat_age_s(self, now: datetime) -> float:
        return round((now - self.heartbeat_at).total_seconds(), 1)

    @classmethod
    def from_row(cls, row: Row[Any]) -> NodeRow:
        values = {k: v for k, v in row._mapping.items() if k in cls.__dataclass_fields__}
        values["is_alive"] = bool(values["is_alive"])
        values["holds_lease"] = bool(values.get("holds_lease", False))
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


# Microsoft.Extensions.Logging levels, as the seed records them.
LOG_LEVEL_NAMES = {
    0: "Trace",
    1: "Debug",
    2: "Information",
    3: "Warning",
    4: "Error",
    5: "Critical",
}
