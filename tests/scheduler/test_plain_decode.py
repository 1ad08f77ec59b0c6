"""The recorder decodes the plain envelopes fss's senders write itself, without kombu's
Message and consumer (recorder.decoded_body, WaitingTaker's on_body), and hands every other
item to kombu's path: the same bodies come out, the same items are refused, and what it
takes this way is unacked, acked and restored like any message. Real Redis and kombu."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.message import Message
from kombu.messaging import Consumer, Producer

from fss.celery_app import transport_for
from fss.channels import EVENTS_REDIS_OPTIONS, events_queue
from fss.naming import EVENTS_QUEUE
from fss.redis_transport import Channel as FssChannel
from fss.scheduler.recorder import (
    NOT_PLAIN,
    Taken,
    WaitingTaker,
    ack_all,
    decoded_body,
    restore_stale,
)


def _fss_connection(url: str) -> Connection:
    """A connection through fss's Redis transport (its channel has push_json, the senders'
    one LPUSH)."""
    return Connection(url, transport=transport_for(url), transport_options=EVENTS_REDIS_OPTIONS)


def _unacked(raw: redis.Redis) -> tuple[int, int]:
    return (raw.hlen(EVENTS_REDIS_OPTIONS["unacked_key"]),
            raw.zcard(EVENTS_REDIS_OPTIONS["unacked_index_key"]))


EVENTS = {"v": 1, "events": [{"type": "started", "task_id": 1, "attempt": 1,
                              "client_id": "c", "at": "2026-05-01T00:00:00+00:00"}]}


def _envelope(body: str | bytes, **changes: Any) -> dict[str, Any]:
    data = body.encode() if isinstance(body, str) else body
    envelope: dict[str, Any] = {
        "body": base64.b64encode(data).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": EVENTS_QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "tag-1",
        },
    }
    for key, value in changes.items():
        if key in envelope["properties"]:
            envelope["properties"][key] = value
        elif value is None:
            envelope.pop(key, None)
        else:
            envelope[key] = value
    return envelope


# (why, the item on the list): plain ones and every kind decoded_body must leave to kombu.
ITEMS: list[tuple[str, bytes]] = [
    ("plain", json.dumps(_envelope(json.dumps(EVENTS))).encode()),
    ("plain, no headers", json.dumps(_envelope(json.dumps(EVENTS), headers=None)).encode()),
    ("plain, a body that is no event list", json.dumps(_envelope('"a"')).encode()),
    ("kombu's __type__ object in the body",
     json.dumps(_envelope(json.dumps({"events": [{"__type__": "uuid", "__value__":
                                                  "00000000-0000-0000-0000-000000000001"}]}))
                ).encode()),
    ("__type__ spelt with \\u escapes",
     json.dumps(_envelope('{"events": [{"\\u005f_type__": "bytes", "__value__": "x"}]}'))
     .encode()),
    ("an unsupported __type__", json.dumps(_envelope('{"__type__": "nope", "__value__": 1}'))
     .encode()),
    ("non-ASCII text", json.dumps(_envelope(json.dumps({"events": ["日志"]}))).encode()),
    ("compressed", json.dumps(_envelope("x", headers={"compression": "application/x-gzip"}))
     .encode()),
    ("another content type", json.dumps(_envelope("x", **{"content-type": "text/plain"}))
     .encode()),
    ("pickle", json.dumps(_envelope("x", **{"content-type": "application/x-python-serialize"}))
     .encode()),
    ("no body encoding", json.dumps(_envelope("x", body_encoding=None)).encode()),
    ("body not base64", json.dumps({**_envelope("x"), "body": "%%%"}).encode()),
    ("empty body", json.dumps(_envelope(b"")).encode()),
    ("body not JSON", json.dumps(_envelope(b"{not json")).encode()),
    ("body not UTF-8", json.dumps(_envelope(b'"\xff\xfe"')).encode()),
    ("another delivery tag", json.dumps(_envelope("1", delivery_tag="tag-2")).encode()),
    ("headers a list", json.dumps(_envelope("1", headers=[1])).encode()),
    ("no properties", json.dumps({**_envelope("1"), "properties": None}).encode()),
    ("not JSON", b"not json"),
    ("a JSON list", b"[1, 2]"),
]


def _kombu_decoded(channel: Any, item: bytes) -> tuple[str, Any]:
    """What kombu's path makes of the item: ('body', decoded) or ('refused', error type)."""
    from kombu.utils.json import loads

    try:
        message = channel.Message(loads(item), channel=channel)
        message.accept = {"application/json"}
        if message.errors:
            return "refused", "errors"
        return "body", message.decode()
    except Exception as exc:
        return "refused", type(exc).__name__


@pytest.mark.parametrize(("why", "item"), ITEMS, ids=[why for why, _ in ITEMS])
def test_the_plain_decoding_gives_kombus_body_or_leaves_the_item_to_kombu(
    url: str, why: str, item: bytes
) -> None:
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        kombu_says = _kombu_decoded(conn.default_channel, item)
    ours = decoded_body("tag-1", item)
    if why.startswith("plain"):
        assert ours is not NOT_PLAIN and kombu_says == ("body", ours)
    else:
        assert ours is NOT_PLAIN, kombu_says


