"""Consumes worker events from the durable queues and writes them to SQL.

Two consumers run side by side: task events (fss.events) are written in batches, client
events (fss.clients: heartbeats, unregistrations) as soon as they come, in their own small
transactions, so a backlog of task events never makes a live client look silent.

Decoding, validating and writing are per event: an event that cannot be recorded is set
aside in the dead_letter table with its reason and raw body, and every other event of its
message is recorded. Messages are acked only after their events have committed, so a
recorder killed mid-batch loses nothing: the broker hands the messages to another recorder,
and the guarded writes make the replay harmless.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kombu.connection import Connection
from kombu.entity import Queue
from kombu.exceptions import MessageStateError
from kombu.message import ACK_STATES, Message
from kombu.messaging import Consumer
from kombu.transport.virtual.base import QoS as VirtualQoS
from kombu.utils.json import dumps, loads
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fss.celery_app import broker_transport_options, is_redis_broker, transport_for
from fss.channels import EVENTS_REDIS_OPTIONS, clients_queue, events_queue
from fss.config import Settings
from fss.domain.clock import Clock
from fss.events import Event, Rejected, TaskFinished, decode_events, reason_of, to_dict
from fss.outage import LoopErrors
from fss.scheduler.health import LoopTracker, NodeHealth
from fss.store.dead_letters import add_dead_letters, new_dead_letter
from fss.store.deadlocks import deadlock_pause, is_deadlock
from fss.store.recording import ClaimNext, RecordStats, record
from fss.store.tasks import ClaimedTask

log = logging.getLogger(__name__)

# How long the client consumer waits for a message before looking at its stop flag.
CLIENT_DRAIN_S = 0.5
# How long an idle task consumer waits for a message before looking at its stop flag.
IDLE_DRAIN_S = 0.2
# With events in hand, a queue that yields nothing for this long counts as drained: write
# them at once. Batches still form under load, from what arrives while a batch is written
# (up to recorder_flush_ms or event_batch), but a lone `finished` never waits for a window.
DRAINED_AFTER_S = 0.001
# Redis: how soon an empty queue is looked at again, first and at most (see _drain).
POLL_FIRST_S = 0.001
POLL_IDLE_S = 0.02
# A consumer loop that completes no pass this long (a write held by a database that hangs)
# marks the node unhealthy.
RECORDER_STUCK_AFTER_S = 30.0
MAX_LOGGED_REASON = 300


@dataclass
class _Pending:
    message: Message | Taken
    events: list[Event]
    rejected: list[Rejected]
    done: bool = False


@dataclass
class _Totals:
    """What both consumers recorded, added under a lock (they run in two threads)."""

    stats: RecordStats = field(default_factory=RecordStats)
    dead_letters: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, stats: RecordStats, dead_letters: int) -> None:
        with self._lock:
            for name in vars(stats):
                setattr(self.stats, name, getattr(self.stats, name) + getattr(stats, name))
            self.dead_letters += dead_letters


class Recorder:
    """Records task events in batches and client events on their own fast path."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        on_finished: Callable[[], None] | None = None,
        before_task_write: Callable[[], None] | None = None,
        health: NodeHealth | None = None,
        on_claimed: Callable[[list[ClaimedTask]], None] | None = None,
        installation: str = "",
    ) -> None:
        """`before_task_write` runs before each write of task events (a seam for tests that
        hold the task path back; it must not delay client events). `health` hears how both
        consumer loops fare, for the node's `unhealthy_reason`. With `on_claimed`, a
        finished run's next task due within the look-ahead is created claimed by this node
        (settings.node_name) and handed to `on_claimed` once committed: the scheduler fires
        it from its wheel without a claim round trip."""
        health = health or NodeHealth()
        self._totals = _Totals()
        common: dict[str, Any] = {
            "engine": engine,
            "settings": settings,
            "clock": clock,
            "totals": self._totals,
            "on_finished": on_finished or (lambda: None),
            "installation": installation,
        }
        flush_s = settings.recorder_flush_ms / 1000
        self._tasks = QueueRecorder(
            queue=events_queue(),
            flush_s=flush_s,
            drain_s=IDLE_DRAIN_S,
            drained_after_s=DRAINED_AFTER_S,
            before_write=before_task_write or (lambda: None),
            on_claimed=on_claimed,
            health=health.tracker("recorder (task events)", RECORDER_STUCK_AFTER_S),
            **common,
        )
        self._clients = QueueRecorder(
            queue=clients_queue(),
            flush_s=0.0,
            drain_s=CLIENT_DRAIN_S,
            health=health.tracker("recorder (client events)", RECORDER_STUCK_AFTER_S),
            **common,
        )

    @property
    def totals(self) -> RecordStats:
        return self._totals.stats

    @property
    def dead_letters(self) -> int:
        return self._totals.dead_letters

    @property
    def holding(self) -> bool:
        """True while client events wait for the database: heartbeats are not being written,
        so nobody may be judged silent. A backlog of task events does not count."""
        return self._clients.holding

    def run(self, stop: threading.Event) -> None:
        clients = threading.Thread(
            target=self._clients.run, args=(stop,), name="fss-recorder-clients", daemon=True
        )
        clients.start()
        self._tasks.run(stop)  # returns once stop is set, as the client path's loop does
        clients.join(timeout=10)


