"""Writes worker events into the FSS tables: guarded, batched, idempotent.

A replayed or stale event changes nothing: every UPDATE names the task's expected attempt,
client and status, logs are keyed by their event id, and the next task of a group is only
created by the transition that actually finished the current one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from fss.domain.alerts import DEFAULT_POLICY, AlertPolicy
from fss.domain.jitter import jittered_start
from fss.domain.overlap import SKIP, buffered_note, passed_slot, stands_for_passed_slot
from fss.domain.schedule import NextRun, Schedule, after_retries, finish_time, plan_next_run
from fss.domain.selection import tags_text
from fss.domain.status import TaskStatus, sources_of
from fss.events import (
    ClientHeartbeat,
    ClientLeft,
    Event,
    TaskDataSaved,
    TaskFinished,
    TaskLogged,
    TaskProgressed,
    TaskStarted,
)
from fss.store import shards
from fss.store.alerts import RunEnd, note_run_ends
from fss.store.backfills import KIND as BACKFILL
from fss.store.backfills import advance as advance_backfills
from fss.store.backfills import unfinished_next_at
from fss.store.children import parents_of, start_children
from fss.store.data_saves import locked_group_data, saved_data_text
from fss.store.departures import remove_client
from fss.store.retries import (
    Failure,
    archive_final,
    requeue_failures,
    retrying_tasks,
    write_notes,
)
from fss.store.tables import (
    STATUS_UNINDEXED,
    UTCDateTime,
    client,
    insert_waiting_task,
    naive_utc,
    run_log,
    task,
    task_group,
    version_after_data,
)
from fss.store.tasks import ClaimedTask, lock_tasks

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 8000
# Longest run duration the scheduling arithmetic believes (a year).
MAX_RUN_MS = 366 * 24 * 3600 * 1000


@dataclass
class ClaimNext:
    """Create the next tasks due before `horizon` already claimed by `node` until
    `lease_until` (one transaction with the finish, no claim round trip). After the commit,
    `claimed` holds them, for the node's timing wheel; a node that dies before firing them
    loses them to its peers when the lease ends, as with any claim."""

    node: str
    lease_until: datetime
    horizon: datetime
    claimed: list[ClaimedTask] = field(default_factory=list)


@dataclass
class RecordStats:
    started: int = 0
    progressed: int = 0
    logged: int = 0
    data_saved: int = 0
    finished: int = 0
    ignored: int = 0
    heartbeats: int = 0


def record(
    conn: Connection,
    events: Sequence[Event],
    now: datetime,
    claim_next: ClaimNext | None = None,
    alerting: AlertPolicy = DEFAULT_POLICY,
) -> RecordStats:
    """Apply a batch in the caller's transaction, in lifecycle order. With `claim_next`, the
    next tasks due soon are created claimed by that node (see ClaimNext)."""
    stats = RecordStats()
    by_kind: dict[type[Event], list[Any]] = {}
    # Events of broadcast shards (fss.store.shards), apart: every other event names none.
    sharded: list[Event] = []
    for event in events:
        if getattr(event, "shard", None) is not None:
            sharded.append(event)
        else:
            by_kind.setdefault(type(event), []).append(event)
    client_events = [e for e in events if isinstance(e, ClientHeartbeat | ClientLeft)]
    started, finished = by_kind.get(TaskStarted, []), by_kind.get(TaskFinished, [])
    stats.heartbeats = record_client_events(conn, client_events, now)
    # Broadcast tasks' rows are locked first (all of them, in id order), then the others'.
    locked: set[int] = set()
    shard_record = shards.record_events(conn, sharded, now, locked)
    locked |= _lock_for_set_based(conn, started, finished)
    # Not beside broadcast shards: their tasks' finishes join the batch's in finish_tasks.
    starts = None if sharded else _fold_starts(conn, started, finished)
    if starts is not None:
        started = [e for e in started if id(e) not in starts.folded]
    stats.started = _started(conn, started, now, locked) + shard_record.started
    # Runs that end in this batch: their end writes reported_at (a log line's sign of life
    # adds nothing), and a Success writes progress 100 (their progress events add nothing).
    ending = {(e.task_id, e.attempt, e.client_id): e.success for e in finished}
    progressed: list[TaskProgressed] = []
    superseded: list[TaskProgressed] = []
    for event in by_kind.get(TaskProgressed, []):
        succeeds = ending.get((event.task_id, event.attempt, event.client_id), False)
        (superseded if succeeds else progressed).append(event)
    stats.progressed = _progressed(conn, progressed, now)
    stats.progressed += shard_record.progressed
    stats.logged = _logged(conn, by_kind.get(TaskLogged, []), now, set(ending))
    stats.logged += shard_record.logged
    stats.data_saved = _data_saved(conn, by_kind.get(TaskDataSaved, []))
    stats.data_saved += shard_record.data_saved
    # The broadcast tasks whose last shard ended finish with the others, in one pass.
    task_finishes = shard_record.task_finishes or []
    won: set[tuple[int, int]] = set()
    ended = finish_tasks(
        conn, finished + task_finishes, now, claim_next, locked, alerting, won=won,
        starts=starts,
    )
    if starts is not None:
        stats.started += starts.applied
    # A progress its run's Success wrote over counts as applied when that finish won.
    stats.progressed += sum(1 for e in superseded if (e.task_id, e.attempt) in won)
    # Counted as events: a task's end made of its shards' ends is no event of the batch.
    stats.finished = max(0, ended - len(task_finishes)) + shard_record.finished
    total = len(events) - len(client_events)
    stats.ignored = (
        total - stats.started - stats.progressed - stats.logged - stats.data_saved
        - stats.finished
    )
    return stats


def _lock_for_set_based(
    conn: Connection, started: list[TaskStarted], finished: list[TaskFinished]
) -> set[int]:
    """PostgreSQL, when a set-based statement will run: lock the task rows of the batch's
    starts and finishes at once, in id order (a run's `started` and `finished` mostly come
    in one message: one locking read instead of one per statement). Returns the ids locked,
    which the set-based statements then need not lock again."""
    if conn.dialect.name != "postgresql" or (len(started) < 2 and len(finished) < 2):
        return set()
    locked: set[int] = set()
    lock_tasks(conn, [e.task_id for e in started] + [e.task_id for e in finished], locked)
    return locked


@dataclass
class FoldedStarts:
    """The `started` of runs whose successful `finished` is in the same batch, written by
    the finish's UPDATE (run_at, where the start would have applied) instead of an UPDATE of
    their own: {(task id, attempt, client id): the first such start}. `folded` holds the ids
    of every start event stood for (the first and its duplicates); `applied` counts the
    starts that moved their task, as _started would have."""

    by_run: dict[tuple[int, int, str], TaskStarted]
    folded: set[int]
    applied: int = 0


def _fold_starts(
    conn: Connection, started: list[TaskStarted], finished: list[TaskFinished]
) -> FoldedStarts | None:
    """PostgreSQL, when the finishes go set-based: the starts the finish UPDATE writes (a
    run that starts and ends in one batch, the common case for short runs, costs one UPDATE
    instead of two). Only successes (a failure may be retried instead of finished), and only
    a start naming the finish that finish_tasks keeps for its (task, attempt)."""
    if conn.dialect.name != "postgresql" or not started or len(finished) < 2:
        return None
    final = {(e.task_id, e.attempt): e for e in finished}
    if len(final) < 2:
        return None
    ending = {(e.task_id, e.attempt, e.client_id) for e in final.values() if e.success}
    by_run: dict[tuple[int, int, str], TaskStarted] = {}
    folded: set[int] = set()
    for event in started:
        run = (event.task_id, event.attempt, event.client_id)
        if run in ending:
            by_run.setdefault(run, event)  # the first one wins, as in _started
            folded.add(id(event))
    return FoldedStarts(by_run, folded) if by_run else None


def status_in(statuses: Iterable[TaskStatus]) -> Any:
    """An OR of equalities: unlike IN, it works in executemany statements."""
    return sa.or_(*(task.c.status == int(s) for s in sorted(statuses)))


def _current_attempt(event_task_id: Any, event_attempt: Any, client_id: Any) -> Any:
    return sa.and_(
        task.c.id == event_task_id,
        task.c.attempt == event_attempt,
        task.c.client_id == client_id,
    )


def _started(
    conn: Connection, events: list[TaskStarted], now: datetime, locked: set[int]
) -> int:
    if not events:
        return 0
    if conn.dialect.name == "postgresql" and len(events) > 1:
        return _started_set_based(conn, events, now, locked)
    statement = (
        task.update()
        .where(
            _current_attempt(
                sa.bindparam("b_task"), sa.bindparam("b_attempt"), sa.bindparam("b_client")
            ),
            status_in(sources_of(TaskStatus.WORKING)),
        )
        .values(status=TaskStatus.WORKING, run_at=sa.bindparam("b_at"), reported_at=now)
    )
    # Rows in id order, as every batch write here takes them (in arrival order, two
    # recorders replaying one batch in different orders deadlocked on MariaDB); the sort is
    # stable, so the first `started` of a run still wins.
    params = [
        {"b_task": e.task_id, "b_attempt": e.attempt, "b_client": e.client_id, "b_at": e.at}
        for e in sorted(events, key=_task_id)
    ]
    return _count(conn.execute(statement, params).rowcount, len(events))


def _task_id(event: TaskStarted | TaskProgressed) -> int:
    return event.task_id


def _started_set_based(
    conn: Connection, events: list[TaskStarted], now: datetime, locked: set[int]
) -> int:
    """_started's guarded UPDATE for the whole batch in one statement (PostgreSQL); rows
    locked in id order first, as every batch write here does."""
    first: dict[tuple[int, int, str], TaskStarted] = {}
    for event in events:  # the first one wins, as in the per-event path
        first.setdefault((event.task_id, event.attempt, event.client_id), event)
    unique = sorted(first.values(), key=lambda e: e.task_id)
    lock_tasks(conn, [e.task_id for e in unique], locked)
    params = {
        "ids": [e.task_id for e in unique],
        "attempts": [e.attempt for e in unique],
        "clients": [e.client_id for e in unique],
        "ats": [naive_utc(e.at) for e in unique],
        "now": now,
    }
    return len(conn.execute(_STARTED_MANY_PG, params).all())


_STARTABLE = sorted(sources_of(TaskStatus.WORKING))
_STARTED_MANY_PG = sa.text(
    f"""
    UPDATE task SET status = {int(TaskStatus.WORKING)}, run_at = v.at, reported_at = :now
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:attempts AS INTEGER[]),
                CAST(:clients AS VARCHAR[]), CAST(:ats AS TIMESTAMP[]))
        AS v(id, attempt, client_id, at)
    WHERE task.id = v.id AND task.attempt = v.attempt AND task.client_id = v.client_id
        AND {STATUS_UNINDEXED} IN ({", ".join(str(int(s)) for s in _STARTABLE)})
    RETURNING task.id
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


