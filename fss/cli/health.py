"""`fss health` and `fss doctor`: can this installation run its groups, and if not, why not.

`fss health` checks what every run needs: the database (reachable, migrated), the broker
(reachable), a live and healthy scheduler node, and a live client for the job of every enabled
group; it also counts the open alerts and warns about each alert target that keeps failing
(a warning: groups still run, so it does not change the exit code). `fss doctor` runs the same
checks plus the database's version, the clocks and fencing, and says what to do about each problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import click
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from kombu.connection import Connection as BrokerConnection
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from fss.cli.context import CliContext, first_line, pass_cli
from fss.cli.database import DatabaseFileMissing, create_database_command, missing_database
from fss.cli.output import emit_json
from fss.config import Settings, hide_password
from fss.installation import BrokerMark
from fss.scheduler.supervisor import LEASE_NAME as SUPERVISOR_LEASE
from fss.store import migrate
from fss.store.alert_console import failing_targets, open_alert_count
from fss.store.clients import jobs_of_enabled_groups, list_clients
from fss.store.installation import installation_id
from fss.store.nodes import list_nodes
from fss.store.rows import ClientRow, NodeRow

DEFAULT_BROKER_TIMEOUT_S = 3.0
# Clocks further apart than this are reported; fss's own margins are seconds (lease 5 s,
# client liveness 10 s), so one second of skew is worth fixing before it matters.
CLOCK_TOLERANCE_S = 1.0
MAX_IDS_SHOWN = 10

# The oldest servers with FOR UPDATE SKIP LOCKED (SQLite: the SQL features fss uses).
MIN_VERSIONS: dict[str, tuple[int, int]] = {
    "postgresql": (9, 5),
    "mysql": (8, 0),
    "mariadb": (10, 6),
    "sqlite": (3, 25),
}
SERVER_NAMES = {
    "postgresql": "PostgreSQL",
    "mysql": "MySQL",
    "mariadb": "MariaDB",
    "sqlite": "SQLite",
}


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: ok with what was seen, or a problem with what to do."""

    check: str
    ok: bool
    detail: str
    advice: str = ""
    # Not ok, but groups still run (an alert target failing): shown, never a reason to fail.
    warning: bool = False

    @property
    def level(self) -> str:
        """ok | warning | fail"""
        if self.ok:
            return "ok"
        return "warning" if self.warning else "fail"

    @property
    def fails(self) -> bool:
        return self.level == "fail"


def ok(check: str, detail: str) -> Finding:
    return Finding(check, True, detail)


def problem(check: str, detail: str, advice: str) -> Finding:
    return Finding(check, False, detail, advice)


def warning(check: str, detail: str, advice: str) -> Finding:
    return Finding(check, False, detail, advice, warning=True)


LABELS = {"ok": "ok  ", "warning": "WARN", "fail": "FAIL"}


# -- the broker --------------------------------------------------------------------------------




def check_broker(url: str, timeout_s: float) -> Finding:
    shown = hide_password(url)
    if url.startswith("memory://"):
        return ok("broker", f"{shown} is in-process: only `fss dev` can use it")
    try:
        # socket_timeout too: a TLS URL (rediss://) at a plain Redis port connects, then
        # waits forever in the handshake for bytes the server never sends.
        options = {"socket_timeout": timeout_s} if url.startswith("redis") else {}
        with BrokerConnection(  # type: ignore[no-untyped-call]
            url, connect_timeout=timeout_s, transport_options=options
        ) as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s
            )
    except Exception as exc:
        return problem(
            "broker",
            f"cannot connect to {shown} ({first_line(exc)})",
            "start the broker, or fix FSS_BROKER_URL / --broker-url: schedulers, workers, "
            "bridges and this command must all name the same broker",
        )
    return ok("broker", f"{shown} reachable")


# -- the database --------------------------------------------------------------------------------


def open_database(cli: CliContext) -> tuple[Engine | None, Finding]:
    try:
        engine = cli.engine
        with engine.connect() as conn:
            conn.execute(sa.select(1))
    except DatabaseFileMissing as exc:
        return None, problem(
            "database", str(exc.reason), "point FSS_DATABASE_URL / --database-url at yours"
        )
    except SQLAlchemyError as exc:
        missing = missing_database(exc, cli.engine.url)
        if missing is not None:
            return None, problem(
                "database",
                f"{shown_database(cli)}: database {cli.engine.url.database!r} does not exist",
                f"create it with `{create_database_command(cli.engine.url)}`, then run "
                "`fss db upgrade`",
            )
        return None, problem(
            "database",
            f"cannot connect to {shown_database(cli)} ({first_line(getattr(exc, 'orig', exc))})",
            "check FSS_DATABASE_URL / --database-url, and that the database server runs and "
            "accepts this login",
        )
    return engine, ok("database", f"{shown_database(cli)} reachable")


