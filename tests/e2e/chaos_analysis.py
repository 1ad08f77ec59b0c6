"""Pure analysis of a chaos run: task rows from SQL + the lines of executions.log.

Shared by tests/e2e/test_chaos.py and bench/chaos.py. No I/O here: callers query the rows
(`TASK_ROWS_SQL`), read the log, and hand both in.

Properties checked (issue "High availability"):
* duplicates: a task id that reached a job function more than once (fencing failed);
* missing finished events: an executed task whose row never reached Success/Fail with a
  finish time, or a Success row without finish_at / run_speed (its `finished` event was not
  recorded); tasks still in flight when the run ended are allowed;
* gaps: per group, the longest time without a run: between consecutive actual starts
  (run_at) of its executed tasks, and from its first planned start / to the end of the
  observation window (so a group that stalls for good shows as one long tail gap).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

# task.status values (fss.domain.status.TaskStatus), repeated to keep this module pure.
STATUS_NONE = 0
STATUS_SCHEDULER = 1
STATUS_WORKING = 2
STATUS_FAIL = 3
STATUS_SUCCESS = 4
STATUS_LABELS = {0: "None", 1: "Scheduler", 2: "Working", 3: "Fail", 4: "Success"}
FINISHED = frozenset({STATUS_FAIL, STATUS_SUCCESS})
_ONE_SECOND = timedelta(seconds=1)

TASK_ROWS_SQL = (
    "SELECT id, task_group_id, status, start_at, run_at, finish_at, run_speed, "
    "dispatched_at, client_id, attempt, error, create_at FROM task ORDER BY id"
)


@dataclass(frozen=True)
class TaskRecord:
    """One row of the task table (the columns the analysis needs)."""

    id: int
    group_id: int
    status: int
    start_at: datetime
    run_at: datetime | None
    finish_at: datetime | None
    run_speed: int | None
    dispatched_at: datetime | None = None
    client_id: str | None = None
    attempt: int = 0
    error: str | None = None
    create_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED and self.finish_at is not None


@dataclass(frozen=True)
class Execution:
    """One line of executions.log: "task_id attempt client pid"."""

    task_id: int
    attempt: int
    client_id: str
    pid: int


@dataclass(frozen=True)
class Missing:
    task_id: int
    reason: str


@dataclass(frozen=True)
class Gap:
    """The longest stretch without a run of one group, and where it was."""

    group_id: int
    seconds: float
    after: datetime
    before: datetime
    runs: int

    def describe(self) -> str:
        return (
            f"group {self.group_id}: {self.seconds:.2f} s "
            f"({self.after:%H:%M:%S.%f} -> {self.before:%H:%M:%S.%f}, {self.runs} runs)"
        )


@dataclass(frozen=True)
class ChaosReport:
    runs: int
    executed_tasks: int
    status_counts: dict[str, int]
    duplicates: dict[int, int]
    missing: list[Missing]
    unexplained_success: list[int]
    failed_executions: list[Missing]
    gaps: dict[int, Gap]
    bound_s: float
    expected_groups: int
    notes: list[str] = field(default_factory=list)

    @property
    def longest_gap(self) -> Gap | None:
        return max(self.gaps.values(), key=lambda g: g.seconds, default=None)

    @property
    def gaps_over_bound(self) -> list[Gap]:
        return sorted(
            (g for g in self.gaps.values() if g.seconds > self.bound_s),
            key=lambda g: -g.seconds,
        )

    @property
    def groups_without_runs(self) -> int:
        return self.expected_groups - sum(1 for g in self.gaps.values() if g.runs > 0)

    @property
    def passed(self) -> bool:
        return (
            not self.duplicates
            and not self.missing
            and not self.unexplained_success
            and not self.gaps_over_bound
            and self.groups_without_runs == 0
        )


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def task_record(row: Mapping[Any, Any]) -> TaskRecord:
    """A TaskRecord from a row mapping of `TASK_ROWS_SQL`."""

    def opt_int(value: object) -> int | None:
        return None if value is None else int(str(value))

    return TaskRecord(
        id=int(str(row["id"])),
        group_id=int(str(row["task_group_id"])),
        status=int(str(row["status"])),
        start_at=_dt(row["start_at"]),
        run_at=_opt_dt(row.get("run_at")),
        finish_at=_opt_dt(row.get("finish_at")),
        run_speed=opt_int(row.get("run_speed")),
        dispatched_at=_opt_dt(row.get("dispatched_at")),
        client_id=None if row.get("client_id") is None else str(row.get("client_id")),
        attempt=int(str(row.get("attempt") or 0)),
        error=None if row.get("error") is None else str(row.get("error")),
        create_at=_opt_dt(row.get("create_at")),
    )


def _dt(value: object) -> datetime:
    """Aware UTC (fss stores naive UTC; raw SQL reads it back naive)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _opt_dt(value: object) -> datetime | None:
    return None if value is None else _dt(value)


def parse_executions(lines: Iterable[str]) -> list[Execution]:
    """Parse executions.log; blank lines are skipped, malformed ones raise ValueError."""
    executions = []
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise ValueError(f"malformed executions.log line: {line!r}")
        executions.append(Execution(int(parts[0]), int(parts[1]), parts[2], int(parts[3])))
    return executions