# How long kombu's restore mutex outlives a recorder killed while holding it. kombu's
# default is 300 s: every restore of every recorder waited 5 minutes, and a dead
# scheduler's `finished` with them. A sweep holds it for a few Redis round trips.
RESTORE_MUTEX_EXPIRE_S = 3


def events_transport_options(settings: Settings) -> dict[str, Any]:
    """The transport options of the recorder's consumers of the event queues."""
    options = dict(broker_transport_options(settings))
    if is_redis_broker(settings.broker_url):
        options.update(EVENTS_REDIS_OPTIONS)
        options["unacked_mutex_expire"] = RESTORE_MUTEX_EXPIRE_S
    return options


def split_foreign(events: list[Event], installation: str) -> tuple[list[Event], list[Rejected]]:
    """The events of this installation (or unstamped, from older senders), and the others
    set aside: a run of another installation sharing the broker, or of the database this
    one replaced, whose task ids may equal ours."""
    ours: list[Event] = []
    foreign: list[Rejected] = []
    for event in events:
        stamped = getattr(event, "installation", "")
        if stamped and stamped != installation:
            reason = (
                f"event of installation {stamped}, this database is installation "
                f"{installation}"
            )
            foreign.append(Rejected(reason, to_dict(event)))
        else:
            ours.append(event)
    return ours, foreign


