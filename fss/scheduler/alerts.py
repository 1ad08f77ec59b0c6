"""The alert sender: checks the cluster rules and delivers the outbox, one node at a time.

Every scheduler runs one; only the holder of the `alerts` lease acts (a peer takes over
within a lease when it dies, as with the supervisor). Each round it checks the rules no
single event raises (fss.store.alert_checks) every `alert_check_s`, turns new notices into
deliveries, and hands each target's due deliveries to a small pool of sender threads: a
receiver that hangs holds one thread for at most `alert_send_timeout_s` per attempt, never
this loop, another target, the recorder or the dispatcher (they have threads and database
connections of their own). Sends to one target go one at a time in outbox order; a failed
one stops that target's round and holds its later deliveries behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from fss.alerting.deliver import DeliveryResult, deliver
from fss.config import Settings
from fss.domain.alert_targets import TargetSpec
from fss.domain.alerts import Message
from fss.domain.clock import Clock
from fss.outage import LoopErrors
from fss.scheduler.health import LoopTracker
from fss.scheduler.timers import Every
from fss.store import alert_checks as checks
from fss.store.alert_console import prune_alerts, prune_silences
from fss.store.alert_outbox import (
    AttemptResult,
    DueDelivery,
    compose,
    defer,
    due_deliveries,
    expand_notices,
    record_attempt,
    sent_since,
)
from fss.store.alert_targets import TargetRow, targets_by_id
from fss.store.alerts import repair_alert_flags
from fss.store.supervision import release_lease, take_lease

log = logging.getLogger(__name__)

LEASE_NAME = "alerts"
ROUND_S = 1.0
SENDER_THREADS = 8
# Sent to one target in one round at most (the rest wait for the next round).
PER_TARGET_ROUND = 20
RATE_WINDOW = timedelta(seconds=60)

Deliver = Callable[[TargetSpec, Message, float], DeliveryResult]


@dataclass
class RoundReport:
    held_lease: bool = False
    checked: bool = False
    expanded: int = 0
    submitted: int = 0
    pruned: int = 0


class AlertSender:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        *,
        installation: str = "",
        may_act: Callable[[], bool] = lambda: True,
        health: LoopTracker | None = None,
        send: Deliver = deliver,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._installation = installation
        self._may_act = may_act
        self._health = health
        self._send = send
        self._policy = settings.alert_policy
        self._checks = Every(settings.alert_check_s)
        # Unserved jobs: index probes per (job, tag) pair, and the groups of the pairs no
        # client serves read; every quarter of the time a job may go unserved is enough.
        self._unserved_checks = Every(max(settings.alert_check_s, settings.alert_unserved_s / 4))
        self._retention = Every(settings.retention_every_s)
        self._unserved = checks.UnservedClock(clock.now)
        self._pool: ThreadPoolExecutor | None = None
        self._busy: set[int] = set()
        self._busy_lock = threading.Lock()
        self._idle = threading.Condition(self._busy_lock)

    # One round, callable from tests with a manual clock.

    def round(self) -> RoundReport:
        report = RoundReport()
        if not self._may_act():
            self.release()
            return report
        now = self._clock.now()
        lease_for = timedelta(seconds=max(self._settings.lease_s, 3 * ROUND_S))
        if not take_lease(self._engine, LEASE_NAME, self._settings.node_name, now, lease_for):
            return report
        report.held_lease = True
        if self._checks.due(now):
            self.check(now)
            self._checks.done(now)
            report.checked = True
        if self._retention.due(now):
            # Resolved alerts (with their notices, deliveries, attempts) past the maximum
            # age, and silences that ended.
            report.pruned = prune_alerts(
                self._engine, now - timedelta(seconds=self._settings.alert_max_age_s)
            )
            prune_silences(self._engine, now)
            self._retention.done(now)
        with self._engine.begin() as conn:
            report.expanded = expand_notices(
                conn, now,
                storm_threshold=self._settings.alert_storm_threshold,
                installation=self._installation,
                console_url=self._settings.console_url,
                group_wait=timedelta(seconds=self._settings.alert_group_wait_s),
                group_interval=timedelta(seconds=self._settings.alert_group_interval_s),
                resolve_hold=self._policy.resolve_hold,
            )
        report.submitted = self._send_due(now)
        return report

    def check(self, now: datetime) -> None:
        """The cluster rules, each in a transaction of its own (one failing check does not
        keep the others from running)."""
        policy = self._policy
        alive_since = now - timedelta(seconds=self._settings.client_timeout_s)
        grace = timedelta(seconds=self._settings.alert_late_grace_s)
        unserved_for = timedelta(seconds=self._settings.alert_unserved_s)
        with self._engine.begin() as conn:
            checks.resolve_gone_groups(conn, now)
            checks.check_late_groups(conn, now, policy, grace)
        if self._unserved_checks.due(now):
            with self._engine.begin() as conn:
                needs = checks.unserved_needs(conn, alive_since, policy)
                since = self._unserved.observe(needs)
                for need in needs:
                    if now - since[need.subject] >= unserved_for:
                        checks.raise_unserved(conn, need, since[need.subject], now, policy)
                checks.resolve_served(conn, [n.subject for n in needs], now)
            self._unserved_checks.done(now)
        with self._engine.begin() as conn:
            checks.resolve_returned_clients(conn, alive_since, now)
            checks.check_nodes(conn, alive_since, now, policy)
        with self._engine.begin() as conn:
            checks.check_dead_letters(conn, now, policy)
            repair_alert_flags(conn)

    def _send_due(self, now: datetime) -> int:
        with self._busy_lock:
            busy = set(self._busy)
        with self._engine.connect() as conn:
            # A target whose sends are still under way gets its due ones next round.
            due = [d for d in due_deliveries(conn, now) if d.target_id not in busy]
            if not due:
                return 0
            targets = targets_by_id(conn, {d.target_id for d in due})
            sent = sent_since(conn, now - RATE_WINDOW)
            messages = compose(
                conn, due, now, self._installation, self._settings.console_url
            )
        by_target: dict[int, list[DueDelivery]] = {}
        for delivery in due:
            by_target.setdefault(delivery.target_id, []).append(delivery)
        submitted = 0
        for target_id, pending in by_target.items():
            target = targets.get(target_id)
            if target is None:  # removed since: nobody to tell
                self._give_up(pending, "the alert target was removed", now)
                continue
            allowed = max(0, min(PER_TARGET_ROUND, target.rate_per_min - sent.get(target_id, 0)))
            if allowed < len(pending):
                with self._engine.begin() as conn:
                    defer(conn, [d.id for d in pending[allowed:]], now + timedelta(seconds=5))
            batch = pending[:allowed]
            if batch and self._claim(target_id):
                self._executor().submit(self._send_batch, target, batch, messages)
                submitted += len(batch)
        return submitted

    def _claim(self, target_id: int) -> bool:
        with self._busy_lock:
            if target_id in self._busy:
                return False
            self._busy.add(target_id)
            return True

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="fss-alert-send")
        return self._pool

    def _send_batch(
        self, target: TargetRow, batch: list[DueDelivery], messages: dict[int, Message]
    ) -> None:
        try:
            for index, delivery in enumerate(batch):
                message = messages.get(delivery.id)
                if message is None:
                    self._give_up([delivery], "its alert no longer exists", self._clock.now())
                    continue
                result = self._attempt(target, message)
                now = self._clock.now()
                with self._engine.begin() as conn:
                    recorded = record_attempt(
                        conn, delivery,
                        AttemptResult(result.ok, result.status_code, result.answer,
                                      result.error, result.duration_ms),
                        now,
                        node=self._settings.node_name,
                        max_attempts=self._settings.alert_max_attempts,
                    )
                    if not result.ok and recorded:
                        # The target's later deliveries wait behind this one: in order,
                        # and a dead receiver is not tried once per waiting message.
                        rest = [d.id for d in batch[index + 1:]]
                        defer(conn, rest, now + timedelta(seconds=5))
                if not result.ok:
                    log.warning(
                        "alert delivery %s to %s failed (attempt %d): %s",
                        delivery.id, target.name, delivery.attempts + 1, result.error,
                    )
                    return
        except Exception as exc:  # the database went away: the deliveries stay pending
            log.warning("alert deliveries to %s stopped: %s", target.name, exc)
        finally:
            with self._idle:
                self._busy.discard(target.id)
                self._idle.notify_all()

    def _attempt(self, target: TargetRow, message: Message) -> DeliveryResult:
        try:
            return self._send(target.spec, message, self._settings.alert_send_timeout_s)
        except Exception as exc:  # deliver() never raises; a replacement in tests might
            return DeliveryResult(False, None, "", f"{type(exc).__name__}: {exc}", 0)

    def _give_up(self, deliveries: list[DueDelivery], why: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            for delivery in deliveries:
                record_attempt(
                    conn, delivery, AttemptResult(False, None, "", why, 0), now,
                    node=self._settings.node_name, max_attempts=1,
                )

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Until no send is in flight (tests; a stopping scheduler)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy, timeout=timeout_s)

    # The thread of a real process.

    def run(self, stop: threading.Event) -> None:
        errors = LoopErrors(log, "alert sender", "database")
        if self._health is not None:
            self._health.start()
        backoff = ROUND_S
        while not stop.wait(backoff):
            try:
                self.round()
            except Exception as exc:
                errors.failed(exc, "alerts wait")
                if self._health is not None:
                    self._health.failed(exc)
                backoff = min(backoff * 2, 5.0)
                continue
            errors.succeeded()
            if self._health is not None:
                self._health.progressed()
            backoff = ROUND_S

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def release(self) -> None:
        release_lease(self._engine, LEASE_NAME, self._settings.node_name)
