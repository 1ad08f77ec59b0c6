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


class Fail(Exception):
    """Raised by a job (`raise fss.Fail("why")`) to end its run as failed with `reason` as
    its error, without a traceback. `retry=False` refuses retries for this failure: the run
    ends Fail even when the group has retries left (bad input a second attempt would not
    fix). Any other exception fails the run too and is retried while attempts are left.
    Not an FssError: it is the job's verdict, not an error of fss. Lives here, below every
    layer, so `fss.Fail` costs no import of the worker side."""

    def __init__(self, reason: str = "failed", *, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = str(reason)
        self.retry = bool(retry)
