"""kombu's Redis transport, without a new redis-py client object for every broker call.

kombu's Redis channel wraps its connection pool in a fresh `redis.Redis` for each publish,
ack and unacked-index update (`Channel.conn_or_acquire`); with redis-py 8 building one costs
~120 us of CPU (its response-callback tables). Measured in a worker under the throughput
bench: 17% of the Celery consumer process, and ~120 of the ~240 us each event publish cost.
This channel builds that client once and reuses it: the same pool, the same connections, the
same commands, and redis-py clients are safe to share between threads.

Used for every `redis://` / `rediss://` broker URL (fss.celery_app.transport_for: Celery's
`broker_transport` and the Connections fss opens itself); other transports are kombu's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _fss_client: Any = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._fss_client is None:
            self._fss_client = self._create_client()  # type: ignore[no-untyped-call]
        yield self._fss_client


class Transport(kombu_redis.Transport):
    Channel = Channel

