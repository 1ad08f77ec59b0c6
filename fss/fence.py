"""Fencing: before a job function runs, the worker atomically claims the current attempt.

The scheduler arms the fence with the attempt it dispatched; a worker holding a message of
another attempt (a stale prefetch, a restarted client finding its old queue, a re-dispatch)
cannot enter, so a task id reaches a job function at most once.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from fss.naming import fence_key

ARMED_TTL_S = 3600
RUNNING_TTL_S = 3600

_ENTER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ':run:' .. ARGV[3], 'EX', ARGV[2])
  return 1
end
return 0
"""

_REVOKE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1]) + 5) == ARGV[1] .. ':run:' then
  return 0
end
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], 'revoked:' .. ARGV[1], 'EX', ARGV[2])
end
return 1
"""


class Fence(Protocol):
    def arm(self, task_id: int, attempt: int) -> None: ...

    def enter(self, task_id: int, attempt: int, holder: str = "") -> bool:
        """Claim `attempt` for `holder` (the worker incarnation) if it is the armed one."""
        ...

    def holder(self, task_id: int, attempt: int) -> str | None:
        """Who entered `attempt`, or None if nobody did."""
        ...

    def arm_many(self, attempts: list[tuple[int, int]]) -> None:
        """arm() for several (task id, attempt) pairs at once."""
        ...

    def revoke(self, task_id: int, attempt: int) -> bool:
        """Close `attempt` to workers; False if one already entered it (it is running)."""
        ...

    def close(self) -> None: ...


class RedisFence:
    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        self._enter = self._client.register_script(_ENTER)
        self._revoke = self._client.register_script(_REVOKE)

    def arm(self, task_id: int, attempt: int) -> None:
        self._client.set(fence_key(task_id), str(attempt), ex=ARMED_TTL_S)

    def arm_many(self, attempts: list[tuple[int, int]]) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            for task_id, attempt in attempts:
                pipe.set(fence_key(task_id), str(attempt), ex=ARMED_TTL_S)
            pipe.execute()

    def enter(self, task_id: int, attempt: int, holder: str = "") -> bool:
        args: list[str | int] = [str(attempt), RUNNING_TTL_S, holder]
        return bool(self._enter(keys=[fence_key(task_id)], args=args))

    def holder(self, task_id: int, attempt: int) -> str | None:
        value = self._client.get(fence_key(task_id))
        return _holder_of(value.decode() if isinstance(value, bytes) else value, attempt)

    def revoke(self, task_id: int, attempt: int) -> bool:
        return bool(self._revoke(keys=[fence_key(task_id)], args=[str(attempt), ARMED_TTL_S]))

    def close(self) -> None:
        self._client.close()


class MemoryFence:
    """For one process (fss dev, tests); entries expire like the Redis keys."""

    def __init__(self) -> None:
        self._state: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def arm(self, task_id: int, attempt: int) -> None:
        with self._lock:
            self._prune()
            self._state[task_id] = (str(attempt), time.monotonic() + ARMED_TTL_S)

    def arm_many(self, attempts: list[tuple[int, int]]) -> None:
        for task_id, attempt in attempts:
            self.arm(task_id, attempt)

    def enter(self, task_id: int, attempt: int, holder: str = "") -> bool:
        with self._lock:
            value, _ = self._state.get(task_id, ("", 0.0))
            if value != str(attempt):
                return False
            self._state[task_id] = (f"{attempt}:run:{holder}", time.monotonic() + RUNNING_TTL_S)
            return True

    def holder(self, task_id: int, attempt: int) -> str | None:
        with self._lock:
            return _holder_of(self._state.get(task_id, (None, 0.0))[0], attempt)

    def revoke(self, task_id: int, attempt: int) -> bool:
        with self._lock:
            value = self._state.get(task_id, (None, 0.0))[0]
            if _holder_of(value, attempt) is not None:
                return False
            if value is None or value == str(attempt):
                self._state[task_id] = (f"revoked:{attempt}", time.monotonic() + ARMED_TTL_S)
            return True

    def _prune(self) -> None:
        if len(self._state) < 10_000:
            return
        now = time.monotonic()
        for key in [k for k, (_, until) in self._state.items() if until < now]:
            del self._state[key]

    def close(self) -> None:
        pass


class NoFence:
    """Brokers without a shared Redis: dispatch expiry is the only guard left."""

    def arm(self, task_id: int, attempt: int) -> None:
        pass

    def arm_many(self, attempts: list[tuple[int, int]]) -> None:
        pass

    def enter(self, task_id: int, attempt: int, holder: str = "") -> bool:
        return True

    def holder(self, task_id: int, attempt: int) -> str | None:
        return None

    def revoke(self, task_id: int, attempt: int) -> bool:
        return True

    def close(self) -> None:
        pass


def _holder_of(value: str | None, attempt: int) -> str | None:
    prefix = f"{attempt}:run:"
    if value is not None and value.startswith(prefix):
        return value[len(prefix) :]
    return None


_MEMORY_FENCE = MemoryFence()


def create_fence(url: str) -> Fence:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisFence(url)
    if url.startswith("memory://"):
        # Scheduler and worker share it inside one process, as they share the memory broker.
        return _MEMORY_FENCE
    return NoFence()
