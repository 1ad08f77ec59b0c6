"""Cron expressions as FSS, Quartz and XXL-JOB write them.

Five fields are classic cron (minute first). Six fields put **seconds first**
(`*/2 * * * * *` fires every two seconds). Quartz's `?` (no specific value) is read as `*`.
Times are evaluated in the given time zone and returned as aware UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from fss.domain.clock import as_utc
from fss.errors import InvalidField

MAX_CRON_LENGTH = 128


def normalize_cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidField(
            "cron",
            f"{expression!r} has {len(fields)} fields; use 5 (minute first) "
            "or 6 (seconds first, e.g. '*/2 * * * * *')",
        )
    return " ".join("*" if f == "?" else f for f in fields)


@lru_cache(maxsize=4096)
def _checked(expression: str) -> str:
    if len(expression) > MAX_CRON_LENGTH:
        raise InvalidField("cron", f"longer than {MAX_CRON_LENGTH} characters")
    normalized = normalize_cron(expression)
    seconds_first = len(normalized.split()) == 6
    try:
        it = croniter(normalized, datetime(2000, 1, 1), second_at_beginning=seconds_first)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidField("cron", f"{expression!r} is not a valid expression ({exc})") from None
    try:
        it.get_next(datetime)
    except CroniterBadDateError:
        raise InvalidField("cron", f"{expression!r} never fires (no such date)") from None
    return normalized


def validate_cron(expression: str) -> str:
    """The normalized expression, or InvalidField naming `cron`."""
    return _checked(expression.strip())


def load_zone(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: with the tzdata package, a folder name such as "Asia" fails to open.
        raise InvalidField("time_zone", f"unknown time zone {name!r}") from None


def next_cron_time(expression: str, after: datetime, time_zone: str | None = None) -> datetime:
    """First firing strictly after `after`."""
    normalized = validate_cron(expression)
    zone = load_zone(time_zone)
    seconds_first = len(normalized.split()) == 6
    local_after = as_utc(after).astimezone(zone)
    it = croniter(normalized, local_after, second_at_beginning=seconds_first)
    fire: datetime = it.get_next(datetime)
    return fire.astimezone(timezone.utc)
