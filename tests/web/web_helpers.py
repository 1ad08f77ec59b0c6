"""Arrange real rows for the web tests through the store and the recorder (no raw SQL for
what the scheduler would write), and count rows to prove a refused request wrote nothing.

Imported by tests/web/test_*.py as ``from web_helpers import ...`` (pytest puts this
directory on sys.path).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fss.domain.group_spec import GroupSpec
from fss.events import ClientHeartbeat, Event, TaskFinished, TaskLogged, TaskProgressed, TaskStarted
from fss.store import groups, recording, tasks
from fss.store.tables import client, run_log, task, task_group
from fss.store.tasks import DispatchTarget

T0 = datetime(2031, 3, 14, 9, 26, 53, 589793, tzinfo=timezone.utc)
TOKEN = "test-token-0123456789abcdef"
ADMIN = ("admin", "pw")
VIEWER = ("viewer", "pw2")
CLIENT = "worker-1"
NODE = "node-a"


@dataclass
class WebDatabase:
    backend: str
    url: str
    engine: Engine


def basic(user: tuple[str, str]) -> dict[str, str]:
    """The Authorization header of HTTP Basic for (name, password)."""
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def add_group(engine: Engine, now: datetime, caption: str = "every minute",
              job_name: str = "demo.job", **changes: Any) -> int:
    values: dict[str, Any] = {"interval_ms": 60_000}
    values.update(changes)
    return groups.add_group(engine, GroupSpec(caption=caption, job_name=job_name, **values), now)


def register_client(engine: Engine, now: datetime, client_id: str = CLIENT, *, pid: int = 100,
                    active: int = 0, incarnation: str = "a") -> None:
    beat = ClientHeartbeat(
        client_id=client_id, host="host-1", ip="10.0.0.1", pid=pid, job_names=("demo.job",),
        queue=f"fss.client.{client_id}", at=now, active=active, incarnation=incarnation,
    )
    with engine.begin() as conn:
        recording.record(conn, [beat], now)


def dispatch_waiting(engine: Engine, group_id: int, now: datetime,
                     client_id: str = CLIENT) -> tuple[int, int]:
    """Run the group now and dispatch its task to `client_id`: (task id, attempt)."""
    task_id = groups.run_now(engine, group_id, now)
    claimed = [c for c in tasks.claim_due(engine, NODE, now, timedelta(seconds=5),
                                         timedelta(seconds=30)) if c.id == task_id]
    assert claimed, f"task {task_id} not claimable"
    with engine.begin() as conn:
        attempt = tasks.mark_dispatched(
            conn, claimed[0], NODE, DispatchTarget(client_id, "host-1", "10.0.0.1"), now
        )
    assert attempt is not None
    return task_id, attempt


def record(engine: Engine, now: datetime, *events: Event) -> None:
    with engine.begin() as conn:
        recording.record(conn, list(events), now)


def start(engine: Engine, task_id: int, attempt: int, now: datetime) -> None:
    record(engine, now, TaskStarted(task_id=task_id, attempt=attempt, client_id=CLIENT, at=now))


def progress(engine: Engine, task_id: int, attempt: int, value: int, now: datetime) -> None:
    record(engine, now, TaskProgressed(task_id=task_id, attempt=attempt, client_id=CLIENT,
                                       progress=value, at=now))


def log(engine: Engine, task_id: int, attempt: int, group_id: int, content: str,
        now: datetime, level: int = 2) -> None:
    record(engine, now, TaskLogged(task_id=task_id, attempt=attempt, client_id=CLIENT,
                                   group_id=group_id, level=level, content=content, at=now))


def finish(engine: Engine, task_id: int, attempt: int, now: datetime, success: bool = True,
           error: str | None = None, run_speed_ms: int = 1500) -> None:
    record(engine, now, TaskFinished(task_id=task_id, attempt=attempt, client_id=CLIENT,
                                     success=success, run_speed_ms=run_speed_ms, at=now,
                                     error=error))


def run_once(engine: Engine, group_id: int, now: datetime, success: bool = True,
             error: str | None = None) -> int:
    """A whole run of the group, recorded as a worker would report it; the task id."""
    task_id, attempt = dispatch_waiting(engine, group_id, now)
    start(engine, task_id, attempt, now)
    finish(engine, task_id, attempt, now + timedelta(seconds=1), success, error)
    return task_id


def counts(engine: Engine) -> dict[str, int]:
    """Rows per table: equal before and after a refused request."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (task_group, task, run_log, client)
        }


def group_row(engine: Engine, group_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(task_group).where(task_group.c.id == group_id)).first()
        return dict(row._mapping) if row else None


def client_row(engine: Engine, client_id: str = CLIENT) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(client).where(client.c.id == client_id)).one()._mapping)
