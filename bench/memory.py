"""Idle memory: `fss scheduler` and `fss worker` vs `celery beat` and `celery worker`.

    python3 -m bench.memory [--idle 20] [--concurrency 2] [--pool prefork]

Each system is started on an empty schedule (fss: no groups; beat: one entry every hour),
left idle for --idle seconds after it is ready, then its processes are read from /proc:
RSS (VmRSS), peak RSS (VmHWM) and PSS (smaps_rollup: shared pages divided among the
processes that share them, so a prefork child is not charged for what it shares with its
parent). The worker's main process and its pool children are separate rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.common import bench, load, print_header, status_kb, table, tree

Row = list[object]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=20, help="seconds idle before reading [20]")
    parser.add_argument("--concurrency", type=int, default=2, help="worker -c [2]")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads"])
    return parser.parse_args(argv)


def pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rows_for(label: str, pid: int) -> list[Row]:
    """One row for the process, one for its descendants (pool children), if any."""
    def mb(kb: int | None) -> str:
        return "-" if kb is None else f"{kb / 1024:.1f}"

    children = [p for p in tree(pid) if p != pid]
    rows: list[Row] = [[label, 1, mb(status_kb(pid, "VmRSS")), mb(status_kb(pid, "VmHWM")),
                        mb(pss_kb(pid)), load()]]
    if children:
        rss = [status_kb(p, "VmRSS") or 0 for p in children]
        pss = [pss_kb(p) or 0 for p in children]
        rows.append([f"  {label}: pool children (each, max)", len(children), mb(max(rss)),
                     "-", mb(max(pss)), load()])
        rows.append([f"  {label}: whole tree (sum)", len(children) + 1,
                     mb(sum(rss) + (status_kb(pid, "VmRSS") or 0)), "-",
                     mb(sum(pss) + (pss_kb(pid) or 0)), load()])
    return rows


def run_fss(args: argparse.Namespace) -> list[Row]:
    with bench("memory-fss") as run:
        run.fss_upgrade()
        scheduler = run.fss_scheduler()
        worker = run.fss_worker("bench-w1", args.concurrency, args.pool)
        run.wait_clients(1)
        time.sleep(args.idle)
        run.check_alive()
        return rows_for("fss scheduler", scheduler) + rows_for(
            f"fss worker -P {args.pool} -c {args.concurrency}", worker)


def run_celery(args: argparse.Namespace) -> list[Row]:
    with bench("memory-celery", with_database=False) as run:
        worker = run.celery_worker("celery-w1", args.concurrency, args.pool)
        run.wait_plain_workers()
        beat = run.celery_beat({"interval_s": 3600, "first_at": [time.time() + 3600]})
        time.sleep(args.idle)
        run.check_alive()
        return rows_for("celery beat (1 entry)", beat) + rows_for(
            f"celery worker -P {args.pool} -c {args.concurrency}", worker)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print_header("bench.memory: idle memory", ["bench.memory", *sys.argv[1:]])
    rows = run_fss(args) + run_celery(args)
    print(table(["idle process (MB)", "procs", "RSS", "peak RSS", "PSS", "load 1/5/15"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
