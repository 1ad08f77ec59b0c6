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
from fss.redis_direct import DirectRedis

ARMED_TTL_S = 3600
RUNNING_TTL_S = 3600

_ENTER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ':run:' .. ARGV[3], 'EX', ARGV[2])
  return 1
end
return 0
"""

# Arm each KEYS[i] with attempt ARGV[i] unless a worker entered an attempt there, or a newer
# attempt is armed, or this very attempt was revoked; returns the indexes it refused.
_ARM = """
local ttl = ARGV[#ARGV]
local refused = {}
for i, key in ipairs(KEYS) do
  local attempt = tonumber(ARGV[i])
  local current = redis.call('GET', key)
  local allowed = true
  if current then
    if string.find(current, ':run:', 1, true) then
      allowed = false
    else
      local revoked = string.sub(current, 1, 8) == 'revoked:'
      local held = tonumber(revoked and string.sub(current, 9) or current)
      if held and (attempt < held or (revoked and attempt == held)) then
        allowed = false
      end
    end
  end
  if allowed then
    redis.call('SET', key, ARGV[i], 'EX', ttl)
  else
    table.insert(refused, i)
  end
end
return refused
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
    def arm(self, task_id: int, attempt: int) -> bool:
        """Open `attempt` to workers; False (nothing changed) if a worker already entered an
        attempt of this task, or a newer attempt is armed, or this one was revoked."""
        ...

    def enter(self, task_id: int, attempt: int, holder: str = "") -> bool:
        """Claim `attempt` for `holder` (the worker incarnation) if it is the armed one."""
        ...

    def holder(self, task_id: int, attempt: int) -> str | None:
        """Who entered `attempt`, or None if nobody did."""
        ...

    def arm_many(self, attempts: list[tuple[int, int]]) -> list[int]:
        """arm() for several (task id, attempt) pairs at once; the task ids it refused."""
        ...

    def revoke(self, task_id: int, attempt: int) -> bool:
        """Close `attempt` to workers; False if one already entered it (it is running)."""
        ...

    def close(self) -> None: ...


class RedisFence:
    def __init__(self, url: str) -> None:
        self._redis = DirectRedis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )

    def arm(self, task_id: int, attempt: int) -> bool:
        return not self.arm_many([(task_id, attempt)])

    def arm_many(self, attempts: list[tuple[int, int]]) -> list[int]:
        if not attempts:
            return []
        keys = [fence_key(task_id) for task_id, _ in attempts]
        args: list[str | int] = [str(attempt) for _, attempt in attempts]
        refused = self._redis.evalsha(_ARM, keys, [*args, ARMED_TTL_S])
        return [attempts[int(index) - 1][0] for index in refused]

    def enter(self, task_id: int, attempt: int, holder: str = "") -> bool:
        args: list[str | int] = [str(attempt), RUNNING_TTL_S, holder]
        return bool(self._redis.evalsha(_ENTER, [fence_key(task_id)], args))

    def holder(self, task_id: int, attempt: int) -> str | None:
        value = self._redis.call("GET", fence_key(task_id))
        return _holder_of(value.decode() if isinstance(value, bytes) else value, attempt)

    def revoke(self, task_id: int, attempt: int) -> bool:
        return bool(
            self._redis.evalsha(_REVOKE, [fence_key(task_id)], [str(attempt), ARMED_TTL_S])
        )

    def close(self) -> None:
        self._redis.close()


class MemoryFence:
    """For one process (fss dev, tests); entries expire like the Redis keys."""

    def __init__(self) -> None:
        self._state: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def arm(self, task_id: int, attempt: int) -> bool:
        with self._lock:
            self._prune()
            if not _may_arm(self._current(task_id), attempt):
                return False
            self._state[task_id] = (str(attempt), time.monotonic() + ARMED_TTL_S)
            return True

    def arm_many(self, attempts: list[tuple[int, int]]) -> list[int]:
        return [task_id for task_id, attempt in attempts if not self.arm(task_id, attempt)]

    def _current(self, task_id: int) -> str | None:
        value, until = self._state.get(task_id, (None, 0.0))
        return value if until >= time.monotonic() else None

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

    def arm(self, task_id: int, attempt: int) -> bool:
        return True

    def arm_many(self, attempts: list[tuple[int, int]]) -> list[int]:
        return []

    def enter(self, task_id: int, attempt: int, holder: str = "") -> bool:
        return True

    def holder(self, task_id: int, attempt: int) -> str | None:
        return None

    def revoke(self, task_id: int, attempt: int) -> bool:
        return True

    def close(self) -> None:
        pass


def _may_arm(current: str | None, attempt: int) -> bool:
    """The rule of the _ARM script: never over an entered attempt, a newer one, or a revoke."""
    if current is None:
        return True
    if ":run:" in current:
        return False
    revoked = current.startswith("revoked:")
    held = current.removeprefix("revoked:")
    if not held.isdigit():
        return True
    return attempt > int(held) or (attempt == int(held) and not revoked)


def _holder_of(value: str | None, attempt: int) -> str | None:
    prefix = f"{attempt}:run:"
    if value is not None and value.startswith(prefix):
        return value[len(prefix) :]
    return None


_MEMORY_FENCE = MemoryFence()
# URLs redis-py opens (Redis over TCP, TLS or a unix socket): the fence and the presence beacon.
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def create_fence(url: str) -> Fence:
    if url.startswith(REDIS_URL_SCHEMES):
        return RedisFence(url)
    if url.startswith("memory://"):
        # Scheduler and worker share it inside one process, as they share the memory broker.
        return _MEMORY_FENCE
    return NoFence()
