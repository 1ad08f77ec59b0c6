"""Health at a glance: what `fss health` checks, read from the store for the web UI, and
why a group cannot run now.

Read-only and bounded: the live clients and nodes are a few rows, unserved jobs are one
aggregate over task_group, late groups are the unfinished tasks planned before now plus the
open failure alerts (as the alert sender's check_late_groups reads them), and dead letters
are one count. Nothing here raises or resolves an alert.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.alerts import AlertPolicy
from fss.domain.selection import parse_tags
from fss.store.alert_checks import Need, _candidates, _late, unserved_needs
from fss.store.rows import GroupRow
from fss.store.tables import client, dead_letter, server_node

MAX_IDS_SHOWN = 10
# Every rule on: a group is late or unserved whatever FSS_ALERT_RULES says (a group's own
# alert_rules still switch group_late and job_unserved off for it).
ALL_RULES = AlertPolicy()


@dataclass(frozen=True)
class Problem:
    """One thing that needs a look: `check` names it, `level` is fail (runs stop or go
    unseen) or warning (runs go on), `detail` says it in one line, `href` where to look."""

    check: str
    level: str
    detail: str
    href: str | None = None
    group_ids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "detail": self.detail,
                "href": self.href, "group_ids": list(self.group_ids)}


def id_list(ids: Sequence[int], count: int | None = None) -> str:
    total = len(ids) if count is None else count
    shown = ", ".join(str(i) for i in list(ids)[:MAX_IDS_SHOWN])
    more = total - min(len(ids), MAX_IDS_SHOWN)
    noun = "group" if total == 1 else "groups"
    return f"{noun} {shown}" + (f" and {more} more" if more > 0 else "")


def node_problems(conn: Connection, alive_since: datetime) -> list[Problem]:
    """No live scheduler node (nothing is dispatched), or a live one unhealthy."""
    rows = conn.execute(
        sa.select(server_node.c.id, server_node.c.is_alive, server_node.c.heartbeat_at,
                  server_node.c.unhealthy_reason)
        .order_by(server_node.c.id)
    ).all()
    live = [r for r in rows if r.is_alive and r.heartbeat_at >= alive_since]
    if not live:
        return [Problem("scheduler", "fail", "no live scheduler node: nothing is dispatched",
                        "/nodes")]
    return [
        Problem("node_unhealthy", "warning",
                f"scheduler node {r.id} unhealthy: {r.unhealthy_reason}", "/nodes")
        for r in live if r.unhealthy_reason
    ]


def unserved_problems(conn: Connection, now: datetime, alive_since: datetime) -> list[Problem]:
    return [unserved_problem(need) for need in unserved_needs(conn, now, alive_since, ALL_RULES)]


def unserved_problem(need: Need) -> Problem:
    tag = f" with tag {need.tag}" if need.tag else ""
    return Problem(
        "job_unserved", "fail",
        f"no live client serves job {need.job_name!r}{tag} "
        f"({need.count} enabled group{'' if need.count == 1 else 's'})",
        f"/groups?q={need.job_name}", need.groups,
    )


def late_groups(
    conn: Connection, now: datetime, grace: timedelta, group_ids: Sequence[int] | None = None
) -> dict[int, str]:
    """The enabled groups late now, as the alert sender judges them (its group_late rule),
    with why; only among `group_ids` when given."""
    only = None if group_ids is None else sorted(group_ids)
    if only == []:
        return {}
    found = _late(conn, _candidates(conn, now - timedelta(seconds=1), only), now, ALL_RULES,
                  grace)
    return {group_id: late.why for group_id, (_, late, _) in found.items()}


def late_problems(conn: Connection, now: datetime, grace: timedelta) -> list[Problem]:
    late = late_groups(conn, now, grace)
    if not late:
        return []
    ids = sorted(late)
    href = f"/groups/{ids[0]}" if len(ids) == 1 else "/alerts?rule=group_late"
    first = late[ids[0]]
    detail = f"{id_list(ids)} late: no successful run in time"
    return [Problem("group_late", "warning",
                    detail + (f" ({first})" if len(ids) == 1 else ""), href, tuple(ids))]


def dead_letter_problems(conn: Connection) -> list[Problem]:
    count = int(conn.execute(sa.select(sa.func.count()).select_from(dead_letter)).scalar_one())
    if not count:
        return []
    return [Problem("dead_letters", "warning",
                    f"{count} event message{'' if count == 1 else 's'} set aside as dead "
                    "letters (fss dead-letters list)", "/alerts?rule=dead_letters")]


# ---- why one group cannot run now ----------------------------------------------------------


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


def blocked_reasons(
    conn: Connection,
    groups: Sequence[GroupRow],
    now: datetime,
    alive_since: datetime,
    grace: timedelta,
) -> dict[int, list[dict[str, str]]]:
    """Why each group cannot run now, by group id (a group that can run is left out):
    `disabled` (with its note), `unserved` (no live client for its job and tag), `late`."""
    if not groups:
        return {}
    served = served_pairs(conn, alive_since)
    late = late_groups(conn, now, grace, [g.id for g in groups if g.is_enable])
    found: dict[int, list[dict[str, str]]] = {}
    for group in groups:
        reasons = []
        if not group.is_enable:
            reasons.append({"reason": "disabled", "detail": group.disabled_note or ""})
        elif (group.job_name, group.client_tag or None) not in served:
            tag = f" with tag {group.client_tag}" if group.client_tag else ""
            reasons.append({"reason": "unserved",
                            "detail": f"no live client serves {group.job_name}{tag}"})
        if group.id in late:
            reasons.append({"reason": "late", "detail": late[group.id]})
        if reasons:
            found[group.id] = reasons
    return found
