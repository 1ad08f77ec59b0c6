"""The alert rules the sender checks every few seconds, each in one transaction.

Run rules (a run failed, hung, stopped at its limit) and a client dropped are raised where
they happen (fss.store.alerts); what no single event says is found here: a group late
(its dead man's switch), a job no live client serves, a node unhealthy, dead letters, and
the return of what was lost (a client back, a node heartbeating again), which resolves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.alerts import (
    CLIENT_LOST,
    DEAD_LETTERS,
    GROUP_LATE,
    GROUP_RULES,
    HUNG,
    JOB_UNSERVED,
    NODE_LOST,
    NODE_UNHEALTHY,
    RUN_FAILED,
    TIME_LIMIT,
    AlertPolicy,
    group_rules_on,
    group_subject,
    job_subject,
    late_after,
    node_subject,
)
from fss.domain.selection import parse_tags
from fss.domain.status import TaskStatus
from fss.store.alerts import raise_alert, resolve_alert_ids
from fss.store.tables import alert, client, dead_letter, server_node, task, task_group

UNFINISHED = (int(TaskStatus.NONE), int(TaskStatus.SCHEDULER), int(TaskStatus.WORKING))
FAILURE_RULES = (RUN_FAILED, TIME_LIMIT, HUNG)
_STATE_WORDS = {
    int(TaskStatus.NONE): "has not been dispatched",
    int(TaskStatus.SCHEDULER): "was sent to {client} but no worker started it",
    int(TaskStatus.WORKING): "has been running on {client} since {run_at}",
}


@dataclass(frozen=True)
class LateGroup:
    group_id: int
    planned_at: datetime
    why: str


_GROUP_COLUMNS = (
    task_group.c.id.label("group_id"), task_group.c.key, task_group.c.caption,
    task_group.c.job_name, task_group.c.interval_ms, task_group.c.cron,
    task_group.c.time_zone, task_group.c.late_after_s, task_group.c.alert_rules,
    task_group.c.next_at,
)


def check_late_groups(
    conn: Connection, now: datetime, policy: AlertPolicy, grace: timedelta
) -> list[int]:
    """Raise `group_late` for every enabled group without a successful run within its
    late_after of a planned run: its unfinished run planned too long ago (not dispatched,
    not started, still running), or every run since one planned too long ago failed (its
    open failure alert says when). The groups newly late.

    The groups found late are locked (as a run's end locks them) and judged again before
    anything is raised: a success committed meanwhile resolves, it is not overtaken by a
    late alert raised from what was read before it."""
    if GROUP_LATE not in policy.rules:
        return []
    cutoff = now - timedelta(seconds=1)
    suspects = _late(conn, _candidates(conn, cutoff), now, policy, grace)
    if not suspects:
        return []
    ids = sorted(suspects)
    conn.execute(
        sa.select(task_group.c.id)
        .where(task_group.c.id.in_(ids))
        .order_by(task_group.c.id)
        .with_for_update()
    ).all()
    confirmed = _late(conn, _candidates(conn, cutoff, ids), now, policy, grace)
    newly: list[int] = []
    for group_id in sorted(confirmed):
        row, found, allowed = confirmed[group_id]
        name = row.key or row.caption or f"group {row.group_id}"
        raised = raise_alert(
            conn,
            rule=GROUP_LATE,
            subject=group_subject(row.group_id),
            title=f"{name} ({row.job_name}): late, no successful run for "
            f"{_span(now - found.planned_at)}",
            detail=f"{found.why}; late after {_span(allowed)}",
            now=now,
            group_id=row.group_id,
            planned_at=found.planned_at,
            repeat_after=policy.repeat_after, reopen_within=policy.resolve_hold,
            count_up=False,
        )
        if raised.new:
            newly.append(row.group_id)
    return newly


def _candidates(
    conn: Connection, cutoff: datetime, group_ids: list[int] | None = None
) -> dict[int, tuple[Any, LateGroup]]:
    """Each enabled group's oldest run owed since before `cutoff`, with why it is owed."""
    only = [] if group_ids is None else [task_group.c.id.in_(group_ids)]
    unfinished = conn.execute(
        sa.select(
            *_GROUP_COLUMNS, task.c.start_at, task.c.status, task.c.client_id, task.c.run_at,
        )
        .join(task_group, task_group.c.id == task.c.task_group_id)
        .where(
            task.c.status.in_(UNFINISHED),
            task.c.start_at < cutoff,
            task_group.c.is_enable == sa.true(),
            *only,
        )
    ).all()
    failing = conn.execute(
        sa.select(*_GROUP_COLUMNS, alert.c.planned_at, alert.c.opened_at)
        .join(task_group, task_group.c.id == alert.c.task_group_id)
        .where(
            alert.c.open_key.is_not(None),
            alert.c.rule.in_(FAILURE_RULES),
            alert.c.planned_at < cutoff,
            task_group.c.is_enable == sa.true(),
            *only,
        )
    ).all()
    late: dict[int, tuple[Any, LateGroup]] = {}
    for row in unfinished:
        planned = min(row.start_at, row.next_at) if row.next_at else row.start_at
        words = _STATE_WORDS[int(row.status)].format(
            client=row.client_id or "a client",
            run_at="?" if row.run_at is None else f"{row.run_at:%H:%M:%S}",
        )
        _keep_earliest(late, row, LateGroup(row.group_id, planned,
                                            f"its run planned at {planned:%Y-%m-%d %H:%M:%S} "
                                            f"UTC {words}"))
    for row in failing:
        _keep_earliest(late, row, LateGroup(row.group_id, row.planned_at,
                                            f"every run since the one planned at "
                                            f"{row.planned_at:%Y-%m-%d %H:%M:%S} UTC failed"))
    return late


def _late(
    conn: Connection,
    candidates: dict[int, tuple[Any, LateGroup]],
    now: datetime,
    policy: AlertPolicy,
    grace: timedelta,
) -> dict[int, tuple[Any, LateGroup, timedelta]]:
    """The candidates late now, with their late_after."""
    recovered = _last_recoveries(conn, list(candidates))
    late: dict[int, tuple[Any, LateGroup, timedelta]] = {}
    for group_id, (row, found) in candidates.items():
        if GROUP_LATE not in group_rules_on(policy.rules, row.alert_rules):
            continue
        allowed = late_after(
            found.planned_at, interval_ms=row.interval_ms, cron=row.cron,
            time_zone=row.time_zone, late_after_s=row.late_after_s, grace=grace,
        )
        if now - found.planned_at <= allowed:
            continue
        # A success that resolved the group's alerts restarts its switch: the runs it owes
        # from before (the catch-up after an outage) get a late_after of their own.
        back = recovered.get(group_id)
        if back is not None and now - back <= allowed:
            continue
        late[group_id] = (row, found, allowed)
    return late


def _last_recoveries(conn: Connection, group_ids: list[int]) -> dict[int, datetime]:
    """When each group's run alerts were last resolved by a success."""
    if not group_ids:
        return {}
    rows = conn.execute(
        sa.select(alert.c.task_group_id, sa.func.max(alert.c.resolved_at))
        .where(
            alert.c.task_group_id.in_(sorted(group_ids)),
            alert.c.rule.in_((GROUP_LATE, *FAILURE_RULES)),
            alert.c.resolved_at.is_not(None),
        )
        .group_by(alert.c.task_group_id)
    )
    return {int(g): at for g, at in rows if at is not None}


def _keep_earliest(late: dict[int, tuple[Any, LateGroup]], row: Any, found: LateGroup) -> None:
    known = late.get(found.group_id)
    if known is None or found.planned_at < known[1].planned_at:
        late[found.group_id] = (row, found)


def _span(delta: timedelta) -> str:
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def resolve_gone_groups(conn: Connection, now: datetime) -> list[int]:
    """Group alerts of groups disabled or deleted since: nothing is owed any more."""
    rows = conn.execute(
        sa.select(alert.c.id)
        .select_from(alert.outerjoin(task_group, task_group.c.id == alert.c.task_group_id))
        .where(
            alert.c.open_key.is_not(None),
            alert.c.task_group_id.is_not(None),
            alert.c.rule.in_(GROUP_RULES),
            sa.or_(task_group.c.id.is_(None), task_group.c.is_enable == sa.false()),
        )
    ).scalars().all()
    return resolve_alert_ids(conn, [int(i) for i in rows], "the group was disabled or deleted", now)


@dataclass(frozen=True)
class Need:
    """A job (with a client tag) that enabled groups need a live client for."""

    job_name: str
    tag: str | None
    # Some of the groups (the first and last ids) and how many there are.
    groups: tuple[int, ...]
    count: int

    @property
    def subject(self) -> str:
        return job_subject(self.job_name, self.tag)


# How many index probes unserved_needs spends finding the (job, tag) pairs of the groups
# before it reads them with one aggregate instead: a probe is ~0.1 ms, the aggregate reads
# every enabled group (0.6-1 s of PostgreSQL at a million groups).
PAIR_PROBES = 400


def unserved_needs(
    conn: Connection, alive_since: datetime, policy: AlertPolicy,
    pair_probes: int = PAIR_PROBES,
) -> list[Need]:
    """The (job, tag) pairs of enabled groups (with job_unserved on) that no live client
    taking new runs serves now.

    The pairs the groups use are found by walking ix_task_group_job_tag, one probe per job
    and tag (a few dozen statements, whatever the number of groups); only the groups of the
    pairs no live client serves are then read. With more pairs than `pair_probes` allows,
    one aggregate over every enabled group finds them instead."""
    served = served_pairs(conn, alive_since)
    pairs = _group_pairs(conn, pair_probes)
    if pairs is None:
        return _needs(conn, policy, served, None)
    wanted = sorted((pair for pair in pairs if pair not in served), key=_pair_order)
    return _needs(conn, policy, served, wanted) if wanted else []


def _pair_order(pair: tuple[str, str | None]) -> tuple[str, str]:
    return pair[0], pair[1] or ""


def served_pairs(conn: Connection, alive_since: datetime) -> set[tuple[str, str | None]]:
    """(job, tag) pairs a live client taking new runs serves; tag None: any client."""
    served: set[tuple[str, str | None]] = set()
    rows = conn.execute(
        sa.select(client.c.job_names, client.c.tags).where(
            client.c.heartbeat_at >= alive_since,
            client.c.accepting == sa.true(),
            client.c.kicked_at.is_(None),
        )
    )
    for row in rows:
        tags: set[str | None] = {None, *parse_tags(row.tags)}
        served.update((job, tag) for job in json.loads(row.job_names or "[]") for tag in tags)
    return served


def _group_pairs(conn: Connection, limit: int) -> set[tuple[str, str | None]] | None:
    """Every (job, tag) some group (enabled or not) has, an empty tag as none; None when
    finding them would take more than `limit` probes."""
    job_name, tag = task_group.c.job_name, task_group.c.client_tag
    probes = 0

    def probe(query: sa.Select[Any]) -> Any:
        nonlocal probes
        probes += 1
        if probes > limit:
            raise _OverBudget
        return conn.execute(query).scalar()

    pairs: set[tuple[str, str | None]] = set()
    try:
        job = probe(sa.select(sa.func.min(job_name)))
        while job is not None:
            untagged = sa.select(job_name).where(job_name == job, tag.is_(None)).limit(1)
            if probe(untagged) is not None:
                pairs.add((job, None))
            found = probe(sa.select(sa.func.min(tag)).where(job_name == job))
            while found is not None:
                pairs.add((job, found or None))
                found = probe(sa.select(sa.func.min(tag)).where(job_name == job, tag > found))
            job = probe(sa.select(sa.func.min(job_name)).where(job_name > job))
    except _OverBudget:
        return None
    return pairs


class _OverBudget(Exception):
    """_group_pairs spent its probes: the caller reads every group instead."""


def _needs(
    conn: Connection, policy: AlertPolicy, served: set[tuple[str, str | None]],
    pairs: list[tuple[str, str | None]] | None,
) -> list[Need]:
    """The needs of the enabled groups of `pairs` (None: of every enabled group) that
    `served` leaves unserved, aggregated in SQL: one row per (job, tag, rules)."""
    needs: dict[tuple[str, str | None], list[int]] = {}
    counts: dict[tuple[str, str | None], int] = {}
    query = (
        sa.select(
            task_group.c.job_name, task_group.c.client_tag, task_group.c.alert_rules,
            sa.func.count(), sa.func.min(task_group.c.id), sa.func.max(task_group.c.id),
        )
        .where(task_group.c.is_enable == sa.true())
        .group_by(task_group.c.job_name, task_group.c.client_tag, task_group.c.alert_rules)
    )
    if pairs is not None:
        query = query.where(sa.or_(*(_of_pair(job, tag) for job, tag in pairs)))
    for job_name, tag, rules_json, count, first, last in conn.execute(query):
        if JOB_UNSERVED not in group_rules_on(policy.rules, rules_json):
            continue
        key = (job_name, tag or None)
        ids = needs.setdefault(key, [])
        ids.extend(i for i in (int(first), int(last)) if i not in ids)
        counts[key] = counts.get(key, 0) + int(count)
    ordered = sorted(needs.items(), key=lambda item: _pair_order(item[0]))
    return [
        Need(job, tag, tuple(sorted(groups)), counts[(job, tag)])
        for (job, tag), groups in ordered
        if (job, tag) not in served
    ]


def _of_pair(job: str, tag: str | None) -> sa.ColumnElement[bool]:
    if tag is None:
        untagged = sa.or_(task_group.c.client_tag.is_(None), task_group.c.client_tag == "")
        return sa.and_(task_group.c.job_name == job, untagged)
    return sa.and_(task_group.c.job_name == job, task_group.c.client_tag == tag)


def raise_unserved(
    conn: Connection, need: Need, since: datetime, now: datetime, policy: AlertPolicy
) -> bool:
    tag = f" with tag {need.tag}" if need.tag else ""
    count = need.count
    raised = raise_alert(
        conn,
        rule=JOB_UNSERVED,
        subject=need.subject,
        title=f"job {need.job_name}{tag}: no live client for {_span(now - since)}",
        detail=(
            f"{count} enabled group{'s' if count != 1 else ''} (id{'s' if count != 1 else ''} "
            f"{', '.join(str(g) for g in need.groups)}{', ...' if count > 2 else ''}) "
            f"run {need.job_name}{tag}; no live worker taking new runs serves it"
        ),
        now=now,
        repeat_after=policy.repeat_after, reopen_within=policy.resolve_hold,
        count_up=False,
    )
    return raised.new


def resolve_served(conn: Connection, unserved: Iterable[str], now: datetime) -> list[int]:
    """Open job_unserved alerts whose job is served again (or needed no more)."""
    still = set(unserved)
    rows = conn.execute(
        sa.select(alert.c.id, alert.c.subject).where(
            alert.c.open_key.is_not(None), alert.c.rule == JOB_UNSERVED
        )
    ).all()
    back = [int(r.id) for r in rows if r.subject not in still]
    return resolve_alert_ids(conn, back, "a live client serves the job again", now)


def resolve_returned_clients(conn: Connection, alive_since: datetime, now: datetime) -> list[int]:
    rows = conn.execute(
        sa.select(alert.c.id)
        .join(client, client.c.id == alert.c.client_id)
        .where(
            alert.c.open_key.is_not(None),
            alert.c.rule == CLIENT_LOST,
            client.c.heartbeat_at >= alive_since,
        )
    ).scalars().all()
    return resolve_alert_ids(conn, [int(i) for i in rows], "the client is back", now)


def check_nodes(
    conn: Connection, alive_since: datetime, now: datetime, policy: AlertPolicy
) -> None:
    """Unhealthy live nodes raise `node_unhealthy`; a node healthy again, or a lost node
    heartbeating again, resolves."""
    nodes = conn.execute(
        sa.select(server_node.c.id, server_node.c.is_alive, server_node.c.heartbeat_at,
                  server_node.c.unhealthy_reason)
    ).all()
    live = {r.id: r for r in nodes if r.is_alive and r.heartbeat_at >= alive_since}
    if NODE_UNHEALTHY in policy.rules:
        for node_id, row in sorted(live.items()):
            if row.unhealthy_reason:
                raise_alert(
                    conn, rule=NODE_UNHEALTHY, subject=node_subject(node_id),
                    title=f"scheduler node {node_id} unhealthy",
                    detail=row.unhealthy_reason, now=now,
                    repeat_after=policy.repeat_after, reopen_within=policy.resolve_hold,
                    count_up=False,
                )
    open_rows = conn.execute(
        sa.select(alert.c.id, alert.c.rule, alert.c.subject).where(
            alert.c.open_key.is_not(None), alert.c.rule.in_((NODE_LOST, NODE_UNHEALTHY))
        )
    ).all()
    back: list[int] = []
    healthy: list[int] = []
    for open_row in open_rows:
        node = live.get(open_row.subject.removeprefix("node:"))
        if open_row.rule == NODE_LOST and node is not None:
            back.append(int(open_row.id))
        elif open_row.rule == NODE_UNHEALTHY and (node is None or not node.unhealthy_reason):
            healthy.append(int(open_row.id))
    resolve_alert_ids(conn, back, "the node heartbeats again", now)
    resolve_alert_ids(conn, healthy, "the node is healthy again (or stopped)", now)


def check_dead_letters(conn: Connection, now: datetime, policy: AlertPolicy) -> None:
    """Dead letters present: one open alert saying how many and the newest reason; none
    left (purged, or pruned by retention): resolved."""
    count = int(conn.execute(sa.select(sa.func.count()).select_from(dead_letter)).scalar_one())
    if count == 0:
        rows = conn.execute(
            sa.select(alert.c.id).where(
                alert.c.open_key.is_not(None), alert.c.rule == DEAD_LETTERS
            )
        ).scalars().all()
        resolve_alert_ids(conn, [int(i) for i in rows], "no dead letters left", now)
        return
    if DEAD_LETTERS not in policy.rules:
        return
    newest = conn.execute(
        sa.select(dead_letter.c.queue, dead_letter.c.reason, dead_letter.c.received_at)
        .order_by(dead_letter.c.id.desc())
        .limit(1)
    ).first()
    detail = f"{count} dead letter{'s' if count != 1 else ''}"
    if newest is not None:
        detail += f"; newest from {newest.queue}: {newest.reason[:300]}"
    detail += " (fss dead-letters list)"
    raise_alert(
        conn, rule=DEAD_LETTERS, subject="dead_letters",
        title="event messages set aside as dead letters", detail=detail, now=now,
        repeat_after=policy.repeat_after, reopen_within=policy.resolve_hold, count_up=False,
    )


class UnservedClock:
    """Since when each need has been unserved, as one sender saw it (a new lease holder
    starts counting again: an alert comes at most one check later than it would have)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._since: dict[str, datetime] = {}

    def observe(self, needs: Iterable[Need]) -> dict[str, datetime]:
        now = self._now()
        current = {need.subject for need in needs}
        self._since = {s: t for s, t in self._since.items() if s in current}
        for subject in current:
            self._since.setdefault(subject, now)
        return dict(self._since)