# --------------------------------------------------------------------------------------------
# the three properties
# --------------------------------------------------------------------------------------------


def duplicate_executions(executions: Iterable[Execution]) -> dict[int, int]:
    """Task ids that reached a job function more than once -> how many times."""
    counts = Counter(e.task_id for e in executions)
    return {task_id: n for task_id, n in sorted(counts.items()) if n > 1}


def missing_finished_events(
    tasks: Iterable[TaskRecord],
    executions: Iterable[Execution],
    in_flight_since: datetime | None = None,
) -> list[Missing]:
    """Executions whose task never finished in SQL, and Success rows lacking finish data.

    An unfinished task whose run started (or, without run_at, was planned) at or after
    `in_flight_since` counts as still in flight at the end of the run, not as missing.
    """
    by_id = {t.id: t for t in tasks}
    missing: list[Missing] = []
    for task_id in sorted({e.task_id for e in executions}):
        row = by_id.get(task_id)
        if row is None:
            missing.append(Missing(task_id, "executed, but no task row"))
            continue
        if row.finished or row.status == STATUS_SUCCESS:  # Success rows: checked below
            continue
        began = row.run_at or row.start_at
        if in_flight_since is not None and began >= in_flight_since:
            continue
        missing.append(Missing(task_id, f"executed, but unfinished: {describe_task(row)}"))
    for row in by_id.values():
        if row.status == STATUS_SUCCESS and (row.finish_at is None or row.run_speed is None):
            missing.append(
                Missing(
                    row.id,
                    f"Success without finish data (finish_at={row.finish_at}, "
                    f"run_speed={row.run_speed})",
                )
            )
    return missing


def unexplained_successes(
    tasks: Iterable[TaskRecord], executions: Iterable[Execution]
) -> list[int]:
    """Success rows whose task id never reached the job function (a phantom success)."""
    executed = {e.task_id for e in executions}
    return sorted(t.id for t in tasks if t.status == STATUS_SUCCESS and t.id not in executed)


def run_times(tasks: Iterable[TaskRecord], executed_ids: set[int]) -> dict[int, list[datetime]]:
    """Per group, the sorted actual start times of its runs.

    A run is a task with run_at (its `started` event was recorded) or an executed task id.
    An executed task whose `started` event was lost (worker killed) has no run_at: its
    planned start_at stands in for it (it was dispatched at start_at and entered at once).
    """
    times: dict[int, list[datetime]] = {}
    for row in tasks:
        if row.run_at is not None:
            times.setdefault(row.group_id, []).append(row.run_at)
        elif row.id in executed_ids:
            times.setdefault(row.group_id, []).append(row.start_at)
    for values in times.values():
        values.sort()
    return times


def longest_gap(
    group_id: int,
    runs: Sequence[datetime],
    observed_from: datetime,
    observed_until: datetime,
) -> Gap:
    """The longest stretch without a run in [observed_from, observed_until]."""
    points = [observed_from, *(t for t in runs if observed_from <= t <= observed_until),
              observed_until]
    best_after, best_before = points[0], points[1]
    for after, before in itertools.pairwise(points):
        if before - after > best_before - best_after:
            best_after, best_before = after, before
    return Gap(
        group_id,
        (best_before - best_after).total_seconds(),
        best_after,
        best_before,
        len(points) - 2,
    )


def longest_gaps(
    tasks: Sequence[TaskRecord],
    executions: Iterable[Execution],
    observed_until: datetime,
    group_ids: Iterable[int] | None = None,
) -> dict[int, Gap]:
    """Per group: the longest gap between its first planned start and `observed_until`."""
    executed = {e.task_id for e in executions}
    times = run_times(tasks, executed)
    first_planned: dict[int, datetime] = {}
    for row in tasks:
        if row.group_id not in first_planned or row.start_at < first_planned[row.group_id]:
            first_planned[row.group_id] = row.start_at
    groups = sorted(set(group_ids) if group_ids is not None else set(first_planned))
    gaps = {}
    for group_id in groups:
        start = first_planned.get(group_id, observed_until)
        gaps[group_id] = longest_gap(group_id, times.get(group_id, []), start, observed_until)
    return gaps


def gap_bound_s(
    lease_s: float,
    client_timeout_s: float,
    interval_s: float,
    extra_s: float = 0.0,
) -> float:
    """The documented bound on a group's gap: a claim lease + client liveness + one interval.

    `extra_s` is for callers that knowingly widen it (e.g. the dispatch expiry + margin after
    which an order a dead worker had taken is re-sent); the issue's bound has none.
    """
    return lease_s + client_timeout_s + interval_s + extra_s


def failed_executions(
    tasks: Iterable[TaskRecord], executions: Iterable[Execution]
) -> list[Missing]:
    """Executed tasks recorded as Fail, with the first line of their error.

    Not a property of the issue (a run on a worker killed mid-job ends Fail legitimately),
    but a job that never fails (tick) showing up here means its `finished` event arrived
    after the supervisor had given up on the task, or never.
    """
    executed = {e.task_id for e in executions}
    return [
        Missing(t.id, (t.error or "").strip().splitlines()[0] if t.error else "no error text")
        for t in tasks
        if t.status == STATUS_FAIL and t.id in executed
    ]