def shown_database(cli: CliContext) -> str:
    return cli.engine.url.render_as_string(hide_password=True)


def check_schema(engine: Engine) -> Finding:
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    if current == head:
        return ok("schema", f"at revision {current} (the newest)")
    if current is None:
        return problem(
            "schema",
            f"database not migrated: no fss tables (this fss needs revision {head})",
            "run `fss db upgrade` once (from any machine with the database URL), then start "
            "the schedulers",
        )
    if not is_known_revision(current):
        return problem(
            "schema",
            f"database at revision {current}, which this fss does not know (it knows up to "
            f"{head})",
            "a newer fss migrated this database: run that version here too",
        )
    return problem(
        "schema",
        f"database not migrated: at revision {current}, this fss needs {head}",
        "run `fss db upgrade`; schedulers refuse to start on an older schema",
    )


def is_known_revision(revision: str) -> bool:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


# -- scheduler nodes and clients ------------------------------------------------------------------


def live_node_ids(conn: Connection, now: datetime, settings: Settings) -> list[str]:
    alive_since = now - timedelta(seconds=settings.client_timeout_s)
    return [
        n.id
        for n in list_nodes(conn, SUPERVISOR_LEASE, now)
        if n.is_alive and n.heartbeat_at >= alive_since
    ]


def check_nodes(conn: Connection, now: datetime, settings: Settings) -> Finding:
    alive_since = now - timedelta(seconds=settings.client_timeout_s)
    nodes = list_nodes(conn, SUPERVISOR_LEASE, now)
    live = [n for n in nodes if n.is_alive and n.heartbeat_at >= alive_since]
    healthy = [n for n in live if not n.unhealthy_reason]
    unhealthy = [n for n in live if n.unhealthy_reason]
    if healthy and not unhealthy:
        return ok("scheduler", f"{len(healthy)} live node(s): {', '.join(n.id for n in healthy)}")
    if healthy:
        # The healthy ones carry the load, but a node that cannot dispatch (another
        # installation's broker, a wrong broker URL) or whose loop fails is still a fault.
        reasons = "; ".join(f"{n.id}: {n.unhealthy_reason}" for n in unhealthy)
        return problem(
            "scheduler",
            f"{len(healthy)} healthy node(s) ({', '.join(n.id for n in healthy)}), "
            f"{len(unhealthy)} unhealthy ({reasons})",
            "see the log of the unhealthy scheduler; `fss node list` shows why",
        )
    if live:
        reasons = "; ".join(f"{n.id}: {n.unhealthy_reason}" for n in live)
        return problem(
            "scheduler",
            f"no healthy scheduler node ({reasons})",
            "see the log of that scheduler; `fss node list` shows which loop is stuck or "
            "failing (often the database or broker it cannot reach)",
        )
    return problem(
        "scheduler",
        f"no live scheduler node{last_seen(nodes, now)}",
        "start one: `fss scheduler` with the same FSS_DATABASE_URL and FSS_BROKER_URL "
        "(run two or more for high availability)",
    )


def last_seen(nodes: Sequence[NodeRow], now: datetime) -> str:
    if not nodes:
        return " (none has ever run against this database)"
    latest = max(nodes, key=lambda n: n.heartbeat_at)
    return f" (last heartbeat: {latest.id}, {latest.heartbeat_age_s(now):.0f} s ago)"


def check_clients(conn: Connection, now: datetime, settings: Settings) -> list[Finding]:
    jobs = jobs_of_enabled_groups(conn)
    if not jobs:
        return [ok("clients", "no enabled groups")]
    alive_since = now - timedelta(seconds=settings.client_timeout_s)
    clients = list_clients(conn)
    serving = [c for c in clients if c.dispatchable and c.heartbeat_at >= alive_since]
    served = {name for c in serving for name in c.job_names}
    findings = [
        unserved_job(job_name, group_ids, clients, alive_since, now)
        for job_name, group_ids in jobs.items()
        if job_name not in served
    ]
    summary = f"{len(jobs)} job(s) of enabled groups served by {len(serving)} live client(s)"
    return findings or [ok("clients", summary)]


