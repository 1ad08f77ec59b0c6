"""End to end: routing with real `fss scheduler` and `fss worker --tag` processes on PostgreSQL
and Redis: a tagged group runs only on the tagged worker; a sticky group keeps its worker
across runs and moves only when that worker stops."""

from __future__ import annotations

import itertools
import json

import pytest
from fss_processes import FssProcesses, query
from servers import wait_for

from fss.domain.status import TaskStatus

pytestmark = pytest.mark.e2e


def add_group(env: FssProcesses, caption: str, *options: str) -> int:
    return int(env.cli("group", "add", "--caption", caption, "--job-name", "tick",
                       "--interval-ms", "500", *options).stdout.strip())


def clients_of_runs(env: FssProcesses, group_id: int) -> list[str]:
    """The client of each successful run of the group, in run order."""
    rows = query(env.database_url,
                 "SELECT client_id FROM task WHERE task_group_id = :g AND status = :s "
                 "ORDER BY id", g=group_id, s=int(TaskStatus.SUCCESS))
    return [str(r.client_id) for r in rows]


def registered(env: FssProcesses) -> set[str]:
    return {str(r.id) for r in query(env.database_url, "SELECT id FROM client")}


def test_given_workers_tagged_gpu_and_cpu_then_a_gpu_group_runs_only_on_the_gpu_worker(
    fss_env: FssProcesses,
) -> None:
    fss_env.scheduler("sched-1")
    fss_env.worker("w-gpu", "e2e_jobs", "-c", "2", "--tag", "gpu")
    fss_env.worker("w-cpu", "e2e_jobs", "-c", "2", "--tag", "cpu", "--tag", "fast")
    wait_for(lambda: registered(fss_env) == {"w-gpu", "w-cpu"}, timeout=40,
             what="both workers to register")
    listed = {c["id"]: c for c in json.loads(fss_env.cli("client", "list", "--json").stdout)}
    assert listed["w-gpu"]["tags"] == ["gpu"]
    assert listed["w-cpu"]["tags"] == ["cpu", "fast"]

    gpu = add_group(fss_env, "on gpu", "--client-tag", "gpu")
    anywhere = add_group(fss_env, "anywhere")
    wait_for(lambda: len(clients_of_runs(fss_env, gpu)) >= 8, timeout=30,
             what="8 runs of the gpu group")
    fss_env.stop("sched-1")

    assert set(clients_of_runs(fss_env, gpu)) == {"w-gpu"}
    # An untagged group still goes round robin over both.
    assert set(clients_of_runs(fss_env, anywhere)) == {"w-gpu", "w-cpu"}


def test_given_sticky_groups_then_each_keeps_its_worker_and_moves_only_when_it_stops(
    fss_env: FssProcesses,
) -> None:
    fss_env.scheduler("sched-1")
    workers = ("w1", "w2", "w3")
    for name in workers:
        fss_env.worker(name, "e2e_jobs", "-c", "2")
    wait_for(lambda: registered(fss_env) == set(workers), timeout=40,
             what="three workers to register")
    groups = [add_group(fss_env, f"sticky {i}", "--route", "sticky") for i in range(6)]
    wait_for(lambda: all(len(clients_of_runs(fss_env, g)) >= 4 for g in groups), timeout=30,
             what="4 runs of every sticky group")

    home = {}
    for group_id in groups:
        used = set(clients_of_runs(fss_env, group_id))
        assert len(used) == 1, f"group {group_id} ran on {used}"
        home[group_id] = used.pop()
    assert len(set(home.values())) > 1  # six groups over three workers do spread

    # The worker holding the first group stops: its groups move, the others stay.
    leaving = home[groups[0]]
    fss_env.stop(leaving)
    wait_for(lambda: leaving not in registered(fss_env), timeout=20,
             what=f"{leaving} to leave")
    counts = {g: len(clients_of_runs(fss_env, g)) for g in groups}
    wait_for(lambda: all(len(clients_of_runs(fss_env, g)) >= counts[g] + 4 for g in groups),
             timeout=30, what="4 more runs of every sticky group")
    fss_env.stop("sched-1")

    for group_id in groups:
        runs = clients_of_runs(fss_env, group_id)
        if home[group_id] != leaving:
            assert set(runs) == {home[group_id]}, f"group {group_id} moved: {runs}"
            continue
        # Its runs: on the leaving worker until it stopped, then all on one other worker.
        stayed = len(runs) - len(list(itertools.dropwhile(lambda c: c == leaving, runs)))
        after = runs[stayed:]
        assert len(after) >= 4 and len(set(after)) == 1 and leaving not in after, runs