def _progressed(conn: Connection, events: list[TaskProgressed], now: datetime) -> int:
    if not events:
        return 0
    statement = (
        task.update()
        .where(
            _current_attempt(
                sa.bindparam("b_task"), sa.bindparam("b_attempt"), sa.bindparam("b_client")
            ),
            status_in([TaskStatus.SCHEDULER, TaskStatus.WORKING]),
        )
        .values(progress=sa.bindparam("b_progress"), reported_at=now)
    )
    params = [
        {
            "b_task": e.task_id,
            "b_attempt": e.attempt,
            "b_client": e.client_id,
            "b_progress": e.progress,
        }
        for e in sorted(events, key=_task_id)  # id order (see _started); the last one wins
    ]
    return _count(conn.execute(statement, params).rowcount, len(events))


def _logged(
    conn: Connection,
    events: list[TaskLogged],
    now: datetime,
    ending: set[tuple[int, int, str]] | None = None,
) -> int:
    """Store new log lines; each counts as a sign of life of its run (see _alive), except
    for the runs in `ending`, whose end in the same batch writes that sign."""
    if not events:
        return 0
    fresh = list({e.event_id: e for e in events}.values())
    if conn.dialect.name == "postgresql" and len(fresh) > 1:
        return _logged_set_based(conn, fresh, now, ending)
    known = set(
        conn.execute(
            sa.select(run_log.c.event_id).where(run_log.c.event_id.in_([e.event_id for e in fresh]))
        ).scalars()
    )
    fresh = [e for e in fresh if e.event_id not in known]
    if not fresh:
        return 0
    owners = {
        (r.id, r.attempt, r.client_id): r.task_group_id
        for r in conn.execute(
            sa.select(task.c.id, task.c.attempt, task.c.client_id, task.c.task_group_id).where(
                task.c.id.in_({e.task_id for e in fresh})
            )
        )
    }
    current = [e for e in fresh if (e.task_id, e.attempt, e.client_id) in owners]
    rows = [
        {
            "task_id": e.task_id,
            "task_group_id": owners[(e.task_id, e.attempt, e.client_id)],
            "log_level": e.level,
            "content": e.content,
            "create_at": e.at,
            "event_id": e.event_id,
            "seq": e.seq,
            "attempt": e.attempt,
        }
        for e in current
    ]
    if rows:
        conn.execute(run_log.insert(), rows)
        alive = {(e.task_id, e.attempt, e.client_id) for e in current} - (ending or set())
        if alive:
            _alive(conn, alive, now)
    return len(rows)


def _logged_set_based(
    conn: Connection,
    fresh: list[TaskLogged],
    now: datetime,
    ending: set[tuple[int, int, str]] | None,
) -> int:
    """_logged in one statement (PostgreSQL): the lines of current attempts inserted in
    order, a line already stored (a replay) skipped by its unique event id; three statements
    before (known ids, owners, insert), 14% of the recorder's time under the realistic bench."""
    params = {
        "task_ids": [e.task_id for e in fresh],
        "attempts": [e.attempt for e in fresh],
        "clients": [e.client_id for e in fresh],
        "levels": [e.level for e in fresh],
        "contents": [e.content for e in fresh],
        "ats": [naive_utc(e.at) for e in fresh],
        "event_ids": [e.event_id for e in fresh],
        "seqs": [e.seq for e in fresh],
    }
    inserted = conn.execute(_LOGGED_MANY_PG, params).all()
    if not inserted:
        return 0
    stored = {(row.task_id, row.attempt) for row in inserted}
    alive = {
        (e.task_id, e.attempt, e.client_id) for e in fresh if (e.task_id, e.attempt) in stored
    } - (ending or set())
    if alive:
        _alive(conn, alive, now)
    return len(inserted)


