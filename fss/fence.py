"""Fencing: before a job function runs, the worker atomically claims the current attempt.

The scheduler arms the fence with the attempt it dispatched; a worker holding a message of
another attempt (a stale prefetch, a restarted client finding its old queue, a re-dispatch)
cannot enter, so a task id reaches a job function at most once.

Every method takes the installation that sent the order (`installation=`, "" for senders
that predate it): its fence keys are its own (fss.naming.fence_key).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
import uuid
from collections.abc import Callable, Collection
from typing import Protocol

from fss.naming import fence_key
from fss.redis_direct import DirectRedis

ARMED_TTL_S = 3600
RUNNING_TTL_S = 3600
# Between the holder and the delivery token in an entered value `<attempt>:run:<holder>#<token>`.
DELIVERY_SEPARATOR = "#"

# Enter attempt ARGV[1] for holder ARGV[3] and delivery ARGV[4]. Entering is safe to retry:
# a value this very delivery wrote is a yes (the reply to the first try was lost, e.g. a
# socket timeout while Redis was busy, and DirectRedis sent the call again), any other
# entered value a no, even one of the same holder (another pool process of the worker).
_ENTER = """
local current = redis.call('GET', KEYS[1])
local entered = ARGV[1] .. ':run:' .. ARGV[3] .. '#' .. ARGV[4]
if current == ARGV[1] then
  redis.call('SET', KEYS[1], entered, 'EX', ARGV[2])
  return 1
end
if current == entered then
  return 1
