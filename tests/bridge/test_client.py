"""fss.bridge.client, the reference Python client, against a real in-process bridge and a real
scheduler (claim loop, dispatcher, recorder, supervisor) on a real database and Redis.

The scheduler's clock is the system clock here: the bridge, its heartbeats and the client
run in real time. Timings are shortened in Settings so every test takes a few seconds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from bridge_helpers import self_signed
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.bridge.client import (
    BridgeClient,
    BridgeJobContext,
    BridgeKicked,
    BridgeRefused,
    JobHandler,
    _Session,
)
from fss.bridge.grpc_server import RunningBridge, start_bridge
from fss.bridge.proto.fss.v1 import fss_pb2
from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock, SystemClock, utcnow
from fss.domain.group_spec import GroupSpec
from fss.domain.status import TaskStatus
from fss.errors import InvalidField
from fss.events import python_level_to_fss
from fss.fence import RedisFence
from fss.scheduler.service import SchedulerService
from fss.store import groups
from fss.store.engine import create_engine
from fss.store.tables import client, run_log, task, task_group

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
TOKEN = "s3cret-token"


# ---- the context alone: no server needed -----------------------------------------------


def order(**changes: Any) -> fss_pb2.RunOrder:
    values: dict[str, Any] = dict(
        task_id=7, attempt=2, group_id=3, job_name="work", data_json='{"a": 1}',
        start_at_unix_ms=int(T0.timestamp() * 1000),
        deadline_unix_ms=int((T0 + timedelta(seconds=30)).timestamp() * 1000),
    )
    values.update(changes)
    return fss_pb2.RunOrder(**values)


def context_with_outbox(**changes: Any) -> tuple[BridgeJobContext, list[fss_pb2.ClientMessage]]:
    sent: list[fss_pb2.ClientMessage] = []

    def send(message: fss_pb2.ClientMessage) -> bool:
        sent.append(message)
        return True

    return BridgeJobContext(order(**changes), "c1", send, ManualClock(T0)), sent


def test_given_an_order_then_the_context_shows_it_like_a_job_context() -> None:
    ctx, _ = context_with_outbox()
    assert (ctx.task_id, ctx.attempt, ctx.group_id, ctx.job_name) == (7, 2, 3, "work")
    assert ctx.data == {"a": 1}
    assert ctx.start_at == T0 and ctx.start_at.tzinfo is not None
    assert ctx.deadline == T0 + timedelta(seconds=30)
    assert not ctx.cancelled


def test_given_progress_and_log_records_then_they_become_messages_with_fss_levels() -> None:
    ctx, sent = context_with_outbox()
    ctx.set_progress(40)
    ctx.log.debug("d")
    ctx.log.info("hello %s", "there")
    ctx.log.critical("x" * 20_000)
    assert sent[0].progress == fss_pb2.Progress(task_id=7, attempt=2, progress=40)
    logs = [m.log for m in sent[1:]]
    assert [(entry.level, entry.content) for entry in logs[:2]] == [(1, "d"), (2, "hello there")]
    assert logs[2].level == 5 and len(logs[2].content) <= 16 * 1024
    assert logs[2].content.endswith("[... truncated]")
    assert all(entry.event_id and entry.at_unix_ms > 0 for entry in logs)
    assert len({entry.event_id for entry in logs}) == 3


@pytest.mark.parametrize("value", [-1, 101, True, "50"])
def test_given_a_progress_out_of_range_or_not_a_number_then_it_is_refused(value: Any) -> None:
    ctx, sent = context_with_outbox()
    with pytest.raises((ValueError, TypeError)):
        ctx.set_progress(value)
    assert sent == []


def test_given_next_at_then_aware_times_and_delays_are_taken_and_naive_ones_refused() -> None:
    ctx, _ = context_with_outbox()
    ctx.set_next_at(timedelta(minutes=5))
    assert ctx.next_at == T0 + timedelta(minutes=5)
    ctx.set_next_at(datetime(2026, 5, 2, 8, 0, tzinfo=timezone(timedelta(hours=2))))
    assert ctx.next_at == datetime(2026, 5, 2, 6, 0, tzinfo=timezone.utc)
    with pytest.raises(InvalidField, match="set_next_at"):
        ctx.set_next_at(datetime(2026, 5, 2, 8, 0))


def test_given_data_changes_then_only_a_real_change_is_reported() -> None:
    ctx, sent = context_with_outbox()
    assert ctx.changed_data_json() == ""
    ctx.data["a"] = 1  # same value: no change
    assert ctx.changed_data_json() == ""
    ctx.data["b"] = [1, 2]
    assert json.loads(ctx.changed_data_json()) == {"a": 1, "b": [1, 2]}
    ctx.data["bad"] = object()
    assert ctx.changed_data_json() == ""
    assert "cannot be saved" in sent[-1].log.content


def test_python_levels_map_to_the_seeds_levels() -> None:
    levels = [logging.DEBUG - 5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
              logging.CRITICAL]
    assert [python_level_to_fss(level) for level in levels] == [0, 1, 2, 3, 4, 5]


def test_given_no_jobs_or_a_bad_concurrency_then_the_client_refuses_to_start() -> None:
    with pytest.raises(InvalidField, match="jobs"):
        BridgeClient("127.0.0.1:1", "c1", {})
    with pytest.raises(InvalidField, match="concurrency"):
        BridgeClient("127.0.0.1:1", "c1", {"j": lambda ctx: None}, concurrency=0)


# ---- against a bridge and a scheduler --------------------------------------------------


@dataclass
class RunningClient:
    client: BridgeClient
    thread: threading.Thread
    error: list[BaseException] = field(default_factory=list)

    def stop(self, timeout_s: float = 10) -> None:
        self.client.stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "run() did not return after stop()"


@dataclass
class World:
    settings: Settings
    engine: Engine
    bridge: RunningBridge
    token: str | None
    clients: list[RunningClient] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.bridge.port}"

    def restart_bridge(self) -> None:
        port = self.bridge.port
        self.bridge.stop()
        self.bridge = start_bridge(self.settings, listen=f"127.0.0.1:{port}", token=self.token)

    def start_client(
        self, name: str, jobs: dict[str, JobHandler], *, connected: bool = True, **options: Any
    ) -> RunningClient:
        options.setdefault("token", self.token)
        bridge_client = BridgeClient(self.target, name, jobs, **options)
        running = RunningClient(bridge_client, threading.Thread(target=lambda: None))

        def run() -> None:
            try:
                bridge_client.run()
            except BaseException as exc:  # handed to the test
                running.error.append(exc)

        running.thread = threading.Thread(target=run, name=f"client-{name}", daemon=True)
        running.thread.start()
        self.clients.append(running)
        if connected:
            assert bridge_client.wait_connected(10), f"{name} did not register"
            wait_for(lambda: name in self.client_ids(), timeout=10, what=f"{name} in the table")
        return running

    def add_group(self, job_name: str, **spec: Any) -> int:
        if not {"interval_ms", "cron", "job_sets_next"} & set(spec):
            spec["interval_ms"] = 3_600_000
        return groups.add_group(
            self.engine, GroupSpec(caption=job_name, job_name=job_name, **spec), utcnow()
        )

    def client_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(client.c.id)).scalars())

    def client_row(self, name: str) -> sa.Row[Any]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(client).where(client.c.id == name)).one()

    def tasks_of(self, group_id: int) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            query = sa.select(task).where(task.c.task_group_id == group_id).order_by(task.c.id)
            return list(conn.execute(query))

    def ended(self, group_id: int) -> list[sa.Row[Any]]:
        done = (TaskStatus.SUCCESS, TaskStatus.FAIL)
        return [row for row in self.tasks_of(group_id) if row.status in done]

    def wait_ended(self, group_id: int, count: int = 1, timeout: float = 15) -> list[sa.Row[Any]]:
        wait_for(lambda: len(self.ended(group_id)) >= count, timeout=timeout,
                 what=f"{count} ended task(s) of group {group_id}")
        return self.ended(group_id)

    def logs_of(self, task_id: int) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            query = sa.select(run_log.c.log_level, run_log.c.content).where(
                run_log.c.task_id == task_id
            ).order_by(run_log.c.id)
            return [(row.log_level, row.content) for row in conn.execute(query)]

    def group(self, group_id: int) -> sa.Row[Any]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(task_group).where(task_group.c.id == group_id)).one()


def make_world(
    database_url: str, broker_url: str, token: str | None
) -> Iterator[World]:
    settings = Settings(
        database_url=database_url, broker_url=broker_url, node_name="node-b",
        # Heartbeats every 0.5 s (liveness 1.5 s): scheduler, bridge and client share the
        # test's process, and on a slow host under the whole suite one stall of it passed a
        # 0.6 s liveness (the bridge ended the stream, the client reconnected mid-test).
        heartbeat_s=0.5, client_timeout_s=3, poll_s=0.1, lookahead_s=1, lease_s=3,
        supervise_s=0.2, no_client_retry_s=0.2, event_flush_ms=5, recorder_flush_ms=10,
    )
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    app = create_app(settings)
    fence = RedisFence(broker_url)
    service = SchedulerService(settings, engine, app, fence, SystemClock())
    service.start()
    bridge = start_bridge(settings, token=token)
    world = World(settings, engine, bridge, token)
    try:
        yield world
    finally:
        for running in world.clients:
            running.client.stop()
        for running in world.clients:
            running.thread.join(10)
        world.bridge.stop()
        service.stop()
        fence.close()
        app.close()
        engine.dispose()


@pytest.fixture
def world(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    """On every database backend."""
    yield from make_world(database_url, fresh_redis_url(), None)


@pytest.fixture
def sqlite_world(sqlite_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    """Behaviour that does not depend on the database: SQLite only, to stay fast."""
    yield from make_world(sqlite_url, fresh_redis_url(), TOKEN)


def work(ctx: BridgeJobContext) -> None:
    ctx.set_progress(50)
    ctx.log.info("working on %s", ctx.data["item"])
    ctx.log.warning("careful")
    ctx.data["count"] = int(ctx.data.get("count", 0)) + 1
    ctx.set_next_at(timedelta(hours=5))


def test_given_a_succeeding_handler_then_progress_logs_next_at_and_data_land_in_the_tables(
    world: World,
) -> None:
    world.start_client("py-bridge-1", {"work": work}, language="python-test")
    group_id = world.add_group("work", data={"item": "apples"})

    [row] = world.wait_ended(group_id)
    before_end = utcnow()

    assert TaskStatus(row.status) == TaskStatus.SUCCESS, row.error
    assert (row.client_id, row.progress, row.error) == ("py-bridge-1", 100, None)
    assert world.logs_of(row.id) == [(2, "working on apples"), (3, "careful")]
    group = world.group(group_id)
    assert json.loads(group.data) == {"item": "apples", "count": 1}
    # The job's next_at wins over the one-hour interval.
    assert before_end + timedelta(hours=4, minutes=59) < group.next_at.replace(
        tzinfo=timezone.utc
    ) <= before_end + timedelta(hours=5)
    assert world.client_row("py-bridge-1").language == "python-test"


def fails(ctx: BridgeJobContext) -> bool:
    ctx.set_progress(30)
    return False


def raises(ctx: BridgeJobContext) -> None:
    raise ValueError(f"cannot handle {ctx.data['item']}")


def test_given_a_handler_that_returns_false_or_raises_then_its_task_fails_with_the_error(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    world.start_client("py-bridge-2", {"fails": fails, "raises": raises}, concurrency=2)
    false_group = world.add_group("fails")
    raise_group = world.add_group("raises", data={"item": "pears"})

    [returned_false] = world.wait_ended(false_group)
    [raised] = world.wait_ended(raise_group)

    assert TaskStatus(returned_false.status) == TaskStatus.FAIL
    assert returned_false.error == "job returned False"
    assert world.logs_of(returned_false.id) == [(3, "job 'fails' returned False")]
    assert TaskStatus(raised.status) == TaskStatus.FAIL
    assert "Traceback" in raised.error and "ValueError: cannot handle pears" in raised.error
    [(level, content)] = world.logs_of(raised.id)
    assert level == 4 and "job 'raises' raised ValueError" in content
    assert "ValueError: cannot handle pears" in content  # the traceback is in the run log


def test_given_a_coroutine_handler_then_it_is_awaited(sqlite_world: World) -> None:
    async def sets_next(ctx: BridgeJobContext) -> bool:
        ctx.data["async"] = True
        return True

    sqlite_world.start_client("py-bridge-async", {"async_job": sets_next})
    group_id = sqlite_world.add_group("async_job")
    [row] = sqlite_world.wait_ended(group_id)
    assert TaskStatus(row.status) == TaskStatus.SUCCESS, row.error
    assert json.loads(sqlite_world.group(group_id).data) == {"async": True}


def test_given_a_wrong_or_missing_token_then_run_raises_and_the_client_is_not_registered(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    wrong = world.start_client("intruder", {"work": work}, token="wrong", connected=False)
    missing = world.start_client("anonymous", {"work": work}, token=None, connected=False)
    for running in (wrong, missing):
        running.thread.join(10)
        assert not running.thread.is_alive()
        [error] = running.error
        assert isinstance(error, BridgeRefused)
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert world.client_ids() == []


def test_given_an_invalid_name_then_run_raises_bridge_refused(sqlite_world: World) -> None:
    running = sqlite_world.start_client("no spaces allowed", {"work": work}, connected=False)
    running.thread.join(10)
    [error] = running.error
    assert isinstance(error, BridgeRefused)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


def test_given_a_second_session_under_the_same_name_then_the_first_is_kicked_and_stops(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    first = world.start_client("twin", {"work": work})
    second = world.start_client("twin", {"work": work})

    first.thread.join(10)
    assert not first.thread.is_alive()
    [error] = first.error
    assert isinstance(error, BridgeKicked)
    # The second session serves the name: a run reaches it, and the client row stays.
    group_id = world.add_group("work", data={"item": "x"})
    [row] = world.wait_ended(group_id)
    assert TaskStatus(row.status) == TaskStatus.SUCCESS, row.error
    assert second.thread.is_alive() and second.client.sessions == 1
    assert world.client_ids() == ["twin"]


class Gate:
    """A job that waits until the test opens the gate (or the run is cancelled)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.contexts: list[BridgeJobContext] = []
        self.saw_cancel: list[bool] = []

    def __call__(self, ctx: BridgeJobContext) -> None:
        self.contexts.append(ctx)
        ctx.set_progress(10)
        self.entered.set()
        while not self.opened.is_set() and not ctx.cancelled:
            self.opened.wait(0.02)
        self.saw_cancel.append(ctx.cancelled)


