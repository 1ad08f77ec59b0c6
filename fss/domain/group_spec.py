"""What an operator may configure on a task group, validated before anything is written."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

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
        )


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
