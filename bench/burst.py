"""Burst: G cron groups all due in the same second; when does the last one start?

    python3 -m bench.burst [--groups 200] [--cron '*/10 * * * * *'] [--bursts 3]

* fss: G groups with the same cron (default every 10 s at second 0, 10, ...: every group
  due at the same instant, like `0 * * * * *` but six bursts a minute), job bench-noop, one
  `fss scheduler`, one `fss worker`. Per burst: last job start - the planned second
  (max of task.run_at - task.start_at), p50, and the last dispatch.
* plain Celery (the floor the issue compares with): at each burst instant the bench process
  sends G `apply_async` of `bench.stamp` through one producer; last start - the instant.

Same broker, same Celery configuration (fss.celery_app), same worker pool and concurrency.
The ratio is fss's last start / plain Celery's last start, burst by burst (median).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone

from bench.common import (
    PLAIN_QUEUE,
    bench,
    fmt_ms,
    fss_tasks,
    load,
    percentile,
    print_header,
    seconds,
    sending_app,
    sleep_until,
    table,
)

SETTLE_S = 3.0
Row = list[object]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.burst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=200, help="groups per burst (G) [200]")
    parser.add_argument("--cron", default="*/10 * * * * *",
                        help="the groups' cron (6 fields, seconds first) ['*/10 * * * * *']")
    parser.add_argument("--period-s", type=float, default=10,
                        help="seconds between the cron's firings (for the plain side) [10]")
    parser.add_argument("--bursts", type=int, default=3, help="bursts measured [3]")
    parser.add_argument("--concurrency", type=int, default=2, help="worker -c [2]")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    return parser.parse_args(argv)


def next_multiple(period_s: float, lead_s: float) -> float:
    return math.ceil((time.time() + lead_s) / period_s) * period_s


def burst_row(label: str, planned: float, delays: list[float], expected: int,
              dispatched: list[float] | None = None) -> Row:
    at = datetime.fromtimestamp(planned, timezone.utc).strftime("%H:%M:%S")
    return [
        label, at, len(delays), expected,
        fmt_ms(percentile(delays, 50)) if delays else "-",
        fmt_ms(max(delays)) if delays else "-",
        fmt_ms(max(dispatched)) if dispatched else "-",
        load(),
    ]


def run_fss(args: argparse.Namespace) -> tuple[list[Row], list[float]]:
    from fss.domain.group_spec import GroupSpec
    from fss.store.engine import create_engine
    from fss.store.groups import add_group

    with bench("burst-fss") as run:
        run.fss_upgrade()
        run.fss_scheduler()
        run.fss_worker("bench-w1", args.concurrency, args.pool)
        run.wait_clients(1)
        engine = create_engine(run.database_url)
        try:
            now = datetime.now(timezone.utc)
            for i in range(args.groups):
                add_group(engine, GroupSpec(caption=f"burst {i}", job_name="bench-noop",
                                            cron=args.cron), now)
        finally:
            engine.dispose()
        # The first firing is the next one after the groups were added: skip it if it is
        # closer than 2 s (the scheduler must have claimed them), measure the next bursts.
        first = next_multiple(args.period_s, 2.0)
        end = first + args.bursts * args.period_s
        sleep_until(end + SETTLE_S)
        run.check_alive()
        tasks = fss_tasks(run.database_url)
    by_burst: dict[float, list[tuple[float, float | None]]] = defaultdict(list)
    for t in tasks:
        planned = t.start_at.timestamp()
        if first - 1e-3 <= planned < end - 1e-3:
            by_burst[planned].append((seconds(t.run_at, t.start_at) or math.inf,
                                      seconds(t.dispatched_at, t.start_at)))
    rows, lasts = [], []
    for planned in sorted(by_burst):
        started = [s for s, _ in by_burst[planned] if s != math.inf]
        dispatched = [d for _, d in by_burst[planned] if d is not None]
        rows.append(burst_row("fss (cron groups)", planned, started, args.groups, dispatched))
        if len(started) == args.groups:
            lasts.append(max(started))
    return rows, lasts


def run_plain(args: argparse.Namespace) -> tuple[list[Row], list[float]]:
    with bench("burst-celery", with_database=False) as run:
        run.celery_worker("celery-w1", args.concurrency, args.pool)
        run.wait_plain_workers()
        app = sending_app(run.broker_url)
        first = next_multiple(args.period_s, 1.0)
        instants = [first + k * args.period_s for k in range(args.bursts)]
        with app.producer_or_acquire() as producer:
            for instant in instants:
                sleep_until(instant)
                for _ in range(args.groups):
                    app.send_task("bench.stamp", kwargs={"planned": instant, "grid": instant},
                                  queue=PLAIN_QUEUE, producer=producer)
        sleep_until(instants[-1] + args.period_s / 2 + SETTLE_S)
        run.check_alive()
        stamps = run.stamps()
    rows, lasts = [], []
    for instant in instants:
        started = [s[2] - s[0] for s in stamps if abs(s[0] - instant) < 1e-6]
        rows.append(burst_row("plain Celery: G apply_async at the instant", instant, started,
                              args.groups))
        if len(started) == args.groups:
            lasts.append(max(started))
    return rows, lasts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print_header("bench.burst: G runs due at one instant", ["bench.burst", *sys.argv[1:]])
    print(f"G={args.groups}, cron {args.cron!r} (every {args.period_s:g} s), {args.bursts} "
          f"bursts; one worker -P {args.pool} -c {args.concurrency}; broker Redis\n", flush=True)
    fss_rows, fss_lasts = run_fss(args)
    plain_rows, plain_lasts = run_plain(args)
    print(table(["burst (ms after the instant)", "at (UTC)", "started", "expected",
                 "p50 start", "last start", "last dispatch", "load 1/5/15"],
                fss_rows + plain_rows))
    if fss_lasts and plain_lasts:
        fss_median, plain_median = statistics.median(fss_lasts), statistics.median(plain_lasts)
        print(f"\nlast start, median of bursts: fss {fmt_ms(fss_median)} ms, plain Celery "
              f"{fmt_ms(plain_median)} ms, ratio {fss_median / plain_median:.2f} "
              "(target <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