def test_given_stop_during_a_run_then_the_run_finishes_and_the_client_leaves(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    gate = Gate()
    running = world.start_client("drainer", {"gated": gate})
    group_id = world.add_group("gated")
    assert gate.entered.wait(10)
    # Progress of a running task is recorded while it runs.
    wait_for(lambda: [(r.status, r.progress) for r in world.tasks_of(group_id)][:1]
             == [(TaskStatus.WORKING, 10)], timeout=5, what="the run's progress of 10")

    running.client.stop()
    wait_for(lambda: not world.client_row("drainer").accepting, timeout=5,
             what="the draining client to take no new runs")
    gate.opened.set()
    running.thread.join(10)

    assert not running.thread.is_alive() and running.error == []
    [row] = world.wait_ended(group_id)
    assert TaskStatus(row.status) == TaskStatus.SUCCESS, row.error
    wait_for(lambda: world.client_ids() == [], timeout=5, what="the client row to go")


def test_given_the_bridge_restarts_mid_run_then_the_run_fails_is_cancelled_and_the_client_is_back(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    gate = Gate()
    tick_count: list[int] = []

    def tick(ctx: BridgeJobContext) -> None:
        tick_count.append(ctx.task_id)

    running = world.start_client("phoenix", {"gated": gate, "tick": tick})
    gated_group = world.add_group("gated")
    assert gate.entered.wait(10)

    world.restart_bridge()

    # The interrupted run: failed by the bridge, its handler told to stop.
    [interrupted] = world.wait_ended(gated_group)
    assert TaskStatus(interrupted.status) == TaskStatus.FAIL
    wait_for(lambda: gate.saw_cancel == [True], timeout=5, what="the handler to see the cancel")
    assert gate.contexts[0].cancel_reason == "bridge stopping"  # the bridge's `cancel`
    # The client reconnected by itself and runs new orders.
    assert running.client.wait_connected(10)
    wait_for(lambda: running.client.sessions >= 2, timeout=10, what="a second session")
    tick_group = world.add_group("tick")
    [ticked] = world.wait_ended(tick_group, timeout=20)
    assert TaskStatus(ticked.status) == TaskStatus.SUCCESS, ticked.error
    assert running.error == [] and running.thread.is_alive()
    # At most once: the interrupted task id never reached the client a second time.
    assert [ctx.task_id for ctx in gate.contexts].count(interrupted.id) == 1


def test_given_the_client_reconnects_mid_run_then_that_run_fails_once_and_never_comes_back(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    gate = Gate()
    running = world.start_client("flaky-net", {"gated": gate})
    group_id = world.add_group("gated", interval_ms=200)
    assert gate.entered.wait(10)

    running.client.reconnect()

    [interrupted] = world.wait_ended(group_id)
    assert TaskStatus(interrupted.status) == TaskStatus.FAIL
    disconnected = "the gRPC client flaky-net disconnected while running attempt 1"
    assert interrupted.error.startswith(disconnected)
    assert (4, interrupted.error) in world.logs_of(interrupted.id)
    wait_for(lambda: gate.saw_cancel[:1] == [True], timeout=5, what="the handler to see it")
    # The group continues on the new session: its next runs reach the client...
    gate.opened.set()
    wait_for(lambda: any(r.status == TaskStatus.SUCCESS for r in world.ended(group_id)),
             timeout=15, what="a later run of the group to succeed")
    assert running.client.sessions == 2 and running.error == []
    # ...and no task id reached it twice.
    task_ids = [ctx.task_id for ctx in gate.contexts]
    assert len(task_ids) == len(set(task_ids)) and task_ids[0] == interrupted.id


def test_given_an_order_past_its_deadline_then_it_is_reported_failed_and_never_started() -> None:
    clock = ManualClock(T0 + timedelta(seconds=31))  # the order's deadline is T0 + 30 s
    ran: list[int] = []
    bridge_client = BridgeClient("127.0.0.1:1", "c1", {"work": lambda ctx: ran.append(1)},
                                 clock=clock)
    session = _Session()
    context = BridgeJobContext(order(), "c1", session.send, clock)
    session.runs[(7, 2)] = context

    bridge_client._execute(session, context)

    session.close()
    sent = list(session.messages())
    assert ran == [] and session.runs == {}
    assert [m.WhichOneof("kind") for m in sent] == ["finished"]
    assert (sent[0].finished.success, sent[0].finished.error) == (
        False, "the order expired before it started"
    )


def test_given_more_due_runs_than_concurrency_then_at_most_concurrency_run_at_once(
    sqlite_world: World,
) -> None:
    lock = threading.Lock()
    now_running = [0]
    most = [0]

    def busy(ctx: BridgeJobContext) -> None:
        with lock:
            now_running[0] += 1
            most[0] = max(most[0], now_running[0])
        time.sleep(0.3)
        with lock:
            now_running[0] -= 1

    sqlite_world.start_client("pair", {"busy": busy}, concurrency=2)
    group_ids = [sqlite_world.add_group("busy") for _ in range(5)]
    for group_id in group_ids:
        [row] = sqlite_world.wait_ended(group_id)
        assert TaskStatus(row.status) == TaskStatus.SUCCESS, row.error
    assert most[0] == 2


def test_given_an_idle_client_then_its_heartbeats_keep_the_session_past_the_liveness_timeout(
    sqlite_world: World,
) -> None:
    running = sqlite_world.start_client("idle", {"work": work})
    liveness_s = 3 * sqlite_world.settings.heartbeat_s  # what the bridge announced
    time.sleep(4 * liveness_s)  # nothing to wait for: silence is what is tested
    assert running.client.sessions == 1 and running.thread.is_alive()
    assert sqlite_world.client_ids() == ["idle"]


def test_given_a_tls_bridge_then_a_client_trusting_its_certificate_runs_jobs(
    sqlite_world: World, tmp_path: Path
) -> None:
    world = sqlite_world
    tls = self_signed(tmp_path)
    world.bridge.stop()
    world.bridge = start_bridge(world.settings, token=TOKEN, tls=tls)
    world.start_client("over-tls", {"work": work}, root_certificates=tls.cert_pem)
    group_id = world.add_group("work", data={"item": "secrets"})
    [row] = world.wait_ended(group_id)
    assert TaskStatus(row.status) == TaskStatus.SUCCESS, row.error


@pytest.mark.parametrize(
    "changes", [{"data_json": "[1, 2]"}, {"data_json": "{not json"}, {"start_at_unix_ms": 2**62}]
)
def test_given_a_malformed_order_then_it_is_reported_failed_and_the_session_goes_on(
    changes: dict[str, Any],
) -> None:
    ran: list[int] = []
    bridge_client = BridgeClient("127.0.0.1:1", "c1", {"work": lambda ctx: ran.append(1)})
    session = _Session()

    bridge_client._on_order(session, order(**changes))

    session.close()
    [sent] = list(session.messages())
    assert (sent.finished.task_id, sent.finished.success) == (7, False)
    assert sent.finished.error.startswith("malformed order: ")
    assert ran == [] and session.runs == {}
