"""Pytest fixtures that hand tests real PostgreSQL, MariaDB/MySQL, SQLite and Redis servers.

Servers come from environment variables (defaults in brackets):

* ``FSS_TEST_POSTGRES_URL`` [postgresql+psycopg2://postgres@127.0.0.1:5432/postgres]
* ``FSS_TEST_MYSQL_URL``    [mysql+pymysql://root@127.0.0.1:3306/mysql]
* ``FSS_TEST_REDIS_URL``    [redis://127.0.0.1:6379/0]

The SQL URLs are *admin* URLs: the fixtures connect there only to CREATE / DROP their own
``fss_test_<8 hex>`` databases. In Redis the fixtures only use database numbers 1..15 that are
empty when reserved; a reservation is a key ``fss:test:dbs:<n>`` in the URL's own database
(db 0 by default), set NX with a one hour expiry, so concurrent test runs never share a db.
When none is free, the run starts a throwaway redis-server of its own (``tests/throwaway.py``)
and takes its databases instead.
Nothing a test run did not create is ever touched.

A server that cannot be reached makes the fixture FAIL (never skip), with the command that
starts it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool
from throwaway import ThrowawayRedis

POSTGRES_URL_ENV = "FSS_TEST_POSTGRES_URL"
MYSQL_URL_ENV = "FSS_TEST_MYSQL_URL"
REDIS_URL_ENV = "FSS_TEST_REDIS_URL"

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/mysql"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

TEST_DB_PREFIX = "fss_test_"
REDIS_RESERVATION_PREFIX = "fss:test:dbs:"
REDIS_RESERVATION_TTL_S = 3600
REDIS_TEST_DBS = range(1, 16)

CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT_S = 30

_ENSURE = "bash scripts/ensure_services.sh"
START_COMMANDS = {
    "postgres": (
        f"{_ENSURE}  (or: pg_ctlcluster --skip-systemctl-redirect "
        "$(ls /etc/postgresql) main start)"
    ),
    "mysql": (
        f"{_ENSURE}  (or: start-stop-daemon --start --oknodo --background "
        "--exec /usr/sbin/mariadbd)"
    ),
    "redis": (
        f'{_ENSURE}  (or: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log)"
    ),
}
_ENV_OF = {"postgres": POSTGRES_URL_ENV, "mysql": MYSQL_URL_ENV, "redis": REDIS_URL_ENV}


def server_url(kind: str) -> str:
    """The admin/base URL for ``kind`` ("postgres", "mysql" or "redis") from the environment."""
    default = {"postgres": DEFAULT_POSTGRES_URL, "mysql": DEFAULT_MYSQL_URL,
               "redis": DEFAULT_REDIS_URL}[kind]
    return os.environ.get(_ENV_OF[kind]) or default


def new_database_name() -> str:
    return f"{TEST_DB_PREFIX}{secrets.token_hex(4)}"


def _fail_unreachable(kind: str, shown_url: str, exc: BaseException) -> NoReturn:
    pytest.fail(
        f"{kind} server not reachable at {shown_url}: {type(exc).__name__}: {exc}\n"
        f"Start it with: {START_COMMANDS[kind]}\n"
        f"or point {_ENV_OF[kind]} at a running server.",
        pytrace=False,
    )


# --------------------------------------------------------------------------------------------
# SQL servers
# --------------------------------------------------------------------------------------------


class SqlServer:
    """One PostgreSQL or MariaDB/MySQL server, reached through its admin URL.

    Creates and drops ``fss_test_*`` databases; keeps one pooled AUTOCOMMIT admin connection.
    """

    def __init__(self, kind: str, admin_url: str) -> None:
        if kind not in ("postgres", "mysql"):
            raise ValueError(kind)
        self.kind = kind
        self.admin_url: URL = make_url(admin_url)
        self._engine: sa.Engine | None = None
        self._version: int | None = None

    # -- connections ------------------------------------------------------------------------

    def _connect_args(self) -> dict[str, object]:
        return {"connect_timeout": CONNECT_TIMEOUT_S}

    def _admin_engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(
                self.admin_url,
                isolation_level="AUTOCOMMIT",
                pool_size=1,
                max_overflow=2,
                pool_pre_ping=True,
                connect_args=self._connect_args(),
            )
        return self._engine

    def admin_connection(self) -> sa.Connection:
        """A connection to the admin database; the fixture fails if the server is down."""
        error: BaseException | None = None
        try:
            conn = self._admin_engine().connect()
        except sa.exc.OperationalError as exc:
            error = exc.orig or exc
        if error is not None:  # outside the except block: no chained tracebacks
            _fail_unreachable(self.kind, self.shown_url, error)
        if self.kind == "postgres":
            conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        else:
            conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {LOCK_TIMEOUT_S}")
        return conn

    @property
    def shown_url(self) -> str:
        return self.admin_url.render_as_string(hide_password=True)

    def check(self) -> None:
        """Fail the calling fixture unless the server answers (and learn its version)."""
        with self.admin_connection() as conn:
            conn.exec_driver_sql("SELECT 1")
            if self.kind == "postgres":
                self._version = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one())

    @property
    def pg_version(self) -> int:
        """PostgreSQL ``server_version_num`` (e.g. 150019)."""
        if self._version is None:
            with self.admin_connection() as conn:
                self._version = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one())
        return self._version

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- databases ---------------------------------------------------------------------------

    def url_for(self, name: str) -> str:
        url = self.admin_url.set(database=name)
        if self.kind == "mysql":
            url = url.update_query_dict({"charset": "utf8mb4"})
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh empty database; returns its SQLAlchemy URL string."""
        name = name or new_database_name()
        assert name.startswith(TEST_DB_PREFIX), name
        with self.admin_connection() as conn:
            quoted = conn.dialect.identifier_preparer.quote(name)
            if self.kind == "postgres":
                conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            else:
                conn.exec_driver_sql(
                    f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        return self.url_for(name)

    def drop_database(self, url_or_name: str) -> None:
        """Drop a database this run created, first ending connections left open to it."""
        name = url_or_name if "://" not in url_or_name else make_url(url_or_name).database
        assert name and name.startswith(TEST_DB_PREFIX), name
        with self.admin_connection() as conn:
            quoted = conn.dialect.identifier_preparer.quote(name)
            if self.kind == "postgres":
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                force = " WITH (FORCE)" if self.pg_version >= 130000 else ""
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}{force}")
            else:
                self._kill_mysql_sessions(conn, name)
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")

    @staticmethod
    def _kill_mysql_sessions(conn: sa.Connection, name: str) -> None:
        ids = conn.execute(
            sa.text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = :name AND id <> CONNECTION_ID()"
            ),
            {"name": name},
        ).scalars().all()
        for session_id in ids:
            with contextlib.suppress(sa.exc.DBAPIError):  # already gone
                conn.exec_driver_sql(f"KILL {int(session_id)}")

    def reset_database(self, url: str) -> None:
        """Empty a PostgreSQL database this run created: end its other sessions, drop every
        non-system schema (tables, sequences, types, views, functions) and recreate ``public``.
        """
        assert self.kind == "postgres"
        name = make_url(url).database
        assert name and name.startswith(TEST_DB_PREFIX), name
        engine = sa.create_engine(
            url, isolation_level="AUTOCOMMIT", poolclass=NullPool,
            connect_args=self._connect_args(),
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                schemas = conn.exec_driver_sql(
                    "SELECT nspname FROM pg_namespace "
                    "WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
                ).scalars().all()
                prep = conn.dialect.identifier_preparer
                for schema in schemas:
                    conn.exec_driver_sql(f"DROP SCHEMA {prep.quote(schema)} CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
                if self.pg_version >= 150000:
                    conn.exec_driver_sql("ALTER SCHEMA public OWNER TO pg_database_owner")
                    conn.exec_driver_sql("GRANT USAGE ON SCHEMA public TO PUBLIC")
                else:
                    conn.exec_driver_sql("GRANT ALL ON SCHEMA public TO PUBLIC")
        finally:
            engine.dispose()


@dataclass
class ReusableDatabase:
    """A session-long database handed to one test at a time, emptied between tests."""

    server: SqlServer
    url: str
    dirty: bool = False

    def checkout(self) -> str:
        if self.dirty:
            self.server.reset_database(self.url)
        self.dirty = True
        return self.url


def _sql_server(kind: str) -> Iterator[SqlServer]:
    server = SqlServer(kind, server_url(kind))
    try:
        server.check()
        yield server
    finally:
        server.dispose()


def _session_database(server: SqlServer) -> Iterator[str]:
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[SqlServer]:
    """The PostgreSQL server of ``FSS_TEST_POSTGRES_URL`` (fails if unreachable)."""
    yield from _sql_server("postgres")


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[SqlServer]:
    """The MariaDB/MySQL server of ``FSS_TEST_MYSQL_URL`` (fails if unreachable)."""
    yield from _sql_server("mysql")


@pytest.fixture(scope="session")
def postgres_url(postgres_server: SqlServer) -> Iterator[str]:
    """URL of a PostgreSQL database ``fss_test_<hex>`` created for the session, dropped after.

    Shared by every test that asks for it: its contents persist between tests.
    """
    yield from _session_database(postgres_server)


@pytest.fixture(scope="session")
def mysql_url(mysql_server: SqlServer) -> Iterator[str]:
    """URL (``...?charset=utf8mb4``) of a MariaDB database created for the session."""
    yield from _session_database(mysql_server)


@pytest.fixture
def pg_database_url(postgres_server: SqlServer) -> Iterator[str]:
    """URL of a fresh PostgreSQL database created for this test and dropped after it."""
    yield from _session_database(postgres_server)


@pytest.fixture
def mysql_database_url(mysql_server: SqlServer) -> Iterator[str]:
    """URL of a fresh MariaDB database created for this test and dropped after it."""
    yield from _session_database(mysql_server)


@pytest.fixture(scope="session")
def _pg_reusable_database(postgres_server: SqlServer) -> Iterator[ReusableDatabase]:
    url = postgres_server.create_database()
    try:
        yield ReusableDatabase(postgres_server, url)
    finally:
        postgres_server.drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """``sqlite:///<tmp_path>/fss.db`` (file created on first connect)."""
    return f"sqlite:///{tmp_path / 'fss.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres"),
        pytest.param("mysql", id="mysql"),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database for this test, once per backend.

    sqlite: a file in ``tmp_path``. mysql: a fresh database per test (CREATE+DROP ~5 ms).
    postgres: one session database emptied (schemas dropped, other sessions terminated)
    before each test that gets it, because CREATE DATABASE costs 60-300 ms there.
    The backend name is ``request.param``; tests can read it via ``database_backend``.
    """
    backend: str = request.param
    if backend == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    if backend == "mysql":
        return str(request.getfixturevalue("mysql_database_url"))
    reusable: ReusableDatabase = request.getfixturevalue("_pg_reusable_database")
    return reusable.checkout()


@pytest.fixture
def database_backend(database_url: str) -> str:
    """"sqlite", "postgres" or "mysql": the backend of ``database_url``."""
    return {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql"}[
        make_url(database_url).get_backend_name()
    ]


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def redis_url_for_db(base_url: str, db: int) -> str:
    """``base_url`` with its database number replaced by ``db``."""
    parts = urlsplit(base_url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", query, parts.fragment))


def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=LOCK_TIMEOUT_S
    )


@dataclass
class RedisReservation:
    """Redis database ``db`` reserved by this run (key ``fss:test:dbs:<db>`` holds ``token``).

    ``overflow`` reservations live on this run's own throwaway redis-server (see
    ``RedisDbPool.reserve``): no key guards them, nobody else can reach them.
    """

    db: int
    url: str
    token: str
    size_at_reserve: int = 0
    overflow: bool = False

    @property
    def key(self) -> str:
        return f"{REDIS_RESERVATION_PREFIX}{self.db}"


class RedisDbPool:
    """Hands out empty Redis databases 1..15, reserved against concurrent test runs.

    When the shared server has no empty, unreserved database left (other runs, or someone
    else's data in them), the pool starts a throwaway redis-server of its own from the
    installed binary and hands out its databases instead, so a busy shared Redis slows
    nothing and fails nothing.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.held: list[RedisReservation] = []
        parts = urlsplit(base_url)
        path_db = parts.path.strip("/")
        query_db = dict(parse_qsl(parts.query)).get("db", "")
        self.control_db = int(path_db or query_db or 0)
        self.control_url = redis_url_for_db(self.base_url, self.control_db)
        self._control: redis.Redis | None = None
        self._overflow: ThrowawayRedis | None = None
        self._overflow_free: list[int] = []

    @property
    def shown_url(self) -> str:
        parts = urlsplit(self.control_url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def control(self) -> redis.Redis:
        if self._control is None:
            client = _redis_client(self.control_url)
            error: BaseException | None = None
            try:
                client.ping()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                error = exc
            if error is not None:  # outside the except block: no chained tracebacks
                client.close()
                _fail_unreachable("redis", self.shown_url, error)
            self._control = client
        return self._control

    def reserve(self) -> RedisReservation:
        control = self.control()
        self.refresh()
        token = f"{os.getpid()}:{uuid.uuid4().hex}"
        for db in REDIS_TEST_DBS:
            if db == self.control_db:
                continue
            key = f"{REDIS_RESERVATION_PREFIX}{db}"
            if not control.set(key, token, nx=True, ex=REDIS_RESERVATION_TTL_S):
                continue  # another run (or this one) holds it
            res = RedisReservation(db, redis_url_for_db(self.base_url, db), token)
            try:
                with _redis_client(res.url) as client:
                    res.size_at_reserve = int(client.dbsize())
            except redis.ResponseError:  # "DB index is out of range": fewer databases
                control.eval(_RELEASE_LUA, 1, key, token)
                break
            if res.size_at_reserve:  # someone else's data: leave it alone
                control.eval(_RELEASE_LUA, 1, key, token)
                continue
            self.held.append(res)
            return res
        return self._reserve_overflow()

    def _reserve_overflow(self) -> RedisReservation:
        if self._overflow is None:
            server = ThrowawayRedis(durable=False)
            server.start()
            self._overflow = server
            self._overflow_free = list(REDIS_TEST_DBS)
        if not self._overflow_free:
            pytest.fail(
                f"no empty Redis database left: the shared server {self.shown_url} and this "
                f"run's own redis-server (port {self._overflow.port}) are both taken (this run "
                f"holds {len(self.held)}). Reserve fewer at once.",
                pytrace=False,
            )
        db = self._overflow_free.pop(0)
        res = RedisReservation(db, self._overflow.url(db), "overflow", overflow=True)
        self.held.append(res)
        return res

    def refresh(self) -> None:
        """Extend the expiry of every reservation this run still holds."""
        if not self.held:
            return
        control = self.control()
        for res in self.held:
            if not res.overflow and control.get(res.key) == res.token.encode():
                control.expire(res.key, REDIS_RESERVATION_TTL_S)

    def release(self, res: RedisReservation) -> None:
        """FLUSHDB the reserved database (only while still ours), then drop the reservation."""
        if res in self.held:
            self.held.remove(res)
        if res.overflow:
            if self._overflow is not None and self._overflow.running:
                with _redis_client(res.url) as client:
                    client.flushdb()
                self._overflow_free.append(res.db)
            return
        control = self.control()
        if control.get(res.key) == res.token.encode():
            with _redis_client(res.url) as client:
                client.flushdb()
            control.eval(_RELEASE_LUA, 1, res.key, res.token)

    def close(self) -> None:
        for res in list(reversed(self.held)):
            self.release(res)
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._overflow is not None:
            self._overflow.close()
            self._overflow = None


@pytest.fixture(scope="session")
def redis_pool() -> Iterator[RedisDbPool]:
    """Reserves empty Redis databases for this session (fails if Redis is unreachable)."""
    pool = RedisDbPool(server_url("redis"))
    pool.control()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def redis_reservation(redis_pool: RedisDbPool) -> Iterator[RedisReservation]:
    """The session's reserved Redis database (see ``redis_url``)."""
    res = redis_pool.reserve()
    try:
        yield res
    finally:
        redis_pool.release(res)


@pytest.fixture(scope="session")
def redis_url(redis_reservation: RedisReservation) -> str:
    """``redis://127.0.0.1:6379/<n>``: an empty db reserved for the whole session.

    Shared by every test that asks for it; FLUSHDB and released at session end.
    """
    return redis_reservation.url


@pytest.fixture
def fresh_redis_url(redis_pool: RedisDbPool) -> Iterator[Callable[[], str]]:
    """Factory: each call reserves another empty Redis db and returns its URL.

    Every db reserved through it is flushed and released after the test. Fifteen dbs exist in
    all (shared with concurrent runs), so take only what the test needs.
    """
    taken: list[RedisReservation] = []

    def reserve() -> str:
        res = redis_pool.reserve()
        taken.append(res)
        return res.url

    yield reserve
    for res in reversed(taken):
        redis_pool.release(res)


# --------------------------------------------------------------------------------------------
# misc
# --------------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05,
             what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