_LOGGED_MANY_PG = sa.text(
    """
    INSERT INTO run_log (task_id, task_group_id, log_level, content, create_at, event_id, seq,
                         attempt)
    SELECT v.task_id, t.task_group_id, v.level, v.content, v.at, v.event_id, v.seq, v.attempt
    FROM unnest(CAST(:task_ids AS BIGINT[]), CAST(:attempts AS INTEGER[]),
                CAST(:clients AS VARCHAR[]), CAST(:levels AS SMALLINT[]),
                CAST(:contents AS TEXT[]), CAST(:ats AS TIMESTAMP[]),
                CAST(:event_ids AS VARCHAR[]), CAST(:seqs AS BIGINT[]))
        WITH ORDINALITY AS v(task_id, attempt, client_id, level, content, at, event_id, seq, n)
    JOIN task t ON t.id = v.task_id AND t.attempt = v.attempt AND t.client_id = v.client_id
    ORDER BY v.n
    ON CONFLICT (event_id) DO NOTHING
    RETURNING run_log.task_id, run_log.attempt
    """
)


def _data_saved(conn: Connection, events: list[TaskDataSaved]) -> int:
    """Data a running job saved explicitly (ctx.save_data()): written to its group when the
    event is of the task's current attempt, still unfinished (a guarded UPDATE; a replay
    writes the same data again). Per group the last save of the batch wins; groups in id
    order, as _lock_groups takes them."""
    if not events:
        return 0
    last = {e.group_id: e for e in events}
    # A save with a patch applies it to the group's data as it is now (read locked).
    current = locked_group_data(
        conn, (gid for gid, e in last.items() if e.data_patch is not None)
    )
    params = [
        {
            "b_group": gid,
            "b_task": e.task_id,
            "b_attempt": e.attempt,
            "b_client": e.client_id,
            "b_data": saved_data_text(e.data, e.data_patch, current.get(gid)),
        }
        for gid, e in sorted(last.items())
    ]
    return _count(conn.execute(_DATA_SAVED_STATEMENT, params).rowcount, len(params))


_DATA_SAVED_STATEMENT = (
    task_group.update()
    .where(
        task_group.c.id == sa.bindparam("b_group"),
        sa.exists().where(
            task.c.task_group_id == task_group.c.id,
            _current_attempt(
                sa.bindparam("b_task"), sa.bindparam("b_attempt"), sa.bindparam("b_client")
            ),
            status_in([TaskStatus.SCHEDULER, TaskStatus.WORKING]),
        ),
    )
    # The version before the data: MySQL assigns in order, and the version compares the
    # data as it was.
    .ordered_values(
        (task_group.c.version, version_after_data(sa.bindparam("b_data", type_=sa.Text()))),
        (task_group.c.data, sa.bindparam("b_data", type_=sa.Text())),
    )
)


def _alive(conn: Connection, runs: set[tuple[int, int, str]], now: datetime) -> None:
    """A run that logs is alive: refresh `reported_at`, which the supervisor's hung check
    reads, as progress does. Only new lines count (a replay changes nothing), one
    statement for the batch, guarded on the current attempt of an unfinished task."""
    conn.execute(
        _ALIVE_STATEMENT,
        [
            {"b_task": task_id, "b_attempt": attempt, "b_client": client_id, "b_now": now}
            for task_id, attempt, client_id in sorted(runs)
        ],
    )


_ALIVE_STATEMENT = (
    task.update()
    .where(
        _current_attempt(
            sa.bindparam("b_task"), sa.bindparam("b_attempt"), sa.bindparam("b_client")
        ),
        status_in([TaskStatus.SCHEDULER, TaskStatus.WORKING]),
    )
    .values(reported_at=sa.bindparam("b_now"))
)


def finish_tasks(
    conn: Connection,
    events: list[TaskFinished],
    now: datetime,
    claim_next: ClaimNext | None = None,
    locked: set[int] | None = None,
    alerting: AlertPolicy = DEFAULT_POLICY,
    won: set[tuple[int, int]] | None = None,
    starts: FoldedStarts | None = None,
) -> int:
    """Close the tasks, update their groups' stats and data, and create their next tasks.

    A guarded UPDATE decides which events finished their task (a replayed or stale one
    changes nothing), then for all winners together: one locked read of their groups, one
    INSERT of the next tasks and the groups' UPDATE, instead of five statements per event.
    On PostgreSQL each of these is one statement for the batch (the finish UPDATE returns
    the runs' planned times, the INSERT the new ids); elsewhere the finish and the group
    UPDATE go row by row. `locked`: task ids this transaction has locked already.
    `starts`: the batch's starts of runs ending here, written with their finish
    (FoldedStarts).
    """
    # Task rows are locked in id order, as groups are, so two recorders never deadlock.
    unique = sorted({(e.task_id, e.attempt): e for e in events}.values(), key=lambda e: e.task_id)
    locked = set() if locked is None else locked
    retried, notes = _retry_failures(conn, unique, now, locked)
    if retried:
        unique = [e for e in unique if (e.task_id, e.attempt) not in retried]
    winners = _finish_guarded(conn, unique, now, locked, starts)
    if won is not None:
        won.update((event.task_id, event.attempt) for event, _ in winners)
    if winners:
        if notes:
            write_notes(conn, notes, {row.id: row.task_group_id for _, row in winners}, now)
        # Tasks that ran more than one attempt keep their last one with the others.
        archive_final(conn, [row.id for _, row in winners if row.attempt > 1])
        _schedule_after(conn, winners, now, claim_next, alerting)
    return len(winners) + len(retried)


def _retry_failures(
    conn: Connection, unique: list[TaskFinished], now: datetime, locked: set[int]
) -> tuple[set[tuple[int, int]], dict[tuple[int, int], str]]:
    """Failures whose group has attempts left go back to waiting (fss.store.retries) instead
    of finishing: their (task id, attempt), and the lines for failures that end their task
    although the group retries. A batch without failures runs no statement here."""
    failures = [
        Failure(
            task_id=e.task_id,
            attempt=e.attempt,
            error=e.error,
            ended_at=e.at,
            run_speed_ms=e.run_speed_ms,
            retry=e.retry,
            client_id=e.client_id,
        )
        for e in unique
        if not e.success
    ]
    if not failures:
        return set(), {}
    # One read, no lock, when no failed task's group retries (a failure costs no more).
    retrying = retrying_tasks(conn, [f.task_id for f in failures])
    if not retrying:
        return set(), {}
    # Every row of the batch's finishes, in id order, before any of them changes: the
    # retries and the finishes then take no row out of the order other recorders use.
    lock_tasks(conn, [e.task_id for e in unique], locked)
    outcome = requeue_failures(conn, [f for f in failures if f.task_id in retrying], now)
    return outcome.retried, outcome.final_notes


# What the group bookkeeping reads of a finished run (none of it changes when it finishes).
_RUN_COLUMNS = (
    task.c.id, task.c.attempt, task.c.task_group_id, task.c.start_at, task.c.dispatched_at,
    task.c.catch_up, task.c.kind, task.c.create_at,
)


