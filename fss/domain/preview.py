"""The next fire times of a cron or an interval, before they happen (`fss group next`, the
web form's preview): the same computation the recorder does, daylight saving time included."""

from __future__ import annotations

from datetime import datetime

from fss.domain.clock import as_utc
from fss.domain.cron import load_zone
from fss.domain.group_spec import validate_schedule
from fss.domain.schedule import Schedule, initial_run_at, upcoming_runs
from fss.errors import InvalidField


def preview_schedule(cron: str | None, interval_ms: int | None, time_zone: str | None) -> Schedule:
    """A validated schedule of exactly one cron or interval; InvalidField names the bad field."""
    if (cron is None) == (interval_ms is None):
        raise InvalidField("schedule", "give exactly one of cron or interval_ms")
    # What a group accepts (GroupSpec.validated runs the same function).
    return validate_schedule(interval_ms, str(cron) if cron is not None else None, time_zone)


def first_run(schedule: Schedule, since: datetime) -> datetime:
    """When a group with this schedule, added (or enabled) at `since`, runs first."""
    return initial_run_at(schedule, since, since)


def next_fire_times(schedule: Schedule, first: datetime, count: int) -> list[str]:
    """`count` fire times from `first` on, ISO 8601 with the schedule zone's offset."""
    return [local_iso(t, schedule.time_zone) for t in upcoming_runs(schedule, first, count)]


def local_iso(moment: datetime, time_zone: str | None) -> str:
    return as_utc(moment).astimezone(load_zone(time_zone)).isoformat()
