"""`fss task kill` of a run on a gRPC client: the bridge answers `fss_kill` under the client's
Celery node name, sends the client `cancel`, and the run ends Fail "killed by ..."; a client
that ignores `cancel` has its run failed by the bridge after FSS_TIME_LIMIT_GRACE_S.

A real bridge (in-process, port 0; one test runs the `fss bridge` process), a real gRPC client,
Redis as broker and fence, PostgreSQL written by a real Recorder, and fss.kills / the CLI."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from bridge_helpers import finished, ready_channel
from click.testing import CliRunner
from runtime_python import runtime_python
from servers import migrated_copy, wait_for
from test_session import World, running_order
from throwaway import free_port

from fss.bridge.control import addressed, answer
from fss.bridge.grpc_server import start_bridge
from fss.celery_app import create_app
from fss.cli import cli
from fss.config import Settings
from fss.domain.clock import SystemClock
from fss.domain.status import TaskStatus
from fss.fence import RedisFence
from fss.kills import Outcome, kill_task, send_kill
from fss.scheduler.recorder import Recorder
from fss.store.engine import create_engine
from fss.store.kills import RunningAttempt

GRACE_S = 1.0


@contextmanager
def recording(settings: Settings) -> Iterator[sa.Engine]:
    """The database migrated and a Recorder writing the broker's events into it."""
    migrated_copy(settings.database_url)  # the schema at head: tests/servers.py
    engine = create_engine(settings.database_url)
    stop = threading.Event()
    recorder = threading.Thread(
        target=Recorder(engine, settings, SystemClock()).run, args=(stop,), daemon=True
    )
    recorder.start()
    try:
        yield engine
    finally:
        stop.set()
        recorder.join(timeout=15)
        engine.dispose()