class QueueRecorder:
    """Consumes one queue and records its events, a batch of messages at a time."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        queue: Queue,
        flush_s: float,
        drain_s: float,
        totals: _Totals,
        on_finished: Callable[[], None],
        health: LoopTracker,
        before_write: Callable[[], None] = lambda: None,
        drained_after_s: float | None = None,
        on_claimed: Callable[[list[ClaimedTask]], None] | None = None,
        installation: str = "",
    ) -> None:
        """`drained_after_s`: with events in hand, wait this long for more and write them
        when none comes (None: wait for the flush window, `flush_s`). `installation`: events
        stamped with another installation's id are set aside, never applied."""
        self._engine = engine
        self._installation = installation
        self._health = health
        self._settings = settings
        self._alerting = settings.alert_policy
        self._clock = clock
        self._queue = queue
        self._flush_s = flush_s
        self._drain_s = drain_s
        self._totals = totals
        self._on_finished = on_finished
        self._before_write = before_write
        self._drained_after_s = drained_after_s
        self._on_claimed = on_claimed
        self._pending: list[_Pending] = []
        self._first_pending_at = 0.0
        self._poll_s = POLL_FIRST_S
        # True while a batch waits for the database to come back.
        self.holding = False
        # Connection errors are an outage (one line down, one back); anything else is a
        # bug, logged with its traceback at most once a minute.
        self._errors = LoopErrors(log, f"recorder, {queue.name}", "broker")

    def run(self, stop: threading.Event) -> None:
        backoff = 0.2
        self._health.start()
        while not stop.is_set():
            try:
                self._consume(stop)
                backoff = 0.2
            except Exception as exc:  # whatever it was, reconnect: the broker redelivers
                self._errors.failed(exc, "events wait in the queue; reconnecting")
                self._health.failed(exc)
            self._pending.clear()  # unacked: the broker redelivers them
            stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _consume(self, stop: threading.Event) -> None:
        with Connection(
            self._settings.broker_url,
            transport=transport_for(self._settings.broker_url),
            transport_options=events_transport_options(self._settings),
        ) as conn:
            channel = conn.channel()
            self._errors.succeeded()
            channel.basic_qos(0, self._settings.event_batch * 2, False)
            with Consumer(
                channel,
                queues=[self._queue],
                on_message=self._receive,
                on_decode_error=self._undecodable,
                accept=["json"],
            ) as consumer:
                taker = WaitingTaker(
                    channel, consumer, self._queue.name, on_body=self._receive_body
                )
                restore_due = time.monotonic() + RESTORE_EVERY_S
                while not stop.is_set():
                    if time.monotonic() >= restore_due:
                        restore_stale(channel)
                        restore_due = time.monotonic() + RESTORE_EVERY_S
                    drained = self._drain(conn, taker)
                    if self._pending and (drained or self._should_flush()):
                        self._write_pending(stop)
                    if not self.holding:
                        self._health.progressed()
                if self._pending:
                    self._write_pending(stop)

    def _drain(self, conn: Connection, taker: WaitingTaker) -> bool:
        """Take what is waiting, else wait for more; True if the queue looks drained with
        events in hand.

        On Redis every message comes through the Lua take, which moves it onto kombu's
        unacked list in the same step; the queue is never read with BRPOP. A BRPOP pops a
        message before kombu records it as unacked, and a consumer killed in between (its
        socket not yet closed when the server answers) lost it for good: bench.failover saw a
        worker's `finished` published 5 ms after the scheduler's kill -9 vanish, and the
        group stopped. The take is polled instead, 1 ms after an empty one and backing off
        to POLL_IDLE_S; under load it never comes back empty. (The clients queue, whose
        recorder writes at once, polls the same way.)"""
        # With events in hand: how long a queue yielding nothing counts as drained.
        drained_after_s = self._drained_after_s if self._pending else None
        if taker.enabled:
            room = self._settings.event_batch - len(self._pending)
            if room <= 0:
                return True
            if taker.take(room):
                self._poll_s = POLL_FIRST_S
                return False
            if drained_after_s is not None:
                # As a BRPOP with this timeout would: give the workers a moment to add to
                # the batch (fewer, larger transactions under load), then write it.
                time.sleep(drained_after_s)
                return not taker.take(room)
            time.sleep(self._poll_s)
            self._poll_s = min(self._poll_s * 2, POLL_IDLE_S)
            return False
        # Other transports: kombu's consumer (AMQP brokers keep a delivered message unacked).
        try:
            conn.drain_events(timeout=self._drain_s if drained_after_s is None else drained_after_s)
        except TimeoutError:
            return drained_after_s is not None
        return False

    # Receiving: every message is kept, its bad events beside its good ones.

    def _receive(self, message: Message) -> None:
        try:
            body = message.decode()
        except Exception as exc:
            self._undecodable(message, exc)
            return
        self._receive_body(message, body)

    def _receive_body(self, message: Message | Taken, body: Any) -> None:
        events, rejected = decode_events(body)
        if self._installation:
            events, foreign = split_foreign(events, self._installation)
            rejected.extend(foreign)
        self._keep(_Pending(message, events, rejected))

    def _undecodable(self, message: Any, exc: Exception) -> None:
        """A body that is no JSON (or of a content type not accepted), or an item on the
        queue that is no kombu message at all: set aside whole."""
        if not isinstance(message, Message):  # the transport could not even build a message
            log.error("unreadable message on %s: %s", self._queue.name, reason_of(exc))
            return
        if isinstance(exc, Unreadable):  # an item on the list that is no kombu message
            rejected = Rejected(exc.reason, exc.raw)
        else:
            kind = message.content_type or "untyped"
            rejected = Rejected(f"undecodable {kind} body: {reason_of(exc)}", message.body)
        self._keep(_Pending(message, [], [rejected]))

    def _keep(self, pending: _Pending) -> None:
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append(pending)

    def _should_flush(self) -> bool:
        if len(self._pending) >= self._settings.event_batch:
            return True
        return time.monotonic() - self._first_pending_at >= self._flush_s

    # Writing: the whole batch at once; what the database refuses, apart.

    def _write_pending(self, stop: threading.Event) -> None:
        batch, self._pending = self._pending, []
        self._before_write()
        backoff = 0.2
        announced = False
        deadlocks = 0
        while batch:
            try:
                self._write_isolating(batch)
                break
            except AckFailed:
                raise  # the broker went away: reconnect; it redelivers what was not acked
            except Exception as exc:
                if not is_transient(exc):
                    raise
                batch = [p for p in batch if not p.done]
                if is_deadlock(exc):
                    # Another writer (a recorder, a group delete) won: the database is fine.
                    # Retry at once, after a short random pause, with no outage announced.
                    deadlocks += 1
                    log.warning(
                        "deadlock writing events (recorder, %s), retry %d: %s",
                        self._queue.name,
                        deadlocks,
                        reason_of(exc)[:MAX_LOGGED_REASON],
                    )
                    if stop.wait(deadlock_pause(min(deadlocks, 10))):
                        raise ConnectionError("stopping with unwritten events") from exc
                    continue
                self.holding = True
                if not announced:
                    log.warning(
                        "database (recorder, %s) unreachable (%s); holding %d messages",
                        self._queue.name,
                        reason_of(exc),
                        len(batch),
                    )
                    announced = True
                if stop.wait(backoff):
                    self.holding = False
                    raise ConnectionError("stopping with unwritten events") from exc
                backoff = min(backoff * 2, 5.0)
        self.holding = False
        if announced:
            log.warning(
                "database (recorder, %s) is back; recorded the delayed messages", self._queue.name
            )

    def _write_isolating(self, batch: list[_Pending]) -> None:
        """Commit the batch; if the database refuses it, message by message, then event by
        event, so only the events it refuses are set aside. Transient errors propagate."""
        try:
            self._commit(batch)
        except AckFailed:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(batch) == 1:
                self._write_event_by_event(batch[0])
                return
            for pending in batch:
                if not pending.done:
                    self._write_isolating([pending])

    def _write_event_by_event(self, pending: _Pending) -> None:
        refused: list[Rejected] = []
        for event in pending.events:
            try:
                self._transaction([event], [])
            except Exception as exc:
                if is_transient(exc):
                    raise
                reason = f"the database refused it: {reason_of(exc)}"
                refused.append(Rejected(reason, to_dict(event)))
        # Until the refused events are stored as dead letters, the message stays unacked:
        # on a retry the events written above are replayed, which changes nothing.
        settled = _Pending(pending.message, [], [*pending.rejected, *refused])
        try:
            self._commit([settled])
        except AckFailed:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            raise DeadLettersRefused(reason_of(exc)) from exc
        pending.done = True

    def _commit(self, batch: Sequence[_Pending]) -> None:
        """One transaction for the batch's events and dead letters, then the acks."""
        rejected = [r for p in batch for r in p.rejected]
        self._transaction([e for p in batch for e in p.events], rejected)
        try:
            ack_all([pending.message for pending in batch])
        except Exception as exc:
            raise AckFailed(reason_of(exc)) from exc
        for pending in batch:
            pending.done = True
        for item in rejected:
            log.error(
                "event set aside in dead_letter (%s): %s",
                self._queue.name,
                item.reason[:MAX_LOGGED_REASON],
                extra=ids_in(item.raw),
            )

    def _transaction(self, events: list[Event], rejected: list[Rejected]) -> None:
        letters = [new_dead_letter(r.reason, r.raw) for r in rejected]
        claim_next: ClaimNext | None = None
        with self._engine.begin() as conn:
            now = self._clock.now()
            if self._on_claimed is not None:
                claim_next = ClaimNext(
                    self._settings.node_name,
                    lease_until=now + timedelta(seconds=self._settings.lease_s),
                    horizon=now + timedelta(seconds=self._settings.lookahead_s),
                )
            stats = (
                record(conn, events, now, claim_next, self._alerting) if events else RecordStats()
            )
            add_dead_letters(conn, self._queue.name, letters, now)
        self._totals.add(stats, len(letters))
        if claim_next is not None and claim_next.claimed and self._on_claimed is not None:
            self._on_claimed(claim_next.claimed)  # committed: they are this node's claims
        if any(isinstance(e, TaskFinished) for e in events):
            self._on_finished()


