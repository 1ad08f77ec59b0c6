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
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import DATETIME
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
        self._tls = True

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
            else:
                have_ssl = conn.exec_driver_sql("SHOW VARIABLES LIKE 'have_ssl'").first()
                self._tls = have_ssl is not None and have_ssl[1] == "YES"

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
            if not self._tls:
                # PyMySQL (2.x) otherwise builds an SSL context with the system's CA store for
                # every connection to offer TLS, which a server without TLS never takes: 7.7 %
                # of the pytest workers' CPU in a full run (py-spy). A server with TLS keeps it.
                url = url.update_query_dict({"ssl_disabled": "true"})
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a fresh empty database (PostgreSQL: a copy of ``template``, a database
        this run created, when given); returns its SQLAlchemy URL string."""
        name = name or new_database_name()
        assert name.startswith(TEST_DB_PREFIX), name
        assert template is None or (self.kind == "postgres" and template.startswith(
            TEST_DB_PREFIX)), template
        with self.admin_connection() as conn:
            quoted = conn.dialect.identifier_preparer.quote(name)
            if self.kind == "postgres" and template is not None:
                source = conn.dialect.identifier_preparer.quote(template)
                conn.exec_driver_sql(f"CREATE DATABASE {quoted} TEMPLATE {source}")
            elif self.kind == "postgres":
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


# --------------------------------------------------------------------------------------------
# Migrated schema templates
# --------------------------------------------------------------------------------------------


class SchemaTemplates:
    """The fss schema at head, migrated once per backend and session and then copied.

    An alembic upgrade costs 0.2-2 s on SQLite, 0.5-0.9 s on PostgreSQL and 5-7 s on MariaDB
    (each of its ALTER TABLEs copies the table) on this 2-core machine. Each backend gets
    one template, built on first use with ``fss.store.migrate.upgrade`` into a database
    this session created (under xdist: one per worker), and every test database that needs
    the schema gets a copy of it:

    * SQLite: the template's file is copied (after a WAL checkpoint, so it holds everything).
    * PostgreSQL: ``CREATE DATABASE <db> TEMPLATE <template>`` (nothing stays connected to
      the template); a copy of the catalog, so tables, sequences, the trigger and its
      function come out as alembic made them.
    * MariaDB/MySQL: ``SHOW CREATE TABLE`` of every table replayed (foreign keys included),
      every trigger recreated under the sql_mode and character set it was created with, and
      the rows the migrations left (alembic_version) copied. A view, routine or event would
      not be copied: building the template fails if the migrations ever make one.

    tests/test_schema_templates.py proves each copy identical to a freshly migrated database.
    tests/store/test_migrations.py and the tests of ``fss db upgrade`` still migrate for real.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._servers: dict[str, SqlServer] = {}
        self._sqlite_file: Path | None = None
        self._pg_name: str | None = None
        self._mysql_name: str | None = None
        self._mysql_script: list[tuple[str, str]] | None = None  # (what, statement)
        self._mysql_triggers: list[tuple[str, str, str, str]] | None = None

    # -- public -------------------------------------------------------------------------------

    def server(self, kind: str) -> SqlServer:
        """This object's own connection to ``kind``'s server (it outlives the session
        fixtures of the servers: its templates are dropped last)."""
        if kind not in self._servers:
            server = SqlServer(kind, server_url(kind))
            server.check()
            self._servers[kind] = server
        return self._servers[kind]

    def fill(self, url: str) -> str:
        """Give the EMPTY database of ``url`` (one this run created) the schema at head, as
        ``fss.store.migrate.upgrade`` would; returns ``url``."""
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            path = Path(parsed.database or "")
            assert parsed.database and (not path.exists() or path.stat().st_size == 0), url
            shutil.copyfile(self._sqlite_template(), path)
            self._draw_identity(url)
        elif backend == "postgresql":
            name = parsed.database
            assert name and name.startswith(TEST_DB_PREFIX), name
            server = self.server("postgres")
            template = self._pg_template()
            server.drop_database(name)
            server.create_database(name, template=template)
            self._draw_identity(url)
        elif backend == "mysql":
            name = parsed.database
            assert name and name.startswith(TEST_DB_PREFIX), name
            self._mysql_fill(name)
            self._draw_identity(url)
        else:
            raise ValueError(url)
        return url

    def new_database(self, kind: str) -> str:
        """A new ``fss_test_*`` database on ``kind``'s server, migrated (a template copy);
        drop it with ``server(kind).drop_database``."""
        server = self.server(kind)
        if kind == "postgres":
            url = server.create_database(template=self._pg_template())
        else:
            url = server.create_database()
        try:
            if kind == "mysql":
                self._mysql_fill(str(make_url(url).database))
            self._draw_identity(url)
        except BaseException:
            server.drop_database(url)
            raise
        return url

    def close(self) -> None:
        if self._pg_name is not None:
            self.server("postgres").drop_database(self._pg_name)
            self._pg_name = None
        if self._mysql_name is not None:
            self.server("mysql").drop_database(self._mysql_name)
            self._mysql_name = None
        for server in self._servers.values():
            server.dispose()

    @staticmethod
    def _draw_identity(url: str) -> None:
        """What migration 0006 draws on each database: the installation's random id, made
        now. A copy would otherwise carry the template's (every copy the same one)."""
        installation = sa.Table(
            "installation", sa.MetaData(),
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("created_at", sa.DateTime().with_variant(DATETIME(fsp=6), "mysql")),
        )
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                changed = conn.execute(
                    installation.update().values(id=secrets.token_hex(4), created_at=now)
                ).rowcount
            assert changed == 1, f"the template holds {changed} installation rows"
        finally:
            engine.dispose()

    # -- building -----------------------------------------------------------------------------

    @staticmethod
    def _migrate(url: str) -> None:
        from fss.store.engine import create_engine
        from fss.store.migrate import upgrade

        engine = create_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def _sqlite_template(self) -> Path:
        if self._sqlite_file is None:
            path = self._directory / "template.db"
            self._migrate(f"sqlite:///{path}")
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
            self._sqlite_file = path
        return self._sqlite_file

    def _pg_template(self) -> str:
        if self._pg_name is None:
            server = self.server("postgres")
            url = server.create_database()
            name = str(make_url(url).database)
            try:
                self._migrate(url)
            except BaseException:
                server.drop_database(url)
                raise
            self._pg_name = name
        return self._pg_name

    def _mysql_template(self) -> str:
        if self._mysql_name is None:
            server = self.server("mysql")
            url = server.create_database()
            name = str(make_url(url).database)
            try:
                self._migrate(url)
                self._mysql_script, self._mysql_triggers = self._mysql_capture(server, name)
            except BaseException:
                server.drop_database(url)
                raise
            self._mysql_name = name
        return self._mysql_name

    @staticmethod
    def _mysql_capture(
        server: SqlServer, name: str
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
        with server.admin_connection() as conn:
            for what, table in (("view", "VIEWS"), ("routine", "ROUTINES"), ("event", "EVENTS")):
                schema_column = "ROUTINE_SCHEMA" if what == "routine" else (
                    "EVENT_SCHEMA" if what == "event" else "TABLE_SCHEMA")
                count = conn.execute(
                    sa.text(f"SELECT COUNT(*) FROM information_schema.{table} "
                            f"WHERE {schema_column} = :name"),
                    {"name": name},
                ).scalar_one()
                assert count == 0, (
                    f"the migrations made a {what}: SchemaTemplates (tests/servers.py) does "
                    "not copy those on MySQL yet"
                )
            prep = conn.dialect.identifier_preparer
            tables = conn.execute(
                sa.text("SELECT TABLE_NAME FROM information_schema.TABLES "
                        "WHERE TABLE_SCHEMA = :name AND TABLE_TYPE = 'BASE TABLE' "
                        "ORDER BY TABLE_NAME"),
                {"name": name},
            ).scalars().all()
            script: list[tuple[str, str]] = []
            for table in tables:
                qualified = f"{prep.quote(name)}.{prep.quote(table)}"
                create = conn.exec_driver_sql(f"SHOW CREATE TABLE {qualified}").one()[1]
                script.append(("table", str(create)))
            for table in tables:
                qualified = f"{prep.quote(name)}.{prep.quote(table)}"
                if conn.exec_driver_sql(f"SELECT 1 FROM {qualified} LIMIT 1").first():
                    script.append(("rows", table))
            triggers: list[tuple[str, str, str, str]] = []
            names = conn.execute(
                sa.text("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                        "WHERE TRIGGER_SCHEMA = :name ORDER BY ACTION_ORDER, TRIGGER_NAME"),
                {"name": name},
            ).scalars().all()
            for trigger in names:
                row = conn.exec_driver_sql(
                    f"SHOW CREATE TRIGGER {prep.quote(name)}.{prep.quote(trigger)}"
                ).one()._mapping
                triggers.append((
                    str(row["sql_mode"]), str(row["character_set_client"]),
                    str(row["collation_connection"]), str(row["SQL Original Statement"]),
                ))
        return script, triggers

    def _mysql_fill(self, name: str) -> None:
        template = self._mysql_template()
        assert self._mysql_script is not None and self._mysql_triggers is not None
        server = self.server("mysql")
        with server.admin_connection() as conn:
            prep = conn.dialect.identifier_preparer
            present = conn.execute(
                sa.text("SELECT COUNT(*) FROM information_schema.TABLES "
                        "WHERE TABLE_SCHEMA = :name"),
                {"name": name},
            ).scalar_one()
            assert present == 0, f"{name} is not empty"
            conn.exec_driver_sql(f"USE {prep.quote(name)}")
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            try:
                for what, statement in self._mysql_script:
                    if what == "table":
                        conn.exec_driver_sql(statement)
                    else:
                        conn.exec_driver_sql(
                            f"INSERT INTO {prep.quote(statement)} SELECT * FROM "
                            f"{prep.quote(template)}.{prep.quote(statement)}"
                        )
                for sql_mode, charset, collation, statement in self._mysql_triggers:
                    conn.execute(sa.text("SET SESSION sql_mode = :mode"), {"mode": sql_mode})
                    conn.exec_driver_sql(f"SET NAMES {charset} COLLATE {collation}")
                    # the driver's own cursor, without parameters: no %-formatting of the
                    # trigger's DATE_FORMAT(... '%Y-%m-%d ...')
                    driver = conn.connection.dbapi_connection
                    assert driver is not None
                    with contextlib.closing(driver.cursor()) as cur:
                        cur.execute(statement)
            finally:
                # the admin connection goes back to the pool: leave its session as it was
                conn.exec_driver_sql("SET SESSION foreign_key_checks = 1")
                conn.exec_driver_sql("SET SESSION sql_mode = DEFAULT")
                conn.exec_driver_sql("SET NAMES utf8mb4")
                conn.exec_driver_sql(f"USE {prep.quote(str(server.admin_url.database))}")


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


_session_templates: SchemaTemplates | None = None


@pytest.fixture(scope="session")
def schema_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaTemplates]:
    """Copies of the fss schema at head (see ``SchemaTemplates``): ``.fill(url)`` migrates a
    fresh empty database of this run, ``.new_database(kind)`` creates a migrated one.
    tests/conftest.py starts it for every session (it builds nothing until asked), so that
    helpers without fixtures can call ``migrated_copy``."""
    global _session_templates
    templates = SchemaTemplates(tmp_path_factory.mktemp("schema-templates"))
    _session_templates = templates
    try:
        yield templates
    finally:
        _session_templates = None
        templates.close()


def migrated_copy(url: str) -> str:
    """``schema_templates.fill(url)``: the empty database of ``url`` (one this test created:
    ``database_url``, ``pg_database_url``, ``mysql_database_url``, ``sqlite_url``) gets the
    schema at head as a copy of the session's template, instead of an alembic upgrade.
    Call it before the database is used (PostgreSQL: it is dropped and created again)."""
    if _session_templates is None:
        raise RuntimeError("migrated_copy needs the session fixture schema_templates")
    return _session_templates.fill(url)


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
