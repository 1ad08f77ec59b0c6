"""Chaos: kill -9 a scheduler and a worker mid-run, restart them, and check what survived.

Issue "High availability": 2 schedulers, 2 workers, 30 groups at a 1 s interval on
PostgreSQL + Redis. After the runs flow, one scheduler and one worker are killed (whole
process group, SIGKILL) and restarted under the same names a few seconds later. Then:
no task id reached a job function twice, no executed task is missing its finished event,
and every group kept running with no gap longer than lease + client liveness + one interval.
bench/chaos.py runs the same scenario longer, with a kill every N seconds.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
from chaos_analysis import (
    STATUS_SUCCESS,
    STATUS_WORKING,
    TASK_ROWS_SQL,
    TaskRecord,
    analyse,
    format_report,
    gap_bound_s,
    parse_executions,
    task_record,
    unacked_by_routing_key,
)
from chaos_scenario import (
    add_tick_groups,
    executions_lines,
    sleep_to_grid_offset,
    stop_gracefully,
)
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.config import Settings

pytestmark = pytest.mark.e2e

GROUPS = 30
INTERVAL_MS = 1000
KILL_AFTER_S = 8  # after the runs flow
RESTART_AFTER_S = 3
KILL_OFFSET_S = 0.3  # after a whole second, when the groups fire
RUN_FOR_S = 28  # from the moment the runs flow to the graceful stop: 20 s after the kill > bound
SCHEDULERS = ("sched-1", "sched-2")
WORKERS = ("w1", "w2")





def unacked_snapshot(broker_url: str) -> dict[str, int]:
    """Messages consumers hold unacknowledged on the broker, by routing key (kombu keeps
    them in the `unacked` hash; a killed consumer's stay there until the visibility
    timeout restores them)."""
    with redis.Redis.from_url(broker_url) as broker:
        return unacked_by_routing_key(broker.hvals("unacked"))



@pytest.mark.timeout(90)
def test_given_two_schedulers_and_two_workers_when_one_of_each_is_killed_then_nothing_is_lost(
    fss_env: FssProcesses,
) -> None:
    began = time.monotonic()
    # Given two schedulers and two workers (-c 2) serving `tick`
    for name in SCHEDULERS:
        fss_env.scheduler(name)
    for name in WORKERS:
        fss_env.worker(name, "e2e_jobs", "-c", "2")
    wait_for(
        lambda: len(query(fss_env.database_url, "SELECT id FROM client")) == len(WORKERS),
        timeout=30,
        what="both workers to register",
    )
    # ... and 30 groups at a 1 s interval whose runs are flowing
    group_ids = add_tick_groups(fss_env.database_url, GROUPS, INTERVAL_MS)
    wait_for(
        lambda: len(executions_lines(fss_env.workdir)) >= GROUPS,
        timeout=15,
        what="the first round of runs",
    )
    flowing = time.monotonic()

    # When one scheduler and one worker are killed with SIGKILL mid-run ...
    time.sleep(KILL_AFTER_S)
    sleep_to_grid_offset(KILL_OFFSET_S)
    fss_env.kill(SCHEDULERS[0])
    fss_env.kill(WORKERS[0])
    killed_at = datetime.now(timezone.utc)
    held_at_kill = unacked_snapshot(fss_env.broker_url)
    # ... and restarted under the same names a few seconds later
    time.sleep(RESTART_AFTER_S)
    fss_env.scheduler(SCHEDULERS[0])
    fss_env.worker(WORKERS[0], "e2e_jobs", "-c", "2")
    time.sleep(max(0.0, RUN_FOR_S - (time.monotonic() - flowing)))
    observed_until = datetime.now(timezone.utc)
    unacked = unacked_snapshot(fss_env.broker_url)
    stop_gracefully(fss_env, WORKERS, drain_s=5, wait_s=20)

    # Then no task id reached the job twice, no finished event is missing, and every group
    # kept running with no gap longer than lease + liveness + one interval
    settings = Settings.from_env()  # what the fss processes read too
    bound = gap_bound_s(settings.lease_s, settings.client_timeout_s, INTERVAL_MS / 1000)
    tasks = [task_record(r._mapping) for r in query(fss_env.database_url, TASK_ROWS_SQL)]
    executions = parse_executions(executions_lines(fss_env.workdir))
    report = analyse(
        tasks,
        executions,
        observed_until=observed_until,
        bound_s=bound,
        group_ids=group_ids,
        in_flight_since=observed_until,
    )
    report.notes.append(
        f"killed {SCHEDULERS[0]} and {WORKERS[0]} at {killed_at:%H:%M:%S.%f}, restarted "
        f"{RESTART_AFTER_S} s later; unacked broker messages right after the kill: "
        f"{held_at_kill}, at the end: {unacked}; "
        f"logs in {fss_env.workdir}; test took {time.monotonic() - began:.1f} s"
    )
    text = format_report(report, tasks)
    print(text)
    assert report.runs >= GROUPS * (RUN_FOR_S - 20), text
    assert not report.duplicates, text
    assert not report.missing, text
    assert not report.unexplained_success, text
    assert report.groups_without_runs == 0, text
    assert not report.gaps_over_bound, text


# The analysis itself (pure, fast): a chaos test that cannot see a stall proves nothing.

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _task(task_id: int, group_id: int, status: int, run_s: float | None,
          finished: bool = True) -> TaskRecord:
    run_at = None if run_s is None else _at(run_s)
    return TaskRecord(
        id=task_id, group_id=group_id, status=status, start_at=_at(task_id), run_at=run_at,
        finish_at=_at(task_id + 0.1) if finished else None, run_speed=5 if finished else None,
    )


def test_analysis_finds_duplicates_missing_events_and_a_stalled_group() -> None:
    tasks = [
        _task(1, 1, STATUS_SUCCESS, 1.0),
        _task(2, 1, STATUS_SUCCESS, 2.0),
        _task(3, 1, STATUS_WORKING, 3.0, finished=False),  # stuck: its finish never came
        _task(4, 2, STATUS_SUCCESS, 4.0),
        _task(5, 2, STATUS_SUCCESS, None, finished=False),  # Success without finish data
    ]
    log = ["1 1 w1 10", "2 1 w1 10", "2 2 w2 11", "3 1 w1 10", "4 1 w2 11", "5 1 w2 11", ""]
    report = analyse(
        tasks, parse_executions(log), observed_until=_at(30), bound_s=16, group_ids=[1, 2, 3]
    )
    assert report.duplicates == {2: 2}
    assert [m.task_id for m in report.missing] == [3, 5]
    assert report.gaps[1].seconds == 27 and report.gaps[1].after == _at(3)
    assert [g.group_id for g in report.gaps_over_bound] == [1, 2]
    assert report.groups_without_runs == 1  # group 3 never ran
    assert not report.passed
    assert "RESULT: FAIL" in format_report(report, tasks)


def test_analysis_passes_a_healthy_run_and_allows_runs_still_in_flight_at_the_end() -> None:
    tasks = [_task(i, 1, STATUS_SUCCESS, i + 0.05) for i in range(1, 20)]
    tasks.append(_task(20, 1, STATUS_WORKING, 20.05, finished=False))
    log = [f"{i} 1 w1 10" for i in range(1, 21)]
    report = analyse(
        tasks, parse_executions(log), observed_until=_at(20.5), bound_s=16, group_ids=[1],
        in_flight_since=_at(20),
    )
    assert report.passed, format_report(report, tasks)
    assert report.gaps[1].seconds == pytest.approx(1.0)
    assert gap_bound_s(5, 10, 1) == 16
