"""Chaos bench: N schedulers + M workers on PostgreSQL + Redis, kill -9 one every K seconds.

The scenario of tests/e2e/test_chaos.py, longer and configurable (issue "High
availability"). Every --kill-every-s it kills a random scheduler or worker (alternating;
SIGKILL to the whole process group) and restarts it under the same name --restart-after-s
later. At the end it stops everything gracefully and prints: runs, duplicate executions,
missing finished events, the longest gap per group (and the max), the bound, PASS/FAIL.
Exit status: 0 on PASS, 1 on FAIL, 2 when the scenario could not run.

    python3 bench/chaos.py --duration-s 60
    python3 bench/chaos.py --duration-s 300 --kill-every-s 20

By default it creates a throw-away PostgreSQL database fss_chaos_<hex> (dropped afterwards)
and reserves an empty Redis db 1..15 the way tests/servers.py does (key fss:test:dbs:<n> in
db 0, SET NX with an expiry; flushed and released afterwards). The work directory (process
logs <name>.log, executions.log) is removed on PASS and kept on FAIL unless --workdir/--keep.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
E2E = REPO / "tests" / "e2e"
sys.path[:0] = [str(REPO), str(E2E)]

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from chaos_analysis import (  # noqa: E402
    TASK_ROWS_SQL,
    analyse,
    format_report,
    gap_bound_s,
    parse_executions,
    task_record,
    unacked_by_routing_key,
)
from chaos_scenario import (  # noqa: E402
    add_tick_groups,
    executions_lines,
    sleep_to_grid_offset,
    stop_gracefully,
)
from fss_processes import FssProcesses, query  # noqa: E402

from fss.config import Settings  # noqa: E402
from fss.store.engine import normalize_url  # noqa: E402

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_BASE_URL = "redis://127.0.0.1:6379/0"
REDIS_RESERVATION_PREFIX = "fss:test:dbs:"  # the protocol of tests/servers.py
REDIS_RESERVATION_TTL_S = 3600
REDIS_DBS = range(1, 16)
JOBS_MODULE = "e2e_jobs"
KILL_OFFSET_S = 0.3  # after a whole second: the groups fire on whole seconds


def log(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S.%f}"[:-3] + f"  {message}", flush=True)


# --------------------------------------------------------------------------------------------
# throw-away database and Redis db
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    name = f"fss_chaos_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        log(f"created database {name}")
        try:
            yield url
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"dropped database {name}")
    finally:
        admin.dispose()


_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _redis_url_for_db(base_url: str, db: int) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


@dataclass
class RedisReservation:
    control: redis.Redis
    key: str
    token: str
    url: str

    def refresh(self) -> None:
        if self.control.get(self.key) == self.token.encode():
            self.control.expire(self.key, REDIS_RESERVATION_TTL_S)


@contextlib.contextmanager
def reserved_redis_db(base_url: str) -> Iterator[RedisReservation]:
    """An empty Redis db 1..15, reserved against concurrent test/bench runs, flushed after."""
    control = redis.Redis.from_url(base_url, socket_connect_timeout=5, socket_timeout=30)
    try:
        reservation = _reserve(control, base_url)
        log(f"reserved Redis {reservation.url}")
        try:
            yield reservation
        finally:
            if control.get(reservation.key) == reservation.token.encode():
                with redis.Redis.from_url(reservation.url) as client:
                    client.flushdb()
                control.eval(_RELEASE_LUA, 1, reservation.key, reservation.token)
                log(f"flushed and released Redis {reservation.url}")
    finally:
        control.close()


def _reserve(control: redis.Redis, base_url: str) -> RedisReservation:
    token = f"{os.getpid()}:{uuid.uuid4().hex}"
    control_db = int(urlsplit(base_url).path.strip("/") or 0)
    for db in REDIS_DBS:
        if db == control_db:
            continue
        key = f"{REDIS_RESERVATION_PREFIX}{db}"
        if not control.set(key, token, nx=True, ex=REDIS_RESERVATION_TTL_S):
            continue
        url = _redis_url_for_db(base_url, db)
        with redis.Redis.from_url(url) as client:
            empty = int(client.dbsize()) == 0
        if empty:
            return RedisReservation(control, key, token, url)
        control.eval(_RELEASE_LUA, 1, key, token)  # someone else's data: leave it alone
    raise RuntimeError(f"no empty, unreserved Redis db among 1..15 on {base_url}")


# --------------------------------------------------------------------------------------------
# the scenario
# --------------------------------------------------------------------------------------------


@dataclass
class Chaos:
    args: argparse.Namespace
    env: FssProcesses
    schedulers: list[str]
    workers: list[str]
    rng: random.Random
    kills: list[str] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    down: dict[str, float] = field(default_factory=dict)  # name -> restart at (monotonic)
    next_kill: float = float("inf")
    index: int = 0

    def start(self, name: str) -> None:
        if name in self.schedulers:
            self.env.scheduler(name)
        else:
            self.env.worker(name, JOBS_MODULE, "-c", str(self.args.concurrency))

    def kill(self, name: str) -> None:
        self.env.kill(name)
        self.down[name] = time.monotonic() + self.args.restart_after_s
        self.kills.append(f"{datetime.now(timezone.utc):%H:%M:%S.%f}"[:-3] + f" {name}")
        with redis.Redis.from_url(self.env.broker_url) as broker:
            unacked = unacked_by_routing_key(broker.hvals("unacked"))
        log(
            f"kill -9 {name} (process group); restart in {self.args.restart_after_s:g} s; "
            f"unacked broker messages right after: {unacked}"
        )

    def restart_due(self, force: bool = False) -> None:
        now = time.monotonic()
        for name, at in list(self.down.items()):
            if force or now >= at:
                del self.down[name]
                self.start(name)
                log(f"restarted {name} under the same name")

    def check_alive(self) -> None:
        """A process that exited by itself is an incident: note it and start it again."""
        for name, process in list(self.env.running.items()):
            code = process.poll()
            if code is not None:
                self.env.running.pop(name)
                self.incidents.append(f"{name} exited by itself with code {code}")
                log(f"INCIDENT: {name} exited by itself with code {code}; starting it again")
                self.start(name)

    def victim(self, index: int) -> str:
        pool = self.schedulers if index % 2 == 0 else self.workers
        candidates = [n for n in pool if n in self.env.running] or pool
        return self.rng.choice(candidates)

    def run(self, until: float, every_minute: Callable[[], None]) -> None:
        if self.args.kill_every_s > 0:
            self.next_kill = time.monotonic() + self.args.kill_every_s
        minute = time.monotonic() + 60
        while time.monotonic() < until:
            self.restart_due()
            self.check_alive()
            if time.monotonic() >= self.next_kill:
                self.restart_due(force=True)  # never two down at once
                sleep_to_grid_offset(KILL_OFFSET_S)
                self.kill(self.victim(self.index))
                self.index += 1
                self.next_kill += self.args.kill_every_s
            if time.monotonic() >= minute:
                every_minute()
                minute += 60
            time.sleep(0.1)
        self.restart_due(force=True)



def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)



def kill_everything(env: FssProcesses) -> None:
    """Cleanup after an error or Ctrl-C: SIGTERM, then SIGKILL the process groups we started."""
    for process in env.running.values():
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in env.running.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    env.running.clear()


def run_scenario(args: argparse.Namespace, database_url: str, broker_url: str,
                 workdir: Path, reservation: RedisReservation | None) -> bool:
    shutil.copy(E2E / "e2e_jobs.py", workdir / "e2e_jobs.py")
    env = FssProcesses(workdir, database_url, broker_url)
    schedulers = [f"sched-{i + 1}" for i in range(args.schedulers)]
    workers = [f"w{i + 1}" for i in range(args.workers)]
    chaos = Chaos(args, env, schedulers, workers, random.Random(args.seed))
    try:
        env.cli("db", "upgrade")
        for name in schedulers + workers:
            chaos.start(name)
        wait_until(
            lambda: len(query(database_url, "SELECT id FROM client")) >= len(workers),
            60, "the workers to register",
        )
        group_ids = add_tick_groups(database_url, args.groups, args.interval_ms)
        log(f"{args.groups} groups at {args.interval_ms} ms; waiting for the first round")
        wait_until(lambda: len(executions_lines(workdir)) >= args.groups, 30, "the first runs")
        log(f"runs flowing; chaos for {args.duration_s:g} s, a kill every {args.kill_every_s:g} s")
        chaos.run(
            time.monotonic() + args.duration_s,
            every_minute=reservation.refresh if reservation is not None else lambda: None,
        )
        observed_until = datetime.now(timezone.utc)
        with redis.Redis.from_url(broker_url) as broker:
            unacked = unacked_by_routing_key(broker.hvals("unacked"))
        log("chaos over; stopping gracefully (workers, then schedulers)")
        stop_gracefully(
            env, workers, drain_s=10, wait_s=40,
            on_stuck=lambda name: log(f"{name} did not stop in 40 s; killing it"),
        )
    except BaseException:
        kill_everything(env)
        raise

    settings = Settings.from_env()
    bound = gap_bound_s(
        settings.lease_s, settings.client_timeout_s, args.interval_ms / 1000, args.extra_bound_s
    )
    tasks = [task_record(r._mapping) for r in query(database_url, TASK_ROWS_SQL)]
    executions = parse_executions(executions_lines(workdir))
    report = analyse(
        tasks, executions, observed_until=observed_until, bound_s=bound, group_ids=group_ids
    )
    report.notes.extend(
        [
            f"bound = lease {settings.lease_s:g} s + client timeout "
            f"{settings.client_timeout_s:g} s + interval {args.interval_ms / 1000:g} s"
            + (f" + extra {args.extra_bound_s:g} s" if args.extra_bound_s else ""),
            f"kills ({len(chaos.kills)}): " + ", ".join(chaos.kills),
            f"unacked broker messages at the end of the chaos phase: {unacked}",
            *(f"INCIDENT: {i}" for i in chaos.incidents),
            f"work directory (process logs, executions.log): {workdir}",
        ]
    )
    print()
    print(format_report(report, tasks))
    return report.passed and not chaos.incidents


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=300,
                        help="chaos phase, from the first runs to the graceful stop")
    parser.add_argument("--kill-every-s", type=float, default=20,
                        help="kill -9 a scheduler or worker (alternating) this often; 0: never")
    parser.add_argument("--restart-after-s", type=float, default=3,
                        help="restart a killed process under the same name this much later")
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="worker -c")
    parser.add_argument("--database-url",
                        help="an existing database (migrated, not dropped); default: a "
                             f"throw-away fss_chaos_<hex> on {PG_ADMIN_URL}")
    parser.add_argument("--broker-url",
                        help="an existing Redis db (not flushed); default: an empty db "
                             f"reserved on {REDIS_BASE_URL}, flushed after")
    parser.add_argument("--extra-bound-s", type=float, default=0.0,
                        help="widen the gap bound (the issue's bound has no extra term)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the victims")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir even on PASS")
    args = parser.parse_args(argv)
    if args.schedulers < 1 or args.workers < 1 or args.groups < 1 or args.interval_ms < 1:
        parser.error("--schedulers, --workers, --groups and --interval-ms must be >= 1")
    if args.kill_every_s and args.kill_every_s <= args.restart_after_s + 1:
        parser.error("--kill-every-s must exceed --restart-after-s + 1 (one down at a time)")
    return args


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    if args.seed is None:
        args.seed = secrets.randbelow(1_000_000)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fss-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(
        f"chaos: {args.schedulers} schedulers, {args.workers} workers (-c {args.concurrency}), "
        f"{args.groups} groups @ {args.interval_ms} ms, {args.duration_s:g} s, kill every "
        f"{args.kill_every_s:g} s, restart after {args.restart_after_s:g} s, seed {args.seed}; "
        f"workdir {workdir}"
    )
    passed = False
    try:
        with contextlib.ExitStack() as stack:
            database_url = args.database_url or stack.enter_context(
                throwaway_database(PG_ADMIN_URL)
            )
            reservation = None
            if args.broker_url:
                broker_url = args.broker_url
            else:
                reservation = stack.enter_context(reserved_redis_db(REDIS_BASE_URL))
                broker_url = reservation.url
            passed = run_scenario(args, database_url, broker_url, workdir, reservation)
    except KeyboardInterrupt:
        log("interrupted; processes stopped, database and Redis db cleaned up")
        return 130
    except Exception as exc:
        log(f"the scenario could not run: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if passed and args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