@pytest.fixture
def world(pg_database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[World]:
    settings = Settings(
        database_url=pg_database_url,
        broker_url=fresh_redis_url(),
        heartbeat_s=0.4,
        client_timeout_s=1.2,
        time_limit_grace_s=GRACE_S,
    )
    app = create_app(settings, main="fss-test-scheduler")
    fence = RedisFence(settings.broker_url)
    broker = redis.Redis.from_url(settings.broker_url)
    with recording(settings) as engine:
        bridge = start_bridge(settings, listen="127.0.0.1:0")
        channel = ready_channel(bridge.address)
        try:
            yield World(settings, engine, app, fence, bridge, channel, broker)
        finally:
            channel.close()
            bridge.stop(grace_s=2)
            broker.close()
            fence.close()
            app.close()


def kill(world: World, task_id: int) -> tuple[Outcome, str, float]:
    began = time.monotonic()
    result = kill_task(world.engine, world.settings, SystemClock(), task_id, "tester")
    return result.outcome, result.message, time.monotonic() - began


def test_given_a_running_order_when_killed_then_the_client_gets_cancel_and_it_ends_fail(
    world: World,
) -> None:
    raw, sent, _key = running_order(world, "kill-1")
    outcome, message, took_s = kill(world, sent.task_id)
    assert outcome is Outcome.SENT, message
    assert message == f"task {sent.task_id}: kill sent to kill-1 (attempt 1); the run ends Fail"
    assert took_s < 1.0  # answered at once, not after kills.py's 3 s reply timeout
    cancel = raw.next("cancel").cancel
    assert (cancel.task_id, cancel.attempt, cancel.reason) == (
        sent.task_id, sent.attempt, "killed by tester")

    raw.send(finished=finished(sent, success=False, error="stopped on cancel"))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    row = world.task_row(sent.task_id)
    assert row.error == "killed by tester; the client said: stopped on cancel"
    assert row.kill_requested_at is not None
    assert (3, "kill requested by tester") in world.logs(sent.task_id)
    raw.close()


def test_given_a_killed_run_the_client_reports_success_then_it_still_ends_fail(
    world: World,
) -> None:
    raw, sent, _key = running_order(world, "kill-2")
    assert kill(world, sent.task_id)[0] is Outcome.SENT
    raw.next("cancel")
    raw.send(finished=finished(sent, success=True))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    assert world.task_row(sent.task_id).error == "killed by tester"
    raw.close()


def test_given_a_client_that_ignores_cancel_then_the_bridge_fails_the_run_after_the_grace(
    world: World,
) -> None:
    raw, sent, _key = running_order(world, "kill-3")
    assert kill(world, sent.task_id)[0] is Outcome.SENT
    raw.next("cancel")
    cancelled_at = time.monotonic()
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    failed_after_s = time.monotonic() - cancelled_at
    assert GRACE_S * 0.8 <= failed_after_s < GRACE_S + 2, failed_after_s
    error = str(world.task_row(sent.task_id).error)
    assert error == (
        "killed by tester: the gRPC client kill-3 did not end the run within 1 s of `cancel`; "
        "marked failed"
    ), error
    assert (4, error) in world.logs(sent.task_id)
    # Its late report is dropped, the session goes on, the run stays failed.
    raw.send(finished=finished(sent, success=True))
    other = world.dispatch("kill-3")
    raw.next("order")
    assert world.status(sent.task_id) == TaskStatus.FAIL and other.task_id != sent.task_id
    raw.close()


def test_a_kill_of_a_run_the_client_does_not_run_is_refused_by_its_bridge(world: World) -> None:
    raw, sent, _key = running_order(world, "kill-4")
    elsewhere = RunningAttempt(sent.task_id + 1000, 1, sent.group_id, "kill-4", "h1", "node")
    outcome, detail = send_kill(world.settings, elsewhere, "killed by tester")
    assert outcome is Outcome.REFUSED
    assert detail == (
        f"kill-4 refused: fss-{sent.task_id + 1000}-1 is not running on the gRPC client kill-4"
    )
    assert raw.received.empty()  # no cancel for the run it does run
    assert world.status(sent.task_id) == TaskStatus.WORKING
    raw.close()


def test_fss_task_kill_on_the_cli_kills_a_grpc_clients_run(world: World) -> None:
    raw, sent, _key = running_order(world, "kill-5")
    result = CliRunner().invoke(
        cli,
        ["task", "kill", str(sent.task_id), "--database-url", world.settings.database_url],
        env={"FSS_BROKER_URL": world.settings.broker_url, "USER": "ops"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"task {sent.task_id}: kill sent to kill-5 (attempt 1)" in result.stdout
    assert raw.next("cancel").cancel.reason.startswith("killed by ")
    raw.send(finished=finished(sent, success=False))
    wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 5, what="failed")
    error = str(world.task_row(sent.task_id).error)
    assert error.startswith("killed by ") and error.endswith("(fss task kill)"), error
    raw.close()


# ---- the control command, as values --------------------------------------------------------


@dataclass
class Target:
    asked: list[tuple[str, str]] = field(default_factory=list)

    def kill(self, celery_id: str, reason: str) -> dict[str, str]:
        self.asked.append((celery_id, reason))
        return {"ok": "sent"}


def test_only_the_nodes_of_this_bridges_clients_are_answered() -> None:
    mine = Target()
    find = {"a@h1": mine}.get
    assert list(addressed({"destination": ["w1@host", "a@h1"]}, find)) == [("a@h1", mine)]
    assert list(addressed({"destination": ["w1@host"]}, find)) == []
    # Broadcasts to every node (`celery inspect ...`) and malformed bodies: no answer.
    assert list(addressed({"destination": None}, find)) == []
    assert list(addressed({"destination": "a@h1"}, find)) == []
    assert list(addressed(["a@h1"], find)) == []


@pytest.mark.parametrize(
    ("method", "arguments", "reply"),
    [
        ("fss_kill", {"task_id": "fss-1-2", "reason": "killed by x"}, {"ok": "sent"}),
        ("ping", {}, {"error": "a gRPC client answers only fss_kill, not 'ping'"}),
        ("fss_kill", {"task_id": 7}, {"error": "task_id: give the run's Celery task id "
                                                "(fss-<task>-<attempt>)"}),
        ("fss_kill", None, {"error": "task_id: give the run's Celery task id "
                                     "(fss-<task>-<attempt>)"}),
    ],
)
def test_the_answer_to_a_control_command(
    method: str, arguments: object, reply: dict[str, str]
) -> None:
    target = Target()
    assert answer(target, method, arguments) == reply
    assert target.asked == ([("fss-1-2", "killed by x")] if "ok" in reply else [])


def test_a_kill_without_a_reason_gets_celerys_revoke_reason() -> None:
    target = Target()
    answer(target, "fss_kill", {"task_id": "fss-1-1", "reason": ""})
    assert target.asked == [("fss-1-1", "killed: revoked with terminate")]


# ---- the `fss bridge` process ----------------------------------------------------------------


def test_the_fss_bridge_process_answers_a_kill_for_its_client(
    pg_database_url: str, fresh_redis_url: Callable[[], str], tmp_path: Path
) -> None:
    settings = Settings(
        database_url=pg_database_url, broker_url=fresh_redis_url(), time_limit_grace_s=GRACE_S
    )
    port = free_port()
    env = {**os.environ, "FSS_BROKER_URL": settings.broker_url, "FSS_TIME_LIMIT_GRACE_S": "1"}
    log_path = tmp_path / "bridge.log"
    with recording(settings) as engine, open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [runtime_python(), "-c", "from fss.cli import main; main()", "bridge",
             "--listen", f"127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )
        app = create_app(settings, main="fss-test-scheduler")
        fence = RedisFence(settings.broker_url)
        broker = redis.Redis.from_url(settings.broker_url)
        try:
            channel = ready_channel(f"127.0.0.1:{port}", timeout_s=30)
            # No in-process bridge here: the process serves the channel.
            world = World(settings, engine, app, fence, None, channel, broker)  # type: ignore[arg-type]
            raw, sent, _key = running_order(world, "proc-kill")
            outcome, message, took_s = kill(world, sent.task_id)
            assert outcome is Outcome.SENT, message
            assert raw.next("cancel").cancel.reason == "killed by tester"
            # The client never ends it: the bridge process fails it after FSS_TIME_LIMIT_GRACE_S.
            wait_for(lambda: world.status(sent.task_id) == TaskStatus.FAIL, 10, what="failed")
            assert str(world.task_row(sent.task_id).error).startswith(
                "killed by tester: the gRPC client proc-kill did not end the run within 1 s")
            raw.close()
            channel.close()
        finally:
            process.terminate()
            process.wait(timeout=20)
            broker.close()
            fence.close()
            app.close()
    output = log_path.read_text()
    assert "Traceback" not in output, output
    assert "bridge control: fss_kill for proc-kill@h1" in output, output
    print(f"kill answered in {took_s * 1000:.0f} ms by the bridge process")