def _finish_guarded(
    conn: Connection,
    unique: list[TaskFinished],
    now: datetime,
    locked: set[int],
    starts: FoldedStarts | None = None,
) -> list[tuple[TaskFinished, Any]]:
    """The events whose guarded UPDATE moved their task (one per (task, attempt), id order),
    each with its run's row (_RUN_COLUMNS).

    PostgreSQL: one set-based statement for the batch (UPDATE ... FROM unnest ... RETURNING
    the rows), after locking the rows in id order; elsewhere one UPDATE per event, whose row
    count says whether it won, then one read of the winners' rows. The guard is the same
    either way, so a replay changes nothing."""
    set_based = conn.dialect.name == "postgresql" and len(unique) > 1
    if starts is not None:
        # A start whose finish this UPDATE does not write (retries left fewer than two
        # finishes) is written first, by the start's own UPDATE, as without folding.
        kept = {(e.task_id, e.attempt, e.client_id) for e in unique} if set_based else set()
        left = [start for run, start in starts.by_run.items() if run not in kept]
        if left:
            starts.applied += _started(conn, left, now, locked)
    if set_based:
        return _finish_set_based(conn, unique, now, locked, starts)
    won = [
        e for e in unique if conn.execute(_FINISH_STATEMENT, _finish_params(e, now)).rowcount == 1
    ]
    if not won:
        return []
    runs = {
        r.id: r
        for r in conn.execute(
            sa.select(*_RUN_COLUMNS).where(task.c.id.in_([e.task_id for e in won]))
        )
    }
    return [(e, runs[e.task_id]) for e in won]


def _finish_set_based(
    conn: Connection,
    unique: list[TaskFinished],
    now: datetime,
    locked: set[int],
    starts: FoldedStarts | None = None,
) -> list[tuple[TaskFinished, Any]]:
    ids = [e.task_id for e in unique]
    by_run = starts.by_run if starts is not None else {}
    # Rows locked in id order first, as the per-event path does (it updates in id order).
    lock_tasks(conn, ids, locked)
    params = {
        "ids": ids,
        "attempts": [e.attempt for e in unique],
        "clients": [e.client_id for e in unique],
        "statuses": [int(TaskStatus.SUCCESS if e.success else TaskStatus.FAIL) for e in unique],
        "successes": [e.success for e in unique],
        "ats": [naive_utc(e.at) for e in unique],
        "speeds": [e.run_speed_ms for e in unique],
        "errors": [e.error[-MAX_ERROR_CHARS:] if e.error else None for e in unique],
        "started_ats": [
            naive_utc(start.at)
            if (start := by_run.get((e.task_id, e.attempt, e.client_id))) is not None
            else None
            for e in unique
        ],
        "now": now,
    }
    rows = conn.execute(_FINISH_MANY_PG, params).all()
    if starts is not None:
        starts.applied += sum(1 for r in rows if r.started)
    won = {(r.id, r.attempt): r for r in rows}
    return [(e, won[key]) for e in unique if (key := (e.task_id, e.attempt)) in won]


# The guard of _FINISH_STATEMENT, for a whole batch: one array per field, unnested into
# rows; a fixed text, so it is compiled once whatever the batch size. It returns what the
# group bookkeeping needs of each winner, which spares a read of the same rows.
# `started_at` (NULL for most): the run's `started` of the same batch (FoldedStarts), whose
# run_at is written where _STARTED_MANY_PG's guard would have let it (the status before this
# UPDATE, read through `before`, the row as this statement found it); `started` says so.
_FINISH_MANY_PG = sa.text(
    f"""
    UPDATE task SET status = v.status, finish_at = v.at, run_speed = v.speed,
        error = COALESCE(v.error, task.error),
        progress = CASE WHEN v.success THEN 100 ELSE task.progress END,
        run_at = CASE WHEN v.started_at IS NOT NULL
            AND task.status IN ({", ".join(str(int(s)) for s in _STARTABLE)})
            THEN v.started_at ELSE task.run_at END,
        reported_at = :now, open_group_id = NULL
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:attempts AS INTEGER[]),
                CAST(:clients AS VARCHAR[]), CAST(:statuses AS SMALLINT[]),
                CAST(:successes AS BOOLEAN[]), CAST(:ats AS TIMESTAMP[]),
                CAST(:speeds AS BIGINT[]), CAST(:errors AS TEXT[]),
                CAST(:started_ats AS TIMESTAMP[]))
        AS v(id, attempt, client_id, status, success, at, speed, error, started_at)
    JOIN task AS before ON before.id = v.id
    WHERE task.id = v.id AND task.attempt = v.attempt AND task.client_id = v.client_id
        AND {STATUS_UNINDEXED} IN ({int(TaskStatus.SCHEDULER)}, {int(TaskStatus.WORKING)})
    RETURNING task.id, task.attempt, task.task_group_id, task.start_at, task.dispatched_at,
        task.catch_up, task.kind, task.create_at,
        (v.started_at IS NOT NULL
            AND before.status IN ({", ".join(str(int(s)) for s in _STARTABLE)})) AS started
    """
).bindparams(sa.bindparam("now", type_=UTCDateTime())).columns(
    # The run's row as _RUN_COLUMNS reads it (times as aware UTC), beside the attempt.
    task.c.id, task.c.attempt, task.c.task_group_id, task.c.start_at, task.c.dispatched_at,
    task.c.catch_up, task.c.kind, task.c.create_at, sa.column("started", sa.Boolean()),
)


def _finish_params(event: TaskFinished, now: datetime) -> dict[str, Any]:
    # finish_at keeps the worker's time, like run_at: with run_speed they are the worker's
    # account of its run. Scheduling and last_run_at use the scheduler side's (_finished_at).
    return {
        "b_task": event.task_id,
        "b_attempt": event.attempt,
        "b_client": event.client_id,
        "b_status": int(TaskStatus.SUCCESS if event.success else TaskStatus.FAIL),
        "b_success": event.success,
        "b_at": event.at,
        "b_speed": event.run_speed_ms,
        "b_error": event.error[-MAX_ERROR_CHARS:] if event.error else None,
        "b_now": now,
    }


_FINISH_STATEMENT = (
    task.update()
    .where(
        task.c.id == sa.bindparam("b_task"),
        task.c.attempt == sa.bindparam("b_attempt"),
        task.c.client_id == sa.bindparam("b_client"),
        # Scheduler or Working: the sources of both Success and Fail.
        status_in((TaskStatus.SCHEDULER, TaskStatus.WORKING)),
    )
    .values(
        status=sa.bindparam("b_status"),
        finish_at=sa.bindparam("b_at"),
        run_speed=sa.bindparam("b_speed"),
        error=sa.func.coalesce(sa.bindparam("b_error", type_=sa.Text()), task.c.error),
        progress=sa.case(
            (sa.bindparam("b_success", type_=sa.Boolean()) == sa.true(), 100),
            else_=task.c.progress,
        ),
        reported_at=sa.bindparam("b_now"),
        open_group_id=None,
    )
)


@dataclass
class _GroupOutcome:
    last_run_at: datetime
    next_run: NextRun
    successes: int = 0
    speed_sum: int = 0
    data: str | None = None
    # overlap buffer_one/replace: the slot that passed while the run went on (next_run.at
    # is then that slot), whose run starts now, at `start_at`.
    buffered: datetime | None = None
    start_at: datetime | None = None
    # fss group backfill: the backfill slot this run was (its backfill moves on), or the
    # slot the group's next task runs (a regular run ended; next_run.at waits for after it).
    backfill_ran: datetime | None = None
    backfill_next: datetime | None = None


def _schedule_after(
    conn: Connection,
    won: list[tuple[TaskFinished, Any]],
    now: datetime,
    claim_next: ClaimNext | None,
    alerting: AlertPolicy = DEFAULT_POLICY,
) -> None:
    groups = _lock_groups(conn, {row.task_group_id for _, row in won})
    outcomes = _outcomes(won, groups, now)
    if not outcomes:
        return
    _interleave_backfills(conn, won, groups, outcomes, now)
    enabled = {gid: groups[gid] for gid in outcomes if groups[gid].is_enable}
    next_ids = _insert_next_tasks(conn, enabled, outcomes, now, claim_next)
    _update_groups(conn, outcomes, next_ids)
    _note_buffered(conn, groups, outcomes, next_ids, now)
    # on_success: the winners' child groups run now (a replay won nothing: starts nothing).
    start_children(conn, parents_of(won, groups), now)
    ends = [_run_end(event, row, groups.get(row.task_group_id)) for event, row in won]
    note_run_ends(conn, ends, groups, now, alerting)


