"""A node's loops keep running through errors, and server_node says when one fails or is stuck."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from servers import migrated_copy, wait_for
from sqlalchemy.engine import Engine

from fss.celery_app import create_app
from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.fence import RedisFence
from fss.scheduler.health import NodeHealth
from fss.scheduler.service import SchedulerService
from fss.scheduler.supervisor import SweepReport
from fss.store.engine import create_engine
from fss.store.tables import server_node

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_a_loop_is_unhealthy_while_it_fails_or_when_it_stops_completing_iterations() -> None:
    now = [0.0]
    health = NodeHealth(monotonic=lambda: now[0])
    claims = health.tracker("claim loop", stuck_after_s=30)
    health.tracker("recorder", stuck_after_s=30)  # never started: not judged
    assert health.reason() is None
    claims.start()
    claims.failed(KeyError("group 3"))
    assert health.reason() == "claim loop failing: KeyError: 'group 3'"
    claims.progressed()
    assert health.reason() is None
    claims.failed(ConnectionRefusedError("refused"))
    assert health.reason() == "claim loop failing: cannot reach a server (refused)"
    claims.progressed()
    now[0] += 31
    assert health.reason() == "claim loop stuck: no iteration completed for 31 s"


@dataclass
class Node:
    service: SchedulerService
    engine: Engine

    def unhealthy_reason(self) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(server_node.c.unhealthy_reason).where(server_node.c.id == "node-h")
            ).first()
        return "(no row yet)" if row is None else row.unhealthy_reason


@pytest.fixture
def node(database_url: str, fresh_redis_url: Callable[[], str]) -> Iterator[Node]:
    broker = fresh_redis_url()
    settings = Settings(database_url=database_url, broker_url=broker, node_name="node-h",
                        heartbeat_s=0.05, supervise_s=0.05)
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    app = create_app(settings)
    fence = RedisFence(broker)
    service = SchedulerService(settings, engine, app, fence, ManualClock(T0))
    yield Node(service, engine)
    service.stop()
    fence.close()
    app.close()
    engine.dispose()


class Flaky:
    """Wraps a loop body: raises `error` while `failing` is set, counts the calls."""

    def __init__(self, body: Callable[[], object], error: Exception) -> None:
        self.body = body
        self.error = error
        self.failing = threading.Event()
        self.failing.set()
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.failing.is_set():
            raise self.error
        return self.body()


def errors_logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and text in r.getMessage()]


def test_given_a_claim_loop_that_raises_then_it_goes_on_logs_once_and_the_node_is_unhealthy(
    node: Node, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, "fss.scheduler")
    flaky = Flaky(node.service.tick, ValueError("bad row in task 9"))
    monkeypatch.setattr(node.service, "tick", flaky)
    node.service.start()
    wait_for(lambda: flaky.calls >= 3, timeout=10, what="the loop to try again after errors")
    wait_for(lambda: "claim loop failing" in (node.unhealthy_reason() or ""), timeout=5,
             what="the node marked unhealthy")
    assert node.unhealthy_reason() == "claim loop failing: ValueError: bad row in task 9"
    logged = errors_logged(caplog, "scheduler loop failed: ValueError: bad row in task 9")
    assert len(logged) == 1 and logged[0].exc_info is not None  # once per minute, traceback
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]  # not an outage

    flaky.failing.clear()  # recovery clears it
    wait_for(lambda: node.unhealthy_reason() is None, timeout=10, what="the node healthy again")


def test_given_a_supervisor_that_raises_then_it_goes_on_and_recovery_clears_it(
    node: Node, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, "fss.scheduler")
    flaky = Flaky(SweepReport, KeyError("client 'x'"))
    monkeypatch.setattr(node.service.supervisor, "sweep", flaky)
    node.service.start()
    wait_for(lambda: flaky.calls >= 3, timeout=10, what="the supervisor to go on")
    wait_for(lambda: "supervisor failing" in (node.unhealthy_reason() or ""), timeout=5,
             what="the node marked unhealthy")
    assert len(errors_logged(caplog, "supervisor failed: KeyError")) == 1
    flaky.failing.clear()
    wait_for(lambda: node.unhealthy_reason() is None, timeout=10, what="the node healthy again")