# kombu's Redis transport emulates acks: a consumed message sits in an "unacked" hash (its
# payload, exchange and routing key) and index (a sorted set scored by the time it was taken)
# until it is acked; a consumer that dies holding it leaves it there, and a sweep
# (`QoS.restore_visible`, restore_stale below) puts back every entry older than the
# visibility timeout. kombu pays two round trips to take one message (BRPOP, then a
# pipeline that records it as unacked) and one to ack it. WaitingTaker and ack_all do the
# same bookkeeping for many messages in one round trip, writing exactly the entries kombu
# writes, so its sweep and its restore on close treat them as its own. Any other transport,
# or a kombu whose internals differ, takes the ordinary path.

# How often a recorder puts back what a killed consumer held (kombu's Redis transport does it
# only when a poll comes back empty, every Nth time: a busy events queue held a dead
# scheduler's `finished` event back for minutes, and its group stood still meanwhile).
RESTORE_EVERY_S = 1.0

# Moves up to ARGV[1] items from the queue's lists (KEYS[3..], highest priority first, the
# order of kombu's BRPOP) into the unacked index (KEYS[1], score ARGV[2]) and hash (KEYS[2]),
# as kombu's QoS.append records one: one atomic step per item, so no moment exists in which
# an item is in neither place (kombu's own BRPOP-then-pipeline has one). Returns
# {tag, item, tag, item, ...}.
#
# Every item at the tail is taken, whatever it is: one that is not a kombu envelope this
# script can file (not JSON, no string delivery tag or routing, a tag already unacked, bytes
# that are not UTF-8 or raw control characters, which kombu's restore could not read back)
# is wrapped, hex-encoded, in an envelope of content type UNREADABLE_CONTENT_TYPE under a
# fresh tag (ARGV[3] .. n) and filed like any other. Leaving it in the queue stopped the queue
# for good: every later take met it first and returned nothing. The recorder sets a wrapped
# item aside in dead_letter and acks it after the commit, as it does a malformed event; a
# recorder killed before that leaves it unacked, and kombu's restore puts the (readable)
# wrapper back on the queue.
#
# Redis runs nothing else while the script runs, so its work per item is bounded: a wrapped
# item keeps its first ARGV[6] bytes (UNREADABLE_KEPT_BYTES; the reason says how long it was),
# hex-encoded through a table (a Lua call per byte took 10 s for a 30 MB item: Redis answered
# BUSY, a worker died of it and the recorder took the item again); cjson, in C, refuses what
# is no JSON before any byte is scanned in Lua; and the byte-by-byte UTF-8 check looks at
# non-ASCII items up to ARGV[6] * 16 bytes only: fss's envelopes are ASCII (kombu writes JSON
# with ensure_ascii), so a longer non-ASCII item is none of them.
_TAKE_SCRIPT = r"""
local taken = {}
local limit = tonumber(ARGV[1])
local kept = tonumber(ARGV[6])
local wrapped_count = 0
local function text_problem(s)
    local i = string.find(s, '[^\9\10\13\32-\126]')
    if not i then return nil end  -- printable ASCII, as every fss envelope
    if string.find(s, '[%z\1-\8\11\12\14-\31]', i) then return 'not UTF-8 JSON text' end
    i = string.find(s, '[\128-\255]', i)
    if i and #s > 16 * kept then return 'not an fss envelope (long and not ASCII)' end
    while true do
        if not i then return nil end
        local c, d = string.byte(s, i, i + 1)
        local len
        if c >= 194 and c <= 223 then len = 2
        elseif c >= 224 and c <= 239 then len = 3
        elseif c >= 240 and c <= 244 then len = 4
        else return 'not UTF-8 JSON text' end
        if not d or (c == 224 and d < 160) or (c == 237 and d > 159)
            or (c == 240 and d < 144) or (c == 244 and d > 143) then
            return 'not UTF-8 JSON text'
        end
        for j = i + 1, i + len - 1 do
            local b = string.byte(s, j)
            if not b or b < 128 or b > 191 then return 'not UTF-8 JSON text' end
        end
        i = string.find(s, '[\128-\255]', i + len)
    end
end
local function parts(item)
    local ok, payload = pcall(cjson.decode, item)
    if not ok then return nil, 'not JSON' end
    if type(payload) ~= 'table' then return nil, 'not a kombu envelope (no object)' end
    local props = payload['properties']
    if type(props) ~= 'table' then return nil, 'not a kombu envelope (no properties)' end
    local info = props['delivery_info']
    local tag = props['delivery_tag']
    if type(info) ~= 'table' or type(tag) ~= 'string' or #tag > 200
        or not string.find(tag, '^[\32-\126]+$') then
        return nil, 'not a kombu envelope (no delivery tag)'
    end
    local exchange, routing_key = info['exchange'], info['routing_key']
    if type(exchange) ~= 'string' or type(routing_key) ~= 'string' then
        return nil, 'not a kombu envelope (no routing)'
    end
    local headers = payload['headers']
    if headers ~= nil and type(headers) ~= 'table' then
        return nil, 'not a kombu envelope (headers)'
    end
    local problem = text_problem(item)  -- last: the one scan of every byte
    if problem then return nil, problem end
    return tag, '[' .. item .. ',' .. cjson.encode(exchange) .. ','
        .. cjson.encode(routing_key) .. ']'
end
local hex_of = {}
for b = 0, 255 do hex_of[string.char(b)] = string.format('%02x', b) end
local function wrap(item, reason)
    wrapped_count = wrapped_count + 1
    local tag = ARGV[3] .. wrapped_count
    if #item > kept then
        reason = reason .. ' (' .. #item .. ' bytes, the first ' .. kept .. ' kept)'
    end
    local payload = cjson.encode({
        body = (string.gsub(string.sub(item, 1, kept), '.', hex_of)),
        ['content-type'] = ARGV[5],
        ['content-encoding'] = 'binary',
        headers = {fss_reason = reason},
        properties = {delivery_tag = tag,
                      delivery_info = {exchange = '', routing_key = ARGV[4]}},
    })
    return tag, payload, '[' .. payload .. ',"",' .. cjson.encode(ARGV[4]) .. ']'
end
for i = 3, #KEYS do
    while #taken < 2 * limit do
        local item = redis.call('RPOP', KEYS[i])
        if not item then break end
        local tag, entry = parts(item)
        if tag and redis.call('HSETNX', KEYS[2], tag, entry) == 0 then
            tag, entry = nil, 'delivery tag already unacked (a duplicate)'
        end
        if not tag then
            tag, item, entry = wrap(item, entry)
            redis.call('HSET', KEYS[2], tag, entry)
        end
        redis.call('ZADD', KEYS[1], ARGV[2], tag)
        taken[#taken + 1] = tag
        taken[#taken + 1] = item
    end
end
return taken
"""

