"""Self-test of the throwaway servers the restart tests use (tests/throwaway.py)."""

from __future__ import annotations

from pathlib import Path

import redis
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from throwaway import (
    ThrowawayPostgres,
    ThrowawayRedis,
    port_open,
    throwaway_postgres,
    throwaway_redis,
)

__all__ = ["throwaway_postgres", "throwaway_redis"]  # fixtures used below


def test_given_a_key_when_the_throwaway_redis_restarts_then_the_key_is_still_there(
    throwaway_redis: ThrowawayRedis,
) -> None:
    with redis.Redis.from_url(throwaway_redis.url(3)) as client:
        client.set("fss:survivor", "yes")
    throwaway_redis.stop()
    assert not port_open(throwaway_redis.port)

    throwaway_redis.start()

    with redis.Redis.from_url(throwaway_redis.url(3)) as client:
        assert client.get("fss:survivor") == b"yes"
    assert throwaway_redis.starts == 2


def test_given_a_killed_throwaway_redis_when_started_then_acknowledged_writes_survive(
    throwaway_redis: ThrowawayRedis,
) -> None:
    with redis.Redis.from_url(throwaway_redis.url()) as client:
        client.rpush("fss:list", "a", "b")

    throwaway_redis.restart(kill=True)  # appendfsync always: nothing acknowledged is lost

    with redis.Redis.from_url(throwaway_redis.url()) as client:
        assert client.lrange("fss:list", 0, -1) == [b"a", b"b"]


def _select(url: str, sql: str) -> object:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            return conn.exec_driver_sql(sql).scalar()
    finally:
        engine.dispose()


def test_given_a_throwaway_postgres_when_it_restarts_then_it_accepts_connections_and_kept_data(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    url = throwaway_postgres.url()
    _select(url, "CREATE TABLE survivor (v int); INSERT INTO survivor VALUES (42); SELECT 1")
    throwaway_postgres.stop()
    assert not port_open(throwaway_postgres.port)
    assert not throwaway_postgres.running

    throwaway_postgres.start()

    assert throwaway_postgres.running
    assert _select(url, "SELECT v FROM survivor") == 42
    assert throwaway_postgres.starts == 2


def test_given_servers_when_closed_then_their_directories_and_ports_are_gone(
    tmp_path: Path,
) -> None:
    with ThrowawayPostgres() as pg, ThrowawayRedis(tmp_path / "r") as rd:
        pg_root, pg_port, redis_port = pg.root, pg.port, rd.port
        assert port_open(pg_port) and port_open(redis_port)
    assert not pg_root.exists()
    assert not port_open(pg_port) and not port_open(redis_port)
