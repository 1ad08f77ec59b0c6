"""Client selection: round robin per job name over the clients alive right now."""

from __future__ import annotations

import threading
from collections.abc import Sequence


class RoundRobin:
    def __init__(self) -> None:
        self._turns: dict[str, int] = {}
        self._lock = threading.Lock()

    def pick(self, job_name: str, candidates: Sequence[str]) -> str | None:
        """Next candidate for `job_name`; sorted first so every instance agrees on order."""
        if not candidates:
            return None
        ordered = sorted(candidates)
        with self._lock:
            turn = self._turns.get(job_name, 0)
            self._turns[job_name] = turn + 1
        return ordered[turn % len(ordered)]
