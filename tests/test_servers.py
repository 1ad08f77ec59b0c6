"""Prove the server fixtures of ``tests/servers.py``: real, private, writable, cleaned up."""

from __future__ import annotations

from collections.abc import Callable

import redis
import sqlalchemy as sa
from servers import (
    REDIS_RESERVATION_PREFIX,
    REDIS_TEST_DBS,
    TEST_DB_PREFIX,
    RedisDbPool,
    RedisReservation,
    SqlServer,
    redis_url_for_db,
)
from sqlalchemy.engine import make_url
from throwaway import ThrowawayRedis


def _roundtrip(url: str) -> list[tuple[int, str]]:
    """Create a table, insert a row, read it back; the database must start empty."""
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        meta = sa.MetaData()
        probe = sa.Table(
            "probe",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
        )
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(probe.insert(), [{"id": 1, "name": "héllo ✓"}])
        with engine.connect() as conn:
            return [(r.id, r.name) for r in conn.execute(sa.select(probe))]
    finally:
        engine.dispose()


def _databases(server: SqlServer) -> set[str]:
    with server.admin_connection() as conn:
        if server.kind == "postgres":
            rows = conn.exec_driver_sql("SELECT datname FROM pg_database")
        else:
            rows = conn.exec_driver_sql("SHOW DATABASES")
        return {str(r[0]) for r in rows}


def test_postgres_url_is_a_private_writable_database(
    postgres_url: str, postgres_server: SqlServer
) -> None:
    url = make_url(postgres_url)
    assert url.get_backend_name() == "postgresql"
    assert url.database is not None and url.database.startswith(TEST_DB_PREFIX)
    assert url.database in _databases(postgres_server)
    assert _roundtrip(postgres_url) == [(1, "héllo ✓")]
    # leave it clean for any later test that shares the session database
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE probe")
    finally:
        engine.dispose()


