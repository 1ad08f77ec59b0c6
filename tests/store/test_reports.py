"""Run reports (fss.store.reports): the trigger counts every run end once, whoever writes
it; days follow the zone asked for; departed clients stay visible for a while."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_helpers import (
    CLIENT,
    MINUTE,
    SECOND,
    T0,
    UTC,
    add_interval_group,
    dispatch,
    migrated_engine,
    pending,
)

from fss.errors import InvalidField
from fss.events import ClientHeartbeat, ClientLeft, TaskFinished, TaskStarted
from fss.naming import client_queue
from fss.store import recording, reports, supervision
from fss.store.migrate import upgrade
from fss.store.tables import client_departed, run_report, task

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2031-03-14 20:30 UTC is already the 15th in Shanghai (UTC+8).
EVENING = datetime(2031, 3, 14, 20, 30, tzinfo=UTC)
TODAY = datetime(2031, 3, 16, 12, 0, tzinfo=UTC)


def _run(engine: Engine, group_id: int, at: datetime, success: bool, client: str = CLIENT) -> int:
    """One run of the group dispatched to `client`, started and ended at `at`."""
    from fss.store.tasks import DispatchTarget

    task_id = pending(engine, group_id)["id"]
    target = DispatchTarget(client_id=client, host="h", ip="10.0.0.1")
    with engine.begin() as conn:
        conn.execute(task.update().where(task.c.id == task_id).values(start_at=at - SECOND))
    attempt = dispatch(engine, task_id, at - SECOND, target=target)
    with engine.begin() as conn:
        recording.record(
            conn,
            [TaskStarted(task_id, attempt, client, at),
             TaskFinished(task_id, attempt, client, success, 10, at)],
            at,
        )
    return int(task_id)


def _days(report: reports.RunReport) -> dict[str, tuple[int, int]]:
    body = report.to_json()
    return {d["day"]: (d["success"], d["fail"]) for d in body["days"] if d["total"]}


def test_run_ends_count_per_day_of_the_zone_asked_for(engine: Engine) -> None:
    group = add_interval_group(engine, T0 - MINUTE)
    other = add_interval_group(engine, T0 - MINUTE)
    _run(engine, group, datetime(2031, 3, 14, 10, 0, tzinfo=UTC), True)
    _run(engine, group, EVENING, False)
    _run(engine, other, EVENING + MINUTE, True, client="client-2")

    with engine.connect() as conn:
        utc = reports.run_counts(conn, reports.Window.ending_today(TODAY, 7, ZoneInfo("UTC")))
        east = reports.run_counts(conn, reports.Window.ending_today(TODAY, 7, SHANGHAI))
        mine = reports.run_counts(conn, reports.Window.ending_today(TODAY, 7, SHANGHAI), group)

    assert _days(utc) == {"2031-03-14": (2, 1)}
    assert _days(east) == {"2031-03-14": (1, 0), "2031-03-15": (1, 1)}
    assert _days(mine) == {"2031-03-14": (1, 0), "2031-03-15": (0, 1)}
    assert utc.to_json()["totals"] == {"success": 2, "fail": 1, "total": 3,
                                       "success_rate": 0.6667}
    assert len(utc.to_json()["days"]) == 7
    assert utc.to_json()["last_day"] == "2031-03-16"


def test_a_replayed_finish_counts_nothing_twice(engine: Engine) -> None:
    group = add_interval_group(engine, T0 - MINUTE)
    task_id = _run(engine, group, EVENING, True)
    attempt = 1
    with engine.begin() as conn:
        recording.record(conn, [TaskFinished(task_id, attempt, CLIENT, True, 10, EVENING)],
                         EVENING + SECOND)
    with engine.connect() as conn:
        report = reports.run_counts(conn, reports.Window.ending_today(TODAY, 7, SHANGHAI))
    assert report.totals == reports.Counts(1, 0)


def test_a_run_failed_by_the_supervisor_counts_as_failed(engine: Engine) -> None:
    group = add_interval_group(engine, T0 - MINUTE)
    task_id = pending(engine, group)["id"]
    dispatch(engine, task_id, T0)
    with engine.begin() as conn:
        [lost] = supervision.orphaned_tasks(conn, T0 + MINUTE)
        assert supervision.fail_task(conn, lost, "client gone", T0 + MINUTE)
    with engine.connect() as conn:
        report = reports.run_counts(conn, reports.Window.ending_today(T0, 1, ZoneInfo("UTC")))
        clients = reports.client_counts(
            conn, reports.Window.ending_today(T0, 1, ZoneInfo("UTC")), T0, T0
        )
    assert report.totals == reports.Counts(0, 1)
    assert clients.earlier == reports.Counts(0, 1)


def test_rebuild_counts_what_the_trigger_counted(engine: Engine) -> None:
    group = add_interval_group(engine, T0 - MINUTE)
    for i in range(3):
        _run(engine, group, EVENING + i * MINUTE, i != 1, client=f"c{i % 2}")
    before = _report_rows(engine)
    with engine.begin() as conn:
        reports.rebuild(conn)
    after = _report_rows(engine)
    assert _collapse(after) == _collapse(before)
    assert sum(r["success"] + r["fail"] for r in after if r["kind"] == "all") == 3


def _report_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(run_report))]


def _collapse(rows: list[dict[str, Any]]) -> dict[tuple[str, str, datetime], tuple[int, int]]:
    """Summed over slots: which connection counted a run does not matter."""
    out: dict[tuple[str, str, datetime], tuple[int, int]] = {}
    for r in rows:
        key = (r["kind"], r["subject"], r["hour_at"])
        s, f = out.get(key, (0, 0))
        out[key] = (s + r["success"], f + r["fail"])
    return out


def _beat(client_id: str) -> ClientHeartbeat:
    return ClientHeartbeat(client_id, "h", "127.0.0.1", 1, ("j",), client_queue(client_id), T0,
                           incarnation="A")


def test_departed_clients_are_offline_for_a_while_then_add_to_earlier(engine: Engine) -> None:
    group = add_interval_group(engine, T0 - MINUTE)
    with engine.begin() as conn:
        recording.record(conn, [_beat("stays"), _beat("leaves"), _beat("dies")], T0)
    _run(engine, group, T0 + SECOND, True, client="leaves")
    _run(engine, group, T0 + 2 * SECOND, False, client="leaves")
    with engine.begin() as conn:
        recording.record(conn, [ClientLeft("leaves", T0, incarnation="A")], T0 + 3 * SECOND)
        assert supervision.remove_client_if_silent(
            conn, "dies", T0 + 4 * SECOND, "no heartbeat for 10 s", T0 + 4 * SECOND
        )
        # a heartbeat since the sweep looked keeps the client, and writes no departure
        assert not supervision.remove_client_if_silent(conn, "stays", T0 - SECOND)
    with engine.connect() as conn:
        departed = {r.id: r.reason for r in conn.execute(sa.select(client_departed))}
    assert departed == {"leaves": "left", "dies": "no heartbeat for 10 s"}

    window = reports.Window.ending_today(T0, 1, ZoneInfo("UTC"))
    with engine.connect() as conn:
        soon = reports.client_counts(conn, window, T0, T0 - timedelta(hours=24))
        later = reports.client_counts(conn, window, T0, T0 + timedelta(hours=1))
    states = {c.id: (c.state, c.counts.success, c.counts.fail) for c in soon.clients}
    assert states == {"stays": ("online", 0, 0), "leaves": ("offline", 1, 1),
                      "dies": ("offline", 0, 0)}
    assert [c.id for c in later.clients] == ["stays"]
    assert (later.earlier, later.earlier_clients) == (reports.Counts(1, 1), 1)

    with engine.begin() as conn:  # back again: online, once
        recording.record(conn, [_beat("leaves")], T0 + MINUTE)
        again = reports.client_counts(conn, window, T0, T0 - timedelta(hours=24))
    assert [(c.id, c.state) for c in again.clients if c.id == "leaves"] == [("leaves", "online")]
    supervision.prune(engine, T0 + timedelta(hours=25), supervision.RetentionPolicy())
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(client_departed)).scalar() == 0


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "../etc/passwd", "x" * 80])
def test_an_unknown_zone_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidField) as caught:
        reports.parse_zone(name)
    assert caught.value.field == "tz"


def test_a_range_past_90_days_is_refused() -> None:
    with pytest.raises(InvalidField) as caught:
        reports.Window.ending_today(T0, 91, ZoneInfo("UTC"))
    assert caught.value.field == "days"


def test_a_day_of_a_zone_with_summer_time_has_its_own_length() -> None:
    """Europe/Berlin's 2031-03-30 has 23 hours: the window's UTC range says so."""
    window = reports.Window.ending_today(
        datetime(2031, 3, 30, 12, tzinfo=UTC), 1, ZoneInfo("Europe/Berlin")
    )
    assert (window.start, window.end) == (
        datetime(2031, 3, 29, 23, tzinfo=UTC), datetime(2031, 3, 30, 22, tzinfo=UTC)
    )


@pytest.fixture(params=["pg_database_url", "mysql_database_url"])
def concurrent_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def test_two_recorders_ending_runs_at_once_count_every_run_once(concurrent_url: str) -> None:
    """Two connections end 40 runs each on 40 groups and 4 clients at once: every run is
    counted once, and neither waits on the other's rows (slots) into a deadlock."""
    with migrated_engine(concurrent_url) as engine:
        groups = [add_interval_group(engine, T0 - MINUTE) for _ in range(80)]
        ready: list[tuple[int, int, str]] = []
        from fss.store.tasks import DispatchTarget

        for i, group in enumerate(groups):
            client_id = f"c{i % 4}"
            task_id = pending(engine, group)["id"]
            target = DispatchTarget(client_id=client_id, host="h", ip="10.0.0.1")
            ready.append((task_id, dispatch(engine, task_id, T0, target=target), client_id))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def recorder(part: list[tuple[int, int, str]]) -> None:
            try:
                barrier.wait()
                for task_id, attempt, client_id in part:
                    with engine.begin() as conn:
                        recording.record(conn, [
                            TaskStarted(task_id, attempt, client_id, T0),
                            TaskFinished(task_id, attempt, client_id, task_id % 5 != 0, 1, T0),
                        ], T0)
            except BaseException as exc:  # reported by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=recorder, args=(ready[k::2],)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with engine.connect() as conn:
            window = reports.Window.ending_today(T0, 1, ZoneInfo("UTC"))
            report = reports.run_counts(conn, window)
            clients = reports.client_counts(conn, window, T0, T0)
        expected_fail = sum(1 for t, _, _ in ready if t % 5 == 0)
        assert report.totals == reports.Counts(80 - expected_fail, expected_fail)
        assert clients.earlier.total == 80


def test_the_migration_back_fills_the_runs_already_finished(database_url: str) -> None:
    with migrated_engine(database_url) as engine:
        group = add_interval_group(engine, T0 - MINUTE)
        _run(engine, group, EVENING, True)
        _run(engine, group, EVENING + MINUTE, False)
        from fss.store.migrate import downgrade

        downgrade(engine, "0011")
        upgrade(engine)
        with engine.connect() as conn:
            report = reports.run_counts(conn, reports.Window.ending_today(TODAY, 7, SHANGHAI))
        assert _days(report) == {"2031-03-15": (1, 1)}
