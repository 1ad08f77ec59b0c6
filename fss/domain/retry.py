"""Retries of a failed run: whether an attempt may run again, and after how long.

A retry is the next attempt of the same task. The delay before attempt n + 1 (after attempt
n failed) is `delay * backoff^(n-1)`, capped by `max_delay`; with jitter that value is only
the upper bound and the delay is drawn uniformly from [0, bound] ("full jitter", as
Celery's `retry_jitter`), so many runs failing together do not all come back at once.
Pure: the random source is a parameter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

# Longest delay ever planned (a year): the arithmetic of a large backoff stays bounded.
MAX_RETRY_DELAY_MS = 366 * 24 * 3600 * 1000


@dataclass(frozen=True)
class RetryPolicy:
    """A group's retry settings (task_group.retries, retry_delay_ms, ...)."""

    retries: int = 0
    delay_ms: int = 1000
    backoff: float = 2.0
    max_delay_ms: int | None = None
    jitter: bool = True

    def allows(self, attempt: int) -> bool:
        """Attempt `attempt` failed: may the task run again? Attempts 1..retries are retried,
        so a task runs at most 1 + retries times."""
        return 1 <= attempt <= self.retries

    def bound_ms(self, attempt: int) -> int:
        """The delay after attempt `attempt` failed, before jitter: the upper bound."""
        return retry_bound_ms(attempt, self.delay_ms, self.backoff, self.max_delay_ms)

    def delay_ms_after(self, attempt: int, uniform: Callable[[], float] = random.random) -> int:
        """The delay after attempt `attempt` failed; `uniform` draws from [0, 1)."""
        bound = self.bound_ms(attempt)
        if not self.jitter:
            return bound
        draw = min(max(uniform(), 0.0), 1.0)
        return min(bound, int(draw * (bound + 1)))


def retry_bound_ms(attempt: int, delay_ms: int, backoff: float, max_delay_ms: int | None) -> int:
    """delay * backoff^(attempt-1), capped by max_delay_ms (and MAX_RETRY_DELAY_MS)."""
    cap = MAX_RETRY_DELAY_MS if max_delay_ms is None else min(max_delay_ms, MAX_RETRY_DELAY_MS)
    cap = max(cap, 0)
    base = max(delay_ms, 0)
    if base == 0 or cap == 0:
        return 0
    factor = max(backoff, 0.0)
    exponent = max(attempt - 1, 0)
    # In logarithms first: 2.0 ** 5000 overflows a float long before the cap would apply.
    if factor > 1.0 and math.log(base) + exponent * math.log(factor) >= math.log(cap):
        return cap
    value = base * factor**exponent
    return min(cap, int(value))


def failure_summary(error: str | None, limit: int = 300) -> str:
    """One line for a run log saying why an attempt failed: the last line of a traceback is
    the exception itself."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    text = lines[-1] if lines else "failed"
    return text if len(text) <= limit else text[: limit - 1] + "…"
