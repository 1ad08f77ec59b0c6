"""Pure scheduling logic: statuses, next-run computation, client selection. No I/O."""

from fss.domain.clock import Clock, ManualClock, SystemClock, as_utc, utcnow
from fss.domain.cron import next_cron_time, validate_cron
from fss.domain.group_spec import GroupSpec
from fss.domain.schedule import Schedule, initial_run_at, next_on_grid, next_run_at
from fss.domain.selection import RoundRobin
from fss.domain.status import FINISHED, UNFINISHED, TaskStatus, can_transition, sources_of

__all__ = [
    "FINISHED",
    "UNFINISHED",
    "Clock",
    "GroupSpec",
    "ManualClock",
    "RoundRobin",
    "Schedule",
    "SystemClock",
    "TaskStatus",
    "as_utc",
    "can_transition",
    "initial_run_at",
    "next_cron_time",
    "next_on_grid",
    "next_run_at",
    "sources_of",
    "utcnow",
    "validate_cron",
]
