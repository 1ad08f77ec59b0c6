# kombu ships no annotations.
# mypy: disallow-untyped-calls=False
"""Broadcast shards on gRPC clients: the order carries shard_index/shard_total, the bridge
enters the shard's own fence, and every task event it makes for that order names the shard
(and the order's installation). A real bridge (in-process), real gRPC clients, Redis as broker
and fence; the events are read from the broker's events queue as the recorder reads them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import count

import grpc
import pytest
from bridge_helpers import RawClient, ready_channel, send_order
from celery import Celery
from kombu.connection import Connection
from kombu.simple import SimpleQueue

from fss.bridge.grpc_server import RunningBridge, start_bridge
from fss.bridge.proto.fss.v1 import fss_pb2
from fss.celery_app import create_app, transport_for
from fss.channels import events_queue
from fss.config import Settings
from fss.events import Event, TaskFinished, TaskLogged, TaskProgressed, TaskStarted, decode_batch
from fss.fence import RedisFence
from fss.naming import celery_task_id, client_queue, job_task_name
from fss.orders import RunOrder

INSTALLATION = "inst-shards"
TASK_EVENTS = (TaskStarted, TaskProgressed, TaskLogged, TaskFinished)
TaskEvent = TaskStarted | TaskProgressed | TaskLogged | TaskFinished
_task_ids = count(1001)


@dataclass
class EventsTap:
    """Takes the task events off the broker's events queue (there is no recorder here)."""

    queue: SimpleQueue
    events: list[Event] = field(default_factory=list)

    def until(self, done: Callable[[list[Event]], bool], timeout_s: float = 10.0) -> list[Event]:
        deadline = time.monotonic() + timeout_s
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events so far: {self.events}")
            try:
                message = self.queue.get(timeout=0.2)
            except SimpleQueue.Empty:
                continue
            self.events.extend(decode_batch(message.payload))
            message.ack()
        return self.events

    def of(self, task_id: int, client_id: str) -> list[TaskEvent]:
        return [
            e for e in self.events
            if isinstance(e, TASK_EVENTS) and e.task_id == task_id and e.client_id == client_id
        ]

    def finished(self, task_id: int, client_id: str) -> Callable[[list[Event]], bool]:
        return lambda _: any(isinstance(e, TaskFinished) for e in self.of(task_id, client_id))


@dataclass
class Rig:
    settings: Settings
    app: Celery
    fence: RedisFence
    bridge: RunningBridge
    channel: grpc.Channel
    tap: EventsTap

    def client(self, name: str, concurrency: int = 1) -> RawClient:
        raw = RawClient(self.channel)
        raw.register(name, concurrency=concurrency)
        raw.beating.set()
        raw.next("registered")
        return raw

    def order(
        self,
        client_id: str,
        task_id: int,
        shard_index: int = 0,
        shard_total: int = 0,
        message_id: str | None = None,
        data: dict[str, object] | None = None,
        job_name: str = "j",
    ) -> RunOrder:
        """An order armed and sent as the dispatcher sends a broadcast shard (or a plain run);
        `message_id`: the Celery id it travels under (default fss-<task>-<attempt>)."""
        if shard_total:
            assert not self.fence.arm_shards(task_id, 1, [shard_index], installation=INSTALLATION)
        else:
            assert self.fence.arm(task_id, 1, installation=INSTALLATION)
        order = RunOrder(
            task_id=task_id, attempt=1, group_id=7, job_name=job_name, client_id=client_id,
            start_at=datetime.now(timezone.utc), data=data or {}, installation=INSTALLATION,
            shard_index=shard_index, shard_total=shard_total,
        )
        if message_id is None:
            send_order(self.app, order, datetime.now(timezone.utc))
        else:
            self.app.send_task(job_task_name(job_name), kwargs=order.to_kwargs(),
                               queue=client_queue(client_id), task_id=message_id)
        return order

    def kill(self, node: str, celery_id: str) -> list[dict[str, dict[str, str]]]:
        """`fss_kill` as fss.kills sends it, with the replies."""
        replies: list[dict[str, dict[str, str]]] = self.app.control.broadcast(
            "fss_kill", arguments={"task_id": celery_id, "reason": "killed by tester",
                                   "attempt": 1},
            destination=[node], reply=True, timeout=3.0,
        )
        return replies


