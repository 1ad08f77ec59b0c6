"""`fss health` and `fss doctor` against real databases and a real Redis: what is healthy, and
each problem named on its own line (a stopped worker, an unreachable broker, an unmigrated
database, no scheduler, clocks apart, fencing off)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from cli_support import Fss, sqlite_only
from click.testing import CliRunner
from runtime_python import runtime_python
from servers import wait_for
from sqlalchemy.engine import Engine

from fss.cli import cli
from fss.cli.health import version_problem
from fss.events import ClientHeartbeat, ClientLeft
from fss.installation import MARK_KEY
from fss.store import migrate
from fss.store.clients import heartbeat_node
from fss.store.engine import create_engine
from fss.store.installation import installation_id
from fss.store.recording import record_client_events
from fss.store.tables import alert, alert_attempt, alert_delivery, alert_notice

UTC = timezone.utc


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def failures(self) -> list[str]:
        return [line for line in self.lines if line.startswith("FAIL")]


def run(database_url: str, broker_url: str, *args: str) -> Outcome:
    result = CliRunner().invoke(
        cli,
        [*args, "--database-url", database_url, "--broker-url", broker_url],
        catch_exceptions=False,
    )
    assert "Traceback" not in result.output
    return Outcome(result.exit_code, result.stdout)


def now() -> datetime:
    return datetime.now(UTC)


def register_node(engine: Engine, node_id: str, at: datetime, unhealthy: str | None = None) -> None:
    heartbeat_node(engine, node_id, at, at, unhealthy)


def register_client(
    engine: Engine, client_id: str, jobs: tuple[str, ...], at: datetime, accepting: bool = True
) -> None:
    beat = ClientHeartbeat(
        client_id=client_id,
        host="worker-host",
        ip="127.0.0.1",
        pid=4242,
        job_names=jobs,
        queue=f"fss.client.{client_id}",
        at=at,
        accepting=accepting,
        incarnation="first",
    )
    with engine.begin() as conn:
        record_client_events(conn, [beat], at)


def unregister_client(engine: Engine, client_id: str) -> None:
    with engine.begin() as conn:
        record_client_events(conn, [ClientLeft(client_id=client_id, at=now())], now())


def add_group(fss: Fss, job_name: str, *extra: str) -> int:
    out = fss("group", "add", "--caption", job_name, "--job-name", job_name,
              "--interval-ms", "60000", *extra)
    return int(out.stdout.strip())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def unmarked_broker(redis_url: str) -> Iterator[None]:
    """The session's Redis db is shared by this module's tests: no test sees another's mark."""
    client = redis.Redis.from_url(redis_url)
    client.delete(MARK_KEY)
    yield
    client.delete(MARK_KEY)
    client.close()


def mark_broker(engine: Engine, redis_url: str, installation: str | None = None) -> str:
    """What a running scheduler does within seconds: mark its Redis as its installation's."""
    owner = installation or installation_id(engine)
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(MARK_KEY, owner, ex=60)
    finally:
        client.close()
    return owner


@pytest.fixture
def healthy(fss: Fss, engine: Engine, redis_url: str) -> None:
    """A live node and a live client for the only enabled group's job ('report', groups 1, 2)."""
    add_group(fss, "report")
    add_group(fss, "report")
    add_group(fss, "nobody-runs-this", "--disabled")
    register_node(engine, "node-1", now())
    register_client(engine, "worker-1", ("report", "other"), now())
    mark_broker(engine, redis_url)


# -- fss health -----------------------------------------------------------------------------------


def test_given_a_live_node_and_a_client_for_every_enabled_job_then_health_exits_0(
    healthy: None, database_url: str, redis_url: str
) -> None:
    outcome = run(database_url, redis_url, "health")

    assert outcome.code == 0, outcome.out
    assert outcome.failures() == []
    assert [line.split()[1] for line in outcome.lines] == [
        "broker:", "database:", "schema:", "scheduler:", "clients:", "installation:", "alerts:"
    ]
    assert "node-1" in outcome.out


