"""Picks a live client for a due task, moves it None -> Scheduler, and sends the order."""

from __future__ import annotations

import dataclasses
import enum
import heapq
import json
import logging
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.broadcast import ShardPlan, plan_shards
from fss.domain.clock import Clock
from fss.domain.schedule import next_run_at
from fss.domain.selection import BROADCAST, BUILT_ROUTES, LEAST_BUSY, Selector, parse_tags
from fss.errors import InvalidField
from fss.fence import Fence
from fss.orders import RunOrder
from fss.outage import LoopErrors, first_line
from fss.scheduler.publish import OrderMessage, OrderPublisher, time_limit_of
from fss.scheduler.timers import Every
from fss.store import shards, tasks
from fss.store.clients import live_clients
from fss.store.recording import finish_tasks
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
    # Readied ahead of its start_at (dispatch_lead_ms) and held: send_held() sends it then.
    HELD = "held"


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        app: Celery,
        fence: Fence,
        settings: Settings,
        clock: Clock,
        selector: Selector | None = None,
        installation: str = "",
    ) -> None:
        self._engine = engine
        # Named in every order: the worker enters the fence under it.
        self._installation = installation
        self._app = app
        self._fence = fence
        self._settings = settings
        self._clock = clock
        self._selector = selector or Selector()
        self._clients: list[ClientRow] = []
        # Parsed `tags` of the cached clients, made once per cache refresh.
        self._client_tags: dict[str, frozenset[str]] = {}
        # least_busy: runs this dispatcher sent to a client after its last heartbeat was
        # recorded (the heartbeat's count cannot include them yet), {client id: [sent at]}.
        self._sent_since_beat: dict[str, list[datetime]] = {}
        # Groups told once that their route is not built / not known.
        self._route_warned: set[int] = set()
        # Connection errors are an outage (one line each way); anything else is an ERROR.
        self._broker = LoopErrors(log, "dispatcher", "broker")
        self._clients_refresh = Every(CLIENT_CACHE_S)
        self._publisher = OrderPublisher(app)
        # Claims whose dispatch was taken back after a failed send, as they now stand in SQL
        # (the attempt moved on): retry_form() hands them to the wheel's retry.
        self._taken_back: dict[int, ClaimedTask] = {}
        # Orders readied before their start_at, sent by send_held() when it comes:
        # (start_at, task id, claim, client), a heap.
        self._held: list[tuple[datetime, int, ClaimedTask, ClientRow]] = []

    def retry_form(self, claimed: ClaimedTask) -> ClaimedTask:
        """The claim to retry after a FAILED outcome: with the attempt the last dispatch
        burned when its send was taken back, so the retry arms the next attempt instead of
        being refused by the revoked one."""
        return self._taken_back.pop(claimed.id, claimed)

    def dispatch(self, claimed: ClaimedTask) -> Outcome:
        return self.dispatch_many([claimed])[claimed.id]

    def dispatch_many(self, due: list[ClaimedTask]) -> dict[int, Outcome]:
        """Dispatch tasks due at the same moment: one Redis round trip arms their fences,
        one transaction moves them, one producer sends them (20 due at once go out in a few
        milliseconds, not one after the other)."""
        self._taken_back.clear()
        now = self._clock.now()
        outcomes: dict[int, Outcome] = {}
        ready: list[tuple[ClaimedTask, ClientRow]] = []
        for claimed in due:
            if self._missed(claimed, now):
                outcomes[claimed.id] = self._skip(claimed, now)
                continue
            if claimed.route == BROADCAST:
                outcomes[claimed.id] = self._broadcast(claimed, now)
                continue
            client = self._choose_client(claimed, now)
            if client is None:
                self._warn_no_client(claimed, now)
                outcomes[claimed.id] = Outcome.NO_CLIENT
            else:
                ready.append((claimed, client))
        if not ready:
            return outcomes
        try:
            # Arm first: it also proves Redis is reachable before any SQL is written, so a
            # broker outage does not burn attempts.
            # The armed attempt lapses with the order's expiry, counted by the fence's
            # clock: a worker whose own clock is fast still runs what it is sent in time.
            refused = self._fence.arm_many(
                [(claimed.id, claimed.attempt + 1) for claimed, _ in ready],
                ttl_s=self._settings.dispatch_expires_s,
                # A retry follows an attempt that ended failed: its entry is no run to keep.
                replacing={claimed.id for claimed, _ in ready if claimed.retrying},
            )
        except Exception as exc:
            self._broker.failed(exc, "due tasks wait")
            outcomes.update({claimed.id: Outcome.FAILED for claimed, _ in ready})
            return outcomes
        ready = self._drop_refused(ready, set(refused), outcomes)
        won = self._mark_dispatched(ready, now, outcomes)
        # Never sent before its planned time: a task readied ahead waits here for it.
        sent_now = self._clock.now()
        due_now: list[tuple[ClaimedTask, ClientRow]] = []
        for claimed, client in won:
            if claimed.start_at > sent_now:
                heapq.heappush(self._held, (claimed.start_at, claimed.id, claimed, client))
                outcomes[claimed.id] = Outcome.HELD
            else:
                due_now.append((claimed, client))
        self._send_all(due_now, sent_now, outcomes)
        return outcomes

    def next_held_at(self) -> datetime | None:
        """When the first held order is due to be sent; None when none is held."""
        return self._held[0][0] if self._held else None

    def held(self) -> int:
        return len(self._held)

    def send_held(self, now: datetime) -> tuple[list[ClaimedTask], dict[int, Outcome]]:
        """Send the held orders whose start_at came: their claims and outcomes (SENT, or
        FAILED / LOST for a send that failed, as dispatch_many's)."""
        due: list[tuple[ClaimedTask, ClientRow]] = []
        while self._held and self._held[0][0] <= now:
            _, _, claimed, client = heapq.heappop(self._held)
            due.append((claimed, client))
        outcomes: dict[int, Outcome] = {}
        if due:
            self._send_all(due, now, outcomes)
        return [claimed for claimed, _ in due], outcomes

    def take_back_held(self) -> int:
        """Undo every held order (this node stands down: its broker is not its
        installation's): revoked and back to waiting, for whichever node claims it."""
        held, self._held = self._held, []
        for _, _, claimed, _ in held:
            self._take_back(claimed)
        self._taken_back.clear()
        return len(held)

    def _warn_no_client(self, claimed: ClaimedTask, now: datetime) -> None:
        why = None
        if claimed.client_tag is not None:
            why = (
                f"no live client with tag {claimed.client_tag!r} has registered job "
                f"{claimed.job_name!r}; the task waits until one does"
            )
        with self._engine.begin() as conn:
            if tasks.warn_no_client_once(conn, claimed, now, why):
                log.warning(
                    "task %s waits: no live client runs job %r%s",
                    claimed.id,
                    claimed.job_name,
                    "" if claimed.client_tag is None else f" with tag {claimed.client_tag!r}",
                    extra={"task_id": claimed.id, "group_id": claimed.group_id},
                )

    def _mark_dispatched(
        self,
        ready: list[tuple[ClaimedTask, ClientRow]],
        now: datetime,
        outcomes: dict[int, Outcome],
    ) -> list[tuple[ClaimedTask, ClientRow]]:
        if not ready:
            return []
        # A task readied ahead of its start_at is stamped dispatched at start_at, when it is
        # sent (mark_dispatched_many: the later of now and start_at).
        items = [(claimed, DispatchTarget(c.id, c.host, c.ip)) for claimed, c in ready]
        with self._engine.begin() as conn:
            moved = tasks.mark_dispatched_many(conn, items, self._settings.node_name, now)
        won = []
        for claimed, client in ready:
            if claimed.id in moved:
                won.append((claimed, client))
            else:
                outcomes[claimed.id] = Outcome.LOST
        return won

    def _send_all(
        self,
        won: list[tuple[ClaimedTask, ClientRow]],
        now: datetime,
        outcomes: dict[int, Outcome],
    ) -> None:
        """Publish the tick's orders through one producer (on Redis up to 64 orders per
        round trip); every order not known to be out is taken back."""
        if not won:
            return

        def sent(message: OrderMessage) -> None:
            outcomes[message.order.task_id] = Outcome.SENT

        try:
            with self._app.producer_or_acquire() as producer:
                try:
                    sent_at = self._clock.now()
                    messages = (self._message(c, client, now, sent_at) for c, client in won)
                    self._publisher.publish(producer, messages, on_sent=sent)
                except Exception as exc:  # the rest is not tried: one wait on a failed broker
                    self._broker.failed(exc, "due tasks wait")
        except Exception as exc:  # no producer at all
            self._broker.failed(exc, "due tasks wait")
        failed = [claimed for claimed, _ in won if outcomes.get(claimed.id) is None]
        if not failed:
            self._broker.succeeded()
            return
        for claimed in failed:
            outcomes[claimed.id] = self._take_back(claimed)

    def _take_back(self, claimed: ClaimedTask) -> Outcome:
        """A send that raised may still have delivered the order: close the attempt to workers
        first, and undo the dispatch only if no worker entered it."""
        attempt = claimed.attempt + 1
        try:
            revoked = self._fence.revoke(claimed.id, attempt)
        except Exception as exc:
            # Unknown whether a worker entered it: the stale-dispatch sweep revokes it later.
            self._broker.failed(exc, "due tasks wait")
            return Outcome.LOST
        if not revoked:
            log.info(
                "task %s: attempt %s was delivered after all; it runs",
                claimed.id,
                attempt,
                extra={"task_id": claimed.id, "attempt": attempt, "group_id": claimed.group_id},
            )
            return Outcome.SENT
        lease_until = self._clock.now() + timedelta(seconds=self._settings.lease_s)
        with self._engine.begin() as conn:
            undone = tasks.undo_dispatch(
                conn, claimed.id, attempt, self._settings.node_name, lease_until
            )
        if undone:
            # Back to waiting at `attempt`, still claimed by this node: that is the claim
            # the wheel's retry must carry (the old one is refused by the revoked attempt).
            self._taken_back[claimed.id] = dataclasses.replace(claimed, attempt=attempt)
        return Outcome.FAILED

    @staticmethod
    def _drop_refused(
        ready: list[tuple[ClaimedTask, ClientRow]],
        refused: set[int],
        outcomes: dict[int, Outcome],
    ) -> list[tuple[ClaimedTask, ClientRow]]:
        """Tasks whose fence holds an entered or newer attempt are not dispatched again."""
        for claimed, _ in ready:
            if claimed.id in refused:
                log.warning(
                    "task %s: not dispatching attempt %s, a worker holds an attempt of it",
                    claimed.id,
                    claimed.attempt + 1,
                    extra={"task_id": claimed.id, "group_id": claimed.group_id},
                )
                outcomes[claimed.id] = Outcome.LOST
        return [(claimed, client) for claimed, client in ready if claimed.id not in refused]

    def _order(
        self, claimed: ClaimedTask, client: ClientRow, shard: tuple[int, int] = (0, 0)
    ) -> RunOrder:
        return RunOrder(
            task_id=claimed.id,
            attempt=claimed.attempt + 1,
            group_id=claimed.group_id,
            job_name=claimed.job_name,
            client_id=client.id,
            start_at=claimed.start_at,
            data=json.loads(claimed.data or "{}"),
            installation=self._installation,
            shard_index=shard[0],
            shard_total=shard[1],
        )

    # --- broadcast: one order per live client, each a shard with a fence of its own ------

    def _broadcast(self, claimed: ClaimedTask, now: datetime) -> Outcome:
        """Send the attempt's shards: on a first attempt one per live client serving the
        job (and having the group's tag), on a retry the shards that failed, over the
        clients live now (fss.domain.broadcast.plan_shards)."""
        able = self._able_clients(claimed, now)
        candidates = self._freshest(able, now)
        total: int | None = None
        succeeded: set[int] = set()
        if claimed.attempt > 0:
            with self._engine.connect() as conn:
                total = shards.shard_total(conn, claimed.id)
                if total is not None:
                    succeeded = shards.succeeded_shards(conn, claimed.id)
        plan = plan_shards(list(candidates), total, succeeded)
        if plan is None:
            self._warn_no_client(claimed, now)
            return Outcome.NO_CLIENT
        attempt = claimed.attempt + 1
        shard_ids = [shard for shard, _ in plan.assignments]
        try:
            refused = self._fence.arm_shards(
                claimed.id, attempt, shard_ids, ttl_s=self._settings.dispatch_expires_s,
                replacing=claimed.retrying,
            )
        except Exception as exc:
            self._broker.failed(exc, "due tasks wait")
            return Outcome.FAILED
        if refused:
            log.warning(
                "task %s: not dispatching attempt %s, a worker holds shard(s) %s of it",
                claimed.id, attempt, refused,
                extra={"task_id": claimed.id, "group_id": claimed.group_id},
            )
            return Outcome.LOST
        targets = {c.id: DispatchTarget(c.id, c.host, c.ip) for c in candidates.values()}
        with self._engine.begin() as conn:
            moved = shards.mark_dispatched_shards(
                conn, claimed, self._settings.node_name, plan, targets, now
            )
        if not moved:
            return Outcome.LOST
        self._send_shards(claimed, plan, candidates, now)
        return Outcome.SENT

    def _send_shards(
        self,
        claimed: ClaimedTask,
        plan: ShardPlan,
        clients: dict[str, ClientRow],
        now: datetime,
    ) -> None:
        """Publish one order per shard; a shard whose order is not known to be out and that
        nobody entered fails ("could not be sent"), and its task ends once its other shards
        do (a retry, if the group has any, re-runs it)."""
        sent: set[int] = set()
        error = "unknown error"
        try:
            with self._app.producer_or_acquire() as producer:
                sent_at = self._clock.now()
                messages = [
                    self._message(
                        claimed, clients[client_id], now, sent_at, (shard, plan.total)
                    )
                    for shard, client_id in plan.assignments
                ]
                self._publisher.publish(
                    producer, messages, on_sent=lambda m: sent.add(m.order.shard_index)
                )
        except Exception as exc:
            error = first_line(exc)
            self._broker.failed(exc, "due tasks wait")
        unsent = [shard for shard, _ in plan.assignments if shard not in sent]
        if not unsent:
            self._broker.succeeded()
            return
        attempt = claimed.attempt + 1
        ends = []
        for shard in unsent:
            try:
                if not self._fence.revoke(claimed.id, attempt, shard=shard):
                    continue  # delivered after all: it runs
            except Exception:
                continue  # unknown: the supervisor's stale-shard check settles it
            ends.append(
                shards.ShardEnd(
                    claimed.id, attempt, shard, False,
                    f"the order could not be sent ({error})", self._clock.now(),
                )
            )
        if not ends:
            return
        at = self._clock.now()
        with self._engine.begin() as conn:
            _, finishes = shards.end_shards(conn, ends, at, set())
            finish_tasks(conn, finishes, at, alerting=self._settings.alert_policy)

    def _missed(self, claimed: ClaimedTask, now: datetime) -> bool:
        """Only a first attempt can be a misfire: a task put back after a lost worker or a
        failed send (attempt > 0) was on time when it was first dispatched; a backfill run
        (fss group backfill) is due at its past slot on purpose."""
        if claimed.misfire != "skip" or claimed.attempt > 0 or claimed.kind == "backfill":
            return False
        return (now - claimed.start_at).total_seconds() > self._settings.misfire_grace_s

    def _skip(self, claimed: ClaimedTask, now: datetime) -> Outcome:
        next_at = next_run_at(claimed.schedule, claimed.start_at, now)
        with self._engine.begin() as conn:
            moved = tasks.skip_missed(conn, claimed, self._settings.node_name, next_at, now)
        if moved:
            log.info(
                "task %s: missed run skipped (misfire=skip); next at %s",
                claimed.id,
                next_at.isoformat(),
                extra={"task_id": claimed.id, "group_id": claimed.group_id},
            )
        return Outcome.SKIPPED if moved else Outcome.LOST

    def _message(
        self,
        claimed: ClaimedTask,
        client: ClientRow,
        now: datetime,
        sent_at: datetime,
        shard: tuple[int, int] = (0, 0),
    ) -> OrderMessage:
        order = self._order(claimed, client, shard)
        # A late order still gets its full time to be taken: the expiry counts from the
        # dispatch (now), not from the start_at it missed.
        expires = max(now, order.start_at) + timedelta(seconds=self._settings.dispatch_expires_s)
        # With a fence the armed attempt lapses at the expiry on Redis' clock; Celery's
        # `expires` is compared with the worker's clock, and a worker 30 s fast would discard
        # every order on arrival. Without a fence it is the only guard against a late run.
        return self._publisher.message(
            order,
            client.queue,
            expires,
            sent_at,
            expires_header=not self._fence.keeps_expiry,
            time_limit=time_limit_of(claimed.max_run_s, self._settings.time_limit_grace_s),
        )

    def _choose_client(self, claimed: ClaimedTask, now: datetime) -> ClientRow | None:
        """The live client that takes the run, by the group's route, among the clients that
        registered its job (and have its client tag): from the client cache, no query."""
        able = self._able_clients(claimed, now)
        candidates = self._freshest(able, now)
        route = claimed.route
        if route not in BUILT_ROUTES:
            self._warn_route_once(claimed)
        loads = self._loads(candidates) if route == LEAST_BUSY else None
        try:
            chosen = self._selector.pick(
                route, claimed.job_name, claimed.group_id, list(candidates), loads,
                claimed.client_tag,
            )
        except InvalidField:
            return None  # an unknown route: the task waits (said once by _warn_route_once)
        if chosen is None:
            return None
        if route == LEAST_BUSY:
            self._sent_since_beat.setdefault(chosen, []).append(now)
        return able[chosen]

    def _able_clients(self, claimed: ClaimedTask, now: datetime) -> dict[str, ClientRow]:
        self._refresh_clients(now)
        able = self._able(claimed.job_name, claimed.client_tag)
        if not able:
            # A client may have registered since the cache was read: look once more.
            self._refresh_clients(now, force=True)
            able = self._able(claimed.job_name, claimed.client_tag)
        return able

    def _able(self, job_name: str, tag: str | None) -> dict[str, ClientRow]:
        if tag is None:
            return {c.id: c for c in self._clients if c.dispatchable and job_name in c.job_names}
        return {
            c.id: c
            for c in self._clients
            if c.dispatchable and job_name in c.job_names and tag in self._client_tags[c.id]
        }

    def _loads(self, candidates: dict[str, ClientRow]) -> dict[str, int]:
        """Runs each client has: what its last heartbeat counted, plus what this dispatcher
        sent it since that heartbeat was recorded (groups due together spread out instead of
        all going to the client that was idle at its last heartbeat)."""
        loads = {}
        for client_id, client in candidates.items():
            sent = self._sent_since_beat.get(client_id, ())
            unseen = sum(1 for at in sent if at >= client.heartbeat_at)
            loads[client_id] = client.active_runs + unseen
        return loads

    def _warn_route_once(self, claimed: ClaimedTask) -> None:
        if claimed.group_id in self._route_warned:
            return
        self._route_warned.add(claimed.group_id)
        log.error(
            "group %s: unknown route %r; its runs wait",
            claimed.group_id,
            claimed.route,
            extra={"group_id": claimed.group_id},
        )

    def _freshest(self, able: dict[str, ClientRow], now: datetime) -> dict[str, ClientRow]:
        """Prefer clients heard from within a few heartbeats: a client killed a moment ago
        stays 'alive' for the whole liveness timeout, and orders sent to it wait that long."""
        recent = now - timedelta(seconds=FRESH_HEARTBEATS * self._settings.heartbeat_s)
        fresh = {k: c for k, c in able.items() if c.heartbeat_at >= recent}
        return fresh or able

    def _refresh_clients(self, now: datetime, force: bool = False) -> None:
        if not (force or self._clients_refresh.due(now)):
            return
        since = now - timedelta(seconds=self._settings.client_timeout_s)
        with self._engine.connect() as conn:
            self._clients = live_clients(conn, since)
        self._client_tags = {c.id: parse_tags(c.tags) for c in self._clients}
        self._forget_counted_sends()
        self._clients_refresh.done(now)

    def _forget_counted_sends(self) -> None:
        """Drop least_busy's sends that the clients' recorded heartbeats now count."""
        if not self._sent_since_beat:
            return
        beats = {c.id: c.heartbeat_at for c in self._clients}
        kept = {}
        for client_id, sent in self._sent_since_beat.items():
            beat = beats.get(client_id)
            recent = [at for at in sent if beat is not None and at >= beat]
            if recent:
                kept[client_id] = recent
        self._sent_since_beat = kept
