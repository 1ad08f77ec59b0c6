"""The order a scheduler sends to a client: run task N, attempt A, of this job with this data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fss.domain.clock import as_utc
from fss.errors import InvalidField
from fss.events import require_dict, require_int, require_str, require_time


@dataclass(frozen=True)
class RunOrder:
    task_id: int
    attempt: int
    group_id: int
    job_name: str
    client_id: str
    start_at: datetime
    data: dict[str, Any]
    # The installation (fss db upgrade's id) that sent the order: the worker enters the
    # fence under it and stamps it on the run's events. "" from a sender that predates it.
    installation: str = ""

    def to_kwargs(self) -> dict[str, Any]:
        kwargs = {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "group_id": self.group_id,
            "job_name": self.job_name,
            "client_id": self.client_id,
            "start_at": as_utc(self.start_at).isoformat(),
            "data": self.data,
        }
        if self.installation:
            kwargs["installation"] = self.installation
        return kwargs

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RunOrder:
        """Strict: a wrong type is an InvalidField naming the field, never coerced."""
        for name in ("task_id", "attempt", "group_id", "job_name", "client_id", "start_at"):
            if name not in kwargs:
                raise InvalidField(name, "missing in run order")
        data = kwargs.get("data")
        installation = kwargs.get("installation")
        return cls(
            task_id=require_int("task_id", kwargs["task_id"]),
            attempt=require_int("attempt", kwargs["attempt"]),
            group_id=require_int("group_id", kwargs["group_id"]),
            job_name=require_str("job_name", kwargs["job_name"]),
            client_id=require_str("client_id", kwargs["client_id"]),
            start_at=require_time("start_at", kwargs["start_at"]),
            data={} if data is None else require_dict("data", data),
            installation="" if installation is None else require_str("installation", installation),
        )
