"""Migration 0012 (run_report trigger + back-fill) while runs keep ending: a writer thread
moves Working tasks to Success/Fail, one transaction each, before, during and after the
upgrade; afterwards the report counts equal a recount of the task table (every run end
counted once: by the back-fill or by the trigger, never both, never neither).

On MariaDB (DDL commits at once) also the upgrade killed on the way (SIGKILL while it
back-fills, the trigger already committed) and run again, with runs ending in between
counted by the orphan trigger: the second run recounts them, nothing twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fss.store.engine import create_engine
from fss.store.migrate import current_revision, upgrade
from fss.store.tables import run_report, task

BASE = datetime(2031, 3, 14, 0, 0)  # naive UTC, as the trigger and back-fill read it
GROUPS = 40
CLIENTS = 4
Key = tuple[str, str, datetime]


def _task_rows(first: int, count: int, status: int) -> list[dict[str, Any]]:
    """Tasks `first`.. in `status`: finished ones over 30 hours, Working ones unfinished."""
    rows = []
    for i in range(first, first + count):
        finished = status in (3, 4)
        rows.append({
            "id": i, "task_group_id": 1 + i % GROUPS, "job_name": f"job-{i % GROUPS}",
            "start_at": BASE, "status": status, "attempt": 1,
            "client_id": None if i % 10 == 0 else f"c{i % CLIENTS}",
            "finish_at": BASE + timedelta(seconds=13 * i % (30 * 3600)) if finished else None,
            "create_at": BASE,
        })
    return rows


def _fill(engine: Engine, finished: int, working: int) -> list[int]:
    """`finished` tasks already ended (Success, every 7th Fail) and `working` ones the
    writer will end; their ids."""
    with engine.begin() as conn:
        for start in range(1, finished + 1, 5000):
            count = min(5000, finished + 1 - start)
            rows = _task_rows(start, count, 4)
            for row in rows:
                row["status"] = 3 if row["id"] % 7 == 0 else 4
            conn.execute(task.insert(), rows)
        conn.execute(task.insert(), _task_rows(finished + 1, working, 2))
    return list(range(finished + 1, finished + 1 + working))


class Writer:
    """Ends the given Working tasks one transaction at a time, as the recorder does, and
    keeps when each commit returned."""

    def __init__(self, url: str, ids: list[int]) -> None:
        self.engine = create_engine(url)
        self.ids = ids
        self.ended: list[float] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for task_id in self.ids:
                if self.stop.is_set():
                    return
                with self.engine.begin() as conn:
                    conn.execute(
                        task.update()
                        .where(task.c.id == task_id, task.c.status == 2)
                        .values(status=3 if task_id % 5 == 0 else 4,
                                finish_at=BASE + timedelta(seconds=97 * task_id % (30 * 3600)),
                                progress=100)
                    )
                self.ended.append(time.monotonic())
        except BaseException as exc:  # reported by the test's assert
            self.errors.append(exc)

    def start(self, first: int) -> Writer:
        self.thread.start()
        self.wait_for(first)
        return self

    def wait_for(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.ended) < count and self.thread.is_alive():
            assert time.monotonic() < deadline, f"writer ended {len(self.ended)} of {count}"
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=120)
        self.engine.dispose()
        assert not self.thread.is_alive()
        assert self.errors == []

    def between(self, start: float, end: float) -> int:
        return sum(1 for at in self.ended if start <= at <= end)


def _hour(value: datetime) -> datetime:
    return value.replace(tzinfo=None, minute=0, second=0, microsecond=0)


def _recount(engine: Engine) -> dict[Key, tuple[int, int]]:
    """What the report must hold: every finished task in the table, per kind and hour."""
    found: Counter[tuple[Key, bool]] = Counter()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(task.c.status, task.c.task_group_id, task.c.client_id, task.c.finish_at)
            .where(task.c.status.in_([3, 4]))
        ).all()
    for status, group_id, client_id, finish_at in rows:
        hour = _hour(finish_at)
        ok = status == 4
        found[(("all", "", hour), ok)] += 1
        found[(("group", str(group_id), hour), ok)] += 1
        if client_id is not None:
            found[(("client", client_id, hour), ok)] += 1
    keys = {key for key, _ in found}
    return {key: (found[(key, True)], found[(key, False)]) for key in keys}


def _reported(engine: Engine) -> dict[Key, tuple[int, int]]:
    """The report's counts per kind, subject and hour, over every slot."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(run_report.c.kind, run_report.c.subject, run_report.c.hour_at,
                      sa.func.sum(run_report.c.success), sa.func.sum(run_report.c.fail))
            .group_by(run_report.c.kind, run_report.c.subject, run_report.c.hour_at)
        ).all()
    return {(kind, subject, _hour(hour)): (int(ok), int(failed))
            for kind, subject, hour, ok, failed in rows if ok or failed}


