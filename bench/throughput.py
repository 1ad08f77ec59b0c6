"""Executions per second: fss vs plain Celery vs Celery beat, one worker, same pool.

    python3 -m bench.throughput [--groups 200] [--interval-ms 100] [--window 30]
    python3 -m bench.throughput --again --groups 50 --systems fss,celery

* --again: G groups whose job (bench-again) asks to run again at once, so each group runs
  back to back and the rate is G / cycle (finished -> recorded -> next task dispatched ->
  started -> finished); counted from the groups' run_count over the window (retention may
  prune task rows meanwhile). The stages of the cycle are printed from the task rows.

* fss: G interval groups (job bench-noop, phases spread over the interval: G/I runs due per
  second), one `fss scheduler`, one `fss worker`. Counted: tasks that reached Success with
  finish_at inside the window (and tasks dispatched inside it). fss skips the slots a group
  overran (fixed rate, no catch-up), so when it cannot keep up the figure is its ceiling.
* plain Celery: --preload no-op messages (`bench.noop`) are queued first, then one worker
  drains them; executed/s = drop of the queue length over the window (the task body is
  empty; at most `concurrency` messages are in flight).
* Celery beat: a real `celery beat` with G entries every I (`bench.stamp`, one RPUSH per run
  to count it), same worker; counted: runs started inside the window.

CPU% is per process tree over the window, 100 = one core; "PG" is the PostgreSQL server
processes connected to the benchmark database (work fss puts on the database), "Redis" the
local redis-server (shared by everything on it). "CPU ms/run (all)" adds up every measured
process per executed run: on a machine whose cores are all busy, the ratio of two systems'
rates cannot beat the inverse ratio of this figure.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from bench.common import (
    AGAIN_JOB,
    CELERY_ENV,
    JOB_ENV,
    PLAIN_QUEUE,
    Bench,
    CpuMeter,
    RssSampler,
    add_groups,
    backend_pids,
    bench,
    fmt_ms,
    fss_tasks,
    load,
    percentile,
    phases,
    print_header,
    profile_summary,
    seconds,
    sending_app,
    sleep_until,
    start_profile,
    summary_ms,
    table,
    tree,
)

Row = list[object]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=200, help="schedules (G) [200]")
    parser.add_argument("--interval-ms", type=int, default=100, help="interval (I) [100]")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before the window [5]")
    parser.add_argument("--window", type=float, default=30, help="seconds measured [30]")
    parser.add_argument("--preload", type=int, default=20000,
                        help="plain Celery: messages queued before the worker starts [20000]")
    parser.add_argument("--concurrency", type=int, default=2, help="worker -c [2]")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers per system, each -c CONCURRENCY (issue 20 uses 2) [1]")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--systems", default="fss,celery,beat",
                        help="comma list of fss, celery, beat [all]")
    parser.add_argument("--again", action="store_true",
                        help="self-rescheduling groups (job bench-again): measures the cycle")
    parser.add_argument("--job", default="noop", choices=["noop", "realistic"],
                        help="noop: the job does nothing; realistic: fss and plain Celery push "
                             "one record to Redis and log one line, the fss job also sets "
                             "progress twice [noop]")
    parser.add_argument("--celery", default="fss-config", choices=["fss-config", "defaults"],
                        help="plain Celery with fss's Celery settings (prefetch 1, acks early) "
                             "or at Celery's own defaults (prefetch multiplier 4) [fss-config]")
    parser.add_argument("--profile", type=Path,
                        help="py-spy the fss scheduler over the window, raw output to this file")
    parser.add_argument("--profile-workers", type=Path, metavar="DIR",
                        help="--again: py-spy --gil every fss worker process (main and pool) over "
                             "the window, raw output per process in DIR")
    return parser.parse_args(argv)


def p50_p99(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{fmt_ms(percentile(values, 50))} / {fmt_ms(percentile(values, 99))}"


def run_fss(args: argparse.Namespace) -> Row:
    if args.again:
        return run_fss_again(args)
    interval_s = args.interval_ms / 1000
    with bench("throughput-fss") as run:
        run.fss_upgrade()
        scheduler = run.fss_scheduler()
        worker = run.fss_worker("bench-w1", args.concurrency, args.pool)
        run.wait_clients(1)
        first = math.ceil(time.time()) + 5
        start = datetime.fromtimestamp(first, timezone.utc)
        add_groups(run.database_url, phases(args.groups, start, interval_s, True),
                   args.interval_ms)
        window_start = first + args.warmup
        window_end = window_start + args.window
        sleep_until(window_start)
        spy = start_profile(scheduler, args.window, args.profile) if args.profile else None
        meters = [CpuMeter([scheduler]).start(), CpuMeter(tree(worker)).start(),
                  CpuMeter(backend_pids(run.database_url)).start(),
                  CpuMeter(redis_server_pids(run)).start()]
        rss = RssSampler(scheduler).start()
        sleep_until(window_end)
        cpu = [m.stop() for m in meters]
        rss.stop()
        loadavg = load()
        if spy is not None:
            spy.wait(timeout=60)
        time.sleep(2)
        run.check_alive()
        tasks = fss_tasks(run.database_url)

    def inside(moment: datetime | None) -> bool:
        return moment is not None and window_start <= moment.timestamp() < window_end

    done = [t for t in tasks if t.status == 4 and inside(t.finish_at)]
    sent = [t for t in tasks if inside(t.dispatched_at)]
    late = [
        d for t in tasks if inside(t.run_at) and (d := seconds(t.run_at, t.start_at)) is not None
    ]
    stages = {
        "planned -> dispatched": [seconds(t.dispatched_at, t.start_at) for t in done],
        "dispatched -> job start": [seconds(t.run_at, t.dispatched_at) for t in done],
        "job start -> finish": [seconds(t.finish_at, t.run_at) for t in done],
        "finish -> recorded": [seconds(t.reported_at, t.finish_at) for t in done],
    }
    print("  fss stages of the runs finished in the window (ms):")
    print(table(["  stage", "p50", "p95", "p99", "max"],
                [[f"  {k}", *summary_ms([x for x in v if x is not None])]
                 for k, v in stages.items()]), flush=True)
    if args.profile:
        summary = profile_summary(args.profile)
        print(f"\nprofile of the fss scheduler ({args.profile}):\n{summary}\n")
    rate = len(done) / args.window
    return [
        "fss (scheduler + worker)", f"{args.groups / interval_s:.0f}",
        f"{rate:.0f}", f"{len(sent) / args.window:.0f}", p50_p99(late),
        f"{cpu[0]:.0f}", f"{rss.max_kb / 1024:.0f}", f"{cpu[1]:.0f}", f"{cpu[2]:.0f}",
        f"{cpu[3]:.0f}", cpu_ms_per_run(cpu, rate), cpu_ms_per_run(cpu[1:2], rate), loadavg,
    ]


def run_fss_again(args: argparse.Namespace) -> Row:
    with bench("throughput-fss-again") as run:
        run.fss_upgrade()
        scheduler = run.fss_scheduler()
        workers = [run.fss_worker(f"bench-w{n}", args.concurrency, args.pool)
                   for n in range(1, args.workers + 1)]
        run.wait_clients(args.workers)
        first = math.ceil(time.time()) + 3
        start = datetime.fromtimestamp(first, timezone.utc)
        # The interval is only the fallback: the job's "again at once" wins.
        add_groups(run.database_url, [start] * args.groups, 60_000, job_name=AGAIN_JOB)
        window_start = first + args.warmup
        window_end = window_start + args.window
        sleep_until(window_start)
        runs_before = _run_count(run.database_url)
        spy = start_profile(scheduler, args.window, args.profile) if args.profile else None
        worker_spies = (_profile_workers(workers, args.window, args.profile_workers)
                        if args.profile_workers else [])
        meters = [CpuMeter([scheduler]).start(), CpuMeter(trees(workers)).start(),
                  CpuMeter(backend_pids(run.database_url)).start(),
                  CpuMeter(redis_server_pids(run)).start()]
        rss = RssSampler(scheduler).start()
        sleep_until(window_end)
        runs_after = _run_count(run.database_url)
        for worker_spy in worker_spies:
            worker_spy.wait(timeout=60)
        cpu = [m.stop() for m in meters]
        if args.job == "realistic":
            _report_events(run.database_url)
        rss.stop()
        loadavg = load()
        if spy is not None:
            spy.wait(timeout=60)
        run.check_alive()
        cycles = _cycles(run.database_url, window_start, window_end)
    print("  fss cycle of a group, runs started in the window (ms):")
    print(table(["  stage", "p50", "p95", "p99", "max"],
                [[f"  {k}", *summary_ms(v)] for k, v in cycles.items() if v]), flush=True)
    if args.profile:
        summary = profile_summary(args.profile)
        print(f"\nprofile of the fss scheduler ({args.profile}):\n{summary}\n")
    rate = (runs_after - runs_before) / args.window
    return [
        f"fss ({args.groups} groups, job runs again at once)", "-", f"{rate:.0f}", "-", "-",
        f"{cpu[0]:.0f}", f"{rss.max_kb / 1024:.0f}", f"{cpu[1]:.0f}", f"{cpu[2]:.0f}",
        f"{cpu[3]:.0f}", cpu_ms_per_run(cpu, rate), cpu_ms_per_run(cpu[1:2], rate), loadavg,
    ]


def _report_events(database_url: str) -> None:
    """Every log line and every final progress reached the database? Counted, not sampled:
    after the window, the runs finished so far against the lines and the progress stored."""
    time.sleep(2)  # the runs in flight at the window's end finish and are recorded
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            finished, with_line, at_100 = conn.execute(sa.text(
                "SELECT count(*), "
                "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM run_log r WHERE r.task_id = t.id)), "
                "count(*) FILTER (WHERE t.progress = 100) FROM task t WHERE t.status = 4")).one()
    finally:
        engine.dispose()
    print(f"  events: {finished} runs finished Success, {with_line} with their log line, "
          f"{at_100} with progress 100", flush=True)


def _profile_workers(
    roots: list[int], duration_s: float, out: Path
) -> list[subprocess.Popen[bytes]]:
    """py-spy --gil (samples where a thread holds the GIL: the process's Python CPU) of each
    process of the workers; out/worker-PID-main.txt or out/worker-PID-pool.txt."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("(py-spy not on PATH: no worker profiles; pip install py-spy)", file=sys.stderr)
        return []
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for root in roots:
        for pid in tree(root):
            kind = "main" if pid == root else "pool"
            spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(int(duration_s)),
                 "--rate", "200", "--gil", "--format", "raw",
                 "--output", str(out / f"worker-{pid}-{kind}.txt"), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
    return spies


def trees(roots: list[int]) -> list[int]:
    """The processes of several workers (each its main process and pool children)."""
    return [pid for root in roots for pid in tree(root)]


def redis_server_pids(run: Bench) -> list[int]:
    """The local redis-server serving the bench (its CPU is part of each system's cost)."""
    client = run.redis()
    try:
        return [int(client.info("server")["process_id"])]
    finally:
        client.close()


def cpu_ms_per_run(cpu_percents: list[float], rate: float) -> str:
    """CPU time of every measured process per run: 100 % of a core for 1 s = 1,000 ms."""
    if rate <= 0:
        return "-"
    return f"{10 * sum(cpu_percents) / rate:.2f}"


def _run_count(database_url: str) -> int:
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT sum(run_count) FROM task_group").scalar() or 0)
    finally:
        engine.dispose()


def _cycles(database_url: str, start: float, end: float) -> dict[str, list[float]]:
    """Each run's stages, with the previous run of its group: previous finish (worker clock)
    -> recorded (its reported_at) -> this one dispatched -> started -> finished."""
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT task_group_id, dispatched_at, run_at, finish_at, reported_at FROM task "
                "WHERE status = 4 ORDER BY task_group_id, id"
            ).all()
    finally:
        engine.dispose()
    stages: dict[str, list[float]] = {
        "previous finish -> recorded": [], "recorded -> dispatched": [],
        "dispatched -> job start": [], "job start -> finish": [], "whole cycle": [],
    }
    for prev, cur in itertools.pairwise(rows):
        if prev[0] != cur[0] or cur[2] is None or not start <= cur[2].timestamp() < end:
            continue
        parts = [
            ("previous finish -> recorded", seconds(prev[4], prev[3])),
            ("recorded -> dispatched", seconds(cur[1], prev[4])),
            ("dispatched -> job start", seconds(cur[2], cur[1])),
            ("job start -> finish", seconds(cur[3], cur[2])),
            ("whole cycle", seconds(cur[3], prev[3])),
        ]
        for name, value in parts:
            if value is not None:
                stages[name].append(value)
    return stages