def _clock(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%H:%M:%S.%f}"[:-3]


def describe_task(row: TaskRecord) -> str:
    label = STATUS_LABELS.get(row.status, str(row.status))
    error = (row.error or "").strip().splitlines()[0][:110] if row.error else ""
    return (
        f"task {row.id} {label} attempt {row.attempt} client {row.client_id or '-'} "
        f"created {_clock(row.create_at)} start {_clock(row.start_at)} "
        f"dispatched {_clock(row.dispatched_at)} "
        f"run {_clock(row.run_at)} finish {_clock(row.finish_at)}"
        + (f" error: {error}" if error else "")
    )


def stall_details(tasks: Iterable[TaskRecord], gap: Gap, limit: int = 4) -> list[str]:
    """The group's tasks planned inside its longest gap: why it did not run."""
    rows = [
        t for t in tasks
        if t.group_id == gap.group_id and gap.after - _ONE_SECOND <= t.start_at <= gap.before
    ]
    rows.sort(key=lambda t: t.id)
    return [describe_task(t) for t in rows[:limit]]


def unacked_by_routing_key(raw_values: Iterable[bytes | str]) -> dict[str, int]:
    """Count kombu's Redis `unacked` hash entries (JSON [message, exchange, routing key])
    by routing key: messages delivered to a consumer and not acknowledged yet."""
    counts: Counter[str] = Counter()
    for raw in raw_values:
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            routing_key = "?"
        counts[str(routing_key)] += 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------------------------
# the whole report
# --------------------------------------------------------------------------------------------


def analyse(
    tasks: Sequence[TaskRecord],
    executions: Sequence[Execution],
    *,
    observed_until: datetime,
    bound_s: float,
    group_ids: Sequence[int],
    in_flight_since: datetime | None = None,
) -> ChaosReport:
    status_counts = Counter(STATUS_LABELS.get(t.status, str(t.status)) for t in tasks)
    return ChaosReport(
        runs=len(executions),
        executed_tasks=len({e.task_id for e in executions}),
        status_counts=dict(sorted(status_counts.items())),
        duplicates=duplicate_executions(executions),
        missing=missing_finished_events(tasks, executions, in_flight_since),
        unexplained_success=unexplained_successes(tasks, executions),
        failed_executions=failed_executions(tasks, executions),
        gaps=longest_gaps(tasks, executions, observed_until, group_ids),
        bound_s=bound_s,
        expected_groups=len(group_ids),
    )


def format_report(
    report: ChaosReport,
    tasks: Sequence[TaskRecord] = (),
    *,
    per_group: bool = True,
    limit: int = 20,
) -> str:
    """The printable report; with `tasks`, each gap over the bound lists the tasks that
    were planned inside it (status, attempt, client, times, error)."""
    longest = report.longest_gap
    lines = [
        f"runs (job function entries): {report.runs}",
        f"executed task ids:           {report.executed_tasks}",
        "task rows by status:         "
        + ", ".join(f"{k} {v}" for k, v in report.status_counts.items()),
        f"duplicate executions:        {len(report.duplicates)}",
        f"missing finished events:     {len(report.missing)}",
        f"Success without execution:   {len(report.unexplained_success)}",
        f"executed but recorded Fail:  {len(report.failed_executions)} (informational)",
        f"groups without runs:         {report.groups_without_runs}",
        f"gap bound:                   {report.bound_s:.2f} s",
        "longest gap:                 "
        + (longest.describe() if longest else "n/a (no groups)"),
        f"groups over the bound:       {len(report.gaps_over_bound)}",
    ]
    if report.duplicates:
        shown = list(report.duplicates.items())[:limit]
        lines.append("  duplicates (task id x count): " + ", ".join(f"{t}x{n}" for t, n in shown))
    for item in report.missing[:limit]:
        lines.append(f"  missing: task {item.task_id}: {item.reason}")
    if report.unexplained_success:
        lines.append(f"  Success without execution: {report.unexplained_success[:limit]}")
    reasons = Counter(item.reason for item in report.failed_executions)
    for reason, count in reasons.most_common(limit):
        lines.append(f"  recorded Fail x{count}: {reason}")
    if per_group:
        lines.append("longest gap per group (s):")
        row: list[str] = []
        for gap in report.gaps.values():
            flag = "!" if gap.seconds > report.bound_s else " "
            row.append(f"g{gap.group_id}={gap.seconds:6.2f}{flag}")
            if len(row) == 6:
                lines.append("  " + "  ".join(row))
                row = []
        if row:
            lines.append("  " + "  ".join(row))
    for gap in report.gaps_over_bound[:limit]:
        lines.append(f"  over the bound: {gap.describe()}")
        lines.extend(f"      {detail}" for detail in stall_details(tasks, gap))
    lines.extend(report.notes)
    lines.append("RESULT: " + ("PASS" if report.passed else "FAIL"))
    return "\n".join(lines)


