"""The order a scheduler sends to a client: run task N, attempt A, of this job with this data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fss.domain.clock import as_utc
from fss.errors import InvalidField


@dataclass(frozen=True)
class RunOrder:
    task_id: int
    attempt: int
    group_id: int
    job_name: str
    client_id: str
    start_at: datetime
    data: dict[str, Any]

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "group_id": self.group_id,
            "job_name": self.job_name,
            "client_id": self.client_id,
            "start_at": as_utc(self.start_at).isoformat(),
            "data": self.data,
        }

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RunOrder:
        try:
            order = cls(
                task_id=int(kwargs["task_id"]),
                attempt=int(kwargs["attempt"]),
                group_id=int(kwargs["group_id"]),
                job_name=str(kwargs["job_name"]),
                client_id=str(kwargs["client_id"]),
                start_at=as_utc(datetime.fromisoformat(str(kwargs["start_at"]))),
                data=dict(kwargs.get("data") or {}),
            )
        except KeyError as exc:
            raise InvalidField(str(exc.args[0]), "missing in run order") from None
        except (TypeError, ValueError) as exc:
            raise InvalidField("order", f"malformed run order ({exc})") from None
        return order
