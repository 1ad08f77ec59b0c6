"""One scheduler instance: claim loop + timing wheel + dispatcher, the recorder, the
supervisor, and a node heartbeat that says whether all of them make progress.

Any number of instances run side by side; they share the work through leased claims in SQL.
`tick()` runs one iteration against the injected clock and says how long to wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.clock import Clock
from fss.fence import Fence
from fss.installation import InstallationGuard
from fss.outage import LoopErrors
from fss.presence import Presence
from fss.queue_depths import delete_queues
from fss.scheduler.alerts import AlertSender
from fss.scheduler.dispatcher import Dispatcher, Outcome
from fss.scheduler.health import NodeHealth
from fss.scheduler.recorder import Recorder
from fss.scheduler.supervisor import Supervisor
from fss.scheduler.timers import Every
from fss.scheduler.wheel import TimingWheel
from fss.store import tasks
from fss.store.clients import heartbeat_node, mark_node_stopped
from fss.store.tasks import ClaimedTask

log = logging.getLogger(__name__)

MIN_SLEEP_S = 0.0
RETRY_AFTER_ERROR_S = 1.0
# A loop with no completed iteration for this long (or longer for slow periods) is stuck.
STUCK_AFTER_S = 30.0


class NotDispatching(Exception):
    """Why this node's broker is not its installation's (shown as the node's health)."""


class SchedulerService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        app: Celery,
        fence: Fence,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
        presence: Presence | None = None,
        installation: str = "",
        guard: InstallationGuard | None = None,
    ) -> None:
        self.settings = settings
        # Whether this node's broker is its installation's (None: no Redis to tell, as with
        # fss dev's in-process broker): it claims, dispatches, records and supervises only
        # while it is.
        self.guard = guard
        self.installation = installation
        self.engine = engine
        self.clock = clock
        self.node = settings.node_name
        self.wheel = TimingWheel(lead=timedelta(milliseconds=settings.dispatch_lead_ms))
        self.health = NodeHealth(monotonic)
        self.claim_health = self.health.tracker(
            "claim loop", max(STUCK_AFTER_S, 3 * settings.lease_s)
        )
        self.broker_health = self.health.tracker("broker check", STUCK_AFTER_S)
        self.dispatcher = Dispatcher(
            engine, app, fence, settings, clock, installation=installation
        )
        # Next tasks due soon come from the recorder already claimed (hand_over), so a
        # finished run does not cost a claim round trip before its successor fires.
        self.recorder = Recorder(
            engine,
            settings,
            clock,
            health=self.health,
            on_claimed=self.hand_over,
            installation=installation,
        )
        self.supervisor = Supervisor(
            engine,
            fence,
            settings,
            clock,
            events_current=lambda: not self.recorder.holding,
            health=self.health.tracker(
                "supervisor", max(STUCK_AFTER_S, 10 * settings.supervise_s)
            ),
            presence=presence,
            drop_queues=lambda names: delete_queues(app.connection_for_write(), names),
            may_act=self.may_dispatch,
            on_returned=self.wake,
        )
        self.alerts = AlertSender(
            engine,
            settings,
            clock,
            installation=installation,
            may_act=self.may_dispatch,
            health=self.health.tracker("alert sender", STUCK_AFTER_S),
        )
        self.started_at = clock.now()
        self.sent = 0
        self._claims = Every(settings.poll_s)
        self._renewals = Every(settings.lease_s / 3)
        self._claim_errors = LoopErrors(log, "scheduler loop", "database")
        self._beat_errors = LoopErrors(log, "node heartbeat", "database")
        # Set to end the loop's wait early; _claim_now says a claim is wanted too.
        self._woken = threading.Event()
        self._claim_now = False
        self._handed: deque[ClaimedTask] = deque()
        # Whether what an earlier process under this name left unsent has been settled.
        self._settled = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._recorder_lock = threading.Lock()
        self._recorder_started = False

    # One iteration, callable from tests with a manual clock.

    def may_dispatch(self) -> bool:
        return self.guard is None or self.guard.may_dispatch

    def tick(self) -> float:
        now = self.clock.now()
        if not self.may_dispatch():
            self._stand_down()
            return self.settings.poll_s
        if self._renewals.due(now):
            tasks.extend_claims(
                self.engine,
                self.node,
                self.wheel.task_ids(),
                now + timedelta(seconds=self.settings.lease_s),
            )
            self._renewals.done(now)
        if not self._settled:
            # Before this process dispatches anything (retried with the tick on error).
            self.supervisor.settle_previous_process()
            self._settled = True
        self._woken.clear()
        self._take_handed()
        if self._claim_now or self._claims.due(now):
            self._claim_now = False
            self._claim(now)
            self._claims.done(now)
        self._fire_due()
        return self._sleep_for()

    def _stand_down(self) -> None:
        """Claims held go back to the peers at once (their broker may be the right one)."""
        # Held orders go back to waiting, still claimed by this node: released below.
        taken_back = self.dispatcher.take_back_held() if self.dispatcher.held() else 0
        if taken_back or len(self.wheel) or self._handed:
            self._handed.clear()
            for task_id in self.wheel.task_ids():
                self.wheel.remove(task_id)
            tasks.release_claims(self.engine, self.node)

    def check_broker(self) -> None:
        """Judge the broker (every few seconds; the guard spaces its checks out)."""
        if self.guard is None:
            return
        try:
            judgement = self.guard.check_if_due()
        except Exception as exc:
            self.broker_health.failed(exc)
            return
        if judgement.may_dispatch:
            self.broker_health.progressed()
            self._start_recorder()
        else:
            self.broker_health.failed(NotDispatching(judgement.reason or "broker not ours"))

    def beat(self) -> None:
        """Write the node heartbeat, with what is wrong when a loop fails or is stuck."""
        self.check_broker()
        heartbeat_node(
            self.engine, self.node, self.clock.now(), self.started_at, self.health.reason()
        )

    def _claim(self, now: datetime) -> None:
        claimed = tasks.claim_due(
            self.engine,
            self.node,
            now,
            lookahead=timedelta(seconds=self.settings.lookahead_s),
            lease=timedelta(seconds=self.settings.lease_s),
            limit=self.settings.claim_batch,
        )
        for item in claimed:
            self.wheel.add(item)

    def _fire_due(self) -> None:
        self._send_held()
        due = self.wheel.pop_due(self.clock.now())
        if not due:
            return
        try:
            outcomes = self.dispatcher.dispatch_many(due)
        except Exception:
            self._retry_later(due, {})
            raise  # the loop logs it (error or outage) and marks the claim loop failing
        self._retry_later(due, outcomes)

    def _send_held(self, now: datetime | None = None) -> None:
        """Orders readied ahead (dispatch_lead_ms) whose start_at came (by `now`, else the
        clock)."""
        if not self.dispatcher.held():
            return
        sent, outcomes = self.dispatcher.send_held(now or self.clock.now())
        self._retry_later(sent, outcomes)

    def _retry_later(self, due: list[ClaimedTask], outcomes: dict[int, Outcome]) -> None:
        for claimed in due:
            outcome = outcomes.get(claimed.id, Outcome.FAILED)
            if outcome is Outcome.SENT:
                self.sent += 1
            elif outcome in (Outcome.NO_CLIENT, Outcome.FAILED):
                retry_s = (
                    self.settings.no_client_retry_s
                    if outcome is Outcome.NO_CLIENT
                    else RETRY_AFTER_ERROR_S
                )
                retry = self.dispatcher.retry_form(claimed)
                self.wheel.schedule(retry, self.clock.now() + timedelta(seconds=retry_s))

    def _sleep_for(self) -> float:
        now = self.clock.now()
        wait = self._claims.wait_s(now)  # at most poll_s, whatever the wall clock did
        for fire_at in (self.wheel.next_fire_at(), self.dispatcher.next_held_at()):
            if fire_at is not None:
                wait = min(wait, (fire_at - now).total_seconds())
        return max(MIN_SLEEP_S, wait)

    def wake(self) -> None:
        """Claim at once, without waiting for the next poll."""
        self._claim_now = True
        self._woken.set()

    def hand_over(self, claimed: list[ClaimedTask]) -> None:
        """Tasks this node claimed elsewhere (the recorder, with the run before them): the
        loop puts them on its wheel at once. Called from other threads."""
        self._handed.extend(claimed)
        self._woken.set()

    def _take_handed(self) -> None:
        while self._handed:
            self.wheel.add(self._handed.popleft())

    # Threads for a real process.

    def start(self) -> None:
        self._stop.clear()
        self._threads = []
        self.claim_health.start()
        threads = [
            threading.Thread(target=self._beat_loop, name="fss-node-heartbeat", daemon=True),
            threading.Thread(target=self._loop, name="fss-scheduler", daemon=True),
            threading.Thread(
                target=self.supervisor.run, args=(self._stop,), name="fss-supervisor", daemon=True
            ),
            threading.Thread(
                target=self.alerts.run, args=(self._stop,), name="fss-alerts", daemon=True
            ),
        ]
        # The heartbeat thread may start the recorder (appending it) while these start.
        self._threads.extend(threads)
        for thread in threads:
            thread.start()
        if self.guard is None:
            self._start_recorder()

    def _start_recorder(self) -> None:
        """Once the broker is known to be the installation's: on another installation's it
        would take (and write into this database) events that are not ours."""
        with self._recorder_lock:
            if self._recorder_started or self._stop.is_set():
                return
            self._recorder_started = True
            thread = threading.Thread(
                target=self.recorder.run, args=(self._stop,), name="fss-recorder", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                wait = self.tick()
                self._claim_errors.succeeded()
                self.claim_health.progressed()
                backoff = 0.2
            except Exception as exc:
                self._claim_errors.failed(exc, "claims and dispatches wait")
                self.claim_health.failed(exc)
                wait = backoff
                backoff = min(backoff * 2, 5.0)
            self._woken.wait(wait)

    def _beat_loop(self) -> None:
        """Its own thread, on Event.wait (monotonic): a stuck or failing claim loop is then
        reported, not hidden by a missing heartbeat, and wall clock steps do not delay it."""
        while True:
            try:
                self.beat()
                self._beat_errors.succeeded()
            except Exception as exc:
                self._beat_errors.failed(exc, "the node looks silent to its peers")
            if self._stop.wait(self.settings.heartbeat_s):
                return

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._woken.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._send_held_at_stop()
        try:
            released = tasks.release_claims(self.engine, self.node)
            self.supervisor.release()
            self.alerts.close()
            self.alerts.release()
            mark_node_stopped(self.engine, self.node)
            log.info("scheduler %s stopped; released %d claims", self.node, released)
        except Exception as exc:
            log.warning("could not release claims on stop (%s)", exc)

    def _send_held_at_stop(self) -> None:
        """Orders readied ahead go out at their time (at most dispatch_lead_ms away) rather
        than wait for the stale-dispatch sweep of a peer."""
        while (due_at := self.dispatcher.next_held_at()) is not None:
            wait = (due_at - self.clock.now()).total_seconds()
            if wait > 0:
                time.sleep(min(wait, self.settings.dispatch_lead_ms / 1000))
            try:
                self._send_held(max(due_at, self.clock.now()))  # waited until then
            except Exception as exc:
                log.warning("could not send the orders readied ahead on stop (%s)", exc)
                return

    def join(self) -> None:
        while any(t.is_alive() for t in self._threads):
            for thread in self._threads:
                thread.join(timeout=0.5)
