"""/metrics: Prometheus text computed from the store and the broker at scrape time."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from servers import migrated_copy
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.status import TaskStatus
from fss.naming import EVENTS_QUEUE, client_queue
from fss.store.engine import create_engine
from fss.store.tables import (
    alert,
    alert_attempt,
    client,
    server_node,
    task,
    task_group,
)
from fss.web import Role, WebSettings, WebUser, create_web_app

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc)
WEB = WebSettings(
    users=(WebUser("admin", "pw"), WebUser("viewer", "pw2", Role.VIEWER)),
    token="t" * 20,
)


def basic(name: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def broker(fresh_redis_url: Callable[[], str]) -> str:
    return fresh_redis_url()


@pytest.fixture
def web(engine: Engine, database_url: str, broker: str) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, broker_url=broker)
    with TestClient(create_web_app(settings, WEB, ManualClock(NOW))) as test_client:
        yield test_client


def add_group(engine: Engine, job_name: str, run_count: int, enabled: bool = True) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            task_group.insert().values(
                caption=f"{job_name} group", job_name=job_name, data="{}", start_at=NOW,
                next_at=NOW, activate_at=NOW, run_count=run_count, is_enable=enabled,
                interval_ms=1000, created_at=NOW,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_task(
    engine: Engine, group_id: int, job_name: str, status: TaskStatus, start_at: datetime,
    late_s: float | None = None, run_speed: int | None = None,
) -> None:
    values: dict[str, Any] = {
        "task_group_id": group_id, "job_name": job_name, "start_at": start_at,
        "status": int(status), "create_at": start_at, "run_speed": run_speed,
    }
    if late_s is not None:
        values["dispatched_at"] = start_at + timedelta(seconds=late_s)
    with engine.begin() as conn:
        conn.execute(task.insert().values(**values))


def add_client(engine: Engine, client_id: str, heartbeat_age_s: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            client.insert().values(
                id=client_id, host="h", ip="127.0.0.1", pid=1, job_names=json.dumps(["a"]),
                queue=client_queue(client_id), registered_at=NOW,
                heartbeat_at=NOW - timedelta(seconds=heartbeat_age_s),
            )
        )


def add_node(engine: Engine, node_id: str, heartbeat_age_s: float, alive: bool = True) -> None:
    with engine.begin() as conn:
        conn.execute(
            server_node.insert().values(
                id=node_id, host="h", pid=1, started_at=NOW, is_alive=alive,
                heartbeat_at=NOW - timedelta(seconds=heartbeat_age_s),
            )
        )


def scrape(web: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = web.get("/metrics", headers=basic("viewer", "pw2"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_runs_tasks_groups_clients_and_nodes_from_the_store(
    engine: Engine, web: TestClient
) -> None:
    mail = add_group(engine, "mail", run_count=7)
    report = add_group(engine, "report", run_count=0, enabled=False)
    add_task(engine, mail, "mail", TaskStatus.FAIL, NOW - timedelta(days=2))
    add_task(engine, report, "report", TaskStatus.FAIL, NOW - timedelta(days=2))
    add_task(engine, report, "report", TaskStatus.FAIL, NOW - timedelta(days=2))
    add_task(engine, mail, "mail", TaskStatus.NONE, NOW + timedelta(minutes=1))
    add_client(engine, "w-live", heartbeat_age_s=2)
    add_client(engine, "w-silent", heartbeat_age_s=60)
    add_node(engine, "n1", heartbeat_age_s=1)
    add_node(engine, "n2", heartbeat_age_s=1, alive=False)
    add_node(engine, "n3", heartbeat_age_s=30)

    samples = scrape(web)

    assert samples[("fss_runs_total", (("job_name", "mail"), ("status", "Success")))] == 7
    assert samples[("fss_runs_total", (("job_name", "mail"), ("status", "Fail")))] == 1
    assert samples[("fss_runs_total", (("job_name", "report"), ("status", "Fail")))] == 2
    assert samples[("fss_tasks", (("status", "Fail"),))] == 3
    assert samples[("fss_tasks", (("status", "None"),))] == 1
    assert samples[("fss_tasks", (("status", "Working"),))] == 0
    # Success is the runs ever recorded (run_count), not the Success rows held (none here).
    assert samples[("fss_tasks", (("status", "Success"),))] == 7
    assert samples[("fss_groups", (("enabled", "true"),))] == 1
    assert samples[("fss_groups", (("enabled", "false"),))] == 1
    assert samples[("fss_clients_online", ())] == 1
    assert samples[("fss_scheduler_nodes_alive", ())] == 1


def add_alert(engine: Engine, rule: str, subject: str, state: str = "open") -> None:
    with engine.begin() as conn:
        conn.execute(
            alert.insert().values(
                rule=rule, subject=subject, state=state, title=f"{rule} {subject}",
                opened_at=NOW, last_at=NOW, count=5,
                open_key=f"{rule}|{subject}" if state == "open" else None,
                resolved_at=None if state == "open" else NOW,
            )
        )


def add_attempts(engine: Engine, target: str, outcome: str, number: int) -> None:
    with engine.begin() as conn:
        for _ in range(number):
            conn.execute(alert_attempt.insert().values(
                delivery_id=1, target_name=target, at=NOW, outcome=outcome, duration_ms=3,
            ))


def test_alert_metrics_count_alerts_by_rule_and_delivery_attempts_by_target_and_outcome(
    engine: Engine, web: TestClient
) -> None:
    add_alert(engine, "run_failed", "group:1", state="resolved")
    add_alert(engine, "run_failed", "group:1")
    add_alert(engine, "run_failed", "group:2")
    add_alert(engine, "client_lost", "client:w1", state="resolved")
    add_attempts(engine, "ops-webhook", "failed", 3)
    add_attempts(engine, "ops-webhook", "sent", 2)
    add_attempts(engine, "mail", "sent", 1)

    samples = scrape(web)

    # An alert raised 5 times while open is one alert raised: its repeats only count it up.
    assert samples[("fss_alerts_total", (("rule", "run_failed"),))] == 3
    assert samples[("fss_alerts_total", (("rule", "client_lost"),))] == 1
    assert samples[("fss_alerts_open", (("rule", "run_failed"),))] == 2
    assert samples[("fss_alerts_open", (("rule", "client_lost"),))] == 0
    deliveries = {
        labels: value for (name, labels), value in samples.items()
        if name == "fss_alert_deliveries_total"
    }
    assert deliveries == {
        (("outcome", "failed"), ("target", "ops-webhook")): 3,
        (("outcome", "sent"), ("target", "ops-webhook")): 2,
        (("outcome", "sent"), ("target", "mail")): 1,
    }


def test_without_alerts_the_alert_families_are_there_and_empty(web: TestClient) -> None:
    response = web.get("/metrics", headers=basic("viewer", "pw2"))

    assert "# TYPE fss_alerts_total counter" in response.text
    assert "# TYPE fss_alerts_open gauge" in response.text
    assert "# TYPE fss_alert_deliveries_total counter" in response.text


def test_histograms_cover_finished_tasks_planned_in_the_last_hour(
    engine: Engine, web: TestClient
) -> None:
    group = add_group(engine, "mail", run_count=3)
    recent = NOW - timedelta(minutes=10)
    add_task(engine, group, "mail", TaskStatus.SUCCESS, recent, late_s=0.02, run_speed=40)
    add_task(engine, group, "mail", TaskStatus.SUCCESS, recent, late_s=3.0, run_speed=2000)
    add_task(engine, group, "mail", TaskStatus.FAIL, recent, late_s=0.3, run_speed=700)
    # Older than the window, and unfinished: not counted.
    add_task(engine, group, "mail", TaskStatus.SUCCESS, NOW - timedelta(hours=2), 100.0, 99999)
    add_task(engine, group, "mail", TaskStatus.WORKING, recent, late_s=50.0)

    samples = scrape(web)

    def bucket(name: str, le: str) -> float:
        return samples[(f"{name}_bucket", (("le", le),))]

    assert bucket("fss_dispatch_lateness_seconds", "0.01") == 0
    assert bucket("fss_dispatch_lateness_seconds", "0.05") == 1
    assert bucket("fss_dispatch_lateness_seconds", "0.5") == 2
    assert bucket("fss_dispatch_lateness_seconds", "5.0") == 3
    assert bucket("fss_dispatch_lateness_seconds", "+Inf") == 3
    assert samples[("fss_dispatch_lateness_seconds_count", ())] == 3
    assert samples[("fss_dispatch_lateness_seconds_sum", ())] == pytest.approx(3.32, abs=0.01)
    assert bucket("fss_run_duration_seconds", "0.05") == 1
    assert bucket("fss_run_duration_seconds", "1.0") == 2
    assert bucket("fss_run_duration_seconds", "2.5") == 3
    assert samples[("fss_run_duration_seconds_sum", ())] == pytest.approx(2.74)


def test_queue_depths_come_from_the_broker(engine: Engine, web: TestClient, broker: str) -> None:
    add_client(engine, "w1", heartbeat_age_s=1)
    with redis.Redis.from_url(broker) as r:
        r.rpush(EVENTS_QUEUE, "a", "b", "c")
        r.rpush(client_queue("w1"), "x")

    samples = scrape(web)

    assert samples[("fss_broker_up", ())] == 1
    assert samples[("fss_event_queue_depth", ())] == 3
    assert samples[("fss_client_queue_depth", (("client_id", "w1"),))] == 1


def test_an_unreachable_broker_gives_broker_up_0_and_the_store_metrics_still(
    engine: Engine, database_url: str
) -> None:
    add_group(engine, "mail", run_count=2)
    settings = Settings(database_url=database_url, broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_web_app(settings, WEB, ManualClock(NOW))) as web:
        samples = scrape(web)

    assert samples[("fss_broker_up", ())] == 0
    assert ("fss_event_queue_depth", ()) not in samples
    assert samples[("fss_runs_total", (("job_name", "mail"), ("status", "Success")))] == 2


def test_two_replicas_report_the_same_numbers(
    engine: Engine, database_url: str, broker: str, web: TestClient
) -> None:
    group = add_group(engine, "mail", run_count=4)
    add_task(engine, group, "mail", TaskStatus.SUCCESS, NOW - timedelta(minutes=5), 0.1, 10)
    settings = Settings(database_url=database_url, broker_url=broker)
    with TestClient(create_web_app(settings, WEB, ManualClock(NOW))) as replica:
        assert scrape(replica) == scrape(web)


def test_metrics_need_credentials_basic_or_bearer(web: TestClient) -> None:
    anonymous = web.get("/metrics")
    bearer = web.get("/metrics", headers={"Authorization": f"Bearer {'t' * 20}"})
    wrong = web.get("/metrics", headers=basic("viewer", "nope"))

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert wrong.status_code == 401
    assert bearer.status_code == 200
    assert "fss_tasks" in bearer.text
