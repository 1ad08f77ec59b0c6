"""End to end (issue "Hardening", done-when): a real deployment on PostgreSQL + Redis with a
scheduler and a worker. Malformed messages on the events queue and a job that logs a NUL
byte leave every other group running and recorded and the worker registered; a job that
only logs, for longer than its group's timeout, ends Success."""

from __future__ import annotations

import pytest
from fss_processes import FssProcesses, query
from kombu import Connection
from servers import wait_for

from fss.channels import events_queue
from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e

POISON: list[tuple[object, str]] = [
    (b"this is not json {", "application/json"),
    ({"v": 1, "events": [{"type": "started", "task_id": 1, "attempt": 1, "client_id": "w1",
                          "at": "0001-01-01T00:00:00+05:00"}]}, "application/json"),
    ({"v": 1, "events": [{"type": "progress", "task_id": 2**64, "attempt": 1, "client_id": "w1",
                          "progress": 5, "at": "2026-01-01T00:00:00+00:00"}]},
     "application/json"),
    ([1, 2, 3], "application/json"),
    ({"v": 1, "events": "nope"}, "application/json"),
]


def push_poison(broker_url: str) -> None:
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        for body, content_type in POISON:
            if isinstance(body, bytes):
                producer.publish(body, content_type=content_type, content_encoding="utf-8",
                                 routing_key=events_queue().name, exchange="",
                                 declare=[events_queue()])
            else:
                producer.publish(body, serializer="json", routing_key=events_queue().name,
                                 exchange="", declare=[events_queue()])


def statuses(env: FssProcesses, group_id: int) -> list[int]:
    rows = query(env.database_url, "SELECT status FROM task WHERE task_group_id = :g "
                 "ORDER BY id", g=group_id)
    return [int(r.status) for r in rows]


def test_poison_and_nul_bytes_stop_nothing_and_a_logging_job_is_alive(
    fss_env: FssProcesses,
) -> None:
    # Given a scheduler and a worker
    fss_env.scheduler("sched-1")
    fss_env.worker("w1", "e2e_jobs", "-c", "3")
    wait_for(lambda: len(query(fss_env.database_url, "SELECT id FROM client")) == 1,
             timeout=40, what="the worker to register")

    def add(*args: str) -> int:
        return int(fss_env.cli("group", "add", *args).stdout.strip())

    # When five malformed messages land on the events queue next to real work
    push_poison(fss_env.broker_url)
    tick = add("--caption", "tick", "--job-name", "tick", "--interval-ms", "1000")
    nul = add("--caption", "nul", "--job-name", "nul_logger", "--interval-ms", "1000")
    log_only = add("--caption", "log only", "--job-name", "log_only", "--job-sets-next",
                   "--timeout-s", "3", "--data", '{"seconds": 6}')
    def successes(group_id: int) -> int:
        return statuses(fss_env, group_id).count(TaskStatus.SUCCESS)

    def dead_letters() -> int:
        return len(query(fss_env.database_url, "SELECT id FROM dead_letter"))

    def log_only_ended() -> bool:
        first = statuses(fss_env, log_only)[:1]
        return first in ([TaskStatus.SUCCESS], [TaskStatus.FAIL])

    wait_for(lambda: successes(tick) >= 10 and successes(nul) >= 10 and log_only_ended(),
             timeout=30, what="ten runs of each 1 s group and the log-only run's end")
    push_poison(fss_env.broker_url)
    wait_for(lambda: dead_letters() >= len(POISON) * 2, timeout=15,
             what="the second five bad messages set aside")
    recorded = successes(tick)
    wait_for(lambda: successes(tick) > recorded, timeout=15, what="the next tick recorded")

    # Then every group kept running and being recorded
    assert successes(tick) >= 10
    assert successes(nul) >= 10
    nul_logs = query(fss_env.database_url,
                     "SELECT content FROM run_log WHERE task_group_id = :g", g=nul)
    assert nul_logs and all("NUL byte" in r.content and "\x00" not in r.content
                            for r in nul_logs)
    assert any("\U0001f600" in r.content for r in nul_logs)
    # ... the job that only logs, for twice its timeout, ended Success (not "hung")
    assert statuses(fss_env, log_only)[0] == TaskStatus.SUCCESS
    hung = query(fss_env.database_url, "SELECT id FROM task WHERE error LIKE '%hung%'")
    assert hung == []
    # ... the worker is still registered and was never kicked
    clients = query(fss_env.database_url, "SELECT id, kicked_at FROM client")
    assert [(c.id, c.kicked_at) for c in clients] == [("w1", None)]
    # ... and the ten bad messages were set aside with their reasons, not lost in silence
    dead = query(fss_env.database_url, "SELECT reason, body FROM dead_letter")
    assert len(dead) >= len(POISON) * 2
    assert all(r.reason and r.body for r in dead)
    listing = fss_env.cli("dead-letters", "list").stdout
    assert "json" in listing.lower()