def _run_end(event: TaskFinished, row: Any, group: Any) -> RunEnd:
    # The slot the run stood for: a retry moved the task's start_at, not the group's next_at.
    planned = row.start_at if group is None else min(row.start_at, group.next_at)
    return RunEnd(
        group_id=row.task_group_id,
        task_id=row.id,
        attempt=row.attempt,
        success=event.success,
        error=event.error,
        planned_at=planned,
        client_id=event.client_id,
    )


def _lock_groups(conn: Connection, group_ids: set[int]) -> dict[int, Any]:
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_LOCK_GROUPS_PG, {"ids": sorted(group_ids)})
        return {g.id: g for g in rows}
    return {
        g.id: g
        for g in conn.execute(
            sa.select(*_LOCKED_GROUP_COLUMNS, _BACKFILL_NEXT_AT)
            .where(task_group.c.id.in_(sorted(group_ids)))
            .order_by(task_group.c.id)  # one lock order for every recorder: no deadlocks
            .with_for_update()
        )
    }


# What the group bookkeeping reads of a finished run's group (locked: it changes them).
_LOCKED_GROUP_COLUMNS = (
    task_group.c.id,
    task_group.c.is_enable,
    task_group.c.interval_ms,
    task_group.c.cron,
    task_group.c.time_zone,
    # The slot the group's open task was planned for: a retry moves the task's start_at.
    task_group.c.next_at,
    task_group.c.job_name,
    task_group.c.data,
    task_group.c.misfire,
    task_group.c.route,
    task_group.c.client_tag,
    task_group.c.jitter_ms,
    task_group.c.on_success,
    # The overlap policy, and whether the open task stands for a slot that passed (its
    # start_at is its run's, its next_at the slot): see fss.domain.overlap.
    task_group.c.overlap,
    task_group.c.buffered_at,
    # Alerts: the group's own rules, and whether an alert about it is open (a success then
    # resolves it: fss.store.alerts).
    task_group.c.alert_rules,
    task_group.c.alert_open,
)
# The slot the group's unfinished backfill runs next (NULL without one), read with the group:
# an index probe, no statement more (fss.store.backfills).
_BACKFILL_NEXT_AT = unfinished_next_at(task_group.c.id).label("backfill_next_at")
# _lock_groups on PostgreSQL: a fixed text (no IN list rendered per batch size).
_LOCK_GROUPS_PG = sa.text(
    f"""
    SELECT {", ".join(c.name for c in _LOCKED_GROUP_COLUMNS)},
        (SELECT b.next_at FROM backfill b WHERE b.task_group_id = task_group.id
            AND b.done_at IS NULL ORDER BY b.id LIMIT 1) AS backfill_next_at
    FROM task_group WHERE id = ANY(CAST(:ids AS BIGINT[])) ORDER BY id FOR UPDATE
    """
).columns(*_LOCKED_GROUP_COLUMNS, sa.column("backfill_next_at", UTCDateTime()))


def _outcomes(
    won: list[tuple[TaskFinished, Any]], groups: dict[int, Any], now: datetime
) -> dict[int, _GroupOutcome]:
    outcomes: dict[int, _GroupOutcome] = {}
    judged = [(event, row, _finished_at(event, row, now)) for event, row in won]
    for event, row, finished_at in sorted(judged, key=lambda item: item[2]):
        group = groups.get(row.task_group_id)
        if group is None:
            continue  # deleted meanwhile
        schedule = Schedule(group.interval_ms, group.cron, group.time_zone)
        buffered_run = stands_for_passed_slot(group.buffered_at, group.next_at)
        slot = planned_slot(
            row.attempt, row.start_at, group.next_at, group.jitter_ms, buffered=buffered_run
        )
        next_run = plan_next_run(
            schedule,
            planned_at=slot,
            finished_at=finished_at,
            now=now,
            job_next_at=event.next_at,
            run_began_at=_shifted(event.at, -_run_time(event)),
            catch_up=bool(row.catch_up),
        )
        _report_problem(group.id, next_run)
        if row.attempt > 1 and group.overlap == SKIP:
            # Slots passed while it was retrying: the misfire rule decides (at the claim).
            next_run = after_retries(schedule, slot, next_run, event.next_at)
        # The run of a passed slot counts from when it began: its task's create_at (a
        # retry moved start_at to the retry's time; the slots before it passed meanwhile).
        since = row.create_at if buffered_run else slot
        buffered = _buffered_slot(group, schedule, slot, since, event.next_at, next_run)
        if buffered is not None:
            next_run = NextRun(buffered)
        outcome = outcomes.setdefault(group.id, _GroupOutcome(finished_at, next_run))
        outcome.last_run_at, outcome.next_run = finished_at, next_run
        outcome.buffered, outcome.start_at = buffered, (now if buffered else None)
        if event.success:
            outcome.successes += 1
            outcome.speed_sum += event.run_speed_ms
        # Data is saved by a successful run only: a failed sync must not move its cursor
        # on (what the job saved explicitly, TaskDataSaved, is written already).
        # What it changed is applied to the group's data as locked now (a change made
        # while it ran is kept: fss.store.data_saves).
        if event.data is not None and event.success:
            current = outcome.data if outcome.data is not None else group.data
            outcome.data = saved_data_text(event.data, event.data_patch, current)
    return outcomes


def planned_slot(
    attempt: int,
    start_at: datetime,
    group_next_at: datetime | None,
    jitter_ms: int = 0,
    *,
    buffered: bool = False,
) -> datetime:
    """The slot a run was planned for. A retry moved its task's start_at to the retry's
    time; the group's next_at still holds the slot (it moves only with the next task), and
    the next run is planned from the slot, as after any late finish. Jitter moved the first
    attempt's start_at later than the slot too (fss.domain.jitter), and so did the overlap
    policy for the run of a slot that passed while the run before went on (`buffered`)."""
    if (
        (attempt > 1 or jitter_ms or buffered)
        and group_next_at is not None
        and group_next_at < start_at
    ):
        return group_next_at
    return start_at


def _buffered_slot(
    group: Any,
    schedule: Schedule,
    slot: datetime,
    since: datetime,
    job_next_at: datetime | None,
    next_run: NextRun,
) -> datetime | None:
    """overlap buffer_one/replace: the slot that passed while this run went on (counted
    from `since`, see passed_slot), to run now. Not when the job set its next time (it
    decides) or the schedule could not be evaluated; not for a disabled group (it plans no
    task). `skip` groups cost one comparison."""
    if group.overlap == "skip" or not group.is_enable:
        return None
    if job_next_at is not None or next_run.problem is not None or next_run.catch_up:
        return None
    return passed_slot(group.overlap, schedule, slot, since, next_run.at)


def _report_problem(group_id: int, next_run: NextRun) -> None:
    if next_run.problem is not None:
        log.error(
            "group %s: its schedule cannot be evaluated (%s); next run at %s instead "
            "(fix it with `fss group edit %s`)",
            group_id,
            next_run.problem,
            next_run.at.isoformat(),
            group_id,
        )


