"""Broadcast runs (route `broadcast`, XXL-JOB's sharding broadcast): one run on every live
client serving the job, each a shard with `ctx.shard_index` / `ctx.shard_total`.

A broadcast run is one task whose attempt has one shard per client. The task ends when all
its shards end, Success only if every shard succeeded; a retry re-runs only the shards that
failed (with the same shard_total: a shard is a slice of the work, not a client). Plain
functions: which shards an attempt runs and on which clients, and the task's verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# What a broadcast task's row holds as its client: the shards' clients are in task_run.
# Parentheses never occur in a client id (fss.naming.CLIENT_ID_PATTERN), so no client
# can be taken for it.
BROADCAST_CLIENT = "(broadcast)"
# Longest error text kept for a task (as fss.store.recording.MAX_ERROR_CHARS).
MAX_ERROR_CHARS = 8000


@dataclass(frozen=True)
class ShardPlan:
    """The shards one attempt runs: (shard index, client id), and how many shards the
    task has in all."""

    total: int
    assignments: tuple[tuple[int, str], ...]


def plan_shards(
    clients: Sequence[str], total: int | None, succeeded: Iterable[int] = ()
) -> ShardPlan | None:
    """The shards of the next attempt over these live clients, or None when there is no
    client (the task waits, as any task without a client).

    A first attempt (`total` None) has one shard per client, in client id order, so shard i
    is the i-th client by name. A retry keeps the task's `total` and runs every shard not in
    `succeeded`, spread over the clients live now in the same order (one client may take
    two shards when fewer clients are left than shards failed)."""
    ordered = sorted(set(clients))
    if not ordered:
        return None
    if total is None:
        return ShardPlan(len(ordered), tuple(enumerate(ordered)))
    done = set(succeeded)
    todo = [shard for shard in range(total) if shard not in done]
    return ShardPlan(
        total, tuple((shard, ordered[i % len(ordered)]) for i, shard in enumerate(todo))
    )


@dataclass(frozen=True)
class ShardOutcome:
    """How one shard of the ending attempt ended."""

    shard: int
    client_id: str | None
    success: bool
    error: str | None
    # False: the job refused retries for this failure (fss.Fail(retry=False)).
    retry: bool = True


@dataclass(frozen=True)
class Verdict:
    success: bool
    error: str | None
    # The task's attempt may be retried: not when every failed shard refused retries.
    retry: bool


def verdict(outcomes: Sequence[ShardOutcome], total: int) -> Verdict:
    """The task's end once every shard of its attempt ended: Success only if all did (the
    shards of earlier attempts that succeeded are not in `outcomes`: they count as done)."""
    failed = sorted((o for o in outcomes if not o.success), key=lambda o: o.shard)
    if not failed:
        return Verdict(True, None, True)
    lines = [
        f"shard {o.shard} of {total} ({o.client_id or 'no client'}): "
        f"{_first_line(o.error) or 'failed'}"
        for o in failed
    ]
    head = f"{len(failed)} of {total} shards failed"
    error = "\n".join([head, *lines])[-MAX_ERROR_CHARS:]
    return Verdict(False, error, any(o.retry for o in failed))


def _first_line(error: str | None) -> str:
    """A traceback's last line says what went wrong; other errors their first."""
    if not error:
        return ""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1].strip() if lines[0].startswith("Traceback") else lines[0].strip()
    return last[:500]


def mean_progress(progresses: Sequence[int], total: int) -> int:
    """The task's progress: the mean over all `total` shards, the ones of this attempt
    given, the others (done in an earlier attempt) at 100."""
    if total <= 0:
        return 0
    done_before = max(0, total - len(progresses))
    return int((sum(progresses) + 100 * done_before) / total)
