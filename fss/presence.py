"""Whether a worker process still exists, from its open connection to Redis.

A worker keeps one Redis connection named after its client id (the beacon) for as long as it
lives. When the process dies, even by kill -9, the kernel closes the socket and Redis drops
the name at once; a heartbeat only says so after the liveness timeout (10 s). The supervisor
reads the names (CLIENT LIST) and drops a client whose beacon it saw before, whose beacon is
gone and whose heartbeat is late, within seconds instead. A client it never saw a beacon of
(a gRPC bridge session, a broker without Redis, a Redis that refuses CLIENT LIST) is judged
by its heartbeat alone, as before.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from typing import Any

from fss.fence import REDIS_URL_SCHEMES
from fss.logsafe import mask_urls

log = logging.getLogger(__name__)

BEACON_PREFIX = "fss-client:"
# CLIENT SETNAME accepts printable ASCII without spaces; anything else becomes "_".
UNNAMEABLE = re.compile(r"[^!-~]")

_beacons: weakref.WeakSet[PresenceBeacon] = weakref.WeakSet()


def beacon_name(client_id: str) -> str:
    return BEACON_PREFIX + UNNAMEABLE.sub("_", client_id)


class PresenceBeacon:
    """The worker's named connection. `keep()` every heartbeat interval, on a thread of its own
    (never the heartbeat's): it connects (and names the connection) the first time and again
    after Redis restarted."""

    def __init__(self, url: str, client_id: str) -> None:
        self._url = url
        self._name = beacon_name(client_id)
        self._redis: Any = None
        self._pid = os.getpid()
        _beacons.add(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def url_label(self) -> str:
        """Its Redis, password masked (for log lines)."""
        return mask_urls(self._url)

    def keep(self) -> None:
        if self._redis is None:
            import redis

            # One dedicated connection (not a pool), named on every (re)connect by redis-py.
            self._redis = redis.Redis.from_url(
                self._url,
                client_name=self._name,
                single_connection_client=True,
                socket_timeout=5,
                socket_connect_timeout=5,
            )
        self._redis.ping()

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def _forget_in_child(self) -> None:
        """A forked pool process must not hold the parent's beacon open: close its copy of the
        socket only (redis-py shuts a socket down only in the process that opened it)."""
        if os.getpid() != self._pid and self._redis is not None:
            if self._redis.connection is not None:
                self._redis.connection.disconnect()
            self._redis = None


def _forget_beacons_in_child() -> None:
    for beacon in list(_beacons):
        beacon._forget_in_child()


os.register_at_fork(after_in_child=_forget_beacons_in_child)


def create_beacon(url: str, client_id: str) -> PresenceBeacon | None:
    return PresenceBeacon(url, client_id) if url.startswith(REDIS_URL_SCHEMES) else None


class Presence:
    """The scheduler's side: which beacons are connected now."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._refused = False

    def connected(self) -> set[str] | None:
        """Names of the connected beacons; None when Redis cannot say (unreachable, or CLIENT
        LIST refused by an ACL): then nobody is judged by presence."""
        if self._refused:
            return None
        import redis

        try:
            clients = self._redis.client_list(_type="normal")
        except redis.ResponseError as exc:
            if not refuses_client_list(exc):
                # BUSY (a long script), LOADING, ...: Redis cannot say this sweep, may next.
                return None
            self._refused = True
            log.warning(
                "Redis refuses CLIENT LIST (%s): dead workers are noticed by their heartbeat "
                "alone, after client_timeout_s",
                exc,
            )
            return None
        except redis.RedisError:
            return None
        return {
            name
            for entry in clients
            if (name := str(entry.get("name") or "")).startswith(BEACON_PREFIX)
        }

    def close(self) -> None:
        self._redis.close()


def refuses_client_list(exc: Exception) -> bool:
    """An ACL without CLIENT, or CLIENT renamed away: for good. Anything else (BUSY while a
    script runs past busy-reply-threshold, LOADING) passes."""
    import redis

    text = str(exc).lower()
    return isinstance(exc, redis.exceptions.NoPermissionError) or "unknown command" in text


def create_presence(url: str) -> Presence | None:
    return Presence(url) if url.startswith(REDIS_URL_SCHEMES) else None
