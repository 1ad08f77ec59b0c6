"""Task lifecycle of the seed: None -> Scheduler -> Working -> Success | Fail, only forward."""

from __future__ import annotations

from enum import IntEnum


class TaskStatus(IntEnum):
    NONE = 0
    SCHEDULER = 1
    WORKING = 2
    FAIL = 3
    SUCCESS = 4

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> TaskStatus:
        key = text.strip().lower()
        for status, label in _LABELS.items():
            if label.lower() == key or status.name.lower() == key or str(int(status)) == key:
                return status
        names = ", ".join(_LABELS.values())
        raise ValueError(f"unknown status {text!r} (one of {names})")


_LABELS = {
    TaskStatus.NONE: "None",
    TaskStatus.SCHEDULER: "Scheduler",
    TaskStatus.WORKING: "Working",
    TaskStatus.FAIL: "Fail",
    TaskStatus.SUCCESS: "Success",
}

# What the web UI shows for each status, on cards, in rows and in filters alike; the API and
# the CLI keep the labels above (stable names scripts match on).
SHOWN_NAMES: dict[str, str] = {
    TaskStatus.NONE.label: "Waiting",
    TaskStatus.SCHEDULER.label: "Dispatched",
    TaskStatus.WORKING.label: "Working",
    TaskStatus.FAIL.label: "Fail",
    TaskStatus.SUCCESS.label: "Success",
}

UNFINISHED: frozenset[TaskStatus] = frozenset(
    {TaskStatus.NONE, TaskStatus.SCHEDULER, TaskStatus.WORKING}
)
FINISHED: frozenset[TaskStatus] = frozenset({TaskStatus.FAIL, TaskStatus.SUCCESS})

_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.NONE: frozenset({TaskStatus.SCHEDULER}),
    # A client may die or be dropped before it reports Working: the task then fails
    # straight from Scheduler, and the finish of a fast job can overtake its start.
    TaskStatus.SCHEDULER: frozenset({TaskStatus.WORKING, TaskStatus.FAIL, TaskStatus.SUCCESS}),
    TaskStatus.WORKING: frozenset({TaskStatus.FAIL, TaskStatus.SUCCESS}),
    TaskStatus.FAIL: frozenset(),
    TaskStatus.SUCCESS: frozenset(),
}


def can_transition(current: TaskStatus, target: TaskStatus) -> bool:
    return target in _ALLOWED[current]


def sources_of(target: TaskStatus) -> frozenset[TaskStatus]:
    """Statuses a task may be in for a guarded UPDATE to move it to `target`."""
    return frozenset(s for s, targets in _ALLOWED.items() if target in targets)