def run_celery(args: argparse.Namespace) -> Row:
    with bench("throughput-celery", with_database=False) as run:
        app = sending_app(run.broker_url)
        t0 = time.monotonic()
        with app.producer_or_acquire() as producer:
            for _ in range(args.preload):
                app.send_task("bench.noop", queue=PLAIN_QUEUE, producer=producer)
        enqueue_rate = args.preload / (time.monotonic() - t0)
        client = run.redis()
        workers = [run.celery_worker(f"celery-w{n}", args.concurrency, args.pool)
                   for n in range(1, args.workers + 1)]
        deadline = time.monotonic() + 60 + args.window
        started: tuple[float, int] | None = None
        ended: tuple[float, int] | None = None
        meters: list[CpuMeter] = []
        try:
            while time.monotonic() < deadline:
                run.check_alive()
                now, queued = time.monotonic(), int(client.llen(PLAIN_QUEUE))
                if started is None and queued <= args.preload - 200:
                    started = (now, queued)
                    meters = [CpuMeter(trees(workers)).start(),
                              CpuMeter(redis_server_pids(run)).start()]
                elif started is not None and (now - started[0] >= args.window or queued < 200):
                    ended = (now, queued)
                    break
                time.sleep(0.05)
        finally:
            client.close()
        cpu = [m.stop() for m in meters] or [float("nan"), float("nan")]
        loadavg = load()
    if started is None or ended is None:
        raise RuntimeError("plain Celery worker did not drain the queue in time")
    rate = (started[1] - ended[1]) / (ended[0] - started[0])
    print(f"  (plain Celery: one producer enqueued {enqueue_rate:.0f} msg/s; "
          f"drain measured over {ended[0] - started[0]:.1f} s)", flush=True)
    return [
        "plain Celery (queue preloaded)", "saturated", f"{rate:.0f}", "-", "-", "-", "-",
        f"{cpu[0]:.0f}", "-", f"{cpu[1]:.0f}", cpu_ms_per_run(cpu, rate),
        cpu_ms_per_run(cpu[:1], rate), loadavg,
    ]


