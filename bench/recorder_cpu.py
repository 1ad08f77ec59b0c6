"""CPU the recorder spends per run, measured apart from the rest of fss.

The full throughput bench (bench.throughput) runs a scheduler, workers, PostgreSQL and Redis
on one machine: on a shared host its CPU figures per process move with the load. This one
isolates the recorder: N dispatched tasks in a fresh database, the events a realistic run
sends (one message per run: started, the log line, the last progress, finished with "again
at once", as the worker's publisher batches them) pushed onto the events queue at a steady
rate by a separate feeder process, and one Recorder (the scheduler's, with its claim of the
next task) in this process recording them. Prints the process CPU per run recorded (user +
system, this process only: the feeder, PostgreSQL and Redis are apart), which is what a
change to the recorder moves.

    python3 -m bench.recorder_cpu --runs 6000 --rate 700 [--repeat 2] [--profile out.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import add_groups, bench, load, print_header

FEEDER = r"""
import sys, time, redis
url, path, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
items = [line.rstrip("\n") for line in open(path)]
client = redis.Redis.from_url(url)
step = 0.005
per_step = max(1, round(rate * step))
start = time.monotonic()
for n in range(0, len(items), per_step):
    due = start + (n / per_step) * step
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    client.lpush("fss.events", *items[n:n + per_step])
"""


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def envelopes(broker_url: str, bodies: list[str]) -> list[str]:
    """Each body as the worker's publisher puts it on the list (fss.redis_transport's
    push_json: kombu's envelope, base64 body, a fresh delivery tag)."""
    from kombu.connection import Connection
    from kombu.utils.json import dumps

    from fss.celery_app import transport_for

    with Connection(broker_url, transport=transport_for(broker_url)) as conn:
        channel: object = conn.default_channel
        out = []
        for body in bodies:
            message = channel.prepare_message(  # type: ignore[attr-defined]
                body, 0, "application/json", "utf-8", {}, {"delivery_mode": 2}
            )
            channel._inplace_augment_message(message, "", "fss.events")  # type: ignore[attr-defined]
            out.append(dumps(message))
    return out


def one(args: argparse.Namespace) -> float:
    from fss.config import Settings
    from fss.domain.clock import SystemClock
    from fss.events import TaskFinished, TaskLogged, TaskProgressed, TaskStarted, encode_batch
    from fss.scheduler.recorder import Recorder
    from fss.store.engine import create_engine
    from fss.store.installation import installation_id
    from fss.store.tables import task

    with bench("recorder-cpu") as run:
        run.fss_upgrade()
        now = datetime.now(timezone.utc)
        add_groups(run.database_url, [now + timedelta(hours=1)] * args.runs, 60_000, bulk=True)
        engine = create_engine(run.database_url, pre_ping=False)  # as `fss scheduler`
        installation = installation_id(engine)
        with engine.begin() as conn:
            conn.execute(
                task.update().values(
                    status=1, attempt=1, client_id="bench-c1", client_host="h",
                    client_ip="127.0.0.1", server_node="bench-n", dispatched_at=now,
                    reported_at=now,
                )
            )
            ids = conn.execute(sa.select(task.c.id).order_by(task.c.id)).scalars().all()
        bodies = []
        for tid in ids:
            at = datetime.now(timezone.utc)
            events = [
                TaskStarted(tid, 1, "bench-c1", at, installation=installation),
                TaskLogged(tid, 1, "bench-c1", 0, 2, f"bench run of task {tid}", at, seq=1,
                           installation=installation),
                TaskProgressed(tid, 1, "bench-c1", 70, at, installation=installation),
                TaskFinished(tid, 1, "bench-c1", True, 8, at + timedelta(milliseconds=8),
                             next_at=at, installation=installation),
            ]
            bodies.append(json.dumps(encode_batch(events)))
        items = run.workdir / "items.txt"
        items.write_text("\n".join(envelopes(run.broker_url, bodies)) + "\n")

        settings = Settings(database_url=run.database_url, broker_url=run.broker_url,
                            node_name="bench-n", event_batch=args.batch)
        claimed = [0]

        def on_claimed(batch: list[Any]) -> None:
            claimed[0] += len(batch)

        recorder = Recorder(engine, settings, SystemClock(), on_claimed=on_claimed,
                            installation=installation)
        stop = threading.Event()
        thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(1.0)  # connected and idle
        idle_from = cpu_s()
        time.sleep(1.0)
        idle_per_s = cpu_s() - idle_from
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(os.getpid()),
                 "--rate", "250", "--gil", "--format", "raw", "--output", str(args.profile),
                 "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        began, cpu0 = time.monotonic(), cpu_s()
        feeder = subprocess.Popen([sys.executable, "-c", FEEDER, run.broker_url, str(items),
                                   str(args.rate)])
        deadline = began + 10 * args.runs / args.rate + 60
        while recorder.totals.finished < args.runs and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu1, ended = cpu_s(), time.monotonic()
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=30)
        feeder.wait(timeout=60)
        stop.set()
        thread.join(timeout=10)
        totals = recorder.totals
        engine.dispose()
    wall = ended - began
    busy = cpu1 - cpu0 - idle_per_s * 0  # idle polling is part of the recorder's cost
    per_run = 1000 * busy / max(totals.finished, 1)
    print(f"  {totals.finished} finished / {totals.started} started / {totals.logged} logged / "
          f"{totals.progressed} progressed, {totals.ignored} ignored, {claimed[0]} next claimed, "
          f"{recorder.dead_letters} dead letters; {wall:.1f} s, CPU {busy:.2f} s "
          f"(idle {idle_per_s * 1000:.0f} ms/s): {per_run:.3f} ms/run; load {load()}",
          flush=True)
    return per_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=700, help="runs/s pushed [700]")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500,
                        help="the recorder's event_batch (messages per transaction at most); "
                             "pushed faster than it records, every batch is this size [500]")
    parser.add_argument("--profile", type=Path, help="py-spy --gil raw output (first repeat)")
    args = parser.parse_args(argv)
    print_header("bench.recorder_cpu: recorder CPU per run", sys.argv)
    import fss.scheduler.recorder

    print(f"recorder module: {fss.scheduler.recorder.__file__}")
    results = []
    for n in range(args.repeat):
        results.append(one(args))
        args.profile = None if n == 0 else args.profile
    print("ms/run: " + ", ".join(f"{r:.3f}" for r in results))


if __name__ == "__main__":
    main()
