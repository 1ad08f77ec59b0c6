"""Shared helpers of the benchmarks: throw-away databases, processes, /proc sampling, tables.

This module is also what the benchmark's worker processes load:

* `fss worker -A bench.common` finds the no-op job `bench-noop` below;
* `celery -A bench.common:plain_app worker|beat` finds the plain Celery tasks `bench.noop`
  and `bench.stamp`, configured exactly like fss's own Celery app (fss.celery_app), and, when
  BENCH_BEAT_SPEC names a JSON file, a beat schedule with `StampingScheduler`.

Every run gets its own PostgreSQL database `fss_bench_<hex>` (dropped afterwards) and an empty
Redis db 1..15 reserved with the tests' protocol (key `fss:test:dbs:<n>` in db 0, SET NX with
an expiry), flushed and released afterwards. Processes are started in their own session and
stopped by their pid / process group only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery
from celery.beat import PersistentScheduler
from celery.utils.log import get_task_logger
from sqlalchemy.pool import NullPool

from fss.celery_app import create_app
from fss.config import Settings
from fss.worker_sdk import JobContext, job

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = (
    os.environ.get("FSS_BENCH_POSTGRES_URL")
    or os.environ.get("FSS_TEST_POSTGRES_URL")
    or "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = (
    os.environ.get("FSS_BENCH_REDIS_URL")
    or os.environ.get("FSS_TEST_REDIS_URL")
    or "redis://127.0.0.1:6379/0"
)
DB_PREFIX = "fss_bench_"
REDIS_RESERVATION_PREFIX = "fss:test:dbs:"  # shared with tests/servers.py: no collisions
REDIS_RESERVATION_TTL_S = 3600
PLAIN_QUEUE = "bench.plain"
STAMPS_KEY = "bench:stamps"
NOOP_JOB = "bench-noop"
AGAIN_JOB = "bench-again"
BUSY_JOB = "bench-busy"
BUSY_ENV = "BENCH_BUSY_S"  # seconds bench-busy / bench.stamp spend after they started
# BENCH_JOB_LOG=1: bench-noop and bench-again also log one line and set progress, so a run
# carries the events a real job sends (run log, progress) through the worker and the recorder.
JOB_LOG_ENV = "BENCH_JOB_LOG"
# BENCH_JOB=realistic (issue 20's workload): every run does the same work in fss and in plain
# Celery, pushes one small record to Redis (RPUSH bench:records) and logs one line (fss:
# ctx.log, Celery: its task logger); the fss job also sets progress twice, as real jobs do.
JOB_ENV = "BENCH_JOB"
RECORDS_KEY = "bench:records"
# BENCH_CELERY=defaults: plain Celery at its own defaults (prefetch multiplier 4, ...) instead
# of fss's Celery configuration (prefetch 1, acks early), the baseline users compare with.
CELERY_ENV = "BENCH_CELERY"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# What the worker / beat processes run
# --------------------------------------------------------------------------------------------


_records_client: redis.Redis | None = None


def _push_record(broker_url: str, record: str) -> None:
    global _records_client
    if _records_client is None:
        _records_client = redis.Redis.from_url(broker_url)
    _records_client.rpush(RECORDS_KEY, record)


def realistic() -> bool:
    return os.environ.get(JOB_ENV) == "realistic"


def _log_and_progress(ctx: JobContext) -> None:
    # Read per run, not at import: the worker's environment decides (Bench.env passes ours on).
    if realistic():
        _push_record(os.environ.get("FSS_BROKER_URL", REDIS_BASE_URL), str(ctx.task_id))
        ctx.set_progress(30)
        ctx.log.info("bench run of task %s", ctx.task_id)
        ctx.set_progress(70)
        return
    if os.environ.get(JOB_LOG_ENV) == "1":
        ctx.log.info("bench run of task %s", ctx.task_id)
        ctx.set_progress(50)


@job(NOOP_JOB)
def bench_noop(ctx: JobContext) -> None:
    """The fss job of every benchmark: does nothing (returns None = Success); with
    BENCH_JOB_LOG=1 it logs one line and sets progress 50."""
    _log_and_progress(ctx)


@job(AGAIN_JOB)
def bench_again(ctx: JobContext) -> None:
    """Asks to run again at once: its group's rate is 1 / cycle (BENCH_JOB_LOG=1: logs one
    line and sets progress first, as bench-noop)."""
    _log_and_progress(ctx)
    ctx.set_next_at(timedelta(0))


@job(BUSY_JOB)
def bench_busy(ctx: JobContext) -> None:
    """Sleeps BENCH_BUSY_S seconds (default 0.1): a run a killed worker can be caught in
    (BENCH_JOB=realistic or BENCH_JOB_LOG=1: first pushes, logs and sets progress as
    bench-noop does)."""
    _log_and_progress(ctx)
    time.sleep(float(os.environ.get(BUSY_ENV, "0.1")))


def _plain_app() -> Any:
    if os.environ.get(CELERY_ENV) == "defaults":
        # Celery as users run it: nothing set but the broker and the queue.
        app = Celery("bench-plain", broker=Settings.from_env().broker_url)
    else:
        # The same Celery configuration fss uses for its own app (serializer, prefetch 1, no
        # results, acks early), so that only fss's own work differs.
        app = create_app(Settings.from_env(), main="bench-plain")
        # ... but kombu's own Redis transport: fss.redis_transport is fss's work, not Celery's.
        app.conf.broker_transport = None
    app.conf.task_default_queue = PLAIN_QUEUE
    spec_file = os.environ.get("BENCH_BEAT_SPEC")
    if spec_file:
        app.conf.beat_schedule = beat_schedule(json.loads(Path(spec_file).read_text()))
    return app


def beat_schedule(spec: dict[str, Any]) -> dict[str, Any]:
    """N entries of `bench.stamp` every `interval_s`; entry i is first due at first_at[i].

    beat computes "due" as last_run_at + interval, so each entry starts with
    last_run_at = first due - interval. `origin` lets StampingScheduler compute the
    fixed-rate grid time of each run (origin + k * interval).
    """
    interval = timedelta(seconds=spec["interval_s"])
    entries = {}
    for i, first in enumerate(spec["first_at"]):
        first_at = datetime.fromtimestamp(first, timezone.utc)
        entries[f"entry-{i}"] = {
            "task": "bench.stamp",
            "schedule": interval,
            "last_run_at": first_at - interval,
            "kwargs": {"origin": first},
            "options": {"queue": PLAIN_QUEUE},
        }
    return entries


plain_app = _plain_app()
_stamp_client: redis.Redis | None = None


_plain_log = get_task_logger("bench.plain")


@plain_app.task(name="bench.noop", ignore_result=True, bind=True)
def noop(self: Any, **_: Any) -> None:
    """Plain Celery no-op; with BENCH_JOB=realistic the work of the fss job: one record
    pushed to Redis, one line through Celery's task logger."""
    if realistic():
        _push_record(plain_app.conf.broker_url, str(self.request.id))
        _plain_log.info("bench run of task %s", self.request.id)


