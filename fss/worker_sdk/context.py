"""JobContext: what a job function sees of its run, and how it reports back."""

from __future__ import annotations

import functools
import itertools
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fss.domain.clock import Clock, as_utc
from fss.domain.data_merge import changes_since
from fss.domain.group_spec import MAX_DATA_BYTES, MAX_DATA_DEPTH, nesting_depth
from fss.errors import InvalidField
from fss.events import Event, TaskDataSaved, TaskLogged, TaskProgressed, run_logger


def data_problem(data: Any) -> str | None:
    """Why `data` cannot be saved to its group (None: it can), for the run's error text."""
    if not isinstance(data, dict):
        return "data must be a JSON object"
    # What the recorder's validate_data refuses must fail the run here: a finished event it
    # refuses is set aside whole and the run is left Working.
    if nesting_depth(data) > MAX_DATA_DEPTH:
        return f"data is nested deeper than {MAX_DATA_DEPTH} levels"
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"data is not JSON-serializable ({exc})"
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        return (f"data contains a lone surrogate \\u{ord(text[exc.start]):04x}, "
                "which is not valid UTF-8")
    if size > MAX_DATA_BYTES:
        return f"data is {size} bytes, over the {MAX_DATA_BYTES}-byte limit"
    return None


def _aware(when: datetime) -> datetime:
    # A naive time is ambiguous (UTC? the worker's zone?); guessing would move runs by hours.
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidField(
            "set_next_at",
            f"{when.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. datetime.now(timezone.utc) + ...) or a timedelta",
        )
    return when


class JobContext:
    """One run of a task. `data` may be changed; changes are saved to the group when the run
    succeeds (a failed run leaves the group's data as it was, unless the job saved it with
    `save_data()`)."""

    def __init__(
        self,
        *,
        task_id: int,
        attempt: int,
        group_id: int,
        job_name: str,
        data: dict[str, Any],
        start_at: datetime,
        client_id: str,
        emit: Callable[[Event], None],
        clock: Clock,
        shard: int | None = None,
        shard_total: int = 0,
        base_data: dict[str, Any] | None = None,
        installation: str = "",
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.group_id = group_id
        self.job_name = job_name
        self.data = data
        self.start_at = as_utc(start_at)
        self.client_id = client_id
        self.progress = 0
        self.next_at: datetime | None = None
        # Broadcast runs (route `broadcast`): this run is shard `shard_index` of
        # `shard_total`, one per live client (XXL-JOB's sharding broadcast); every other
        # run is shard 0 of 1, so `items[ctx.shard_index::ctx.shard_total]` works anywhere.
        self.shard_index = shard or 0
        self.shard_total = shard_total or 1
        # What the run's events name: None unless a broadcast run.
        self._shard = shard
        # The data as the run got it (never changed): saves send what changed since.
        self._base_data = base_data
        # The installation whose order this is: every event of the run names it (made here,
        # not by the publisher copying each event to add it: 7% of a pool process's CPU).
        self._installation = installation
        self._emit = emit
        self._clock = clock
        # Numbers the run's log lines where they are made (run_log.seq): lines travel in
        # batches of several flushes and reach the database out of order. next() on a count
        # is atomic, so lines logged from several threads still get distinct numbers.
        self._log_seq = itertools.count(1)

    def set_progress(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("progress must be a number from 0 to 100")
        progress = int(value)
        if not 0 <= progress <= 100:
            raise ValueError(f"progress must be from 0 to 100, got {value}")
        # Sent even when unchanged: every call is a sign of life for the hung-run check.
        self.progress = progress
        self._emit(
            TaskProgressed(
                self.task_id, self.attempt, self.client_id, progress, self._clock.now(),
                shard=self._shard, installation=self._installation,
            )
        )

    def save_data(self) -> None:
        """Save `data` to the group now, whatever the run's outcome (a cursor a failing sync
        already moved past): without it, changes are saved only when the run succeeds.
        ValueError, naming the size, for data that cannot be saved (over 64 KiB as JSON)."""
        problem = data_problem(self.data)
        if problem is not None:
            raise ValueError(problem)
        # A copy as it is now: the job may go on changing its dict before the flush.
        snapshot = json.loads(json.dumps(self.data, allow_nan=False))
        self._emit(
            TaskDataSaved(
                self.task_id, self.attempt, self.client_id, self.group_id, snapshot,
                self._clock.now(), shard=self._shard,
                data_patch=changes_since(self._base_data, snapshot),
                installation=self._installation,
            )
        )

    def set_next_at(self, when: datetime | timedelta) -> None:
        """Run the group next at `when` (an aware time, or a delay from now) instead of its
        schedule. A time already past runs once as soon as possible, then the schedule
        decides; `timedelta(0)` means "again at once"."""
        if isinstance(when, timedelta):
            self.next_at = self._clock.now() + when
        elif isinstance(when, datetime):
            self.next_at = as_utc(_aware(when))
        else:
            raise TypeError("set_next_at takes a datetime or a timedelta")

    @functools.cached_property
    def log(self) -> logging.Logger:
        """The run's logger, made on first use: most runs never log, and a logger with its
        handler cost 2.5% of a pool process's CPU per run when made for each."""
        return run_logger(self.job_name, self._log_line)

    def _log_line(self, level: int, content: str, _created: float) -> None:
        self._emit(
            TaskLogged(
                task_id=self.task_id,
                attempt=self.attempt,
                client_id=self.client_id,
                group_id=self.group_id,
                level=level,
                content=content,
                at=self._clock.now(),
                seq=next(self._log_seq),
                shard=self._shard,
                installation=self._installation,
            )
        )

    def __repr__(self) -> str:
        return f"<JobContext task={self.task_id} attempt={self.attempt} job={self.job_name!r}>"
