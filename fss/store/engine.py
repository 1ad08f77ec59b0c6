"""Engine factory: one per process, built from the URL, tuned per backend."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
# libpq waits for the OS (minutes) on a host that drops packets: every page and loop would
# hang that long instead of saying the database is down. A URL's own connect_timeout wins.
CONNECT_TIMEOUT_S = 10


def normalize_url(url: str) -> str:
    """Accept the short driver-less forms users type and pick the drivers fss ships with."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    if url.startswith(("mysql://", "mariadb://")):
        url = "mysql+pymysql://" + url.split("://", 1)[1]
    if url.startswith("mysql") and "charset=" not in url:
        # Full UTF-8 on the wire too; the driver's default may be a 3-byte charset.
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return url


def create_engine(url: str, pre_ping: bool = True, **options: Any) -> Engine:
    """`pre_ping=False` saves a `SELECT 1` round trip per checkout, for a process whose
    every database loop already treats a dropped connection as transient and retries (the
    scheduler: its recorder, claim loop and supervisor); a pooled connection that died
    then fails one iteration instead of being replaced silently."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **options)
    kwargs: dict[str, Any] = {"pool_pre_ping": pre_ping, "pool_recycle": 1800, "future": True}
    if url.startswith("mysql"):
        # SKIP LOCKED claims rely on row locks only; REPEATABLE READ adds gap locks.
        kwargs["isolation_level"] = "READ COMMITTED"
    if url.startswith("postgresql") and "connect_timeout=" not in url:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    kwargs.update(options)
    return sa.create_engine(url, **kwargs)


def _sqlite_engine(url: str, **options: Any) -> Engine:
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **options,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # One writer at a time: take the write lock up front so two schedulers never
        # read the same due rows and then race to claim them.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
