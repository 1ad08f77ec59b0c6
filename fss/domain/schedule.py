"""When a group runs next: job-returned time > cron > interval > 30 s after finishing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fss.domain.cron import next_cron_time

FALLBACK_DELAY = timedelta(seconds=30)


@dataclass(frozen=True)
class Schedule:
    interval_ms: int | None = None
    cron: str | None = None
    time_zone: str | None = None

    @property
    def kind(self) -> str:
        if self.cron:
            return "cron"
        if self.interval_ms:
            return "interval"
        return "job"

    def describe(self) -> str:
        if self.cron:
            zone = f" ({self.time_zone})" if self.time_zone else ""
            return f"cron {self.cron}{zone}"
        if self.interval_ms:
            return f"every {self.interval_ms} ms"
        return "set by job"


def next_on_grid(anchor: datetime, interval: timedelta, not_before: datetime) -> datetime:
    """The first point `anchor + k * interval` (k >= 1) at or after `not_before`.

    Fixed rate without drift: the grid never moves, and slots covered by an overrun are
    skipped rather than run back to back.
    """
    first = anchor + interval
    if first >= not_before:
        return first
    behind = not_before - anchor
    steps = -(-behind // interval)  # ceil for timedeltas
    return anchor + steps * interval


def initial_run_at(schedule: Schedule, start_at: datetime, now: datetime) -> datetime:
    """When a newly enabled group first runs: its start time, or the schedule's next slot."""
    if start_at >= now:
        base = start_at
    elif schedule.interval_ms:
        base = next_on_grid(start_at, timedelta(milliseconds=schedule.interval_ms), now)
    else:
        base = now
    if schedule.cron:
        # The first cron firing at or after the base time.
        return next_cron_time(schedule.cron, base - timedelta(microseconds=1), schedule.time_zone)
    return base


def next_run_at(
    schedule: Schedule,
    planned_at: datetime,
    finished_at: datetime,
    job_next_at: datetime | None = None,
) -> datetime:
    if job_next_at is not None:
        return job_next_at
    if schedule.cron:
        after = max(planned_at, finished_at)
        return next_cron_time(schedule.cron, after, schedule.time_zone)
    if schedule.interval_ms:
        interval = timedelta(milliseconds=schedule.interval_ms)
        return next_on_grid(planned_at, interval, finished_at)
    return finished_at + FALLBACK_DELAY
