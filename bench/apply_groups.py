"""Schedules as code at scale: `fss group apply -f` with 10,000 groups (the issue asks < 10 s).

    python3 -m bench.apply_groups [--groups 10000] [--backends sqlite,postgres,mysql]
                                  [--format yaml|json] [--only-create | --steps K]

For each backend, on a throw-away database (`fss_bench_<hex>`, dropped afterwards; SQLite in
a temporary directory), it writes a YAML file of N groups (a mix of interval, cron with time
zones, job-set, disabled, with data) and times, as the user runs them:

* `fss group apply -f FILE` on the empty database (N creates, N waiting tasks), as a process;
* the same command again (nothing to change) and `fss group diff -f FILE`;
* apply after every group changed (caption + schedule: N updates, every waiting task moved);
* `fss group export` and `fss group apply --prune` of an empty file (N deletes).

Each figure is wall time, CPU time and peak RSS of the whole `fss` process (Python start-up
included, ~0.5 s here), plus, for the first apply, the in-process split: reading + validating
the file vs writing. `--only-create` times the first apply only (for 1,000,000 groups),
`--steps 2` the first apply and the unchanged re-apply.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from bench.common import PG_ADMIN_URL, create_database, drop_database, print_header, table
from fss.domain.group_file import GroupEntry, parse_group_file, render_group_file
from fss.domain.group_spec import GroupSpec
from fss.store.engine import create_engine
from fss.store.group_files import apply_groups
from fss.store.migrate import upgrade

MYSQL_ADMIN_URL = (
    os.environ.get("FSS_BENCH_MYSQL_URL")
    or os.environ.get("FSS_TEST_MYSQL_URL")
    or "mysql+pymysql://root@127.0.0.1:3306/mysql"
)
MYSQL_PREFIX = "fss_bench_"
ZONES = ("UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York")


def entries(count: int, variant: int = 0) -> list[GroupEntry]:
    return [GroupEntry(f"bench/{i:06}", spec(i, variant)) for i in range(count)]


def spec(i: int, variant: int) -> GroupSpec:
    caption = f"bench group {i}" + (" (changed)" if variant else "")
    job = f"bench.job{i % 20}"
    common: dict[str, Any] = {"caption": caption, "job_name": job, "data": {"n": i}}
    kind = i % 4
    if kind == 0:
        return GroupSpec(interval_ms=60_000 + 1000 * variant, **common)
    if kind == 1:
        cron = f"{(i + variant) % 60} */2 * * *"
        return GroupSpec(cron=cron, time_zone=ZONES[i % len(ZONES)], **common)
    if kind == 2:
        return GroupSpec(job_sets_next=True, timeout_s=300, misfire="skip", **common)
    return GroupSpec(interval_ms=3_600_000 + variant, is_enable=False, **common)


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    if backend == "postgres":
        url = create_database()
        try:
            yield url
        finally:
            drop_database(url)
        return
    with mysql_database() as url:
        yield url


@contextlib.contextmanager
def mysql_database() -> Iterator[str]:
    name = f"{MYSQL_PREFIX}{secrets.token_hex(4)}"
    admin = sa.create_engine(MYSQL_ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        url = sa.make_url(MYSQL_ADMIN_URL).set(database=name, query={"charset": "utf8mb4"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


def fss(url: str, *args: str, ok: Sequence[int] = (0,)) -> tuple[float, float, float]:
    """Wall time, CPU time (user + system) and peak RSS (MB) of one `fss` process; fails
    loudly on an unexpected exit code. CPU time is what a loaded machine changes least."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "fss", *args, "--database-url", url],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        peak_mb = 0.0
        while True:
            peak_mb = max(peak_mb, high_water_mb(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if process.returncode not in ok:
        raise SystemExit(f"fss {' '.join(args)} exited {process.returncode}: {stderr.strip()}")
    return elapsed, usage.ru_utime + usage.ru_stime, peak_mb


def high_water_mb(pid: int) -> float:
    """The process's peak RSS so far (VmHWM: its own, not the forking bench's, which
    `wait4`'s ru_maxrss would report after a vfork)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def in_process_split(url: str, path: Path) -> tuple[float, float]:
    """(read + validate, write) seconds of one apply, without the process around it."""
    started = time.perf_counter()
    parsed = parse_group_file(path.read_text(), path.name)
    parsed_at = time.perf_counter()
    engine = create_engine(url)
    try:
        apply_groups(engine, parsed, datetime.now(timezone.utc))
    finally:
        engine.dispose()
    return parsed_at - started, time.perf_counter() - parsed_at


STEPS = (
    ("apply (creates)", ["group", "apply", "-f", "{original}"], (0,)),
    ("apply again (no change)", ["group", "apply", "-f", "{original}"], (0,)),
    ("diff (in sync)", ["group", "diff", "-f", "{original}"], (0,)),
    ("diff (all changed)", ["group", "diff", "-f", "{changed}"], (1,)),
    ("apply (all updated)", ["group", "apply", "-f", "{changed}"], (0,)),
    ("export", ["group", "export", "-o", "{export}"], (0,)),
    ("apply --prune (deletes)", ["group", "apply", "--prune", "-f", "{empty}"], (0,)),
)


def write_files(workdir: Path, count: int, file_format: str, steps: int) -> dict[str, Path]:
    """The groups files of the steps; written once per size and format, reused by backends."""
    only_create = steps <= 2  # the first two steps read the original file only
    names = ("original",) if only_create else ("original", "changed", "empty")
    files = {name: workdir / f"{name}.{file_format}" for name in names}
    files["export"] = workdir / f"export.{file_format}"
    if not files["original"].exists():
        files["original"].write_text(render_group_file(entries(count), file_format))
        if not only_create:
            files["changed"].write_text(render_group_file(entries(count, 1), file_format))
            files["empty"].write_text(render_group_file([], file_format))
    return files


def run_backend(backend: str, files: dict[str, Path], workdir: Path, steps: int = len(STEPS)
                ) -> list[list[object]]:
    rows: list[list[object]] = []
    with database(backend, workdir) as url:
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        for step, args, ok in STEPS[:steps]:
            command = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
            seconds, cpu_s, peak_mb = fss(url, *command, ok=ok)
            rows.append([backend, step, f"{seconds:.2f}", f"{cpu_s:.2f}", f"{peak_mb:.0f}", load()])
        if steps < len(STEPS):
            return rows
        parse_s, write_s = in_process_split(url, files["original"])
        split = f"{parse_s:.2f} / {write_s:.2f}"
        rows.append([backend, "in process: read+validate / write", split, "-", "-", load()])
    return rows


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgres,mysql")
    parser.add_argument("--only-create", action="store_true",
                        help="time only the first apply (N creates): for very large N")
    parser.add_argument("--steps", type=int, default=len(STEPS),
                        help="time only the first K steps (2: creates, then apply unchanged)")
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml",
                        help="the groups files' format")
    args = parser.parse_args(argv)
    title = f"fss group apply with {args.groups} groups ({args.format})"
    print_header(title, ["bench.apply_groups", *sys.argv[1:]])
    print(f"PostgreSQL admin URL: {sa.make_url(PG_ADMIN_URL).render_as_string()}")
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="fss-bench-apply-") as workdir:
        steps = 1 if args.only_create else args.steps
        files = write_files(Path(workdir), args.groups, args.format, steps)
        for backend in args.backends.split(","):
            rows += run_backend(backend.strip(), files, Path(workdir), steps)
    columns = ["backend", "step", "seconds", "fss CPU s", "peak RSS MB", "load 1/5/15"]
    print(table(columns, rows))


if __name__ == "__main__":
    main()
