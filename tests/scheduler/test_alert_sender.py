"""The alert sender against real HTTP receivers: one holder of the `alerts` lease sends,
retries with backoff after a 500, keeps a hanging receiver from delaying another target,
sends a storm as one summary, and a peer resends (same idempotency key) what a sender
killed in the middle of a send left pending. Manual clock; SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alerting.receivers import HttpReceiver, http_receiver, silent_receiver
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.alerting.deliver import DeliveryResult
from fss.config import Settings
from fss.domain.alert_targets import TargetSpec
from fss.domain.alerts import CLIENT_LOST, GROUP_LATE, Message, group_subject
from fss.domain.clock import ManualClock
from fss.domain.group_spec import GroupSpec
from fss.scheduler.alerts import AlertSender
from fss.store import groups
from fss.store.alert_targets import add_target
from fss.store.alerts import raise_alert, resolve_alert_ids
from fss.store.engine import create_engine
from fss.store.tables import alert_attempt, alert_delivery

T0 = datetime(2031, 3, 14, 9, 0, 0, tzinfo=timezone.utc)


@dataclass
class World:
    engine: Engine
    clock: ManualClock

    def sender(self, node: str = "node-a", **settings: object) -> AlertSender:
        values: dict[str, object] = {
            "database_url": "sqlite://", "node_name": node, "alert_send_timeout_s": 0.5,
            "console_url": "http://console.example", "alert_group_wait_s": 0.0,
            "alert_resolve_hold_s": 0.0,
        }
        values.update(settings)
        return AlertSender(self.engine, Settings(**values), self.clock,  # type: ignore[arg-type]
                           installation="inst1")

    def target(self, name: str, url: str, **kw: object) -> None:
        spec = TargetSpec(name, "webhook", {"url": url}, **kw)  # type: ignore[arg-type]
        add_target(self.engine, spec, self.clock.now())

    def raise_(self, rule: str = CLIENT_LOST, subject: str = "client:w1",
               group_id: int | None = None) -> int:
        with self.engine.begin() as conn:
            return raise_alert(conn, rule=rule, subject=subject, title=f"{subject} {rule}",
                               now=self.clock.now(), group_id=group_id).alert_id

    def deliveries(self) -> list[dict[str, object]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(alert_delivery).order_by(alert_delivery.c.id))
            return [dict(r._mapping) for r in rows]

    def attempts(self) -> list[dict[str, object]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(alert_attempt).order_by(alert_attempt.c.id))
            return [dict(r._mapping) for r in rows]


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    yield World(engine, ManualClock(T0))
    engine.dispose()


def _round(sender: AlertSender) -> None:
    sender.round()
    assert sender.wait_idle(10)


def _bodies(receiver: HttpReceiver) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in receiver.requests]


def test_a_notice_reaches_its_target_once_with_its_idempotency_key(world: World) -> None:
    with http_receiver() as receiver:
        world.target("ops", receiver.url())
        alert_id = world.raise_()
        sender = world.sender()
        _round(sender)
        _round(sender)
        sender.close()
    (body,) = _bodies(receiver)
    assert body["alert_id"] == alert_id
    assert body["kind"] == "firing" and body["rule"] == CLIENT_LOST
    assert body["installation"] == "inst1"
    key = receiver.requests[0].headers["X-FSS-Idempotency-Key"]
    assert key == body["id"] and key.startswith("fss-inst1-")
    ((state, attempts),) = [(d["state"], d["attempts"]) for d in world.deliveries()]
    assert (state, attempts) == ("sent", 1)
    (attempt,) = world.attempts()
    assert (attempt["outcome"], attempt["status_code"], attempt["node"]) == ("sent", 200, "node-a")


def test_a_receiver_answering_500_then_200_gets_it_after_the_backoff(world: World) -> None:
    with http_receiver((500, b"busy"), (200, b"ok")) as receiver:
        world.target("ops", receiver.url())
        world.raise_()
        sender = world.sender()
        _round(sender)
        assert [d["state"] for d in world.deliveries()] == ["pending"]
        world.clock.advance(timedelta(seconds=2))
        _round(sender)
        assert len(receiver.requests) == 1  # not before its backoff (5 s)
        world.clock.advance(timedelta(seconds=4))
        _round(sender)
        sender.close()
    assert len(receiver.requests) == 2
    assert [(a["outcome"], a["status_code"], a["answer"]) for a in world.attempts()] == [
        ("failed", 500, "busy"), ("sent", 200, "ok"),
    ]
    assert [d["state"] for d in world.deliveries()] == ["sent"]
    keys = {r.headers["X-FSS-Idempotency-Key"] for r in receiver.requests}
    assert len(keys) == 1


def test_a_hanging_receiver_delays_no_other_target(world: World) -> None:
    with silent_receiver() as hanging, http_receiver() as healthy:
        world.target("slow", hanging, rate_per_min=100)
        world.target("fast", healthy.url())
        world.raise_()
        sender = world.sender(alert_send_timeout_s=3.0)
        sender.round()
        # The healthy receiver has it while the hanging one still holds its sender thread.
        wait_for(lambda: len(healthy.requests) == 1, timeout=2.5, what="the healthy target")
        assert sender.wait_idle(10)
        sender.close()
    states = {d["target_name"]: d["state"] for d in world.deliveries()}
    assert states == {"slow": "pending", "fast": "sent"}
    failed = [a for a in world.attempts() if a["target_name"] == "slow"]
    assert failed[0]["outcome"] == "failed" and "s3cr3t" not in str(failed[0]["error"])


def test_a_storm_of_late_groups_goes_out_as_one_summary(world: World) -> None:
    with http_receiver() as receiver:
        world.target("ops", receiver.url())
        world.raise_(CLIENT_LOST, "client:only-worker")
        sender = world.sender(alert_storm_threshold=10)
        _round(sender)
        spec = GroupSpec(caption="g", job_name="report", interval_ms=60_000)
        ids = [groups.add_group(world.engine, spec, T0) for _ in range(50)]
        for group_id in ids:
            world.raise_(GROUP_LATE, group_subject(group_id), group_id)
        _round(sender)
        sender.close()
    bodies = _bodies(receiver)
    assert [b["kind"] for b in bodies] == ["firing", "summary"]
    summary = bodies[1]
    assert summary["title"] == "50 groups late"
    assert "likely cause: client:only-worker client_lost" in summary["text"]
    with world.engine.connect() as conn:
        late = conn.execute(sa.text("SELECT id FROM alert WHERE rule = 'group_late'")).scalars()
        assert sorted(summary["alert_ids"]) == sorted(late)


def test_only_the_lease_holder_sends_and_a_peer_resends_what_a_killed_sender_left(
    world: World,
) -> None:
    entered = threading.Event()
    release = threading.Event()

    def stuck(spec: TargetSpec, message: Message, timeout_s: float) -> DeliveryResult:
        entered.set()  # the request left; the process dies before it records the answer
        release.wait(10)
        raise SystemExit("killed")

    with http_receiver() as receiver:
        world.target("ops", receiver.url())
        world.raise_()
        first = world.sender("node-a")
        first._send = stuck  # the first node's send never returns normally
        first.round()
        assert entered.wait(5)
        second = world.sender("node-b")
        assert not second.round().held_lease  # node-a holds the lease
        assert receiver.requests == []
        # node-a is gone (kill -9): its lease runs out, node-b takes over and sends.
        world.clock.advance(timedelta(seconds=30))
        assert second.round().held_lease
        assert second.wait_idle(10)
        release.set()
        first.close()
        second.close()
    (request,) = receiver.requests
    assert [d["state"] for d in world.deliveries()] == ["sent"]
    key = world.deliveries()[0]["idempotency_key"]
    assert request.headers["X-FSS-Idempotency-Key"] == key


def test_deliveries_to_one_target_wait_for_its_rate_limit(world: World) -> None:
    with http_receiver() as receiver:
        world.target("ops", receiver.url(), rate_per_min=3)
        for index in range(5):
            world.raise_(CLIENT_LOST, f"client:w{index}")
        sender = world.sender(alert_storm_threshold=0)
        _round(sender)
        assert len(receiver.requests) == 3
        world.clock.advance(timedelta(seconds=30))
        _round(sender)
        assert len(receiver.requests) == 3
        world.clock.advance(timedelta(seconds=31))
        _round(sender)
        sender.close()
    assert len(receiver.requests) == 5



def test_resolved_alerts_past_their_age_are_pruned_with_their_deliveries(world: World) -> None:
    with http_receiver() as receiver:
        world.target("ops", receiver.url())
        alert_id = world.raise_()
        sender = world.sender(alert_max_age_s=3600.0, retention_every_s=1.0)
        _round(sender)
        with world.engine.begin() as conn:
            resolve_alert_ids(conn, [alert_id], "back", world.clock.now())
        _round(sender)
        assert len(receiver.requests) == 2  # firing, resolved
        world.clock.advance(timedelta(minutes=30))
        _round(sender)
        assert len(world.deliveries()) == 2
        world.clock.advance(timedelta(minutes=31))
        report = sender.round()
        sender.close()
    assert report.pruned == 1
    assert world.deliveries() == [] and world.attempts() == []


def test_notices_of_a_storm_raised_over_several_checks_wait_and_fold_together(
    world: World,
) -> None:
    with http_receiver() as receiver:
        world.target("ops", receiver.url())
        sender = world.sender(alert_group_wait_s=2.0, alert_storm_threshold=10)
        spec = GroupSpec(caption="g", job_name="report", interval_ms=60_000)
        ids = [groups.add_group(world.engine, spec, T0) for _ in range(30)]
        for group_id in ids[:12]:
            world.raise_(GROUP_LATE, group_subject(group_id), group_id)
        _round(sender)  # the oldest notice is 0 s old: all wait
        world.clock.advance(timedelta(seconds=1))
        for group_id in ids[12:]:
            world.raise_(GROUP_LATE, group_subject(group_id), group_id)
        _round(sender)
        assert receiver.requests == []
        world.clock.advance(timedelta(seconds=1))
        # The oldest is 2 s old, but the last check raised some 1 s ago: the storm may go on.
        _round(sender)
        assert receiver.requests == []
        world.clock.advance(timedelta(seconds=1))
        _round(sender)
        sender.close()
    (body,) = _bodies(receiver)
    assert (body["kind"], body["title"]) == ("summary", "30 groups late")


def test_a_storm_that_goes_on_is_told_after_five_group_waits_at_most(world: World) -> None:
    with http_receiver() as receiver:
        world.target("ops", receiver.url())
        sender = world.sender(alert_group_wait_s=2.0, alert_storm_threshold=10)
        spec = GroupSpec(caption="g", job_name="report", interval_ms=60_000)
        ids = [groups.add_group(world.engine, spec, T0) for _ in range(12)]
        for group_id in ids[:11]:  # one more every second: never quiet for 2 s
            world.raise_(GROUP_LATE, group_subject(group_id), group_id)
            _round(sender)
            if not receiver.requests:
                world.clock.advance(timedelta(seconds=1))
        sender.close()
    (body,) = _bodies(receiver)
    assert (body["kind"], body["title"]) == ("summary", "11 groups late")


def test_stragglers_of_a_storm_wait_for_the_group_interval_and_go_out_as_one_summary(
    world: World,
) -> None:
    with http_receiver() as receiver:
        world.target("ops", receiver.url())
        sender = world.sender(alert_group_wait_s=2.0, alert_storm_threshold=10,
                              alert_group_interval_s=30.0)
        spec = GroupSpec(caption="g", job_name="report", interval_ms=60_000)
        ids = [groups.add_group(world.engine, spec, T0) for _ in range(40)]
        for group_id in ids[:30]:
            world.raise_(GROUP_LATE, group_subject(group_id), group_id)
        world.clock.advance(timedelta(seconds=2))
        _round(sender)
        assert [b["title"] for b in _bodies(receiver)] == ["30 groups late"]
        # Found late one after another after the summary went: each waits with the storm.
        for group_id in ids[30:35]:
            world.clock.advance(timedelta(seconds=3))
            world.raise_(GROUP_LATE, group_subject(group_id), group_id)
            _round(sender)
        # Another rule is no part of it and goes out after its own group wait.
        world.raise_(CLIENT_LOST, "client:w9")
        world.clock.advance(timedelta(seconds=2))
        _round(sender)
        assert [b["title"] for b in _bodies(receiver)][1:] == ["client:w9 client_lost"]
        # A straggler already resolved waits behind its firing notice: never told first.
        straggler = world.raise_(GROUP_LATE, group_subject(ids[34]), ids[34])  # counts up
        with world.engine.begin() as conn:
            resolve_alert_ids(conn, [straggler], "ran", world.clock.now())
        world.clock.advance(timedelta(seconds=12))  # the summary is 29 s old
        _round(sender)
        assert len(receiver.requests) == 2
        world.clock.advance(timedelta(seconds=1))
        _round(sender)
        follow_up, resolved = _bodies(receiver)[2:4]
        assert (follow_up["kind"], follow_up["title"], follow_up["count"]) == (
            "summary", "5 groups late", 5)
        assert resolved["kind"] == "resolved" and resolved["group"]["id"] == ids[34]
        # Two intervals after the last fold the storm is over: one late group goes alone.
        world.clock.advance(timedelta(seconds=61))
        world.raise_(GROUP_LATE, group_subject(ids[35]), ids[35])
        world.clock.advance(timedelta(seconds=2))
        _round(sender)  # its check found the job unserved: wait for quiet
        world.clock.advance(timedelta(seconds=2))
        _round(sender)
        sender.close()
    late_after = [b for b in _bodies(receiver)[4:] if b["rule"] == GROUP_LATE]
    assert [(b["kind"], b["group"]["id"]) for b in late_after] == [("firing", ids[35])]
