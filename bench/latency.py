"""Dispatch latency: planned time -> job start, fss vs plain Celery vs Celery beat.

    python3 -m bench.latency [--groups 20] [--interval-ms 1000] [--duration 30]

* fss: G interval groups (job bench-noop), one `fss scheduler`, one `fss worker`;
  latency = task.run_at - task.start_at (run_at is stamped by the worker when the job
  starts, start_at is the planned time). The dispatch part, dispatched_at - start_at, is shown
  as well.
* Celery apply_async(eta=planned): a producer sends G messages per tick, 0.5 s ahead, with
  eta = the tick; latency = task start - eta. And the floor: apply_async sent at the tick
  itself (no eta).
* Celery beat: a real `celery beat` with G entries every I. beat keeps no planned times: it
  sends an entry when now >= last_run_at + interval and then sets last_run_at = the time it
  sent. StampingScheduler (bench.common) passes last_run_at + interval along (beat's own due
  time), and origin + k * interval (the fixed-rate grid fss schedules on). Both are shown.

All three use the same Redis broker, the same Celery configuration (fss.celery_app) and the
same worker pool and concurrency. By default every schedule has the same phase (G runs due
at the same instant: a burst of G per tick); --spread spreads the phases over the interval.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime, timezone

from bench.common import (
    PLAIN_QUEUE,
    Bench,
    add_groups,
    bench,
    fss_tasks,
    load,
    phases,
    print_header,
    seconds,
    sending_app,
    sleep_until,
    summary_ms,
    table,
)

SETTLE_S = 2.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=20, help="schedules (G) [20]")
    parser.add_argument("--interval-ms", type=int, default=1000, help="interval (I) [1000]")
    parser.add_argument("--duration", type=float, default=30, help="seconds measured [30]")
    parser.add_argument("--concurrency", type=int, default=2, help="worker -c [2]")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (each -c CONCURRENCY), every system [1]")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    parser.add_argument("--spread", action="store_true",
                        help="spread the schedules' phases over the interval (default: aligned)")
    parser.add_argument("--systems", default="fss,eta,now,beat",
                        help="comma list of fss, eta, now, beat [all]")
    return parser.parse_args(argv)


class Window:
    def __init__(self, args: argparse.Namespace, lead_s: float) -> None:
        self.interval_s = args.interval_ms / 1000
        self.first = math.ceil(time.time()) + lead_s
        self.ticks = max(1, int(args.duration / self.interval_s))
        self.end = self.first + self.ticks * self.interval_s
        self.expected = self.ticks * args.groups

    def first_at(self, args: argparse.Namespace) -> list[float]:
        start = datetime.fromtimestamp(self.first, timezone.utc)
        return [t.timestamp() for t in phases(args.groups, start, self.interval_s, args.spread)]

    def contains(self, planned: float) -> bool:
        return self.first - 1e-3 <= planned < self.end - 1e-3


Row = list[object]


def run_fss(args: argparse.Namespace) -> list[Row]:
    with bench("latency-fss") as run:
        run.fss_upgrade()
        run.fss_scheduler()
        for n in range(1, args.workers + 1):
            run.fss_worker(f"bench-w{n}", args.concurrency, args.pool)
        run.wait_clients(args.workers)
        window = Window(args, lead_s=2)
        first = [datetime.fromtimestamp(t, timezone.utc) for t in window.first_at(args)]
        add_groups(run.database_url, first, args.interval_ms)
        sleep_until(window.end + SETTLE_S)
        run.check_alive()
        rows = [t for t in fss_tasks(run.database_url) if window.contains(t.start_at.timestamp())]
        loadavg = load()
    started = [d for t in rows if (d := seconds(t.run_at, t.start_at)) is not None]
    dispatched = [d for t in rows if (d := seconds(t.dispatched_at, t.start_at)) is not None]
    return [
        ["fss: job start (run_at - start_at)", len(started), window.expected,
         *summary_ms(started), loadavg],
        ["fss: dispatch (dispatched_at - start_at)", len(dispatched), window.expected,
         *summary_ms(dispatched), loadavg],
    ]


def _plain_producer(run: Bench, args: argparse.Namespace, window: Window, eta: bool) -> None:
    app = sending_app(run.broker_url)
    lead = min(0.5, window.interval_s / 2) if eta else 0.0
    offsets = [t - window.first for t in window.first_at(args)]
    with app.producer_or_acquire() as producer:
        for k in range(window.ticks):
            tick = window.first + k * window.interval_s
            for offset in sorted(set(offsets)):
                planned = tick + offset
                sleep_until(planned - lead)
                for _ in range(offsets.count(offset)):
                    options = {"eta": datetime.fromtimestamp(planned, timezone.utc)} if eta else {}
                    app.send_task("bench.stamp", kwargs={"planned": planned, "grid": planned},
                                  queue=PLAIN_QUEUE, producer=producer, **options)


def run_plain(args: argparse.Namespace, eta: bool) -> list[Row]:
    with bench("latency-celery", with_database=False) as run:
        for n in range(1, args.workers + 1):
            run.celery_worker(f"celery-w{n}", args.concurrency, args.pool)
        run.wait_plain_workers()
        window = Window(args, lead_s=1)
        _plain_producer(run, args, window, eta)
        sleep_until(window.end + SETTLE_S)
        run.check_alive()
        stamps = [s for s in run.stamps() if window.contains(s[0])]
        loadavg = load()
    started = [s[2] - s[0] for s in stamps]
    label = ("Celery apply_async(eta=planned), sent 0.5 s ahead" if eta
             else "Celery apply_async at the planned time (floor)")
    return [[label, len(started), window.expected, *summary_ms(started), loadavg]]


def run_beat(args: argparse.Namespace) -> list[Row]:
    with bench("latency-beat", with_database=False) as run:
        for n in range(1, args.workers + 1):
            run.celery_worker(f"celery-w{n}", args.concurrency, args.pool)
        run.wait_plain_workers()
        window = Window(args, lead_s=4)  # beat takes ~1.5 s to start
        run.celery_beat({"interval_s": window.interval_s, "first_at": window.first_at(args)})
        sleep_until(window.end + SETTLE_S)
        run.check_alive()
        stamps = [s for s in run.stamps() if s[1] is not None and window.contains(s[1])]
        loadavg = load()
    vs_due = [s[2] - s[0] for s in stamps]
    vs_grid = [s[2] - s[1] for s in stamps if s[1] is not None]
    return [
        ["Celery beat: start - beat's due (last_run_at + I)", len(vs_due), window.expected,
         *summary_ms(vs_due), loadavg],
        ["Celery beat: start - fixed-rate grid (origin + k*I)", len(vs_grid), window.expected,
         *summary_ms(vs_grid), loadavg],
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print_header("bench.latency: planned time -> job start", ["bench.latency", *sys.argv[1:]])
    phase = "spread over the interval" if args.spread else "aligned (a burst of G per tick)"
    print(f"G={args.groups} schedules every {args.interval_ms} ms for {args.duration:g} s, "
          f"phases {phase}; {args.workers} worker(s) -P {args.pool} -c {args.concurrency}; "
          "broker Redis\n",
          flush=True)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    rows: list[Row] = []
    for system in systems:
        t0 = time.monotonic()
        if system == "fss":
            rows += run_fss(args)
        elif system == "eta":
            rows += run_plain(args, eta=True)
        elif system == "now":
            rows += run_plain(args, eta=False)
        elif system == "beat":
            rows += run_beat(args)
        else:
            raise SystemExit(f"unknown system {system!r}")
        print(f"  ({system} done in {time.monotonic() - t0:.0f} s, load {load()})", flush=True)
    print()
    print(table(["latency (ms)", "runs", "expected", "p50", "p95", "p99", "max", "load 1/5/15"],
                rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
