"""In-memory timing wheel of claimed tasks, so they fire at their time, not at the next poll."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from fss.domain.selection import BROADCAST
from fss.store.tasks import ClaimedTask


class TimingWheel:
    def __init__(self, lead: timedelta = timedelta(0)) -> None:
        """`lead`: a task fires this long before its start_at (the dispatcher readies its
        order then and holds it until start_at); broadcasts fire at start_at, as their
        shards are planned over the clients live then."""
        self._lead = lead
        self._heap: list[tuple[datetime, int]] = []
        self._entries: dict[int, tuple[datetime, ClaimedTask]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def add(self, claimed: ClaimedTask) -> None:
        """Hold `claimed`; a task already held for the same run keeps its fire time."""
        existing = self._entries.get(claimed.id)
        if existing is not None:
            _, held = existing
            if held.start_at == claimed.start_at and held.attempt == claimed.attempt:
                return
        lead = timedelta(0) if claimed.route == BROADCAST else self._lead
        self.schedule(claimed, claimed.start_at - lead)

    def schedule(self, claimed: ClaimedTask, fire_at: datetime) -> None:
        self._entries[claimed.id] = (fire_at, claimed)
        heapq.heappush(self._heap, (fire_at, claimed.id))

    def remove(self, task_id: int) -> None:
        self._entries.pop(task_id, None)

    def pop_due(self, now: datetime) -> list[ClaimedTask]:
        due: list[ClaimedTask] = []
        while self._heap and self._heap[0][0] <= now:
            fire_at, task_id = heapq.heappop(self._heap)
            entry = self._entries.get(task_id)
            if entry is None or entry[0] != fire_at:
                continue  # removed or rescheduled: a stale heap slot
            del self._entries[task_id]
            due.append(entry[1])
        return due

    def next_fire_at(self) -> datetime | None:
        while self._heap:
            fire_at, task_id = self._heap[0]
            entry = self._entries.get(task_id)
            if entry is not None and entry[0] == fire_at:
                return fire_at
            heapq.heappop(self._heap)
        return None

    def task_ids(self) -> list[int]:
        return list(self._entries)
