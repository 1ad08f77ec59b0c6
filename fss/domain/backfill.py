"""The slots of a backfill window (`fss group backfill`): pure, no I/O.

A group's slots are where its schedule fires: a cron's firings in the group's time zone, or
an interval group's grid `start_at + k * interval` (k any whole number, so a window before
the group's start is on the same grid). A backfill runs the slots of [from, to], oldest
first; groups whose job sets the next time have no slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fss.domain.cron import next_cron_time
from fss.domain.schedule import Schedule
from fss.errors import InvalidField

MAX_BACKFILL_SLOTS = 10_000
_TICK = timedelta(microseconds=1)  # the stored precision: "at or after t" is "after t - 1 us"


@dataclass(frozen=True)
class Window:
    """A checked backfill window: its first slot and how many slots it holds."""

    first: datetime
    total: int


def slot_at_or_after(schedule: Schedule, anchor: datetime, moment: datetime) -> datetime:
    """The group's first slot at or after `moment` (`anchor`: the group's start_at, the
    interval grid's origin)."""
    if schedule.cron:
        return next_cron_time(schedule.cron, moment - _TICK, schedule.time_zone)
    if schedule.interval_ms:
        interval = timedelta(milliseconds=schedule.interval_ms)
        steps = -((anchor - moment) // interval)  # ceil((moment - anchor) / interval)
        return anchor + steps * interval
    raise InvalidField("schedule", "the group's job sets its next time: it has no slots")


def slot_after(schedule: Schedule, anchor: datetime, slot: datetime) -> datetime:
    """The slot after `slot`."""
    return slot_at_or_after(schedule, anchor, slot + _TICK)


def next_slot(
    schedule: Schedule, anchor: datetime, slot: datetime, to_at: datetime
) -> datetime | None:
    """The backfill's slot after `slot`, or None when `slot` was its last (past `to_at`, or
    a schedule that no longer has slots: the group was edited to let its job decide)."""
    if not schedule.cron and not schedule.interval_ms:
        return None
    following = slot_after(schedule, anchor, slot)
    return following if following <= to_at else None


def count_slots(
    schedule: Schedule, anchor: datetime, first: datetime, to_at: datetime, limit: int
) -> int:
    """How many slots lie in [first, to_at] (`first` being a slot), counting at most
    `limit` + 1: a window too large is known without listing it (an interval's count is
    arithmetic; a cron's is walked, 10,001 steps at most)."""
    if first > to_at:
        return 0
    if not schedule.cron and schedule.interval_ms:
        interval = timedelta(milliseconds=schedule.interval_ms)
        return min((to_at - first) // interval + 1, limit + 1)
    count, slot = 1, first
    while count <= limit:
        slot = slot_after(schedule, anchor, slot)
        if slot > to_at:
            break
        count += 1
    return count


def check_window(
    schedule: Schedule,
    anchor: datetime,
    from_at: datetime,
    to_at: datetime,
    now: datetime,
    limit: int = MAX_BACKFILL_SLOTS,
) -> Window:
    """The window's first slot and slot count, or InvalidField naming what is wrong."""
    if not schedule.cron and not schedule.interval_ms:
        raise InvalidField(
            "schedule",
            "the group's job sets its next time (neither interval_ms nor cron): "
            "it has no slots to backfill",
        )
    if from_at > to_at:
        raise InvalidField(
            "from", f"{from_at.isoformat()} is after to ({to_at.isoformat()})"
        )
    if to_at > now:
        raise InvalidField(
            "to",
            f"{to_at.isoformat()} is in the future; a backfill runs past slots "
            "(the schedule runs the coming ones)",
        )
    first = slot_at_or_after(schedule, anchor, from_at)
    total = count_slots(schedule, anchor, first, to_at, limit)
    if total == 0:
        raise InvalidField(
            "from",
            f"no slot of {schedule.describe()} falls between {from_at.isoformat()} "
            f"and {to_at.isoformat()}",
        )
    if total > limit:
        raise InvalidField(
            "to",
            f"the window holds more than {limit:,} slots of {schedule.describe()}; "
            "backfill it in parts",
        )
    return Window(first, total)
