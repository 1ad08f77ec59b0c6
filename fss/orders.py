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
    # Broadcast runs (route `broadcast`): this order is shard `shard_index` of
    # `shard_total` (one per live client), each entering a fence of its own. 0 of 0 for
    # every other run, and then absent from the message.
    shard_index: int = 0
    shard_total: int = 0

    @property
    def shard(self) -> int | None:
        """The shard its events name: None unless a broadcast run."""
        return self.shard_index if self.shard_total else None

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
        if self.shard_total:
            kwargs["shard_index"] = self.shard_index
            kwargs["shard_total"] = self.shard_total
        return kwargs

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RunOrder:
        """Strict: a wrong type is an InvalidField naming the field, never coerced."""
        for name in ("task_id", "attempt", "group_id", "job_name", "client_id", "start_at"):
            if name not in kwargs:
                raise InvalidField(name, "missing in run order")
        data = kwargs.get("data")
        installation = kwargs.get("installation")
        shard_index = require_int("shard_index", kwargs.get("shard_index", 0))
        shard_total = require_int("shard_total", kwargs.get("shard_total", 0))
        plain = shard_index == shard_total == 0
        if not (plain or 0 <= shard_index < shard_total):
            raise InvalidField(
                "shard_index", f"{shard_index} is not a shard of {shard_total} (0..total-1)"
            )
        return cls(
            task_id=require_int("task_id", kwargs["task_id"]),
            attempt=require_int("attempt", kwargs["attempt"]),
            group_id=require_int("group_id", kwargs["group_id"]),
            job_name=require_str("job_name", kwargs["job_name"]),
            client_id=require_str("client_id", kwargs["client_id"]),
            start_at=require_time("start_at", kwargs["start_at"]),
            data={} if data is None else require_dict("data", data),
            installation="" if installation is None else require_str("installation", installation),
            shard_index=shard_index,
            shard_total=shard_total,
        )
