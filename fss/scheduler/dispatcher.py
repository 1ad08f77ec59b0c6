"""Picks a live client for a due task, moves it None -> Scheduler, and sends the order."""

from __future__ import annotations

import enum
import json
import logging
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy.engine import Engine

from fss.bridge.fence import Fence
from fss.config import Settings
from fss.domain.clock import Clock
from fss.domain.schedule import next_run_at
from fss.domain.selection import RoundRobin
from fss.naming import celery_task_id, job_task_name
from fss.orders import RunOrder
from fss.outage import OutageLog
from fss.store import tasks
from fss.store.clients import live_clients
from fss.store.rows import ClientRow
from fss.store.tasks import ClaimedTask, DispatchTarget

log = logging.getLogger(__name__)

CLIENT_CACHE_S = 0.5
FRESH_HEARTBEATS = 3


class Outcome(enum.Enum):
    SENT = "sent"
    SKIPPED = "skipped"
    NO_CLIENT = "no_client"
    LOST = "lost"
    FAILED = "failed"


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        app: Celery,
        fence: Fence,
        settings: Settings,
        clock: Clock,
        selector: RoundRobin | None = None,
    ) -> None:
        self._engine = engine
        self._app = app
        self._fence = fence
        self._settings = settings
        self._clock = clock
        self._selector = selector or RoundRobin()
        self._clients: list[ClientRow] = []
        self._broker = OutageLog(log, "broker (dispatcher)")
        self._clients_read_at: datetime | None = None

    def dispatch(self, claimed: ClaimedTask) -> Outcome:
        now = self._clock.now()
        if self._missed(claimed, now):
            return self._skip(claimed, now)
        client = self._choose_client(claimed.job_name, now)
        if client is None:
            with self._engine.begin() as conn:
                if tasks.warn_no_client_once(conn, claimed, now):
                    log.warning(
                        "task %s waits: no live client runs job %r",
                        claimed.id,
                        claimed.job_name,
                    )
            return Outcome.NO_CLIENT
        attempt = claimed.attempt + 1
        try:
            # Arm first: it also proves Redis is reachable before any SQL is written, so a
            # broker outage does not burn attempts.
            self._fence.arm(claimed.id, attempt)
        except Exception as exc:
            self._broker.failed(exc, "due tasks wait")
            return Outcome.FAILED
        target = DispatchTarget(client.id, client.host, client.ip)
        with self._engine.begin() as conn:
            won = tasks.mark_dispatched(conn, claimed, self._settings.node_name, target, now)
        if won is None:
            return Outcome.LOST
        order = RunOrder(
            task_id=claimed.id,
            attempt=attempt,
            group_id=claimed.group_id,
            job_name=claimed.job_name,
            client_id=client.id,
            start_at=claimed.start_at,
            data=json.loads(claimed.data or "{}"),
        )
        try:
            self._send(order, client.queue, max(now, claimed.start_at))
        except Exception as exc:
            self._broker.failed(exc, "due tasks wait")
            with self._engine.begin() as conn:
                tasks.undo_dispatch(conn, claimed.id, attempt)
            return Outcome.FAILED
        self._broker.recovered()
        return Outcome.SENT

    def _missed(self, claimed: ClaimedTask, now: datetime) -> bool:
        late_s = (now - claimed.start_at).total_seconds()
        return claimed.misfire == "skip" and late_s > self._settings.misfire_grace_s

    def _skip(self, claimed: ClaimedTask, now: datetime) -> Outcome:
        next_at = next_run_at(claimed.schedule, claimed.start_at, now)
        with self._engine.begin() as conn:
            moved = tasks.skip_missed(conn, claimed, self._settings.node_name, next_at, now)
        if moved:
            log.info(
                "task %s: missed run skipped (misfire=skip); next at %s",
                claimed.id,
                next_at.isoformat(),
            )
        return Outcome.SKIPPED if moved else Outcome.LOST

    def _send(self, order: RunOrder, queue: str, due: datetime) -> None:
        self._app.send_task(
            job_task_name(order.job_name),
            kwargs=order.to_kwargs(),
            queue=queue,
            task_id=celery_task_id(order.task_id, order.attempt),
            expires=due + timedelta(seconds=self._settings.dispatch_expires_s),
        )

    def _choose_client(self, job_name: str, now: datetime) -> ClientRow | None:
        self._refresh_clients(now)
        able = {c.id: c for c in self._clients if c.dispatchable and job_name in c.job_names}
        if not able:
            # A client may have registered since the cache was read: look once more.
            self._refresh_clients(now, force=True)
            able = {c.id: c for c in self._clients if c.dispatchable and job_name in c.job_names}
        chosen = self._selector.pick(job_name, list(self._freshest(able, now)))
        return able[chosen] if chosen is not None else None

    def _freshest(self, able: dict[str, ClientRow], now: datetime) -> dict[str, ClientRow]:
        """Prefer clients heard from within a few heartbeats: a client killed a moment ago
        stays 'alive' for the whole liveness timeout, and orders sent to it wait that long."""
        recent = now - timedelta(seconds=FRESH_HEARTBEATS * self._settings.heartbeat_s)
        fresh = {k: c for k, c in able.items() if c.heartbeat_at >= recent}
        return fresh or able

    def _refresh_clients(self, now: datetime, force: bool = False) -> None:
        fresh = (
            self._clients_read_at is not None
            and (now - self._clients_read_at).total_seconds() < CLIENT_CACHE_S
        )
        if fresh and not force:
            return
        since = now - timedelta(seconds=self._settings.client_timeout_s)
        with self._engine.connect() as conn:
            self._clients = live_clients(conn, since)
        self._clients_read_at = now