def test_given_the_worker_stopped_then_health_fails_naming_its_job_and_groups(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    unregister_client(engine, "worker-1")

    outcome = run(database_url, redis_url, "health")

    assert outcome.code == 1
    assert outcome.failures() == ["FAIL  clients: no live client serves job 'report' (groups 1, 2)"]


@sqlite_only
def test_given_a_silent_or_draining_worker_then_health_says_why_it_does_not_count(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    register_client(engine, "worker-1", ("report",), now() - timedelta(seconds=60))
    register_client(engine, "worker-2", ("report",), now(), accepting=False)

    failures = run(database_url, redis_url, "health").failures()

    assert len(failures) == 1
    assert failures[0].startswith("FAIL  clients: no live client serves job 'report' (groups 1, 2)")
    assert "worker-1 silent for 60 s" in failures[0]
    assert "worker-2 draining" in failures[0]


@sqlite_only
def test_given_an_unreachable_broker_then_health_names_it(
    healthy: None, database_url: str
) -> None:
    broker = f"redis://127.0.0.1:{closed_port()}/0"

    outcome = run(database_url, broker, "health")

    assert outcome.code == 1
    assert len(outcome.failures()) == 1
    assert outcome.failures()[0].startswith(f"FAIL  broker: cannot connect to {broker} (")


def test_given_a_tls_url_at_a_plain_redis_port_then_health_fails_within_its_timeout(
    healthy: None, database_url: str, redis_url: str
) -> None:
    """rediss:// at a port that speaks plain Redis: the TLS handshake waited forever for
    bytes the server never sends, and `fss health` printed nothing (found from outside)."""
    broker = "rediss://" + redis_url.split("://", 1)[1]
    started = time.monotonic()

    outcome = run(database_url, broker, "health", "--timeout-s", "1")

    assert time.monotonic() - started < 15
    assert outcome.code == 1
    assert outcome.failures()[0].startswith(f"FAIL  broker: cannot connect to {broker} (")


def test_given_an_unmigrated_database_then_health_says_so(
    database_url: str, redis_url: str
) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect():  # a SQLite file that exists, without tables
            pass
    finally:
        engine.dispose()

    outcome = run(database_url, redis_url, "health")

    assert outcome.code == 1
    assert outcome.failures() == [
        f"FAIL  schema: database not migrated: no fss tables (this fss needs revision "
        f"{migrate.head_revision()})"
    ]


@sqlite_only
def test_given_an_older_schema_then_health_names_both_revisions(
    database_url: str, redis_url: str
) -> None:
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, "0002")
    finally:
        engine.dispose()

    failures = run(database_url, redis_url, "health").failures()

    assert failures == [
        f"FAIL  schema: database not migrated: at revision 0002, this fss needs "
        f"{migrate.head_revision()}"
    ]


@sqlite_only
def test_given_no_live_or_only_unhealthy_nodes_then_health_fails_on_the_scheduler(
    fss: Fss, engine: Engine, database_url: str, redis_url: str
) -> None:
    assert run(database_url, redis_url, "health").failures() == [
        "FAIL  scheduler: no live scheduler node (none has ever run against this database)"
    ]

    register_node(engine, "node-old", now() - timedelta(seconds=42))
    assert run(database_url, redis_url, "health").failures() == [
        "FAIL  scheduler: no live scheduler node (last heartbeat: node-old, 42 s ago)"
    ]

    register_node(engine, "node-sick", now(), unhealthy="recorder stuck: no iteration for 90 s")
    mark_broker(engine, redis_url)
    assert run(database_url, redis_url, "health").failures() == [
        "FAIL  scheduler: no healthy scheduler node (node-sick: recorder stuck: no iteration "
        "for 90 s)"
    ]


@sqlite_only
def test_health_json_lists_every_check_and_the_verdict(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    unregister_client(engine, "worker-1")

    outcome = run(database_url, redis_url, "health", "--json")

    assert outcome.code == 1
    document = json.loads(outcome.out)
    assert document["healthy"] is False
    failed = [c for c in document["checks"] if not c["ok"]]
    assert failed == [
        {"check": "clients", "ok": False, "level": "fail",
         "detail": "no live client serves job 'report' (groups 1, 2)"}
    ]
    assert {c["check"] for c in document["checks"]} == {
        "broker", "database", "schema", "scheduler", "clients", "installation", "alerts"
    }


@sqlite_only
def test_given_another_installation_on_the_broker_then_health_and_doctor_name_both(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    ours = installation_id(engine)
    mark_broker(engine, redis_url, "0ther1d0")

    outcome = run(database_url, redis_url, "health")

    assert outcome.code == 1
    assert outcome.failures() == [
        f"FAIL  installation: {redis_url} is in use by installation 0ther1d0, this database "
        f"is installation {ours}"
    ]
    doctor = run(database_url, redis_url, "doctor")
    assert doctor.code == 1
    assert "own Redis database" in doctor.out


@sqlite_only
def test_given_live_schedulers_that_never_marked_this_broker_then_health_says_they_use_another(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).delete(MARK_KEY)

    outcome = run(database_url, redis_url, "health")

    assert outcome.code == 1
    [failure] = outcome.failures()
    assert failure.startswith("FAIL  installation: ") and "another broker" in failure


@sqlite_only
def test_given_one_healthy_and_one_unhealthy_node_then_health_names_the_unhealthy_one(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    register_node(engine, "node-lost", now(), unhealthy="broker check failing: not ours")

    outcome = run(database_url, redis_url, "health")

    assert outcome.code == 1
    assert outcome.failures() == [
        "FAIL  scheduler: 1 healthy node(s) (node-1), 1 unhealthy (node-lost: broker check "
        "failing: not ours)"
    ]


# -- the real processes: the done-when of issue 10 ------------------------------------------------

FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    running: dict[str, subprocess.Popen[bytes]] = {}
    yield running
    for process in running.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.e2e
@sqlite_only
def test_given_running_processes_when_the_worker_is_stopped_then_health_names_its_job(
    fss: Fss, database_url: str, fresh_redis_url: Callable[[], str], tmp_path: Path,
    processes: dict[str, subprocess.Popen[bytes]],
) -> None:
    broker = fresh_redis_url()
    env = dict(os.environ, FSS_DATABASE_URL=database_url, FSS_BROKER_URL=broker)
    add_group(fss, "hello")

    def start(name: str, *args: str) -> None:
        with open(tmp_path / f"{name}.log", "ab") as log:
            processes[name] = subprocess.Popen(
                [*FSS, *args], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def health() -> Outcome:
        return run(database_url, broker, "health")

    start("scheduler", "scheduler", "--name", "node-e2e")
    start("worker", "worker", "-A", "fss.examples.jobs", "--name", "worker-e2e", "-P", "solo")
    wait_for(lambda: health().code == 0, timeout=30, what="a healthy installation")

    processes["worker"].send_signal(signal.SIGTERM)
    processes["worker"].wait(timeout=30)

    wait_for(lambda: health().code == 1, timeout=15, what="health to notice the stopped worker")
    assert health().failures() == ["FAIL  clients: no live client serves job 'hello' (group 1)"]


def failing_webhook(engine: Engine, attempts: int = 5) -> None:
    """An open alert whose delivery to ops-webhook failed `attempts` times in the last minutes
    (HTTP 500), and a resolved alert."""
    at = now()
    with engine.begin() as conn:
        alert_id = conn.execute(alert.insert().values(
            rule="run_failed", subject="group:1", open_key="run_failed|group:1", state="open",
            title="group 1 failed", opened_at=at, last_at=at,
        )).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(alert.insert().values(
            rule="client_lost", subject="client:w9", state="resolved", title="w9 lost",
            opened_at=at, last_at=at, resolved_at=at,
        ))
        notice_id = conn.execute(alert_notice.insert().values(
            alert_id=alert_id, kind="firing", created_at=at,
        )).inserted_primary_key[0]  # type: ignore[index]
        delivery_id = conn.execute(alert_delivery.insert().values(
            notice_id=notice_id, target_id=1, target_name="ops-webhook", state="pending",
            attempts=attempts, created_at=at, idempotency_key="fss-a1",
        )).inserted_primary_key[0]  # type: ignore[index]
        for n in range(attempts):
            conn.execute(alert_attempt.insert().values(
                delivery_id=delivery_id, target_name="ops-webhook",
                at=at - timedelta(minutes=attempts - n), outcome="failed", status_code=500,
                answer="Internal Server Error", duration_ms=20,
            ))


def test_given_an_alert_target_that_keeps_failing_then_health_warns_and_still_exits_0(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    failing_webhook(engine)

    outcome = run(database_url, redis_url, "health")
    document = json.loads(run(database_url, redis_url, "health", "--json").out)

    assert outcome.code == 0, outcome.out
    assert outcome.failures() == []
    assert "ok    alerts: 1 open alert (`fss alert list`)" in outcome.lines
    assert outcome.lines[-1] == (
        "WARN  alert_target: alert target ops-webhook failing: 5 failed attempts in 15 min, "
        "last: HTTP 500 Internal Server Error"
    )
    assert document["healthy"] is True
    assert document["checks"][-1]["level"] == "warning"
    assert document["checks"][-1]["ok"] is False


@sqlite_only
def test_given_a_target_that_failed_twice_then_health_does_not_warn_yet(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    failing_webhook(engine, attempts=2)

    outcome = run(database_url, redis_url, "health")

    assert outcome.code == 0
    assert [line for line in outcome.lines if line.startswith("WARN")] == []


@sqlite_only
def test_given_a_failing_alert_target_then_doctor_warns_with_what_to_do_and_exits_0(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    failing_webhook(engine)

    outcome = run(database_url, redis_url, "doctor")

    assert outcome.code == 0, outcome.out
    index = next(i for i, line in enumerate(outcome.lines) if line.startswith("WARNING  "))
    assert outcome.lines[index].startswith("WARNING  alert_target: alert target ops-webhook")
    assert "fss alert target test NAME" in outcome.lines[index + 1]
    assert outcome.lines[-1] == "no problems found (1 warning(s))."


# -- fss doctor -----------------------------------------------------------------------------------


def test_given_a_healthy_installation_then_doctor_finds_nothing_and_names_the_server(
    healthy: None, database_url: str, database_backend: str, redis_url: str
) -> None:
    outcome = run(database_url, redis_url, "doctor")

    assert outcome.code == 0, outcome.out
    assert outcome.lines[-1] == "no problems found."
    version_line = next(line for line in outcome.lines if "database_version:" in line)
    server = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "Maria"}[database_backend]
    assert server in version_line
    assert any(line.startswith("ok       clock:") for line in outcome.lines)
    assert "ok       fencing: on (redis://" in outcome.out


def problems(outcome: Outcome) -> dict[str, str]:
    """check -> 'problem line | what to do' of each PROBLEM block."""
    found = {}
    for index, line in enumerate(outcome.lines):
        if line.startswith("PROBLEM  "):
            check, _, detail = line.removeprefix("PROBLEM  ").partition(": ")
            advice = outcome.lines[index + 1].strip().removeprefix("what to do: ")
            found[check] = f"{detail} | {advice}"
    return found


@sqlite_only
def test_given_a_stopped_worker_and_a_rabbitmq_broker_then_doctor_explains_each_problem(
    healthy: None, engine: Engine, database_url: str
) -> None:
    unregister_client(engine, "worker-1")
    broker = f"amqp://guest:secret@127.0.0.1:{closed_port()}//"

    outcome = run(database_url, broker, "doctor")

    assert outcome.code == 1
    found = problems(outcome)
    assert set(found) == {"broker", "clients", "fencing"}
    assert "secret" not in outcome.out
    assert found["broker"].startswith("cannot connect to amqp://guest:***@127.0.0.1:")
    assert "FSS_BROKER_URL" in found["broker"]
    assert found["clients"].startswith("no live client serves job 'report' (groups 1, 2) |")
    assert "fss worker -A" in found["clients"]
    assert "FSS_FENCE_URL" in found["fencing"].split(" | ")[0]
    assert "set FSS_FENCE_URL=redis://" in found["fencing"]
    assert outcome.lines[-1] == "3 problem(s) found."


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_given_a_node_whose_clock_is_ahead_then_doctor_reports_the_skew(
    healthy: None, engine: Engine, database_url: str, redis_url: str
) -> None:
    register_node(engine, "node-fast", now() + timedelta(seconds=30))

    found = problems(run(database_url, redis_url, "doctor"))

    assert list(found) == ["clock"]
    assert re.match(r"scheduler node node-fast wrote a heartbeat (29|30)\.\d s in the future",
                    found["clock"]), found["clock"]
    assert "NTP" in found["clock"]


@sqlite_only
def test_given_an_unmigrated_database_then_doctor_says_to_run_db_upgrade(
    database_url: str, redis_url: str
) -> None:
    create_engine(database_url).dispose()
    Path(database_url.removeprefix("sqlite:///")).touch()

    found = problems(run(database_url, redis_url, "doctor"))

    assert set(found) == {"schema"}
    assert "run `fss db upgrade`" in found["schema"]


@pytest.mark.parametrize(
    ("kind", "version", "too_old"),
    [
        ("mariadb", "10.5.23-MariaDB-0+deb11u1", True),
        ("mariadb", "10.6.0-MariaDB", False),
        ("mariadb", "5.5.5-10.11.6-MariaDB", False),
        ("mysql", "5.7.44", True),
        ("mysql", "8.0.36", False),
        ("postgresql", "9.4.26", True),
        ("postgresql", "9.5.0", False),
        ("postgresql", "15.4 (Debian 15.4-1)", False),
        ("sqlite", "3.24.0", True),
        ("sqlite", "3.25.0", False),
    ],
)
def test_database_servers_without_skip_locked_are_too_old(
    kind: str, version: str, too_old: bool
) -> None:
    assert (version_problem(kind, version) is not None) == too_old


def test_given_a_database_the_server_does_not_have_then_doctor_gives_the_create_command(
    postgres_server: Any, redis_url: str
) -> None:
    name = f"fss_test_missing_{uuid.uuid4().hex[:8]}"  # never created

    outcome = run(postgres_server.url_for(name), redis_url, "doctor")

    assert outcome.code == 1
    assert f"database {name!r} does not exist" in outcome.out
    admin = postgres_server.admin_url
    login = f" -U {admin.username}" if admin.username else ""
    assert f"createdb -h {admin.host} -p {admin.port or 5432}{login} {name}" in outcome.out