@plain_app.task(name="bench.stamp", ignore_result=True)
def stamp(planned: float, grid: float | None = None, **_: Any) -> None:
    """Records `planned grid started` (epoch seconds) in the Redis list bench:stamps."""
    started = time.time()
    global _stamp_client
    if _stamp_client is None:
        _stamp_client = redis.Redis.from_url(plain_app.conf.broker_url)
    _stamp_client.rpush(STAMPS_KEY, f"{planned!r} {grid!r} {started!r}")
    busy = float(os.environ.get(BUSY_ENV, "0"))
    if busy:
        time.sleep(busy)


class StampingScheduler(PersistentScheduler):  # type: ignore[misc]
    """celery beat's default scheduler; it only adds to each message the time the run was due.

    When beat sends an entry, the entry still carries the previous run's last_run_at, so
    beat's own due time is last_run_at + interval (beat re-anchors on the time it actually
    sent the previous run, so lateness accumulates as drift). We also pass the fixed-rate
    grid time origin + k * interval (k = runs so far), which is what fss schedules on.
    """

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        if advance:
            entry = self.reserve(entry)
        run_every = entry.schedule.run_every
        origin = entry.kwargs.get("origin")
        due = entry.last_run_at + run_every
        grid = (
            origin + entry.total_run_count * run_every.total_seconds()
            if origin is not None else None
        )
        # A copy: beat compares the entries it holds with their previous versions on every
        # tick (schedules_equal) and rebuilds its whole heap when one differs, so the held
        # entry must not change.
        sent = object.__new__(type(entry))
        sent.__dict__.update(entry.__dict__)
        sent.kwargs = {"planned": due.timestamp(), "grid": grid}
        return super().apply_async(sent, producer=producer, advance=False, **kwargs)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(values_s: Sequence[float]) -> list[str]:
    """p50 p95 p99 max of seconds, as milliseconds."""
    if not values_s:
        return ["-"] * 4
    return [
        fmt_ms(percentile(values_s, 50)),
        fmt_ms(percentile(values_s, 95)),
        fmt_ms(percentile(values_s, 99)),
        fmt_ms(max(values_s)),
    ]


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f}" if abs(ms) < 100 else f"{ms:.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    indent = len(cells[0][0]) - len(cells[0][0].lstrip())
    rule = " " * indent + "  ".join(["-" * (widths[0] - indent), *("-" * w for w in widths[1:])])
    out = [line(cells[0]), rule]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def versions() -> dict[str, str]:
    import celery
    import kombu

    import fss

    found = {
        "python": platform.python_version(),
        "fss": getattr(fss, "__version__", "?"),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "SQLAlchemy": sa.__version__,
        "redis-py": redis.__version__,
    }
    with contextlib.suppress(Exception):
        engine = sa.create_engine(PG_ADMIN_URL, poolclass=NullPool)
        with engine.connect() as conn:
            found["PostgreSQL"] = str(conn.exec_driver_sql("SHOW server_version").scalar())
        engine.dispose()
    with contextlib.suppress(Exception), redis.Redis.from_url(REDIS_BASE_URL) as client:
        found["Redis"] = str(client.info("server")["redis_version"])
    return found


def round_trips(samples: int = 300) -> str:
    """Round trip of PostgreSQL `SELECT 1` and Redis PING from an idle client, p50/p99 in ms.

    fss's scheduler makes several round trips per run; on a busy machine each one waits for
    the other process to be scheduled, so this says how busy the machine was.
    """
    found = []
    engine = sa.create_engine(PG_ADMIN_URL, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                cursor.execute("SELECT 1")
                cursor.fetchall()
                times.append(time.perf_counter() - t0)
            found.append(f"PostgreSQL SELECT 1 {_ms2(times)}")
    finally:
        engine.dispose()
    with redis.Redis.from_url(REDIS_BASE_URL) as client:
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - t0)
        found.append(f"Redis PING {_ms2(times)}")
    return ", ".join(found) + " ms (p50/p99)"


def source_state() -> str:
    """The commit fss was measured at, and whether fss/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "fss"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"commit {head or '?'}" + (" + uncommitted changes in fss/" if dirty else "")


def _ms2(times: Sequence[float]) -> str:
    return f"{percentile(times, 50) * 1000:.2f}/{percentile(times, 99) * 1000:.2f}"


def print_header(title: str, argv: Sequence[str]) -> None:
    print(f"== {title}")
    print(f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}")
    print(f"machine: nproc={os.cpu_count()}, load average at start {load()}")
    print(f"round trips at start: {round_trips()}")
    print(f"fss source: {source_state()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    print("command: python3 -m " + " ".join(argv))
    print(flush=True)


# --------------------------------------------------------------------------------------------
# /proc sampling
# --------------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def parent_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            ppid = parent_of(int(entry.name))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def status_kb(pid: int, key: str) -> int | None:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class CpuMeter:
    """CPU% (100 = one core) of a fixed set of pids between start() and stop()."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._start: dict[int, int] = {}
        self._t0 = 0.0
        self.percent = float("nan")

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._start = {p: t for p in self.pids if (t := cpu_ticks(p)) is not None}
        return self

    def stop(self) -> float:
        wall = time.monotonic() - self._t0
        used = 0
        for pid, before in self._start.items():
            after = cpu_ticks(pid)
            if after is not None:
                used += after - before
        self.percent = 100 * used / CLK_TCK / wall if wall > 0 else float("nan")
        return self.percent


class RssSampler:
    """Samples VmRSS of one pid every `every_s` in a thread; keeps the max and the last."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid = pid
        self.every_s = every_s
        self.max_kb = 0
        self.last_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.last_kb = kb
                self.max_kb = max(self.max_kb, kb)
            self._stop.wait(self.every_s)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Throw-away PostgreSQL database and Redis db
# --------------------------------------------------------------------------------------------


def _admin_engine() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def create_database() -> str:
    name = f"{DB_PREFIX}{secrets.token_hex(4)}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = sa.make_url(url).database
    assert name and name.startswith(DB_PREFIX), name
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def backend_pids(database_url: str) -> list[int]:
    """PostgreSQL server processes connected to this database (their CPU is fss's too)."""
    name = sa.make_url(database_url).database
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": name}
            )
            return [int(r.pid) for r in rows]
    finally:
        engine.dispose()


def sql_counters(database_url: str) -> tuple[int, int]:
    """(task rows updated, transactions committed) so far in this database (pg_stat_*).

    PostgreSQL publishes a backend's counters at most once a second: take differences over
    windows of many seconds.
    """
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            updated = conn.exec_driver_sql(
                "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'task'"
            ).scalar()
            commits = conn.exec_driver_sql(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).scalar()
        return int(updated or 0), int(commits or 0)
    finally:
        engine.dispose()


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def _redis_url(db: int) -> str:
    base = REDIS_BASE_URL.split("?", 1)[0]
    scheme, rest = base.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{db}"


@contextlib.contextmanager
def redis_db() -> Iterator[str]:
    """An empty Redis db 1..15 reserved for the block, flushed and released after it."""
    control = redis.Redis.from_url(REDIS_BASE_URL)
    token = f"bench:{os.getpid()}:{uuid.uuid4().hex}"
    chosen: tuple[int, str] | None = None
    try:
        for db in range(1, 16):
            key = f"{REDIS_RESERVATION_PREFIX}{db}"
            if not control.set(key, token, nx=True, ex=REDIS_RESERVATION_TTL_S):
                continue
            with redis.Redis.from_url(_redis_url(db)) as client:
                empty = client.dbsize() == 0
            if empty:
                chosen = (db, key)
                break
            control.eval(_RELEASE, 1, key, token)
        if chosen is None:
            raise RuntimeError("no empty, unreserved Redis db among 1..15")
        url = _redis_url(chosen[0])
        try:
            yield url
        finally:
            if control.get(chosen[1]) == token.encode():
                with redis.Redis.from_url(url) as client:
                    client.flushdb()
                control.eval(_RELEASE, 1, chosen[1], token)
    finally:
        control.close()


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """One run's database, Redis db, work directory and processes."""

    database_url: str
    broker_url: str
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FSS_DATABASE_URL=self.database_url,
            FSS_BROKER_URL=self.broker_url,
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        )
        env.update(extra or {})
        return env

    def run(self, *argv: str) -> None:
        subprocess.run(
            argv, cwd=self.workdir, env=self.env(), check=True, capture_output=True, timeout=120
        )

    def start(self, name: str, *argv: str, extra_env: dict[str, str] | None = None) -> int:
        with open(self.workdir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=self.workdir, env=self.env(extra_env), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.procs[name] = proc
        return proc.pid

    def stop(self, name: str, timeout_s: float = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
        # Our own session: the process and whatever it forked (prefork children).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def kill(self, name: str) -> None:
        """kill -9 the process and whatever it forked (its own session), and reap it."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    # fss processes

    def fss(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fss", *args]

    def fss_upgrade(self) -> None:
        self.run(*self.fss("db", "upgrade"))

    def fss_scheduler(self, name: str = "bench-scheduler") -> int:
        return self.start(name, *self.fss("scheduler", "--name", name))

    def fss_worker(self, name: str, concurrency: int, pool: str) -> int:
        return self.start(
            name,
            *self.fss("worker", "-A", "bench.common", "--name", name, "-c", str(concurrency),
                      "-P", pool, "-l", "WARNING"),
        )

    def wait_clients(self, count: int, timeout_s: float = 60) -> None:
        engine = sa.create_engine(self.database_url, poolclass=NullPool)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                self.check_alive()
                with engine.connect() as conn:
                    n = conn.exec_driver_sql("SELECT count(*) FROM client").scalar() or 0
                if n >= count:
                    return
                time.sleep(0.2)
        finally:
            engine.dispose()
        raise TimeoutError(f"{count} fss client(s) did not register within {timeout_s}s")

    # plain Celery processes

    def celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "bench.common:plain_app", *args]

    def celery_worker(self, name: str, concurrency: int, pool: str) -> int:
        return self.start(
            name,
            *self.celery("worker", "-Q", PLAIN_QUEUE, "-n", f"{name}@%h", "-c", str(concurrency),
                         "-P", pool, "-l", "WARNING", "--without-gossip", "--without-mingle",
                         "--without-heartbeat"),
        )

    def celery_beat(self, spec: dict[str, Any], name: str = "beat") -> int:
        spec_file = self.workdir / f"{name}-spec.json"
        spec_file.write_text(json.dumps(spec))
        return self.start(
            name,
            *self.celery("beat", "-S", "bench.common:StampingScheduler",
                         "-s", str(self.workdir / "beat-schedule"), "--pidfile=", "-l", "WARNING"),
            extra_env={"BENCH_BEAT_SPEC": str(spec_file)},
        )

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker_url)

    def wait_plain_workers(self, timeout_s: float = 60) -> None:
        """A probe stamp through the plain queue; returns once a worker ran it."""
        app = sending_app(self.broker_url)
        client = self.redis()
        deadline = time.monotonic() + timeout_s
        try:
            app.send_task("bench.stamp", kwargs={"planned": -1.0}, queue=PLAIN_QUEUE)
            while time.monotonic() < deadline:
                self.check_alive()
                if client.llen(STAMPS_KEY):
                    client.delete(STAMPS_KEY)
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise TimeoutError(f"plain Celery worker not ready within {timeout_s}s")

    def stamps(self) -> list[tuple[float, float | None, float]]:
        """(planned, grid, started) of every bench.stamp run so far."""
        client = self.redis()
        try:
            raw = client.lrange(STAMPS_KEY, 0, -1)
        finally:
            client.close()
        out = []
        for item in raw:
            planned, grid, started = item.decode().split()
            out.append((float(planned), None if grid == "None" else float(grid), float(started)))
        return out


def sending_app(broker_url: str) -> Any:
    """A Celery app for the benchmark process itself to send plain tasks with."""
    app = create_app(Settings(broker_url=broker_url), main="bench-sender")
    app.conf.broker_transport = None  # plain Celery sends through kombu's own transport
    app.conf.task_default_queue = PLAIN_QUEUE
    return app


@contextlib.contextmanager
def bench(label: str, with_database: bool = True) -> Iterator[Bench]:
    """A fresh database (optional) + Redis db + work dir; everything stopped and removed after."""
    workdir = Path(tempfile.mkdtemp(prefix=f"fss-bench-{label}-"))
    database_url = create_database() if with_database else ""
    ok = False
    try:
        with redis_db() as broker_url:
            run = Bench(database_url, broker_url, workdir)
            try:
                yield run
                ok = True
            finally:
                run.stop_all()
    finally:
        if database_url:
            drop_database(database_url)
        if ok or not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"(logs kept in {workdir})", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# fss data
# --------------------------------------------------------------------------------------------

BULK_ABOVE = 1000


def add_groups(
    database_url: str, first_at: Sequence[datetime], interval_ms: int, bulk: bool | None = None,
    job_name: str = NOOP_JOB,
) -> None:
    """One enabled interval group per first_at (its first planned run), job bench-noop.

    Up to BULK_ABOVE groups (unless bulk=True) go through fss's own `add_group`; above that,
    the same rows (group, pending task, task_group.task_id) are written in three bulk
    statements, because 10,000 single transactions would take longer than the benchmark.
    """
    from fss.domain.group_spec import GroupSpec
    from fss.store.engine import create_engine
    from fss.store.groups import add_group

    engine = create_engine(database_url)
    now = datetime.now(timezone.utc)
    try:
        if not bulk and len(first_at) <= BULK_ABOVE:
            for i, at in enumerate(first_at):
                spec = GroupSpec(caption=f"bench {i}", job_name=job_name,
                                 interval_ms=interval_ms, start_at=at)
                add_group(engine, spec, now)
            return
        _bulk_groups(engine, first_at, interval_ms, now)
    finally:
        engine.dispose()


def _bulk_groups(
    engine: sa.Engine, first_at: Sequence[datetime], interval_ms: int, now: datetime
) -> None:
    from fss.domain.status import TaskStatus
    from fss.store.tables import task, task_group

    with engine.begin() as conn:
        ids = conn.execute(
            task_group.insert().returning(task_group.c.id, sort_by_parameter_order=True),
            [
                {
                    "caption": f"bench {i}", "job_name": NOOP_JOB, "data": "{}",
                    "start_at": at, "next_at": at, "activate_at": now, "is_enable": True,
                    "interval_ms": interval_ms, "created_at": now, "misfire": "run-once",
                }
                for i, at in enumerate(first_at)
            ],
        ).scalars().all()
        conn.execute(
            task.insert(),
            [
                {
                    "task_group_id": gid, "job_name": NOOP_JOB, "start_at": at,
                    "status": int(TaskStatus.NONE), "open_group_id": gid, "create_at": now,
                }
                for gid, at in zip(ids, first_at, strict=True)
            ],
        )
        conn.exec_driver_sql(
            "UPDATE task_group SET task_id = task.id FROM task "
            "WHERE task.open_group_id = task_group.id"
        )


def phases(count: int, first: datetime, interval_s: float, spread: bool) -> list[datetime]:
    """First planned run of each of `count` schedules: all at `first`, or spread evenly."""
    if not spread:
        return [first] * count
    return [first + timedelta(seconds=interval_s * i / count) for i in range(count)]


@dataclass
class TaskTimes:
    start_at: datetime
    dispatched_at: datetime | None
    run_at: datetime | None
    finish_at: datetime | None
    status: int
    reported_at: datetime | None  # when the recorder last wrote the task


def fss_tasks(database_url: str) -> list[TaskTimes]:
    from fss.store.engine import create_engine
    from fss.store.tables import task

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(task.c.start_at, task.c.dispatched_at, task.c.run_at,
                          task.c.finish_at, task.c.status, task.c.reported_at)
            )
            return [TaskTimes(*r) for r in rows]
    finally:
        engine.dispose()


def seconds(a: datetime | None, b: datetime | None) -> float | None:
    """a - b in seconds."""
    if a is None or b is None:
        return None
    return (a - b).total_seconds()


def sleep_until(moment: float) -> None:
    """Sleep until time.time() >= moment."""
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


# --------------------------------------------------------------------------------------------
# Profiling (optional: py-spy on PATH)
# --------------------------------------------------------------------------------------------


def start_profile(pid: int, duration_s: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy record (raw collapsed stacks, all threads, idle excluded) of `pid`."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("(py-spy not on PATH: no profile; pip install py-spy)", file=sys.stderr)
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(duration_s)), "--rate", "200",
         "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def profile_summary(path: Path, top: int = 25) -> str:
    """Sample shares per thread and per function (inclusive) from py-spy's raw output.

    py-spy leaves out threads it sees idle; time blocked on a socket (waiting for PostgreSQL
    or Redis to answer) mostly shows under the call that waits.
    """
    if not path.exists():
        return "(no profile written)"
    inclusive: dict[str, int] = {}
    by_thread: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        names = [_short(f) for f in frames]
        # The thread's target: the frame after threading's Thread.run, else the root.
        runs = [i for i, f in enumerate(frames) if f.startswith("Thread.run ")]
        thread = names[runs[0] + 1] if runs and runs[0] + 1 < len(names) else names[0]
        by_thread[thread] = by_thread.get(thread, 0) + count
        for name in set(names):
            if "threading.py" not in name:
                inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return "(empty profile)"
    lines = [f"{total} samples (non-idle), by thread:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}"
              for name, n in sorted(by_thread.items(), key=lambda kv: -kv[1])[:6]]
    lines.append("inclusive, by function:")
    lines += [f"  {100 * n / total:5.1f}%  {name}"
              for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (to/file.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"