def test_plain_messages_are_handed_over_decoded_and_the_others_through_kombu(
    url: str, raw: redis.Redis
) -> None:
    """Messages as fss's senders write them (one LPUSH of kombu's envelope) come out as
    (Taken, body); one a kombu producer sent with a __type__ value in its body goes the
    consumer's way and comes out as kombu decodes it; all are unacked until acked."""
    with _fss_connection(url) as conn:
        channel = conn.default_channel
        assert isinstance(channel, FssChannel)
        channel.push_json(EVENTS_QUEUE, json.dumps({"n": 1}))
        Producer(channel).publish({"events": [{"__type__": "bytes", "__value__": "x"}]},
                                  exchange="", routing_key=EVENTS_QUEUE,
                                  declare=[events_queue()], serializer="json")
        channel.push_json(EVENTS_QUEUE, json.dumps({"n": 3}))
    plain: list[tuple[Taken, Any]] = []
    through_kombu: list[Message] = []
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        channel = conn.channel()
        consumer = Consumer(channel, queues=[events_queue()], on_message=through_kombu.append,
                            accept=["json"])
        taker = WaitingTaker(channel, consumer, EVENTS_QUEUE,
                             on_body=lambda t, body: plain.append((t, body)))
        assert taker.take(10) == 3
        assert [body for _, body in plain] == [{"n": 1}, {"n": 3}]
        assert all(isinstance(t, Taken) for t, _ in plain)
        # kombu's JSON object hook made bytes of the __type__ object, as it always did.
        assert [m.decode() for m in through_kombu] == [{"events": [b"x"]}]
        assert _unacked(raw) == (3, 3)
        ack_all([t for t, _ in plain][:1])  # one alone: Taken.ack
        assert _unacked(raw) == (2, 2)
        ack_all([plain[1][0], *through_kombu])
        assert _unacked(raw) == (0, 0) and raw.llen(EVENTS_QUEUE) == 0


def test_plain_messages_not_acked_come_back_when_the_channel_closes(
    url: str, raw: redis.Redis
) -> None:
    with _fss_connection(url) as conn:
        for n in range(5):
            conn.default_channel.push_json(EVENTS_QUEUE, json.dumps({"n": n}))
    plain: list[tuple[Taken, Any]] = []
    with Connection(url, transport_options=EVENTS_REDIS_OPTIONS) as conn:
        channel = conn.channel()
        consumer = Consumer(channel, queues=[events_queue()], accept=["json"])
        taker = WaitingTaker(channel, consumer, EVENTS_QUEUE,
                             on_body=lambda t, body: plain.append((t, body)))
        assert taker.take(10) == 5
        ack_all([t for t, _ in plain[:2]])
    # Closed holding three: kombu's restore on close put them back, once each.
    assert raw.llen(EVENTS_QUEUE) == 3 and _unacked(raw) == (0, 0)


KILLED = """
import json, sys, time
from kombu.connection import Connection
from kombu.messaging import Consumer
from fss.celery_app import transport_for
from fss.channels import EVENTS_REDIS_OPTIONS, events_queue
from fss.naming import EVENTS_QUEUE
from fss.scheduler.recorder import WaitingTaker
got = []
with Connection(sys.argv[1], transport_options=EVENTS_REDIS_OPTIONS) as conn:
    channel = conn.channel()
    consumer = Consumer(channel, queues=[events_queue()], accept=["json"])
    taker = WaitingTaker(channel, consumer, EVENTS_QUEUE, on_body=lambda t, b: got.append(b))
    while len(got) < 4:
        taker.take(100)
    print("holding", len(got), flush=True)
    time.sleep(60)  # killed here, every message unacked
"""


def test_what_a_killed_recorder_took_the_plain_way_comes_back_exactly_once(
    url: str, raw: redis.Redis
) -> None:
    with _fss_connection(url) as conn:
        for n in range(4):
            conn.default_channel.push_json(EVENTS_QUEUE, json.dumps({"n": n}))
    taker = subprocess.Popen([sys.executable, "-c", KILLED, url], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert taker.stdout is not None and taker.stdout.readline() == "holding 4\n"
    finally:
        taker.kill()
        taker.wait(timeout=10)
    assert raw.llen(EVENTS_QUEUE) == 0 and _unacked(raw) == (4, 4)
    options = dict(EVENTS_REDIS_OPTIONS, visibility_timeout=1)
    with Connection(url, transport_options=options) as conn:
        deadline = time.monotonic() + 10
        while raw.llen(EVENTS_QUEUE) < 4 and time.monotonic() < deadline:
            restore_stale(conn.channel())
            time.sleep(0.2)
    assert raw.llen(EVENTS_QUEUE) == 4 and _unacked(raw) == (0, 0)
    bodies = []
    for item in raw.lrange(EVENTS_QUEUE, 0, -1):
        assert isinstance(item, bytes)
        tag = json.loads(item)["properties"]["delivery_tag"]
        bodies.append(decoded_body(tag, item))
    assert sorted(b["n"] for b in bodies) == [0, 1, 2, 3]
