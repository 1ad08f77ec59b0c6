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

import base64
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

from fss.redis_direct import DirectRedis

# kombu's envelope for push_json (what prepare_message and _inplace_augment_message make of
# a JSON body published to the default exchange with delivery_mode 2), with placeholders for
# the base64 body, the queue (routing key) and the delivery tag.
_ENVELOPE = json.dumps(
    {
        "body": "@BODY@",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "@QUEUE@"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "@TAG@",
        },
    }
)


class Channel(kombu_redis.Channel):
    _fss_client: Any = None
    # push_json's own connection from the channel's pool (fss.redis_direct).
    _fss_direct: DirectRedis | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        # push_json's envelope text per queue: (before the body, before the tag, after it).
        self._fss_envelopes: dict[str, tuple[str, str, str]] = {}

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._fss_client is None:
            self._fss_client = self._create_client()  # type: ignore[no-untyped-call]
        yield self._fss_client

    def push_json(self, queue: str, body: str) -> None:
        """Put `body` (JSON text) on `queue` as the message kombu's
        `Producer.publish(body, exchange="", routing_key=queue, serializer="json",
        delivery_mode=2)` puts there (tests compare the two), in one LPUSH on a connection of
        its own (fss.redis_direct), without the producer's per-publish layers and the
        redis-py client: together most of a worker's cost per event publish."""
        key = self.global_keyprefix + self._q_for_pri(queue, 0)  # type: ignore[no-untyped-call]
        if self._fss_direct is None:
            self._fss_direct = DirectRedis(self.pool.make_connection)
        self._fss_direct.call("LPUSH", key, self._envelope(queue, body))

    def _envelope(self, queue: str, body: str) -> str:
        """kombu's envelope of `body` as JSON text. With kombu's base64 body encoding (the
        Redis channel's default) it is filled into text made once per queue: kombu's own
        build (prepare_message, _inplace_augment_message, then its JSON encoder, which makes a
        new encoder object per call) was a quarter of a worker's cost per event publish."""
        if self.body_encoding != "base64":
            message = self.prepare_message(  # type: ignore[no-untyped-call]
                body, 0, "application/json", "utf-8", {}, {"delivery_mode": 2}
            )
            self._inplace_augment_message(message, "", queue)  # type: ignore[no-untyped-call]
            return str(dumps(message))  # type: ignore[no-untyped-call]
        parts = self._fss_envelopes.get(queue)
        if parts is None:
            head, tail = _ENVELOPE.replace('"@QUEUE@"', json.dumps(queue)).split('"@BODY@"')
            middle, end = tail.split('"@TAG@"')
            parts = self._fss_envelopes[queue] = (head, middle, end)
        head, middle, end = parts
        encoded = base64.b64encode(body.encode("utf-8")).decode("ascii")
        tag = self._next_delivery_tag()  # type: ignore[no-untyped-call]
        return f'{head}"{encoded}"{middle}{json.dumps(tag)}{end}'

    def push_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Put each (queue, message) on its queue in one pipeline round trip, as kombu's
        publish to the default exchange does message by message: `message` is what
        `prepare_message` made; the delivery tag, routing and body encoding are added here,
        and a queue declared with x-expires gets its PEXPIREs."""
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            for queue, message in messages:
                self._inplace_augment_message(message, "", queue)  # type: ignore[no-untyped-call]
                priority = self._get_message_priority(message, reverse=False)  # type: ignore[no-untyped-call]
                pipe.lpush(self._q_for_pri(queue, priority), dumps(message))  # type: ignore[no-untyped-call]
                if self._expires and queue in self._expires:
                    for step in self.priority_steps:
                        pipe.pexpire(self._q_for_pri(queue, step), self._expires[queue])  # type: ignore[no-untyped-call]
            pipe.execute()

    def close(self) -> None:
        super().close()  # type: ignore[no-untyped-call]
        if self._fss_direct is not None:
            self._fss_direct.close()


class Transport(kombu_redis.Transport):
    Channel = Channel