end
return 0
"""

# Arm each KEYS[i] with attempt ARGV[i] unless a worker entered an attempt there, or a newer
# attempt is armed, or this very attempt was revoked; returns the indexes it refused.
# ARGV[i] ending in '+' (a retry: the previous attempt ended failed) may replace an
# entered previous attempt, and only that one.
_ARM = """
local ttl = ARGV[#ARGV]
local refused = {}
for i, key in ipairs(KEYS) do
  local spec = ARGV[i]
  local replacing = string.sub(spec, -1) == '+'
  if replacing then
    spec = string.sub(spec, 1, -2)
  end
  local attempt = tonumber(spec)
  local current = redis.call('GET', key)
  local allowed = true
  if current then
    if string.find(current, ':run:', 1, true) then
      local ended = tostring(attempt - 1) .. ':run:'
      allowed = replacing and string.sub(current, 1, string.len(ended)) == ended
    else
      local revoked = string.sub(current, 1, 8) == 'revoked:'
      local held = tonumber(revoked and string.sub(current, 9) or current)
      if held and (attempt < held or (revoked and attempt == held)) then
        allowed = false
      end
    end
  end
  if allowed then
    redis.call('SET', key, spec, 'EX', ttl)
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


def new_delivery_token() -> str:
    return uuid.uuid4().hex


class Fence(Protocol):
    # True when an armed attempt lapses after its ttl_s on the fence's own clock: an order
    # then needs no Celery `expires`, which workers compare with their own clocks.
    keeps_expiry: bool

    def arm(
        self, task_id: int, attempt: int, *, installation: str = "", ttl_s: float | None = None
    ) -> bool:
        """Open `attempt` to workers for ttl_s (default an hour); False (nothing changed) if
        a worker already entered an attempt of this task, or a newer attempt is armed, or
        this one was revoked."""
        ...

    def enter(
        self,
        task_id: int,
        attempt: int,
        holder: str = "",
        *,
        installation: str = "",
        delivery: str = "",
        shard: int = 0,
    ) -> bool:
        """Claim `attempt` for `holder` (the worker incarnation) if it is the armed one.
        `delivery` names this one delivery of the order (a fresh token when empty): entering
        again with the same token answers True again, with any other token False."""
        ...

    def holder(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> str | None:
        """Who entered `attempt`, or None if nobody did."""
        ...

    def arm_many(
        self,
        attempts: list[tuple[int, int]],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: Collection[int] = (),
    ) -> list[int]:
        """arm() for several (task id, attempt) pairs at once; the task ids it refused.
        The tasks in `replacing` are retries: their previous attempt ended (failed), so its
        entered value may be replaced by this attempt (an entered older one may not)."""
        ...

    def revoke(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> bool:
        """Close `attempt` to workers; False if one already entered it (it is running)."""
        ...

    def arm_shards(
        self,
        task_id: int,
        attempt: int,
        shards: list[int],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: bool = False,
    ) -> list[int]:
        """arm() for shards of one broadcast attempt, each under its own fence; the shards
        it refused. `replacing`: a retry, as in arm_many."""
        ...

    def close(self) -> None: ...


class RedisFence:
    keeps_expiry = True

    def __init__(self, url: str, socket_timeout: float = 5) -> None:
        self._redis = DirectRedis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        )

    def arm(
        self, task_id: int, attempt: int, *, installation: str = "", ttl_s: float | None = None
    ) -> bool:
        return not self.arm_many([(task_id, attempt)], installation=installation, ttl_s=ttl_s)

    def arm_many(
        self,
        attempts: list[tuple[int, int]],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: Collection[int] = (),
    ) -> list[int]:
        if not attempts:
            return []
        keys = [fence_key(task_id, installation) for task_id, _ in attempts]
        args: list[str | int] = [
            f"{attempt}+" if task_id in replacing else str(attempt) for task_id, attempt in attempts
        ]
        refused = self._redis.evalsha(_ARM, keys, [*args, _whole_seconds(ttl_s)])
        return [attempts[int(index) - 1][0] for index in refused]

    def arm_shards(
        self,
        task_id: int,
        attempt: int,
        shards: list[int],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: bool = False,
    ) -> list[int]:
        if not shards:
            return []
        keys = [fence_key(task_id, installation, shard) for shard in shards]
        spec = f"{attempt}+" if replacing else str(attempt)
        refused = self._redis.evalsha(
            _ARM, keys, [*([spec] * len(shards)), _whole_seconds(ttl_s)]
        )
        return [shards[int(index) - 1] for index in refused]

    def enter(
        self,
        task_id: int,
        attempt: int,
        holder: str = "",
        *,
        installation: str = "",
        delivery: str = "",
        shard: int = 0,
    ) -> bool:
        args: list[str | int] = [
            str(attempt), RUNNING_TTL_S, holder, delivery or new_delivery_token()
        ]
        key = fence_key(task_id, installation, shard)
        return bool(self._redis.evalsha(_ENTER, [key], args))

    def holder(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> str | None:
        value = self._redis.call("GET", fence_key(task_id, installation, shard))
        return _holder_of(value.decode() if isinstance(value, bytes) else value, attempt)

    def revoke(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> bool:
        key = fence_key(task_id, installation, shard)
        return bool(self._redis.evalsha(_REVOKE, [key], [str(attempt), ARMED_TTL_S]))

    def close(self) -> None:
        self._redis.close()


class MemoryFence:
    """For one process (fss dev, tests); entries expire like the Redis keys.

    Expired entries leave through a heap of expiry times, so each call does amortised
    O(log n) work however many tasks the process has seen (a scan of every entry per call
    made 20,000 tasks cost 10^8 steps). A value's expiry replaced by a later write stays in
    the heap as a stale mark until it comes up, and the heap is rebuilt from the live
    entries once it holds twice as many marks as there are entries."""

    keeps_expiry = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: dict[str, tuple[str, float]] = {}
        self._expiries: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def arm(
        self,
        task_id: int,
        attempt: int,
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: bool = False,
        shard: int = 0,
    ) -> bool:
        with self._lock:
            key = self._pruned(task_id, installation, shard)
            if not _may_arm(self._current(key), attempt, replacing):
                return False
            self._set(key, str(attempt), _whole_seconds(ttl_s))
            return True

    def arm_many(
        self,
        attempts: list[tuple[int, int]],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: Collection[int] = (),
    ) -> list[int]:
        return [
            task_id
            for task_id, attempt in attempts
            if not self.arm(
                task_id,
                attempt,
                installation=installation,
                ttl_s=ttl_s,
                replacing=task_id in replacing,
            )
        ]

    def arm_shards(
        self,
        task_id: int,
        attempt: int,
        shards: list[int],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: bool = False,
    ) -> list[int]:
        return [
            shard
            for shard in shards
            if not self.arm(
                task_id, attempt, installation=installation, ttl_s=ttl_s,
                replacing=replacing, shard=shard,
            )
        ]

    def enter(
        self,
        task_id: int,
        attempt: int,
        holder: str = "",
        *,
        installation: str = "",
        delivery: str = "",
        shard: int = 0,
    ) -> bool:
        with self._lock:
            key = self._pruned(task_id, installation, shard)
            current = self._current(key)
            entered = _entered_value(attempt, holder, delivery or new_delivery_token())
            if current == entered:
                return True
            if current != str(attempt):
                return False
            self._set(key, entered, RUNNING_TTL_S)
            return True

    def holder(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> str | None:
        with self._lock:
            key = self._pruned(task_id, installation, shard)
            return _holder_of(self._current(key), attempt)

    def revoke(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> bool:
        with self._lock:
            key = self._pruned(task_id, installation, shard)
            value = self._current(key)
            if _holder_of(value, attempt) is not None:
                return False
            if value is None or value == str(attempt):
                self._set(key, f"revoked:{attempt}", ARMED_TTL_S)
            return True

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        """Entries held: the live ones, and expired ones until the next call prunes them."""
        with self._lock:
            return len(self._state)

    def _current(self, key: str) -> str | None:
        value, until = self._state.get(key, (None, 0.0))
        return value if until >= self._clock() else None

    def _set(self, key: str, value: str, ttl_s: float) -> None:
        until = self._clock() + ttl_s
        self._state[key] = (value, until)
        heapq.heappush(self._expiries, (until, key))
        if len(self._expiries) > 2 * len(self._state) + 64:
            # Stale marks (values written over) outnumber the entries: O(n) once per n writes.
            self._expiries = [(until, key) for key, (_, until) in self._state.items()]
            heapq.heapify(self._expiries)

    def _pruned(self, task_id: int, installation: str, shard: int = 0) -> str:
        """Drop the entries that expired; the key of the task."""
        now = self._clock()
        while self._expiries and self._expiries[0][0] < now:
            until, key = heapq.heappop(self._expiries)
            entry = self._state.get(key)
            if entry is not None and entry[1] == until:  # not written again since
                del self._state[key]
        return fence_key(task_id, installation, shard)


class NoFence:
    """Brokers without a shared Redis: dispatch expiry is the only guard left."""

    keeps_expiry = False

    def arm(
        self, task_id: int, attempt: int, *, installation: str = "", ttl_s: float | None = None
    ) -> bool:
        return True

    def arm_many(
        self,
        attempts: list[tuple[int, int]],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: Collection[int] = (),
    ) -> list[int]:
        return []

    def arm_shards(
        self,
        task_id: int,
        attempt: int,
        shards: list[int],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: bool = False,
    ) -> list[int]:
        return []

    def enter(
        self,
        task_id: int,
        attempt: int,
        holder: str = "",
        *,
        installation: str = "",
        delivery: str = "",
        shard: int = 0,
    ) -> bool:
        return True

    def holder(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> str | None:
        return None

    def revoke(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> bool:
        return True

    def close(self) -> None:
        pass


def _whole_seconds(ttl_s: float | None) -> int:
    """Redis' EX takes whole seconds: round up, so an attempt is never closed early."""
    return ARMED_TTL_S if ttl_s is None else max(1, math.ceil(ttl_s))


def _may_arm(current: str | None, attempt: int, replacing: bool = False) -> bool:
    """The rule of the _ARM script: never over an entered attempt (but a retry over the
    attempt it follows), a newer one, or a revoke."""
    if current is None:
        return True
    if ":run:" in current:
        return replacing and current.startswith(f"{attempt - 1}:run:")
    revoked = current.startswith("revoked:")
    held = current.removeprefix("revoked:")
    if not held.isdigit():
        return True
    return attempt > int(held) or (attempt == int(held) and not revoked)


def _entered_value(attempt: int, holder: str, delivery: str) -> str:
    return f"{attempt}:run:{holder}{DELIVERY_SEPARATOR}{delivery}"


def _holder_of(value: str | None, attempt: int) -> str | None:
    """The holder of an entered `attempt` (its delivery token left out), else None."""
    prefix = f"{attempt}:run:"
    if value is None or not value.startswith(prefix):
        return None
    entered = value[len(prefix) :]
    holder, separator, _ = entered.rpartition(DELIVERY_SEPARATOR)
    # A value without a token was written by a worker that predates delivery tokens.
    return holder if separator else entered


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
