"""CPU a worker's pool process spends per run on fss's path, measured apart from the rest.

What the prefork pool process does for one fss run, in a loop in this process: the prerun
(`WorkerRuntime.begin`: the order read, the fence entered on Redis, the context made), the job
(issue 20's realistic job: one record pushed to Redis, progress 30 and 70, one log line, "run
again at once"), and the postrun (`WorkerRuntime.end`: the `finished` event made and the run's
events published in one message). Real Redis (an empty db reserved for the run); the fence of
each task is armed before the timed loop, as the scheduler would. Prints the CPU time of this
process (its publisher thread included) per run, the best of `--repeat` loops: what a change to
the worker's hot path moves, without the whole bench's spread between runs.

    python3 -m bench.pool_cpu [--runs 3000] [--repeat 3] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import sys
import time
from datetime import datetime, timezone

from bench.common import JOB_ENV, load, print_header, redis_db


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.pool_cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3000, help="runs per timed loop [3000]")
    parser.add_argument("--repeat", type=int, default=3, help="timed loops, best kept [3]")
    parser.add_argument("--profile", help="cProfile one more loop into this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    print_header("bench.pool_cpu: a pool process's fss path per run", ["bench.pool_cpu",
                                                                       *sys.argv[1:]])
    # The job reads these per run: the realistic workload, its records on this db.
    os.environ[JOB_ENV] = "realistic"
    # A pool process of `fss worker -l WARNING`: the job's INFO line is not printed.
    logging.basicConfig(level=logging.WARNING)
    with redis_db() as url:
        os.environ["FSS_BROKER_URL"] = url
        import bench.common as jobs_module
        from fss.config import Settings
        from fss.fence import RedisFence
        from fss.orders import RunOrder
        from fss.worker_sdk.job import discover_jobs
        from fss.worker_sdk.runtime import WorkerRuntime

        runtime = WorkerRuntime(Settings(database_url="sqlite://", broker_url=url), "w1",
                                discover_jobs([jobs_module]))
        fence = RedisFence(url)
        planned = datetime.now(timezone.utc)

        def loop(first_task_id: int, runs: int) -> float:
            for task_id in range(first_task_id, first_task_id + runs):
                fence.arm(task_id, 1)
            started = time.process_time()
            for task_id in range(first_task_id, first_task_id + runs):
                order = RunOrder(task_id=task_id, attempt=1, group_id=1,
                                 job_name=jobs_module.AGAIN_JOB, client_id="w1",
                                 start_at=planned, data={})
                delivery = runtime.begin(f"celery-{task_id}", order.to_kwargs(), None)
                runtime.run(delivery)
                runtime.end(delivery, "SUCCESS")
            return time.process_time() - started

        try:
            loop(1, min(300, args.runs))  # warm: connections, scripts loaded, caches
            per_run = [loop(1_000_000 * (k + 1), args.runs) / args.runs
                       for k in range(args.repeat)]
            print(f"CPU per run: best {min(per_run) * 1e6:.1f} us, all "
                  f"{' / '.join(f'{t * 1e6:.1f}' for t in per_run)} us "
                  f"({args.runs} runs each; load {load()})")
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                loop(9_000_000, args.runs)
                profiler.disable()
                profiler.dump_stats(args.profile)
                print(f"cProfile of one more loop: {args.profile}")
        finally:
            runtime.close()
            fence.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