def test_mysql_url_is_a_private_writable_utf8mb4_database(
    mysql_url: str, mysql_server: SqlServer
) -> None:
    url = make_url(mysql_url)
    assert url.get_backend_name() == "mysql"
    assert url.query.get("charset") == "utf8mb4"
    assert url.database is not None and url.database.startswith(TEST_DB_PREFIX)
    assert url.database in _databases(mysql_server)
    assert _roundtrip(mysql_url) == [(1, "héllo ✓")]
    engine = sa.create_engine(mysql_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE probe")
    finally:
        engine.dispose()


def test_pg_database_url_is_fresh_per_test(
    pg_database_url: str, postgres_url: str, postgres_server: SqlServer
) -> None:
    name = make_url(pg_database_url).database
    assert name is not None and name.startswith(TEST_DB_PREFIX)
    assert name != make_url(postgres_url).database
    assert name in _databases(postgres_server)
    assert _roundtrip(pg_database_url) == [(1, "héllo ✓")]


def test_mysql_database_url_is_dropped_after_use(mysql_server: SqlServer) -> None:
    url = mysql_server.create_database()
    name = make_url(url).database
    assert name in _databases(mysql_server)
    engine = sa.create_engine(url)  # a connection left open must not block the DROP
    conn = engine.connect()
    try:
        mysql_server.drop_database(url)
        assert name not in _databases(mysql_server)
    finally:
        conn.invalidate()
        conn.close()
        engine.dispose()


def test_pg_drop_ends_open_sessions(postgres_server: SqlServer) -> None:
    url = postgres_server.create_database()
    name = make_url(url).database
    engine = sa.create_engine(url)
    conn = engine.connect()
    conn.exec_driver_sql("SELECT 1")
    try:
        postgres_server.drop_database(url)
        assert name not in _databases(postgres_server)
    finally:
        conn.invalidate()
        conn.close()
        engine.dispose()


def test_sqlite_url_is_in_tmp_path(sqlite_url: str, tmp_path: object) -> None:
    assert sqlite_url == f"sqlite:///{tmp_path}/fss.db"
    assert _roundtrip(sqlite_url) == [(1, "héllo ✓")]


# Each of the three tests below runs once per backend, and every run must find an empty database
# although the run before it left a table, a sequence, an enum type, a schema and a connection
# idle in a transaction that holds a lock (the fixture must end such sessions).
_LEAKED: dict[str, list[tuple[sa.Engine, sa.Connection]]] = {}


def _forget_leaked(backend: str) -> None:
    for engine, conn in _LEAKED.pop(backend, []):
        conn.invalidate()  # the fixture has ended the server side already
        conn.close()
        engine.dispose()


def _leave_a_mess(url: str, backend: str, leak: bool) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE leftover (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO leftover VALUES (1)")
        if backend == "postgres":
            conn.exec_driver_sql("CREATE SEQUENCE leftover_seq")
            conn.exec_driver_sql("CREATE TYPE leftover_kind AS ENUM ('a', 'b')")
            conn.exec_driver_sql("CREATE SCHEMA leftover_schema")
    if leak and backend != "sqlite":
        conn = engine.connect()
        conn.begin()
        conn.exec_driver_sql("SELECT * FROM leftover FOR UPDATE")  # holds locks
        _LEAKED.setdefault(backend, []).append((engine, conn))
    else:
        engine.dispose()


def _assert_empty(url: str, backend: str) -> None:
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        assert insp.get_table_names() == []
        if backend == "postgres":
            assert insp.get_sequence_names() == []
            assert insp.get_enums() == []
            assert "leftover_schema" not in insp.get_schema_names()
    finally:
        engine.dispose()


def _database_url_clean_each_time(database_url: str, database_backend: str, leak: bool) -> None:
    _forget_leaked(database_backend)
    _assert_empty(database_url, database_backend)
    _leave_a_mess(database_url, database_backend, leak)


def test_database_url_clean_1(database_url: str, database_backend: str) -> None:
    _database_url_clean_each_time(database_url, database_backend, leak=True)


def test_database_url_clean_2(database_url: str, database_backend: str) -> None:
    _database_url_clean_each_time(database_url, database_backend, leak=True)


def test_database_url_clean_3(database_url: str, database_backend: str) -> None:
    _database_url_clean_each_time(database_url, database_backend, leak=False)


def test_redis_url_is_the_reserved_empty_db(
    redis_url: str, redis_reservation: RedisReservation, redis_pool: RedisDbPool
) -> None:
    db = int(redis_url.rsplit("/", 1)[1])
    assert db in REDIS_TEST_DBS and redis_reservation.db == db
    assert redis_reservation.size_at_reserve == 0
    if not redis_reservation.overflow:  # on the shared server: guarded by a reservation key
        assert db != redis_pool.control_db
        assert redis_url == redis_url_for_db(redis_pool.base_url, db)
        control = redis_pool.control()
        assert control.get(f"{REDIS_RESERVATION_PREFIX}{db}") == redis_reservation.token.encode()
        assert 0 < control.ttl(f"{REDIS_RESERVATION_PREFIX}{db}") <= 3600
    with redis.Redis.from_url(redis_url) as client:
        assert client.connection_pool.connection_kwargs["db"] == db
        client.set("fss:test:probe", "1")
        assert client.get("fss:test:probe") == b"1"
        client.delete("fss:test:probe")


def test_fresh_redis_url_gives_distinct_empty_dbs(
    fresh_redis_url: Callable[[], str], redis_url: str, redis_pool: RedisDbPool
) -> None:
    first, second = fresh_redis_url(), fresh_redis_url()
    assert len({first, second, redis_url}) == 3
    for url in (first, second):
        with redis.Redis.from_url(url) as client:
            assert client.dbsize() == 0
            client.set("fss:test:probe", url)
    held = {r.url for r in redis_pool.held}
    assert {first, second, redis_url} <= held


def test_a_full_shared_redis_overflows_to_a_throwaway_server() -> None:
    """Every shared db taken by someone else's data: the pool runs a redis-server of its own."""
    with ThrowawayRedis(durable=False) as shared:
        for db in REDIS_TEST_DBS:
            with redis.Redis.from_url(shared.url(db)) as client:
                client.set("someone:else", "keep me")
        pool = RedisDbPool(shared.url(0))
        try:
            first, second = pool.reserve(), pool.reserve()
            assert first.overflow and second.overflow
            assert first.url != second.url
            assert f":{shared.port}/" not in first.url
            with redis.Redis.from_url(first.url) as client:
                assert client.dbsize() == 0
                client.set("fss:test:probe", "x")
            pool.release(first)
            with redis.Redis.from_url(first.url) as client:
                assert client.dbsize() == 0
            assert [r.url for r in pool.held] == [second.url]
        finally:
            pool.close()
        for db in REDIS_TEST_DBS:  # the shared server's data is untouched
            with redis.Redis.from_url(shared.url(db)) as client:
                assert client.get("someone:else") == b"keep me"
                assert client.dbsize() == 1


def test_fresh_redis_dbs_are_flushed_and_released(redis_pool: RedisDbPool) -> None:
    res = redis_pool.reserve()
    with redis.Redis.from_url(res.url) as client:
        client.set("fss:test:probe", "x")
    redis_pool.release(res)
    control = redis_pool.control()
    assert control.get(res.key) is None
    with redis.Redis.from_url(res.url) as client:
        assert client.dbsize() == 0