# What the take wraps an item in that is no kombu envelope it can file (see _TAKE_SCRIPT).
UNREADABLE_CONTENT_TYPE = "application/x-fss-unreadable"
# How much of an unreadable item its dead letter keeps (the script's work per item is bounded
# by it).
UNREADABLE_KEPT_BYTES = 64 * 1024


class Unreadable(Exception):
    """An item on an event queue that is no decodable kombu message: `raw` is its bytes as
    they lay on the list, for the dead letter."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class WaitingTaker:
    """Takes the messages already waiting on a consumer's queue in one round trip and hands
    them to the consumer as if kombu had delivered them one by one.

    An item that is no decodable message is handed to `on_unreadable` (default: the
    consumer's `on_decode_error`) with an Unreadable error, as an unacked message of its
    own: acking it removes it from the queue's bookkeeping like any other."""

    def __init__(
        self,
        channel: Any,
        consumer: Consumer,
        queue: str,
        on_unreadable: Callable[[Message, Exception], None] | None = None,
        on_body: Callable[[Taken, Any], None] | None = None,
    ) -> None:
        """With `on_body`, a JSON message whose envelope is the plain one fss's senders
        write is decoded here and handed over as (Taken, its decoded body), without kombu's
        Message and consumer (see decoded_body); every other item goes the consumer's way."""
        self._channel = channel
        self._consumer = consumer
        self._queue = queue
        self._on_unreadable = on_unreadable or consumer.on_decode_error
        accepts_json = consumer.accept is None or "application/json" in consumer.accept
        self._on_body = on_body if accepts_json else None
        self._script: Any = None
        self._keys: list[str] = []
        if _can_take(channel, consumer):
            qos = channel.qos
            self._keys = [qos.unacked_index_key, qos.unacked_key] + [
                channel._q_for_pri(queue, pri) for pri in channel.priority_steps
            ]
            self._script = channel.client.register_script(_TAKE_SCRIPT)

    @property
    def enabled(self) -> bool:
        return self._script is not None

    def take(self, limit: int) -> int:
        """Deliver up to `limit` waiting messages (fewer if the prefetch limit says so);
        returns how many. Each is unacked until acked, as a message kombu delivered."""
        qos = self._channel.qos
        room = qos.can_consume_max_estimate()
        count = limit if room is None else min(limit, room)
        if self._script is None or count <= 0:
            return 0
        args = [count, time.time(), f"fss-unreadable-{uuid.uuid4().hex}-", self._queue,
                UNREADABLE_CONTENT_TYPE, UNREADABLE_KEPT_BYTES]
        with self._channel.conn_or_acquire() as client:
            flat = self._script(keys=self._keys, args=args, client=client)
            pairs = zip(flat[::2], flat[1::2], strict=True)
            taken = [self._taken(tag, item, client) for tag, item in pairs]
        # The channel's local bookkeeping (Redis has its part): all of them before any is
        # handed on, so a channel closed midway puts every one back, as kombu does on close
        # (kombu's Redis QoS restores by delivery tag: a Taken serves as well as a Message).
        for message, _ in taken:
            VirtualQoS.append(qos, message, message.delivery_tag)
        for message, outcome in taken:
            if isinstance(message, Taken):
                assert self._on_body is not None
                self._on_body(message, outcome)
            elif outcome is None:
                self._consumer._receive_callback(message)
            elif self._on_unreadable is not None:
                self._on_unreadable(message, outcome)
            # else: left unacked; restored after the visibility timeout
        return len(taken)

    def _taken(self, tag: bytes, item: bytes, client: Any) -> tuple[Any, Any]:
        """(Taken, decoded body) when on_body takes it, else what _message makes."""
        if self._on_body is not None:
            tag_text = tag.decode()
            body = decoded_body(tag_text, item)
            if body is not NOT_PLAIN:
                return Taken(self._channel, tag_text), body
        return self._message(tag, item, client)

    def _message(self, tag: bytes, item: bytes, client: Any) -> tuple[Message, Unreadable | None]:
        """The kombu message of one taken item, or (a stand-in, why) for one that is none.

        The script filed what it could read; kombu can still fail on it (a body_encoding
        whose decoding fails, JSON that Lua reads and Python does not). Such an item's
        unacked entry is replaced by the wrapped form, so a restore after a crash puts back
        something readable."""
        try:
            payload = loads(item)
            message = self._channel.Message(payload, channel=self._channel)
            if message.content_type == UNREADABLE_CONTENT_TYPE:
                return message, _unwrapped(message)
            if message.delivery_tag != tag.decode():
                raise ValueError("delivery tag changed")
            return message, None
        except Exception as exc:
            reason = f"undecodable kombu message: {reason_of(exc)}"
        if len(item) > UNREADABLE_KEPT_BYTES:
            reason += f" ({len(item)} bytes, the first {UNREADABLE_KEPT_BYTES} kept)"
        payload = _wrapped(tag.decode(), item, reason, self._queue)
        client.hset(self._keys[1], tag, dumps([payload, "", self._queue]))
        message = self._channel.Message(payload, channel=self._channel)
        return message, Unreadable(reason, item[:UNREADABLE_KEPT_BYTES])


def _wrapped(tag: str, item: bytes, reason: str, queue: str) -> dict[str, Any]:
    """The envelope _TAKE_SCRIPT wraps an unreadable item in (same fields, same cut)."""
    return {
        "body": item[:UNREADABLE_KEPT_BYTES].hex(),
        "content-type": UNREADABLE_CONTENT_TYPE,
        "content-encoding": "binary",
        "headers": {"fss_reason": reason},
        "properties": {
            "delivery_tag": tag,
            "delivery_info": {"exchange": "", "routing_key": queue},
        },
    }


class Taken:
    """A message WaitingTaker decoded itself: what acking it needs, as kombu's Message has it
    (ack_all acks it in the batch's pipeline; alone, `ack` is kombu's Message.ack)."""

    __slots__ = ("_state", "channel", "delivery_tag")

    def __init__(self, channel: Any, delivery_tag: str) -> None:
        self.channel = channel
        self.delivery_tag = delivery_tag
        self._state = "RECEIVED"

    @property
    def acknowledged(self) -> bool:
        return self._state in ACK_STATES

    def ack(self) -> None:
        if self.acknowledged:
            raise MessageStateError(f"Message already acknowledged with state: {self._state}")
        self.channel.basic_ack(self.delivery_tag)
        self._state = "ACK"


# decoded_body's answer for an item it leaves to kombu.
NOT_PLAIN: Any = object()
_JSON = "application/json"


def decoded_body(tag: str, item: bytes) -> Any:
    """The decoded body of a taken item whose envelope is the one fss's senders write, as
    kombu would hand it to the consumer (its virtual Message, then Message.decode() with
    accept=["json"]); NOT_PLAIN for any other item, which then takes kombu's own path.

    Plain means: JSON, content type application/json, a base64 body that is not empty, no
    compression header, the delivery tag the take filed it under. The same steps as kombu's
    (UTF-8 text, base64.b64decode, JSON), minus its JSON object hook, which turns objects
    holding "__type__" into Python values: a text that does not contain "__type__" and no
    \\u escape (through which a key could spell it) decodes the same without it. Whatever
    fails here or is unusual goes kombu's way, which decides as it always did (and says why
    in the dead letter): the same items are accepted and refused either way. The recorder
    spent a third of its CPU in kombu's per-message layers."""
    if b"__type__" in item or b"\\u" in item:
        return NOT_PLAIN
    try:
        payload = json.loads(item.decode("utf-8"))
        if type(payload) is not dict:
            return NOT_PLAIN
        properties = payload.get("properties")
        headers = payload.get("headers")
        body = payload.get("body")
        if (
            type(properties) is not dict
            or properties.get("delivery_tag") != tag
            or properties.get("body_encoding") != "base64"
            or payload.get("content-type") != _JSON
            or not (headers is None or (type(headers) is dict and not headers.get("compression")))
            or type(body) is not str
            or not body
        ):
            return NOT_PLAIN
        data = base64.b64decode(body.encode())
        if not data or b"__type__" in data or b"\\u" in data:
            return NOT_PLAIN
        return json.loads(data.decode("utf-8"))
    except Exception:
        return NOT_PLAIN


def _unwrapped(message: Message) -> Unreadable:
    reason = message.headers.get("fss_reason") if isinstance(message.headers, dict) else None
    body = message.body  # the hex text (kombu encodes a str body to bytes)
    text = body.decode("ascii", errors="replace") if isinstance(body, bytes) else str(body)
    try:
        raw = bytes.fromhex(text)
    except ValueError:  # a sender's own envelope of this content type: keep it as it came
        raw = text.encode()
    return Unreadable(f"unreadable item on the queue: {reason or 'not a kombu message'}", raw)


def _can_take(channel: Any, consumer: Consumer) -> bool:
    """Only kombu's Redis transport as this module knows it, one queue, acks on, no key
    prefix (the script names its keys itself)."""
    qos = getattr(channel, "qos", None)
    if _batch_ack_qos() is None or type(qos) is not _batch_ack_qos():
        return False
    if len(consumer.queues or ()) != 1 or consumer.no_ack or channel.no_ack_consumers:
        return False
    needed = ("_q_for_pri", "priority_steps", "conn_or_acquire", "Message", "client")
    if getattr(channel, "global_keyprefix", "") or not all(hasattr(channel, n) for n in needed):
        return False
    return callable(getattr(qos, "can_consume_max_estimate", None)) and callable(
        getattr(consumer, "_receive_callback", None)
    )


def restore_stale(channel: Any) -> None:
    """Requeue the messages on the broker's unacked list older than its visibility timeout
    (a consumer that was killed holding them). kombu's own sweep, under its Redis mutex, so
    several recorders may call it; a replayed event changes nothing."""
    qos: Any = getattr(channel, "qos", None)
    if qos is None or type(qos).__module__ != "kombu.transport.redis":
        return  # AMQP brokers requeue a dead consumer's messages themselves
    qos.restore_visible(num=channel.unacked_restore_limit, interval=1)


def ack_all(messages: Sequence[Message | Taken]) -> None:
    """Ack messages whose events are committed, in one Redis round trip when they came
    through kombu's Redis transport (its `ack` is a pipeline per message: a third of the
    recorder's broker round trips). Other transports: one ack each."""
    qos = _redis_qos(messages)
    if qos is None:
        for message in messages:
            message.ack()
        return
    # What kombu's Redis QoS.ack does per message (QoS._remove_from_indices: ZREM of the tag
    # from the unacked index, HDEL from the hash), for all of them in one pipeline of two
    # commands naming every tag (2 per message before); then the channel's bookkeeping.
    tags = [message.delivery_tag for message in messages]
    with qos.pipe_or_acquire() as pipe:
        pipe.zrem(qos.unacked_index_key, *tags).hdel(qos.unacked_key, *tags)
        pipe.execute()
    for message in messages:
        VirtualQoS.ack(qos, message.delivery_tag)
        message._state = "ACK"


def _redis_qos(messages: Sequence[Message | Taken]) -> Any:
    """The kombu Redis QoS all these messages share, or None (then ack them one by one)."""
    if len(messages) < 2:
        return None
    channel = messages[0].channel
    qos = getattr(channel, "qos", None)
    if type(qos).__module__ != "kombu.transport.redis" or type(qos) is not _batch_ack_qos():
        return None
    if channel.no_ack_consumers or any(m.channel is not channel for m in messages):
        return None
    if any(m.acknowledged for m in messages):
        return None  # ack() raises on these: keep its error
    return qos


@functools.cache
def _batch_ack_qos() -> type | None:
    """kombu's Redis QoS when the internals the batch ack relies on are there (else acks go
    one by one). Imported on first use, never at import: the Redis transport needs packages
    (`packaging`) whose absence `fss scheduler` reports at start as one line."""
    try:
        from kombu.transport.redis import QoS as RedisQoS
    except ImportError:
        return None
    ready = all(
        callable(getattr(cls, name, None))
        for cls, name in (
            (RedisQoS, "pipe_or_acquire"),
            (VirtualQoS, "ack"),
            (VirtualQoS, "append"),
        )
    ) and all(hasattr(RedisQoS, name) for name in ("unacked_key", "unacked_index_key"))
    return RedisQoS if ready else None


class AckFailed(Exception):
    """The events are written but the broker could not take the ack: it is gone. Not the
    database's fault nor the events': reconnect, and the replay of what it redelivers
    changes nothing."""


class DeadLettersRefused(Exception):
    """Even sanitized dead letters were refused: the database is at fault (a missing table,
    a full disk), not the events, so they are held and retried, never dropped."""


# MySQL/MariaDB drivers report most server errors as OperationalError (a failed CHECK
# constraint too); only these codes, and the client's own 2xxx connection errors, mean the
# server is busy or going away rather than that the statement is wrong.
MYSQL_TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 1290, 1792, 1836, 1927, 1969, 3024})


def is_transient(exc: BaseException) -> bool:
    """The database is unreachable, restarting, locked or busy: wait and retry the same
    events. Anything else is about the events themselves: set the refused ones aside."""
    if isinstance(exc, DeadLettersRefused | DisconnectionError | PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    code = _mysql_error_code(exc.orig)
    return code is None or code in MYSQL_TRANSIENT_CODES or 2000 <= code < 3000


def _mysql_error_code(error: BaseException | None) -> int | None:
    if error is None or not type(error).__module__.startswith(("pymysql", "MySQLdb")):
        return None
    code = error.args[0] if error.args else None
    return code if isinstance(code, int) else None


LOGGED_IDS = ("task_id", "attempt", "client_id")


def ids_in(raw: Any) -> dict[str, Any]:
    """The ids a set-aside event names, for the log line's `extra=` (JSON logs show them)."""
    if not isinstance(raw, dict):
        return {}
    return {name: str(raw[name])[:128] for name in LOGGED_IDS if raw.get(name) is not None}
