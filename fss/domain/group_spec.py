"""What an operator may configure on a task group, validated before anything is written."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from fss.domain.alerts import GROUP_RULES, RULES, validate_rule_list
from fss.domain.clock import require_storable_time
from fss.domain.cron import load_zone, validate_cron
from fss.domain.schedule import Schedule
from fss.errors import InvalidField

MAX_CAPTION = 64
MAX_JOB_NAME = 64
MAX_DATA_BYTES = 64 * 1024
MAX_INTERVAL_MS = 366 * 24 * 3600 * 1000
JOB_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]+")


@dataclass(frozen=True)
class GroupSpec:
    caption: str
    job_name: str
    interval_ms: int | None = None
    cron: str | None = None
    job_sets_next: bool = False
    time_zone: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    start_at: datetime | None = None
    is_enable: bool = True
    timeout_s: int | None = None
    misfire: str = "run-once"
    # Run policies (README "Run policies"); the defaults keep the behaviour of groups made
    # before them.
    retries: int = 0
    retry_delay_ms: int = 1000
    retry_backoff: float = 2.0
    retry_delay_max_ms: int | None = None
    retry_jitter: bool = True
    max_run_s: int | None = None
    overlap: str = "skip"
    route: str = "round_robin"
    client_tag: str | None = None
    # Group keys (str) and ids (int) that run when a run of this group ends Success.
    on_success: tuple[str | int, ...] = ()
    jitter_ms: int = 0
    # Alerts (README "Alerts"): the targets this group's alerts go to (empty = the default
    # targets), the rules on for it (None = every rule on globally, () = no alerts), and how
    # long after a planned run without success it is late (None = one period plus grace).
    alert_targets: tuple[str, ...] = ()
    alert_rules: tuple[str, ...] | None = None
    late_after_s: int | None = None
    # Why the group is disabled and when it enables itself (a disabled group only).
    disabled_note: str | None = None
    enable_at: datetime | None = None

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.interval_ms, self.cron, self.time_zone)

    def validated(self) -> GroupSpec:
        """A normalized copy, or InvalidField naming the first bad field."""
        caption = validate_caption(self.caption)
        job_name = validate_job_name(self.job_name)
        chosen = [self.interval_ms is not None, bool(self.cron), self.job_sets_next]
        if sum(chosen) != 1:
            raise InvalidField("schedule", "give exactly one of interval_ms, cron or job_sets_next")
        checked = validate_schedule(self.interval_ms, self.cron, self.time_zone)
        interval, cron = checked.interval_ms, checked.cron
        validate_data(self.data)
        if self.timeout_s is not None:
            validate_timeout(self.timeout_s)
        validate_misfire(self.misfire)
        start_at = (
            require_storable_time("start_at", self.start_at) if self.start_at is not None else None
        )
        return replace(
            self,
            caption=caption,
            job_name=job_name,
            interval_ms=interval,
            cron=cron,
            time_zone=self.time_zone or None,
            start_at=start_at,
            **validate_policies(self),
        )


def validate_policies(spec: GroupSpec) -> dict[str, Any]:
    """The run-policy fields of `spec`, checked and normalized (InvalidField names the first
    bad one)."""
    delay = validate_retry_delay(spec.retry_delay_ms)
    delay_max = spec.retry_delay_max_ms
    if delay_max is not None:
        delay_max = bounded_int("retry_delay_max_ms", delay_max, 1, MAX_RETRY_DELAY_MS)
        if delay_max < delay:
            raise InvalidField(
                "retry_delay_max_ms", f"must be >= retry_delay_ms ({delay}), got {delay_max}"
            )
    disabled_note = validate_disabled_note(spec.disabled_note)
    enable_at = (
        require_storable_time("enable_at", spec.enable_at) if spec.enable_at is not None else None
    )
    if spec.route == "broadcast" and spec.job_sets_next:
        raise InvalidField(
            "route",
            "broadcast runs the job once per client, so no one run can set the next time: "
            "give the group an interval_ms or a cron",
        )
    if spec.is_enable and (disabled_note is not None or enable_at is not None):
        name = "disabled_note" if disabled_note is not None else "enable_at"
        raise InvalidField(name, "only a disabled group has one (disable it, or leave it out)")
    return {
        "retries": validate_retries(spec.retries),
        "retry_delay_ms": delay,
        "retry_backoff": validate_retry_backoff(spec.retry_backoff),
        "retry_delay_max_ms": delay_max,
        "retry_jitter": boolean("retry_jitter", spec.retry_jitter),
        "max_run_s": (
            bounded_int("max_run_s", spec.max_run_s, 1, MAX_RUN_S)
            if spec.max_run_s is not None else None
        ),
        "overlap": validate_choice("overlap", spec.overlap, OVERLAP_POLICIES),
        "route": validate_choice("route", spec.route, ROUTES),
        "client_tag": validate_client_tag(spec.client_tag) if spec.client_tag else None,
        "on_success": validate_on_success(spec.on_success),
        "jitter_ms": validate_jitter(spec.jitter_ms),
        "alert_targets": validate_alert_targets(spec.alert_targets),
        "alert_rules": validate_alert_rules(spec.alert_rules),
        "late_after_s": validate_late_after(spec.late_after_s),
        "disabled_note": disabled_note,
        "enable_at": enable_at,
    }


MAX_RETRIES = 100
MAX_RETRY_DELAY_MS = 24 * 3600 * 1000
MAX_RETRY_BACKOFF = 10.0
MAX_RUN_S = 7 * 24 * 3600
MAX_JITTER_MS = 3600 * 1000
MAX_ON_SUCCESS = 50
MAX_DISABLED_NOTE = 512
MAX_CLIENT_TAG = 64
OVERLAP_POLICIES = ("skip", "buffer_one", "replace")
ROUTES = ("round_robin", "least_busy", "sticky", "failover", "broadcast")
# What `fss worker --tag` accepts: a client id's characters (fss.naming.CLIENT_ID_PATTERN,
# which this pure layer may not import), at most 64 of them.
CLIENT_TAG_PATTERN = re.compile(r"[A-Za-z0-9_.:@\-]{1,64}")
# Alert target names (fss alert target add NAME), at most this many per group.
ALERT_TARGET_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_ALERT_TARGETS = 20
MAX_LATE_AFTER_S = 366 * 24 * 3600
# The defaults of the policy fields: what `fss group show` and export leave out.
POLICY_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_delay_ms": 1000,
    "retry_backoff": 2.0,
    "retry_delay_max_ms": None,
    "retry_jitter": True,
    "max_run_s": None,
    "overlap": "skip",
    "route": "round_robin",
    "client_tag": None,
    "on_success": (),
    "jitter_ms": 0,
    # Not run policies but group settings that flow the same way (file, diff, API, show).
    "alert_targets": (),
    "alert_rules": None,
    "late_after_s": None,
}


def bounded_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidField(name, f"must be {low}..{high}, got {value}")
    return value


def validate_retries(value: Any) -> int:
    return bounded_int("retries", value, 0, MAX_RETRIES)


def validate_retry_delay(value: Any) -> int:
    return bounded_int("retry_delay_ms", value, 1, MAX_RETRY_DELAY_MS)


def validate_retry_backoff(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidField("retry_backoff", f"must be a number, got {value!r}")
    if not 1 <= value <= MAX_RETRY_BACKOFF:  # NaN fails this too
        raise InvalidField("retry_backoff", f"must be 1..{MAX_RETRY_BACKOFF:g}, got {value}")
    return float(value)


def validate_jitter(value: Any) -> int:
    return bounded_int("jitter_ms", value, 0, MAX_JITTER_MS)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(name, f"must be true or false, got {value!r}")
    return value


def validate_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        shown = str(value)[:40]
        raise InvalidField(name, f"{shown!r} is not one of {', '.join(allowed)}")
    return str(value)


def validate_client_tag(value: Any) -> str:
    if not isinstance(value, str) or not CLIENT_TAG_PATTERN.fullmatch(value):
        shown = str(value)[:70]
        raise InvalidField(
            "client_tag",
            f"{shown!r} must be 1..{MAX_CLIENT_TAG} of letters, digits and _ . : @ -",
        )
    return value


def validate_disabled_note(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("disabled_note", f"must be text, got {value!r}")
    reject_control_characters("disabled_note", value)
    text = value.strip()
    if len(text) > MAX_DISABLED_NOTE:
        raise InvalidField("disabled_note", f"longer than {MAX_DISABLED_NOTE} characters")
    return text or None


def validate_on_success(value: Any) -> tuple[str | int, ...]:
    """Group keys (strings) and ids (whole numbers > 0), each once, at most 50."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | dict) or not isinstance(value, list | tuple):
        raise InvalidField("on_success", "must be a list of group keys or ids")
    if len(value) > MAX_ON_SUCCESS:
        raise InvalidField("on_success", f"at most {MAX_ON_SUCCESS} groups, got {len(value)}")
    seen: set[str | int] = set()
    refs: list[str | int] = []
    for item in value:
        ref = _group_ref(item)
        if ref in seen:
            raise InvalidField("on_success", f"{ref!r} is listed twice")
        seen.add(ref)
        refs.append(ref)
    return tuple(refs)


