"""Alerts: which rules exist, when a group is late, what a notice says, how storms fold.

An alert is one open problem per (rule, subject): "run_failed" of group 12, "client_lost"
of client w1. Raising it again while it is open only counts up; it closes (resolved) once
with one notice. What reaches a target is a `Message`, the same whatever the target kind
(fss.domain.alert_targets turns it into a webhook body, a chat robot's card or an email).
Pure: no I/O, times are parameters.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fss.domain.cron import next_cron_time
from fss.errors import InvalidField

# Rules about one group (on/off per group with `alert_rules`, and globally).
RUN_FAILED = "run_failed"
TIME_LIMIT = "time_limit"
HUNG = "hung"
GROUP_LATE = "group_late"
JOB_UNSERVED = "job_unserved"
# Rules about the cluster (on/off globally).
CLIENT_LOST = "client_lost"
NODE_LOST = "node_lost"
NODE_UNHEALTHY = "node_unhealthy"
DEAD_LETTERS = "dead_letters"

RULES: dict[str, str] = {
    RUN_FAILED: "a run failed after its retries were used up",
    TIME_LIMIT: "a run was stopped at its time limit (max_run_s)",
    HUNG: "a run was failed as hung (no progress or log for timeout_s)",
    GROUP_LATE: "an enabled group had no successful run within late_after of a planned run",
    JOB_UNSERVED: "an enabled group's job has had no live client for a while",
    CLIENT_LOST: "a worker (client) went silent and was dropped",
    NODE_LOST: "a scheduler node stopped heartbeating without stopping cleanly",
    NODE_UNHEALTHY: "a scheduler node reports a loop stuck or failing",
    DEAD_LETTERS: "event messages were set aside as dead letters",
}
GROUP_RULES = (RUN_FAILED, TIME_LIMIT, HUNG, GROUP_LATE, JOB_UNSERVED)
# The rules a success of the group resolves.
RUN_RULES = (RUN_FAILED, TIME_LIMIT, HUNG, GROUP_LATE)
ALL_RULES = frozenset(RULES)

FIRING = "firing"
REMINDER = "reminder"
RESOLVED = "resolved"
NOTICE_KINDS = (FIRING, REMINDER, RESOLVED)

OPEN = "open"
CLOSED = "resolved"

MAX_TITLE = 300
MAX_DETAIL = 8000


@dataclass(frozen=True)
class AlertPolicy:
    """What the places that raise alerts need of the settings: the rules on globally and
    how often an open alert is repeated (None: never)."""

    rules: frozenset[str] = ALL_RULES
    repeat_after: timedelta | None = timedelta(hours=1)
    # A resolved alert raised again within this long is the same alert reopened: its
    # resolved notice (held back this long) is not sent, nor a new firing one, so a job
    # that fails every other run is one open alert, not a message pair per run.
    resolve_hold: timedelta = timedelta(seconds=60)


DEFAULT_POLICY = AlertPolicy()


def parse_rules(text: str | None, field_name: str = "alert_rules") -> frozenset[str]:
    """"all" (or empty), "none", or a comma-separated list of rule names. An unknown name
    is an error naming it: a typo must not switch a rule off silently."""
    raw = (text or "").strip()
    if raw == "" or raw.lower() == "all":
        return ALL_RULES
    if raw.lower() == "none":
        return frozenset()
    return validate_rule_list(
        [part.strip() for part in raw.split(",") if part.strip()], field_name
    )


def validate_rule_list(names: Iterable[Any], field_name: str = "alert_rules") -> frozenset[str]:
    chosen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or name not in RULES:
            known = ", ".join(RULES)
            raise InvalidField(field_name, f"unknown rule {name!r} (rules: {known})")
        chosen.add(name)
    return frozenset(chosen)


def group_rules_on(global_rules: frozenset[str], group_rules_json: str | None) -> frozenset[str]:
    """The rules on for one group: its own list when it has one (within the global set:
    a rule off globally is off everywhere), else the global set."""
    if group_rules_json is None:
        return global_rules
    try:
        own = json.loads(group_rules_json)
    except ValueError:
        return global_rules
    if not isinstance(own, list):
        return global_rules
    return global_rules & frozenset(name for name in own if isinstance(name, str))


def failure_rule(error: str | None) -> str:
    """Which rule a final failure raises, by what ended it (the supervisor's reasons and the
    worker's time-limit error say so in their text)."""
    text = (error or "").lower()
    if "time limit exceeded" in text:
        return TIME_LIMIT
    if text.startswith("hung:") or ": hung:" in text:
        return HUNG
    return RUN_FAILED


def open_key(rule: str, subject: str) -> str:
    return f"{rule}|{subject}"[:240]


def group_subject(group_id: int) -> str:
    return f"group:{group_id}"


def client_subject(client_id: str) -> str:
    return f"client:{client_id}"


def node_subject(node_id: str) -> str:
    return f"node:{node_id}"


def job_subject(job_name: str, tag: str | None = None) -> str:
    return f"job:{job_name}" if not tag else f"job:{job_name}#{tag}"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def late_after(
    planned_at: datetime,
    *,
    interval_ms: int | None,
    cron: str | None,
    time_zone: str | None,
    late_after_s: int | None,
    grace: timedelta,
) -> timedelta:
    """How long after `planned_at` a run may go without success before its group is late:
    the group's own `late_after_s`, else one period (the interval, or the gap from this
    cron slot to the next) plus `grace`; a group whose job sets the next time: the grace."""
    if late_after_s is not None:
        return timedelta(seconds=late_after_s)
    if interval_ms:
        return timedelta(milliseconds=interval_ms) + grace
    if cron:
        try:
            following = next_cron_time(cron, planned_at, time_zone)
        except Exception:
            return grace
        return max(following - planned_at, timedelta(0)) + grace
    return grace


def is_late(planned_at: datetime, now: datetime, allowed: timedelta) -> bool:
    return now - planned_at > allowed


def delivery_backoff(attempts: int, first_s: float = 5.0, cap_s: float = 600.0) -> timedelta:
    """Wait before the next delivery attempt after `attempts` failed ones: 5 s, 10 s, 20 s,
    ... at most 10 minutes."""
    exponent = max(attempts - 1, 0)
    seconds = first_s * (2 ** min(exponent, 30))
    return timedelta(seconds=min(seconds, cap_s))


@dataclass(frozen=True)
class Message:
    """What a target is told: a notice about one alert, a storm summary or a test."""

    # The same for every attempt and every sender of this delivery: receivers drop repeats.
    idempotency_key: str
    # firing | reminder | resolved | summary | test
    kind: str
    rule: str
    title: str
    text: str
    at: datetime
    alert_id: int | None = None
    count: int = 1
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    group: dict[str, Any] | None = None
    task_id: int | None = None
    client_id: str | None = None
    # The console page to look at (the task page for a run), when the console URL is known.
    url: str | None = None
    # A storm summary: the alerts it stands for.
    alert_ids: tuple[int, ...] = ()
    installation: str = ""

    @property
    def headline(self) -> str:
        """One line for a chat message's title or an email subject."""
        state = {
            FIRING: "FIRING",
            REMINDER: "STILL FIRING",
            RESOLVED: "RESOLVED",
            "summary": "FIRING",
            "summary-resolved": "RESOLVED",
            "summary-reminder": "STILL FIRING",
            "test": "TEST",
        }.get(self.kind, self.kind.upper())
        return f"[fss {state}] {self.title}"

    def to_json(self) -> dict[str, Any]:
        """The generic webhook's body (docs: README "Alerts")."""
        return {
            "id": self.idempotency_key,
            "kind": self.kind,
            "state": RESOLVED if self.kind in (RESOLVED, "summary-resolved") else FIRING,
            "rule": self.rule,
            "title": self.title,
            "text": self.text,
            "at": self.at.isoformat(),
            "alert_id": self.alert_id,
            "count": self.count,
            "opened_at": None if self.opened_at is None else self.opened_at.isoformat(),
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "group": self.group,
            "task_id": self.task_id,
            "client_id": self.client_id,
            "url": self.url,
            "alert_ids": list(self.alert_ids),
            "installation": self.installation,
        }


@dataclass(frozen=True)
class AlertView:
    """An alert as the sender reads it to compose a message."""

    id: int
    rule: str
    subject: str
    state: str
    title: str
    detail: str | None
    count: int
    opened_at: datetime
    resolved_at: datetime | None
    resolved_note: str | None
    task_group_id: int | None
    task_id: int | None
    client_id: str | None
    group_key: str | None = None
    group_caption: str | None = None
    job_name: str | None = None


def notice_message(
    view: AlertView,
    kind: str,
    key: str,
    now: datetime,
    console_url: str = "",
    installation: str = "",
) -> Message:
    """The message for one notice (firing, reminder or resolved) of `view`."""
    lines: list[str] = []
    if kind == RESOLVED:
        lines.append(view.resolved_note or "resolved")
        lines.append(f"open since {view.opened_at:%Y-%m-%d %H:%M:%S} UTC, raised {view.count}x")
    else:
        if view.detail:
            lines.append(view.detail)
        if kind == REMINDER:
            lines.append(
                f"still open since {view.opened_at:%Y-%m-%d %H:%M:%S} UTC, raised {view.count}x"
            )
    group = None
    if view.task_group_id is not None:
        group = {
            "id": view.task_group_id,
            "key": view.group_key,
            "caption": view.group_caption,
            "job_name": view.job_name,
        }
    return Message(
        idempotency_key=key,
        kind=kind,
        rule=view.rule,
        title=view.title,
        text="\n".join(lines),
        at=now,
        alert_id=view.id,
        count=view.count,
        opened_at=view.opened_at,
        resolved_at=view.resolved_at,
        group=group,
        task_id=view.task_id,
        client_id=view.client_id,
        url=console_link(console_url, view),
        installation=installation,
    )


def console_link(console_url: str, view: AlertView) -> str | None:
    base = console_url.rstrip("/")
    if not base:
        return None
    if view.task_id is not None:
        return f"{base}/tasks/{view.task_id}"
    if view.task_group_id is not None:
        return f"{base}/groups/{view.task_group_id}"
    if view.client_id is not None:
        return f"{base}/clients"
    return f"{base}/alerts"


@dataclass
class StormPlan:
    """How one target's pending notices go out: alone, or folded into summaries."""

    alone: list[int] = field(default_factory=list)
    # (kind, rule) -> the notices (ids) one summary stands for
    folded: dict[tuple[str, str], list[int]] = field(default_factory=dict)


def plan_storm(
    notices: Sequence[tuple[int, str, str]],
    threshold: int,
    continuing: Collection[tuple[str, str]] = (),
) -> StormPlan:
    """`notices`: (notice id, kind, rule) pending for one target. More than `threshold`
    notices of one kind and rule (300 groups late; the same 300 resolved when the worker
    came back) become one summary; the others go alone. threshold 0: never fold.
    `continuing`: the (kind, rule) of storms folded a moment ago; their stragglers fold
    as soon as there are two of them (one follow-up summary, not one message each)."""
    by_key: dict[tuple[str, str], list[int]] = {}
    for notice_id, kind, rule in notices:
        by_key.setdefault((kind, rule), []).append(notice_id)
    plan = StormPlan()
    for notice_id, kind, rule in notices:
        ids = by_key[(kind, rule)]
        limit = 1 if (kind, rule) in continuing else threshold
        if threshold > 0 and len(ids) > limit:
            plan.folded.setdefault((kind, rule), []).append(notice_id)
        else:
            plan.alone.append(notice_id)
    return plan


def storm_message(
    kind: str,
    rule: str,
    views: Sequence[AlertView],
    causes: Sequence[AlertView],
    key: str,
    now: datetime,
    console_url: str = "",
    installation: str = "",
    shown: int = 10,
) -> Message:
    """One message for many notices of one kind and rule; firing ones name the likely cause:
    the open alerts of the cluster rules (a client or node lost, a job unserved)."""
    count = len(views)
    noun = {
        GROUP_LATE: "groups late",
        RUN_FAILED: "groups with failed runs",
        TIME_LIMIT: "runs stopped at their time limit",
        HUNG: "runs failed as hung",
        JOB_UNSERVED: "jobs without a live client",
        CLIENT_LOST: "clients lost",
        NODE_LOST: "scheduler nodes lost",
        NODE_UNHEALTHY: "scheduler nodes unhealthy",
        DEAD_LETTERS: "dead-letter alerts",
    }.get(rule, f"{rule} alerts")
    lines: list[str] = []
    if causes and kind == FIRING:
        lines.append("likely cause: " + "; ".join(c.title for c in causes[:3]))
    for view in views[:shown]:
        lines.append(f"- {view.title}")
    if count > shown:
        lines.append(f"... and {count - shown} more")
    base = console_url.rstrip("/")
    status = {RESOLVED: " resolved", REMINDER: " still open"}.get(kind, "")
    return Message(
        idempotency_key=key,
        kind="summary" if kind == FIRING else f"summary-{kind}",
        rule=rule,
        title=f"{count} {noun}{status}",
        text="\n".join(lines),
        at=now,
        count=count,
        url=f"{base}/alerts" if base else None,
        alert_ids=tuple(v.id for v in views),
        installation=installation,
    )


def test_message(key: str, target_name: str, now: datetime, installation: str = "") -> Message:
    return Message(
        idempotency_key=key,
        kind="test",
        rule="test",
        title=f"test message to target {target_name}",
        text="If you read this, fss can reach this target.",
        at=now,
        installation=installation,
    )
