"""Schedules as code at scale: `fss group apply -f` with 10,000 groups (the issue asks < 10 s).

    python3 -m bench.apply_groups [--groups 10000] [--backends sqlite,postgres,mysql]

For each backend, on a throw-away database (`fss_bench_<hex>`, dropped afterwards; SQLite in
a temporary directory), it writes a YAML file of N groups (a mix of interval, cron with time
zones, job-set, disabled, with data) and times, as the user runs them:

* `fss group apply -f FILE` on the empty database (N creates, N waiting tasks), as a process;
* the same command again (nothing to change) and `fss group diff -f FILE`;
* apply after every group changed (caption + schedule: N updates, every waiting task moved);
* `fss group export` and `fss group apply --prune` of an empty file (N deletes).

Each figure is wall time of the whole `fss` process (Python start-up included, ~0.5 s here),
plus, for the first apply, the in-process split: reading + validating the file vs writing.
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


def fss(url: str, *args: str, ok: Sequence[int] = (0,)) -> float:
    """Wall time of one `fss` process; fails loudly on an unexpected exit code."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "fss", *args, "--database-url", url],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in ok:
        raise SystemExit(f"fss {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def in_process_split(url: str, text: str) -> tuple[float, float]:
    """(read + validate, write) seconds of one apply, without the process around it."""
    started = time.perf_counter()
    parsed = parse_group_file(text, "groups.yaml")
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


def run_backend(backend: str, count: int, workdir: Path, only_create: bool = False
                ) -> list[list[object]]:
    files = {name: workdir / f"{name}.yaml" for name in ("original", "changed", "empty", "export")}
    files["original"].write_text(render_group_file(entries(count)))
    files["changed"].write_text(render_group_file(entries(count, variant=1)))
    files["empty"].write_text("groups: []\n")
    rows: list[list[object]] = []
    with database(backend, workdir) as url:
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        for step, args, ok in STEPS[:1] if only_create else STEPS:
            command = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
            rows.append([backend, step, f"{fss(url, *command, ok=ok):.2f}"])
        if only_create:
            return rows
        parse_s, write_s = in_process_split(url, files["original"].read_text())
        split = f"{parse_s:.2f} / {write_s:.2f}"
        rows.append([backend, "in process: read+validate / write", split])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgres,mysql")
    parser.add_argument("--only-create", action="store_true",
                        help="time only the first apply (N creates): for very large N")
    args = parser.parse_args(argv)
    title = f"fss group apply with {args.groups} groups"
    print_header(title, ["bench.apply_groups", *sys.argv[1:]])
    print(f"PostgreSQL admin URL: {sa.make_url(PG_ADMIN_URL).render_as_string()}")
    rows: list[list[object]] = []
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="fss-bench-apply-") as workdir:
            rows += run_backend(backend.strip(), args.groups, Path(workdir),
                                args.only_create)
    print(table(["backend", "step", "seconds"], rows))


if __name__ == "__main__":
    main()