def run_beat(args: argparse.Namespace) -> Row:
    interval_s = args.interval_ms / 1000
    with bench("throughput-beat", with_database=False) as run:
        worker = run.celery_worker("celery-w1", args.concurrency, args.pool)
        run.wait_plain_workers()
        first = math.ceil(time.time()) + 4
        start = datetime.fromtimestamp(first, timezone.utc)
        first_at = [t.timestamp() for t in phases(args.groups, start, interval_s, True)]
        beat = run.celery_beat({"interval_s": interval_s, "first_at": first_at})
        window_start = first + args.warmup
        window_end = window_start + args.window
        sleep_until(window_start)
        meters = [CpuMeter([beat]).start(), CpuMeter(tree(worker)).start(),
                  CpuMeter(redis_server_pids(run)).start()]
        rss = RssSampler(beat).start()
        sleep_until(window_end)
        cpu = [m.stop() for m in meters]
        rss.stop()
        loadavg = load()
        time.sleep(2)
        run.check_alive()
        stamps = _window_stamps(run, window_start, window_end)
    late = [s[2] - s[0] for s in stamps]
    rate = len(stamps) / args.window
    return [
        "Celery beat + worker", f"{args.groups / interval_s:.0f}",
        f"{rate:.0f}", "-", p50_p99(late), f"{cpu[0]:.0f}",
        f"{rss.max_kb / 1024:.0f}", f"{cpu[1]:.0f}", "-", f"{cpu[2]:.0f}",
        cpu_ms_per_run(cpu, rate), cpu_ms_per_run(cpu[1:2], rate), loadavg,
    ]


