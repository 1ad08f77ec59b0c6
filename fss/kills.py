"""`fss task kill`, the API's kill and the task page's Kill button: stop one running run now.

A Python worker (`fss worker`) gets the `fss_kill` remote control command, addressed to its
Celery node (`<client id>@<host>`) alone: it runs Celery's own revoke with terminate there
(SIGTERM to the pool process running the job) and the worker reports the run Fail with
"killed by <who>". A pool that cannot kill a running job (threads, solo) refuses, and the
refusal is said plainly. A gRPC client behind `fss bridge` gets `cancel` from its bridge,
which fails the run if the client does not end it within a grace.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.broadcast import BROADCAST_CLIENT
from fss.domain.clock import Clock
from fss.errors import FssError
from fss.naming import celery_task_id
from fss.store import audit
from fss.store.audit import Actor
from fss.store.kills import (
    RunningAttempt,
    mark_kill_requested,
    note,
    running_attempt,
    unmark_kill_requested,
)
from fss.store.shards import OpenShard, running_shards

# The control command a worker registers (fss.bridge.hooks.KILL_COMMAND) and how long its
# answer is awaited: a prefork worker answers from its main process within milliseconds.
KILL_COMMAND = "fss_kill"
REPLY_TIMEOUT_S = 3.0


class Outcome(enum.Enum):
    SENT = "sent"
    REFUSED = "refused"
    NO_ANSWER = "no_answer"


class KillRefused(FssError):
    """The worker running the task could not kill it (or did not answer)."""


@dataclass(frozen=True)
class KillResult:
    task_id: int
    attempt: int
    client_id: str
    outcome: Outcome
    detail: str

    @property
    def message(self) -> str:
        if self.outcome is Outcome.SENT:
            return (
                f"task {self.task_id}: kill sent to {self.client_id} (attempt {self.attempt}); "
                "the run ends Fail"
            )
        return f"task {self.task_id}: not killed: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "client_id": self.client_id,
            "outcome": self.outcome.value,
            "message": self.message,
        }


def kill_task(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    task_id: int,
    who: str,
    actor: Actor | None = None,
) -> KillResult:
    """Ask the client running `task_id` to kill it; NotRunning (fss.store.kills) when it is
    not Working. The run log says who asked, and what the client answered; with `actor`,
    the audit trail too (in the transaction that writes the run log's line)."""
    with engine.connect() as conn:
        running = running_attempt(conn, task_id)
        shards = running_shards(conn, task_id) if running.client_id == BROADCAST_CLIENT else []
    reason = f"killed by {who}"
    if running.client_id == BROADCAST_CLIENT:
        return _kill_shards(engine, clock, settings, running, shards, who, actor)
    # Marked before it is sent: the kill ends the run at once, and an end recorded before
    # the mark was taken for an ordinary failure (a `replace` group's killed run retried).
    now = clock.now()
    with engine.begin() as conn:
        marked = mark_kill_requested(conn, running, None, now)
    outcome, detail = send_kill(settings, running, reason)
    with engine.begin() as conn:
        if outcome is Outcome.SENT:
            note(conn, running, f"kill requested by {who}", now)
        else:
            if marked:
                unmark_kill_requested(conn, running, now)
            note(conn, running, f"kill requested by {who}, not done: {detail}", now)
        result = KillResult(task_id, running.attempt, running.client_id, outcome, detail)
        _audit(conn, actor, running, result, now)
    return result


def _audit(
    conn: Connection, actor: Actor | None, running: RunningAttempt, result: KillResult,
    now: datetime,
) -> None:
    audit.record(conn, actor, "task.kill", now, group_id=running.group_id,
                 subject=f"task {running.task_id}",
                 detail={"task_id": running.task_id, "attempt": running.attempt,
                         "client_id": result.client_id, "outcome": result.outcome.value,
                         "answer": result.detail})


def _kill_shards(
    engine: Engine,
    clock: Clock,
    settings: Settings,
    running: RunningAttempt,
    shards: list[OpenShard],
    who: str,
    actor: Actor | None = None,
) -> KillResult:
    """A broadcast run: the kill goes to every running shard's client. Shards a client
    refused (or did not answer for) are failed by the supervisor a grace after the kill
    was asked, as any run still going after its kill."""
    reason = f"killed by {who}"
    answers = []
    sent = 0
    now = clock.now()
    with engine.begin() as conn:  # before the kills are sent, as kill_task does
        mark_kill_requested(conn, running, None, now)
    for shard in shards:
        outcome, detail = send_kill(settings, shard.running(), reason)
        sent += outcome is Outcome.SENT
        answers.append(f"shard {shard.shard} on {shard.client_id}: "
                       f"{'kill sent' if outcome is Outcome.SENT else detail}")
    summary = "; ".join(answers) or "no shard is running"
    outcome = Outcome.SENT if sent else Outcome.NO_ANSWER if shards else Outcome.REFUSED
    clients = ", ".join(sorted({s.client_id or "" for s in shards}))
    result = KillResult(
        running.task_id, running.attempt, f"{len(shards)} shards ({clients})", outcome, summary
    )
    with engine.begin() as conn:
        note(conn, running, f"kill requested by {who}: {summary}", now)
        _audit(conn, actor, running, result, now)
    return result


def node_name(running: RunningAttempt) -> str:
    """The Celery node name of the worker running it (`fss worker` names itself so)."""
    return f"{running.client_id}@{running.client_host}"


def send_kill(
    settings: Settings, running: RunningAttempt, reason: str
) -> tuple[Outcome, str]:
    """Send the kill to the worker running it (`reason` becomes the run's error); its
    answer. Also the supervisor's, for the overlap policy `replace`."""
    app = create_app(settings, main="fss-kill")
    try:
        replies = app.control.broadcast(
            KILL_COMMAND,
            arguments={
                "task_id": celery_task_id(running.task_id, running.attempt, running.shard),
                "reason": reason,
                "attempt": running.attempt,
            },
            destination=[node_name(running)],
            reply=True,
            timeout=REPLY_TIMEOUT_S,
        )
    finally:
        app.close()
    return interpret(running, replies or [])


def interpret(running: RunningAttempt, replies: list[dict[str, Any]]) -> tuple[Outcome, str]:
    """The worker's answer: {node: {"ok": ...}} or {node: {"error": ...}}; none at all from
    a worker that is gone, busy in a solo pool (it answers between jobs only), or a gRPC
    client's bridge that predates kill."""
    for reply in replies:
        answer = reply.get(node_name(running))
        if not isinstance(answer, dict):
            continue
        if "ok" in answer:
            return Outcome.SENT, str(answer["ok"])
        return Outcome.REFUSED, f"{running.client_id} refused: {answer.get('error', answer)}"
    return Outcome.NO_ANSWER, (
        f"{running.client_id} did not answer within {REPLY_TIMEOUT_S:g} s (a solo pool "
        "answers only between jobs; or the worker is gone)"
    )
