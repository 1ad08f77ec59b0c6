"""The installation on a shared broker: its mark on Redis, and fences scoped to it.

The schedulers of one installation (one database) keep the key `fss:installation` on each
Redis they use (the broker's; the fence's too when FSS_FENCE_URL names another) set to the
installation id, renewed while they run and lapsing 15 s after the last one
stopped. Before it dispatches, a scheduler checks the mark (fss.domain.installation decides):
its own, it dispatches; another installation's, or none while the installation's live workers
are connected elsewhere, it does not, and its node health says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from fss.domain.installation import BrokerFacts, BrokerJudgement, BrokerVerdict, judge_broker
from fss.fence import Fence
from fss.presence import beacon_name
from fss.redis_direct import DirectRedis

log = logging.getLogger(__name__)

MARK_KEY = "fss:installation"
MARK_TTL_S = 15
CHECK_EVERY_S = 3.0

# Renew the mark only while it is ours: a mark another installation took over after ours
# lapsed is never overwritten.
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ARGV[1]
end
if current == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return current
"""


class ScopedFence:
    """A fence whose every call names one installation (the scheduler's side); the
    `installation` keyword of the Fence protocol is ignored in favour of its own."""

    def __init__(self, inner: Fence, installation: str) -> None:
        self._inner = inner
        self.installation = installation
        self.keeps_expiry = inner.keeps_expiry

    def arm(
        self, task_id: int, attempt: int, *, installation: str = "", ttl_s: float | None = None
    ) -> bool:
        return self._inner.arm(task_id, attempt, installation=self.installation, ttl_s=ttl_s)

    def arm_many(
        self,
        attempts: list[tuple[int, int]],
        *,
        installation: str = "",
        ttl_s: float | None = None,
        replacing: Collection[int] = (),
    ) -> list[int]:
        return self._inner.arm_many(
            attempts, installation=self.installation, ttl_s=ttl_s, replacing=replacing
        )

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
        return self._inner.arm_shards(
            task_id, attempt, shards, installation=self.installation, ttl_s=ttl_s,
            replacing=replacing,
        )

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
        return self._inner.enter(
            task_id, attempt, holder, installation=self.installation, delivery=delivery,
            shard=shard,
        )

    def holder(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> str | None:
        return self._inner.holder(task_id, attempt, installation=self.installation, shard=shard)

    def revoke(
        self, task_id: int, attempt: int, *, installation: str = "", shard: int = 0
    ) -> bool:
        return self._inner.revoke(task_id, attempt, installation=self.installation, shard=shard)

    def close(self) -> None:
        self._inner.close()


def redis_db_of(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


class BrokerMark:
    """The mark on one Redis database, read and renewed on a connection of its own."""

    def __init__(self, url: str) -> None:
        self._redis = DirectRedis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._db = redis_db_of(url)

    def read(self) -> str | None:
        value = self._redis.call("GET", MARK_KEY)
        return value.decode() if isinstance(value, bytes) else value

    def take_or_renew(self, installation: str) -> str:
        """Sets the mark if there is none, renews it if it is ours; the mark afterwards."""
        value = self._redis.evalsha(_RENEW, [MARK_KEY], [installation, MARK_TTL_S])
        return value.decode() if isinstance(value, bytes) else str(value)

    def beacons_here(self, client_ids: list[str]) -> int | None:
        """How many of these clients have their beacon connected to this Redis database
        (CLIENT LIST is server-wide: beacons on another database of the same server are
        another broker). None when the server refuses to say."""
        import redis

        try:
            listing = self._redis.call("CLIENT", "LIST", "TYPE", "normal")
        except redis.exceptions.ResponseError:
            return None
        text = listing.decode() if isinstance(listing, bytes) else str(listing)
        here = set()
        for line in text.splitlines():
            fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
            if fields.get("db") == str(self._db):
                here.add(fields.get("name", ""))
        return sum(1 for client_id in client_ids if beacon_name(client_id) in here)

    def close(self) -> None:
        self._redis.close()


@dataclass
class MarkedRedis:
    """One Redis the scheduler uses (the broker's, the fence's) and what it knows of it."""

    mark: BrokerMark
    label: str  # its URL, password masked
    role: str = "broker"
    setting: str = "broker URL"
    held: bool = False  # this process held the mark here before


class InstallationGuard:
    """Decides, every CHECK_EVERY_S, whether this scheduler may dispatch; thread-safe.

    `mark` is the broker's Redis (`role`: what to call it in a reason); `also` more Redis
    the installation uses (the fence's, when FSS_FENCE_URL names another one), each as
    (mark, label, role, setting). Every one must
    carry this installation's mark, or none that may be taken: a scheduler whose broker is
    wrong while its fence is right (or the other way round) does not dispatch."""

    def __init__(
        self,
        installation: str,
        mark: BrokerMark,
        live_workers: Callable[[], list[str]],
        broker_label: str,
        monotonic: Callable[[], float] = time.monotonic,
        also: Sequence[tuple[BrokerMark, str, str, str]] = (),
        role: str = "broker",
        setting: str = "broker URL",
    ) -> None:
        self.installation = installation
        self._stores = [MarkedRedis(mark, broker_label, role, setting)] + [
            MarkedRedis(other, label, role, setting) for other, label, role, setting in also
        ]
        self._live_workers = live_workers
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._judgement = BrokerJudgement(BrokerVerdict.OURS)
        self._checked_at: float | None = None

    @property
    def may_dispatch(self) -> bool:
        return self._judgement.may_dispatch

    def check_if_due(self) -> BrokerJudgement:
        now = self._monotonic()
        if self._checked_at is None or now - self._checked_at >= CHECK_EVERY_S:
            self.check()
        return self._judgement

    def check(self) -> BrokerJudgement:
        """Raises what the broker or the database raised (the caller's loop reports it)."""
        with self._lock:
            self._checked_at = self._monotonic()
            workers: list[list[str]] = []  # asked of the database at most once per check
            judged = [
                (store, self._judge(store, store.mark.read(), workers))
                for store in self._stores
            ]
            judgement = next((j for _, j in judged if not j.may_dispatch), None)
            if judgement is None:
                # Every Redis is ours or free: take (or renew) the mark on each.
                for store, _ in judged:
                    found = store.mark.take_or_renew(self.installation)
                    if found == self.installation:
                        store.held = True
                    elif judgement is None:  # another installation took it first
                        judgement = self._judge(store, found, workers)
                judgement = judgement or BrokerJudgement(BrokerVerdict.OURS)
            self._report(judgement)
            self._judgement = judgement
            return judgement

    def _judge(
        self, store: MarkedRedis, mark: str | None, workers: list[list[str]]
    ) -> BrokerJudgement:
        live: list[str] = []
        here: int | None = 0
        if mark is None and not store.held:
            if not workers:
                workers.append(self._live_workers())
            live = workers[0]
            here = store.mark.beacons_here(live) if live else 0
        facts = BrokerFacts(
            installation=self.installation,
            mark=mark,
            held_before=store.held,
            live_workers=len(live),
            workers_here=here,
        )
        return judge_broker(facts, store.label, store.role, store.setting)

    def _report(self, judgement: BrokerJudgement) -> None:
        if judgement.may_dispatch and not self._judgement.may_dispatch:
            log.warning("broker check passed: dispatching again (installation %s)",
                        self.installation)
        elif not judgement.may_dispatch and judgement.reason != self._judgement.reason:
            log.error("not dispatching: %s", judgement.reason)

    def close(self) -> None:
        for store in self._stores:
            store.mark.close()
