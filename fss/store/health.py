"""Health at a glance: what `fss health` checks, read from the store for the web UI, and
why a group cannot run now.

Read-only and bounded: the live clients and nodes are a few rows, unserved jobs are a walk
of the (job, tag) pairs on their index (only an unserved pair's groups are read), late
groups are the unfinished tasks planned before now plus the open failure alerts (as the
alert sender's check_late_groups reads them), and dead letters are one count. Nothing here
raises or resolves an alert.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fss.domain.alerts import AlertPolicy
from fss.store.alert_checks import Need, _candidates, _late, served_pairs, unserved_needs
from fss.store.rows import GroupRow
from fss.store.tables import dead_letter, server_node

MAX_IDS_SHOWN = 10
# Every rule on: a group is late or unserved whatever FSS_ALERT_RULES says (a group's own
# alert_rules still switch group_late and job_unserved off for it).
ALL_RULES = AlertPolicy()


# What each problem and each reason a group cannot run says, by code: English, {name} filled
# from the problem's params. A param that is itself {"code", "params"} is one of these texts
# too; the others are values, or sentences fss wrote that the console translates
# (fss.web.i18n.sentences). The web shows them in the page's language (every code has a
# zh-CN entry, tested); `detail` keeps the English for scripts.
PROBLEM_TEXTS: dict[str, str] = {
    "database_unreachable": "database: unreachable ({error})",
    "database": "database: {error}",
    "schema": "database: at revision {current}, needs {head} (run `fss db upgrade`)",
    "broker": "broker unreachable: {error}",
    "scheduler": "no live scheduler node: nothing is dispatched",
    "node_unhealthy": "scheduler node {node} unhealthy: {reason}",
    "job_unserved": "no live client serves job '{job}' ({count} enabled groups)",
    "job_unserved_one": "no live client serves job '{job}' (1 enabled group)",
    "job_unserved_tag": "no live client serves job '{job}' with tag {tag} ({count} enabled groups)",
    "job_unserved_tag_one": "no live client serves job '{job}' with tag {tag} (1 enabled group)",
    "group_late_one": "group {ids} late: no successful run in time ({why})",
    "group_late": "groups {ids} late: no successful run in time",
    "group_late_more": "groups {ids} and {more} more late: no successful run in time",
    "dead_letters_one": "1 event message set aside as dead letters (fss dead-letters list)",
    "dead_letters": "{count} event messages set aside as dead letters (fss dead-letters list)",
    "alert_target": "alert target {name} failing: {failures}{given_up}{last}",
    "failed_attempts_one": "1 failed attempt in {window}",
    "failed_attempts": "{count} failed attempts in {window}",
    "given_up_one": ", 1 delivery given up",
    "given_up": ", {count} deliveries given up",
    "last_error": ", last: {error}",
    # why one group cannot run (blocked_reasons)
    "unserved": "no live client serves {job}",
    "unserved_tag": "no live client serves {job} with tag {tag}",
    "late": "{why}",
}


def problem_text(code: str, params: dict[str, Any]) -> str:
    """The English of a code with its params (nested {"code", "params"} filled the same)."""
    def value(item: Any) -> str:
        if isinstance(item, dict) and "code" in item:
            return problem_text(item["code"], item.get("params") or {})
        return str(item)

    return _PARAM.sub(lambda m: value(params[m[1]]) if m[1] in params else m[0],
                      PROBLEM_TEXTS[code])


_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Problem:
    """One thing that needs a look: `check` names it, `level` is fail (runs stop or go
    unseen) or warning (runs go on), `code` and `params` say it (PROBLEM_TEXTS; `detail`
    is its English line), `href` where to look."""

    check: str
    level: str
    code: str
    params: dict[str, Any]
    href: str | None = None
    group_ids: tuple[int, ...] = ()

    @property
    def detail(self) -> str:
        return problem_text(self.code, self.params)

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "detail": self.detail,
                "code": self.code, "params": self.params,
                "href": self.href, "group_ids": list(self.group_ids)}


def id_list(ids: Sequence[int], count: int | None = None) -> tuple[str, dict[str, Any]]:
    """("group_late_one" | "group_late" | "group_late_more", params) of some group ids."""
    total = len(ids) if count is None else count
    shown = ", ".join(str(i) for i in list(ids)[:MAX_IDS_SHOWN])
    more = total - min(len(ids), MAX_IDS_SHOWN)
    if total == 1:
        return "group_late_one", {"ids": shown}
    if more > 0:
        return "group_late_more", {"ids": shown, "more": more}
    return "group_late", {"ids": shown}


def node_problems(conn: Connection, alive_since: datetime) -> list[Problem]:
    """No live scheduler node (nothing is dispatched), or a live one unhealthy."""
    rows = conn.execute(
        sa.select(server_node.c.id, server_node.c.is_alive, server_node.c.heartbeat_at,
                  server_node.c.unhealthy_reason)
        .order_by(server_node.c.id)
    ).all()
    live = [r for r in rows if r.is_alive and r.heartbeat_at >= alive_since]
    if not live:
        return [Problem("scheduler", "fail", "scheduler", {}, "/nodes")]
    return [
        Problem("node_unhealthy", "warning", "node_unhealthy",
                {"node": r.id, "reason": r.unhealthy_reason}, "/nodes")
        for r in live if r.unhealthy_reason
    ]


def unserved_problems(conn: Connection, alive_since: datetime) -> list[Problem]:
    return [unserved_problem(need) for need in unserved_needs(conn, alive_since, ALL_RULES)]


def unserved_problem(need: Need) -> Problem:
    code = "job_unserved" + ("_tag" if need.tag else "") + ("_one" if need.count == 1 else "")
    params: dict[str, Any] = {"job": need.job_name, "count": need.count}
    if need.tag:
        params["tag"] = need.tag
    return Problem("job_unserved", "fail", code, params, f"/groups?q={need.job_name}",
                   need.groups)


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
    code, params = id_list(ids)
    if len(ids) == 1:
        params["why"] = late[ids[0]]
    return [Problem("group_late", "warning", code, params, href, tuple(ids))]


def dead_letter_problems(conn: Connection) -> list[Problem]:
    count = int(conn.execute(sa.select(sa.func.count()).select_from(dead_letter)).scalar_one())
    if not count:
        return []
    return [Problem("dead_letters", "warning", "dead_letters_one" if count == 1 else "dead_letters",
                    {"count": count}, "/alerts?rule=dead_letters")]


# ---- why one group cannot run now ----------------------------------------------------------


def blocked_reasons(
    conn: Connection,
    groups: Sequence[GroupRow],
    now: datetime,
    alive_since: datetime,
    grace: timedelta,
) -> dict[int, list[dict[str, Any]]]:
    """Why each group cannot run now, by group id (a group that can run is left out):
    `disabled` (with its note), `unserved` (no live client for its job and tag), `late`;
    each with its English `detail` and its `code` and `params` (PROBLEM_TEXTS) but disabled,
    whose detail is the operator's own note."""
    if not groups:
        return {}
    served = served_pairs(conn, alive_since)
    late = late_groups(conn, now, grace, [g.id for g in groups if g.is_enable])
    found: dict[int, list[dict[str, Any]]] = {}
    for group in groups:
        reasons: list[dict[str, Any]] = []
        if not group.is_enable:
            reasons.append({"reason": "disabled", "detail": group.disabled_note or ""})
        elif (group.job_name, group.client_tag or None) not in served:
            params = {"job": group.job_name}
            if group.client_tag:
                params["tag"] = group.client_tag
            reasons.append(_reason("unserved", "unserved_tag" if group.client_tag else "unserved",
                                   params))
        if group.id in late:
            reasons.append(_reason("late", "late", {"why": late[group.id]}))
        if reasons:
            found[group.id] = reasons
    return found


def _reason(reason: str, code: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"reason": reason, "detail": problem_text(code, params), "code": code,
            "params": params}
