"""Failover: kill -9 a scheduler or a worker while a peer is alive; how long do its groups pause?

    python3 -m bench.failover [--groups 20] [--interval-ms 1000] [--busy-s 0.1] [--after 12]

Two `fss scheduler` and two `fss worker -c 2` (job bench-busy: sleeps --busy-s, so a killed
worker is caught with runs in hand); G groups every I, phases spread over the interval.
With BENCH_JOB=realistic in the environment the job first does issue 20's work (pushes its
task id to Redis, logs a line, sets progress twice), and "duplicate runs" counts task ids
whose job body was entered more than once.
After a warm-up the bench kills (SIGKILL to the process group) one process, 0.3 s after a
whole second, and measures for --after seconds:

* scheduler kill: the victim is the scheduler that dispatched most runs before the kill; its
  groups are those whose last run before the kill it dispatched. "fire on the peer" = the
  first job start of such a group planned at or after the kill, minus the kill time (max
  over its groups), and the longest pause between two job starts of any group.
* worker kill: affected groups = those with a run on the victim that had not finished at
  the kill. "runs again" = the group's next job start after the kill, minus the kill time.
* plain Celery, worker kill (the comparison the issue names): `celery beat` with G entries
  every I and two `celery worker -c 2` (bench.stamp, sleeping --busy-s after it stamped);
  the longest pause between two starts of an entry around the kill, and the runs that never
  started. A scheduler kill has no plain counterpart: beat runs as a single instance (two
  would send everything twice), so its runs stop until someone restarts it.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from bench.common import (
    BUSY_ENV,
    BUSY_JOB,
    RECORDS_KEY,
    Bench,
    add_groups,
    bench,
    load,
    phases,
    print_header,
    realistic,
    sleep_until,
    table,
)
from fss.config import Settings

KILL_OFFSET_S = 0.3
SETTLE_S = 3.0
Row = list[object]

TASK_ROWS = (
    "SELECT id, task_group_id, start_at, dispatched_at, run_at, finish_at, client_id, "
    "server_node, status, attempt, claimed_by, claimed_until FROM task"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.failover", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=20, help="groups / beat entries [20]")
    parser.add_argument("--interval-ms", type=int, default=1000, help="interval [1000]")
    parser.add_argument("--busy-s", type=float, default=0.1, help="job duration [0.1]")
    parser.add_argument("--warmup", type=float, default=8, help="seconds before the kill [8]")
    parser.add_argument("--after", type=float, default=15,
                        help="seconds measured after the kill [15]")
    parser.add_argument("--systems", default="scheduler,worker,celery",
                        help="comma list of scheduler, worker, celery [all]")
    return parser.parse_args(argv)


def kill_moment(warmup_s: float) -> float:
    return math.ceil(time.time() + warmup_s) + KILL_OFFSET_S


def ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def task_rows(database_url: str) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql(TASK_ROWS))
    finally:
        engine.dispose()


def longest_pause(starts: list[float], kill: float, after_s: float) -> float:
    """Longest gap between two consecutive starts, among gaps that touch [kill, kill+after]."""
    ordered = sorted(starts)
    gaps = [b - a for a, b in itertools.pairwise(ordered)
            if b >= kill and a <= kill + after_s]
    return max(gaps, default=math.inf)


def start_fss(run: Bench, args: argparse.Namespace) -> None:
    run.fss_upgrade()
    run.fss_scheduler("sched-a")
    run.fss_scheduler("sched-b")
    for name in ("bench-w1", "bench-w2"):
        run.start(name, *run.fss("worker", "-A", "bench.common", "--name", name, "-c", "2",
                                 "-P", "prefork", "-l", "WARNING"),
                  extra_env={BUSY_ENV: str(args.busy_s)})
    run.wait_clients(2)
    first = datetime.fromtimestamp(math.ceil(time.time()) + 1, timezone.utc)
    add_groups(run.database_url, phases(args.groups, first, args.interval_ms / 1000, True),
               args.interval_ms, job_name=BUSY_JOB)


def fss_scenario(args: argparse.Namespace, what: str) -> Row:
    with bench(f"failover-{what}") as run:
        start_fss(run, args)
        kill = kill_moment(args.warmup)
        sleep_until(kill - KILL_OFFSET_S - 0.05)
        before = task_rows(run.database_url)
        if what == "scheduler":
            counts: dict[str, int] = defaultdict(int)
            for r in before:
                if r.server_node:
                    counts[r.server_node] += 1
            victim = max(counts, key=lambda k: counts[k])
        else:
            victim = "bench-w2"
        sleep_until(kill)
        run.kill(victim)
        sleep_until(kill + args.after + SETTLE_S)
        run.check_alive()
        rows = task_rows(run.database_url)
        duplicates = duplicate_runs(run) if realistic() else None
        loadavg = load()
    starts: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if r.run_at is not None:
            starts[r.task_group_id].append(r.run_at.timestamp())
    if what == "scheduler":
        last_before: dict[int, tuple[float, str]] = {}
        for r in rows:
            d = ts(r.dispatched_at)
            if d is not None and d < kill and d > last_before.get(r.task_group_id, (0.0, ""))[0]:
                last_before[r.task_group_id] = (d, r.server_node)
        affected = {g for g, (_, node) in last_before.items() if node == victim}
        first_after = {g: min((s for s in starts[g] if s >= kill), default=math.inf)
                       for g in affected}
        # Planned at/after the kill and started: lateness of those of the victim's groups.
        label = f"fss: scheduler kill -9 ({victim}; peer alive) -> its runs fire on the peer"
    else:
        affected = {
            r.task_group_id for r in rows
            if r.client_id == victim and r.dispatched_at is not None
            and r.dispatched_at.timestamp() < kill
            and (r.finish_at is None or r.finish_at.timestamp() > kill)
        }
        first_after = {g: min((s for s in starts[g] if s > kill), default=math.inf)
                       for g in affected}
        label = f"fss: worker kill -9 ({victim}; peer alive) -> affected groups run again"
    stopped = sorted(g for g, s in starts.items() if max(s) < kill)
    for g in stopped:  # a group that never ran again: show its rows, to be explained
        print(f"  group {g} did not run after the kill; its last tasks:")
        for r in sorted((r for r in rows if r.task_group_id == g), key=lambda r: r.id)[-3:]:
            print(f"    {dict(r._mapping)}")
    resumed = [t - kill for t in first_after.values()]
    pauses = [longest_pause(s, kill, args.after) for s in starts.values()]
    if pauses:  # the group that paused longest, and its tasks around the kill
        worst = max(starts, key=lambda g: longest_pause(starts[g], kill, args.after))
        print(f"  longest pause: group {worst}, tasks planned within 2 s before the kill "
              "and after it (start_at, dispatched_at, run_at: seconds after the kill):")
        for r in sorted((r for r in rows if r.task_group_id == worst), key=lambda r: r.id):
            if r.start_at.timestamp() >= kill - 2:
                times = [None if t is None else round(t.timestamp() - kill, 2)
                         for t in (r.start_at, r.dispatched_at, r.run_at)]
                print(f"    task {r.id} attempt {r.attempt} by {r.server_node}: {times}")
    return [label, len(affected), fmt_or_never(max(resumed, default=math.nan)),
            fmt_or_never(max(pauses, default=math.nan)), f"{len(stopped)} groups stopped",
            "-" if duplicates is None else duplicates, loadavg]


def duplicate_runs(run: Bench) -> int:
    """Job bodies entered more than once for one task (BENCH_JOB=realistic: every run of
    bench-busy pushes its task id to bench:records first)."""
    client = run.redis()
    try:
        counts = Counter(client.lrange(RECORDS_KEY, 0, -1))
    finally:
        client.close()
    return sum(n - 1 for n in counts.values() if n > 1)


def fmt_or_never(seconds_: float) -> str:
    if math.isinf(seconds_):
        return "never"
    if math.isnan(seconds_):
        return "-"
    return f"{seconds_:.2f}"


def celery_scenario(args: argparse.Namespace) -> Row:
    interval_s = args.interval_ms / 1000
    with bench("failover-celery", with_database=False) as run:
        for name in ("celery-w1", "celery-w2"):
            run.start(name, *run.celery("worker", "-Q", "bench.plain", "-n", f"{name}@%h",
                                        "-c", "2", "-P", "prefork", "-l", "WARNING",
                                        "--without-gossip", "--without-mingle",
                                        "--without-heartbeat"),
                      extra_env={BUSY_ENV: str(args.busy_s)})
        run.wait_plain_workers()
        origin = math.ceil(time.time()) + 4  # beat takes ~1.5 s to start
        first = [t.timestamp() for t in phases(args.groups, datetime.fromtimestamp(
            origin, timezone.utc), interval_s, True)]
        run.celery_beat({"interval_s": interval_s, "first_at": first})
        kill = kill_moment(args.warmup + 4)
        sleep_until(kill)
        run.kill("celery-w2")
        sleep_until(kill + args.after + SETTLE_S)
        run.check_alive()
        stamps = run.stamps()
        loadavg = load()
    starts: dict[int, list[float]] = defaultdict(list)
    for _, grid, started in stamps:
        if grid is not None:
            entry = round(((grid - origin) % interval_s) / interval_s * args.groups) % args.groups
            starts[entry].append(started)
    pauses = [longest_pause(s, kill, args.after) for s in starts.values()]
    grids = {round(g, 3) for _, g, _ in stamps if g is not None}
    expected = {round(t + k * interval_s, 3) for t in first
                for k in range(int((kill + args.after - t) / interval_s) + 1)
                if t + k * interval_s < kill + args.after}
    lost = len(expected - grids)
    return ["plain Celery + beat: worker kill -9 (celery-w2; peer alive)", "-", "-",
            fmt_or_never(max(pauses, default=math.nan)), lost, "-", loadavg]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print_header("bench.failover: kill -9 with a peer alive", ["bench.failover", *sys.argv[1:]])
    print(f"G={args.groups} every {args.interval_ms} ms (phases spread), job sleeps "
          f"{args.busy_s:g} s; 2 schedulers / 1 beat, 2 workers -P prefork -c 2; kill at "
          f"+{args.warmup:g} s, measured {args.after:g} s after", flush=True)
    settings = Settings.from_env()
    print(f"fss settings (FSS_* environment): lease_s {settings.lease_s:g}, lookahead_s "
          f"{settings.lookahead_s:g}, poll_s {settings.poll_s:g}, heartbeat_s "
          f"{settings.heartbeat_s:g}, client_timeout_s {settings.client_timeout_s:g}\n",
          flush=True)
    rows: list[Row] = []
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        t0 = time.monotonic()
        if system in ("scheduler", "worker"):
            rows.append(fss_scenario(args, system))
        elif system == "celery":
            rows.append(celery_scenario(args))
        else:
            raise SystemExit(f"unknown system {system!r}")
        print(f"  ({system} done in {time.monotonic() - t0:.0f} s, load {load()})", flush=True)
    rows.append(["plain Celery beat: scheduler kill -9", "-", "no peer: beat is a single "
                 "instance", "-", "all until restarted", "-", "-"])
    print()
    print(table(["scenario (seconds after the kill)", "groups hit", "resumed (max)",
                 "longest pause of any group", "runs never started / groups stopped",
                 "duplicate runs", "load 1/5/15"], rows))
    print("\n(targets: scheduler kill -> its runs fire on a peer within 5 s; worker kill -> "
          "every affected group runs again within 6 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