def _window_stamps(run: Bench, start: float, end: float) -> list[tuple[float, float | None, float]]:
    return [s for s in run.stamps() if start <= s[2] < end]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Every process the bench starts reads these (Bench.env passes our environment on).
    os.environ[JOB_ENV] = args.job
    os.environ[CELERY_ENV] = "defaults" if args.celery == "defaults" else "fss"
    print_header("bench.throughput: executions per second", ["bench.throughput", *sys.argv[1:]])
    what = ("job runs again at once" if args.again
            else f"every {args.interval_ms} ms (phases spread)")
    print(f"G={args.groups} schedules, {what}, warmup "
          f"{args.warmup:g} s, window {args.window:g} s; {args.workers} worker(s) -P {args.pool} "
          f"-c {args.concurrency}; broker Redis; job {args.job}; plain Celery "
          f"{'at its defaults' if args.celery == 'defaults' else 'with fss settings'}\n",
          flush=True)
    rows: list[Row] = []
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        t0 = time.monotonic()
        if system == "fss":
            rows.append(run_fss(args))
        elif system == "celery":
            rows.append(run_celery(args))
        elif system == "beat":
            rows.append(run_beat(args))
        else:
            raise SystemExit(f"unknown system {system!r}")
        print(f"  ({system} done in {time.monotonic() - t0:.0f} s, load {load()})", flush=True)
    print()
    print(table(["system", "due/s", "executed/s", "sent/s", "start late p50/p99 ms",
                 "sched CPU%", "sched RSS MB", "worker CPU%", "PG CPU%", "Redis CPU%",
                 "CPU ms/run (all)", "workers ms/run", "load 1/5/15"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