def _finished_at(event: TaskFinished, row: Any, now: datetime) -> datetime:
    """When the run ended by the scheduler side's clock: a worker's clock may be off by a
    minute, and trusting it would skip slots (fast) or replay them (slow)."""
    dispatched = row.dispatched_at or row.start_at
    return finish_time(row.start_at, event.at, _shifted(dispatched, _run_time(event)), now)


def _run_time(event: TaskFinished) -> timedelta:
    # Bounded, so a bogus duration cannot overflow the date arithmetic.
    return timedelta(milliseconds=min(max(event.run_speed_ms, 0), MAX_RUN_MS))


def _shifted(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return moment


def _insert_next_tasks(
    conn: Connection,
    groups: dict[int, Any],
    outcomes: dict[int, _GroupOutcome],
    now: datetime,
    claim_next: ClaimNext | None = None,
) -> dict[int, int]:
    """The next task of each enabled group: {group id: task id}."""
    if not groups:
        return {}
    # Each group's planned start: its next slot, pushed later by its jitter (if any).
    starts = {gid: _planned_start(gid, group, outcomes[gid]) for gid, group in groups.items()}
    claimed = {
        gid
        for gid in groups
        if claim_next is not None and starts[gid] <= claim_next.horizon
    }
    lease_until = claim_next.lease_until if claim_next is not None else None
    next_ids = _inserted_ids(
        conn,
        [
            {
                "task_group_id": gid,
                "job_name": group.job_name,
                "start_at": starts[gid],
                "status": TaskStatus.NONE,
                "open_group_id": gid,
                "create_at": now,
                "catch_up": outcomes[gid].next_run.catch_up,
                "claimed_by": claim_next.node if gid in claimed and claim_next else None,
                "claimed_until": lease_until if gid in claimed else None,
                "kind": _next_kind(outcomes[gid]),
            }
            for gid, group in groups.items()
        ],
    )
    if claim_next is not None:
        claim_next.claimed.extend(
            _claimed_task(next_ids[gid], groups[gid], outcomes[gid]) for gid in sorted(claimed)
        )
    return next_ids


def _inserted_ids(conn: Connection, rows: list[dict[str, Any]]) -> dict[int, int]:
    """Insert the groups' next tasks: {group id: new task id}. One statement that returns
    the ids where the dialect can (PostgreSQL: arrays unnested into rows, a fixed text;
    SQLite, MariaDB: INSERT ... RETURNING), else the INSERT and a read of the groups' open
    tasks, which are exactly these rows."""
    if conn.dialect.name == "postgresql":
        params = {column: [row[column] for row in rows] for column in _NEXT_TASK_COLUMNS}
        for column, kind in _NEXT_TASK_COLUMNS.items():
            if kind == "TIMESTAMP":  # arrays bypass UTCDateTime: stored as naive UTC
                params[column] = [None if at is None else naive_utc(at) for at in params[column]]
        params["status"] = [int(status) for status in params["status"]]
        return {r.open_group_id: r.id for r in conn.execute(_INSERT_NEXT_PG, params)}
    if conn.dialect.insert_executemany_returning:
        inserted = conn.execute(task.insert().returning(task.c.id, task.c.open_group_id), rows)
        return {r.open_group_id: r.id for r in inserted}
    conn.execute(task.insert(), rows)
    group_ids = [row["open_group_id"] for row in rows]
    return {
        r.open_group_id: r.id
        for r in conn.execute(
            sa.select(task.c.id, task.c.open_group_id).where(task.c.open_group_id.in_(group_ids))
        )
    }


_NEXT_TASK_COLUMNS = {
    "task_group_id": "BIGINT",
    "job_name": "VARCHAR",
    "start_at": "TIMESTAMP",
    "status": "SMALLINT",
    "open_group_id": "BIGINT",
    "create_at": "TIMESTAMP",
    "catch_up": "BOOLEAN",
    "claimed_by": "VARCHAR",
    "claimed_until": "TIMESTAMP",
    "kind": "VARCHAR",
}
# The batch's next tasks in one statement whose text does not depend on the batch size:
# SQLAlchemy's multi-row INSERT ... RETURNING rendered and processed every row in Python
# (8% of the scheduler's CPU at 800 runs/s).
_INSERT_NEXT_PG = sa.text(
    f"""
    INSERT INTO task ({", ".join(_NEXT_TASK_COLUMNS)})
    SELECT * FROM unnest({", ".join(f"CAST(:{c} AS {t}[])" for c, t in _NEXT_TASK_COLUMNS.items())})
    RETURNING id, open_group_id
    """
)


def _planned_start(group_id: int, group: Any, outcome: _GroupOutcome) -> datetime:
    """When the group's next task is due: now for a slot that passed while the run went on
    (overlap), else its slot pushed later by its jitter (if any); a backfill slot is due
    at the slot itself (past: at once), which the job gets as ctx.start_at."""
    if outcome.backfill_next is not None:
        return outcome.backfill_next
    if outcome.start_at is not None:
        return outcome.start_at
    return jittered_start(group_id, outcome.next_run.at, group.jitter_ms)


def _note_buffered(
    conn: Connection,
    groups: dict[int, Any],
    outcomes: dict[int, _GroupOutcome],
    next_ids: dict[int, int],
    now: datetime,
) -> None:
    """A run log line on each next task that runs a passed slot now (one INSERT for the
    batch; none when no group buffered, as for every `skip` group)."""
    rows = [
        {
            "task_id": next_ids[gid],
            "task_group_id": gid,
            "log_level": _INFORMATION_LEVEL,
            "content": buffered_note(groups[gid].overlap, outcome.buffered),
            "create_at": now,
            "attempt": 0,
        }
        for gid, outcome in sorted(outcomes.items())
        if outcome.buffered is not None and gid in next_ids
    ]
    if rows:
        conn.execute(run_log.insert(), rows)


_INFORMATION_LEVEL = 2


def _claimed_task(task_id: int, group: Any, outcome: _GroupOutcome) -> ClaimedTask:
    """What claim_due would have read for this new task (the group's data as updated now)."""
    return ClaimedTask(
        task_id,
        group.id,
        group.job_name,
        _planned_start(group.id, group, outcome),
        0,
        outcome.data if outcome.data is not None else group.data,
        Schedule(group.interval_ms, group.cron, group.time_zone),
        group.misfire,
        route=group.route,
        client_tag=group.client_tag or None,
        kind=_next_kind(outcome),
    )


def _next_kind(outcome: _GroupOutcome) -> str:
    return BACKFILL if outcome.backfill_next is not None else "scheduled"


def _interleave_backfills(
    conn: Connection,
    won: list[tuple[TaskFinished, Any]],
    groups: dict[int, Any],
    outcomes: dict[int, _GroupOutcome],
    now: datetime,
) -> None:
    """fss group backfill: regular and backfill runs of a group alternate. A backfill run
    that ended leaves the group's regular slot (next_at) as it was, and its next task is
    that slot again (past meanwhile: the misfire rule decides, as after any late finish);
    its backfill moves to its next slot. A regular run that ended while the group has a
    backfill slot to run makes that slot the next task, the regular slot waiting in next_at.
    Groups without a backfill cost a comparison (their backfill_next_at is NULL)."""
    ran: dict[int, datetime] = {}
    for _, row in won:
        group = groups.get(row.task_group_id)
        outcome = outcomes.get(row.task_group_id)
        if group is None or outcome is None:
            continue
        slot = backfill_slot_ran(row.kind, row.attempt, row.start_at, group.backfill_next_at)
        if slot is not None:
            ran[group.id] = slot
            outcome.next_run = NextRun(group.next_at)
            outcome.backfill_ran, outcome.backfill_next = slot, None
        elif group.backfill_next_at is not None and group.is_enable:
            outcome.backfill_next, outcome.backfill_ran = group.backfill_next_at, None
        else:
            continue
        # The overlap policy's passed slot waits in next_at behind the backfill run (and a
        # backfill run passes no regular slot): no task of this batch runs it now.
        outcome.buffered = outcome.start_at = None
    if ran:
        advance_backfills(conn, ran, now)


def backfill_slot_ran(
    kind: str, attempt: int, start_at: datetime, backfill_next_at: datetime | None
) -> datetime | None:
    """The backfill slot an ended run was, or None. A backfill task's first attempt is due
    at its slot; a retry moved its start_at, and the group's backfill still holds the slot.
    A backfill task whose slot is not its backfill's next one (cancelled, or moved by an
    edit of the schedule) counts as a regular run."""
    if kind != BACKFILL or backfill_next_at is None:
        return None
    if attempt > 1 or start_at == backfill_next_at:
        return backfill_next_at
    return None


def _update_groups(
    conn: Connection, outcomes: dict[int, _GroupOutcome], next_ids: dict[int, int]
) -> None:
    """Each group's stats, next time, data and next task. The rows are locked already
    (_lock_groups). PostgreSQL: one set-based UPDATE for the batch; elsewhere one UPDATE per
    group (an executemany, which psycopg2 would send row by row)."""
    if conn.dialect.name == "postgresql" and len(outcomes) > 1:
        ordered = sorted(outcomes.items())
        conn.execute(
            _GROUPS_MANY_PG,
            {
                "ids": [gid for gid, _ in ordered],
                "incs": [o.successes for _, o in ordered],
                "speed_sums": [o.speed_sum for _, o in ordered],
                "lasts": [naive_utc(o.last_run_at) for _, o in ordered],
                "nexts": [naive_utc(o.next_run.at) for _, o in ordered],
                "datas": [o.data for _, o in ordered],
                "task_ids": [next_ids.get(gid) for gid, _ in ordered],
                "buffereds": [
                    None if o.buffered is None else naive_utc(o.buffered) for _, o in ordered
                ],
            },
        )
        return
    conn.execute(
        _GROUP_STATEMENT,
        [
            {
                "b_group": gid,
                "b_inc": o.successes,
                "b_speed_sum": o.speed_sum,
                "b_last": o.last_run_at,
                "b_next": o.next_run.at,
                "b_data": o.data,
                "b_task_id": next_ids.get(gid),
                "b_buffered": o.buffered,
            }
            for gid, o in outcomes.items()
        ],
    )


_INC = sa.bindparam("b_inc", type_=sa.BigInteger())
_GROUP_STATEMENT = (
    task_group.update()
    .where(task_group.c.id == sa.bindparam("b_group"))
    # The version before the data: MySQL assigns in order, and the version compares the
    # data as it was.
    .ordered_values(
        (task_group.c.version, version_after_data(sa.bindparam("b_data", type_=sa.Text()))),
        # Floor division keeps the column integral on every backend (SQLite's / is real).
        # The average before the count: on MySQL it reads the count as it was.
        (
            task_group.c.run_speed_avg,
            sa.case(
                (_INC == 0, task_group.c.run_speed_avg),
                else_=(
                    task_group.c.run_speed_avg * task_group.c.run_count
                    + sa.bindparam("b_speed_sum", type_=sa.BigInteger())
                )
                // (task_group.c.run_count + _INC),
            ),
        ),
        (task_group.c.run_count, task_group.c.run_count + _INC),
        (task_group.c.last_run_at, sa.bindparam("b_last")),
        (task_group.c.next_at, sa.bindparam("b_next")),
        (
            task_group.c.data,
            sa.func.coalesce(sa.bindparam("b_data", type_=sa.Text()), task_group.c.data),
        ),
        (
            task_group.c.task_id,
            sa.func.coalesce(
                sa.bindparam("b_task_id", type_=sa.BigInteger()), task_group.c.task_id
            ),
        ),
        (task_group.c.buffered_at, sa.bindparam("b_buffered", type_=UTCDateTime())),
    )
)


# _GROUP_STATEMENT for a whole batch, column for column (bigint / bigint is the floor
# division of non-negative values there); a fixed text, compiled once.
_GROUPS_MANY_PG = sa.text(
    """
    UPDATE task_group SET run_count = task_group.run_count + v.inc,
        run_speed_avg = CASE WHEN v.inc = 0 THEN task_group.run_speed_avg
            ELSE (task_group.run_speed_avg * task_group.run_count + v.speed_sum)
                / (task_group.run_count + v.inc) END,
        last_run_at = v.last_run_at, next_at = v.next_at,
        data = COALESCE(v.data, task_group.data),
        task_id = COALESCE(v.task_id, task_group.task_id), buffered_at = v.buffered_at
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:incs AS BIGINT[]), CAST(:speed_sums AS BIGINT[]),
                CAST(:lasts AS TIMESTAMP[]), CAST(:nexts AS TIMESTAMP[]),
                CAST(:datas AS TEXT[]), CAST(:task_ids AS BIGINT[]),
                CAST(:buffereds AS TIMESTAMP[]))
        AS v(id, inc, speed_sum, last_run_at, next_at, data, task_id, buffered_at)
    WHERE task_group.id = v.id
    """
)


_COLUMN_ORDER = {name: i for i, name in enumerate(task_group.c.keys())}


def _assignment_order(item: tuple[str, Any]) -> tuple[bool, int]:
    return item[0] != "version", _COLUMN_ORDER[item[0]]


def schedule_next(
    conn: Connection,
    *,
    group_id: int,
    planned_at: datetime,
    finished_at: datetime,
    success: bool,
    run_speed_ms: int,
    job_next_at: datetime | None = None,
    data: dict[str, Any] | None = None,
    catch_up: bool = False,
    attempt: int = 1,
    kind: str = "scheduled",
    created_at: datetime | None = None,
) -> int | None:
    """Group bookkeeping after a task ended; returns the id of the next task, if any.

    `finished_at` is the end by the caller's (scheduler side's) clock; `catch_up` says the
    run that ended was itself a catch-up run (see plan_next_run); `attempt` the attempt
    that ended it (a retried task's slot is the group's next_at, see planned_slot);
    `created_at` the task's create_at (when the run of a passed slot began).
    """
    group = conn.execute(
        sa.select(
            task_group.c.is_enable,
            task_group.c.interval_ms,
            task_group.c.cron,
            task_group.c.time_zone,
            task_group.c.job_name,
            task_group.c.next_at,
            task_group.c.jitter_ms,
            task_group.c.overlap,
            task_group.c.buffered_at,
            _BACKFILL_NEXT_AT,
        )
        .where(task_group.c.id == group_id)
        .with_for_update()
    ).first()
    if group is None:
        return None
    schedule = Schedule(group.interval_ms, group.cron, group.time_zone)
    buffered_run = stands_for_passed_slot(group.buffered_at, group.next_at)
    slot = planned_slot(
        attempt, planned_at, group.next_at, group.jitter_ms, buffered=buffered_run
    )
    next_run = plan_next_run(
        schedule,
        planned_at=slot,
        finished_at=finished_at,
        now=finished_at,
        job_next_at=job_next_at,
        catch_up=catch_up,
    )
    _report_problem(group_id, next_run)
    if attempt > 1 and group.overlap == SKIP:
        next_run = after_retries(schedule, slot, next_run, job_next_at)
    # overlap buffer_one/replace: a slot that passed while the run went on runs now.
    since = (created_at or planned_at) if buffered_run else slot
    buffered = _buffered_slot(group, schedule, slot, since, job_next_at, next_run)
    if buffered is not None:
        next_run = NextRun(buffered)
    # fss group backfill: regular and backfill runs alternate (see _interleave_backfills).
    backfill_ran = backfill_slot_ran(kind, attempt, planned_at, group.backfill_next_at)
    backfill_next = None
    if backfill_ran is not None:
        next_run, buffered = NextRun(group.next_at), None
        advance_backfills(conn, {group_id: backfill_ran}, finished_at)
    elif group.backfill_next_at is not None and group.is_enable:
        backfill_next, buffered = group.backfill_next_at, None
    changes: dict[str, Any] = {
        "last_run_at": finished_at, "next_at": next_run.at, "buffered_at": buffered,
    }
    if success:
        changes["run_count"] = task_group.c.run_count + 1
        # Floor division keeps the column integral on every backend (SQLite's / is real).
        changes["run_speed_avg"] = (
            task_group.c.run_speed_avg * task_group.c.run_count + run_speed_ms
        ) // (task_group.c.run_count + 1)
    if data is not None:
        changes["data"] = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        changes["version"] = version_after_data(sa.literal(changes["data"], sa.Text()))
    next_task_id: int | None = None
    if group.is_enable:
        start_at = (
            finished_at if buffered else jittered_start(group_id, next_run.at, group.jitter_ms)
        )
        if backfill_next is not None:
            start_at = backfill_next
        next_task_id = insert_waiting_task(conn, group_id, group.job_name, start_at, finished_at)
        if next_run.catch_up:
            conn.execute(task.update().where(task.c.id == next_task_id).values(catch_up=True))
        if backfill_next is not None:
            conn.execute(task.update().where(task.c.id == next_task_id).values(kind=BACKFILL))
        if buffered is not None:
            conn.execute(
                run_log.insert().values(
                    task_id=next_task_id, task_group_id=group_id, log_level=_INFORMATION_LEVEL,
                    content=buffered_note(group.overlap, buffered), create_at=finished_at,
                    attempt=0,
                )
            )
        changes["task_id"] = next_task_id
    # MySQL assigns in order, each reading the columns set before it: the version first (it
    # compares the data as it was), then the table's order (the average reads the old count).
    ordered = sorted(changes.items(), key=_assignment_order)
    conn.execute(task_group.update().where(task_group.c.id == group_id).ordered_values(*ordered))
    return next_task_id


def record_client_events(conn: Connection, events: Sequence[Event], now: datetime) -> int:
    """Heartbeats and unregistrations in arrival order; returns how many heartbeats came.

    The table ends as if each event had been written alone, in order (`client_steps`): a
    heartbeat sent before its client's `left` does not revive it, one sent after a `left`
    registers the client anew (a restart), and a `left` of an earlier incarnation neither
    removes nor hides the registration of the process that replaced it.
    """
    beats = sum(1 for event in events if isinstance(event, ClientHeartbeat))
    # Rows locked in id order, so two recorders writing the same clients never deadlock.
    plan = client_steps(events)
    for client_id in sorted(plan):
        for step in plan[client_id]:
            if isinstance(step, ClientLeft):
                remove_client(conn, _left_guard(step), "left", now)
            else:
                upsert_client(conn, step, now)
    return beats


ClientStep = ClientHeartbeat | ClientLeft


def client_steps(events: Sequence[Event]) -> dict[str, list[ClientStep]]:
    """Per client, the fewest writes that leave its row as the events written one by one.

    Before a client's first heartbeat its row is whatever the table holds, so each `left`
    there is kept as a guarded delete. From that heartbeat on the row is known here: a later
    heartbeat replaces a pending one (one upsert), a `left` matching the row removes it
    (the upsert then the delete, so client_departed keeps what the row held), and one that
    does not match (an older incarnation's, late) changes nothing.
    """
    steps: dict[str, list[ClientStep]] = {}
    known: dict[str, ClientHeartbeat | None] = {}  # the row, once a heartbeat made it known
    for event in events:
        if not isinstance(event, ClientHeartbeat | ClientLeft):
            continue
        client_id = event.client_id
        of_client = steps.setdefault(client_id, [])
        if isinstance(event, ClientHeartbeat):
            if known.get(client_id) is not None:
                of_client[-1] = event  # the pending heartbeat is always the last step
            else:
                of_client.append(event)
            known[client_id] = event
        elif client_id not in known:
            of_client.append(event)
        elif (row := known[client_id]) is not None and _left_matches(event, row.incarnation):
            of_client.append(event)
            known[client_id] = None
    return steps


def _left_matches(left: ClientLeft, incarnation: str) -> bool:
    """Whether `left` removes a row of `incarnation`: the SQL guard of _left_guard."""
    return not left.incarnation or not incarnation or left.incarnation == incarnation


def upsert_client(conn: Connection, beat: ClientHeartbeat, now: datetime) -> None:
    values = {
        "host": beat.host,
        "ip": beat.ip,
        "pid": beat.pid,
        "language": beat.language,
        "job_names": json.dumps(sorted(beat.job_names)),
        "queue": beat.queue,
        "heartbeat_at": now,
        "accepting": beat.accepting,
        # Route least_busy reads these from the client cache: no query per dispatch.
        "tags": tags_text(beat.tags),
        "active_runs": max(beat.active, 0),
    }
    restarted = sa.and_(client.c.incarnation.is_not(None), client.c.incarnation != beat.incarnation)
    new_process = sa.or_(client.c.pid != beat.pid, restarted)
    # A client kicked for hanging is healthy again once it runs nothing (its hung run ended)
    # or restarted; one an operator kicked (kick_reason set) only when it restarted.
    healthy = sa.or_(
        sa.and_(sa.literal(beat.active) == 0, client.c.kick_reason.is_(None)), new_process
    )
    updated = conn.execute(
        client.update()
        .where(client.c.id == beat.client_id)
        .values(
            **values,
            kicked_at=sa.case((healthy, None), else_=client.c.kicked_at),
            kick_reason=sa.case((new_process, None), else_=client.c.kick_reason),
            hung_count=sa.case((healthy, 0), else_=client.c.hung_count),
            registered_at=sa.case((restarted, now), else_=client.c.registered_at),
            incarnation=beat.incarnation,
        )
    ).rowcount
    if updated:
        return
    try:
        with conn.begin_nested():
            conn.execute(
                client.insert().values(
                    id=beat.client_id, registered_at=now, incarnation=beat.incarnation, **values
                )
            )
    except IntegrityError:
        conn.execute(client.update().where(client.c.id == beat.client_id).values(**values))


def _left_guard(event: ClientLeft) -> list[Any]:
    """Remove the row only if it is still the incarnation that left: a `left` replayed after
    the worker restarted under the same id removed the new process's row, and the supervisor
    then failed its runs. A `left` without an incarnation (older senders), or a row without
    one, is not guarded. The row goes to client_departed (fss.store.departures) in the same
    transaction."""
    guard = [client.c.id == event.client_id]
    if event.incarnation:
        guard.append(
            sa.or_(
                client.c.incarnation.is_(None),
                client.c.incarnation == "",
                client.c.incarnation == event.incarnation,
            )
        )
    return guard


def _count(rowcount: int, fallback: int) -> int:
    # Some drivers report -1 for executemany; the guarded statements stay correct either way.
    return rowcount if rowcount >= 0 else fallback