@pytest.fixture
def rig(fresh_redis_url: Callable[[], str]) -> Iterator[Rig]:
    settings = Settings(broker_url=fresh_redis_url(), heartbeat_s=0.4, client_timeout_s=1.2)
    app = create_app(settings, main="fss-test-scheduler")
    fence = RedisFence(settings.broker_url)
    bridge = start_bridge(settings, listen="127.0.0.1:0")
    channel = ready_channel(bridge.address)
    connection = Connection(settings.broker_url, transport=transport_for(settings.broker_url))
    queue = connection.SimpleQueue(events_queue())
    try:
        yield Rig(settings, app, fence, bridge, channel, EventsTap(queue))
    finally:
        channel.close()
        bridge.stop(grace_s=2)
        queue.close()
        connection.release()
        fence.close()
        app.close()


def run_to_the_end(raw: RawClient, order: fss_pb2.RunOrder) -> None:
    """started, progress, a log line and finished (failed) for `order`."""
    task_id, attempt = order.task_id, order.attempt
    raw.send(started=fss_pb2.Started(task_id=task_id, attempt=attempt))
    raw.send(progress=fss_pb2.Progress(task_id=task_id, attempt=attempt, progress=50))
    raw.send(log=fss_pb2.Log(task_id=task_id, attempt=attempt, content="half"))
    raw.send(finished=fss_pb2.Finished(task_id=task_id, attempt=attempt, success=False, error="x"))


def test_given_a_broadcast_shard_then_the_client_gets_it_and_every_event_names_it(
    rig: Rig,
) -> None:
    raw = rig.client("shard-a")
    task_id = next(_task_ids)
    rig.order("shard-a", task_id, shard_index=2, shard_total=3)
    streamed = raw.next("order").order
    assert (streamed.shard_index, streamed.shard_total) == (2, 3)
    # The shard's own fence was entered; the task's own (shard 0) was not touched.
    assert rig.fence.holder(task_id, 1, installation=INSTALLATION, shard=2) is not None
    assert rig.fence.holder(task_id, 1, installation=INSTALLATION) is None

    run_to_the_end(raw, streamed)
    rig.tap.until(rig.tap.finished(task_id, "shard-a"))
    events = rig.tap.of(task_id, "shard-a")
    assert [type(e) for e in events] == list(TASK_EVENTS)
    assert all(e.shard == 2 and e.installation == INSTALLATION for e in events), events
    raw.close()


def test_a_plain_order_has_shard_0_of_0_and_its_events_name_no_shard(rig: Rig) -> None:
    raw = rig.client("plain")
    task_id = next(_task_ids)
    rig.order("plain", task_id)
    streamed = raw.next("order").order
    assert (streamed.shard_index, streamed.shard_total) == (0, 0)
    # Zeros are not on the wire: an old client reads the same message as before.
    assert {f.name for f, _ in streamed.ListFields()}.isdisjoint({"shard_index", "shard_total"})
    run_to_the_end(raw, streamed)
    rig.tap.until(rig.tap.finished(task_id, "plain"))
    events = rig.tap.of(task_id, "plain")
    assert len(events) == 4
    assert all(e.shard is None and e.installation == INSTALLATION for e in events), events
    raw.close()


