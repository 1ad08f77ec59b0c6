"""The one exception root of fss and its few precise subclasses."""

from __future__ import annotations


class FssError(Exception):
    """Root of every error fss raises on purpose."""


class InvalidField(FssError, ValueError):
    """A user-supplied value is not acceptable; the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class GroupNotFound(FssError, LookupError):
    def __init__(self, group_id: int) -> None:
        self.group_id = group_id
        super().__init__(f"task group {group_id} does not exist")


class TaskNotFound(FssError, LookupError):
    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} does not exist")


class GroupBusy(FssError):
    """The group already has a task dispatched or running."""

    def __init__(self, group_id: int, task_id: int) -> None:
        self.group_id = group_id
        self.task_id = task_id
        super().__init__(f"task group {group_id} is already running task {task_id}")
