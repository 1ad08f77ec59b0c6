"""Keeps the cluster honest: drops silent clients and re-dispatches or fails what they held,
re-sends orders nobody started, fails hung runs and kicks clients that keep hanging,
marks dead scheduler nodes, prunes old tasks.

It runs in every scheduler but acts only in the one holding the `supervisor` lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from fss.config import Settings
from fss.domain.alerts import CLIENT_LOST, NODE_LOST, client_subject, node_subject
from fss.domain.broadcast import BROADCAST_CLIENT
from fss.domain.clock import Clock
from fss.domain.overlap import clock_time, replaced_reason
from fss.domain.status import TaskStatus
from fss.fence import Fence, NoFence
from fss.kills import Outcome, send_kill
from fss.naming import client_queue
from fss.outage import LoopErrors
from fss.presence import Presence, beacon_name
from fss.scheduler.health import LoopTracker
from fss.scheduler.timers import Every
from fss.store import shards as shard_store
from fss.store import supervision as store
from fss.store.alerts import describe_client, raise_alert
from fss.store.departures import departures_since
from fss.store.groups import enable_due_groups
from fss.store.kills import RunningAttempt
from fss.store.overlap import Replaceable, replaceable_runs, request_replace
from fss.store.recording import finish_tasks
from fss.store.shards import OpenShard, ShardEnd
from fss.store.supervision import OpenTask, RetentionPolicy, hung_after

log = logging.getLogger(__name__)

LEASE_NAME = "supervisor"
# An order is re-sent only after it has surely expired on the worker.
EXPIRY_MARGIN = timedelta(seconds=2)
# A dispatch is a SQL commit, then the send: give a live scheduler this long between them.
SEND_GRACE = timedelta(seconds=1)
# A client whose beacon is gone is dropped once its heartbeat is this many intervals late and
# the beacon has been missing for this many: a beacon reconnecting after a Redis restart, or
# a heartbeat the recorder has not written yet, does not drop a live client.
GONE_AFTER_HEARTBEATS = 3
BEACON_MISSING_HEARTBEATS = 2
# A run still open on a client that unregistered or restarted is failed by a sweep at least
# this long after one first found it: the client's own report of it may be on its way (a gRPC
# bridge session fails its unfinished runs as "disconnected" when it ends; the clients queue
# is recorded at once, the events queue in batches, so the `left` or the new registration
# can be written first), and that report, with its reason, is the one to keep.
REPORT_GRACE = timedelta(seconds=1)
# A departure's left_at is the clock of the scheduler that recorded it: each sweep looks
# this far behind the previous one for departures whose queue is still to delete.
DEPARTURE_SKEW = timedelta(minutes=5)


@dataclass
class SweepReport:
    held_lease: bool = False
    redispatched: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    removed_clients: list[str] = field(default_factory=list)
    kicked_clients: list[str] = field(default_factory=list)
    dead_nodes: int = 0
    dropped_queues: list[str] = field(default_factory=list)
    retention_ran: bool = False
    pruned: int = 0
    enabled_groups: list[int] = field(default_factory=list)
    # overlap replace: runs whose kill was sent for the next slot's run.
    replaced: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        engine: Engine,
        fence: Fence,
        settings: Settings,
        clock: Clock,
        events_current: Callable[[], bool] = lambda: True,
        health: LoopTracker | None = None,
        presence: Presence | None = None,
        drop_queues: Callable[[list[str]], None] | None = None,
        may_act: Callable[[], bool] = lambda: True,
        kill: Callable[[RunningAttempt, str], tuple[Outcome, str]] | None = None,
        on_returned: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        # Told when a sweep put tasks back to waiting (the scheduler loop claims at once
        # instead of at its next poll).
        self._on_returned = on_returned
        # Sends a kill to the worker running a run (fss.kills): overlap `replace`.
        self._kill = kill or (lambda running, reason: send_kill(settings, running, reason))
        # False while this node's broker is not its installation's: its fence would say
        # "not entered" of runs entered on the right one, and it would re-send them.
        self._may_act = may_act
        # Deletes broker queues (fss.queue_depths.delete_queues); removed clients whose queue
        # is still to delete wait here, across sweeps while the broker is down.
        self._drop_queues = drop_queues
        self._queues_to_drop: set[str] = set()
        # Departures (client id -> left_at) whose queue was taken in hand, and from when the
        # next sweep reads client_departed (None: every departure kept).
        self._departures_seen: dict[str, datetime] = {}
        # (task id, attempt) of runs left open by a client that left or restarted -> when a
        # sweep first found them (REPORT_GRACE); forgotten when a sweep no longer finds them.
        self._awaiting_report: dict[tuple[int, int], datetime] = {}
        self._awaited_this_sweep: set[tuple[int, int]] = set()
        self._departures_since: datetime | None = None
        self._broker_errors = LoopErrors(log, "supervisor", "broker")
        self._presence = presence
        # Clients whose beacon this supervisor has seen connected, and since when it is missing.
        self._beacons_seen: set[str] = set()
        self._beacon_missing_since: dict[str, datetime] = {}
        self._events_current = events_current
        self._health = health
        # After an outage of our own, heartbeats held meanwhile are not written yet: judge
        # nobody silent until a full liveness window has passed with the database reachable.
        self._judging_resumes = Every(settings.client_timeout_s)
        self._outage_seen = False
        self._fence = fence
        self._settings = settings
        self._clock = clock
        self._retention = Every(settings.retention_every_s)
        self.retention = RetentionPolicy(
            keep_success_per_group=settings.keep_success_per_group,
            departed_max_age=timedelta(seconds=settings.client_offline_keep_s),
            success_max_age=timedelta(seconds=settings.success_max_age_s),
            fail_max_age=timedelta(seconds=settings.fail_max_age_s),
            audit_max_age=timedelta(seconds=settings.audit_max_age_s),
        )

    def sweep(self) -> SweepReport:
        report = SweepReport()
        if not self._may_act():
            self.release()
            return report
        now = self._clock.now()
        lease_for = timedelta(seconds=max(self._settings.lease_s, 2 * self._settings.supervise_s))
        if not store.take_lease(self._engine, LEASE_NAME, self._settings.node_name, now, lease_for):
            return report
        report.held_lease = True
        if self._outage_seen:
            self._outage_seen = False
            self._judging_resumes.done(now)
        alive_since = now - timedelta(seconds=self._settings.client_timeout_s)
        if self._may_judge(now):
            with self._engine.begin() as conn:
                dead = store.dead_node_ids(conn, alive_since)
                report.dead_nodes = store.mark_dead_nodes(conn, alive_since)
                for node_id in dead:
                    self._raise_cluster_alert(
                        conn, NODE_LOST, node_subject(node_id),
                        f"scheduler node {node_id} lost",
                        f"no heartbeat from {node_id} for over "
                        f"{self._settings.client_timeout_s:g} s and it did not stop cleanly",
                        now,
                    )
            gone = self._remove_gone_clients(now, report)
            self._awaited_this_sweep = set()
            left = self._handle_orphans(alive_since, now, report, gone)
            self._remove_dead_clients(alive_since, now, report)
            departed = self._new_departures(now)
            self._drop_removed_queues({*report.removed_clients, *left, *departed}, report)
            self._handle_restarted_clients(alive_since, now, report)
            self._awaiting_report = {
                key: since
                for key, since in self._awaiting_report.items()
                if key in self._awaited_this_sweep
            }
            self._handle_silent_dispatchers(now, report)
            self._handle_stale_dispatches(now, report)
            self._handle_hung(now, report)
            self._handle_over_time(now, report)
            self._handle_replace(now, report)
            self._handle_shards(alive_since, now, report, gone)
            if report.redispatched:
                self._on_returned()
        # `fss group disable --until`: a group enables itself when its time has come.
        report.enabled_groups = enable_due_groups(self._engine, now)
        for group_id in report.enabled_groups:
            log.info("group %s enabled again (its disable --until time came)", group_id,
                     extra={"group_id": group_id})
        if self._retention.due(now):
            report.pruned = store.prune(self._engine, now, self.retention)
            report.retention_ran = True
            self._retention.done(now)
        return report

    def _may_judge(self, now: datetime) -> bool:
        if not self._events_current():
            return False
        return self._judging_resumes.due(now)

    def note_outage(self) -> None:
        """The database was unreachable: silence measured across it says nothing about clients."""
        self._outage_seen = True

    def _handle_orphans(
        self, alive_since: datetime, now: datetime, report: SweepReport, gone_clients: set[str]
    ) -> set[str]:
        """Settle what gone, silent or unregistered clients held; the unregistered ones."""
        with self._engine.connect() as conn:
            orphans = store.orphaned_tasks(conn, alive_since)
            registered = set(store.registered_client_ids(conn))
        timeout = self._settings.client_timeout_s
        left: set[str] = set()
        for orphan in orphans:
            if orphan.client_id in gone_clients:
                gone = f"the process of client {orphan.client_id} is gone"
            elif orphan.client_id in registered:
                gone = f"client {orphan.client_id} went silent (> {timeout:g} s)"
            else:
                gone = f"client {orphan.client_id} unregistered"
                left.add(orphan.client_id or "")
            if orphan.status == TaskStatus.SCHEDULER and self._fence.revoke(
                orphan.id, orphan.attempt
            ):
                reason = f"{gone} before starting attempt {orphan.attempt}; dispatching again"
                self._return(orphan, reason, now, report)
            elif orphan.client_id in registered or orphan.client_id in gone_clients or (
                self._report_overdue(orphan, now)
            ):
                reason = f"{gone} while running attempt {orphan.attempt}; marked failed"
                self._fail(orphan, reason, now, report)
        left.discard("")
        return left

    def _new_departures(self, now: datetime) -> set[str]:
        """Clients that left (cleanly, their queue empty, or removed) since the last sweep:
        without this, the queue of one that left with nothing queued kept its two
        `_kombu.binding*` keys in Redis forever (one pair per client name)."""
        if self._drop_queues is None:
            return set()
        with self._engine.connect() as conn:
            rows = departures_since(conn, self._departures_since)
        new = {client_id for client_id, left_at in rows
               if self._departures_seen.get(client_id) != left_at}
        self._departures_seen.update(rows)
        self._departures_since = since = now - DEPARTURE_SKEW
        for client_id, left_at in list(self._departures_seen.items()):
            if left_at < since:  # not read again
                del self._departures_seen[client_id]
        return new

    def _drop_removed_queues(self, client_ids: set[str], report: SweepReport) -> None:
        """Delete the queues of clients that are gone, once their orders are settled: what is
        left in them was revoked and is sent again elsewhere, and nobody would ever read it."""
        if self._drop_queues is None:
            return
        self._queues_to_drop |= client_ids
        if not self._queues_to_drop:
            return
        with self._engine.connect() as conn:
            registered = set(store.registered_client_ids(conn))
        # A client id registered again (restarted under its name) reads its queue again.
        self._queues_to_drop -= registered
        names = [client_queue(client_id) for client_id in sorted(self._queues_to_drop)]
        if not names:
            return
        try:
            self._drop_queues(names)
        except Exception as exc:
            self._broker_errors.failed(exc, "queues of removed clients are deleted later")
            return
        self._broker_errors.succeeded()
        self._queues_to_drop.clear()
        report.dropped_queues.extend(names)

    def _handle_restarted_clients(
        self, alive_since: datetime, now: datetime, report: SweepReport
    ) -> None:
        """A worker restarted under the same client id: what its previous process held is
        sent again if nobody entered it, failed if the previous process had entered it, and
        left alone if the new process picked it up."""
        with self._engine.connect() as conn:
            suspects = store.sent_to_earlier_processes(conn, alive_since)
            current = store.incarnations(conn) if suspects else {}
        for task in suspects:
            if task.status == TaskStatus.SCHEDULER and self._fence.revoke(task.id, task.attempt):
                reason = (
                    f"client {task.client_id} restarted before starting attempt "
                    f"{task.attempt}; dispatching again"
                )
                self._return(task, reason, now, report)
                continue
            holder = self._fence.holder(task.id, task.attempt)
            if holder is not None and holder == current.get(task.client_id or ""):
                continue  # the new process runs it
            if not self._report_overdue(task, now):
                continue
            reason = (
                f"client {task.client_id} restarted while running attempt {task.attempt}; "
                "marked failed"
            )
            self._fail(task, reason, now, report)

    def _report_overdue(self, task: OpenTask, now: datetime) -> bool:
        """Whether a run left open by a client that left or restarted has waited
        REPORT_GRACE since a sweep first found it (the client's own report came meanwhile,
        or will not come)."""
        key = (task.id, task.attempt)
        self._awaited_this_sweep.add(key)
        first_found = self._awaiting_report.setdefault(key, now)
        return now - first_found >= REPORT_GRACE

    def _handle_silent_dispatchers(self, now: datetime, report: SweepReport) -> None:
        node_alive_since = now - timedelta(seconds=self._settings.lease_s)
        sent_before = now - SEND_GRACE
        with self._engine.connect() as conn:
            suspects = store.sent_by_silent_nodes(
                conn, node_alive_since, sent_before, self._settings.node_name
            )
        for task in suspects:
            if self._fence.revoke(task.id, task.attempt):
                reason = (
                    f"the scheduler that dispatched attempt {task.attempt} stopped and it was "
                    "not started; dispatching again"
                )
                self._return(task, reason, now, report)

    def settle_previous_process(self) -> SweepReport:
        """What an earlier process under this node name dispatched and nobody started goes
        out again at once: that process may have died between its SQL and its send, and
        this node, alive again under the same name, never looks silent to its peers.
        Called before this process dispatches anything, so every such task is the earlier
        process's. Without a fence an order already in a queue could then run twice: it is
        left to expire, as before."""
        report = SweepReport()
        if isinstance(self._fence, NoFence):
            return report
        now = self._clock.now()
        with self._engine.connect() as conn:
            earlier = store.sent_by_node(conn, self._settings.node_name)
        for task in earlier:
            if self._fence.revoke(task.id, task.attempt):
                reason = (
                    f"scheduler {self._settings.node_name} restarted after dispatching attempt "
                    f"{task.attempt}, which was not started; dispatching again"
                )
                self._return(task, reason, now, report)
        return report

    def _remove_gone_clients(self, now: datetime, report: SweepReport) -> set[str]:
        """Drop clients whose process died: beacon seen before, missing now, heartbeat late.

        Seconds instead of the liveness timeout after a kill -9; a live client keeps its
        beacon connected however slowly its heartbeats are recorded."""
        connected = self._presence.connected() if self._presence is not None else None
        if connected is None:
            return set()
        with self._engine.connect() as conn:
            registered = store.registered_client_ids(conn)
        missing = self._note_beacons(registered, connected, now)
        heartbeat_s = self._settings.heartbeat_s
        late_since = now - timedelta(seconds=GONE_AFTER_HEARTBEATS * heartbeat_s)
        missing_for = timedelta(seconds=BEACON_MISSING_HEARTBEATS * heartbeat_s)
        gone: set[str] = set()
        with self._engine.begin() as conn:
            for client_id in store.dead_client_ids(conn, late_since):
                since = missing.get(client_id)
                if since is None or now - since < missing_for:
                    continue
                seen = describe_client(conn, client_id)
                why = "its process is gone"
                if store.remove_client_if_silent(conn, client_id, late_since, why, now):
                    self._client_lost(conn, client_id, seen, why, now)
                    gone.add(client_id)
                    report.removed_clients.append(client_id)
                    log.warning(
                        "client %s removed: its process is gone (its Redis connection closed "
                        "%.1f s ago, no heartbeat for over %g s)",
                        client_id,
                        (now - since).total_seconds(),
                        GONE_AFTER_HEARTBEATS * heartbeat_s,
                        extra={"client_id": client_id},
                    )
        for client_id in gone:
            self._beacons_seen.discard(client_id)
            self._beacon_missing_since.pop(client_id, None)
        return gone

    def _note_beacons(
        self, registered: list[str], connected: set[str], now: datetime
    ) -> dict[str, datetime]:
        """Since when each client whose beacon was seen before has been missing it."""
        for client_id in registered:
            if beacon_name(client_id) in connected:
                self._beacons_seen.add(client_id)
                self._beacon_missing_since.pop(client_id, None)
            elif client_id in self._beacons_seen:
                self._beacon_missing_since.setdefault(client_id, now)
        known = set(registered)
        self._beacons_seen &= known
        for client_id in list(self._beacon_missing_since):
            if client_id not in known:
                del self._beacon_missing_since[client_id]
        return dict(self._beacon_missing_since)

    def _remove_dead_clients(
        self, alive_since: datetime, now: datetime, report: SweepReport
    ) -> None:
        with self._engine.begin() as conn:
            for client_id in store.dead_client_ids(conn, alive_since):
                seen = describe_client(conn, client_id)
                why = f"no heartbeat for {self._settings.client_timeout_s:g} s"
                if store.remove_client_if_silent(conn, client_id, alive_since, why, now):
                    self._client_lost(conn, client_id, seen, why, now)
                    report.removed_clients.append(client_id)
                    log.warning(
                        "client %s removed: no heartbeat for %g s",
                        client_id,
                        self._settings.client_timeout_s,
                        extra={"client_id": client_id},
                    )

    def _handle_stale_dispatches(self, now: datetime, report: SweepReport) -> None:
        cutoff = now - timedelta(seconds=self._settings.dispatch_expires_s) - EXPIRY_MARGIN
        with self._engine.connect() as conn:
            stale = store.stale_dispatches(conn, cutoff)
        for task in stale:
            # Entered means it runs and its `started` event is on the way: leave it.
            if self._fence.revoke(task.id, task.attempt):
                reason = (
                    f"attempt {task.attempt} was not started by {task.client_id} within "
                    f"{self._settings.dispatch_expires_s:g} s (the order expired); "
                    "dispatching again"
                )
                self._return(task, reason, now, report)

    def _handle_hung(self, now: datetime, report: SweepReport) -> None:
        with self._engine.connect() as conn:
            in_flight = store.in_flight_tasks(conn)
        for task in in_flight:
            # Scheduler too: an order entered by a worker whose `started` never arrived.
            if task.reported_at is None:
                continue
            limit = task.hung_after(self._settings.hung_timeout_s)
            if now - task.reported_at <= limit:
                continue
            if task.status == TaskStatus.SCHEDULER and (
                self._fence.holder(task.id, task.attempt) is None
            ):
                continue  # not entered: waiting in a queue, the stale-order sweep owns it
            reason = (
                f"hung: no progress or log from {task.client_id} for "
                f"{limit.total_seconds():g} s; marked failed"
            )
            with self._engine.begin() as conn:
                if not store.fail_task(
                    conn, task, reason, now, unchanged_since=task.reported_at,
                    alerting=self._settings.alert_policy,
                ):
                    continue
                kicked = task.client_id is not None and store.count_hung(
                    conn, task.client_id, self._settings.kick_after_hung, now
                )
            report.failed.append(task.id)
            log.warning("task %s: %s", task.id, reason, extra=task_ids(task))
            if kicked and task.client_id is not None:
                report.kicked_clients.append(task.client_id)
                log.warning(
                    "client %s kicked: %d hung runs; it is taken back once it runs "
                    "nothing or restarts",
                    task.client_id,
                    self._settings.kick_after_hung,
                    extra={"client_id": task.client_id},
                )

    def _handle_over_time(self, now: datetime, report: SweepReport) -> None:
        """Runs still Working past their time limit (max_run_s) plus two graces: the worker
        could not stop them (Celery enforces time limits in prefork pools only), so their
        state is set right here; the job itself may go on in its thread."""
        grace = self._settings.time_limit_grace_s
        with self._engine.connect() as conn:
            over = [t for t in store.in_flight_tasks(conn) if t.over_time_limit(now, grace)]
        for task in over:
            reason = (
                f"time limit exceeded after {task.max_run_s} s: still working "
                f"{grace * 2:g} s later, not stopped by {task.client_id} (a threads or solo "
                "pool cannot stop a job); marked failed"
            )
            self._fail(task, reason, now, report)

    def _handle_replace(self, now: datetime, report: SweepReport) -> None:
        """overlap `replace`: a Working run of a replace group whose next slot came is killed
        as `fss task kill` does (asked once: a guarded mark), and the recorder starts the
        slot's run when the run's end is recorded. Where the kill cannot be done (a threads
        or solo pool refuses, no answer), or a
        killed run did not end within the grace, the run is failed here and its late
        events are ignored; the job may go on in its thread."""
        with self._engine.connect() as conn:
            runs = replaceable_runs(conn, now)
        grace = timedelta(seconds=self._settings.time_limit_grace_s)
        for run in runs:
            if run.kill_requested_at is None:
                self._replace(run, now, report)
            elif run.open_task.client_id == BROADCAST_CLIENT:
                continue  # its shards still running past the grace: _handle_shards
            elif now - run.kill_requested_at > grace:
                reason = (
                    f"{replaced_reason(run.slot)}: it did not end within "
                    f"{grace.total_seconds():g} s of its kill; marked failed"
                )
                self._fail(run.open_task, reason, now, report)

    def _replace(self, run: Replaceable, now: datetime, report: SweepReport) -> None:
        reason = replaced_reason(run.slot)
        line = f"replace: slot {clock_time(run.slot)} came while running; kill requested"
        with self._engine.begin() as conn:
            if not request_replace(conn, run, line, now):
                return  # asked already, or the run ended meanwhile
        if run.open_task.client_id == BROADCAST_CLIENT:
            self._kill_shards(run.open_task.id, reason, report)
            return
        # A Python worker answers the kill itself, a gRPC client's bridge for it (`cancel`).
        outcome, detail = self._kill(run.running, reason)
        if outcome is Outcome.SENT:
            report.replaced.append(run.open_task.id)
            log.info("task %s: %s (kill sent)", run.open_task.id, reason,
                     extra=task_ids(run.open_task))
            return
        self._fail(
            run.open_task,
            f"{reason}; not killed ({detail}): marked failed; the job may go on, its late "
            "report is ignored",
            self._clock.now(),
            report,
        )

    # --- broadcast runs: each shard judged on its own -----------------------------------

    def _kill_shards(self, task_id: int, reason: str, report: SweepReport) -> None:
        """overlap `replace` of a broadcast run: kill every running shard; a shard that
        cannot be killed is failed now, the others when they end (or past the grace)."""
        with self._engine.connect() as conn:
            running = shard_store.running_shards(conn, task_id)
        for shard in running:
            outcome, detail = self._kill_shard(shard, reason)
            if outcome is Outcome.SENT:
                continue
            self._fail_shard(
                shard,
                f"{reason}; not killed ({detail}): marked failed; the job may go on, its "
                "late report is ignored",
                self._clock.now(),
                report,
            )
        report.replaced.append(task_id)

    def _kill_shard(self, shard: OpenShard, reason: str) -> tuple[Outcome, str]:
        if shard.client_id is None:
            return Outcome.REFUSED, "the shard has no client"
        return self._kill(shard.running(), reason)

    def _handle_shards(
        self, alive_since: datetime, now: datetime, report: SweepReport, gone: set[str]
    ) -> None:
        """The checks a run gets, for each shard in flight of a broadcast run: its client
        lost, its order not started in time, hung, over its time limit, still running a
        grace after its kill. A failed shard fails alone; its task ends with its last
        shard, and a retry re-runs the shards that failed."""
        with self._engine.connect() as conn:
            shards = shard_store.open_shards(conn)
            if not shards:
                return
            live = set(conn.execute(store.live_client_ids(alive_since)).scalars()) - gone
        expired_before = (
            now - timedelta(seconds=self._settings.dispatch_expires_s) - EXPIRY_MARGIN
        )
        grace_s = self._settings.time_limit_grace_s
        for shard in shards:
            where = f"shard {shard.shard} on {shard.client_id}"
            if shard.client_id not in live:
                started = shard.status == TaskStatus.WORKING
                if not started and not self._fence.revoke(
                    shard.task_id, shard.attempt, shard=shard.shard
                ):
                    started = True
                when = "while running" if started else "before starting"
                self._fail_shard(
                    shard, f"{where}: client {shard.client_id} lost {when} attempt "
                    f"{shard.attempt}; marked failed", now, report,
                )
            elif shard.status == TaskStatus.SCHEDULER:
                sent = shard.dispatched_at
                if sent is not None and sent < expired_before and self._fence.revoke(
                    shard.task_id, shard.attempt, shard=shard.shard
                ):
                    self._fail_shard(
                        shard, f"{where}: not started within "
                        f"{self._settings.dispatch_expires_s:g} s (the order expired); "
                        "marked failed", now, report,
                    )
            elif shard.max_run_s and shard.run_at is not None and now - shard.run_at > (
                timedelta(seconds=shard.max_run_s + 2 * grace_s)
            ):
                self._fail_shard(
                    shard, f"{where}: time limit exceeded after {shard.max_run_s} s: still "
                    f"working {grace_s * 2:g} s later; marked failed", now, report,
                )
            elif shard.kill_requested_at is not None and (
                now - shard.kill_requested_at > timedelta(seconds=grace_s)
            ):
                self._fail_shard(
                    shard, f"{where}: did not end within {grace_s:g} s of its kill; "
                    "marked failed", now, report,
                )
            elif shard.reported_at is not None:
                limit = hung_after(shard.timeout_s, shard.run_speed_avg,
                                   self._settings.hung_timeout_s)
                if now - shard.reported_at > limit:
                    self._fail_shard(
                        shard, f"{where}: hung: no progress or log for "
                        f"{limit.total_seconds():g} s; marked failed", now, report,
                        unchanged_since=shard.reported_at,
                    )

    def _fail_shard(
        self,
        shard: OpenShard,
        reason: str,
        now: datetime,
        report: SweepReport,
        unchanged_since: datetime | None = None,
    ) -> None:
        end = ShardEnd(
            shard.task_id, shard.attempt, shard.shard, False, reason, now,
            unchanged_since=unchanged_since,
        )
        with self._engine.begin() as conn:
            ended, finishes = shard_store.end_shards(conn, [end], now, set())
            if not ended:
                return
            shard_store.log_line(conn, shard, shard_store.ERROR_LEVEL, reason, now)
            finish_tasks(conn, finishes, now, alerting=self._settings.alert_policy)
        report.failed.append(shard.task_id)
        log.warning(
            "task %s: %s", shard.task_id, reason,
            extra={"task_id": shard.task_id, "attempt": shard.attempt,
                   "group_id": shard.group_id, "client_id": shard.client_id},
        )

    def _client_lost(
        self, conn: Connection, client_id: str, seen: str, why: str, now: datetime
    ) -> None:
        self._raise_cluster_alert(
            conn, CLIENT_LOST, client_subject(client_id), f"client {client_id} lost",
            f"{why}; {seen}", now, client_id=client_id,
        )

    def _raise_cluster_alert(
        self,
        conn: Connection,
        rule: str,
        subject: str,
        title: str,
        detail: str,
        now: datetime,
        client_id: str | None = None,
    ) -> None:
        """In the transaction that found the loss: the alert is there exactly when the drop
        committed."""
        policy = self._settings.alert_policy
        if rule not in policy.rules:
            return
        raise_alert(
            conn, rule=rule, subject=subject, title=title, detail=detail, now=now,
            client_id=client_id, repeat_after=policy.repeat_after,
            reopen_within=policy.resolve_hold,
        )

    def _return(self, task: OpenTask, reason: str, now: datetime, report: SweepReport) -> None:
        with self._engine.begin() as conn:
            if store.return_to_waiting(conn, task, reason, now):
                report.redispatched.append(task.id)
                log.warning("task %s: %s", task.id, reason, extra=task_ids(task))

    def _fail(self, task: OpenTask, reason: str, now: datetime, report: SweepReport) -> None:
        with self._engine.begin() as conn:
            if store.fail_task(conn, task, reason, now, alerting=self._settings.alert_policy):
                report.failed.append(task.id)
                log.warning("task %s: %s", task.id, reason, extra=task_ids(task))

    def run(self, stop: threading.Event) -> None:
        backoff = self._settings.supervise_s
        errors = LoopErrors(log, "supervisor", "database")
        if self._health is not None:
            self._health.start()
        while not stop.wait(backoff):
            try:
                self.sweep()
            except Exception as exc:
                if errors.failed(exc, "supervision waits"):
                    self.note_outage()
                if self._health is not None:
                    self._health.failed(exc)
                backoff = min(backoff * 2, 5.0)
                continue
            errors.succeeded()
            if self._health is not None:
                self._health.progressed()
            backoff = self._settings.supervise_s

    def release(self) -> None:
        store.release_lease(self._engine, LEASE_NAME, self._settings.node_name)


def task_ids(task: OpenTask) -> dict[str, object]:
    """What a log line about this task carries (`extra=`): the ids JSON logs show."""
    return {
        "task_id": task.id,
        "attempt": task.attempt,
        "group_id": task.group_id,
        "client_id": task.client_id,
    }
