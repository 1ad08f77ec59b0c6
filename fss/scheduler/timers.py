"""Periodic work measured on the injected (wall) clock, safe against the clock jumping back.

The scheduler's clock is the wall clock (SQL times are wall times), and an operator or NTP
may step it back. A deadline computed as `last + period` would then lie an hour ahead after a
step back of an hour, and claims, lease renewals or pruning would stop for that hour. `Every`
treats a clock that went back as "the period has passed": at worst the work runs once early.
"""

from __future__ import annotations

from datetime import datetime, timedelta


class Every:
    def __init__(self, period_s: float) -> None:
        self.period = timedelta(seconds=period_s)
        self._last: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self._last is None or now < self._last:
            return True
        return now - self._last >= self.period

    def done(self, now: datetime) -> None:
        self._last = now

    def reset(self) -> None:
        self._last = None

    def wait_s(self, now: datetime) -> float:
        """Seconds until due; never more than the period, whatever the clock did."""
        if self.due(now) or self._last is None:
            return 0.0
        return (self._last + self.period - now).total_seconds()
