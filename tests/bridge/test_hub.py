"""What a bridge's sessions announce about their client, read off a real Redis: a session
replaced under its client id announces nothing more for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, cast

from kombu.connection import Connection

from fss.bridge.session import BridgeHub, Session
from fss.channels import clients_queue
from fss.config import Settings
from fss.events import ClientHeartbeat, ClientLeft, Event, decode_batch
from fss.naming import client_queue

AT = datetime(2026, 12, 7, tzinfo=timezone.utc)


class Named:
    """What the hub reads of a session: its client id (and who it is)."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id


def beat(incarnation: str) -> ClientHeartbeat:
    return ClientHeartbeat(
        "twin", "h", "127.0.0.1", 1, ("work",), client_queue("twin"), AT,
        language="go", incarnation=incarnation,
    )


def announced(settings: Settings) -> list[Event]:
    events: list[Event] = []
    queue = clients_queue()
    with Connection(settings.broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        while (message := bound.get(no_ack=True)) is not None:
            events.extend(decode_batch(message.decode()))
    return events


def described(events: list[Event]) -> list[str]:
    return [f"{type(e).__name__}:{cast(Any, e).incarnation}" for e in events]


def test_given_a_newer_session_took_the_name_then_the_replaced_one_announces_no_heartbeat(
    fresh_redis_url: Callable[[], str],
) -> None:
    settings = Settings(broker_url=fresh_redis_url())
    hub = BridgeHub(settings)
    replaced, current = cast(Session, Named("twin")), cast(Session, Named("twin"))
    try:
        hub.take_over(replaced, beat("inc-a"))
        assert hub.publisher.flush(timeout_s=5)
        hub.take_over(current, beat("inc-b"))
        # When: the replaced session's ticker built a heartbeat just before the take-over
        # and hands it in just after
        hub.beat(replaced, beat("inc-a"))
        left_announced = hub.release(replaced, ClientLeft("twin", AT, incarnation="inc-a"))
        assert hub.publisher.flush(timeout_s=5)

        # Then: the current session's registration goes out, not the replaced one's heartbeat
        # (the publisher keeps one heartbeat per client id: it would have taken its place);
        # the replaced session leaves silently
        assert not left_announced
        assert described(announced(settings)) == [
            "ClientHeartbeat:inc-a", "ClientHeartbeat:inc-b"
        ]
    finally:
        hub.close()
