"""The next fire times of a cron or an interval, before they happen (`fss group next`, the
web form's preview): the same computation the recorder does, daylight saving time included."""

from __future__ import annotations

from datetime import datetime

from fss.domain.clock import as_utc
from fss.domain.cron import load_zone, validate_cron
from fss.domain.group_spec import validate_interval
from fss.domain.schedule import Schedule, initial_run_at, upcoming_runs
from fss.errors import InvalidField


def preview_schedule(cron: str | None, interval_ms: int | None, time_zone: str | None) -> Schedule:
    """A validated schedule of exactly one cron or interval; InvalidField names the bad field."""
    if (cron is None) == (interval_ms is None):
        raise InvalidField("schedule", "give exactly one of cron or interval_ms")
    if time_zone:
        load_zone(time_zone)
    if interval_ms is not None:
        if time_zone:
            raise InvalidField("time_zone", "applies to cron only (an interval ignores zones)")
        return Schedule(interval_ms=validate_interval(interval_ms))
    return Schedule(cron=validate_cron(str(cron)), time_zone=time_zone or None)


def first_run(schedule: Schedule, since: datetime) -> datetime:
    """When a group with this schedule, added (or enabled) at `since`, runs first."""
    return initial_run_at(schedule, since, since)


def next_fire_times(schedule: Schedule, first: datetime, count: int) -> list[str]:
    """`count` fire times from `first` on, ISO 8601 with the schedule zone's offset."""
    return [local_iso(t, schedule.time_zone) for t in upcoming_runs(schedule, first, count)]


def local_iso(moment: datetime, time_zone: str | None) -> str:
    return as_utc(moment).astimezone(load_zone(time_zone)).isoformat()
