"""Whether every loop of a scheduler node makes progress; the node heartbeat carries the answer.

Each loop (claim loop, recorder, supervisor) reports each completed iteration and each failure
to its LoopTracker. A loop is unhealthy while its last iteration failed, or when none completed
for longer than it may take (stuck: a hung query, a dead thread). Measured on a monotonic clock:
a wall clock stepped back must not make a live loop look stuck, nor a stuck one live.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fss.outage import first_line, is_connection_error

MAX_REASON_CHARS = 512


class LoopTracker:
    """Judged from start() (or the first report) on; a loop that never starts is not judged."""

    def __init__(self, name: str, stuck_after_s: float, monotonic: Callable[[], float]) -> None:
        self.name = name
        self.stuck_after_s = stuck_after_s
        self._monotonic = monotonic
        self._last_progress: float | None = None
        self._failure: str | None = None

    def start(self) -> None:
        if self._last_progress is None:
            self._last_progress = self._monotonic()

    def progressed(self) -> None:
        """An iteration completed."""
        self._last_progress = self._monotonic()
        self._failure = None

    def failed(self, exc: BaseException) -> None:
        self.start()
        if is_connection_error(exc):
            self._failure = f"cannot reach a server ({first_line(exc)})"
        else:
            self._failure = f"{type(exc).__name__}: {first_line(exc)}"

    def problem(self) -> str | None:
        if self._last_progress is None:
            return None
        if self._failure is not None:
            return f"{self.name} failing: {self._failure}"
        silent_s = self._monotonic() - self._last_progress
        if silent_s > self.stuck_after_s:
            return f"{self.name} stuck: no iteration completed for {silent_s:.0f} s"
        return None


class NodeHealth:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._trackers: list[LoopTracker] = []
        self._lock = threading.Lock()

    def tracker(self, name: str, stuck_after_s: float) -> LoopTracker:
        tracker = LoopTracker(name, stuck_after_s, self._monotonic)
        with self._lock:
            self._trackers.append(tracker)
        return tracker

    def reason(self) -> str | None:
        """None while every loop makes progress, else what is wrong (for server_node)."""
        with self._lock:
            problems = [p for p in (t.problem() for t in self._trackers) if p is not None]
        if not problems:
            return None
        return "; ".join(problems)[:MAX_REASON_CHARS]
