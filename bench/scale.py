"""Scheduler cost at N schedules: fss scheduler vs celery beat, CPU%, RSS, sends per second.

    python3 -m bench.scale [--sizes 100,1000,10000] [--interval-s 60] [--window 25]

For each N: N interval schedules every --interval-s (job bench-noop / task bench.stamp), their
phases spread evenly over the interval, so N / interval runs fall due every second; two
workers (-c 2 each) run them, so the work measured is the scheduler's own (claiming,
dispatching, recording), not the jobs'.

* fss: one `fss scheduler` (claim loop + timing wheel, dispatcher, recorder, supervisor in one
  process) and two `fss worker`. sent/s = tasks with dispatched_at inside the window; late =
  dispatched_at - start_at (and run_at - start_at).
* beat: one `celery beat` with N entries (StampingScheduler = the default PersistentScheduler
  plus the due time in each message) and two plain Celery workers. sent/s = runs started
  inside the window; late = start - beat's own due time (last_run_at + interval).

CPU% of the scheduler process over the window (100 = one core), its peak RSS (VmRSS sampled
every 0.5 s), and for fss the PostgreSQL server processes serving the benchmark database.
Each N takes about --lead + N / 7000 + --window + 10 s per system.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from bench.common import (
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
    sleep_until,
    sql_counters,
    start_profile,
    table,
)

Row = list[object]
SETTLE_S = 2.0
LOAD_PER_S = 7000  # bulk group rows written per second, added to --lead
SQL_ROWS: list[Row] = []  # fss's PostgreSQL work per dispatched run, one row per N


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000", help="N values [100,1000,10000]")
    parser.add_argument("--interval-s", type=float, default=60, help="interval [60]")
    parser.add_argument("--due-rate", type=float, default=None,
                        help="instead of --interval-s: interval = N / this, so every N has "
                             "the same runs due per second (e.g. 278 = 1,000,000 per hour)")
    parser.add_argument("--lead", type=float, default=8,
                        help="seconds from start-up to the first due run [8]")
    parser.add_argument("--window", type=float, default=25, help="seconds measured [25]")
    parser.add_argument("--workers", type=int, default=2, help="workers [2]")
    parser.add_argument("--concurrency", type=int, default=2, help="worker -c [2]")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--systems", default="fss,beat", help="comma list of fss, beat [both]")
    parser.add_argument("--profile", type=Path,
                        help="py-spy the fss scheduler at the largest N; raw output to this file")
    return parser.parse_args(argv)


def p50_p99(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{fmt_ms(percentile(values, 50))} / {fmt_ms(percentile(values, 99))}"


class Window:
    def __init__(self, args: argparse.Namespace, n: int) -> None:
        # The bulk rows are written after this: ~11 s per 100,000 groups here.
        self.first = math.ceil(time.time()) + args.lead + n / LOAD_PER_S
        self.end = self.first + args.window
        start = datetime.fromtimestamp(self.first, timezone.utc)
        self.interval_s = interval_for(args, n)
        self.first_at = phases(n, start, self.interval_s, spread=True)
        # Runs planned inside the window (an interval shorter than the window repeats).
        self.due = sum(
            max(0, math.ceil((self.end - t.timestamp()) / self.interval_s))
            for t in self.first_at
        )
        self.seconds = args.window

    def inside(self, moment: float | None) -> bool:
        return moment is not None and self.first <= moment < self.end


def interval_for(args: argparse.Namespace, n: int) -> float:
    return n / args.due_rate if args.due_rate else float(args.interval_s)


class ClaimProbe:
    """Times the claim's row lookup (the statement whose cost grows with the table) every
    0.1 s from its own connection, without FOR UPDATE so it takes nothing from the
    scheduler: `SELECT id FROM task WHERE status = 0 AND start_at <= now + lookahead AND
    (claimed_until IS NULL OR claimed_until < now) ORDER BY start_at LIMIT 500`, the query
    of fss.store.tasks.claim_due. Round trip included (~0.05 ms here)."""

    SQL = ("SELECT id FROM task WHERE status = 0 AND start_at <= %(due)s "
           "AND (claimed_until IS NULL OR claimed_until < %(now)s) ORDER BY start_at LIMIT 500")

    def __init__(self, database_url: str, lookahead_s: float = 2.0) -> None:
        self.engine = sa.create_engine(database_url, poolclass=NullPool)
        self.lookahead = timedelta(seconds=lookahead_s)
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            while not self._stop.is_set():
                now = datetime.now(timezone.utc).replace(tzinfo=None)  # stored as naive UTC
                t0 = time.perf_counter()
                cursor.execute(self.SQL, {"due": now + self.lookahead, "now": now})
                cursor.fetchall()
                self.times.append(time.perf_counter() - t0)
                conn.connection.driver_connection.rollback()  # type: ignore[union-attr]
                self._stop.wait(0.1)

    def start(self) -> ClaimProbe:
        self._thread.start()
        return self

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=10)
        self.engine.dispose()
        return p50_p99(self.times)


def run_fss(args: argparse.Namespace, n: int, profile: Path | None) -> Row:
    with bench(f"scale-fss-{n}") as run:
        run.fss_upgrade()
        window = Window(args, n)
        # Bulk rows (as add_group writes them): creating them is not what is measured here.
        t_load = time.monotonic()
        add_groups(run.database_url, window.first_at, int(window.interval_s * 1000), bulk=True)
        print(f"  (N={n}: bulk rows written in {time.monotonic() - t_load:.0f} s)", flush=True)
        scheduler = run.fss_scheduler()
        for i in range(args.workers):
            run.fss_worker(f"bench-w{i + 1}", args.concurrency, args.pool)
        run.wait_clients(args.workers)
        if time.time() > window.first:
            print(f"  (warning: fss start-up took past the first due run, N={n})")
        sleep_until(window.first)
        spy = start_profile(scheduler, args.window, profile) if profile else None
        meters = [CpuMeter([scheduler]).start(), CpuMeter(backend_pids(run.database_url)).start()]
        rss = RssSampler(scheduler).start()
        probe = ClaimProbe(run.database_url).start()
        sql_before = sql_counters(run.database_url)
        sleep_until(window.end)
        cpu = [m.stop() for m in meters]
        rss.stop()
        claim = probe.stop()
        sql_after = sql_counters(run.database_url)
        loadavg = load()
        if spy is not None:
            spy.wait(timeout=60)
        time.sleep(SETTLE_S)
        run.check_alive()
        tasks = fss_tasks(run.database_url)
    sent = [t for t in tasks if t.dispatched_at and window.inside(t.dispatched_at.timestamp())]
    late = [d for t in sent if (d := seconds(t.dispatched_at, t.start_at)) is not None]
    start_late = [d for t in sent if (d := seconds(t.run_at, t.start_at)) is not None]
    runs = max(len(sent), 1)
    SQL_ROWS.append([
        n, len(sent), f"{(sql_after[0] - sql_before[0]) / runs:.1f}",
        f"{(sql_after[1] - sql_before[1]) / runs:.1f}", f"{cpu[1]:.1f}",
    ])
    if profile:
        print(f"\nprofile of the fss scheduler at N={n} ({profile}):\n{profile_summary(profile)}\n")
    return [
        n, "fss scheduler", f"{window.due / window.seconds:.1f}",
        f"{len(sent) / window.seconds:.1f}", f"{100 * len(sent) / max(window.due, 1):.0f}%",
        p50_p99(late), p50_p99(start_late), f"{cpu[0]:.1f}", f"{rss.max_kb / 1024:.0f}",
        f"{cpu[1]:.1f}", claim, loadavg,
    ]


def run_beat(args: argparse.Namespace, n: int) -> Row:
    with bench(f"scale-beat-{n}", with_database=False) as run:
        for i in range(args.workers):
            run.celery_worker(f"celery-w{i + 1}", args.concurrency, args.pool)
        run.wait_plain_workers()
        window = Window(args, n)
        beat = run.celery_beat(
            {"interval_s": window.interval_s, "first_at": [t.timestamp() for t in window.first_at]}
        )
        sleep_until(window.first)
        meter = CpuMeter([beat]).start()
        rss = RssSampler(beat).start()
        sleep_until(window.end)
        cpu = meter.stop()
        rss.stop()
        loadavg = load()
        time.sleep(SETTLE_S)
        run.check_alive()
        stamps = [s for s in run.stamps() if window.inside(s[2])]
    late = [s[2] - s[0] for s in stamps]
    grid_late = [s[2] - s[1] for s in stamps if s[1] is not None]
    return [
        n, "celery beat", f"{window.due / window.seconds:.1f}",
        f"{len(stamps) / window.seconds:.1f}", f"{100 * len(stamps) / max(window.due, 1):.0f}%",
        p50_p99(late), p50_p99(grid_late), f"{cpu:.1f}", f"{rss.max_kb / 1024:.0f}", "-",
        "-", loadavg,
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print_header("bench.scale: scheduler cost at N schedules", ["bench.scale", *sys.argv[1:]])
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    every = (f"N / {args.due_rate:g} s" if args.due_rate else f"{args.interval_s:g} s")
    print(f"N schedules every {every} (phases spread), window {args.window:g} s "
          f"from the first due run; {args.workers} workers -P {args.pool} -c {args.concurrency}"
          "; broker Redis\n", flush=True)
    rows: list[Row] = []
    for n in sizes:
        for system in systems:
            t0 = time.monotonic()
            if system == "fss":
                rows.append(run_fss(args, n, args.profile if n == max(sizes) else None))
            elif system == "beat":
                rows.append(run_beat(args, n))
            else:
                raise SystemExit(f"unknown system {system!r}")
            print(f"  (N={n} {system} done in {time.monotonic() - t0:.0f} s, load {load()})",
                  flush=True)
    print()
    print(table(["N", "scheduler", "due/s", "sent/s", "sent/due", "late p50/p99 ms",
                 "start late p50/p99 ms", "CPU%", "RSS MB", "PG CPU%",
                 "claim lookup p50/p99 ms", "load 1/5/15"], rows))
    if SQL_ROWS:
        print("\nfss: PostgreSQL work per run dispatched in the window (pg_stat counters of the "
              "benchmark database; a run needs about 4 task-row updates: claim, dispatch, "
              "start, finish):")
        print(table(["N", "runs", "task rows updated/run", "commits/run", "PG CPU%"], SQL_ROWS))
    print("\nlate: fss = dispatched_at - start_at; beat = run start - beat's due time "
          "(last_run_at + interval).\nstart late: fss = run_at - start_at; "
          "beat = run start - fixed-rate grid time.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
