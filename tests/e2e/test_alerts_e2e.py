"""Alerts end to end: real `fss scheduler` and `fss worker` processes on PostgreSQL + Redis,
telling a real local HTTP receiver and a real SMTP server (aiosmtpd) about a failing job, a
hung job, a worker killed with -9 (client lost, its job unserved, 300 groups and a cron
group late: one summary), the return of it all (resolved), and a scheduler killed while it
sends (its peer sends, with the same idempotency key)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alerting.receivers import HttpReceiver, http_receiver, silent_receiver, smtp_receiver
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.group_spec import GroupSpec
from fss.store import groups
from fss.store.engine import create_engine
from fss.store.tables import task_group

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
HOUR_MS = "3600000"
FAST = {
    "FSS_ALERT_CHECK_S": "1",
    "FSS_ALERT_GROUP_WAIT_S": "0.5",
    "FSS_ALERT_RESOLVE_HOLD_S": "1",
    "FSS_ALERT_LATE_GRACE_S": "1",
    "FSS_ALERT_UNSERVED_S": "2",
    "FSS_CONSOLE_URL": "http://console.test",
}


@pytest.fixture
def env(fss_env: FssProcesses) -> Iterator[FssProcesses]:
    shutil.copy(HERE / "alert_jobs.py", fss_env.workdir / "alert_jobs.py")
    fss_env.extra_env.update(FAST)
    yield fss_env


def bodies(receiver: HttpReceiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


def delivered(receiver: HttpReceiver, **match: Any) -> list[dict[str, Any]]:
    return [b for b in bodies(receiver) if all(b.get(k) == v for k, v in match.items())]


def add_group(env: FssProcesses, job: str, *options: str) -> int:
    out = env.cli("group", "add", "--caption", job, "--job-name", job, *options)
    return int(out.stdout.strip())


def alerts(env: FssProcesses) -> list[Any]:
    return query(env.database_url, "SELECT * FROM alert ORDER BY id")


def test_failed_and_hung_runs_reach_a_webhook_after_a_500_and_an_email(
    env: FssProcesses,
) -> None:
    env.extra_env["HOOK_SECRET"] = "whsec-e2e-41"
    with (http_receiver((500, b"busy"), (200, b"ok")) as hook, smtp_receiver() as mail,
          silent_receiver() as hanging):
        # A receiver that accepts and never answers: it holds one sender thread per attempt,
        # never the other targets nor the runs.
        env.cli("alert", "target", "add", "black-hole", "--kind", "webhook", "--url", hanging)
        env.cli("alert", "target", "add", "hook", "--kind", "webhook", "--url", hook.url(),
                "--secret-env", "HOOK_SECRET")
        env.cli("alert", "target", "add", "mail", "--kind", "email", "--host", "127.0.0.1",
                "--port", str(mail.port), "--security", "none", "--from", "fss@example.test",
                "--to", "ops@example.test,dba@example.test")
        failing = add_group(env, "alert.boom", "--interval-ms", HOUR_MS)
        ticking = add_group(env, "alert.ok", "--interval-ms", "1000", "--late-after", "1m")
        hung_group = add_group(env, "alert.hang", "--interval-ms", HOUR_MS, "--timeout-s", "2")
        env.scheduler("s1")
        env.worker("w1", "alert_jobs")

        def keys() -> list[str]:
            return [r.headers["X-FSS-Idempotency-Key"] for r in hook.requests]

        wait_for(lambda: len(delivered(hook, rule="run_failed")) >= 1
                 and len(delivered(hook, rule="hung")) >= 1
                 and keys().count(keys()[0]) == 2
                 and len(mail.messages) >= 2, timeout=60, what="both alerts, both targets")
        stuck = query(env.database_url, "SELECT count(*) FROM alert_attempt "
                      "WHERE target_name = 'black-hole' AND outcome = 'failed'")[0][0]
        env.stop_all()

    # The receiver answered the first request 500: it came again after its backoff (5 s),
    # with the same idempotency key; every other message came once.
    assert sorted(keys().count(k) for k in set(keys())) == [1, 2], [
        (b["rule"], b["kind"], b["title"]) for b in bodies(hook)]
    failed = delivered(hook, rule="run_failed")[-1]
    signature = hook.requests[0].headers["X-FSS-Signature"]
    stamp, mac = (part.split("=", 1)[1] for part in signature.split(","))
    body = hook.requests[0].body
    expected = hmac.new(b"whsec-e2e-41", stamp.encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(mac, expected.hexdigest())
    assert failed["kind"] == "firing"
    assert failed["group"]["id"] == failing
    assert "the disk is full" in failed["text"]
    task_id = failed["task_id"]
    assert failed["url"] == f"http://console.test/tasks/{task_id}"
    hung = delivered(hook, rule="hung")[-1]
    assert hung["group"]["id"] == hung_group
    subjects = sorted(str(m["Subject"]) for _, m in mail.messages)
    assert any("run failed" in s for s in subjects)
    assert any("failed as hung" in s for s in subjects)
    envelope, message = mail.messages[0]
    assert sorted(envelope.rcpt_tos) == ["dba@example.test", "ops@example.test"]
    assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
    attempts = query(env.database_url,
                     "SELECT target_name, outcome, status_code FROM alert_attempt ORDER BY id")
    assert ("hook", "failed", 500) in [tuple(a) for a in attempts]
    # The hanging receiver's attempts failed at their time limit (5 s) and are retried;
    # the 1 s group ran all along.
    assert stuck >= 1
    runs = query(env.database_url,
                 "SELECT count(*) FROM task WHERE task_group_id = :g AND status = 4", g=ticking)
    assert runs[0][0] >= 5
    # Its successes raised nothing: every alert is about the failing and the hung group.
    assert {a.task_group_id for a in alerts(env)} == {failing, hung_group}
    listed = json.loads(env.cli("alert", "list", "--json").stdout)
    assert {a["rule"] for a in listed} >= {"run_failed", "hung"}


def _spread_groups(env: FssProcesses, count: int, job: str, interval_ms: int) -> list[int]:
    """`count` groups added in this process (the CLI would take a second each)."""
    engine = create_engine(env.database_url)
    now = datetime.now(timezone.utc)
    try:
        spec = GroupSpec(caption="fleet", job_name=job, interval_ms=interval_ms)
        ids = [groups.add_group(engine, spec, now) for _ in range(count)]
        with engine.begin() as conn:
            conn.execute(task_group.update().where(task_group.c.id.in_(ids)).values(
                late_after_s=20))
        return ids
    finally:
        engine.dispose()


def test_a_killed_worker_brings_client_lost_unserved_and_one_summary_then_all_resolve(
    env: FssProcesses,
) -> None:
    # Late 20 s after a planned run (the cron group: its 2 s gap + 18 s grace): by then the
    # worker's loss is known (its beacon gone ~3 s, its job unserved 2 s later), and the
    # summary names it as the likely cause.
    env.extra_env["FSS_ALERT_LATE_GRACE_S"] = "18"
    env.extra_env["FSS_ALERT_GROUP_WAIT_S"] = "2"
    # Groups found late after the summary went (a loaded host checks slowly) follow as one.
    env.extra_env["FSS_ALERT_GROUP_INTERVAL_S"] = "5"
    with http_receiver() as hook:
        env.cli("alert", "target", "add", "ops", "--kind", "webhook", "--url", hook.url(),
                "--rate-per-min", "100")
        fleet = _spread_groups(env, 300, "alert.ok", 2000)
        cron = add_group(env, "alert.ok", "--cron", "*/2 * * * * *")
        env.scheduler("s1")
        env.worker("w1", "alert_jobs")
        wait_for(
            lambda: query(env.database_url,
                          "SELECT count(DISTINCT task_group_id) FROM task WHERE status = 4"
                          )[0][0] >= 301,
            timeout=60, what="every group ran once",
        )
        # On a loaded host the fleet may go late before its first runs: that episode is
        # not this test's; what counts below is what the kill raised.
        before = max([a.id for a in alerts(env)], default=0)

        def told(**match: Any) -> list[dict[str, Any]]:
            return [b for b in delivered(hook, **match)
                    if min(b.get("alert_ids") or [b.get("alert_id") or 0]) > before]

        env.kill("w1")

        wait_for(lambda: told(rule="client_lost")
                 and told(rule="job_unserved")
                 and told(kind="summary", rule="group_late"),
                 timeout=60, what="client lost, job unserved and the late summary")
        # A worker back under the same name: each alert closes with one notice.
        env.worker("w1", "alert_jobs")
        wait_for(lambda: told(rule="client_lost", kind="resolved")
                 and told(rule="job_unserved", kind="resolved")
                 and (told(kind="summary-resolved", rule="group_late")
                      or len(told(kind="resolved", rule="group_late")) >= 301),
                 timeout=90, what="everything resolved")

        def late_firing() -> list[dict[str, Any]]:
            return told(kind="summary", rule="group_late") + told(kind="firing", rule="group_late")

        # Stragglers wait for the summary's group interval.
        wait_for(lambda: sum(b["count"] for b in late_firing()) >= 301, timeout=30,
                 what="every late group told")
        env.stop_all()

    # 301 groups went late together: one summary (and one follow-up for the stragglers
    # found late after it went), not 301 messages.
    assert len(late_firing()) <= 3, [(b["kind"], b["count"]) for b in late_firing()]
    summaries = told(kind="summary", rule="group_late")
    # How many the first one holds depends on how the late checks fell in its group wait.
    assert summaries[0]["count"] > 10
    assert "likely cause" in summaries[0]["text"] and "w1" in summaries[0]["text"]
    counted = sum(b["count"] for b in late_firing())
    # Each group was late once: none raised again right after its success resolved it.
    raised = [a for a in alerts(env) if a.id > before]
    again = [(a.task_group_id, a.detail) for a in raised if a.rule == "group_late"]
    assert counted == 301 == len(again), again[:6]
    with_late = {a.task_group_id for a in raised if a.rule == "group_late"}
    assert with_late == {*fleet, cron}
    assert all(a.state == "resolved" for a in alerts(env))
    (lost,) = told(rule="client_lost", kind="firing")
    assert lost["client_id"] == "w1"


def test_a_scheduler_killed_while_sending_leaves_the_alert_to_its_peer(
    env: FssProcesses,
) -> None:
    held = threading.Event()
    try:
        with http_receiver(hold=held) as hook:
            env.extra_env["FSS_ALERT_SEND_TIMEOUT_S"] = "30"
            env.cli("alert", "target", "add", "ops", "--kind", "webhook", "--url", hook.url())
            add_group(env, "alert.boom", "--interval-ms", HOUR_MS)
            env.scheduler("s1")
            env.scheduler("s2")
            env.worker("w1", "alert_jobs")
            wait_for(lambda: len(hook.requests) == 1, timeout=60, what="the first send")
            (holder,) = query(env.database_url,
                              "SELECT holder FROM lease WHERE name = 'alerts'")[0]
            assert holder in ("s1", "s2")
            env.kill(holder)  # kill -9 while it waits for the answer
            peer = "s2" if holder == "s1" else "s1"
            wait_for(lambda: len(hook.requests) == 2, timeout=60, what="the peer's send")
            wait_for(lambda: query(env.database_url,
                                   "SELECT state FROM alert_delivery")[0][0] == "sent",
                     timeout=30, what="the delivery recorded sent")
            held.set()
            env.stop_all()
    finally:
        held.set()
    first, second = hook.requests
    key = first.headers["X-FSS-Idempotency-Key"]
    assert second.headers["X-FSS-Idempotency-Key"] == key
    assert first.body == second.body or json.loads(first.body)["id"] == key
    attempts = query(env.database_url, "SELECT node, outcome FROM alert_attempt")
    assert [tuple(a) for a in attempts] == [(peer, "sent")]
    (delivery,) = query(env.database_url, "SELECT idempotency_key, attempts FROM alert_delivery")
    assert tuple(delivery) == (key, 1)

