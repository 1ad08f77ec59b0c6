"""Injectable time: production uses the system clock, tests a clock they move by hand."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol

from fss.errors import InvalidField

# Times every backend stores (MySQL's DATETIME starts at year 1000) with room left for
# schedule arithmetic below Python's datetime.max.
EARLIEST_TIME = datetime(1000, 1, 1, tzinfo=timezone.utc)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already (how the store keeps times)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def require_storable_time(name: str, moment: datetime) -> datetime:
    """`moment` as aware UTC, if it lies in years 1000..8999; InvalidField naming `name` if not."""
    try:
        utc = as_utc(moment)
    except OverflowError:  # its offset moves it past year 1 or 9999 in UTC
        utc = None
    if utc is None or not EARLIEST_TIME <= utc < LATEST_TIME:
        raise InvalidField(name, f"{moment.isoformat()!r} is outside years 1000..8999")
    return utc


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 time (a trailing Z is UTC; no offset is UTC) as aware UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidField(name, f"{value[:64]!r} is not an ISO 8601 time") from None
    return require_storable_time(name, moment)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = as_utc(moment)