def unserved_job(
    job_name: str,
    group_ids: list[int],
    clients: Sequence[ClientRow],
    alive_since: datetime,
    now: datetime,
) -> Finding:
    listed = [c for c in clients if job_name in c.job_names]
    why = "; ".join(client_state(c, alive_since, now) for c in listed)
    return problem(
        "clients",
        f"no live client serves job {job_name!r} ({group_list(group_ids)})"
        + (f": {why}" if why else ""),
        f"start a worker with @job({job_name!r}): `fss worker -A <module>` (or a bridge client "
        "registering it) with the same FSS_BROKER_URL as the schedulers; or disable the "
        "groups with `fss group disable ID`",
    )


def client_state(client: ClientRow, alive_since: datetime, now: datetime) -> str:
    if client.heartbeat_at < alive_since:
        age = (now - client.heartbeat_at).total_seconds()
        return f"{client.id} silent for {age:.0f} s"
    if client.kicked_at is not None:
        return f"{client.id} kicked for hanging"
    return f"{client.id} draining (stopping)"


def group_list(group_ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in group_ids[:MAX_IDS_SHOWN])
    more = len(group_ids) - MAX_IDS_SHOWN
    noun = "group" if len(group_ids) == 1 else "groups"
    return f"{noun} {shown}" + (f" and {more} more" if more > 0 else "")


# -- alerts -------------------------------------------------------------------------------------


ALERT_TARGET_ADVICE = (
    "`fss alert list` and `fss alert show ID` show each attempt with the receiver's answer; "
    "`fss alert target test NAME` sends a test message: fix the target's URL or credentials "
    "(`fss alert target add` again), or the receiver"
)


def check_alerts(conn: Connection, now: datetime) -> list[Finding]:
    """How many alerts are open (information), and a warning per alert target that keeps
    failing (its last attempts failed, or it gave a delivery up, within 15 minutes)."""
    opened = open_alert_count(conn)
    findings = [ok("alerts", f"{opened} open alert{'' if opened == 1 else 's'}"
                   + (" (`fss alert list`)" if opened else ""))]
    findings.extend(
        warning("alert_target", trouble.describe(), ALERT_TARGET_ADVICE)
        for trouble in failing_targets(conn, now)
    )
    return findings


def check_installation(engine: Engine, settings: Settings, live_nodes: bool) -> Finding:
    """This database's installation id, and whether each Redis the schedulers use (the
    broker's, and the fence's when FSS_FENCE_URL names another) carries its mark."""
    installation = installation_id(engine)
    urls = [
        url
        for url in dict.fromkeys((settings.broker_url, settings.effective_fence_url))
        if url.startswith(("redis://", "rediss://"))
    ]
    if not urls:
        return ok("installation", f"{installation} (no Redis: the broker's mark is not kept)")
    seen = []
    for url in urls:
        found = mark_on(url, installation, live_nodes)
        if not found.ok:
            return found
        seen.append(found.detail)
    return ok("installation", f"{installation}: " + "; ".join(seen))


def mark_on(url: str, installation: str, live_nodes: bool) -> Finding:
    mark = BrokerMark(url)
    try:
        found = mark.read()
    except Exception as exc:
        return problem(
            "installation",
            f"{installation}: cannot read the mark on {hide_password(url)} ({first_line(exc)})",
            "start Redis, or fix FSS_BROKER_URL / FSS_FENCE_URL",
        )
    finally:
        mark.close()
    if found == installation:
        return ok("installation", f"the owner of {hide_password(url)}")
    if found is not None:
        return problem(
            "installation",
            f"{hide_password(url)} is in use by installation {found}, this database is "
            f"installation {installation}",
            "give each installation its own Redis database (redis://HOST:6379/N); its "
            "schedulers refuse to dispatch until then",
        )
    if live_nodes:
        return problem(
            "installation",
            f"{installation}: its schedulers run, but {hide_password(url)} carries no mark "
            "of theirs: they use another broker (or Redis database) than this command",
            "give every scheduler, worker, bridge and this command the same FSS_BROKER_URL "
            "and FSS_FENCE_URL",
        )
    return ok("installation", f"no scheduler has marked {hide_password(url)} yet")


