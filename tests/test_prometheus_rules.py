"""deploy/prometheus: the example Alertmanager rules load in Prometheus's own checker, fire
as their unit tests say, and name only series `fss web` really serves at /metrics."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from servers import migrated_copy

from fss.config import Settings
from fss.domain.clock import ManualClock
from fss.domain.status import TaskStatus
from fss.naming import client_queue
from fss.store.alerts import raise_alert
from fss.store.engine import create_engine
from fss.store.tables import alert_attempt, client, task, task_group
from fss.web import WebSettings, WebUser, create_web_app

RULES_DIR = Path(__file__).parent.parent / "deploy" / "prometheus"
RULES = RULES_DIR / "fss-alerts.rules.yml"
NOW = datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc)
INSTALL = "apt-get update && apt-get install -y prometheus"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(f"promtool is not installed (scripts/test installs it as root): {INSTALL}")
    return path


@pytest.mark.parametrize("command", [["check", "rules", RULES.name],
                                     ["test", "rules", "fss-alerts.test.yml"]])
def test_promtool_loads_the_rules_and_their_unit_tests_pass(command: list[str]) -> None:
    done = subprocess.run([_promtool(), *command], cwd=RULES_DIR, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _served_series(database_url: str, broker_url: str) -> dict[str, set[tuple[str, str]]]:
    """Every series name /metrics serves over a database holding a failed run, an open
    alert and a failed delivery, with the labels (name, value) each was seen with."""
    migrated_copy(database_url)  # the schema at head: tests/servers.py
    engine = create_engine(database_url)
    with engine.begin() as conn:
        group_id = conn.execute(task_group.insert().values(
            caption="backup", job_name="backup", data="{}", start_at=NOW, next_at=NOW,
            activate_at=NOW, interval_ms=1000, created_at=NOW)).inserted_primary_key[0]
        conn.execute(task.insert().values(task_group_id=group_id, job_name="backup",
                                          start_at=NOW, status=int(TaskStatus.FAIL),
                                          create_at=NOW))
        raise_alert(conn, rule="group_late", subject=f"group:{group_id}", title="late",
                    now=NOW, group_id=group_id)
        conn.execute(alert_attempt.insert().values(delivery_id=1, target_name="ops", at=NOW,
                                                   outcome="failed"))
        conn.execute(client.insert().values(
            id="w1", host="h", ip="127.0.0.1", pid=1, job_names='["backup"]',
            queue=client_queue("w1"), registered_at=NOW, heartbeat_at=NOW))
    engine.dispose()
    web = WebSettings(users=(WebUser("admin", "pw"),), token="t" * 20)
    settings = Settings(database_url=database_url, broker_url=broker_url)
    auth = base64.b64encode(b"admin:pw").decode()
    with TestClient(create_web_app(settings, web, ManualClock(NOW))) as http:
        response = http.get("/metrics", headers={"Authorization": f"Basic {auth}"})
    assert response.status_code == 200
    served: dict[str, set[tuple[str, str]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            served.setdefault(sample.name, set()).update(sample.labels.items())
    return served


def test_every_series_and_label_the_rules_use_is_served(
    sqlite_url: str, fresh_redis_url: Callable[[], str]
) -> None:
    served = _served_series(sqlite_url, fresh_redis_url())
    assert "fss_broker_up" in served  # the broker answered: every family is there
    rules = [r for group in yaml.safe_load(RULES.read_text())["groups"] for r in group["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        expr = rule["expr"]
        for name, selector in re.findall(r"(fss_[a-z_]+)(\{[^}]*\})?", expr):
            assert name in served, f"{rule['alert']}: {name} is not served"
            for label, value in re.findall(r'(\w+)="([^"]*)"', selector or ""):
                assert (label, value) in served[name], (
                    f"{rule['alert']}: {name} has no series with {label}={value!r}"
                )
