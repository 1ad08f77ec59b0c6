"""When a group runs next: job-returned time > cron > interval > 30 s after finishing.

Times a worker reports are judged against the scheduler side's clock (`finish_time`), and a
job-returned time in the past runs once as soon as possible, then the schedule decides
(`plan_next_run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fss.domain.cron import next_cron_time
from fss.errors import InvalidField

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


def upcoming_runs(schedule: Schedule, first: datetime, count: int) -> list[datetime]:
    """`first` and the runs after it, each taken as ending the moment it starts: what
    `next_run_at` gives the recorder for runs that take no time (a preview)."""
    if not schedule.cron and not schedule.interval_ms:
        return [first][:count]
    runs = [first]
    while len(runs) < count:
        runs.append(next_run_at(schedule, runs[-1], runs[-1]))
    return runs


@dataclass(frozen=True)
class NextRun:
    """The group's next task: when it is due, and whether it catches up a past job time."""

    at: datetime
    catch_up: bool = False
    # Why the schedule could not be followed, when it could not (see plan_next_run).
    problem: str | None = None


def after_retries(
    schedule: Schedule, slot: datetime, next_run: NextRun, job_next_at: datetime | None
) -> NextRun:
    """The next run after a task that went through retries (or was sent again): a slot that
    passed while it was retrying is a missed run like one missed during an outage, so the
    next task is that first passed slot, and the claim applies the group's misfire rule to
    it (run-once: it runs at once, one run however many slots passed, then the schedule goes
    on; skip: it moves to the next slot). A job-set time, or a schedule that could not be
    followed, stays as planned."""
    if job_next_at is not None or next_run.problem is not None or next_run.catch_up:
        return next_run
    try:
        first_passed = next_run_at(schedule, slot, slot)
    except InvalidField:
        return next_run
    return NextRun(first_passed) if first_passed < next_run.at else next_run


def finish_time(
    planned_at: datetime, reported_at: datetime, earliest_end: datetime, now: datetime
) -> datetime:
    """When a run ended, as the scheduler side can vouch for it.

    The worker's `reported_at` counts only within what the scheduler side saw: never after
    `now` (a worker clock running fast would make groups skip slots), never before
    `earliest_end` (dispatch time + the run's measured duration: a clock running slow would
    replay slots), and never before the planned time.
    """
    return max(planned_at, min(max(reported_at, earliest_end), now))


def job_time_is_past(job_next_at: datetime, planned_at: datetime, run_began_at: datetime) -> bool:
    """The job asked for a time before its own run: before the planned time and before the run
    began by the worker's own clock. "Again at once" (`set_next_at(timedelta(0))`) is never
    past, not even from a worker whose clock is slow."""
    return job_next_at < min(planned_at, run_began_at)


def plan_next_run(
    schedule: Schedule,
    *,
    planned_at: datetime,
    finished_at: datetime,
    now: datetime,
    job_next_at: datetime | None = None,
    run_began_at: datetime | None = None,
    catch_up: bool = False,
) -> NextRun:
    """The next run after one that ended at `finished_at`.

    A job-returned time wins, unless it is really in the past: then the next run is a
    catch-up due `now`; and when a catch-up run (`catch_up`) returns a past time again, the
    schedule decides, so a job that keeps returning past times never spins its group.
    """
    if job_next_at is not None:
        began = planned_at if run_began_at is None else run_began_at
        if not job_time_is_past(job_next_at, planned_at, began):
            return NextRun(job_next_at)
        if not catch_up:
            return NextRun(now, catch_up=True)
    try:
        return NextRun(next_run_at(schedule, planned_at, finished_at))
    except InvalidField as exc:
        # A stored schedule that can no longer be evaluated (a cron written by hand in SQL,
        # a time zone gone from the system): the run is still recorded and the group goes
        # on as a group without a schedule would, saying why, instead of stopping.
        return NextRun(finished_at + FALLBACK_DELAY, problem=str(exc))
