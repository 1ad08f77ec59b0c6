"""The overlap policy: what a slot that comes while the group's run goes on does.

- `skip` (default): it is skipped; the next run is the next slot after the run ends.
- `buffer_one`: one such slot runs right after the run ends (however many passed), then the
  group is back on its schedule.
- `replace`: at that slot the running run is killed and the new one starts.

A group still has at most one unfinished task: `buffer_one` and `replace` only decide when
the next one starts. Both come down to the same plan once the run has ended: if a slot passed
between the run's slot and its end, the next task is due now and stands for that slot (the
group's `next_at`), so the one after it is planned from the slot and the grid does not move.
"""

from __future__ import annotations

from datetime import datetime

from fss.domain.schedule import Schedule, next_run_at
from fss.errors import InvalidField

SKIP = "skip"
BUFFER_ONE = "buffer_one"
REPLACE = "replace"


def slot_after(schedule: Schedule, slot: datetime, since: datetime) -> datetime | None:
    """The first slot of the schedule after `slot`, at or after `since` (a run standing for
    `slot` that began at `since`: its next slot); None for a group whose job sets its next
    time (it has no slots to pass) or whose schedule cannot be evaluated."""
    if not schedule.cron and not schedule.interval_ms:
        return None
    try:
        return next_run_at(schedule, slot, max(slot, since))
    except InvalidField:
        return None


def passed_slot(
    overlap: str | None, schedule: Schedule, slot: datetime, since: datetime, next_at: datetime
) -> datetime | None:
    """For a run planned for `slot`, counting from `since` (the slot; for the run of a slot
    that passed, when that run began: slots before it were covered by it), whose regular
    next run is `next_at` (the first slot at or after its end): the first slot that passed
    while it ran, when the group's policy runs it now (`buffer_one`, `replace`); None
    otherwise (`skip`, no slot passed)."""
    if overlap not in (BUFFER_ONE, REPLACE):
        return None
    passed = slot_after(schedule, slot, since)
    if passed is None or passed >= next_at:
        return None
    return passed


def stands_for_passed_slot(buffered_at: datetime | None, next_at: datetime | None) -> bool:
    """Whether the group's open task runs a slot that passed (task_group.buffered_at, set
    with next_at when it was planned; an edit that moves next_at ends it)."""
    return buffered_at is not None and buffered_at == next_at


def clock_time(moment: datetime) -> str:
    """A slot as the run log names it: HH:MM:SS, with milliseconds when it has them."""
    if moment.microsecond:
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%H:%M:%S")


def buffered_note(overlap: str, slot: datetime) -> str:
    """The run log line of the run a passed slot starts now."""
    if overlap == REPLACE:
        return f"replace: slot {clock_time(slot)} came while the previous run went on; runs now"
    return f"buffer_one: slot {clock_time(slot)} passed while running; runs now"


def replaced_reason(slot: datetime) -> str:
    """The error of a run stopped by the `replace` policy."""
    return f"replaced by the run of {clock_time(slot)}"