def validate_alert_targets(value: Any) -> tuple[str, ...]:
    """Names of alert targets, each once, at most 20; None or empty = the default targets.
    Whether each exists is the store's question (targets may be added after the group)."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | dict) or not isinstance(value, list | tuple):
        raise InvalidField("alert_targets", "must be a list of alert target names")
    if len(value) > MAX_ALERT_TARGETS:
        raise InvalidField(
            "alert_targets", f"at most {MAX_ALERT_TARGETS} targets, got {len(value)}"
        )
    seen: set[str] = set()
    for name in value:
        if not isinstance(name, str) or not ALERT_TARGET_PATTERN.fullmatch(name):
            shown = str(name)[:70]
            raise InvalidField(
                "alert_targets", f"{shown!r} is not a target name (1..64 of letters, digits "
                "and _ . -)"
            )
        if name in seen:
            raise InvalidField("alert_targets", f"{name!r} is listed twice")
        seen.add(name)
    return tuple(value)


def validate_alert_rules(value: Any) -> tuple[str, ...] | None:
    """Rule names of fss.domain.alerts about a group, in the order RULES lists them (one
    form for equal sets: diff and apply compare them); None = every rule on globally."""
    if value is None:
        return None
    if isinstance(value, str | bytes | dict) or not isinstance(value, list | tuple):
        raise InvalidField("alert_rules", "must be a list of rule names ([] for no alerts)")
    chosen = validate_rule_list(value, "alert_rules")
    cluster = sorted(chosen - set(GROUP_RULES))
    if cluster:
        raise InvalidField(
            "alert_rules",
            f"{cluster[0]!r} is a rule about the cluster, not a group (group rules: "
            f"{', '.join(GROUP_RULES)})",
        )
    return tuple(name for name in RULES if name in chosen)


def validate_late_after(value: Any) -> int | None:
    if value is None:
        return None
    return bounded_int("late_after_s", value, 1, MAX_LATE_AFTER_S)


DURATION_PART = re.compile(r"([0-9]+)([smhd])")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(field_name: str, text: str) -> int:
    """Seconds of "90", "90s", "10m", "2h", "1d" or a sum like "1h30m"."""
    raw = text.strip().lower()
    if raw.isascii() and raw.isdigit():
        return int(raw)
    parts = DURATION_PART.findall(raw)
    if not raw or "".join(n + u for n, u in parts) != raw:
        raise InvalidField(
            field_name, f"{text[:40]!r} is not a duration: seconds, or like 90s, 10m, 2h, 1d, 1h30m"
        )
    return sum(int(number) * DURATION_UNITS[unit] for number, unit in parts)


MAX_GROUP_KEY = 128


def _group_ref(item: Any) -> str | int:
    if isinstance(item, int) and not isinstance(item, bool):
        if item <= 0:
            raise InvalidField("on_success", f"a group id is > 0, got {item}")
        return item
    if not isinstance(item, str):
        raise InvalidField("on_success", f"{item!r} is not a group key or id")
    if not 1 <= len(item) <= MAX_GROUP_KEY or not item.isprintable() or item != item.strip():
        raise InvalidField("on_success", f"{item[:40]!r} is not a group key")
    return item


def find_cycle(
    edges: dict[Any, tuple[Any, ...]], roots: Iterable[Any] | None = None
) -> list[Any] | None:
    """A cycle of the graph `edges` (node -> the nodes it starts) reachable from `roots`
    (every node by default) as [a, b, ..., a], or None; iterative depth-first search (chains
    may be long), nodes in the given order."""
    state: dict[Any, int] = {}  # 1 = on the current path, 2 = done
    for root in edges if roots is None else roots:
        if state.get(root):
            continue
        path: list[Any] = [root]
        iterators = [iter(edges.get(root, ()))]
        state[root] = 1
        while iterators:
            child = next(iterators[-1], _END)
            if child is _END:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child):], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                iterators.append(iter(edges.get(child, ())))
    return None


_END = object()


def validate_schedule(interval_ms: int | None, cron: str | None, time_zone: str | None) -> Schedule:
    """The schedule fields as a group stores them; the form's preview checks them with this
    too, so both accept and refuse the same. A zone is accepted with an interval as well (an
    interval ignores it; times are shown in it): groups and files have carried one."""
    interval = validate_interval(interval_ms) if interval_ms is not None else None
    checked_cron = validate_cron(cron) if cron else None
    if time_zone:
        load_zone(time_zone)
    return Schedule(interval, checked_cron, time_zone or None)


MISFIRE_POLICIES = ("run-once", "skip")
MAX_TIMEOUT_S = 7 * 24 * 3600


def validate_timeout(timeout_s: int) -> int:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s <= 0:
        raise InvalidField("timeout_s", f"must be a whole number of seconds > 0, got {timeout_s}")
    if timeout_s > MAX_TIMEOUT_S:
        raise InvalidField("timeout_s", f"must be at most {MAX_TIMEOUT_S} (7 days)")
    return timeout_s


def validate_misfire(policy: str) -> str:
    if policy not in MISFIRE_POLICIES:
        raise InvalidField("misfire", f"{policy!r} is not one of {', '.join(MISFIRE_POLICIES)}")
    return policy


# Control characters, line and paragraph separators: they break every table and log line.
LINE_BREAKING_CATEGORIES = ("Cc", "Zl", "Zp")


def validate_caption(caption: str) -> str:
    reject_control_characters("caption", caption)
    text = caption.strip()
    if not text:
        raise InvalidField("caption", "must not be empty")
    if len(text) > MAX_CAPTION:
        raise InvalidField("caption", f"longer than {MAX_CAPTION} characters")
    return text


# The same characters as one class (Cc is U+0000-001F and U+007F-009F, Zl and Zp one each):
# one search in C instead of a category lookup per character (hot when a file has many groups).
LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def reject_control_characters(field_name: str, text: str) -> None:
    found = LINE_BREAKING.search(text)
    if found:
        raise InvalidField(
            field_name, f"must not contain control characters (found {found.group()!r})"
        )


def validate_job_name(name: str) -> str:
    reject_control_characters("job_name", name)
    text = name.strip()
    if not text:
        raise InvalidField("job_name", "must not be empty")
    if len(text) > MAX_JOB_NAME:
        raise InvalidField("job_name", f"longer than {MAX_JOB_NAME} characters")
    if not JOB_NAME_PATTERN.fullmatch(text):
        raise InvalidField("job_name", f"{text!r} may only use letters, digits and _ . : -")
    return text


def validate_interval(interval_ms: int) -> int:
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, int):
        raise InvalidField("interval_ms", "must be a whole number of milliseconds")
    if interval_ms <= 0:
        raise InvalidField("interval_ms", f"must be > 0, got {interval_ms}")
    if interval_ms > MAX_INTERVAL_MS:
        raise InvalidField("interval_ms", f"must be at most {MAX_INTERVAL_MS} (366 days)")
    return interval_ms


def validate_data(data: Any) -> str:
    """The JSON text to store; data must be a JSON object of bounded size and depth."""
    if not isinstance(data, dict):
        raise InvalidField("data", "must be a JSON object")
    if nesting_depth(data) > MAX_DATA_DEPTH:
        raise InvalidField("data", f"nested deeper than {MAX_DATA_DEPTH} levels")
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidField("data", f"is not JSON-serializable ({exc})") from None
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:  # "\ud800" in JSON text decodes to a lone surrogate
        bad = text[exc.start]
        raise InvalidField(
            "data", f"contains a lone surrogate \\u{ord(bad):04x}, which is not valid UTF-8"
        ) from None
    if size > MAX_DATA_BYTES:
        raise InvalidField("data", f"larger than {MAX_DATA_BYTES} bytes as JSON")
    return text


# Data travels in every order and is parsed again by workers in other languages: a bound far
# above real configuration keeps every recursive encoder and decoder on the way safe.
MAX_DATA_DEPTH = 100


def nesting_depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (1 for a flat object), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DATA_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _refuse_constant(name: str) -> Any:
    raise InvalidField("data", f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise InvalidField("data", f"number {text[:20]} is out of range (a double at most)")
    return number


def parse_data(text: str) -> dict[str, Any]:
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float
        ) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidField("data", f"invalid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        raise InvalidField("data", f"nested deeper than {MAX_DATA_DEPTH} levels") from None
    except InvalidField:
        raise
    except ValueError as exc:  # an integer longer than Python converts (4300 digits)
        raise InvalidField("data", f"invalid JSON ({str(exc).split(':')[0]})") from None
    if not isinstance(value, dict):
        raise InvalidField("data", "must be a JSON object")
    validate_data(value)
    return value