def health_findings(cli: CliContext, broker_timeout_s: float) -> list[Finding]:
    findings = [check_broker(cli.settings.broker_url, broker_timeout_s)]
    engine, reachable = open_database(cli)
    findings.append(reachable)
    if engine is None:
        return findings
    schema = check_schema(engine)
    findings.append(schema)
    if schema.ok:
        now = cli.clock.now()
        with engine.connect() as conn:
            findings.append(check_nodes(conn, now, cli.settings))
            findings.extend(check_clients(conn, now, cli.settings))
            live_nodes = bool(live_node_ids(conn, now, cli.settings))
        broker_down = not findings[0].ok and cli.settings.effective_fence_url == (
            cli.settings.broker_url
        )
        if not broker_down:  # said once already
            findings.append(check_installation(engine, cli.settings, live_nodes))
        with engine.connect() as conn:
            findings.extend(check_alerts(conn, now))
    return findings


# -- doctor only: database version, clocks, fencing ----------------------------------------------


VERSION_NUMBER = re.compile(r"(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int] | None:
    # MariaDB may prefix its version with "5.5.5-" for old MySQL clients.
    match = VERSION_NUMBER.search(text.removeprefix("5.5.5-"))
    return (int(match.group(1)), int(match.group(2))) if match else None


def server_kind(dialect: str, version_text: str) -> str:
    if dialect == "mysql" and "mariadb" in version_text.lower():
        return "mariadb"
    return dialect


def version_problem(kind: str, version_text: str) -> str | None:
    """Why this database server is too old for fss, or None."""
    minimum = MIN_VERSIONS.get(kind)
    version = parse_version(version_text)
    if minimum is None or version is None or version >= minimum:
        return None
    name = SERVER_NAMES[kind]
    return f"{name} {version_text} is older than {name} {minimum[0]}.{minimum[1]}"


def server_version(conn: Connection) -> str:
    dialect = conn.dialect.name
    query = {
        "postgresql": "SHOW server_version",
        "mysql": "SELECT VERSION()",
        "sqlite": "SELECT sqlite_version()",
    }.get(dialect)
    return str(conn.execute(sa.text(query)).scalar()) if query else "unknown"


def check_database_version(conn: Connection) -> Finding:
    text = server_version(conn)
    kind = server_kind(conn.dialect.name, text)
    reason = version_problem(kind, text)
    name = SERVER_NAMES.get(kind, kind)
    if reason is None:
        return ok("database_version", f"{name} {text}")
    return problem(
        "database_version",
        f"{reason}: it has no FOR UPDATE SKIP LOCKED, so schedulers cannot share due tasks",
        "upgrade the database server: fss needs PostgreSQL 9.5+, MySQL 8.0+, MariaDB 10.6+ "
        "or SQLite 3.25+",
    )


CLOCK_ADVICE = (
    "keep every machine's clock in sync with NTP (chrony, systemd-timesyncd): leases (5 s) "
    "and liveness (10 s) compare times written by different machines"
)


def database_now(conn: Connection) -> datetime | None:
    """The database server's clock in UTC; None for SQLite (a file on this machine)."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar()
    elif conn.dialect.name == "mysql":
        value = conn.execute(sa.text("SELECT UTC_TIMESTAMP(6)")).scalar()
    else:
        return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def check_database_clock(conn: Connection, local_now: Callable[[], datetime]) -> Finding:
    before = local_now()
    db_now = database_now(conn)
    after = local_now()
    if db_now is None:
        return ok("clock", "SQLite keeps no clock of its own: this machine's is used")
    round_trip_s = (after - before).total_seconds()
    skew_s = (db_now - (before + (after - before) / 2)).total_seconds()
    if abs(skew_s) <= CLOCK_TOLERANCE_S + round_trip_s / 2:
        return ok("clock", f"database and this machine agree ({skew_s:+.3f} s)")
    direction = "ahead of" if skew_s > 0 else "behind"
    return problem(
        "clock", f"the database's clock is {abs(skew_s):.1f} s {direction} this machine's",
        CLOCK_ADVICE,
    )


def check_node_clocks(
    conn: Connection, reference: datetime, settings: Settings
) -> list[Finding]:
    """Live nodes write their heartbeat every heartbeat_s on their own clock: one far in the
    future comes from a clock that is ahead; an old one on a node still marked alive, from a
    killed node or a clock that is behind."""
    findings = []
    for node in list_nodes(conn, SUPERVISOR_LEASE, reference):
        if not node.is_alive:
            continue
        ahead_s = (node.heartbeat_at - reference).total_seconds()
        if ahead_s > CLOCK_TOLERANCE_S:
            findings.append(
                problem(
                    "clock",
                    f"scheduler node {node.id} wrote a heartbeat {ahead_s:.1f} s in the future: "
                    "its clock is ahead of the database's",
                    CLOCK_ADVICE,
                )
            )
        elif -ahead_s > settings.client_timeout_s:
            findings.append(
                problem(
                    "clock",
                    f"scheduler node {node.id} is marked alive but its last heartbeat is "
                    f"{-ahead_s:.0f} s old: it was killed, or its clock is that far behind",
                    "if it runs, " + CLOCK_ADVICE + "; if it was killed, a running scheduler "
                    "marks it dead",
                )
            )
    return findings


def check_fencing(settings: Settings) -> Finding:
    if settings.effective_fence_url != "none":
        return ok("fencing", f"on ({hide_password(settings.effective_fence_url)})")
    return problem(
        "fencing",
        f"off: the broker {hide_password(settings.broker_url)} is not Redis and FSS_FENCE_URL "
        "is not set, so an order sent again (after a timeout or a restart) can run twice",
        "set FSS_FENCE_URL=redis://HOST:6379/N on every scheduler, worker and bridge",
    )


def doctor_findings(cli: CliContext, broker_timeout_s: float) -> list[Finding]:
    findings = health_findings(cli, broker_timeout_s)
    reachable = next(f for f in findings if f.check == "database").ok
    if reachable:
        with cli.engine.connect() as conn:
            findings.append(check_database_version(conn))
            findings.append(check_database_clock(conn, cli.clock.now))
            if next(f for f in findings if f.check == "schema").ok:
                reference = database_now(conn) or cli.clock.now()
                findings.extend(check_node_clocks(conn, reference, cli.settings))
    findings.append(check_fencing(cli.settings))
    return findings


# -- the commands ---------------------------------------------------------------------------------


def broker_timeout_option(function: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--timeout-s",
        "broker_timeout_s",
        type=click.FloatRange(0.1, 60),
        default=DEFAULT_BROKER_TIMEOUT_S,
        show_default=True,
        help="How long to wait for the broker to answer.",
    )(function)


@click.command("health", short_help="Can groups run? Exit 0 if so, 1 naming each problem.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@broker_timeout_option
@pass_cli
def health_command(cli: CliContext, as_json: bool, broker_timeout_s: float) -> None:
    """Exit 0 when groups can run: database reachable and migrated, broker reachable, a live
    healthy scheduler node, a live client for the job of every enabled group. Otherwise exit 1
    with one line per problem (`fss doctor` says what to do). Also the open alerts, and a WARN
    line per alert target that keeps failing (no change to the exit code)."""
    findings = health_findings(cli, broker_timeout_s)
    healthy = not any(f.fails for f in findings)
    if as_json:
        emit_json(
            {
                "healthy": healthy,
                "checks": [
                    {"check": f.check, "ok": f.ok, "level": f.level, "detail": f.detail}
                    for f in findings
                ],
            }
        )
    else:
        for finding in findings:
            click.echo(f"{LABELS[finding.level]}  {finding.check}: {finding.detail}")
    if not healthy:
        raise SystemExit(1)


@click.command("doctor", short_help="Find common misconfigurations and say what to do.")
@broker_timeout_option
@pass_cli
def doctor_command(cli: CliContext, broker_timeout_s: float) -> None:
    """Look for the usual misconfigurations and say what to do about each: broker or database
    unreachable, schema not migrated, no scheduler, no worker for an enabled group's job,
    clocks apart, a database too old for SKIP LOCKED, fencing off. Exit 1 if any is found."""
    findings = doctor_findings(cli, broker_timeout_s)
    for finding in findings:
        if finding.ok:
            click.echo(f"ok       {finding.check}: {finding.detail}")
        else:
            click.echo(f"{'WARNING' if finding.warning else 'PROBLEM':<8} {finding.check}: "
                       f"{finding.detail}")
            click.echo(f"         what to do: {finding.advice}")
    problems = sum(f.fails for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    noted = f" ({warnings} warning(s))" if warnings else ""
    if problems:
        click.echo(f"{problems} problem(s) found{noted}.")
        raise SystemExit(1)
    click.echo(f"no problems found{noted}.")