def test_two_clients_of_one_bridge_running_shards_of_one_attempt_keep_their_own_stamps(
    rig: Rig,
) -> None:
    """The first shard's end must not strip the second's installation (the publisher's map is
    per (task id, attempt)), and the bridge's own report of a lost shard names it too."""
    first, second = rig.client("shard-x"), rig.client("shard-y")
    task_id = next(_task_ids)
    rig.order("shard-x", task_id, shard_index=0, shard_total=2)
    rig.order("shard-y", task_id, shard_index=1, shard_total=2)
    on_first, on_second = first.next("order").order, second.next("order").order
    assert (on_first.shard_index, on_second.shard_index) == (0, 1)

    run_to_the_end(first, on_first)
    rig.tap.until(rig.tap.finished(task_id, "shard-x"))
    second.send(started=fss_pb2.Started(task_id=task_id, attempt=1))
    rig.tap.until(lambda _: bool(rig.tap.of(task_id, "shard-y")))
    second.cancel()  # the stream breaks: the bridge fails the shard it was running
    rig.tap.until(rig.tap.finished(task_id, "shard-y"))

    assert {e.shard for e in rig.tap.of(task_id, "shard-x")} == {0}
    lost = rig.tap.of(task_id, "shard-y")
    assert [type(e) for e in lost] == [TaskStarted, TaskLogged, TaskFinished]
    assert all(e.shard == 1 and e.installation == INSTALLATION for e in lost), lost
    assert isinstance(lost[-1], TaskFinished)
    assert "disconnected while running attempt 1" in str(lost[-1].error)
    first.close()


def test_a_second_shard_of_one_attempt_on_one_client_is_dropped(rig: Rig) -> None:
    raw = rig.client("shard-twice", concurrency=2)
    task_id, other = next(_task_ids), next(_task_ids)
    rig.order("shard-twice", task_id, shard_index=0, shard_total=2)
    assert raw.next("order").order.shard_index == 0
    rig.order("shard-twice", task_id, shard_index=1, shard_total=2)
    rig.order("shard-twice", other)
    # The reports could not tell the two shards apart: the second is never streamed.
    assert raw.next("order").order.task_id == other
    raw.close()


def test_an_order_with_a_shard_outside_its_total_is_dropped_and_the_session_goes_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    raw = rig.client("bad-shard")
    task_id, good = next(_task_ids), next(_task_ids)
    kwargs = RunOrder(
        task_id=task_id, attempt=1, group_id=7, job_name="j", client_id="bad-shard",
        start_at=datetime.now(timezone.utc), data={}, shard_index=5, shard_total=3,
    ).to_kwargs()
    with caplog.at_level(logging.ERROR, logger="fss.bridge.session"):
        rig.app.send_task(job_task_name("j"), kwargs=kwargs, queue=client_queue("bad-shard"),
                          task_id=celery_task_id(task_id, 1))
        rig.order("bad-shard", good)
        assert raw.next("order").order.task_id == good
    assert "dropping a malformed order: shard_index: 5 is not a shard of 3" in caplog.text
    assert "Traceback" not in caplog.text
    raw.close()


def test_a_kill_names_the_shard_by_the_celery_id_its_order_came_with(rig: Rig) -> None:
    raw = rig.client("shard-kill")
    task_id = next(_task_ids)
    rig.order("shard-kill", task_id, shard_index=1, shard_total=2, message_id=f"fss-{task_id}-1-s1")
    raw.next("order")
    # The node is <client id>@<registered host> (RawClient registers host "h1").
    assert rig.kill("shard-kill@h1", f"fss-{task_id}-1") == [{"shard-kill@h1": {
        "error": f"fss-{task_id}-1 is not running on the gRPC client shard-kill"}}]
    [reply] = rig.kill("shard-kill@h1", f"fss-{task_id}-1-s1")
    assert "cancel sent to the gRPC client shard-kill" in reply["shard-kill@h1"]["ok"]
    cancel = raw.next("cancel").cancel
    assert (cancel.task_id, cancel.attempt, cancel.reason) == (task_id, 1, "killed by tester")
    raw.send(finished=fss_pb2.Finished(task_id=task_id, attempt=1, success=True))
    rig.tap.until(rig.tap.finished(task_id, "shard-kill"))
    [end] = [e for e in rig.tap.of(task_id, "shard-kill") if isinstance(e, TaskFinished)]
    assert (end.success, end.error, end.shard) == (False, "killed by tester", 1)
    raw.close()