def _assert_counted_once(engine: Engine, ended: int) -> None:
    recount, reported = _recount(engine), _reported(engine)
    total = sum(ok + failed for (kind, _, _), (ok, failed) in recount.items() if kind == "all")
    assert total >= ended
    # Compared whole, with the first differences named when they differ.
    differences = {key: (reported.get(key), recount.get(key))
                   for key in recount.keys() | reported.keys()
                   if reported.get(key) != recount.get(key)}
    assert differences == {}, list(differences.items())[:5]


@pytest.fixture(params=["pg_database_url", "mysql_database_url"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def at_0011(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    upgrade(engine, "0011")
    yield engine
    engine.dispose()


def test_runs_ending_while_0012_runs_are_counted_once(url: str, at_0011: Engine) -> None:
    working = _fill(at_0011, finished=30_000, working=3_000)
    writer = Writer(url, working).start(first=100)
    started = time.monotonic()
    upgrade(at_0011)
    ended_at = time.monotonic()
    assert (current_revision(at_0011) or "") >= "0012"
    writer.wait_for(len(working))
    writer.finish()
    # Runs ended before, while and after the upgrade ran.
    assert writer.between(0, started) >= 100
    assert writer.between(started, ended_at) > 0, "no run ended while the upgrade ran"
    assert writer.between(ended_at, float("inf")) > 0
    _assert_counted_once(at_0011, len(working))


def _server_thread(engine: Engine, statement: str) -> int | None:
    """The MariaDB connection id running a statement starting with `statement` on this
    test's database, if any (other tests' migrations run the same statement elsewhere on the
    shared server: one of them was taken for this one and killed)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE INFO LIKE :like AND DB = DATABASE() AND ID <> CONNECTION_ID()"),
            {"like": statement + "%"},
        ).scalar()


def _has_trigger(engine: Engine) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT COUNT(*) FROM information_schema.TRIGGERS "
                    "WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME = 'fss_task_run_end'")
        ).scalar_one()
    return int(found) == 1


def test_0012_killed_while_back_filling_is_run_again_and_counts_once(
    mysql_database_url: str,
) -> None:
    url = mysql_database_url
    engine = create_engine(url)
    try:
        upgrade(engine, "0011")
        # Enough finished tasks that the back-fill takes a while (the window to kill in).
        working = _fill(engine, finished=150_000, working=3_000)
        writer = Writer(url, working).start(first=100)
        code = ("import sys; from fss.store.engine import create_engine; "
                "from fss.store.migrate import upgrade; upgrade(create_engine(sys.argv[1]))")
        migration = subprocess.Popen([sys.executable, "-c", code, url])
        deadline = time.monotonic() + 120
        thread_id = None
        while thread_id is None:
            assert migration.poll() is None, "the upgrade ended before its back-fill was seen"
            assert time.monotonic() < deadline
            thread_id = _server_thread(engine, "INSERT INTO run_report")
            time.sleep(0.002)
        os.kill(migration.pid, signal.SIGKILL)
        migration.wait()
        # The server would notice the dead client only after the statement; end it now
        # (it may be gone already: unknown thread, error 1094).
        with contextlib.suppress(sa.exc.OperationalError, sa.exc.InternalError), \
                engine.connect() as conn:
            conn.exec_driver_sql(f"KILL {int(thread_id)}")
        # Half done: the trigger is there (DDL committed), the counts and version are not.
        assert current_revision(engine) == "0011"
        assert _has_trigger(engine)
        # The orphan trigger counts runs meanwhile (some of them would be counted twice
        # by a back-fill adding to them).
        before = len(writer.ended)
        writer.wait_for(before + 200)
        with engine.connect() as conn:
            counted = conn.execute(sa.select(sa.func.sum(run_report.c.success))).scalar()
        assert counted and counted > 0
        started = time.monotonic()
        upgrade(engine)
        ended_at = time.monotonic()
        writer.wait_for(len(working))
        writer.finish()
        assert (current_revision(engine) or "") >= "0012"
        assert writer.between(started, ended_at) > 0, "no run ended while the upgrade ran"
        _assert_counted_once(engine, len(working))
    finally:
        engine.dispose()
